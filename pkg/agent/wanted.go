package agent

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// local is what this host is. Only the agent's control goroutine changes
// it: the subnet when the lease session reports a new one, the config when
// etcd's changes, the underlay when the interface changes.
type local struct {
	Network string
	// Kind is host (containers on a subnet) or edge (one address, no
	// containers); Advertise the LANs an edge host forwards for.
	Kind      subnet.Kind
	Advertise []netip.Prefix
	// Routes are this host's own routes (OtherRoutes), which no advertised
	// LAN may shadow.
	Routes   []netip.Prefix
	Config   netconf.Config
	HostID   string
	Underlay datapath.Underlay
	PublicIP netip.Addr
	VTEPMAC  net.HardwareAddr
	Bridge   string
	Subnet   netip.Prefix
	// Held is true while the lease session holds the subnet.
	Held bool
	// CanMasq: this process keeps masquerade rules (it has iptables), so
	// the host file may say ipMasq.
	CanMasq bool
	// TxChecksumOff: tx checksum offload is to be off on the VXLAN device
	// (set once a probe found the overlay broken, with FixChecksumOffload).
	TxChecksumOff bool
}

// Wanted is everything the agent wants on this host: the kernel state it
// owns and the files it writes. It is rebuilt whole on every change and
// applied as a unit by the reconcile loop, the only writer of any of it.
type Wanted struct {
	VXLAN  datapath.VXLANSpec
	Bridge datapath.BridgeSpec
	Peers  []datapath.Peer
	// Src is the preferred source address of the peers' routes: an edge
	// host's overlay address; invalid on a container host.
	Src netip.Addr
	// Underlay is the underlay interface, where direct routes go.
	Underlay string
	HostFile hostfile.HostFile
	// Forward is true where this host routes between the overlay and
	// something else (its bridge, or a gateway's LAN): ip_forward is kept
	// on and the FORWARD accept rules kept.
	Forward bool
	// Held is false while the lease is lost: the datapath stays, the ready
	// stamp goes, so STATUS tells runtimes the host is not ready.
	Held bool
	// Masq is the egress masquerade of a container host (zero: none).
	Masq Masq
	// Ingress is the VXLAN ingress filter: Port only from Members.
	Ingress Ingress
	// MTUSetBy names the member whose underlay MTU sets the overlay MTU
	// ("" when the network config's override does).
	MTUSetBy string
	// TxChecksumOff turns tx checksum offload off on the VXLAN device.
	TxChecksumOff bool
}

// Masq is what a container host masquerades: traffic from Subnet to
// anywhere but Keep (the network itself and the LANs gateways advertise).
type Masq struct {
	Subnet netip.Prefix
	Keep   []netip.Prefix
}

// Ingress admits the network's VXLAN port only from its members'
// underlay addresses.
type Ingress struct {
	Port    uint16
	Members []netip.Addr
}

// target says where the peers are programmed.
func (w Wanted) target() datapath.PeerTarget {
	return datapath.PeerTarget{Device: w.VXLAN.Name, Src: w.Src, Underlay: w.Underlay,
		DirectSrc: w.VXLAN.Address.Addr(), Range: w.HostFile.Network}
}

// Rejection is a lease record that is not programmed, and why.
type Rejection struct {
	Subnet netip.Prefix
	// Kind is one of the Reject* reasons; Detail says what was wrong.
	Kind   string
	Detail string
}

// Reasons a lease record is not programmed (the label of the rejection counter).
const (
	RejectPublicIPInOverlay = "public_ip_in_overlay"
	RejectDuplicatePublicIP = "duplicate_public_ip"
	// An advertised LAN is dropped (the edge host stays a peer) when it
	// overlaps the overlay or an earlier gateway's LAN, holds a member's
	// underlay address, or overlaps a route this host has of its own.
	RejectAdvertiseOverlap    = "advertise_overlap"
	RejectAdvertiseUnderlay   = "advertise_underlay"
	RejectAdvertiseLocalRoute = "advertise_local_route"
	// A member whose underlay address lies inside a LAN an older gateway
	// advertises is not programmed: its VXLAN packets would go there.
	RejectPublicIPInLAN = "public_ip_in_lan"
)

