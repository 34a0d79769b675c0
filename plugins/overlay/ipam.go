package main

import (
	"context"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/overlaynet/overlay/ipam/ipamplugin"
)

// ownIPAM is the IPAM type the plugin serves in its own process.
const ownIPAM = "overlay-ipam"

// ipam is the IPAM plugin a conflist names. overlay-ipam runs in this
// process: exec'ing it would cost a second process start on every ADD and
// DEL (about as much as all the plugin's own work). Any other type is
// exec'd from CNI_PATH, as the spec says.
type ipam interface {
	// Add returns the attachment's address, and whether the attachment
	// held it before this ADD (then a failed ADD must not hand it back: it
	// may be on a live interface). Only overlay-ipam can tell; an exec'd
	// plugin's is taken to be new, as the spec's rollback (DEL) assumes.
	Add(args *skel.CmdArgs) (r types.Result, held bool, err error)
	Del(args *skel.CmdArgs) error
	Check(args *skel.CmdArgs) error
	Status(args *skel.CmdArgs) error
	GC(args *skel.CmdArgs) error
}

func ipamFor(conf *NetConf) ipam {
	if conf.IPAM.Type == ownIPAM {
		return localIPAM{}
	}
	return execIPAM{typ: conf.IPAM.Type}
}

// localIPAM is overlay-ipam's verbs in this process.
type localIPAM struct{}

func (localIPAM) Add(args *skel.CmdArgs) (types.Result, bool, error) {
	r, err := ipamplugin.Reserve(args)
	if err != nil {
		return nil, false, err
	}
	return r.Result, !r.New, nil
}

func (localIPAM) Del(args *skel.CmdArgs) error    { return ipamplugin.Plugin{}.Del(args) }
func (localIPAM) Check(args *skel.CmdArgs) error  { return ipamplugin.Plugin{}.Check(args) }
func (localIPAM) Status(args *skel.CmdArgs) error { return ipamplugin.Plugin{}.Status(args) }
func (localIPAM) GC(args *skel.CmdArgs) error     { return ipamplugin.Plugin{}.GC(args) }

// execIPAM is a foreign IPAM plugin, run from CNI_PATH with this
// invocation's environment and config.
type execIPAM struct{ typ string }

func (e execIPAM) Add(args *skel.CmdArgs) (types.Result, bool, error) {
	r, err := invoke.DelegateAdd(context.TODO(), e.typ, args.StdinData, nil)
	return r, false, err
}

func (e execIPAM) Del(args *skel.CmdArgs) error {
	return invoke.DelegateDel(context.TODO(), e.typ, args.StdinData, nil)
}

func (e execIPAM) Check(args *skel.CmdArgs) error {
	return invoke.DelegateCheck(context.TODO(), e.typ, args.StdinData, nil)
}

func (e execIPAM) Status(args *skel.CmdArgs) error {
	return invoke.DelegateStatus(context.TODO(), e.typ, args.StdinData, nil)
}

func (e execIPAM) GC(args *skel.CmdArgs) error {
	return invoke.DelegateGC(context.TODO(), e.typ, args.StdinData, nil)
}
