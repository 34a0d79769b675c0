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
	Network  string
	Config   netconf.Config
	HostID   string
	Underlay datapath.Underlay
	PublicIP netip.Addr
	VTEPMAC  net.HardwareAddr
	Bridge   string
	Subnet   netip.Prefix
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
	gateway := vtepIP.Next()
	w := Wanted{
		VXLAN: datapath.VXLANSpec{
			Name: datapath.DeviceName(l.Config.VNI), VNI: l.Config.VNI, Port: l.Config.Port,
			LocalIP: l.Underlay.IP, UnderlayIndex: l.Underlay.Index,
			MAC: l.VTEPMAC, MTU: mtu, Address: netip.PrefixFrom(vtepIP, 32), Owner: l.Network,
		},
		Bridge: datapath.BridgeSpec{Name: l.Bridge, Gateway: netip.PrefixFrom(gateway, l.Subnet.Bits()), MTU: mtu, Owner: l.Network},
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

// acceptedPeers turns the other hosts' leases into peers, rejecting a
// record whose public IP lies inside the overlay (VXLAN packets to it would
// be routed into the overlay itself) or is already another host's (with
// another VTEP MAC: two hosts cannot share one underlay address; the older
// record keeps it).
func acceptedPeers(l local, leases []subnet.Lease) ([]datapath.Peer, []Rejection) {
	ordered := slices.Clone(leases)
	// The key created first keeps a contested public IP: creation, unlike
	// the last write, does not change when its owner restarts.
	slices.SortStableFunc(ordered, func(a, b subnet.Lease) int { return cmp.Compare(a.CreateRevision, b.CreateRevision) })
	owner := map[netip.Addr]string{l.PublicIP: l.VTEPMAC.String()}
	var peers []datapath.Peer
	var rejected []Rejection
	for _, ls := range ordered {
		if ls.HostID == l.HostID || ls.Subnet == l.Subnet || !l.Config.Contains(ls.Subnet) {
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
		peers = append(peers, datapath.Peer{Subnet: ls.Subnet, VTEPIP: ls.Subnet.Addr(), VTEPMAC: mac, PublicIP: ls.PublicIP})
	}
	slices.SortFunc(peers, func(a, b datapath.Peer) int { return a.Subnet.Addr().Compare(b.Subnet.Addr()) })
	return peers, rejected
}
