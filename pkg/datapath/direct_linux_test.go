package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// testRange is the range of the network of the direct routing tests.
var testRange = mustPrefix("10.244.0.0/16")

// target is where h programs its peers, with direct routes on eth0.
func (h simHost) target() PeerTarget {
	return PeerTarget{Device: DeviceName(1), Underlay: "eth0", DirectSrc: h.vtepIP(), Range: testRange}
}

func (h simHost) peerIn(mode PeerMode) Peer {
	p := h.asPeer()
	p.Mode = mode
	return p
}

// syncMode programs h's one peer in mode in one pass, requires the next
// pass to change nothing, and returns the first pass's plan.
func syncMode(t *testing.T, h, peer simHost, mode PeerMode) Plan {
	t.Helper()
	var plan, again Plan
	do(t, h.ns, func() (err error) {
		if plan, err = SyncPeersTarget(h.target(), []Peer{peer.peerIn(mode)}); err != nil {
			return err
		}
		again, err = SyncPeersTarget(h.target(), []Peer{peer.peerIn(mode)})
		return err
	})
	if !again.Empty() {
		t.Errorf("%s: the pass after the switch to %s is not a no-op: %q", h.publicIP, mode, planLines(again))
	}
	return plan
}

// routesTo describes the main-table routes to dst in the current
// namespace: "dev DEV via GW [src SRC] proto N [onlink]".
func routesTo(dst netip.Prefix) ([]string, error) {
	filter := &netlink.Route{Dst: toIPNet(dst), Table: unix.RT_TABLE_MAIN}
	routes, err := netlinksafe.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range routes {
		link, err := netlink.LinkByIndex(r.LinkIndex)
		if err != nil {
			return nil, err
		}
		s := fmt.Sprintf("dev %s via %s", link.Attrs().Name, fromIP(r.Gw))
		if src := fromIP(r.Src); src.IsValid() {
			s += " src " + src.String()
		}
		s += fmt.Sprintf(" proto %d", r.Protocol)
		if r.Flags&int(netlink.FLAG_ONLINK) != 0 {
			s += " onlink"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out, nil
}

// checkRoutes requires the routes to dst in n to be exactly want.
func checkRoutes(t *testing.T, n nsNetNS, dst netip.Prefix, want ...string) {
	t.Helper()
	var got []string
	do(t, n, func() (err error) { got, err = routesTo(dst); return err })
	if !slices.Equal(got, want) {
		t.Errorf("routes to %s in %s:\n got %q\nwant %q", dst, nsName(n), got, want)
	}
}

// txPackets is how many packets h's VXLAN device has encapsulated.
func txPackets(t *testing.T, h simHost) uint64 {
	t.Helper()
	var n uint64
	do(t, h.ns, func() error {
		link, err := netlinksafe.LinkByName(DeviceName(1))
		if err != nil {
			return err
		}
		n = link.Attrs().Statistics.TxPackets
		return nil
	})
	return n
}

// pingAll pings each host's container from the other's container, and b's
// container from host a itself (whose packets carry the route's source).
func pingAll(t *testing.T, a, b simHost) {
	t.Helper()
	ping, err := exec.LookPath("ping")
	if err != nil {
		t.Fatalf("ping is not installed; run `make deps` (it installs iputils-ping): %v", err)
	}
	for _, c := range []struct {
		from nsNetNS
		to   netip.Addr
		diag simHost
	}{{a.ctr, b.ctrIP(), a}, {b.ctr, a.ctrIP(), b}, {a.ns, b.ctrIP(), a}} {
		cmd := exec.Command("ip", "netns", "exec", nsName(c.from), ping, "-c", "2", "-i", "0.2", "-W", "2", c.to.String())
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("ping %s from %s: %v\n%s%s", c.to, nsName(c.from), err, out, diagnose(c.diag))
		}
	}
}

// twoHostsOneSegment brings up two hosts on one L2 segment peered over VXLAN.
func twoHostsOneSegment(t *testing.T) (a, b simHost) {
	t.Helper()
	a = simHost{ns: newNS(t), ctr: newNS(t), publicIP: netip.MustParseAddr("198.18.0.1"),
		mac: net.HardwareAddr{2, 0xaa, 0, 0, 0, 1}, subnet: mustPrefix("10.244.1.0/24")}
	b = simHost{ns: newNS(t), ctr: newNS(t), publicIP: netip.MustParseAddr("198.18.0.2"),
		mac: net.HardwareAddr{2, 0xaa, 0, 0, 0, 2}, subnet: mustPrefix("10.244.2.0/24")}
	wireUnderlay(t, a, b)
	bringUp(t, a, b)
	bringUp(t, b, a)
	return a, b
}

// Two hosts on one segment route each other's subnet directly: the route
// is on the underlay via the peer's public IP with the host's overlay
// address as source, traffic is not encapsulated, and a switch to VXLAN
// and back is one pass each with reachability kept. RemoveOrphans leaves
// the direct routes alone.
func TestDirectRoutingTwoHosts(t *testing.T) {
	a, b := twoHostsOneSegment(t)
	vxlanTo := func(p simHost) string {
		return fmt.Sprintf("dev %s via %s proto %d onlink", DeviceName(1), p.vtepIP(), RouteProtocol)
	}
	directTo := func(h, p simHost) string {
		return fmt.Sprintf("dev eth0 via %s src %s proto %d", p.publicIP, h.vtepIP(), RouteProtocol)
	}
	checkRoutes(t, a.ns, b.subnet, vxlanTo(b))

	toDirect := []string{"-route 10.244.2.0/24 via 10.244.2.0", "+direct 10.244.2.0/24 via 198.18.0.2 src 10.244.1.0"}
	if got := planLines(syncMode(t, a, b, ModeDirect)); !slices.Equal(got, toDirect) {
		t.Errorf("switch to direct: plan %q, want %q", got, toDirect)
	}
	syncMode(t, b, a, ModeDirect)
	checkRoutes(t, a.ns, b.subnet, directTo(a, b))
	checkRoutes(t, b.ns, a.subnet, directTo(b, a))
	checkDirectTraffic(t, a, b)

	for _, h := range []simHost{a, b} {
		var removed []string
		do(t, h.ns, func() (err error) { removed, err = RemoveOrphans("default", h.target()); return err })
		if len(removed) > 0 {
			t.Errorf("RemoveOrphans on %s removed %v, want nothing", h.publicIP, removed)
		}
	}
	checkRoutes(t, a.ns, b.subnet, directTo(a, b))
	checkRoutes(t, b.ns, a.subnet, directTo(b, a))

	toVXLAN := []string{"+route 10.244.2.0/24 via 10.244.2.0", "-direct 10.244.2.0/24 via 198.18.0.2 src 10.244.1.0"}
	if got := planLines(syncMode(t, a, b, ModeVXLAN)); !slices.Equal(got, toVXLAN) {
		t.Errorf("switch to VXLAN: plan %q, want %q", got, toVXLAN)
	}
	syncMode(t, b, a, ModeVXLAN)
	checkRoutes(t, a.ns, b.subnet, vxlanTo(b))
	checkRoutes(t, b.ns, a.subnet, vxlanTo(a))
	before := txPackets(t, a)
	pingAll(t, a, b)
	// a sends 2 requests from its container, 2 replies to b's and 2
	// requests of its own.
	if sent := txPackets(t, a) - before; sent < 6 {
		t.Errorf("over VXLAN %s's device sent %d packets, want at least the 6 it sent during the pings", a.publicIP, sent)
	}

	syncMode(t, a, b, ModeDirect)
	syncMode(t, b, a, ModeDirect)
	checkRoutes(t, a.ns, b.subnet, directTo(a, b))
	checkDirectTraffic(t, a, b)
}

// checkDirectTraffic pings both ways and requires that neither VXLAN
// device sent a packet meanwhile.
func checkDirectTraffic(t *testing.T, a, b simHost) {
	t.Helper()
	txA, txB := txPackets(t, a), txPackets(t, b)
	pingAll(t, a, b)
	if da, db := txPackets(t, a)-txA, txPackets(t, b)-txB; da != 0 || db != 0 {
		t.Errorf("direct routing encapsulated packets: %d on %s, %d on %s", da, a.publicIP, db, b.publicIP)
	}
}

// directHost is one host with ul0 (198.18.0.1/24, so peer n's public IP
// 198.18.0.n is on its segment) and our VXLAN device; its target has
// direct routes on ul0.
func directHost(t *testing.T) (nsNetNS, PeerTarget) {
	t.Helper()
	host, spec := hostWithVXLAN(t)
	return host, PeerTarget{Device: spec.Name, Underlay: "ul0", DirectSrc: spec.Address.Addr(), Range: testRange}
}

// A mode switch moves the route from one device to the other in one step:
// the kernel never reports the destination's route deleted.
func TestSyncPeersModeSwitchNeverUnroutes(t *testing.T) {
	host, tg := directHost(t)
	dst := peer(2).Subnet
	do(t, host, func() error {
		if _, err := SyncPeersTarget(tg, []Peer{peer(2)}); err != nil {
			return err
		}
		for _, p := range []Peer{direct(2), peer(2), direct(2)} {
			events, err := routeEventsDuring(func() error { _, err := SyncPeersTarget(tg, []Peer{p}); return err })
			if err != nil {
				return err
			}
			var news int
			for _, u := range events {
				if fromIPNet(u.Dst) != dst {
					continue
				}
				if u.Type == unix.RTM_DELROUTE {
					return fmt.Errorf("switch to %s: the kernel deleted the route to %s (events %v)", p.Mode, dst, events)
				}
				news++
			}
			if news == 0 {
				return fmt.Errorf("switch to %s: no new route to %s", p.Mode, dst)
			}
		}
		return nil
	})
}

// routeEventsDuring returns the route events of the current namespace
// while f runs.
func routeEventsDuring(f func() error) ([]netlink.RouteUpdate, error) {
	ch, done := make(chan netlink.RouteUpdate, 64), make(chan struct{})
	if err := netlink.RouteSubscribe(ch, done); err != nil {
		return nil, fmt.Errorf("subscribe to route events: %w", err)
	}
	defer func() { close(done); go drain(ch) }()
	if err := f(); err != nil {
		return nil, err
	}
	var out []netlink.RouteUpdate
	for {
		select {
		case u := <-ch:
			out = append(out, u)
		case <-time.After(300 * time.Millisecond):
			return out, nil
		}
	}
}

// A route to a direct peer's subnet on the underlay that is not ours (a
// static one) is an error, and is neither taken over nor removed; the
// other peers are programmed.
func TestSyncPeersDirectForeignRoute(t *testing.T) {
	host, tg := directHost(t)
	static := "dev ul0 via 198.18.0.254 proto 4"
	var errDirect, errVXLAN error
	do(t, host, func() error {
		ul, err := netlinksafe.LinkByName("ul0")
		if err != nil {
			return err
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: ul.Attrs().Index, Dst: toIPNet(peer(2).Subnet),
			Gw: toIP(netip.MustParseAddr("198.18.0.254")), Protocol: unix.RTPROT_STATIC}); err != nil {
			return err
		}
		_, errDirect = SyncPeersTarget(tg, []Peer{direct(2), direct(3)})
		_, errVXLAN = SyncPeersTarget(tg, []Peer{peer(2), direct(3)})
		return nil
	})
	for mode, err := range map[string]error{"direct": errDirect, "vxlan": errVXLAN} {
		if err == nil || !strings.Contains(err.Error(), "add route 10.244.2.0/24") || !strings.Contains(err.Error(), "which overlay does not touch") {
			t.Errorf("%s peer whose subnet has a static route on the underlay: err = %v, want a conflict error", mode, err)
		}
	}
	checkRoutes(t, host, peer(2).Subnet, static)
	checkRoutes(t, host, peer(3).Subnet, fmt.Sprintf("dev ul0 via 198.18.0.3 src %s proto %d", tg.DirectSrc, RouteProtocol))
	do(t, host, func() error {
		if _, err := RemoveOrphans("default", tg); err != nil {
			return err
		}
		_, err := SyncPeersTarget(tg, nil) // nothing wanted: only ours goes
		return err
	})
	checkRoutes(t, host, peer(2).Subnet, static)
	checkRoutes(t, host, peer(3).Subnet)
}

