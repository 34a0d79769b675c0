package main

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/overlaynet/overlay/pkg/cnierr"
	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

// add wires the container, or, when CNI_IFNAME already exists in it (a
// runtime retrying ADD, or sending it twice), answers for what is there
// without touching it. It holds the container's netns lock throughout, so
// identical ADDs run one after the other and each sees what the earlier
// ones left.
func (p plugin) add(args *skel.CmdArgs) error {
	conf, err := loadNetConf(args.StdinData)
	if err != nil {
		return err
	}
	n, err := openNetns(args.Netns)
	if err != nil {
		return err
	}
	defer n.Close() // drops the lock
	if err := lockNetns(n, args.Netns, netnsLockTimeout); err != nil {
		return err
	}
	// Before anything is created or reserved: a machine that cannot take
	// the container (no host file yet, or an edge host) is left as it was.
	hf, err := readHostFile(conf, types.ErrTryAgainLater)
	if err != nil {
		return err
	}
	if err := checkBridge(hf); err != nil {
		return err
	}
	existing, err := datapath.InspectContainer(args.Netns, args.IfName, hf.Bridge, owner(conf, args))
	var foreign *datapath.ForeignIfError
	switch {
	case errors.Is(err, datapath.ErrNoContainerIf):
		return p.addNew(conf, args, hf)
	case errors.As(err, &foreign):
		return ifNameTaken(args, foreign.Reason)
	case err != nil:
		return bridgeError(fmt.Sprintf("inspect container %s", args.ContainerID), err)
	}
	if existing.Unfinished {
		// Left by an ADD killed half-way: it holds no address, or one this
		// attachment reserved but no default route yet, so nothing can be
		// lost by deleting it.
		if err := datapath.DetachContainer(args.Netns, args.IfName); err != nil {
			return cnierr.Wrap("remove the interface an ADD killed half-way left", err)
		}
		return p.addNew(conf, args, hf)
	}
	return p.addExisting(conf, args, hf, existing)
}

// addNew gets an address from IPAM and wires the container with it. The
// container had no CNI_IFNAME when this ADD started (and the netns lock
// keeps it so), so whatever IPAM gave is on no interface of ours: a failure
// from here on hands it back. The rollback is armed before IPAM runs,
// because IPAM may reserve an address and still fail (e.g. its result does
// not decode); releasing an attachment that holds nothing is a no-op. Once
// the container is wired, the rollback also removes its interface, as DEL
// would, before the address is freed.
func (p plugin) addNew(conf *NetConf, args *skel.CmdArgs, hf hostfile.HostFile) error {
	var addr netip.Prefix
	success, attached, held := false, false, false
	defer func() {
		if !success {
			p.rollbackAdd(conf, args, attached, held, addr.Addr())
		}
	}()
	var err error
	addr, held, err = p.ipamAdd(conf, args, hf)
	if err != nil {
		return err
	}
	link, err := datapath.AttachContainer(datapath.ContainerSpec{
		Netns: args.Netns, IfName: args.IfName, Bridge: hf.Bridge, MTU: hf.MTU, Addr: addr, Gateway: hf.Gateway,
		Owner: owner(conf, args),
	})
	var exists *datapath.IfExistsError
	if errors.As(err, &exists) {
		// Another process made it since InspectContainer: not under our lock,
		// so not an overlay ADD.
		return ifNameTaken(args, "it appeared while this ADD ran")
	}
	if err != nil {
		// The bridge may have gone since checkBridge (overlayd teardown).
		return bridgeError(fmt.Sprintf("attach container %s", args.ContainerID), err)
	}
	attached = true
	a := attachment{link: link, ifName: args.IfName, netns: args.Netns, addr: addr, mtu: hf.MTU, host: hf, dns: conf.DNS}
	if err := p.printResult(conf, a); err != nil {
		return err
	}
	success = true
	return nil
}

