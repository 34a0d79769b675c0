package datapath

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// ContainerSpec is what AttachContainer builds.
type ContainerSpec struct {
	// Netns is the path of the container's network namespace.
	Netns string
	// IfName is the container end's name; it must not exist yet.
	IfName string
	Bridge string
	MTU    int
	// Addr is the container's address with the subnet's prefix length.
	Addr    netip.Prefix
	Gateway netip.Addr
	// Owner names the host veth and is written as its alias (see VethOwner).
	Owner VethOwner
}

// AttachContainer wires a container into the bridge: a veth pair with MTU
// spec.MTU, the container end named spec.IfName holding spec.Addr with a
// default route via spec.Gateway, the host end (named by
// VethOwner.HostVethName, aliased with VethOwner.Alias) an up port of the
// bridge in hairpin mode. The calling thread must be in the host namespace.
//
// Both ends get their MACs from here, so no link has to be read back for
// the result, and a udev MACAddressPolicy cannot change them under us. The
// steps are ordered so that an ADD killed between any two leaves either
// nothing or a pair whose container end lacks its address or default route
// (see ExistingAttachment.Unfinished), which the next ADD or GC can delete
// without losing an address: the alias comes right after the pair, the port
// joins the bridge before the container gets its address. The container then
// announces its address (gratuitous ARP), so a reused address does not meet
// the previous container's MAC in the host's or a neighbour's ARP cache. A
// name already taken in the container is a *IfExistsError. On failure
// nothing is left behind: once the pair exists, any later error deletes it.
func AttachContainer(spec ContainerSpec) (ContainerLink, error) {
	if err := validateAttach(spec.IfName, spec.MTU, spec.Addr, spec.Gateway); err != nil {
		return ContainerLink{}, err
	}
	br, err := lookupBridge(spec.Bridge)
	if err != nil {
		return ContainerLink{}, err
	}
	cns, err := ns.GetNS(spec.Netns)
	if err != nil {
		return ContainerLink{}, fmt.Errorf("open container netns %q: %w", spec.Netns, err)
	}
	defer cns.Close()
	cl, host, err := createPair(spec, cns)
	if err != nil {
		return ContainerLink{}, fmt.Errorf("attach %q in netns %q: %w", spec.IfName, spec.Netns, err)
	}
	if err := wire(spec, cns, host, br); err != nil {
		undo := deleteLink(cl.HostVeth, "veth")
		return ContainerLink{}, errors.Join(fmt.Errorf("attach %q in netns %q: %w", spec.IfName, spec.Netns, err), undo)
	}
	return cl, nil
}