// buildWanted derives the wanted state from this host and the current
// leases. Leases that are this host's own, outside the network or of
// another subnet size are not peers; records that would misroute traffic
// are rejected and reported.
func buildWanted(l local, leases []subnet.Lease) (Wanted, []Rejection) {
	peers, members, rejected := acceptedPeers(l, leases)
	mtu, setBy := clusterMTU(l, members)
	vtepIP := l.Subnet.Addr()
	w := Wanted{
		VXLAN: datapath.VXLANSpec{
			Name: datapath.DeviceName(l.Config.VNI), VNI: l.Config.VNI, Port: l.Config.Port,
			LocalIP: l.Underlay.IP, UnderlayIndex: l.Underlay.Index,
			MAC: l.VTEPMAC, MTU: mtu, Address: netip.PrefixFrom(vtepIP, 32), Owner: l.Network,
		},
		HostFile:      hostfile.HostFile{Network: l.Config.Network, MTU: mtu, VNI: l.Config.VNI},
		Underlay:      l.Underlay.Name,
		Held:          l.Held,
		Peers:         peers,
		Ingress:       Ingress{Port: l.Config.Port, Members: memberAddrs(members)},
		MTUSetBy:      setBy,
		TxChecksumOff: l.TxChecksumOff,
	}
	if l.Kind == subnet.KindEdge {
		// An edge host's address is the source of every route, so what it
		// sends carries that address and the reply comes back over the
		// overlay. It has no bridge, and only a gateway forwards.
		w.Src, w.Forward = vtepIP, len(l.Advertise) > 0
		w.HostFile.Kind, w.HostFile.Address = hostfile.KindEdge, vtepIP
		return w, rejected
	}
	gateway := vtepIP.Next()
	w.Bridge = datapath.BridgeSpec{Name: l.Bridge, Gateway: netip.PrefixFrom(gateway, l.Subnet.Bits()), MTU: mtu, Owner: l.Network}
	w.Forward = true
	w.HostFile.Subnet, w.HostFile.Gateway, w.HostFile.Bridge = l.Subnet, gateway, l.Bridge
	if l.Config.IPMasq && l.CanMasq {
		w.Masq = Masq{Subnet: l.Subnet, Keep: routedBy(w)}
		w.HostFile.IPMasq = true
	}
	return w, rejected
}

// clusterMTU is the overlay MTU: the network config's override, else the
// smallest underlay MTU of this host and every member minus the VXLAN
// overhead, so a packet that fits one host's containers fits every path
// (flannel derives it from the local interface only, and a cluster mixing
// jumbo and 1500-byte hosts black-holes large packets: flannel #463). It
// also names the member that sets it ("" for the override or this host).
func clusterMTU(l local, members []*subnet.Lease) (int, string) {
	if l.Config.MTU != 0 {
		return l.Config.MTU, ""
	}
	least, setBy := l.Underlay.MTU, ""
	for _, m := range members {
		// 0: a record of a release that did not publish it.
		if m.UnderlayMTU > 0 && m.UnderlayMTU < least {
			least, setBy = m.UnderlayMTU, m.Describe()
		}
	}
	return l.Config.OverlayMTU(least), setBy
}

// routedBy is what the network routes: its range (containers and edge
// hosts) and its gateways' LANs. A container host masquerades everything
// else its containers send; the other networks of the process drop what
// they send to it.
func routedBy(w Wanted) []netip.Prefix {
	out := []netip.Prefix{w.HostFile.Network}
	for _, p := range w.Peers {
		out = append(out, p.Routes...)
	}
	return out
}

