package subnet

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watch backoff bounds: fast first retry, capped so a long etcd outage costs
// one attempt every few seconds. A watch counts as healthy, and the backoff
// starts again from the minimum, only once it has run for watchHealthy: a
// watch that fails right after each successful list (no leader, a proxy
// cutting streams) must not turn into a tight list loop.
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
	watchHealthy    = 10 * time.Second
)

// WatchLeases calls onSnapshot with the network's full, sorted set of valid
// leases: once after the first list and again after changes. It returns
// when ctx ends. Watch failures (compaction, lost leader, etcd down) lead to a
// fresh list, so a snapshot is never missing an update for long. Changes
// that arrive while onSnapshot runs are merged into the next snapshot.
func (c *Client) WatchLeases(ctx context.Context, network string, onSnapshot func([]Lease)) {
	feed := NewLeaseFeed()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.FollowLeases(ctx, network, feed)
	}()
	defer func() { <-done }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-feed.Changed():
			onSnapshot(feed.Snapshot())
		}
	}
}

// FollowLeases keeps feed equal to the network's valid leases until ctx
// ends: a list, then a watch from the list's revision; on any watch failure
// a fresh list replaces the set.
func (c *Client) FollowLeases(ctx context.Context, network string, feed *LeaseFeed) {
	var relist uint64 // 0 until a watch ran: retries of a failed list are no re-lists
	listAndFollow(ctx, func() error {
		c.stats.relisted(network, relist)
		leases, rev, err := c.Leases(ctx, network)
		if err != nil {
			c.log.Warn("list leases failed; retrying", "network", network, "err", err)
			relist = 0
			return err
		}
		relist = 1
		feed.Replace(leases)
		c.follow(ctx, network, rev+1, feed)
		return nil
	}, time.Now)
}

// LeaseFeed is a network's lease set as FollowLeases keeps it. Events are
// applied as they arrive, which is cheap; the consumer takes a snapshot
// when it is ready for one, so a burst of events (hosts joining together)
// costs it one snapshot, not one per event.
type LeaseFeed struct {
	mu      sync.Mutex
	set     map[netip.Prefix]Lease
	changed chan struct{}
}

// NewLeaseFeed returns an empty feed; it signals Changed after the first
// list, even when that finds no lease.
func NewLeaseFeed() *LeaseFeed {
	return &LeaseFeed{set: map[netip.Prefix]Lease{}, changed: make(chan struct{}, 1)}
}

// Changed receives a value when the set changed since the last Snapshot
// was taken after the previous value.
func (f *LeaseFeed) Changed() <-chan struct{} { return f.changed }

// Snapshot is the current set, sorted by subnet address.
func (f *LeaseFeed) Snapshot() []Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	return snapshot(f.set)
}

// Hostname is the hostname in the lease of s ("" without one).
func (f *LeaseFeed) Hostname(s netip.Prefix) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.set[s].Hostname
}

func (f *LeaseFeed) notify() {
	select {
	case f.changed <- struct{}{}:
	default:
	}
}

// Replace sets the whole set (a fresh list) and signals Changed.
func (f *LeaseFeed) Replace(leases []Lease) {
	f.mu.Lock()
	clear(f.set)
	for _, l := range leases {
		f.set[l.Subnet] = l
	}
	f.mu.Unlock()
	f.notify()
}

// listAndFollow runs round (a list, then a watch until it fails) until ctx
// ends, sleeping with capped, jittered backoff between rounds. The backoff
// resets only after a round that lasted watchHealthy.
func listAndFollow(ctx context.Context, round func() error, now func() time.Time) {
	b := newBackoff(watchBackoffMin, watchBackoffMax)
	for ctx.Err() == nil {
		began := now()
		round()
		if now().Sub(began) >= watchHealthy {
			b.Reset()
		}
		if !sleepCtx(ctx, b.NextBackOff()) {
			return
		}
	}
}

// follow applies watch events to the feed until the watch fails or ctx
// ends.
func (c *Client) follow(ctx context.Context, network string, rev int64, feed *LeaseFeed) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	prefix := c.keys.Subnets(network)
	for resp := range c.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev)) {
		if err := resp.Err(); err != nil {
			c.log.Info("lease watch ended; re-listing", "network", network, "err", err)
			return
		}
		changed := false
		feed.mu.Lock()
		for _, ev := range resp.Events {
			changed = c.apply(network, feed.set, ev) || changed
		}
		feed.mu.Unlock()
		if changed {
			feed.notify()
		}
	}
}

func (c *Client) apply(network string, set map[netip.Prefix]Lease, ev *clientv3.Event) bool {
	s, err := c.keys.ParseSubnetKey(network, string(ev.Kv.Key))
	if err != nil {
		c.log.Warn("ignoring unexpected key in subnet map", "key", string(ev.Kv.Key), "err", err)
		return false
	}
	if ev.Type == clientv3.EventTypeDelete {
		_, had := set[s]
		delete(set, s)
		return had
	}
	l, err := c.parseLease(network, ev.Kv.Key, ev.Kv.Value)
	if err != nil {
		c.log.Warn("skipping invalid lease", "key", string(ev.Kv.Key), "err", err)
		_, had := set[s]
		delete(set, s) // an invalid record must not keep an old route alive
		return had
	}
	l.ModRevision, l.CreateRevision, l.EtcdLease = ev.Kv.ModRevision, ev.Kv.CreateRevision, ev.Kv.Lease
	set[s] = l
	return true
}

func snapshot(set map[netip.Prefix]Lease) []Lease {
	out := make([]Lease, 0, len(set))
	for _, l := range set {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b Lease) int { return a.Subnet.Addr().Compare(b.Subnet.Addr()) })
	return out
}
