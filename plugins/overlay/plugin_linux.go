package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/overlaynet/overlay/ipam/ipamplugin"
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

// del takes the container's address off its interface, releases it, and
// has the veth pair deleted. The order matters: releasing first would let a
// concurrent ADD receive an address the old interface still holds. If the
// interface cannot be disarmed the address stays reserved and the error
// asks the runtime to retry DEL. Without a netns (none given, or it cannot
// be opened) the attachment's host veth is looked up by name and deleted if
// something still keeps it alive, so DEL still releases the address after
// the container is gone. While the netns exists DEL holds its lock, so a
// DEL sent while an ADD still runs (a runtime giving up on a slow ADD)
// waits for it instead of releasing an address the ADD is about to put on
// an interface. The veth pair's deletion, which the kernel makes slow,
// finishes after DEL answers (see reapLater). DEL never reads the host
// file, so it works without one and on an edge host.
func (p plugin) del(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
		return err
	}
	var veth datapath.HostVeth
	var n ns.NetNS
	if args.Netns != "" {
		// One that cannot be opened is gone, or soon will be: handled below.
		n, _ = ns.GetNS(args.Netns)
	}
	if n != nil {
		defer n.Close() // drops the lock
		if err := lockNetns(n, args.Netns, netnsLockTimeout); err != nil {
			return err
		}
		veth, err = datapath.DisarmContainer(n, args.IfName, owner(conf, args))
		if err != nil {
			return cnierr.IOFailure(fmt.Sprintf("cannot take container %s's interface %s out of use", args.ContainerID, args.IfName),
				fmt.Sprintf("%v; its address stays reserved until DEL succeeds: retry DEL", err))
		}
	} else if err := datapath.DeleteOwnedVeth(owner(conf, args)); err != nil {
		// No netns given, or it cannot be opened (gone): if something else
		// keeps it alive, the pair lives on and still holds the address.
		return cnierr.IOFailure(fmt.Sprintf("cannot remove container %s's veth pair", args.ContainerID),
			fmt.Sprintf("%v; its address stays reserved until DEL succeeds: retry DEL", err))
	}
	if err := ipamFor(conf).Del(args); err != nil {
		return ipamError(conf, err)
	}
	if veth.Index != 0 {
		if err := reapLater(conf.RunDir); err != nil {
			// The address is off the interface and released; the next
			// reaper or GC removes the pair.
			p.logf(args, "delete veth pair %s: %v", veth.Name, err)
		}
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
		return checkError(args, err)
	}
	if err := ipamFor(conf).Check(args); err != nil {
		return ipamError(conf, err)
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
		return ipamError(conf, err)
	}
	return nil
}

// gc removes what belongs to attachments the runtime no longer lists:
// first the host veths of this network's attachments (their alias names
// the attachment; a netns still held open keeps its veth otherwise), then,
// through IPAM, their addresses. It goes on past every failure and reports
// them all. An attachment whose veth could not be deleted keeps its
// address: the interface may still hold it.
func (p plugin) gc(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
		return err
	}
	valid, err := ipamplugin.ValidAttachments(args.StdinData)
	if err != nil {
		return err
	}
	owners := make([]datapath.VethOwner, len(valid))
	for i, a := range valid {
		owners[i] = datapath.VethOwner{Network: conf.Network, ContainerID: a.ContainerID, IfName: a.IfName}
	}
	failed, vethErr := datapath.RemoveStrayVeths(conf.Network, owners)
	if vethErr != nil {
		vethErr = cnierr.IOFailure("GC could not remove every stray veth", vethErr.Error()+"; their addresses stay reserved; run GC again")
	}
	stdin, err := keepAttachments(args.StdinData, failed)
	if err != nil {
		return errors.Join(vethErr, err)
	}
	gcArgs := *args
	gcArgs.StdinData = stdin
	var ipamErr error
	if err := ipamFor(conf).GC(&gcArgs); err != nil {
		ipamErr = ipamError(conf, err)
	}
	// Joined, both reach the runtime: cnierr.Coded (in main) keeps the
	// first code and every message.
	return errors.Join(vethErr, ipamErr)
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

// checkError gives CHECK's failures their codes: 4 for a netns that cannot
// be opened, 100 for an interface that is not as ADD left it, 5 for a
// failure to read the kernel's state.
func checkError(args *skel.CmdArgs, err error) error {
	var netnsErr *datapath.NetnsError
	var mismatch *datapath.MismatchError
	switch {
	case errors.As(err, &netnsErr):
		return cnierr.BadArgs("CNI_NETNS", fmt.Sprintf("%v; the runtime must pass the path of the container's network namespace", netnsErr))
	case errors.As(err, &mismatch):
		return cnierr.AttachmentChanged(fmt.Sprintf("container %s: %s", args.ContainerID, mismatch.Reason))
	}
	return cnierr.Wrap("check container "+args.ContainerID, err)
}

// keepAttachments adds the attachments failed to the config's valid
// attachments, so IPAM keeps their addresses.
func keepAttachments(stdin []byte, failed []datapath.VethOwner) ([]byte, error) {
	if len(failed) == 0 {
		return stdin, nil
	}
	var conf map[string]any
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return nil, cnierr.Decode(err)
	}
	list, ok := conf["cni.dev/valid-attachments"].([]any)
	if !ok {
		list, _ = conf["cni.dev/attachments"].([]any)
	}
	for _, o := range failed {
		list = append(list, map[string]any{"containerID": o.ContainerID, "ifname": o.IfName})
	}
	conf["cni.dev/valid-attachments"] = list
	delete(conf, "cni.dev/attachments")
	return json.Marshal(conf)
}
