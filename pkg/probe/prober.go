package probe

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// Prober probes a set of peers; see the package doc.
type Prober struct {
	mu   sync.Mutex
	core *core
	id   identity // of this Prober's echoes

	kick    chan struct{} // the target set changed: poll again
	changes chan struct{}
	running atomic.Bool
}

// New returns a Prober with no targets; Run starts probing.
func New(cfg Config) *Prober {
	return &Prober{core: newCore(cfg), id: newIdentity(), kick: make(chan struct{}, 1), changes: make(chan struct{}, 1)}
}

// SetTargets replaces the set of peers. A peer still present with the same
// addresses keeps its stats and state; a new one (or one whose addresses
// changed) starts from StateUnknown and is due at once. Safe from any
// goroutine; it never blocks on the probing.
func (p *Prober) SetTargets(ts []Target) {
	p.mu.Lock()
	p.core.setTargets(ts, time.Now())
	p.mu.Unlock()
	signal(p.kick)
}

// Results returns every peer's results, sorted by Peer. Safe from any
// goroutine.
func (p *Prober) Results() []Result {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.core.results()
}

// PeerInterval is how often each peer is probed: max(Interval,
// peers/Rate).
func (p *Prober) PeerInterval() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.core.peerInterval()
}

// Changes is signalled (1-buffered, never blocking the Prober) when any
// peer's State changes; read Transitions for what changed.
func (p *Prober) Changes() <-chan struct{} { return p.changes }

// Transitions returns the peers whose State changed since the last call,
// with the State each had then, and forgets them: a reader learns of each
// change once, at the cost of the peers that changed, not of every peer.
// A peer that changed and changed back is not reported. Safe from any
// goroutine.
func (p *Prober) Transitions() []Transition {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.core.transitions()
}

// Run opens the raw ICMP socket in the calling thread's network namespace
// and probes until ctx ends, then closes it and returns nil. It returns an
// error at once when the socket cannot be opened (no CAP_NET_RAW) or when
// the Prober is already running.
func (p *Prober) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("probe: Run called while the Prober is already running")
	}
	defer p.running.Store(false)
	c, err := listen(p.id, false)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() { c.readLoop(p.gotReply) })
	defer wg.Wait()
	defer c.Close()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		p.mu.Lock()
		now := time.Now()
		echoes, wake := p.core.poll(now)
		p.mu.Unlock()
		for _, e := range echoes {
			if err := c.send(e.addr, e.seq, 0); err != nil {
				p.mu.Lock()
				p.core.sendFailed(e.seq, err, time.Now())
				p.mu.Unlock()
			}
		}
		p.signalChanges()
		if len(echoes) > 0 {
			continue // poll says when the next probe may go
		}
		var tc <-chan time.Time
		if !wake.IsZero() {
			timer.Reset(time.Until(wake))
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-p.kick:
		case <-tc:
		}
	}
}

func (p *Prober) gotReply(r reply) {
	p.mu.Lock()
	p.core.reply(r.seq, r.from, r.at)
	p.mu.Unlock()
	p.signalChanges()
}

func (p *Prober) signalChanges() {
	p.mu.Lock()
	changed := p.core.changed
	p.core.changed = false
	p.mu.Unlock()
	if changed {
		signal(p.changes)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
