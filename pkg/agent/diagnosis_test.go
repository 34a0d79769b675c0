package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/etcdtest"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/probe"
	"github.com/overlaynet/overlay/pkg/statusfile"
)

// fakeProber stands in for pkg/probe: a real one sends ICMP in the test
// process's namespace, which is the machine's own.
type fakeProber struct {
	mu      sync.Mutex
	targets []probe.Target
	results map[netip.Prefix]probe.State
	moved   []probe.Transition
	changes chan struct{}
}

func newFakeProber() *fakeProber {
	return &fakeProber{results: map[netip.Prefix]probe.State{}, changes: make(chan struct{}, 1)}
}

func (f *fakeProber) SetTargets(ts []probe.Target) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.targets = slices.Clone(ts)
}

func (f *fakeProber) Results() []probe.Result {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []probe.Result
	for _, t := range f.targets {
		st, ok := f.results[t.Peer]
		if !ok {
			st = probe.StateUnknown
		}
		out = append(out, probe.Result{Peer: t.Peer, Name: t.Name, Overlay: t.Overlay, Underlay: t.Underlay, State: st,
			OverlayPath: probe.PathStats{Sent: 3, Received: 3, RTT: time.Millisecond}})
	}
	return out
}

func (f *fakeProber) Changes() <-chan struct{}      { return f.changes }
func (f *fakeProber) PeerInterval() time.Duration   { return 5 * time.Second }
func (f *fakeProber) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (f *fakeProber) Transitions() []probe.Transition {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.moved
	f.moved = nil
	return out
}

func (f *fakeProber) set(p netip.Prefix, st probe.State) {
	f.mu.Lock()
	was, ok := f.results[p]
	if !ok {
		was = probe.StateUnknown
	}
	f.results[p] = st
	f.moved = append(f.moved, probe.Transition{Result: probe.Result{Peer: p, State: st}, Was: was})
	f.mu.Unlock()
	select {
	case f.changes <- struct{}{}:
	default:
	}
}

func (f *fakeProber) targetList() []probe.Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.targets)
}

