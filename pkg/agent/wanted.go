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
	Config    netconf.Config
	HostID    string
	Underlay  datapath.Underlay
	PublicIP  netip.Addr
	VTEPMAC   net.HardwareAddr
	Bridge    string
	Subnet    netip.Prefix
	// Held is true while the lease session holds the subnet.
	Held bool
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
	Src      netip.Addr
	HostFile hostfile.HostFile
	// Forward is true where this host routes between the overlay and
	// something else (its bridge, or a gateway's LAN): ip_forward is kept
	// on and the FORWARD accept rules kept.
	Forward bool
	// Held is false while the lease is lost: the datapath stays, the ready
	// stamp goes, so STATUS tells runtimes the host is not ready.
	Held bool
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
	// overlaps the overlay or an earlier gateway's LAN, or holds a
	// member's underlay address.
	RejectAdvertiseOverlap  = "advertise_overlap"
	RejectAdvertiseUnderlay = "advertise_underlay"
)

// buildWanted derives the wanted state from this host and the current
// leases. Leases that are this host's own, outside the network or of
// another subnet size are not peers; records that would misroute traffic
// are rejected and reported.
func buildWanted(l local, leases []subnet.Lease) (Wanted, []Rejection) {
	mtu := l.Underlay.MTU - datapath.VXLANOverhead
	if l.Config.MTU != 0 {
		mtu = l.Config.MTU
	}
	vtepIP := l.Subnet.Addr()
	if l.Kind == subnet.KindEdge {
		return buildEdgeWanted(l, leases, mtu)
	}
	gateway := vtepIP.Next()
	w := Wanted{
		VXLAN: datapath.VXLANSpec{
			Name: datapath.DeviceName(l.Config.VNI), VNI: l.Config.VNI, Port: l.Config.Port,
			LocalIP: l.Underlay.IP, UnderlayIndex: l.Underlay.Index,
			MAC: l.VTEPMAC, MTU: mtu, Address: netip.PrefixFrom(vtepIP, 32), Owner: l.Network,
		},
		Bridge:  datapath.BridgeSpec{Name: l.Bridge, Gateway: netip.PrefixFrom(gateway, l.Subnet.Bits()), MTU: mtu, Owner: l.Network},
		Forward: true,
		HostFile: hostfile.HostFile{
			Network: l.Config.Network, Subnet: l.Subnet, Gateway: gateway,
			MTU: mtu, Bridge: l.Bridge, VNI: l.Config.VNI,
		},
		Held: l.Held,
	}
	peers, rejected := acceptedPeers(l, leases)
	w.Peers = peers
	return w, rejected
}

// buildEdgeWanted is the wanted state of an edge host: its address on the
// VXLAN device and the source of every route, so what it sends carries
// that address and the reply comes back over the overlay; no bridge; and
// forwarding only on a gateway (a plain edge machine routes nothing).
func buildEdgeWanted(l local, leases []subnet.Lease, mtu int) (Wanted, []Rejection) {
	addr := l.Subnet.Addr()
	w := Wanted{
		VXLAN: datapath.VXLANSpec{
			Name: datapath.DeviceName(l.Config.VNI), VNI: l.Config.VNI, Port: l.Config.Port,
			LocalIP: l.Underlay.IP, UnderlayIndex: l.Underlay.Index,
			MAC: l.VTEPMAC, MTU: mtu, Address: netip.PrefixFrom(addr, 32), Owner: l.Network,
		},
		Src: addr,
		HostFile: hostfile.HostFile{
			Kind: hostfile.KindEdge, Network: l.Config.Network, Address: addr, MTU: mtu, VNI: l.Config.VNI,
		},
		Forward: len(l.Advertise) > 0,
		Held:    l.Held,
	}
	peers, rejected := acceptedPeers(l, leases)
	w.Peers = peers
	return w, rejected
}