// addExisting answers an ADD for a CNI_IFNAME that is already our veth on
// the bridge. When the interface holds one address of this host's subnet
// and IPAM, asked again for this attachment, gives that same address (as
// overlay-ipam does for an attachment it holds), the ADD succeeds with the
// same result as the first. Otherwise it fails with code 4. Either way the
// interface stays as it is and its address stays reserved: it may be a live
// container's.
func (p plugin) addExisting(conf *NetConf, args *skel.CmdArgs, hf hostfile.HostFile, ex datapath.ExistingAttachment) error {
	have, err := attachedAddr(ex.Addrs, hf.Subnet)
	if err != nil {
		return ifNameTaken(args, err.Error())
	}
	got, _, err := p.ipamAdd(conf, args, hf)
	if err != nil {
		return existingIPAMError(conf, args, have, err)
	}
	if got != have {
		// IPAM holds another address for this attachment: the interface is
		// not this attachment's. The other address is on no interface here
		// (releaseUnused checks), so it goes back.
		p.releaseUnused(conf, args, got.Addr(), "ADD found the interface taken")
		return ifNameTaken(args, fmt.Sprintf("it holds %s, but ipam plugin %s gives attachment %s/%s the address %s, so the interface is another attachment's",
			have, conf.IPAM.Type, args.ContainerID, args.IfName, got))
	}
	// Nothing to undo if the result cannot be written: all of it predates
	// this ADD, and the runtime's DEL removes it.
	a := attachment{link: ex.ContainerLink, ifName: args.IfName, netns: args.Netns, addr: have, mtu: ex.MTU, host: hf, dns: conf.DNS}
	return p.printResult(conf, a)
}

// attachedAddr returns the one address of the host's subnet, with its
// prefix length, that an existing container interface holds.
func attachedAddr(addrs []netip.Prefix, subnet netip.Prefix) (netip.Prefix, error) {
	var in []netip.Prefix
	for _, a := range addrs {
		if subnet.Contains(a.Addr()) && a.Bits() == subnet.Bits() {
			in = append(in, a)
		}
	}
	if len(in) != 1 {
		return netip.Prefix{}, fmt.Errorf("it should hold one address of this host's subnet %s, and it holds %v", subnet, addrs)
	}
	return in[0], nil
}

// ipamAdd asks IPAM for the attachment's address and checks it fits the
// host's subnet.
func (p plugin) ipamAdd(conf *NetConf, args *skel.CmdArgs, hf hostfile.HostFile) (addr netip.Prefix, held bool, err error) {
	r, held, err := ipamFor(conf).Add(args)
	if err != nil {
		return netip.Prefix{}, false, ipamError(conf, err)
	}
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return netip.Prefix{}, held, cnierr.DecodeResult("the result of ipam plugin "+conf.IPAM.Type, err)
	}
	addr, err = ipamAddr(res, hf.Subnet)
	if err != nil {
		return netip.Prefix{}, held, cnierr.InvalidConfig("ipam", fmt.Sprintf("ipam plugin %s: %v; configure it to hand out addresses of the subnet in %s, or use overlay-ipam",
			conf.IPAM.Type, err, conf.hostFilePath()))
	}
	return addr, held, nil
}

func (p plugin) printResult(conf *NetConf, a attachment) error {
	out, err := a.result().GetAsVersion(conf.CNIVersion)
	if err != nil {
		return types.NewError(types.ErrIncompatibleCNIVersion, "cannot give the result in cniVersion "+conf.CNIVersion, err.Error())
	}
	if err := out.PrintTo(p.stdout); err != nil {
		return cnierr.IOFailure("cannot write the result", err.Error())
	}
	return nil
}

// rollbackAdd undoes what addNew did: the interface it made, then the
// address IPAM gave it (addr, or the zero Addr if IPAM failed first),
// unless the attachment held that address before this ADD (held): it may
// be on an interface of the same attachment elsewhere, and DEL or GC
// frees it.
func (p plugin) rollbackAdd(conf *NetConf, args *skel.CmdArgs, attached, held bool, addr netip.Addr) {
	if attached {
		if err := datapath.DetachContainer(args.Netns, args.IfName); err != nil {
			// The address stays reserved: handing it out again while the
			// interface holds it would duplicate it.
			p.logf(args, "remove interface after failed ADD: %v", err)
			return
		}
	}
	if held {
		p.logf(args, "keep %s reserved after failed ADD: the attachment held it before this ADD", addr)
		return
	}
	p.releaseUnused(conf, args, addr, "failed ADD")
}

