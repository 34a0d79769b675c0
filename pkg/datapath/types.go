package datapath

import (
	"fmt"
	"net"
	"net/netip"
)

// Peer is one remote host of the network, as the datapath programs it.
type Peer struct {
	// Subnet is the remote host's container subnet.
	Subnet netip.Prefix
	// VTEPIP is the overlay address of the remote VXLAN device: the first
	// address of Subnet. It is the onlink next hop of the route to Subnet.
	VTEPIP netip.Addr
	// VTEPMAC is the remote VXLAN device's MAC address.
	VTEPMAC net.HardwareAddr
	// PublicIP is the remote host's underlay address, where VXLAN packets go.
	PublicIP netip.Addr
	// Routes are further destinations behind the peer (the LANs a gateway
	// edge host advertises), routed via VTEPIP like Subnet.
	Routes []netip.Prefix
	// Mode is how Subnet is reached: encapsulated (the zero value) or, for
	// a peer on this host's own L2 segment, routed directly.
	Mode PeerMode
}

// PeerMode is how this host reaches a peer's subnet.
type PeerMode uint8

const (
	// ModeVXLAN encapsulates: Subnet is routed via VTEPIP on our VXLAN
	// device, which sends to PublicIP.
	ModeVXLAN PeerMode = iota
	// ModeDirect routes Subnet via PublicIP on the underlay interface,
	// unencapsulated (the peer shares this host's L2 segment: flannel's
	// DirectRouting, Calico's CrossSubnet). The peer's neighbour and FDB
	// entries stay, and its advertised Routes still go over VXLAN.
	ModeDirect
)

func (m PeerMode) String() string {
	if m == ModeDirect {
		return "direct"
	}
	return "vxlan"
}

// PeerTarget says where one network's peers are programmed.
type PeerTarget struct {
	// Device is the network's VXLAN device.
	Device string
	// Src, when valid, is the preferred source address of the routes on
	// Device (an edge host's overlay address).
	Src netip.Addr
	// Underlay is the underlay interface, where direct routes go.
	Underlay string
	// DirectSrc is the preferred source address of direct routes: this
	// host's own overlay address, so what the host itself sends to a
	// direct peer's containers comes back the same way.
	DirectSrc netip.Addr
	// Range is the network's range: routes of ours (RouteProtocol) on
	// Underlay inside it are this network's direct routes, and no other
	// network's (network ranges do not overlap).
	Range netip.Prefix
}

// Route is a route of ours: on our VXLAN device (via a VTEP IP, onlink)
// or, for a direct peer, on the underlay (via the peer's public IP).
type Route struct {
	Dst netip.Prefix
	Via netip.Addr
	// Src, when valid, is the preferred source address of traffic this host
	// sends along the route (an edge host's overlay address, or this host's
	// own overlay address on a direct route).
	Src netip.Addr
	// Metric is set only on a route read with another metric than
	// RouteMetric(Dst) (Installed.Stale): its delete names it. 0: any.
	Metric int
}

// Neigh is an installed (permanent) neighbour entry on our VXLAN device.
type Neigh struct {
	IP  netip.Addr
	MAC net.HardwareAddr
}

// FDBEntry is an installed forwarding entry on our VXLAN device: frames for
// MAC are encapsulated towards Dst.
type FDBEntry struct {
	MAC net.HardwareAddr
	Dst netip.Addr
}

// Installed is what the kernel holds for one network's peers: everything
// on our VXLAN device, and the direct routes on the underlay.
type Installed struct {
	// Routes, Neighs and FDB are on the VXLAN device.
	Routes []Route
	Neighs []Neigh
	FDB    []FDBEntry
	// Direct are the routes of protocol RouteProtocol on the underlay whose
	// destination lies inside the network's range (PeerTarget.Range).
	Direct []Route
	// Stale and StaleDirect are routes of ours (on the VXLAN device, and
	// direct) at another metric than RouteMetric gives them: written by a
	// release before route metrics were spread, or by hand. They are left
	// out of Routes and Direct, so the diff writes each again at its
	// metric, and a sync then deletes them.
	Stale, StaleDirect []Route
}

