package reconcile

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type recorder struct {
	mu      sync.Mutex
	applied []int
	failN   int // fail this many calls first
	ch      chan int
}

func (r *recorder) apply(_ context.Context, v int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failN > 0 {
		r.failN--
		return errors.New("injected failure")
	}
	r.applied = append(r.applied, v)
	select {
	case r.ch <- v:
	default:
	}
	return nil
}

func start(t *testing.T, r *recorder, interval time.Duration) *Loop[int] {
	l := New(r.apply, interval, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

func waitValue(t *testing.T, r *recorder, want int) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case v := <-r.ch:
			if v == want {
				return
			}
		case <-deadline:
			t.Fatalf("value %d never applied; applied %v", want, r.snapshot())
		}
	}
}

func (r *recorder) snapshot() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.applied...)
}

func TestLatestWinsAndBurstsCoalesce(t *testing.T) {
	r := &recorder{ch: make(chan int, 1000)}
	l := start(t, r, time.Hour)
	for i := 1; i <= 1000; i++ {
		l.Set(i)
	}
	waitValue(t, r, 1000)
	got := r.snapshot()
	if len(got) >= 1000 {
		t.Fatalf("1000 updates gave %d applies; bursts were not coalesced", len(got))
	}
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] {
			t.Fatalf("applied out of order: %v", got)
		}
	}
}

func TestFailedApplyIsRetried(t *testing.T) {
	r := &recorder{ch: make(chan int, 10), failN: 3}
	l := start(t, r, time.Hour)
	l.Set(7)
	waitValue(t, r, 7)
}

func TestPeriodicResync(t *testing.T) {
	r := &recorder{ch: make(chan int, 10)}
	l := start(t, r, 50*time.Millisecond)
	l.Set(1)
	waitValue(t, r, 1)
	waitValue(t, r, 1) // applied again without any Set: drift repair
}

func TestNothingAppliedBeforeSet(t *testing.T) {
	r := &recorder{ch: make(chan int, 10)}
	start(t, r, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	if got := r.snapshot(); len(got) != 0 {
		t.Fatalf("applied %v before any desired state was set", got)
	}
}

func TestTriggerReappliesCurrentState(t *testing.T) {
	applied := make(chan int, 10)
	l := New(func(_ context.Context, v int) error { applied <- v; return nil }, time.Hour, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go l.Run(ctx)
	l.Trigger() // nothing set yet: no pass
	l.Set(7)
	if v := <-applied; v != 7 {
		t.Fatalf("applied %d, want 7", v)
	}
	l.Trigger()
	select {
	case v := <-applied:
		if v != 7 {
			t.Fatalf("triggered pass applied %d, want 7", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Trigger did not cause a pass")
	}
}

// countingHandler counts Warn records.
type countingHandler struct {
	slog.Handler
	mu    sync.Mutex
	warns int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *countingHandler) Handle(_ context.Context, rec slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if rec.Level == slog.LevelWarn {
		h.warns++
	}
	return nil
}

// A failure that persists while passes keep being kicked (a DaemonSet
// whose /proc/sys is read-only, say) is logged once per interval, not
// once per pass.
func TestPersistentFailureIsLoggedOncePerInterval(t *testing.T) {
	var passes, last atomic.Int64
	apply := func(_ context.Context, v int) error {
		passes.Add(1)
		last.Store(int64(v))
		return errors.New("read-only file system")
	}
	h := &countingHandler{}
	l := New(apply, time.Hour, slog.New(h))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for i := 1; i <= 50; i++ {
		l.Set(i)
		time.Sleep(2 * time.Millisecond)
	}
	deadline := time.Now().Add(5 * time.Second)
	for last.Load() != 50 || passes.Load() < 5 {
		if time.Now().After(deadline) {
			t.Fatalf("%d passes, last value %d", passes.Load(), last.Load())
		}
		time.Sleep(time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.warns != 1 {
		t.Fatalf("%d failing passes logged %d warnings, want 1", passes.Load(), h.warns)
	}
}