// startWithProber is start with a prober (nil: none).
func (h *harness) startWithProber(p Prober) *Agent {
	h.t.Helper()
	a, err := New(h.cfg, Deps{Etcd: h.etcd, Datapath: h.dp, Registry: h.reg, Prober: p})
	if err != nil {
		h.t.Fatal(err)
	}
	if err := a.Start(h.t.Context()); err != nil {
		h.t.Fatalf("start: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	h.t.Cleanup(func() { cancel(); <-done })
	h.a = a
	return a
}

// Every peer is a probe target: its VTEP address through the overlay, its
// public IP on the underlay.
func TestAgentProbesEveryPeer(t *testing.T) {
	h := newHarness(t, etcdtest.New(t))
	setConfig(t, h.etcd, testNet)
	p1 := h.peer(1, "198.18.0.12", "02:00:00:00:00:02")
	fp := newFakeProber()
	h.startWithProber(fp)
	want := []probe.Target{{Peer: p1.Subnet, Overlay: p1.Subnet.Addr(), Underlay: netip.MustParseAddr("198.18.0.12")}}
	eventually(t, 2*time.Second, "one target", func() bool { return slices.Equal(fp.targetList(), want) })
	p2 := h.peer(2, "198.18.0.13", "02:00:00:00:00:03")
	eventually(t, 2*time.Second, "two targets", func() bool {
		return len(fp.targetList()) == 2 && slices.ContainsFunc(fp.targetList(), func(t probe.Target) bool { return t.Peer == p2.Subnet })
	})
}

// With --fix-checksum-offload, a peer whose overlay path breaks while its
// underlay answers gets tx checksum offload turned off on the VXLAN
// device; without it, nothing is changed.
func TestAgentFixesChecksumOffloadWhenAsked(t *testing.T) {
	for _, fix := range []bool{false, true} {
		t.Run(map[bool]string{false: "not asked", true: "asked"}[fix], func(t *testing.T) {
			h := newHarness(t, etcdtest.New(t))
			h.cfg.FixChecksumOffload = fix
			setConfig(t, h.etcd, testNet)
			p1 := h.peer(1, "198.18.0.12", "02:00:00:00:00:02")
			fp := newFakeProber()
			a := h.startWithProber(fp)
			fp.set(p1.Subnet, probe.StateOK)
			fp.set(p1.Subnet, probe.StateOverlayBroken)
			eventually(t, 2*time.Second, "the broken state counted", func() bool {
				return testutil.ToFloat64(a.m.probeChanges.WithLabelValues("overlay_broken")) == 1
			})
			if fix {
				eventually(t, 2*time.Second, "offload off", func() bool { on, _ := h.dp.TxChecksumOffload("overlay.1"); return !on })
				eventually(t, 2*time.Second, "metric says so", func() bool { return testutil.ToFloat64(a.m.txChecksumOff) == 1 })
				// A device created again comes back with offload on: the
				// pass turns it off again.
				h.dp.deleteDevice("overlay.1")
				eventually(t, 2*time.Second, "off again on the new device", func() bool {
					on, err := h.dp.TxChecksumOffload("overlay.1")
					return err == nil && !on
				})
				return
			}
			time.Sleep(300 * time.Millisecond)
			h.dp.mu.Lock()
			calls := strings.Join(h.dp.calls, "\n")
			h.dp.mu.Unlock()
			if strings.Contains(calls, "tx-checksum") {
				t.Fatalf("offload changed without the flag:\n%s", calls)
			}
		})
	}
}

// The status file says who this host is, its lease, the last pass and
// each peer's probe state, and follows a change within a couple of
// seconds.
func TestAgentWritesStatusFile(t *testing.T) {
	h := newHarness(t, etcdtest.New(t))
	setConfig(t, h.etcd, testNet)
	p1 := h.peer(1, "198.18.0.12", "02:00:00:00:00:02")
	fp := newFakeProber()
	h.startWithProber(fp)
	path := statusfile.Path(h.cfg.RunDir, "default")
	var s statusfile.Status
	eventually(t, 5*time.Second, "status with the peer", func() bool {
		var err error
		s, err = statusfile.Read(path)
		return err == nil && len(s.Peers) == 1 && s.LastPass.At.After(time.Time{})
	})
	if !s.Lease.Held || s.Lease.Subnet != h.subnet() || s.VTEP.Device != "overlay.1" || s.MTU != 1450 || s.PeersWanted != 1 ||
		s.HostID == "" || s.PID != os.Getpid() || s.LastRepair.Repaired["device"] != 1 || !s.Probe.Enabled ||
		s.Peers[0].Name != "p1" {
		t.Fatalf("status %+v", s)
	}
	fp.set(p1.Subnet, probe.StateOverlayBroken)
	eventually(t, 5*time.Second, "the broken state in the status", func() bool {
		s, err := statusfile.Read(path)
		return err == nil && len(s.Peers) == 1 && s.Peers[0].State == "overlay_broken"
	})
}

// /readyz looks at the host file now: deleted, the agent is not ready
// until a pass has written it again.
func TestAgentNotReadyWithoutHostFile(t *testing.T) {
	h := newHarness(t, etcdtest.New(t))
	setConfig(t, h.etcd, testNet)
	a := h.start()
	if !a.Ready() {
		t.Fatal("not ready after start")
	}
	if err := os.Remove(hostfile.Path(h.cfg.RunDir, "default")); err != nil {
		t.Fatal(err)
	}
	if a.Ready() || testutil.ToFloat64(a.readiness()) != 0 {
		t.Fatal("ready with the host file gone")
	}
	eventually(t, 3*time.Second, "ready again", a.Ready)
}

// The kernel's entries are counted at scrape time against what was
// applied: peers wanted and programmed agree with the datapath.
func TestAgentMetricsCountKernel(t *testing.T) {
	h := newHarness(t, etcdtest.New(t))
	setConfig(t, h.etcd, testNet)
	h.peer(1, "198.18.0.12", "02:00:00:00:00:02")
	h.peer(2, "198.18.0.13", "02:00:00:00:00:03")
	a := h.start()
	eventually(t, 2*time.Second, "two peers wanted", func() bool { return testutil.ToFloat64(a.m.peers) == 2 })
	const want = `
# HELP overlay_peers_programmed Wanted peers whose route, neighbour and FDB entries are all in the kernel as etcd says.
# TYPE overlay_peers_programmed gauge
overlay_peers_programmed{network="default"} 2
`
	if err := testutil.GatherAndCompare(h.reg, strings.NewReader(want), "overlay_peers_programmed"); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(h.reg, "overlay_datapath_entries", "overlay_lease_info", "overlay_lease_expiry_seconds")
	if err != nil || n != 6 {
		t.Fatalf("%d series (%v), want 4 entry kinds, the lease info and its expiry", n, err)
	}
}

// A kernel that cannot be read leaves its series out of the scrape; the
// rest is still served (an invalid metric would fail the whole scrape).
func TestAgentScrapeSurvivesKernelReadError(t *testing.T) {
	h := newHarness(t, etcdtest.New(t))
	setConfig(t, h.etcd, testNet)
	h.start()
	h.dp.mu.Lock()
	h.dp.failCensus = errors.New("look up device overlay.1: not found")
	h.dp.mu.Unlock()
	n, err := testutil.GatherAndCount(h.reg, "overlay_datapath_entries", "overlay_ready")
	if err != nil || n != 1 {
		t.Fatalf("scrape with the kernel unreadable: %d series of entries and readiness, err %v; want readiness alone", n, err)
	}
}

// Drift is what the kernel lost or changed while the wanted state stayed;
// entries for peers that came or went are programming, not drift.
func TestSplitDrift(t *testing.T) {
	mk := func(n int) datapath.Peer {
		return datapath.Peer{Subnet: netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", n)), VTEPIP: netip.MustParseAddr(fmt.Sprintf("10.244.%d.0", n)),
			VTEPMAC: net.HardwareAddr{2, 0, 0, 0, 0, byte(n)}, PublicIP: netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", n))}
	}
	p1, p2, p3 := mk(1), mk(2), mk(3)
	prev := &Wanted{Peers: []datapath.Peer{p1, p2}}
	now := &Wanted{Peers: []datapath.Peer{p1, p3}} // p2 left, p3 came
	plan := datapath.Plan{
		AddFDB:    []datapath.FDBEntry{{MAC: p1.VTEPMAC, Dst: p1.PublicIP}, {MAC: p3.VTEPMAC, Dst: p3.PublicIP}},
		AddNeighs: []datapath.Neigh{{IP: p3.VTEPIP, MAC: p3.VTEPMAC}},
		AddRoutes: []datapath.Route{{Dst: p3.Subnet, Via: p3.VTEPIP}},
		DelRoutes: []datapath.Route{{Dst: p2.Subnet, Via: p2.VTEPIP}, {Dst: netip.MustParsePrefix("10.244.9.0/24")}},
		DelFDB:    []datapath.FDBEntry{{MAC: p2.VTEPMAC, Dst: p2.PublicIP}},
	}
	drift, churn := splitDrift(prev, now, plan)
	wantDrift := map[string]int{fdbAdded: 1, routeRemoved: 1}
	wantChurn := map[string]int{fdbAdded: 1, neighAdded: 1, routeAdded: 1, routeRemoved: 1, fdbRemoved: 1}
	if !maps.Equal(drift, wantDrift) || !maps.Equal(churn, wantChurn) {
		t.Fatalf("drift %v churn %v\nwant %v and %v", drift, churn, wantDrift, wantChurn)
	}
	if drift, _ := splitDrift(nil, now, plan); len(drift) != 0 {
		t.Fatalf("a first pass counts drift: %v", drift)
	}
	// Another device: everything is written again, and none of it is drift.
	moved := &Wanted{Peers: now.Peers, VXLAN: datapath.VXLANSpec{Name: "overlay.2"}}
	if drift, _ := splitDrift(prev, moved, plan); len(drift) != 0 {
		t.Fatalf("a new device counts drift: %v", drift)
	}
	// A peer switching to direct routing: its old route's removal is the
	// switch, not drift.
	d1 := p1
	d1.Mode = datapath.ModeDirect
	sw := datapath.Plan{AddDirect: []datapath.Route{{Dst: p1.Subnet, Via: p1.PublicIP}}, DelRoutes: []datapath.Route{{Dst: p1.Subnet, Via: p1.VTEPIP}}}
	if drift, churn := splitDrift(&Wanted{Peers: []datapath.Peer{p1}}, &Wanted{Peers: []datapath.Peer{d1}}, sw); len(drift) != 0 || churn[routeRemoved] != 1 || churn[routeAdded] != 1 {
		t.Fatalf("a mode switch: drift %v churn %v, want all churn", drift, churn)
	}
}
