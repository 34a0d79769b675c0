package subnet

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlaynet/overlay/pkg/etcdtest"
	"github.com/overlaynet/overlay/pkg/netconf"
)

func sessionReq(rec Record, cfg netconf.Config) AcquireRequest {
	return AcquireRequest{Network: "default", Config: cfg, Record: rec, TTL: 2 * time.Second, Quarantine: time.Minute}
}

// startSession starts a session and runs it until the test ends.
func startSession(t *testing.T, c *Client, req AcquireRequest) (*Session, Status) {
	t.Helper()
	s := c.NewSession(req, nil)
	st, err := s.Start(t.Context())
	if err != nil {
		t.Fatalf("start session for %s: %v", req.Record.HostID, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, st
}

func nextReport(t *testing.T, s *Session, within time.Duration) Status {
	t.Helper()
	select {
	case st := <-s.Reports():
		return st
	case <-time.After(within):
		t.Fatalf("no session report within %s", within)
		return Status{}
	}
}

// Finding 5: a restarted host adopts the etcd lease its state dir
// remembers, and a second process with the same host ID never takes over a
// key whose lease is alive and not its own.
func TestSessionFencesLiveKeyOfSameHostID(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	req := sessionReq(hostRecord(1), testNet)
	_, first := startSession(t, c, req)

	// A process that remembers another lease (or none on a cloned machine)
	// is refused; the first keeps its key.
	dup := req
	dup.PreviousLease = first.Lease + 1
	began := time.Now()
	_, err := c.NewSession(dup, nil).Start(t.Context())
	var conflict *HostConflictError
	if !errors.As(err, &conflict) || conflict.Cloned || conflict.Subnet != first.Subnet {
		t.Fatalf("duplicate start: err = %v, want a non-clone HostConflictError for %s", err, first.Subnet)
	}
	if waited := time.Since(began); waited < req.TTL {
		t.Errorf("duplicate refused after %s; it should first wait a TTL for a dead holder's lease to expire", waited)
	}
	clone := req
	clone.Record.PublicIP = netip.MustParseAddr("198.18.0.99")
	if _, err := c.NewSession(clone, nil).Start(t.Context()); !errors.As(err, &conflict) || !conflict.Cloned {
		t.Fatalf("clone start: err = %v, want a cloned HostConflictError", err)
	}
	ls, _, err := c.Leases(t.Context(), "default")
	if err != nil || len(ls) != 1 || ls[0].EtcdLease != first.Lease || ls[0].PublicIP != req.Record.PublicIP {
		t.Fatalf("leases after refused starts = %+v, %v; want only the first host's, unchanged", ls, err)
	}
}

func TestSessionRestartAdoptsRememberedLease(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	req := sessionReq(hostRecord(1), testNet)
	s := c.NewSession(req, nil)
	first, err := s.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s.Stop() // a SIGKILL or upgrade: the lease is not revoked
	again := req
	again.Previous, again.PreviousLease = first.Subnet, first.Lease
	_, st := startSession(t, c, again)
	if st.Subnet != first.Subnet || st.Lease != first.Lease {
		t.Fatalf("restart got %s lease %x, want %s lease %x", st.Subnet, st.Lease, first.Subnet, first.Lease)
	}
}

// Quarantine: a host that went away keeps its subnet reserved; others get
// other subnets, and it gets its own back.
func TestSessionQuarantine(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	small := netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/23"), SubnetLen: 24, VNI: 1, Port: 8472}
	req1 := sessionReq(hostRecord(1), small)
	s1 := c.NewSession(req1, nil)
	st1, err := s1.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s1.Stop()
	w := watch(t, c)
	w.waitFor(t, "host 1's lease to expire", func(ls []Lease) bool { return !has(ls, st1.Subnet) })

	_, st2 := startSession(t, c, sessionReq(hostRecord(2), small))
	if st2.Subnet == st1.Subnet {
		t.Fatalf("host 2 got %s, which is quarantined for host 1", st2.Subnet)
	}
	if _, err := c.NewSession(sessionReq(hostRecord(3), small), nil).Start(t.Context()); !errors.Is(err, ErrNetworkFull) {
		t.Fatalf("host 3 in a network whose only free subnet is quarantined: err = %v, want ErrNetworkFull", err)
	}
	back := req1
	back.Previous = st1.Subnet
	if _, st := startSession(t, c, back); st.Subnet != st1.Subnet {
		t.Fatalf("host 1 came back to %s, want its quarantined %s", st.Subnet, st1.Subnet)
	}
}

func TestSessionPutsDeletedKeyBack(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	_, st := startSession(t, c, sessionReq(hostRecord(1), testNet))
	w := watch(t, c)
	w.waitFor(t, "lease listed", func(ls []Lease) bool { return has(ls, st.Subnet) })
	if _, err := c.DeleteLease(t.Context(), "default", st.Subnet); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "lease deleted", func(ls []Lease) bool { return !has(ls, st.Subnet) })
	w.waitFor(t, "lease put back", func(ls []Lease) bool { return has(ls, st.Subnet) })
}

// A key of ours overwritten under another etcd lease is never overwritten
// back: the session reports the loss and leases another subnet.
func TestSessionNeverOverwritesForeignKey(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	s, st := startSession(t, c, sessionReq(hostRecord(1), testNet))
	other, err := c.cli.Grant(t.Context(), 60)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := EncodeRecord(hostRecord(2))
	key := c.Keys().Subnet("default", st.Subnet)
	if _, err := c.cli.Put(t.Context(), key, foreign, withLease(other.ID)); err != nil {
		t.Fatal(err)
	}
	lost := nextReport(t, s, 10*time.Second)
	if lost.Held || lost.Subnet != st.Subnet {
		t.Fatalf("report = %+v, want the loss of %s", lost, st.Subnet)
	}
	again := nextReport(t, s, 10*time.Second)
	if !again.Held || again.Subnet == st.Subnet {
		t.Fatalf("report = %+v, want a new subnet other than %s", again, st.Subnet)
	}
	resp, err := c.cli.Get(t.Context(), key)
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease != int64(other.ID) {
		t.Fatalf("the other host's key was touched: %+v, %v", resp, err)
	}
}

// Finding 6: a daemon that fails after leasing withdraws its lease at once
// instead of leaving peers a route for a whole TTL.
func TestSessionWithdraw(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	req := sessionReq(hostRecord(1), testNet)
	req.TTL = 30 * time.Second
	s := c.NewSession(req, nil)
	st, err := s.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	w := watch(t, c)
	w.waitFor(t, "lease listed", func(ls []Lease) bool { return has(ls, st.Subnet) })
	if err := s.Withdraw(t.Context()); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	w.waitFor(t, "lease withdrawn", func(ls []Lease) bool { return !has(ls, st.Subnet) })
	if d := time.Since(began); d > 5*time.Second {
		t.Fatalf("withdrawn lease vanished after %s, want at once", d)
	}
}

// Finding 6: a watch that fails right after every successful list backs
// off instead of spinning.
func TestListAndFollowBacksOffWhenWatchKeepsFailing(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	rounds := 0
	listAndFollow(ctx, func() error { rounds++; return nil }, time.Now)
	if rounds > 10 {
		t.Fatalf("%d list rounds in 1.5s with a watch that fails at once; want backoff (≤ 10)", rounds)
	}
	if rounds < 2 {
		t.Fatalf("%d rounds; the loop must keep retrying", rounds)
	}
}

func withLease(id clientv3.LeaseID) clientv3.OpOption { return clientv3.WithLease(id) }

// Evicting a lease (overlayctl lease release) frees the subnet from its
// quarantine: the operator says the host is gone for good.
func TestDeleteLeaseEndsQuarantine(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	small := netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/24"), SubnetLen: 25, VNI: 1, Port: 8472}
	s1 := c.NewSession(sessionReq(hostRecord(1), small), nil)
	st1, err := s1.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s1.Stop()
	startSession(t, c, sessionReq(hostRecord(2), small)) // takes the other subnet
	if _, err := c.DeleteLease(t.Context(), "default", st1.Subnet); err != nil {
		t.Fatal(err)
	}
	if _, st := startSession(t, c, sessionReq(hostRecord(3), small)); st.Subnet != st1.Subnet {
		t.Fatalf("host 3 got %s, want the evicted %s", st.Subnet, st1.Subnet)
	}
}

// Review finding: a host restarted after its underlay address changed finds
// its key under its old IP and its remembered lease. That is not a clone:
// once the old lease expires it gets its subnet back.
func TestSessionAddressChangeIsNotAClone(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	req := sessionReq(hostRecord(1), testNet)
	s := c.NewSession(req, nil)
	first, err := s.Start(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	s.Stop() // the old process is gone; its lease runs out
	moved := req
	moved.Record.PublicIP = netip.MustParseAddr("198.18.7.7")
	moved.Previous, moved.PreviousLease = first.Subnet, first.Lease
	_, st := startSession(t, c, moved)
	if st.Subnet != first.Subnet {
		t.Fatalf("after an address change the host got %s, want its %s", st.Subnet, first.Subnet)
	}
}
