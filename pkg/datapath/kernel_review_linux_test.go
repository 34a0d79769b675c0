package datapath

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// These tests come from a review of the remembering Kernel; each failed
// before its fix.

// manyPeers are n hosts from index from on, in 10.100.0.0/14.
func manyPeers(from, n int) []Peer {
	var out []Peer
	for i := from; i < from+n; i++ {
		x, y := byte(i>>8), byte(i)
		out = append(out, Peer{
			Subnet:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 100 + x, y, 0}), 24),
			VTEPIP:   netip.AddrFrom4([4]byte{10, 100 + x, y, 0}),
			VTEPMAC:  net.HardwareAddr{2, 0x10, 0, 0, x, y},
			PublicIP: netip.AddrFrom4([4]byte{198, 19, x, y}),
		})
	}
	return out
}

// watchKernel runs k.Watch in host until the test ends and returns once
// it is subscribed.
func watchKernel(t *testing.T, host ns.NetNS, k *Kernel, device string) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = host.Do(func(ns.NetNS) error {
			k.Watch(ctx, func() []string { return []string{device} }, func(string) {})
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(300 * time.Millisecond)
}

// A change the kernel reports while a pass runs is not overwritten by
// what that pass stores afterwards (a forget landing mid-pass).
func TestKernelChangeDuringPassIsNotLost(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	k := NewKernel(time.Hour)
	target := PeerTarget{Device: spec.Name}
	base := manyPeers(1, 10)
	victim := base[0]
	do(t, host, func() error { _, err := k.SyncPeers(target, base); return err })
	watchKernel(t, host, k, spec.Name)
	big := append(append([]Peer{}, base...), manyPeers(1000, 3000)...)
	var wg sync.WaitGroup
	var passErr error
	wg.Go(func() {
		passErr = host.Do(func(ns.NetNS) error { _, err := k.SyncPeers(target, big); return err })
	})
	time.Sleep(20 * time.Millisecond) // into the pass, which takes far longer
	do(t, host, func() error { return deleteNeighbour(spec.Name, victim.VTEPIP) })
	wg.Wait()
	if passErr != nil {
		t.Fatal(passErr)
	}
	time.Sleep(300 * time.Millisecond) // the watch has seen the deletion
	var st rawState
	do(t, host, func() (err error) {
		if _, err = k.SyncPeers(target, big); err != nil {
			return err
		}
		st, err = dumpDevice(spec.Name)
		return err
	})
	if !hasNeigh(st.neighs, victim.VTEPIP, victim.VTEPMAC) {
		t.Errorf("neighbour %s deleted during a pass is still missing after the next pass", victim.VTEPIP)
	}
}

// Routes an older release wrote at metric 0 are moved to their metric in
// one pass; a LAN that moves gateway is then routed by the new one.
func TestKernelMigratesMetricZeroRoutes(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	lan := mustPrefix("192.168.50.0/24")
	gwA, gwB := peer(2), peer(3)
	gwA.Routes = []netip.Prefix{lan}
	k := NewKernel(time.Hour)
	target := PeerTarget{Device: spec.Name}
	var shown, got string
	do(t, host, func() error {
		link, err := netlink.LinkByName(spec.Name)
		if err != nil {
			return err
		}
		for _, r := range []Route{{Dst: gwA.Subnet, Via: gwA.VTEPIP}, {Dst: gwB.Subnet, Via: gwB.VTEPIP}, {Dst: lan, Via: gwA.VTEPIP}} {
			kr := ourKernelRoute(link.Attrs().Index, r)
			kr.Priority = 0 // as the older release wrote them
			kr.Flags = int(netlink.FLAG_ONLINK)
			if err := netlink.RouteAdd(kr); err != nil {
				return err
			}
		}
		if _, err := k.SyncPeers(target, []Peer{gwA, gwB}); err != nil {
			return err
		}
		b, _ := exec.Command("ip", "route", "show", "dev", spec.Name).CombinedOutput()
		shown = string(b)
		gwA2, gwB2 := peer(2), peer(3)
		gwB2.Routes = []netip.Prefix{lan}
		if _, err := k.SyncPeers(target, []Peer{gwA2, gwB2}); err != nil {
			return err
		}
		b, _ = exec.Command("ip", "route", "get", "192.168.50.1").CombinedOutput()
		got = string(b)
		return nil
	})
	lines := strings.Split(strings.TrimSpace(shown), "\n")
	for _, l := range lines {
		if !strings.Contains(l, " metric ") { // ip shows no metric for 0
			t.Errorf("after one pass, a route on %s is still at metric 0: %s", spec.Name, l)
		}
	}
	if len(lines) != 3 {
		t.Errorf("after one pass, routes on %s:\n%s\nwant the three, once each", spec.Name, shown)
	}
	if !strings.Contains(got, "via "+gwB.VTEPIP.String()) {
		t.Errorf("the LAN moved to %s, but: %s", gwB.VTEPIP, got)
	}
}

// A route that is not ours, added after ours at a lower metric, takes our
// route's traffic: a pass reports it.
func TestSyncPeersReportsAShadowingRoute(t *testing.T) {
	host, tg := directHost(t)
	var errPass error
	do(t, host, func() error {
		if _, err := SyncPeersTarget(tg, []Peer{peer(2)}); err != nil {
			return err
		}
		ul, err := netlink.LinkByName("ul0")
		if err != nil {
			return err
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: ul.Attrs().Index, Dst: toIPNet(peer(2).Subnet),
			Gw: toIP(netip.MustParseAddr("198.18.0.254")), Protocol: unix.RTPROT_STATIC}); err != nil {
			return err
		}
		_, errPass = SyncPeersTarget(tg, []Peer{peer(2)})
		return nil
	})
	if errPass == nil || !strings.Contains(errPass.Error(), "route "+peer(2).Subnet.String()+": a route to it that is not overlay's") {
		t.Errorf("pass with a static route shadowing ours: err = %v, want it named", errPass)
	}
}

