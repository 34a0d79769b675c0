package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// AttachContainer wires the container whose network namespace is at
// netnsPath into bridge: a veth pair with MTU mtu, the container end named
// ifName holding addr with a default route via gateway, the host end (named
// "veth" + 8 hex digits) a port of the bridge. The calling thread must be in
// the host namespace. ifName must not exist yet in the container. On failure
// nothing is left behind: once the pair exists, any later error deletes it.
func AttachContainer(netnsPath, ifName, bridge string, mtu int, addr netip.Prefix, gateway netip.Addr) (ContainerLink, error) {
	if err := validateAttach(ifName, mtu, addr, gateway); err != nil {
		return ContainerLink{}, err
	}
	br, err := lookupBridge(bridge)
	if err != nil {
		return ContainerLink{}, err
	}
	cns, err := ns.GetNS(netnsPath)
	if err != nil {
		return ContainerLink{}, fmt.Errorf("open container netns %q: %w", netnsPath, err)
	}
	defer cns.Close()
	var cl ContainerLink
	err = cns.Do(func(hostNS ns.NetNS) error {
		cl, err = setupContainerSide(hostNS, ifName, mtu, addr, gateway)
		return err
	})
	if err != nil {
		return ContainerLink{}, fmt.Errorf("attach %q in netns %q: %w", ifName, netnsPath, err)
	}
	if err := attachHostVeth(cl.HostVeth, br); err != nil {
		undo := cns.Do(func(ns.NetNS) error { return deleteLink(ifName, "veth") })
		return ContainerLink{}, errors.Join(err, undo)
	}
	return cl, nil
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

// setupContainerSide runs inside the container namespace.
func setupContainerSide(hostNS ns.NetNS, ifName string, mtu int, addr netip.Prefix, gw netip.Addr) (ContainerLink, error) {
	_, err := netlinksafe.LinkByName(ifName)
	if err == nil {
		return ContainerLink{}, fmt.Errorf("interface %q already exists in the container; the runtime must pass a free name", ifName)
	}
	if !isLinkNotFound(err) {
		return ContainerLink{}, fmt.Errorf("look up %q: %w", ifName, err)
	}
	hostIf, contIf, err := ip.SetupVeth(ifName, mtu, "", hostNS)
	if err != nil {
		return ContainerLink{}, fmt.Errorf("create veth pair: %w", err)
	}
	if err := configureContainerIf(ifName, addr, gw); err != nil {
		return ContainerLink{}, errors.Join(err, deleteLink(ifName, "veth"))
	}
	return ContainerLink{HostVeth: hostIf.Name, HostMAC: hostIf.HardwareAddr, ContainerMAC: contIf.HardwareAddr}, nil
}

// configureContainerIf brings the link up before adding the route: the
// gateway is only reachable once the link's subnet route exists.
func configureContainerIf(ifName string, addr netip.Prefix, gw netip.Addr) error {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("look up %q: %w", ifName, err)
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: toIPNet(addr)}); err != nil {
		return fmt.Errorf("add address %s to %q: %w", addr, ifName, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %q up: %w", ifName, err)
	}
	err = netlink.RouteAdd(&netlink.Route{
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

func attachHostVeth(veth string, br netlink.Link) error {
	link, err := netlinksafe.LinkByName(veth)
	if err != nil {
		return fmt.Errorf("look up host veth %q: %w", veth, err)
	}
	if err := netlink.LinkSetMaster(link, br); err != nil {
		return fmt.Errorf("attach %q to bridge %q: %w", veth, br.Attrs().Name, err)
	}
	// Hairpin lets a frame leave by the port it came in on. Without it a
	// container cannot reach itself through its host's published port:
	// portmap's DNAT (seen at the bridge via br_netfilter) turns the packet
	// back towards the sender's own port, and the bridge drops it.
	if err := netlink.LinkSetHairpin(link, true); err != nil {
		return fmt.Errorf("enable hairpin on %q: %w", veth, err)
	}
	return nil
}
