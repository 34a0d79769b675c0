package subnet

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/etcdtest"
)

// leaseOf returns the listed lease of subnet s.
func leaseOf(t *testing.T, c *Client, s netip.Prefix) Lease {
	t.Helper()
	ls, _, err := c.Leases(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.Subnet == s {
			return l
		}
	}
	t.Fatalf("no lease of %s in %v", s, ls)
	return Lease{}
}

// putOwnKey writes rec as the key of s under a live etcd lease, as an
// earlier run of the same host (or an older release) left it.
func putOwnKey(t *testing.T, c *Client, s netip.Prefix, rec Record) {
	t.Helper()
	g, err := c.cli.Grant(t.Context(), 30)
	if err != nil {
		t.Fatal(err)
	}
	value, _ := EncodeRecord(rec)
	if _, err := c.cli.Put(t.Context(), c.Keys().Subnet("default", s), value, withLease(g.ID)); err != nil {
		t.Fatal(err)
	}
}

// Since is when the holder took the subnet: set on a new key, kept when the
// host adopts its own live key or puts a deleted key back, unknown (zero)
// on a key an older release wrote.
func TestLeaseSince(t *testing.T) {
	t.Parallel()
	srv := etcdtest.New(t)
	c := connect(t, srv)

	before := time.Now().Truncate(time.Second)
	h := acquire(t, c, testNet, hostRecord(1), netip.Prefix{})
	after := time.Now()
	if since := leaseOf(t, c, h.Subnet).Since; since.Before(before) || since.After(after) || since.Location() != time.UTC {
		t.Fatalf("new lease: since %v, want UTC within [%v, %v]", since, before, after)
	}

	// A restart adopts the host's live key and keeps when it was taken.
	h.Stop()
	old := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	rec := hostRecord(1)
	rec.Since = old
	putOwnKey(t, c, h.Subnet, rec)
	if again := acquire(t, c, testNet, hostRecord(1), h.Subnet); again.Subnet != h.Subnet {
		t.Fatalf("restart got %s, want its own %s", again.Subnet, h.Subnet)
	}
	if since := leaseOf(t, c, h.Subnet).Since; !since.Equal(old) {
		t.Fatalf("adopted key: since %v, want the key's %v", since, old)
	}

	// A key from a release without since: the age stays unknown rather than
	// becoming the restart's time.
	legacy := acquire(t, c, testNet, hostRecord(2), netip.Prefix{})
	legacy.Stop()
	putOwnKey(t, c, legacy.Subnet, hostRecord(2))
	acquire(t, c, testNet, hostRecord(2), legacy.Subnet)
	if since := leaseOf(t, c, legacy.Subnet).Since; !since.IsZero() {
		t.Fatalf("adopted key without since: since %v, want none", since)
	}
}

func TestSessionPutBackKeepsSince(t *testing.T) {
	t.Parallel()
	srv := etcdtest.New(t)
	c := connect(t, srv)
	_, st := startSession(t, c, sessionReq(hostRecord(1), testNet))
	w := watch(t, c)
	w.waitFor(t, "lease listed", func(ls []Lease) bool { return has(ls, st.Subnet) })
	first := leaseOf(t, c, st.Subnet)
	taken := first.Since
	if taken.IsZero() {
		t.Fatal("a session's new lease has no since")
	}
	time.Sleep(1100 * time.Millisecond) // a new since would differ by a second
	if _, err := c.DeleteLease(t.Context(), "default", st.Subnet); err != nil {
		t.Fatal(err)
	}
	// The put-back is a new key (a later create revision); the moment
	// without it may be too short for any snapshot to show.
	w.waitFor(t, "lease put back", func(ls []Lease) bool {
		for _, l := range ls {
			if l.Subnet == st.Subnet && l.CreateRevision > first.CreateRevision {
				return true
			}
		}
		return false
	})
	if since := leaseOf(t, c, st.Subnet).Since; !since.Equal(taken) {
		t.Fatalf("put-back key: since %v, want the original %v", since, taken)
	}
}

func TestLeaseTTLs(t *testing.T) {
	t.Parallel()
	srv := etcdtest.New(t)
	c := connect(t, srv)
	live := acquire(t, c, testNet, hostRecord(1), netip.Prefix{})
	gone := acquire(t, c, testNet, hostRecord(2), netip.Prefix{})
	if err := gone.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	ttls, err := c.LeaseTTLs(t.Context(), []int64{live.EtcdLease(), 0, gone.EtcdLease(), live.EtcdLease()})
	if err != nil {
		t.Fatal(err)
	}
	if len(ttls) != 2 {
		t.Fatalf("LeaseTTLs = %v, want the two leases (no entry for ID 0)", ttls)
	}
	if l := ttls[live.EtcdLease()]; l.Expired() || l.Granted != 10*time.Second || l.Left <= 0 || l.Left > l.Granted {
		t.Fatalf("live lease: %+v, want granted 10s and 0 < left ≤ 10s", l)
	}
	if l, ok := ttls[gone.EtcdLease()]; !ok || !l.Expired() || l.Left != 0 {
		t.Fatalf("revoked lease: %+v (listed %v), want expired", l, ok)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.LeaseTTLs(ctx, []int64{live.EtcdLease()}); err == nil {
		t.Fatal("LeaseTTLs with a cancelled context: no error")
	}
}