// releaseUnused hands the attachment's address back to IPAM, unless an
// interface in the container holds addr. IPAM releases by attachment, not
// by address, so this is the last look before an address could be given to
// a second container while a first one uses it. When the look fails the
// address stays reserved: a leak that DEL or GC repairs beats a duplicate.
func (p plugin) releaseUnused(conf *NetConf, args *skel.CmdArgs, addr netip.Addr, after string) {
	if addr.IsValid() {
		held, err := datapath.ContainerHolds(args.Netns, addr)
		if err != nil || held {
			p.logf(args, "keep %s reserved after %s: an interface in the container holds it or it cannot be told (%v)", addr, after, err)
			return
		}
	}
	if err := ipamFor(conf).Del(args); err != nil {
		p.logf(args, "release address after %s: %v", after, err)
	}
}

func (p plugin) logf(args *skel.CmdArgs, format string, a ...any) {
	fmt.Fprintf(p.stderr, "overlay: container %s interface %s: %s\n", args.ContainerID, args.IfName, fmt.Sprintf(format, a...))
}

// openNetns opens CNI_NETNS, rejecting a path that is not a network
// namespace before any address is reserved for it.
func openNetns(path string) (ns.NetNS, error) {
	n, err := ns.GetNS(path)
	if err != nil {
		return nil, cnierr.BadArgs("CNI_NETNS", fmt.Sprintf("%v; the runtime must pass the path of the container's network namespace", err))
	}
	return n, nil
}

// ifNameTaken (code 4) reports a CNI_IFNAME that exists in the container
// but is not this attachment, saying why (reason) and that nothing changed.
func ifNameTaken(args *skel.CmdArgs, reason string) error {
	return cnierr.BadArgs("CNI_IFNAME", fmt.Sprintf(
		"interface %q already exists in the container (netns %s) and is not attachment %s/%s: %s; nothing was changed or released. "+
			"If it is left over from this container, DEL the attachment and ADD again; otherwise pass a free CNI_IFNAME",
		args.IfName, args.Netns, args.ContainerID, args.IfName, reason))
}

// existingIPAMError reports an IPAM failure while confirming an existing
// interface. A code IPAM chose (e.g. 11, store busy) passes through; a bare
// refusal (code 999, e.g. host-local's "duplicate allocation") becomes
// code 4, since the interface cannot be confirmed as this attachment's.
// Nothing is released either way: the interface holds its address.
func existingIPAMError(conf *NetConf, args *skel.CmdArgs, have netip.Prefix, err error) error {
	var ce *types.Error
	if errors.As(err, &ce) && ce.Code != types.ErrInternal {
		return err
	}
	return ifNameTaken(args, fmt.Sprintf("it holds %s, and ipam plugin %s did not confirm that address for this attachment: %v",
		have, conf.IPAM.Type, err))
}

// checkBridge answers 11 (try again later) until the bridge is as overlayd
// leaves it for the host file's subnet. The plugin never creates or repairs
// the bridge: overlayd is its only writer, and a plugin working from an
// older host file would put an old gateway back after a subnet change.
func checkBridge(hf hostfile.HostFile) error {
	gw := netip.PrefixFrom(hf.Gateway, hf.Subnet.Bits())
	if err := datapath.CheckBridge(hf.Bridge, gw); err != nil {
		return bridgeError("check bridge", err)
	}
	return nil
}

// bridgeError gives the bridge states that overlayd resolves on its own
// code 11, with what to look at if they persist; any other failure of
// what (reading or changing the kernel's state) is code 5.
func bridgeError(what string, err error) error {
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
	return cnierr.Wrap(what, err)
}

// ipamError keeps the code an IPAM failure carries (11 when its store is
// busy, 7 for its config, …) and says which plugin failed; an error
// without a code (the plugin could not be run) is 5.
func ipamError(conf *NetConf, err error) error {
	return cnierr.Wrap("ipam plugin "+conf.IPAM.Type, err)
}

// owner is the attachment the host veth is named and aliased after.
func owner(conf *NetConf, args *skel.CmdArgs) datapath.VethOwner {
	return datapath.VethOwner{Network: conf.Network, ContainerID: args.ContainerID, IfName: args.IfName}
}