// memberAddrs lists the members' underlay addresses, sorted, once each.
func memberAddrs(members []*subnet.Lease) []netip.Addr {
	out := make([]netip.Addr, 0, len(members))
	for _, m := range members {
		out = append(out, m.PublicIP)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// Self is who a host is, as far as choosing its peers goes: what
// overlayctl knows from overlayd's status file and etcd.
type Self struct {
	Kind      subnet.Kind
	HostID    string
	Subnet    netip.Prefix
	PublicIP  netip.Addr
	VTEPMAC   net.HardwareAddr
	Underlay  datapath.Underlay
	Advertise []netip.Prefix
	// Routes are the host's own routes, which a gateway's LANs must not
	// shadow.
	Routes []netip.Prefix
}

// PeersFor is the peers host self programs in a network of config cfg,
// and the records it rejects, built by the daemon's own code, so
// overlayctl status and why judge the kernel exactly as overlayd would
// program it.
func PeersFor(self Self, cfg netconf.Config, leases []subnet.Lease) ([]datapath.Peer, []Rejection) {
	l := local{Kind: self.Kind, HostID: self.HostID, Subnet: self.Subnet, PublicIP: self.PublicIP, VTEPMAC: self.VTEPMAC,
		Underlay: self.Underlay, Advertise: self.Advertise, Routes: self.Routes, Config: cfg}
	peers, _, rejected := acceptedPeers(l, leases)
	return peers, rejected
}

// PeerMode is how a host with underlay u reaches the member of ls in a
// network of config cfg: directly when the network routes directly and the
// member's public IP is on the host's own L2 segment, else over VXLAN. A
// gateway stays on VXLAN, both ways (selfGateway: this host is one): its
// LANs are routed over VXLAN, and one path both ways keeps strict
// reverse-path filters happy.
func PeerMode(cfg netconf.Config, u datapath.Underlay, selfGateway bool, ls subnet.Lease) datapath.PeerMode {
	if cfg.DirectRouting && !selfGateway && len(ls.Advertise) == 0 && u.OnSegment(ls.PublicIP) {
		return datapath.ModeDirect
	}
	return datapath.ModeVXLAN
}

// acceptedPeers turns the other members' leases (container hosts and edge
// hosts alike: edge hosts are peers of each other too) into peers, oldest
// lease first, rejecting a record whose public IP lies inside the overlay
// (VXLAN packets to it would be routed into the overlay itself), is
// already another member's (with another VTEP MAC: two hosts cannot share
// one underlay address), or lies inside a LAN an older gateway advertises
// (its VXLAN packets would be routed through that gateway). A gateway's
// advertised LANs are checked as well (acceptRoutes). The older record
// wins each conflict: creation, unlike the last write, does not change when
// its owner restarts, so a newcomer can never take an established member's
// place.
func acceptedPeers(l local, leases []subnet.Lease) ([]datapath.Peer, []*subnet.Lease, []Rejection) {
	// Pointers, not copies: a lease is 184 bytes, and at 10 000 leases
	// cloning and sorting the values was most of a pass's work.
	ordered := make([]*subnet.Lease, len(leases))
	for i := range leases {
		ordered[i] = &leases[i]
	}
	slices.SortStableFunc(ordered, func(a, b *subnet.Lease) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) })
	seen := memberSet{
		owner:     make(map[netip.Addr]string, len(leases)+1),
		underlays: make([]netip.Addr, 0, len(leases)+1),
		routed:    slices.Clone(l.Advertise),
		own:       l.Routes,
	}
	seen.owner[l.PublicIP] = l.VTEPMAC.String()
	seen.underlays = append(seen.underlays, l.PublicIP)
	// Sized up front: at 10 000 leases, growing these by appending was the
	// largest share of what a control pass allocated.
	peers := make([]datapath.Peer, 0, len(leases))
	members := make([]*subnet.Lease, 0, len(leases))
	var rejected []Rejection
	for _, lp := range ordered {
		ls := *lp
		if ls.HostID == l.HostID || ls.Subnet == l.Subnet || !member(l.Config, ls) {
			continue
		}
		mac, err := ls.MAC()
		if err != nil {
			continue // Record.Validate already rejected these; be safe anyway
		}
		if r, bad := seen.rejectPeer(l.Config, ls, mac.String()); bad {
			rejected = append(rejected, r)
			continue
		}
		p := datapath.Peer{Subnet: ls.Subnet, VTEPIP: ls.Subnet.Addr(), VTEPMAC: mac, PublicIP: ls.PublicIP, Mode: PeerMode(l.Config, l.Underlay, len(l.Advertise) > 0, ls)}
		var dropped []Rejection
		p.Routes, dropped = seen.acceptRoutes(l.Config, ls)
		rejected = append(rejected, dropped...)
		peers = append(peers, p)
		members = append(members, lp)
	}
	slices.SortFunc(peers, func(a, b datapath.Peer) int { return a.Subnet.Addr().Compare(b.Subnet.Addr()) })
	return peers, members, rejected
}