// The underlay going down and up flushes the direct routes without a
// route event; the next pass puts them back.
func TestKernelRestoresDirectRoutesAfterUnderlayFlap(t *testing.T) {
	host, tg := directHost(t)
	k := NewKernel(time.Hour)
	do(t, host, func() error { _, err := k.SyncPeers(tg, []Peer{direct(2)}); return err })
	watchKernel(t, host, k, tg.Device)
	var after string
	do(t, host, func() error {
		for _, c := range [][]string{{"link", "set", "ul0", "down"}, {"link", "set", "ul0", "up"}} {
			if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v %s", c, err, out)
			}
		}
		time.Sleep(300 * time.Millisecond) // the watch has seen the link events
		if _, err := k.SyncPeers(tg, []Peer{direct(2)}); err != nil {
			return err
		}
		b, _ := exec.Command("ip", "route", "show", peer(2).Subnet.String()).CombinedOutput()
		after = string(b)
		return nil
	})
	if !strings.Contains(after, "via 198.18.0.2") {
		t.Errorf("direct route after an underlay flap and a pass: %q, want it restored", after)
	}
}

// What is remembered expires: a sync after verifyEvery dumps again and
// finds what changed unreported.
func TestKernelVerifiesAfterVerifyEvery(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	k := NewKernel(50 * time.Millisecond)
	target := PeerTarget{Device: spec.Name}
	var early, late Plan
	do(t, host, func() (err error) {
		if _, err = k.SyncPeers(target, []Peer{peer(2)}); err != nil {
			return err
		}
		if err := deleteNeighbour(spec.Name, peer(2).VTEPIP); err != nil {
			return err
		}
		if early, err = k.SyncPeers(target, []Peer{peer(2)}); err != nil {
			return err
		}
		time.Sleep(60 * time.Millisecond)
		late, err = k.SyncPeers(target, []Peer{peer(2)})
		return err
	})
	if !early.Empty() {
		t.Errorf("a sync within verifyEvery dumped: %q", planLines(early))
	}
	if len(late.AddNeighs) != 1 {
		t.Errorf("a sync after verifyEvery planned %q, want the neighbour restored", planLines(late))
	}
}
