package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/overlaynet/overlay/pkg/etcdtest"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/subnet"
)

var testNet = netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, VNI: 1, Port: 8472}

type harness struct {
	t    *testing.T
	etcd *subnet.Client
	dp   *fakeDatapath
	cfg  Config
	reg  *prometheus.Registry
	a    *Agent
}

func newHarness(t *testing.T, srv *etcdtest.Server) *harness {
	t.Helper()
	c, err := subnet.Connect(t.Context(), subnet.ClientConfig{Endpoints: srv.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	dir := t.TempDir()
	return &harness{t: t, etcd: c, dp: newFakeDatapath(), reg: prometheus.NewRegistry(), cfg: Config{
		Network: "default", Hostname: "me", Bridge: "overlay0",
		RunDir: dir + "/run", StateDir: dir + "/state",
		LeaseTTL: 2 * time.Second, ResyncInterval: 10 * time.Second, Quarantine: time.Minute,
	}}
}

func setConfig(t *testing.T, c *subnet.Client, cfg netconf.Config) {
	t.Helper()
	if err := c.SetNetworkConfig(t.Context(), "default", cfg); err != nil {
		t.Fatal(err)
	}
}

// start starts the agent and runs it until the test ends.
func (h *harness) start() *Agent {
	h.t.Helper()
	return h.startWithProber(nil)
}

// peer leases a subnet for another host directly in etcd.
func (h *harness) peer(i int, publicIP, mac string) *subnet.HeldLease {
	h.t.Helper()
	rec := subnet.Record{HostID: fmt.Sprintf("peer-%d", i), Hostname: fmt.Sprintf("p%d", i), PublicIP: netip.MustParseAddr(publicIP), VTEPMAC: mac}
	held, err := h.etcd.Acquire(h.t.Context(), subnet.AcquireRequest{Network: "default", Config: testNet, Record: rec, TTL: 30 * time.Second})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(held.Stop)
	return held
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (h *harness) hostFile() (hostfile.HostFile, error) {
	return hostfile.Read(hostfile.Path(h.cfg.RunDir, "default"))
}

// subnet is the agent's subnet, as its host file says.
func (h *harness) subnet() netip.Prefix {
	h.t.Helper()
	hf, err := h.hostFile()
	if err != nil {
		h.t.Fatal(err)
	}
	return hf.Subnet
}

func (h *harness) peersOn(dev string) []netip.Prefix {
	_, peers, _ := h.dp.state()
	return peers[dev]
}

func TestAgentProgramsPeersAndWritesHostFile(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, testNet)
	p := h.peer(1, "198.18.0.12", "02:00:00:00:00:02")
	a := h.start()
	hf, err := h.hostFile()
	if err != nil {
		t.Fatalf("host file after start: %v", err)
	}
	devs, _, br := h.dp.state()
	if _, ok := devs["overlay.1"]; !ok || br.Gateway.Addr() != hf.Gateway || hf.MTU != 1450 {
		t.Fatalf("devices %v bridge %+v host file %+v", devs, br, hf)
	}
	if got := h.peersOn("overlay.1"); !slices.Equal(got, []netip.Prefix{p.Subnet}) {
		t.Fatalf("peers = %v, want %s", got, p.Subnet)
	}
	if !a.Ready() {
		t.Fatal("agent not ready after start")
	}
	if err := hostfile.CheckReady(hostfile.ReadyPath(h.cfg.RunDir, "default"), time.Now()); err != nil {
		t.Fatalf("ready stamp: %v", err)
	}
	q := h.peer(2, "198.18.0.13", "02:00:00:00:00:03")
	eventually(t, 2*time.Second, "second peer programmed", func() bool { return len(h.peersOn("overlay.1")) == 2 })
	q.Release(t.Context())
	eventually(t, 2*time.Second, "released peer removed", func() bool { return slices.Equal(h.peersOn("overlay.1"), []netip.Prefix{p.Subnet}) })
}

// Finding 7: records that would misroute are skipped, logged and counted.
func TestAgentRejectsMisroutingRecords(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, testNet)
	good := h.peer(1, "198.18.0.12", "02:00:00:00:00:02")
	h.peer(2, "10.244.5.5", "02:00:00:00:00:03")  // public IP inside the overlay
	h.peer(3, "198.18.0.12", "02:00:00:00:00:04") // another host's public IP, another MAC
	h.peer(4, "198.18.0.11", "02:00:00:00:00:05") // this host's own public IP
	h.start()
	if got := h.peersOn("overlay.1"); !slices.Equal(got, []netip.Prefix{good.Subnet}) {
		t.Fatalf("peers = %v, want only %s", got, good.Subnet)
	}
	inOverlay := testutil.ToFloat64(h.a.m.rejected.WithLabelValues(RejectPublicIPInOverlay))
	dup := testutil.ToFloat64(h.a.m.rejected.WithLabelValues(RejectDuplicatePublicIP))
	if inOverlay != 1 || dup != 2 {
		t.Fatalf("rejections counted: in overlay %v, duplicate %v; want 1 and 2", inOverlay, dup)
	}
}

// Finding 2: lease snapshots and subnet changes arrive from different
// goroutines; the published state must always end with the newest of
// both (a snapshot is never overwritten by an older copy).
func TestAgentSubnetChangeKeepsNewestLeases(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, testNet)
	a := h.start()
	first := h.subnet()
	var peers []netip.Prefix
	for i := range 5 {
		// Take our subnet away (a foreign key under another lease) while
		// peers come and go: the agent must take a new subnet and still
		// program every peer that exists.
		if i == 2 {
			h.stealOwnKey(first, srv.Endpoints())
		}
		p := h.peer(10+i, fmt.Sprintf("198.18.1.%d", 10+i), fmt.Sprintf("02:00:00:00:01:%02x", i))
		peers = append(peers, p.Subnet)
	}
	eventually(t, 10*time.Second, "new subnet", func() bool {
		hf, err := h.hostFile()
		return err == nil && hf.Subnet != first
	})
	eventually(t, 5*time.Second, "every peer programmed after the subnet change", func() bool {
		got := h.peersOn("overlay.1")
		for _, p := range peers {
			if !slices.Contains(got, p) {
				return false
			}
		}
		return true
	})
	if n := testutil.ToFloat64(a.m.subnetChanges); n != 1 {
		t.Fatalf("subnet changes counted %v, want 1", n)
	}
}

