package datapath

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// checkProgrammed requires that s holds exactly one route, neighbour and
// FDB entry per peer, each exactly as the peer says.
func checkProgrammed(t *testing.T, s rawState, peers []Peer) {
	t.Helper()
	if len(s.routes) != len(peers) || len(s.neighs) != len(peers) || len(s.fdb) != len(peers) {
		t.Errorf("got %d routes, %d neighbours, %d fdb entries; want %d of each:\n%v\n%v\n%v",
			len(s.routes), len(s.neighs), len(s.fdb), len(peers), s.routes, s.neighs, s.fdb)
	}
	for _, p := range peers {
		if !hasRoute(s.routes, p) {
			t.Errorf("no route %s via %s onlink proto %d in %v", p.Subnet, p.VTEPIP, RouteProtocol, s.routes)
		}
		if !hasNeigh(s.neighs, p.VTEPIP, p.VTEPMAC) {
			t.Errorf("no permanent neighbour %s lladdr %s in %v", p.VTEPIP, p.VTEPMAC, s.neighs)
		}
		if !hasNeigh(s.fdb, p.PublicIP, p.VTEPMAC) {
			t.Errorf("no fdb entry %s dst %s in %v", p.VTEPMAC, p.PublicIP, s.fdb)
		}
	}
}

func hasRoute(routes []netlink.Route, p Peer) bool {
	for _, r := range routes {
		if fromIPNet(r.Dst) == p.Subnet && fromIP(r.Gw) == p.VTEPIP &&
			r.Flags&int(netlink.FLAG_ONLINK) != 0 && int(r.Protocol) == RouteProtocol {
			return true
		}
	}
	return false
}

func hasNeigh(neighs []netlink.Neigh, ip netip.Addr, mac net.HardwareAddr) bool {
	for _, n := range neighs {
		if fromIP(n.IP) == ip && bytes.Equal(n.HardwareAddr, mac) {
			return true
		}
	}
	return false
}

func TestSyncPeersProgramsEachPeerOnce(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	peers := []Peer{peer(2), peer(3), peer(4)}
	var first, second Plan
	var state rawState
	do(t, host, func() (err error) {
		if first, err = SyncPeers(spec.Name, peers); err != nil {
			return err
		}
		if state, err = dumpDevice(spec.Name); err != nil {
			return err
		}
		second, err = SyncPeers(spec.Name, peers)
		return err
	})
	checkProgrammed(t, state, peers)
	if n := len(first.AddRoutes) + len(first.AddNeighs) + len(first.AddFDB); n != 9 {
		t.Errorf("first plan adds %d entries, want 9: %q", n, planLines(first))
	}
	if !second.Empty() {
		t.Errorf("second SyncPeers not a no-op: %q", planLines(second))
	}
}

func TestSyncPeersRemovesExactlyTheGonePeer(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	var plan Plan
	var state rawState
	do(t, host, func() (err error) {
		if _, err = SyncPeers(spec.Name, []Peer{peer(2), peer(3), peer(4)}); err != nil {
			return err
		}
		if plan, err = SyncPeers(spec.Name, []Peer{peer(2), peer(4)}); err != nil {
			return err
		}
		state, err = dumpDevice(spec.Name)
		return err
	})
	checkProgrammed(t, state, []Peer{peer(2), peer(4)})
	want := []string{"-route 10.244.3.0/24 via 10.244.3.0", "-neigh 10.244.3.0 02:00:00:00:00:03", "-fdb 02:00:00:00:00:03 198.18.0.3"}
	if got := planLines(plan); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("plan %q, want %q", got, want)
	}
}

func TestSyncPeersUpdatesChangedPeer(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	moved := peer(2)
	moved.VTEPMAC = mac(9)
	moved.PublicIP = netip.MustParseAddr("198.18.0.99")
	var state rawState
	do(t, host, func() (err error) {
		if _, err = SyncPeers(spec.Name, []Peer{peer(2), peer(3)}); err != nil {
			return err
		}
		if _, err = SyncPeers(spec.Name, []Peer{moved, peer(3)}); err != nil {
			return err
		}
		state, err = dumpDevice(spec.Name)
		return err
	})
	checkProgrammed(t, state, []Peer{moved, peer(3)})
}

