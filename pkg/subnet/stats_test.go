package subnet

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlaynet/overlay/pkg/etcdtest"
)

// A failed request is counted by what it did; one the caller cancelled is
// not a failure of etcd.
func TestStatsCountFailedRequests(t *testing.T) {
	c := connect(t, etcdtest.New(t))
	if _, err := c.cli.Get(t.Context(), "k", clientv3.WithRev(1<<40)); err == nil {
		t.Fatal("a get at a future revision succeeded")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	c.cli.Put(ctx, "k", "v")
	got := c.Stats().RequestErrors
	if got["get"] != 1 || got["put"] != 0 || len(got) != len(operations) {
		t.Fatalf("request errors = %v, want one failed get and every operation at 0", got)
	}
}

// A lease watch that fails makes FollowLeases list again, and that is
// counted per network.
func TestStatsCountWatchRelists(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	feed := NewLeaseFeed()
	done := make(chan struct{})
	go func() { c.FollowLeases(ctx, "default", feed); close(done) }()
	<-feed.Changed()
	// Closing the client's watch streams ends the lease watch the way a
	// lost connection does.
	if err := c.cli.Watcher.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.Stats().WatchRelists["default"] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no re-list counted: %+v", c.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}

// Expires follows the keep-alives: within the TTL ahead, and zero once
// the lease is no longer held.
func TestSessionExpires(t *testing.T) {
	c := connect(t, etcdtest.New(t))
	s, _ := startSession(t, c, sessionReq(hostRecord(1), testNet))
	deadline := time.Now().Add(5 * time.Second)
	for s.Expires().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("no expiry after the first keep-alive")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if left := time.Until(s.Expires()); left <= 0 || left > 2*time.Second {
		t.Fatalf("expires in %s, want within the 2s TTL", left)
	}
}