// acceptedPeers turns the other members' leases (container hosts and edge
// hosts alike: edge hosts are peers of each other too) into peers,
// rejecting a record whose public IP lies inside the overlay (VXLAN packets
// to it would be routed into the overlay itself) or is already another
// member's (with another VTEP MAC: two hosts cannot share one underlay
// address; the older record keeps it). A gateway's advertised LANs are
// checked as well (acceptedRoutes).
func acceptedPeers(l local, leases []subnet.Lease) ([]datapath.Peer, []Rejection) {
	ordered := slices.Clone(leases)
	// The key created first keeps a contested public IP or LAN: creation,
	// unlike the last write, does not change when its owner restarts.
	slices.SortStableFunc(ordered, func(a, b subnet.Lease) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) })
	owner := map[netip.Addr]string{l.PublicIP: l.VTEPMAC.String()}
	underlays := []netip.Addr{l.PublicIP}
	for _, ls := range ordered {
		underlays = append(underlays, ls.PublicIP)
	}
	routed := slices.Clone(l.Advertise)
	var peers []datapath.Peer
	var rejected []Rejection
	for _, ls := range ordered {
		if ls.HostID == l.HostID || ls.Subnet == l.Subnet || !member(l.Config, ls) {
			continue
		}
		mac, err := ls.MAC()
		if err != nil {
			continue // Record.Validate already rejected these; be safe anyway
		}
		if l.Config.Network.Contains(ls.PublicIP) {
			rejected = append(rejected, Rejection{ls.Subnet, RejectPublicIPInOverlay,
				fmt.Sprintf("publicIP %s lies inside the overlay network %s", ls.PublicIP, l.Config.Network)})
			continue
		}
		if m, taken := owner[ls.PublicIP]; taken && m != mac.String() {
			rejected = append(rejected, Rejection{ls.Subnet, RejectDuplicatePublicIP,
				fmt.Sprintf("publicIP %s is already the underlay address of VTEP %s", ls.PublicIP, m)})
			continue
		}
		owner[ls.PublicIP] = mac.String()
		p := datapath.Peer{Subnet: ls.Subnet, VTEPIP: ls.Subnet.Addr(), VTEPMAC: mac, PublicIP: ls.PublicIP}
		var dropped []Rejection
		p.Routes, routed, dropped = acceptedRoutes(l.Config, ls, routed, underlays)
		rejected = append(rejected, dropped...)
		peers = append(peers, p)
	}
	slices.SortFunc(peers, func(a, b datapath.Peer) int { return a.Subnet.Addr().Compare(b.Subnet.Addr()) })
	return peers, rejected
}

// member reports whether a lease is a slot of its kind's range in this
// network (a lease of another subnet size or outside the range is left
// from an earlier config and not programmed).
func member(cfg netconf.Config, ls subnet.Lease) bool {
	return ls.Kind.Pool(cfg).Contains(ls.Subnet)
}

// acceptedRoutes keeps the LANs a gateway advertises that overlap neither
// the overlay nor a LAN routed already (this host's own, or an earlier
// gateway's), and that hold no member's underlay address: a route to that
// through the overlay would carry VXLAN packets into the overlay itself.
// It returns the kept LANs and routed grown by them.
func acceptedRoutes(cfg netconf.Config, ls subnet.Lease, routed []netip.Prefix, underlays []netip.Addr) (kept, grown []netip.Prefix, rejected []Rejection) {
	for _, p := range ls.Advertise {
		overlaps := func(q netip.Prefix) bool { return p.Overlaps(q) }
		switch {
		case p.Overlaps(cfg.Network):
			rejected = append(rejected, Rejection{ls.Subnet, RejectAdvertiseOverlap,
				fmt.Sprintf("advertised %s overlaps the overlay network %s", p, cfg.Network)})
		case slices.ContainsFunc(routed, overlaps):
			q := routed[slices.IndexFunc(routed, overlaps)]
			rejected = append(rejected, Rejection{ls.Subnet, RejectAdvertiseOverlap,
				fmt.Sprintf("advertised %s overlaps %s, routed to this host or to a gateway that advertised it first", p, q)})
		case slices.ContainsFunc(underlays, p.Contains):
			u := underlays[slices.IndexFunc(underlays, p.Contains)]
			rejected = append(rejected, Rejection{ls.Subnet, RejectAdvertiseUnderlay,
				fmt.Sprintf("advertised %s holds the underlay address %s of a member", p, u)})
		default:
			kept = append(kept, p)
			routed = append(routed, p)
		}
	}
	return kept, routed, rejected
}