// otherDevice builds a VXLAN device we do not own, with its own route,
// neighbour and FDB entry written by plain netlink calls. Its route even
// carries our protocol number: ownership goes by device, not by protocol.
func otherDevice() error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = "other.9"
	v := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: 9, Port: 4789, SrcAddr: net.ParseIP("198.18.0.1")}
	if err := netlink.LinkAdd(v); err != nil {
		return err
	}
	link, err := netlinksafe.LinkByName("other.9")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return err
	}
	p := otherPeer()
	idx := link.Attrs().Index
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: toIP(p.VTEPIP), HardwareAddr: p.VTEPMAC}); err != nil {
		return err
	}
	if err := netlink.NeighSet(fdbNeigh(idx, FDBEntry{MAC: p.VTEPMAC, Dst: p.PublicIP})); err != nil {
		return err
	}
	return netlink.RouteAdd(&netlink.Route{LinkIndex: idx, Dst: toIPNet(p.Subnet), Gw: toIP(p.VTEPIP), Flags: int(netlink.FLAG_ONLINK), Protocol: RouteProtocol})
}

// otherPeer is what other.9 routes to: subnet 10.244.9.0/24, as if a second
// overlay claimed the subnet that peer(9) of ours would have.
func otherPeer() Peer {
	p := peer(9)
	p.VTEPMAC = net.HardwareAddr{2, 0xbb, 0, 0, 0, 9}
	p.PublicIP = netip.MustParseAddr("198.18.0.209")
	return p
}

func TestSyncPeersLeavesOtherDevicesAlone(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	var other rawState
	var conflictErr error
	do(t, host, func() (err error) {
		if err = otherDevice(); err != nil {
			return err
		}
		if _, err = SyncPeers(spec.Name, []Peer{peer(2), peer(3)}); err != nil {
			return err
		}
		if _, err = SyncPeers(spec.Name, nil); err != nil {
			return err
		}
		// A peer whose subnet is routed on other.9 must fail, not steal the route.
		_, conflictErr = SyncPeers(spec.Name, []Peer{peer(9)})
		other, err = dumpDevice("other.9")
		return err
	})
	checkProgrammed(t, other, []Peer{otherPeer()})
	if conflictErr == nil || !strings.Contains(conflictErr.Error(), "exists on another device") {
		t.Errorf("SyncPeers with a subnet routed on other.9: err = %v, want a conflict error", conflictErr)
	}
}

func TestSyncPeersReportsInvalidPeerAndProgramsTheRest(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	bad := peer(3)
	bad.PublicIP = netip.Addr{}
	var err error
	var state rawState
	do(t, host, func() error {
		_, err = SyncPeers(spec.Name, []Peer{peer(2), bad})
		var derr error
		state, derr = dumpDevice(spec.Name)
		return derr
	})
	if err == nil || !strings.Contains(err.Error(), "public IP") {
		t.Errorf("err = %v, want it to name the invalid public IP", err)
	}
	checkProgrammed(t, state, []Peer{peer(2)})
}

func TestSyncPeersMissingDevice(t *testing.T) {
	host := newNS(t)
	var err error
	do(t, host, func() error { _, err = SyncPeers("overlay.77", []Peer{peer(2)}); return nil })
	if err == nil || !strings.Contains(err.Error(), "overlay.77") {
		t.Errorf("err = %v, want an error naming the device", err)
	}
}

func TestListInstalledSkipsKernelRoutesAndOtherDevices(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	var in Installed
	do(t, host, func() (err error) {
		if err = otherDevice(); err != nil {
			return err
		}
		if _, err = SyncPeers(spec.Name, []Peer{peer(2)}); err != nil {
			return err
		}
		in, err = ListInstalled(spec.Name)
		return err
	})
	want := installedFor(peer(2))
	got := planLines(Plan{AddRoutes: in.Routes, AddNeighs: in.Neighs, AddFDB: in.FDB})
	if strings.Join(got, "\n") != strings.Join(planLines(Plan{AddRoutes: want.Routes, AddNeighs: want.Neighs, AddFDB: want.FDB}), "\n") {
		t.Errorf("ListInstalled = %q, want only peer 2's entries", got)
	}
}
