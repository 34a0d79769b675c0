package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/containernetworking/cni/pkg/invoke"
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

func (p plugin) add(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := checkNetns(args.Netns); err != nil {
		return err
	}
	hf, err := readHostFile(conf, types.ErrTryAgainLater)
	if err != nil {
		return err
	}
	if err := checkBridge(hf); err != nil {
		return err
	}

	// From here on a failure must hand the address back. The rollback is
	// armed before IPAM runs, because IPAM may reserve an address and still
	// fail (e.g. its result does not decode); releasing an attachment that
	// holds nothing is a no-op. Once the container is wired, the rollback
	// also removes its interface, as DEL would, before the address is freed.
	success, attached := false, false
	defer func() {
		if !success {
			p.rollbackAdd(conf, args, attached)
		}
	}()
	res, err := p.attach(conf, args, hf)
	if err != nil {
		return err
	}
	attached = true
	out, err := res.GetAsVersion(conf.CNIVersion)
	if err != nil {
		return fmt.Errorf("convert result to version %s: %w", conf.CNIVersion, err)
	}
	if err := out.PrintTo(p.stdout); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	success = true
	return nil
}

// attach gets an address from IPAM and wires the container with it.
func (p plugin) attach(conf *NetConf, args *skel.CmdArgs, hf hostfile.HostFile) (*current.Result, error) {
	r, err := invoke.DelegateAdd(context.TODO(), conf.IPAM.Type, args.StdinData, nil)
	if err != nil {
		return nil, fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	ipamRes, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("ipam plugin %s: convert result: %w", conf.IPAM.Type, err)
	}
	addr, err := ipamAddr(ipamRes, hf.Subnet)
	if err != nil {
		return nil, fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	link, err := datapath.AttachContainer(args.Netns, args.IfName, hf.Bridge, hf.MTU, addr, hf.Gateway)
	if err != nil {
		// The bridge may have gone since checkBridge (overlayd teardown).
		return nil, bridgeError(fmt.Errorf("attach container %s: %w", args.ContainerID, err))
	}
	a := attachment{link: link, ifName: args.IfName, netns: args.Netns, addr: addr, host: hf, dns: conf.DNS}
	return a.result(), nil
}

func (p plugin) rollbackAdd(conf *NetConf, args *skel.CmdArgs, attached bool) {
	if attached {
		if err := datapath.DetachContainer(args.Netns, args.IfName); err != nil {
			// The address stays reserved: handing it out again while the
			// interface holds it would duplicate it.
			fmt.Fprintf(p.stderr, "overlay: container %s interface %s: remove interface after failed ADD: %v\n",
				args.ContainerID, args.IfName, err)
			return
		}
	}
	if err := invoke.DelegateDel(context.TODO(), conf.IPAM.Type, args.StdinData, nil); err != nil {
		fmt.Fprintf(p.stderr, "overlay: container %s interface %s: release address after failed ADD: %v\n",
			args.ContainerID, args.IfName, err)
	}
}

// del removes the container's interface, then releases its address. The
// order matters: releasing first would let a concurrent ADD receive an
// address the old interface still holds. If detaching fails the address
// stays reserved and the error asks the runtime to retry DEL. A missing
// netns (or none given) counts as detached, so DEL still releases the
// address after the container is gone.
func (p plugin) del(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if args.Netns != "" {
		if err := datapath.DetachContainer(args.Netns, args.IfName); err != nil {
			return fmt.Errorf("detach container %s interface %s (its address stays reserved until DEL succeeds): %w",
				args.ContainerID, args.IfName, err)
		}
	}
	if err := invoke.DelegateDel(context.TODO(), conf.IPAM.Type, args.StdinData, nil); err != nil {
		return fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	return nil
}

// check verifies the container still has the address the runtime's cached
// result (prevResult) says it got, and that IPAM still holds it.
func (p plugin) check(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
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
	if err := invoke.DelegateCheck(context.TODO(), conf.IPAM.Type, args.StdinData, nil); err != nil {
		return fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	return nil
}

// status answers 50 while overlayd has not published a usable host file,
// then asks the IPAM plugin.
func (p plugin) status(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if _, err := readHostFile(conf, types.ErrPluginNotAvailable); err != nil {
		return err
	}
	if err := invoke.DelegateStatus(context.TODO(), conf.IPAM.Type, args.StdinData, nil); err != nil {
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
	if err := invoke.DelegateGC(context.TODO(), conf.IPAM.Type, args.StdinData, nil); err != nil {
		return fmt.Errorf("ipam plugin %s: %w", conf.IPAM.Type, err)
	}
	return nil
}

// checkBridge answers 11 (try again later) until the bridge is as overlayd
// leaves it for the host file's subnet. The plugin never creates or repairs
// the bridge: overlayd is its only writer, and a plugin working from an
// older host file would put an old gateway back after a subnet change.
func checkBridge(hf hostfile.HostFile) error {
	gw := netip.PrefixFrom(hf.Gateway, hf.Subnet.Bits())
	if err := datapath.CheckBridge(hf.Bridge, gw); err != nil {
		return bridgeError(fmt.Errorf("check bridge: %w", err))
	}
	return nil
}

// bridgeError gives the bridge states that overlayd resolves on its own
// code 11, with what to look at if they persist; other errors pass through.
func bridgeError(err error) error {
	var missing *datapath.BridgeMissingError
	var noGateway *datapath.BridgeGatewayError
	switch {
	case errors.As(err, &missing):
		return cnierr.TryAgain(missing.Error(),
			"overlayd creates it once it holds a subnet; check overlayd is running (systemctl status overlayd)")
	case errors.As(err, &noGateway):
		return cnierr.TryAgain(noGateway.Error(),
			"overlayd has not finished applying a subnet change (the host file and the bridge disagree); "+
				"retry, and if this persists check overlayd's log (journalctl -u overlayd)")
	}
	return err
}

func readHostFile(conf *NetConf, code uint) (hostfile.HostFile, error) {
	path := conf.hostFilePath()
	hf, err := hostfile.Read(path)
	if err != nil {
		return hostfile.HostFile{}, cnierr.HostFile(code, path, conf.Network, err)
	}
	return hf, nil
}

// checkNetns rejects a CNI_NETNS that is not a network namespace before any
// address is reserved for it.
func checkNetns(path string) error {
	n, err := ns.GetNS(path)
	if err != nil {
		return cnierr.BadArgs("CNI_NETNS", fmt.Sprintf("%v; the runtime must pass the path of the container's network namespace", err))
	}
	return n.Close()
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
