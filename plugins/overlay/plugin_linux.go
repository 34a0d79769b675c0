package main

import (
	"fmt"
	"io"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/overlaynet/overlay/pkg/cnierr"
	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

// plugin implements the CNI verbs. stdout carries only the result JSON;
// diagnostics go to stderr.
type plugin struct {
	stdout io.Writer
	stderr io.Writer
}

// del removes the container's interface, then releases its address. The
// order matters: releasing first would let a concurrent ADD receive an
// address the old interface still holds. If detaching fails the address
// stays reserved and the error asks the runtime to retry DEL. A missing
// netns (or none given) counts as detached, so DEL still releases the
// address after the container is gone. While the netns exists DEL holds its
// lock, so a DEL sent while an ADD still runs (a runtime giving up on a
// slow ADD) waits for it instead of releasing an address the ADD is about
// to put on an interface. DEL never reads the host file, so it works
// without one and on an edge host.
func (p plugin) del(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if args.Netns != "" {
		// A netns that cannot be opened has nothing left to race over;
		// DetachContainer tells gone from broken.
		if n, err := ns.GetNS(args.Netns); err == nil {
			defer n.Close() // drops the lock
			if err := lockNetns(n, args.Netns, netnsLockTimeout); err != nil {
				return err
			}
		}
		if err := datapath.DetachContainer(args.Netns, args.IfName); err != nil {
			return fmt.Errorf("detach container %s interface %s (its address stays reserved until DEL succeeds): %w",
				args.ContainerID, args.IfName, err)
		}
	}
	if err := ipamFor(conf).Del(args); err != nil {
		return fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	return nil
}

// check verifies the container still has the address the runtime's cached
// result (prevResult) says it got, and that IPAM still holds it. On an edge
// host it answers as ADD does.
func (p plugin) check(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := cnierr.RefuseEdgeHost(conf.hostFilePath(), conf.Network); err != nil {
		return err
	}
	prev, err := prevResult(conf)
	if err != nil {
		return err
	}
	addr, err := containerAddr(prev, args.IfName)
	if err != nil {
		return cnierr.InvalidConfig("prevResult", err.Error())
	}
	if err := datapath.CheckContainer(args.Netns, args.IfName, addr); err != nil {
		return fmt.Errorf("check container %s: %w", args.ContainerID, err)
	}
	if err := ipamFor(conf).Check(args); err != nil {
		return fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	return nil
}

// status answers 50 while overlayd has not published a usable host file or
// has not renewed its ready stamp in time (it is not running, or cannot
// reconcile), then asks the IPAM plugin. The host file comes first: an edge
// host's overlayd keeps its stamp fresh, yet no container can start here.
// ADD never looks at the stamp, so containers still start while overlayd
// restarts.
func (p plugin) status(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := readHostFile(conf, types.ErrPluginNotAvailable); err != nil {
		return err
	}
	ready := hostfile.ReadyPath(conf.RunDir, conf.Network)
	if err := hostfile.CheckReady(ready, time.Now()); err != nil {
		return cnierr.NotReady(ready, err)
	}
	if err := ipamFor(conf).Status(args); err != nil {
		return fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	return nil
}

// gc forwards to IPAM, which releases addresses of attachments the runtime
// no longer lists. The plugin itself owns nothing to collect: a host veth
// disappears with its container's namespace.
func (p plugin) gc(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := ipamFor(conf).GC(args); err != nil {
		return fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	return nil
}

// readHostFile reads this host's view of the network. Failures carry code
// (11 from ADD, 50 from STATUS), except that an edge host's file is 7 from
// ADD (see cnierr.EdgeHost): it has no subnet or bridge to wire a container to.
func readHostFile(conf *NetConf, code uint) (hostfile.HostFile, error) {
	path := conf.hostFilePath()
	hf, err := hostfile.ReadContainerHost(path)
	if err != nil {
		return hostfile.HostFile{}, cnierr.HostFile(code, path, conf.Network, err)
	}
	return hf, nil
}

// prevResult decodes the cached result the runtime passes to CHECK.
func prevResult(conf *NetConf) (*current.Result, error) {
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, cnierr.InvalidConfig("prevResult", err.Error())
	}
	if conf.PrevResult == nil {
		return nil, cnierr.InvalidConfig("prevResult", "CHECK needs the result of ADD, and the runtime passed none")
	}
	res, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return nil, cnierr.InvalidConfig("prevResult", err.Error())
	}
	return res, nil
}