// Plan is the difference between wanted peers and installed state. Add*
// entries are created or replaced; Del* entries are removed. Apply adds
// before deletes.
type Plan struct {
	AddRoutes []Route
	DelRoutes []Route
	AddNeighs []Neigh
	DelNeighs []Neigh
	AddFDB    []FDBEntry
	DelFDB    []FDBEntry
	// AddDirect and DelDirect are direct routes on the underlay.
	AddDirect []Route
	DelDirect []Route
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool {
	return len(p.AddRoutes)+len(p.DelRoutes)+len(p.AddNeighs)+len(p.DelNeighs)+
		len(p.AddFDB)+len(p.DelFDB)+len(p.AddDirect)+len(p.DelDirect) == 0
}

// VXLANSpec describes the VXLAN device EnsureVXLAN creates or repairs.
type VXLANSpec struct {
	// Name is the device name, normally DeviceName(VNI).
	Name string
	VNI  uint32
	// Port is the UDP destination port.
	Port uint16
	// LocalIP is this host's underlay address (the VXLAN source address).
	LocalIP netip.Addr
	// UnderlayIndex is the link index of the underlay interface, 0 if unknown.
	UnderlayIndex int
	// MAC is the device's stable address (kept across restarts).
	MAC net.HardwareAddr
	// MTU is the underlay MTU minus the encapsulation overhead.
	MTU int
	// Address is the host subnet's first address as a /32.
	Address netip.Prefix
	// Owner, when set, is written as the device's alias (OwnerAlias), so
	// orphan cleanup and teardown find the devices of a network by what
	// they are, not by a name remembered elsewhere.
	Owner string
}

// BridgeSpec describes the per-host bridge containers attach to.
type BridgeSpec struct {
	Name string
	// Gateway is the gateway address with the subnet's prefix length, e.g. 10.244.3.1/24.
	Gateway netip.Prefix
	MTU     int
	// Owner, when set, is written as the bridge's alias (see VXLANSpec.Owner).
	Owner string
}

// OwnerAlias is the interface alias overlayd gives the devices it makes for
// a network ("overlay:NAME", shown by `ip link`).
func OwnerAlias(network string) string { return ownerAliasPrefix + network }

const ownerAliasPrefix = "overlay:"

// ownerAlias is OwnerAlias, or "" (claim nothing) for an empty network.
func ownerAlias(network string) string {
	if network == "" {
		return ""
	}
	return OwnerAlias(network)
}

// Underlay is the interface VXLAN packets leave the host by.
type Underlay struct {
	Name  string
	Index int
	IP    netip.Addr
	MTU   int
	// Segments are the interface's connected IPv4 prefixes: a peer whose
	// public IP lies in one shares this host's L2 segment (direct routing).
	Segments []netip.Prefix
}

// OnSegment reports whether ip lies in one of the underlay's connected
// prefixes.
func (u Underlay) OnSegment(ip netip.Addr) bool {
	for _, s := range u.Segments {
		if s.Contains(ip) {
			return true
		}
	}
	return false
}

// VXLANOverhead is the IPv4 VXLAN encapsulation cost: outer IPv4 (20) + UDP
// (8) + VXLAN (8) + inner Ethernet (14).
const VXLANOverhead = 50

// DeviceName returns the VXLAN device name for a VNI: overlay.VNI, or
// ovl.VNI when the former would exceed the kernel's 15-byte IFNAMSIZ limit
// (VNIs of 8 digits).
func DeviceName(vni uint32) string {
	if n := fmt.Sprintf("overlay.%d", vni); len(n) <= 15 {
		return n
	}
	return fmt.Sprintf("ovl.%d", vni)
}

// RouteProtocol is the rtm_protocol number overlay stamps on the routes it
// installs, so a person (`ip route show proto 86`) or a later cleanup can tell
// them apart from routes written by other software. On our VXLAN device
// reconciliation does not rely on it: every non-kernel route there counts as
// ours, because we own the device and a stray route on it would misdirect
// overlay traffic. On the underlay, which is not ours, it is what makes a
// route ours: a direct route is a route of this protocol there inside the
// network's range.
const RouteProtocol = 86

// VXLANResult reports what ReconcileVXLAN did to the device.
type VXLANResult struct {
	Index int
	// Created is true when the device was made afresh (absent or replaced).
	Created bool
	// Replaced says why an existing link of that name was deleted and
	// recreated; it is empty when the link was reused or absent.
	Replaced string
}

// ContainerLink describes a container attached by AttachContainer.
type ContainerLink struct {
	// HostVeth is the name of the host end of the veth pair.
	HostVeth     string
	HostMAC      net.HardwareAddr
	ContainerMAC net.HardwareAddr
}
