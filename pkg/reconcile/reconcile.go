// Package reconcile runs a level-triggered control loop: callers publish the
// latest desired state; one goroutine applies it, coalescing bursts of
// updates into one pass, re-applying periodically to repair drift, and
// retrying failures with capped backoff. Because only this goroutine applies
// state, the kernel has a single writer.
package reconcile

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Retry backoff after a failed apply: quick first retry, capped at the resync
// interval so a persistent failure is retried no more often than a resync.
const retryMin = 100 * time.Millisecond

// Loop applies the latest desired state of type T.
type Loop[T any] struct {
	apply    func(context.Context, T) error
	interval time.Duration
	log      *slog.Logger

	mu      sync.Mutex
	desired T
	have    bool
	kick    chan struct{}
}

// New returns a loop that calls apply with the latest state on every change
// and at least every interval.
func New[T any](apply func(context.Context, T) error, interval time.Duration, log *slog.Logger) *Loop[T] {
	return &Loop[T]{apply: apply, interval: interval, log: log, kick: make(chan struct{}, 1)}
}

// Set publishes a new desired state. It never blocks: a pass that is already
// pending will pick up the newest state.
func (l *Loop[T]) Set(d T) {
	l.mu.Lock()
	l.desired, l.have = d, true
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Trigger asks for a pass over the current desired state without changing
// it: the world changed (a kernel event, a file removed) and may have
// drifted from it. Like Set it never blocks, and triggers that arrive while
// a pass is pending merge into that pass.
func (l *Loop[T]) Trigger() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

func (l *Loop[T]) current() (T, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.desired, l.have
}

// Run applies state until ctx ends.
func (l *Loop[T]) Run(ctx context.Context) {
	resync := time.NewTicker(l.interval)
	defer resync.Stop()
	retry := time.NewTimer(0)
	if !retry.Stop() {
		<-retry.C
	}
	defer retry.Stop()
	backoff := retryMin
	// A failure that persists while kicks keep coming (every lease or
	// link event runs a pass) is logged once per interval, not per pass.
	var lastErr string
	var lastLogged time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		case <-resync.C:
		case <-retry.C:
		}
		d, ok := l.current()
		if !ok {
			continue
		}
		if err := l.apply(ctx, d); err != nil {
			if ctx.Err() != nil {
				return
			}
			if msg := err.Error(); msg != lastErr || time.Since(lastLogged) >= l.interval {
				l.log.Warn("reconcile failed; retrying", "err", err, "retry_in", backoff)
				lastErr, lastLogged = msg, time.Now()
			} else {
				l.log.Debug("reconcile failed again", "err", err, "retry_in", backoff)
			}
			retry.Reset(backoff)
			backoff = min(backoff*2, l.interval)
			continue
		}
		backoff, lastErr = retryMin, ""
	}
}
