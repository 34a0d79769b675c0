package subnet

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/etcdtest"
	"github.com/overlaynet/overlay/pkg/netconf"
)

var testNet = netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, VNI: 1, Port: 8472}

func connect(t *testing.T, srv *etcdtest.Server) *Client {
	t.Helper()
	c, err := Connect(t.Context(), ClientConfig{Endpoints: srv.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func hostRecord(i int) Record {
	return Record{
		HostID:   fmt.Sprintf("host-%d", i),
		Hostname: fmt.Sprintf("h%d", i),
		PublicIP: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}),
		VTEPMAC:  fmt.Sprintf("02:00:00:00:00:%02x", i),
	}
}

func acquire(t *testing.T, c *Client, cfg netconf.Config, rec Record, prev netip.Prefix) *HeldLease {
	t.Helper()
	h, err := c.Acquire(t.Context(), AcquireRequest{Network: "default", Config: cfg, Record: rec, Previous: prev, TTL: 10 * time.Second})
	if err != nil {
		t.Fatalf("acquire for %s: %v", rec.HostID, err)
	}
	t.Cleanup(h.Stop)
	return h
}

func TestConcurrentHostsGetDistinctSubnets(t *testing.T) {
	srv := etcdtest.New(t)
	// A small network makes collisions likely: 10 hosts race for 16 subnets.
	cfg := netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/20"), SubnetLen: 24, VNI: 1, Port: 8472}
	const hosts = 10
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		got  = map[netip.Prefix]string{}
		errs []error
	)
	for i := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := connect(t, srv) // its own connection, as separate hosts have
			h, err := c.Acquire(t.Context(), AcquireRequest{Network: "default", Config: cfg, Record: hostRecord(i), TTL: 10 * time.Second})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			t.Cleanup(h.Stop)
			if other, dup := got[h.Subnet]; dup {
				errs = append(errs, fmt.Errorf("subnet %s given to %s and host-%d", h.Subnet, other, i))
			}
			got[h.Subnet] = fmt.Sprintf("host-%d", i)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	leases, _, err := connect(t, srv).Leases(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != hosts || len(got) != hosts {
		t.Fatalf("got %d leases in etcd and %d distinct subnets, want %d", len(leases), len(got), hosts)
	}
	for _, l := range leases {
		if got[l.Subnet] != l.HostID {
			t.Errorf("etcd says %s is %s's, acquire said %s's", l.Subnet, l.HostID, got[l.Subnet])
		}
	}
}

func TestRestartedHostKeepsSubnet(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	first := acquire(t, c, testNet, hostRecord(1), netip.Prefix{})
	acquire(t, c, testNet, hostRecord(2), netip.Prefix{})

	// Crash: the daemon stops renewing but the key is still there (SIGKILL).
	first.Stop()
	again := acquire(t, c, testNet, hostRecord(1), netip.Prefix{})
	if again.Subnet != first.Subnet {
		t.Fatalf("after restart host got %s, had %s", again.Subnet, first.Subnet)
	}
	leases, _, err := c.Leases(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range leases {
		if l.Subnet == again.Subnet && l.EtcdLease != again.EtcdLease() {
			t.Errorf("reclaimed key is bound to etcd lease %x, want the new %x", l.EtcdLease, again.EtcdLease())
		}
	}

	// Gone for longer than the TTL: the key expired; the state dir remembers
	// the subnet and it is still free.
	if err := again.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	third := acquire(t, c, testNet, hostRecord(1), first.Subnet)
	if third.Subnet != first.Subnet {
		t.Fatalf("after expiry host got %s, had %s", third.Subnet, first.Subnet)
	}
}

func TestPreviousSubnetTakenByOtherHost(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	other := acquire(t, c, testNet, hostRecord(2), netip.Prefix{})
	mine := acquire(t, c, testNet, hostRecord(1), other.Subnet)
	if mine.Subnet == other.Subnet {
		t.Fatalf("host 1 was given host 2's subnet %s", mine.Subnet)
	}
}

func TestNetworkFull(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	cfg := netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/23"), SubnetLen: 24, VNI: 1, Port: 8472}
	acquire(t, c, cfg, hostRecord(1), netip.Prefix{})
	acquire(t, c, cfg, hostRecord(2), netip.Prefix{})
	_, err := c.Acquire(t.Context(), AcquireRequest{Network: "default", Config: cfg, Record: hostRecord(3), TTL: 10 * time.Second})
	if !errors.Is(err, ErrNetworkFull) {
		t.Fatalf("third host in a two-subnet network: err = %v, want ErrNetworkFull", err)
	}
}

// watcher collects snapshots from WatchLeases.
type watcher struct {
	mu   sync.Mutex
	last []Lease
	ch   chan struct{}
}

func watch(t *testing.T, c *Client) *watcher {
	w := &watcher{ch: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.WatchLeases(ctx, "default", func(ls []Lease) {
			w.mu.Lock()
			w.last = ls
			w.mu.Unlock()
			select {
			case w.ch <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// waitFor waits until the latest snapshot satisfies ok.
func (w *watcher) waitFor(t *testing.T, what string, ok func([]Lease) bool) {
	t.Helper()
	deadline := time.NewTimer(15 * time.Second)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		last := w.last
		w.mu.Unlock()
		if last != nil && ok(last) {
			return
		}
		select {
		case <-w.ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; last snapshot %v", what, last)
		}
	}
}

func has(ls []Lease, s netip.Prefix) bool {
	for _, l := range ls {
		if l.Subnet == s {
			return true
		}
	}
	return false
}

func TestDeletedLeaseLeavesSnapshot(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	a := acquire(t, c, testNet, hostRecord(1), netip.Prefix{})
	w := watch(t, connect(t, srv))
	w.waitFor(t, "host 1 in snapshot", func(ls []Lease) bool { return has(ls, a.Subnet) })

	b := acquire(t, c, testNet, hostRecord(2), netip.Prefix{})
	w.waitFor(t, "host 2 added", func(ls []Lease) bool { return len(ls) == 2 && has(ls, b.Subnet) })

	if ok, err := c.DeleteLease(t.Context(), "default", b.Subnet); err != nil || !ok {
		t.Fatalf("DeleteLease = %v, %v", ok, err)
	}
	w.waitFor(t, "host 2 withdrawn", func(ls []Lease) bool { return len(ls) == 1 && has(ls, a.Subnet) })

	// The owner notices and puts its key back under its live lease.
	if err := b.Reassert(t.Context()); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "host 2 reasserted", func(ls []Lease) bool { return len(ls) == 2 && has(ls, b.Subnet) })
}

func TestStoppedHostExpires(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	w := watch(t, c)
	h, err := c.Acquire(t.Context(), AcquireRequest{Network: "default", Config: testNet, Record: hostRecord(1), TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "lease present", func(ls []Lease) bool { return has(ls, h.Subnet) })
	// Renewals keep it alive past the TTL...
	time.Sleep(3 * time.Second)
	if ls, _, _ := c.Leases(t.Context(), "default"); !has(ls, h.Subnet) {
		t.Fatal("lease expired while it was being kept alive")
	}
	// ...and once they stop, the key goes within the TTL.
	h.Stop()
	w.waitFor(t, "lease expired", func(ls []Lease) bool { return !has(ls, h.Subnet) })
}

func TestInvalidRecordIsSkipped(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	a := acquire(t, c, testNet, hostRecord(1), netip.Prefix{})
	key := c.Keys().Subnet("default", netip.MustParsePrefix("10.244.200.0/24"))
	if _, err := c.cli.Put(t.Context(), key, `{"version":1,"kind":"host","hostID":"x","publicIP":"not-an-ip"}`); err != nil {
		t.Fatal(err)
	}
	ls, _, err := c.Leases(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || ls[0].Subnet != a.Subnet {
		t.Fatalf("Leases = %v, want only %s", ls, a.Subnet)
	}
	// The subnet of the unreadable record is still not handed out.
	snap, err := c.snapshotMap(t.Context(), "default", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := snap.subnets[netip.MustParsePrefix("10.244.200.0/24")]; !ok {
		t.Fatal("unreadable record's subnet is not counted as occupied")
	}
}

func TestNetworkConfigRoundTrip(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	if _, err := c.NetworkConfig(t.Context(), "default"); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("missing config: err = %v, want ErrNoConfig", err)
	}
	got := make(chan netconf.Config, 1)
	waiting := make(chan struct{})
	go func() {
		cfg, err := c.WaitNetworkConfig(t.Context(), "default", func() { close(waiting) })
		if err != nil {
			t.Error(err)
		}
		got <- cfg
	}()
	<-waiting
	if err := c.SetNetworkConfig(t.Context(), "default", testNet); err != nil {
		t.Fatal(err)
	}
	select {
	case cfg := <-got:
		if cfg != testNet {
			t.Fatalf("WaitNetworkConfig = %+v, want %+v", cfg, testNet)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WaitNetworkConfig did not return after the config was written")
	}
	if _, err := c.cli.Put(t.Context(), c.Keys().Config("bad"), `{"network":"10.244.0.0/16","vni":0}`); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitNetworkConfig(t.Context(), "bad", nil); err == nil {
		t.Fatal("invalid config accepted")
	}
}

func TestConnectUnreachable(t *testing.T) {
	_, err := Connect(t.Context(), ClientConfig{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: 500 * time.Millisecond})
	if err == nil {
		t.Fatal("Connect to a closed port succeeded")
	}
}

// TestWatchFromCompactedRevisionReturns: a watch that starts below the
// compaction point ends at once (so WatchLeases re-lists) instead of hanging
// or silently missing events.
func TestWatchFromCompactedRevisionReturns(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	_, rev, err := c.Leases(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	h := acquire(t, c, testNet, hostRecord(1), netip.Prefix{})
	acquire(t, c, testNet, hostRecord(2), netip.Prefix{})
	_, now, err := c.Leases(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.cli.Compact(t.Context(), now); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	feed := NewLeaseFeed()
	go func() {
		defer close(done)
		c.follow(t.Context(), "default", rev+1, feed)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watch from a compacted revision did not end")
	}
	select {
	case <-feed.Changed():
		t.Fatalf("a compacted watch changed the lease set to %v; it must leave that to the re-list", feed.Snapshot())
	default:
	}
	// And the full loop still converges on the current state.
	w := watch(t, c)
	w.waitFor(t, "both hosts after compaction", func(ls []Lease) bool { return len(ls) == 2 && has(ls, h.Subnet) })
}

// A burst of lease writes is applied to the feed as it arrives and costs
// a consumer that was busy one snapshot, holding all of them.
func TestLeaseFeedMergesABurst(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	feed := NewLeaseFeed()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); c.FollowLeases(ctx, "default", feed) }()
	t.Cleanup(func() { cancel(); <-done })
	<-feed.Changed() // the first list
	const n = 100
	for i := range n {
		rec := hostRecord(100 + i)
		v, err := EncodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		s := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24)
		if _, err := c.cli.Put(t.Context(), c.keys.Subnet("default", s), v); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.After(10 * time.Second)
	for len(feed.Snapshot()) < n {
		select {
		case <-deadline:
			t.Fatalf("feed holds %d leases, want %d", len(feed.Snapshot()), n)
		case <-time.After(5 * time.Millisecond):
		}
	}
	signals := 0
	for {
		select {
		case <-feed.Changed():
			signals++
			continue
		default:
		}
		break
	}
	if signals != 1 {
		t.Errorf("%d writes while the consumer was busy left %d pending signals, want 1", n, signals)
	}
}

// A start that cannot remember its lease writes no key and leaves no etcd
// lease behind, though the reservation's lease is granted meanwhile.
func TestFailedRememberLeavesNothing(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	refused := errors.New("state dir is read-only")
	_, err := c.Acquire(t.Context(), AcquireRequest{Network: "default", Config: testNet, Record: hostRecord(1),
		TTL: 10 * time.Second, Quarantine: time.Minute,
		Remember: func(netip.Prefix, int64) error { return refused }})
	if !errors.Is(err, refused) {
		t.Fatalf("Acquire = %v, want the Remember error", err)
	}
	if ls, _, err := c.Leases(t.Context(), "default"); err != nil || len(ls) != 0 {
		t.Fatalf("leases after a failed start = %+v, %v; want none", ls, err)
	}
	if res, err := c.reservationsAt(t.Context(), "default", 0); err != nil || len(res) != 0 {
		t.Fatalf("reservations after a failed start = %+v, %v; want none", res, err)
	}
	left, err := c.cli.Leases(t.Context())
	if err != nil || len(left.Leases) != 0 {
		t.Fatalf("etcd leases after a failed start = %+v, %v; want none", left, err)
	}
}

// The other networks' configs are found among every network's leases,
// reservations and stray keys, one network at a time.
func TestOtherNetworkConfigs(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	ctx := t.Context()
	k := c.Keys()
	cfgOf := func(cidr string, vni uint32) netconf.Config {
		return netconf.Config{Network: netip.MustParsePrefix(cidr), SubnetLen: 24, VNI: vni, Port: 8472}
	}
	put := func(key, value string) {
		t.Helper()
		if _, err := c.cli.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	putCfg := func(name string, cfg netconf.Config) {
		t.Helper()
		data, err := cfg.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		put(k.Config(name), string(data))
	}
	want := map[string]netconf.Config{
		"a":   cfgOf("10.245.0.0/16", 2),
		"a-b": cfgOf("10.246.0.0/16", 3), // sorts before "a/" ('-' < '/')
		"z9":  cfgOf("10.247.0.0/16", 4),
	}
	for name, cfg := range want {
		putCfg(name, cfg)
	}
	putCfg("default", testNet)
	for i := range 3 {
		s := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 24)
		put(k.Subnet("default", s), "{}")
		put(k.Reservation("default", s), "host-1")
		put(k.Subnet("a", netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 245, byte(i), 0}), 24)), "{}")
	}
	put(k.Networks()+"a-b/0stray", "x")                                   // sorts before a-b's config
	put(k.Networks()+"stray", "x")                                        // no network's key
	put(k.Subnet("noconfig", netip.MustParsePrefix("10.9.0.0/24")), "{}") // leases, no config
	put(k.Config("bad"), `{"network":"10.244.0.0/16","vni":0}`)
	got, err := c.OtherNetworkConfigs(ctx, "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("OtherNetworkConfigs = %v, want %v", got, want)
	}
	for name, cfg := range want {
		if got[name] != cfg {
			t.Errorf("network %s: got %+v, want %+v", name, got[name], cfg)
		}
	}
	if all, err := c.OtherNetworkConfigs(ctx, ""); err != nil || len(all) != len(want)+1 || all["default"] != testNet {
		t.Errorf("OtherNetworkConfigs skipping none = %v, %v; want default too", all, err)
	}
}