// memberSet is what acceptedPeers has accepted so far: every underlay
// address and its VTEP MAC, and every LAN routed through the overlay (this
// host's own advertised LANs first); own are this host's own routes.
type memberSet struct {
	owner     map[netip.Addr]string
	underlays []netip.Addr
	routed    []netip.Prefix
	own       []netip.Prefix
}

// rejectPeer says why ls cannot be a peer, or records its underlay.
func (m *memberSet) rejectPeer(cfg netconf.Config, ls subnet.Lease, mac string) (Rejection, bool) {
	inLAN := func(q netip.Prefix) bool { return q.Contains(ls.PublicIP) }
	switch owner, taken := m.owner[ls.PublicIP]; {
	case cfg.Network.Contains(ls.PublicIP):
		return Rejection{ls.Subnet, RejectPublicIPInOverlay,
			fmt.Sprintf("publicIP %s lies inside the overlay network %s", ls.PublicIP, cfg.Network)}, true
	case taken && owner != mac:
		return Rejection{ls.Subnet, RejectDuplicatePublicIP,
			fmt.Sprintf("publicIP %s is already the underlay address of VTEP %s", ls.PublicIP, owner)}, true
	case slices.ContainsFunc(m.routed, inLAN):
		return Rejection{ls.Subnet, RejectPublicIPInLAN,
			fmt.Sprintf("publicIP %s lies inside %s, a LAN routed through a gateway of the overlay", ls.PublicIP, m.routed[slices.IndexFunc(m.routed, inLAN)])}, true
	}
	m.owner[ls.PublicIP] = mac
	m.underlays = append(m.underlays, ls.PublicIP)
	return Rejection{}, false
}

// acceptRoutes keeps the LANs a gateway advertises that overlap neither
// the overlay, nor a LAN routed already (this host's own, or an older
// gateway's), nor a route this host has of its own (its LAN, a static
// route: the host keeps reaching it as before), and that hold no older
// member's underlay address (a route to it through the overlay would carry
// VXLAN packets into the overlay itself).
func (m *memberSet) acceptRoutes(cfg netconf.Config, ls subnet.Lease) (kept []netip.Prefix, rejected []Rejection) {
	for _, p := range ls.Advertise {
		overlaps := func(q netip.Prefix) bool { return p.Overlaps(q) }
		reject := func(kind, format string, args ...any) {
			rejected = append(rejected, Rejection{ls.Subnet, kind, fmt.Sprintf("advertised %s ", p) + fmt.Sprintf(format, args...)})
		}
		switch {
		case p.Overlaps(cfg.Network):
			reject(RejectAdvertiseOverlap, "overlaps the overlay network %s", cfg.Network)
		case slices.ContainsFunc(m.routed, overlaps):
			reject(RejectAdvertiseOverlap, "overlaps %s, routed to this host or to a gateway that advertised it first", m.routed[slices.IndexFunc(m.routed, overlaps)])
		case slices.ContainsFunc(m.underlays, p.Contains):
			reject(RejectAdvertiseUnderlay, "holds the underlay address %s of a member", m.underlays[slices.IndexFunc(m.underlays, p.Contains)])
		case slices.ContainsFunc(m.own, overlaps):
			reject(RejectAdvertiseLocalRoute, "overlaps this host's own route to %s, which it keeps", m.own[slices.IndexFunc(m.own, overlaps)])
		default:
			kept = append(kept, p)
			m.routed = append(m.routed, p)
		}
	}
	return kept, rejected
}

// member reports whether a lease is a slot of its kind's range in this
// network (a lease of another subnet size or outside the range is left
// from an earlier config and not programmed).
func member(cfg netconf.Config, ls subnet.Lease) bool {
	return ls.Kind.Pool(cfg).Contains(ls.Subnet)
}
