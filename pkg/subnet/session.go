package subnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlaynet/overlay/pkg/netconf"
)

// Status is what a Session reports about its lease.
type Status struct {
	// Held is true while this host's key is in etcd under a renewed lease.
	Held bool
	// Subnet is the subnet held (or last held, when Held is false).
	Subnet netip.Prefix
	// Lease is the etcd lease of the key.
	Lease int64
	// Reason says why the state changed, for the log.
	Reason string
}

// Session owns the life of one host's lease in one network: it takes the
// lease, keeps it alive, puts a deleted key back, never overwrites a key
// another host holds (fencing), and leases again with backoff after a loss,
// preferring the subnet it had. Callers read Reports and react; they never
// touch the lease themselves.
type Session struct {
	c       *Client
	log     *slog.Logger
	reports chan Status
	configs chan netconf.Config

	mu   sync.Mutex
	req  AcquireRequest
	held *HeldLease
}

// conflictWait bounds how long Start waits for a key of this host that is
// held under another etcd lease to expire before refusing: a process that
// died without this host's state dir learning its lease lets it expire
// within one TTL; a live duplicate keeps renewing it.
func conflictWait(ttl time.Duration) time.Duration { return ttl + 2*time.Second }

// reacquireMaxInterval caps the wait between attempts to lease again after
// a loss (jittered ±50%): short enough that a host holds its lease again
// within a few seconds of etcd's return, long enough that a large cluster
// retrying together does not swamp an etcd that is just coming back.
const reacquireMaxInterval = 4 * time.Second

// Expires is when the held lease expires unless renewed (zero while no
// lease is held or before its first renewal).
func (s *Session) Expires() time.Time {
	s.mu.Lock()
	h := s.held
	s.mu.Unlock()
	if h == nil {
		return time.Time{}
	}
	select {
	case <-h.Done():
		return time.Time{}
	default:
		return h.Expires()
	}
}

// EtcdLease is the etcd lease of the key held now (0: none).
func (s *Session) EtcdLease() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		return 0
	}
	return s.held.EtcdLease()
}

// NewSession prepares a session; nothing is leased before Start.
func (c *Client) NewSession(req AcquireRequest, log *slog.Logger) *Session {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Session{c: c, log: log, req: req, reports: make(chan Status, 1), configs: make(chan netconf.Config, 1)}
}

// Reports delivers the latest status after each change (older unread
// reports are replaced by newer ones).
func (s *Session) Reports() <-chan Status { return s.reports }

// Start takes the first lease. Errors are for the operator: a full network,
// a cloned host, a duplicate daemon, etcd unreachable.
func (s *Session) Start(ctx context.Context) (Status, error) {
	deadline := time.Now().Add(conflictWait(s.req.TTL))
	for {
		h, err := s.c.Acquire(ctx, s.request())
		var conflict *HostConflictError
		// A conflict may be this host's own previous run (its lease not yet
		// expired; after an address change its key names the old IP): wait
		// up to a TTL for the key to expire. A key still renewed after that
		// belongs to a live process elsewhere.
		if errors.As(err, &conflict) && time.Now().Before(deadline) {
			s.log.Warn("this host's key is held under another etcd lease; waiting for it to expire", "subnet", conflict.Subnet, "lease", fmt.Sprintf("%x", conflict.Lease))
			if !sleepCtx(ctx, time.Second) {
				return Status{}, ctx.Err()
			}
			continue
		}
		if err != nil {
			return Status{}, err
		}
		return s.adopt(h, "leased"), nil
	}
}

func (s *Session) request() AcquireRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.req
}

// adopt records a new held lease as current and as the one to prefer.
func (s *Session) adopt(h *HeldLease, reason string) Status {
	s.mu.Lock()
	s.held = h
	s.req.Previous, s.req.PreviousLease = h.Subnet, h.EtcdLease()
	s.mu.Unlock()
	return Status{Held: true, Subnet: h.Subnet, Lease: h.EtcdLease(), Reason: reason}
}

// SetConfig hands the session a changed network config: a subnet that is no
// longer part of the network is given up for a new one.
func (s *Session) SetConfig(cfg netconf.Config) {
	select {
	case <-s.configs:
	default:
	}
	s.configs <- cfg
}

// Run keeps the lease until ctx ends, then stops renewing without revoking
// (peers keep their routes while this host restarts). Start must have
// succeeded.
func (s *Session) Run(ctx context.Context) {
	for {
		s.mu.Lock()
		h := s.held
		s.mu.Unlock()
		reason := s.keep(ctx, h)
		h.Stop() // also ends the reservation's keep-alive of a lost lease
		if ctx.Err() != nil {
			return
		}
		s.report(Status{Held: false, Subnet: h.Subnet, Lease: h.EtcdLease(), Reason: reason})
		if !s.reacquire(ctx, h.Subnet) {
			return
		}
	}
}

