package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// ExistingAttachment is a container interface that InspectContainer found
// wired the way AttachContainer wires one.
type ExistingAttachment struct {
	ContainerLink
	MTU int
	// Addrs are the container interface's IPv4 addresses.
	Addrs []netip.Prefix
	// Unfinished is true for an interface without an IPv4 address or
	// without a default route, which an ADD that died half-way left (its
	// address, if any, is still this attachment's reservation): deleting
	// it loses nothing.
	Unfinished bool
}

// InspectContainer tells a CNI ADD what the container already has under
// ifName, changing nothing: ErrNoContainerIf when there is no such
// interface; a *ForeignIfError when there is one but it is not one end of a
// veth pair whose other end is a port of bridge in the calling thread's
// namespace (the host's), or owner's host veth off the bridge; otherwise
// the attachment with its addresses. A
// missing bridge is a *BridgeMissingError. It reads single links by name or
// index and the container's IPv4 addresses, never the host's link table.
func InspectContainer(netnsPath, ifName, bridge string, owner VethOwner) (ExistingAttachment, error) {
	br, err := lookupBridge(bridge)
	if err != nil {
		return ExistingAttachment{}, err
	}
	cns, err := ns.GetNS(netnsPath)
	if err != nil {
		return ExistingAttachment{}, fmt.Errorf("open container netns %q: %w", netnsPath, err)
	}
	defer cns.Close()
	var ce containerEnd
	err = cns.Do(func(hostNS ns.NetNS) error {
		ce, err = readContainerEnd(hostNS, ifName, bridge)
		return err
	})
	if err != nil {
		return ExistingAttachment{}, fmt.Errorf("inspect %q in netns %q: %w", ifName, netnsPath, err)
	}
	host, err := readHostEnd(ce, br, owner)
	if err != nil {
		return ExistingAttachment{}, err
	}
	return ExistingAttachment{
		ContainerLink: ContainerLink{HostVeth: host.Attrs().Name, HostMAC: host.Attrs().HardwareAddr, ContainerMAC: ce.mac},
		MTU:           ce.mtu,
		Addrs:         ce.addrs,
		Unfinished:    len(ce.addrs) == 0 || !ce.defaultRoute,
	}, nil
}

// containerEnd is what InspectContainer reads inside the container.
type containerEnd struct {
	ifName    string
	index     int
	peerIndex int
	mtu       int
	mac       net.HardwareAddr
	// defaultRoute: an IPv4 default route leaves by this interface.
	defaultRoute bool
	addrs        []netip.Prefix
}

// readContainerEnd runs inside the container namespace.
func readContainerEnd(hostNS ns.NetNS, ifName, bridge string) (containerEnd, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if isLinkNotFound(err) {
		return containerEnd{}, ErrNoContainerIf
	}
	if err != nil {
		return containerEnd{}, fmt.Errorf("look up %q: %w", ifName, err)
	}
	foreign := func(format string, args ...any) error {
		return &ForeignIfError{IfName: ifName, Bridge: bridge, Reason: fmt.Sprintf(format, args...)}
	}
	if _, ok := link.(*netlink.Veth); !ok {
		return containerEnd{}, foreign("it is a %s, not a veth", link.Type())
	}
	// A veth's peer index means something only in the peer's namespace, so
	// first make sure that namespace is the host's. Reading the link above
	// made the kernel assign the peer namespace an ID if it had none.
	a := link.Attrs()
	hostID, err := netlink.GetNetNsIdByFd(int(hostNS.Fd()))
	if err != nil {
		return containerEnd{}, fmt.Errorf("get the host namespace's ID in the container: %w", err)
	}
	if a.NetNsID < 0 || a.NetNsID != hostID {
		return containerEnd{}, foreign("its veth peer is not in the host's network namespace")
	}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return containerEnd{}, fmt.Errorf("list addresses of %q: %w", ifName, err)
	}
	ce := containerEnd{ifName: ifName, index: a.Index, peerIndex: a.ParentIndex, mtu: a.MTU, mac: a.HardwareAddr}
	for _, ad := range addrs {
		ce.addrs = append(ce.addrs, fromIPNet(ad.IPNet))
	}
	routes, err := netlinksafe.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return containerEnd{}, fmt.Errorf("list routes of %q: %w", ifName, err)
	}
	ce.defaultRoute = slices.ContainsFunc(routes, func(r netlink.Route) bool { return r.Dst == nil || fromIPNet(r.Dst).Bits() == 0 })
	return ce, nil
}

// readHostEnd finds the container end's peer in the calling thread's (the
// host's) namespace and checks it points back at the container end and is
// a port of br, or is owner's veth that an ADD killed before it joined the
// bridge.
func readHostEnd(ce containerEnd, br netlink.Link, owner VethOwner) (netlink.Link, error) {
	bridge := br.Attrs().Name
	foreign := func(format string, args ...any) error {
		return &ForeignIfError{IfName: ce.ifName, Bridge: bridge, Reason: fmt.Sprintf(format, args...)}
	}
	// By index, not a dump: a host may have thousands of veths.
	peer, err := netlink.LinkByIndex(ce.peerIndex)
	if isLinkNotFound(err) {
		return nil, foreign("its veth peer (index %d) is not in the host's namespace", ce.peerIndex)
	}
	if err != nil {
		return nil, fmt.Errorf("look up the host end (index %d) of container interface %q: %w", ce.peerIndex, ce.ifName, err)
	}
	pa := peer.Attrs()
	switch {
	case peer.Type() != "veth" || pa.ParentIndex != ce.index:
		return nil, foreign("host link %q (index %d) is not its veth peer", pa.Name, pa.Index)
	case pa.MasterIndex == br.Attrs().Index:
	case pa.MasterIndex != 0 || !slices.Contains(owner.hostVethNames(), pa.Name):
		return nil, foreign("its host end %q is not a port of the bridge", pa.Name)
	}
	return peer, nil
}

// ContainerHolds reports whether any interface in the container's network
// namespace holds addr. A namespace that is gone holds nothing. A failed ADD
// asks this before it releases an address: if something in the container
// has it, handing it out again would duplicate it.
func ContainerHolds(netnsPath string, addr netip.Addr) (bool, error) {
	cns, err := ns.GetNS(netnsPath)
	if nsGone(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open container netns %q: %w", netnsPath, err)
	}
	defer cns.Close()
	held := false
	err = cns.Do(func(ns.NetNS) error {
		addrs, err := netlinksafe.AddrList(nil, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("list addresses: %w", err)
		}
		for _, a := range addrs {
			held = held || fromIPNet(a.IPNet).Addr() == addr
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("look for %s in netns %q: %w", addr, netnsPath, err)
	}
	return held, nil
}