// Two networks share one underlay: each one's passes and orphan removal
// leave the other's direct routes alone, and still remove our stray routes
// inside their own range on other devices.
func TestDirectRoutesTwoNetworksShareUnderlay(t *testing.T) {
	host := newNS(t)
	tgA := PeerTarget{Device: DeviceName(1), Underlay: "ul0", DirectSrc: netip.MustParseAddr("10.244.1.0"), Range: testRange}
	tgB := PeerTarget{Device: DeviceName(2), Underlay: "ul0", DirectSrc: netip.MustParseAddr("10.245.1.0"), Range: mustPrefix("10.245.0.0/16")}
	peerB := Peer{Subnet: mustPrefix("10.245.3.0/24"), VTEPIP: netip.MustParseAddr("10.245.3.0"), VTEPMAC: mac(33),
		PublicIP: netip.MustParseAddr("198.18.0.3"), Mode: ModeDirect}
	routeB := fmt.Sprintf("dev ul0 via 198.18.0.3 src 10.245.1.0 proto %d", RouteProtocol)
	var againA, againB Plan
	var removedA, removedB []string
	do(t, host, func() (err error) {
		ul, err := addUnderlay("ul0", testUnderlay)
		if err != nil {
			return err
		}
		for _, s := range []struct {
			vni   uint32
			owner string
			addr  string
		}{{1, "a", "10.244.1.0/32"}, {2, "b", "10.245.1.0/32"}} {
			spec := vxlanSpec(s.vni)
			spec.UnderlayIndex, spec.Owner, spec.Port, spec.Address = ul.Attrs().Index, s.owner, uint16(8471+s.vni), mustPrefix(s.addr)
			spec.MAC = net.HardwareAddr{2, 0xaa, 0, 0, byte(s.vni), 1}
			if _, err := EnsureVXLAN(spec); err != nil {
				return err
			}
		}
		// A route of ours inside a's range left on another link: a stray.
		other, err := addUnderlay("ul1", "198.18.1.1/24")
		if err != nil {
			return err
		}
		if err := addDirectRouteOnce(device{other.Attrs().Index, "ul1"}, Route{Dst: mustPrefix("10.244.9.0/24"), Via: netip.MustParseAddr("198.18.1.9")}, false); err != nil {
			return err
		}
		if _, err := SyncPeersTarget(tgA, []Peer{direct(2)}); err != nil {
			return err
		}
		if _, err := SyncPeersTarget(tgB, []Peer{peerB}); err != nil {
			return err
		}
		if againA, err = SyncPeersTarget(tgA, []Peer{direct(2)}); err != nil {
			return err
		}
		if againB, err = SyncPeersTarget(tgB, []Peer{peerB}); err != nil {
			return err
		}
		if removedA, err = RemoveOrphans("a", tgA); err != nil {
			return err
		}
		removedB, err = RemoveOrphans("b", tgB)
		return err
	})
	if !againA.Empty() || !againB.Empty() {
		t.Errorf("second passes not no-ops: a %q, b %q", planLines(againA), planLines(againB))
	}
	if !slices.Equal(removedA, []string{"route 10.244.9.0/24"}) || len(removedB) > 0 {
		t.Errorf("RemoveOrphans removed %v for a (want the stray route only) and %v for b (want nothing)", removedA, removedB)
	}
	checkRoutes(t, host, peer(2).Subnet, fmt.Sprintf("dev ul0 via 198.18.0.2 src 10.244.1.0 proto %d", RouteProtocol))
	checkRoutes(t, host, peerB.Subnet, routeB)
	checkRoutes(t, host, mustPrefix("10.244.9.0/24"))

	do(t, host, func() error { _, err := SyncPeersTarget(tgA, nil); return err })
	checkRoutes(t, host, peer(2).Subnet)
	checkRoutes(t, host, peerB.Subnet, routeB)
}