// keep holds h until it is lost and says why; it puts a deleted key back
// and gives the lease up when another host's key replaced ours.
func (s *Session) keep(ctx context.Context, h *HeldLease) string {
	wctx, stopWatch := context.WithCancel(ctx)
	defer func() { stopWatch() }()
	events := s.watchOwnKey(wctx, h)
	rewatch := func() {
		stopWatch()
		wctx, stopWatch = context.WithCancel(ctx)
		events = s.watchOwnKey(wctx, h)
	}
	for {
		select {
		case <-ctx.Done():
			return "stopping"
		case <-h.Done():
			return "etcd lease expired (etcd unreachable for longer than the lease TTL?)"
		case cfg := <-s.configs:
			s.mu.Lock()
			s.req.Config = cfg
			s.mu.Unlock()
			if !s.request().pool().Contains(h.Subnet) {
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				_ = h.Release(rctx)
				cancel()
				return fmt.Sprintf("subnet %s is not part of the network %s any more", h.Subnet, cfg.Network)
			}
		case ev, ok := <-events:
			if !ok {
				rewatch() // watch failed: start again (it re-checks the key first)
				continue
			}
			lost, retry := s.onOwnKey(ctx, h, ev)
			if lost != "" {
				return lost
			}
			if retry { // the put-back failed (etcd unreachable?): look again
				rewatch()
			}
		}
	}
}

// ownKeyEvent is what happened to this host's key.
type ownKeyEvent struct {
	deleted bool
	lease   int64
}

// watchOwnKey reports changes of h's key; the channel closes when the watch
// fails (etcd unreachable, compaction). It first reports the key's current
// state, so a change missed between two watches is not lost.
func (s *Session) watchOwnKey(ctx context.Context, h *HeldLease) <-chan ownKeyEvent {
	out := make(chan ownKeyEvent, 4)
	go func() {
		defer close(out)
		if !sleepCtx(ctx, 100*time.Millisecond) { // pace re-watches during an outage
			return
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		defer cancel()
		resp, err := s.c.cli.Get(wctx, h.key)
		if err != nil {
			sleepCtx(ctx, time.Second)
			return
		}
		if len(resp.Kvs) == 0 {
			out <- ownKeyEvent{deleted: true}
		} else if resp.Kvs[0].Lease != h.EtcdLease() {
			out <- ownKeyEvent{lease: resp.Kvs[0].Lease}
		}
		for wr := range s.c.cli.Watch(wctx, h.key, clientv3.WithRev(resp.Header.Revision+1)) {
			if wr.Err() != nil {
				return
			}
			for _, ev := range wr.Events {
				select {
				case out <- ownKeyEvent{deleted: ev.Type == clientv3.EventTypeDelete, lease: ev.Kv.Lease}:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}

// onOwnKey reacts to a change of this host's key and returns why the lease
// is lost ("" if it is still held), and whether to look at the key again
// because putting it back failed for a reason that may pass.
func (s *Session) onOwnKey(ctx context.Context, h *HeldLease, ev ownKeyEvent) (string, bool) {
	if !ev.deleted && ev.lease == h.EtcdLease() {
		return "", false
	}
	if ev.deleted {
		err := h.Reassert(ctx)
		switch {
		case err == nil:
			s.log.Warn("this host's lease key was deleted; put it back", "subnet", h.Subnet)
			return "", false
		case !errors.Is(err, ErrSubnetTaken):
			s.log.Warn("could not put back this host's lease key; will retry", "subnet", h.Subnet, "err", err)
			return "", true
		}
	}
	// Another lease wrote our key: never overwrite it. Stop renewing ours
	// (it guards nothing now) and lease anew.
	h.Stop()
	return fmt.Sprintf("subnet %s was taken by another host (etcd lease %x); not overwriting it", h.Subnet, ev.lease), false
}

// reacquire leases again until it succeeds or ctx ends, preferring prev.
func (s *Session) reacquire(ctx context.Context, prev netip.Prefix) bool {
	b := newBackoff(200*time.Millisecond, reacquireMaxInterval)
	for ctx.Err() == nil {
		h, err := s.c.Acquire(ctx, s.request())
		if err == nil {
			reason := "leased again"
			if h.Subnet != prev {
				reason = fmt.Sprintf("leased a new subnet; %s is lost to this host", prev)
			}
			s.report(s.adopt(h, reason))
			return true
		}
		wait := b.NextBackOff()
		s.log.Warn("lease a subnet failed; retrying", "err", err, "retry_in", wait)
		if !sleepCtx(ctx, wait) {
			break
		}
	}
	return false
}

// Withdraw revokes the current lease at once (peers drop their routes to
// this host) but keeps the subnet's reservation, for a start that failed
// after leasing.
func (s *Session) Withdraw(ctx context.Context) error {
	s.mu.Lock()
	h := s.held
	s.mu.Unlock()
	if h == nil {
		return nil
	}
	return h.Withdraw(ctx)
}

// Stop stops renewing without revoking; for callers that never Run.
func (s *Session) Stop() {
	s.mu.Lock()
	h := s.held
	s.mu.Unlock()
	if h != nil {
		h.Stop()
	}
}

func (s *Session) report(st Status) {
	select {
	case <-s.reports:
	default:
	}
	s.reports <- st
}

// newBackoff returns an exponential backoff with jitter that never gives up.
func newBackoff(initial, maxInterval time.Duration) *backoff.ExponentialBackOff {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.Multiplier = initial, maxInterval, 2
	b.Reset()
	return b
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