// stealOwnKey overwrites the agent's subnet key with another host's record
// under another etcd lease, as a buggy or malicious writer would.
func (h *harness) stealOwnKey(s netip.Prefix, endpoints []string) {
	h.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		h.t.Fatal(err)
	}
	defer cli.Close()
	grant, err := cli.Grant(h.t.Context(), 60)
	if err != nil {
		h.t.Fatal(err)
	}
	rec := `{"version":1,"kind":"host","hostID":"thief","publicIP":"198.18.2.1","vtepMAC":"02:00:00:00:09:09"}`
	if _, err := cli.Put(h.t.Context(), h.etcd.Keys().Subnet("default", s), rec, clientv3.WithLease(grant.ID)); err != nil {
		h.t.Fatal(err)
	}
}

// Readiness follows the present: the ready stamp goes when the lease is
// lost and comes back with it.
func TestAgentReadinessFollowsLease(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, testNet)
	a := h.start()
	stamp := hostfile.ReadyPath(h.cfg.RunDir, "default")
	h.stealOwnKey(h.subnet(), srv.Endpoints())
	eventually(t, 10*time.Second, "ready again on a new subnet", func() bool {
		hf, err := h.hostFile()
		return err == nil && hf.Subnet != netip.Prefix{} && a.Ready() && hostfile.CheckReady(stamp, time.Now()) == nil &&
			testutil.ToFloat64(a.m.leaseLost) == 1
	})
}

// Finding 4: a host file deleted by hand is rewritten, a deleted VXLAN
// device is recreated on its kernel event, within 2s.
func TestAgentRepairsDriftWithin2s(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, testNet)
	p := h.peer(1, "198.18.0.12", "02:00:00:00:00:02")
	h.start()
	path := hostfile.Path(h.cfg.RunDir, "default")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "host file rewritten", func() bool { _, err := h.hostFile(); return err == nil })
	h.dp.deleteDevice("overlay.1")
	eventually(t, 2*time.Second, "device and peers back", func() bool { return slices.Equal(h.peersOn("overlay.1"), []netip.Prefix{p.Subnet}) })
	h.dp.mu.Lock()
	h.dp.forward = false
	h.dp.mu.Unlock()
	eventually(t, 2*time.Second, "ip_forward back on", func() bool { on, _ := h.dp.IPv4Forwarding(); return on })
}

// Finding 4: a VNI change moves everything to the new device and removes
// the old one with its routes; an MTU override applies without restart.
func TestAgentAppliesConfigChanges(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, testNet)
	p := h.peer(1, "198.18.0.12", "02:00:00:00:00:02")
	h.start()
	changed := testNet
	changed.VNI, changed.MTU = 42, 1400
	setConfig(t, h.etcd, changed)
	eventually(t, 2*time.Second, "peers on overlay.42 and overlay.1 gone", func() bool {
		devs, peers, _ := h.dp.state()
		_, old := devs["overlay.1"]
		return !old && slices.Equal(peers["overlay.42"], []netip.Prefix{p.Subnet}) && devs["overlay.42"].MTU == 1400
	})
	eventually(t, 2*time.Second, "host file with the new MTU and VNI", func() bool {
		hf, err := h.hostFile()
		return err == nil && hf.MTU == 1400 && hf.VNI == 42
	})
}

// Finding 6: a start that fails after leasing withdraws the lease at once.
func TestAgentFailedStartWithdrawsLease(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, testNet)
	h.cfg.LeaseTTL = 30 * time.Second
	h.dp.failVX = errors.New("operation not permitted")
	a, err := New(h.cfg, Deps{Etcd: h.etcd, Datapath: h.dp})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "operation not permitted") {
		t.Fatalf("start with a failing datapath: err = %v", err)
	}
	ls, _, err := h.etcd.Leases(t.Context(), "default")
	if err != nil || len(ls) != 0 {
		t.Fatalf("leases after a failed start = %v, %v; want none (withdrawn)", ls, err)
	}
}

// Finding 5: a second agent on the same state dir refuses with one line.
func TestAgentStateDirLock(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, testNet)
	h.start()
	second, err := New(h.cfg, Deps{Etcd: h.etcd, Datapath: newFakeDatapath()})
	if err != nil {
		t.Fatal(err)
	}
	err = second.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "another overlayd already serves network default") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("second agent on one state dir: err = %v", err)
	}
}