// wire takes a new pair from createPair to a working attachment. The
// container end comes up first, so that the host end is operationally up
// by the time it joins the bridge: the kernel then makes it a forwarding
// port at once, instead of later from its link watcher, and the
// announcement sent last cannot be dropped by a port still disabled.
func wire(spec ContainerSpec, cns ns.NetNS, host, br netlink.Link) error {
	var ctr netlink.Link
	err := cns.Do(func(ns.NetNS) error {
		var err error
		ctr, err = netlinksafe.LinkByName(spec.IfName)
		if err != nil {
			return fmt.Errorf("look up %q: %w", spec.IfName, err)
		}
		if err := netlink.LinkSetUp(ctr); err != nil {
			return fmt.Errorf("set %q up: %w", spec.IfName, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	waitOperUp(host)
	if err := enslave(host, br); err != nil {
		return err
	}
	return cns.Do(func(ns.NetNS) error {
		if err := configureContainerIf(ctr, spec.Addr, spec.Gateway); err != nil {
			return err
		}
		return announce(ctr)
	})
}

// announce has the kernel broadcast a gratuitous ARP for the container's
// address from its interface, so every neighbour that has the address
// cached (the host, other containers on the bridge) updates it to this
// MAC. With arp_notify on, the kernel announces when a link comes up or
// its MAC is set; setting the MAC it already has is the trigger here,
// once the port forwards (see wire). Sending the ARP from a packet socket
// of our own would cost more than the whole ADD: closing one waits for an
// RCU grace period.
func announce(link netlink.Link) error {
	name := link.Attrs().Name
	if err := setSysctl(fmt.Sprintf("net/ipv4/conf/%s/arp_notify", name), "1"); err != nil {
		return err
	}
	if err := netlink.LinkSetHardwareAddr(link, link.Attrs().HardwareAddr); err != nil {
		return fmt.Errorf("announce the address of %q: %w", name, err)
	}
	return nil
}

// operUpWait bounds waitOperUp; the link watcher normally takes
// microseconds, and an ADD should not wait long for an announcement.
const operUpWait = 50 * time.Millisecond

// waitOperUp waits until the kernel's link watcher has seen the host end's
// carrier (its operational state is up). Past the bound it returns anyway:
// the port then starts forwarding a moment later, and only the
// announcement may be lost.
func waitOperUp(host netlink.Link) {
	deadline := time.Now().Add(operUpWait)
	for pause := 50 * time.Microsecond; time.Now().Before(deadline); pause = min(2*pause, 10*time.Millisecond) {
		l, err := netlink.LinkByIndex(host.Attrs().Index)
		if err != nil || l.Attrs().OperState == netlink.OperUp {
			return
		}
		time.Sleep(pause)
	}
}

func validateAttach(ifName string, mtu int, addr netip.Prefix, gw netip.Addr) error {
	switch {
	case ifName == "" || len(ifName) > 15:
		return fmt.Errorf("container interface name %q must have 1 to 15 bytes", ifName)
	case mtu < 68:
		return fmt.Errorf("MTU %d is below the IPv4 minimum 68", mtu)
	case !addr.IsValid() || !addr.Addr().Is4():
		return fmt.Errorf("container address %q is not an IPv4 prefix", addr)
	case !gw.Is4() || !addr.Masked().Contains(gw) || gw == addr.Addr():
		return fmt.Errorf("gateway %q is not another address in the container's subnet %s", gw, addr.Masked())
	}
	return nil
}

// createPair makes the veth pair, the host end up and aliased, the
// container end, still down, in cns. The host end's name comes from the
// attachment (VethOwner.HostVethName); a name that is taken (a pair of the
// same attachment in another namespace) moves on to the next. The alias
// follows at once: the kernel ignores one in the create request.
func createPair(spec ContainerSpec, cns ns.NetNS) (ContainerLink, netlink.Link, error) {
	hostMAC, err := randomMAC()
	if err != nil {
		return ContainerLink{}, nil, err
	}
	ctrMAC, err := randomMAC()
	if err != nil {
		return ContainerLink{}, nil, err
	}
	for try := range hostVethTries {
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU, attrs.HardwareAddr = spec.Owner.HostVethName(try), spec.MTU, hostMAC
		attrs.Flags = net.FlagUp
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: spec.IfName, PeerHardwareAddr: ctrMAC,
			PeerNamespace: netlink.NsFd(int(cns.Fd()))}
		err = netlink.LinkAdd(veth) // fills in the index
		if isExist(err) {
			if taken, lerr := ifExists(cns, spec.IfName); lerr != nil || taken {
				return ContainerLink{}, nil, errors.Join(&IfExistsError{IfName: spec.IfName}, lerr)
			}
			continue
		}
		if err != nil {
			return ContainerLink{}, nil, fmt.Errorf("create veth pair: %w", err)
		}
		if err := netlink.LinkSetAlias(veth, spec.Owner.Alias()); err != nil {
			return ContainerLink{}, nil, errors.Join(fmt.Errorf("set alias of %q: %w", attrs.Name, err), deleteLink(attrs.Name, "veth"))
		}
		return ContainerLink{HostVeth: attrs.Name, HostMAC: hostMAC, ContainerMAC: ctrMAC}, veth, nil
	}
	return ContainerLink{}, nil, fmt.Errorf("create veth pair: all %d host veth names of attachment %s/%s are taken", hostVethTries, spec.Owner.ContainerID, spec.IfName)
}

// enslave makes the host veth a port of br with hairpin on. Hairpin lets a
// frame leave by the port it came in on. Without it a container cannot
// reach itself through its host's published port: portmap's DNAT (seen at
// the bridge via br_netfilter) turns the packet back towards the sender's
// own port, and the bridge drops it.
func enslave(veth netlink.Link, br netlink.Link) error {
	name := veth.Attrs().Name
	if err := netlink.LinkSetMasterByIndex(veth, br.Attrs().Index); err != nil {
		return fmt.Errorf("attach %q to bridge %q: %w", name, br.Attrs().Name, err)
	}
	if err := netlink.LinkSetHairpin(veth, true); err != nil {
		return fmt.Errorf("enable hairpin on %q: %w", name, err)
	}
	return nil
}

// ifExists reports whether the container namespace has a link named ifName.
func ifExists(cns ns.NetNS, ifName string) (bool, error) {
	found := false
	err := cns.Do(func(ns.NetNS) error {
		_, err := netlinksafe.LinkByName(ifName)
		if isLinkNotFound(err) {
			return nil
		}
		found = err == nil
		return err
	})
	return found, err
}

// configureContainerIf runs inside the container namespace, on a link that
// is up: the gateway is reachable once the address's subnet route exists.
// An ADD killed between the two leaves an address without a default route,
// which InspectContainer reports as unfinished.
func configureContainerIf(link netlink.Link, addr netip.Prefix, gw netip.Addr) error {
	ifName := link.Attrs().Name
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: toIPNet(addr)}); err != nil {
		return fmt.Errorf("add address %s to %q: %w", addr, ifName, err)
	}
	err := netlink.RouteAdd(&netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       toIPNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0)),
		Gw:        toIP(gw),
		Scope:     netlink.SCOPE_UNIVERSE,
	})
	if isExist(err) {
		return fmt.Errorf("add default route via %s: the container already has an IPv4 default route", gw)
	}
	if err != nil {
		return fmt.Errorf("add default route via %s dev %q: %w", gw, ifName, err)
	}
	return nil
}

func lookupBridge(name string) (netlink.Link, error) {
	br, err := netlinksafe.LinkByName(name)
	if isLinkNotFound(err) {
		return nil, &BridgeMissingError{Name: name}
	}
	if err != nil {
		return nil, fmt.Errorf("look up bridge %q: %w", name, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("link %q is of type %s, not a bridge", name, br.Type())
	}
	return br, nil
}
