package probe

import (
	"cmp"
	"container/heap"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// path indexes a target's two paths.
type path uint8

const (
	overlay path = iota
	underlay
)

func (k path) String() string { return [...]string{"overlay", "underlay"}[k] }

// pathState is one path of one target: the exported stats plus what the
// loss window and the state machine need.
type pathState struct {
	stats PathStats
	// window holds the outcomes of the last Window completed probes
	// (true: lost), a ring starting at wpos once full.
	window []bool
	wpos   int
	// answered is the outcome of the newest probe (by send time) whose
	// outcome is known; newest is its send time. An older probe's outcome
	// that arrives later counts in the totals and the window, not here.
	answered bool
	newest   time.Time
}

func (p *pathState) record(lost bool) {
	if len(p.window) < cap(p.window) {
		p.window = append(p.window, lost)
		return
	}
	p.window[p.wpos] = lost
	p.wpos = (p.wpos + 1) % len(p.window)
}

func (p *pathState) loss() float64 {
	if len(p.window) == 0 {
		return 0
	}
	n := 0
	for _, lost := range p.window {
		if lost {
			n++
		}
	}
	return float64(n) / float64(len(p.window))
}

type target struct {
	Target
	paths [2]pathState
	state State
	since time.Time

	due   time.Time // when the next probe may go
	order uint64    // tie-break among equal due times: first scheduled first
	index int       // in core.due; -1 once removed
}

func (t *target) addr(k path) netip.Addr {
	if k == overlay {
		return t.Overlay
	}
	return t.Underlay
}

// dueHeap orders targets by due time, then by when they were scheduled.
// Every probed target goes back with due = now+Interval, so when more
// targets are due than the rate allows, the least recently probed goes
// first: round-robin.
type dueHeap []*target

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if c := h[i].due.Compare(h[j].due); c != 0 {
		return c < 0
	}
	return h[i].order < h[j].order
}
func (h dueHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *dueHeap) Push(x any) {
	t := x.(*target)
	t.index = len(*h)
	*h = append(*h, t)
}
func (h *dueHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.index = -1
	return t
}

// inflight is one echo awaiting its reply.
type inflight struct {
	t    *target
	path path
	sent time.Time
}

// expiry is an inflight in send order; seq may have been reused by the time
// it is looked at, so sent identifies the echo.
type expiry struct {
	seq  uint16
	sent time.Time
}

// echo is one echo poll asks the caller to send.
type echo struct {
	addr netip.Addr
	seq  uint16
}

// core is the Prober's logic without a socket or a clock: every method
// takes the time. It is not safe for concurrent use; Prober locks it.
type core struct {
	cfg     Config
	spacing time.Duration // between two probes: 1/Rate, rounded up

	targets  map[netip.Prefix]*target
	due      dueHeap
	order    uint64
	nextSlot time.Time // pacing: no probe before this

	seq     uint16
	pending map[uint16]inflight
	expiry  []expiry // in send order; all echoes share one Timeout
	// changed is set when a peer's State changes; Prober reads and clears it.
	changed bool
	// moved holds, per peer whose State changed since the last
	// transitions(), the State it had then: bounded by the targets, so a
	// reader that falls behind costs memory only once per peer.
	moved map[netip.Prefix]State
}

func newCore(cfg Config) *core {
	cfg = cfg.withDefaults()
	return &core{
		cfg: cfg,
		// Rounding up keeps any second holding at most Rate probes.
		spacing: time.Duration(math.Ceil(float64(time.Second) / cfg.Rate)),
		targets: map[netip.Prefix]*target{},
		pending: map[uint16]inflight{},
		moved:   map[netip.Prefix]State{},
	}
}

// setTargets replaces the set. A target still present with the same
// addresses keeps its stats, state and due time; a new one is due now.
func (c *core) setTargets(ts []Target, now time.Time) {
	next := make(map[netip.Prefix]Target, len(ts))
	for _, t := range ts {
		next[t.Peer] = t
	}
	for key, old := range c.targets {
		if t, ok := next[key]; ok && t.Overlay == old.Overlay && t.Underlay == old.Underlay {
			old.Name, old.Direct = t.Name, t.Direct
			continue
		}
		heap.Remove(&c.due, old.index)
		delete(c.targets, key)
		delete(c.moved, key)
	}
	for _, t := range ts {
		if _, ok := c.targets[t.Peer]; ok {
			continue
		}
		t = next[t.Peer] // the last of duplicates wins, as in the loop above
		nt := &target{Target: t, state: StateUnknown, since: now, due: now, order: c.nextOrder()}
		for k := range nt.paths {
			nt.paths[k].window = make([]bool, 0, c.cfg.Window)
		}
		c.targets[t.Peer] = nt
		heap.Push(&c.due, nt)
	}
	// Echoes in flight to removed targets are dropped here rather than
	// when they expire, so the pending map never outlives the set.
	for seq, in := range c.pending {
		if in.t.index < 0 {
			delete(c.pending, seq)
		}
	}
}

func (c *core) nextOrder() uint64 {
	c.order++
	return c.order
}

// peerInterval is how often each target is probed: Interval, or longer
// when the rate cannot serve every target that often.
func (c *core) peerInterval() time.Duration {
	return max(c.cfg.Interval, time.Duration(float64(len(c.targets))/c.cfg.Rate*float64(time.Second)))
}

// poll expires echoes older than Timeout (they count as lost) and, if the
// pace allows and a target is due, takes it: it returns the echoes to send
// (one per path with an address). wake is when poll has work next (zero:
// only after setTargets or reply).
func (c *core) poll(now time.Time) (echoes []echo, wake time.Time) {
	c.expire(now)
	if len(c.due) > 0 && !now.Before(c.nextSlot) && !now.Before(c.due[0].due) {
		t := c.due[0]
		for k := range t.paths {
			a := t.addr(path(k))
			if !a.IsValid() {
				continue
			}
			seq, ok := c.allocSeq()
			if !ok {
				break // 65536 echoes in flight: wait for some to expire
			}
			c.pending[seq] = inflight{t: t, path: path(k), sent: now}
			c.expiry = append(c.expiry, expiry{seq: seq, sent: now})
			t.paths[k].stats.Sent++
			t.paths[k].stats.LastError = ""
			echoes = append(echoes, echo{addr: a, seq: seq})
		}
		t.due = now.Add(c.cfg.Interval)
		t.order = c.nextOrder()
		heap.Fix(&c.due, 0)
		c.nextSlot = now.Add(c.spacing)
	}
	if len(c.due) > 0 {
		wake = later(c.nextSlot, c.due[0].due)
	}
	if len(c.expiry) > 0 {
		exp := c.expiry[0].sent.Add(c.cfg.Timeout)
		if wake.IsZero() || exp.Before(wake) {
			wake = exp
		}
	}
	return echoes, wake
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (c *core) allocSeq() (uint16, bool) {
	for range 1 << 16 {
		c.seq++
		if _, busy := c.pending[c.seq]; !busy {
			return c.seq, true
		}
	}
	return 0, false
}

func (c *core) expire(now time.Time) {
	i := 0
	for ; i < len(c.expiry); i++ {
		e := c.expiry[i]
		if now.Sub(e.sent) < c.cfg.Timeout {
			break
		}
		in, ok := c.pending[e.seq]
		if !ok || !in.sent.Equal(e.sent) {
			continue // answered, failed, or its target went away
		}
		delete(c.pending, e.seq)
		c.outcome(in, false, 0, now)
	}
	c.expiry = slices.Delete(c.expiry, 0, i)
}

// reply records the echo reply with sequence seq from from, received at
// now. It reports whether that was an echo in flight to from; a reply after
// Timeout is not (expire counts it as lost).
func (c *core) reply(seq uint16, from netip.Addr, now time.Time) bool {
	in, ok := c.pending[seq]
	if !ok || from != in.t.addr(in.path) || now.Sub(in.sent) >= c.cfg.Timeout {
		return false
	}
	delete(c.pending, seq)
	c.outcome(in, true, now.Sub(in.sent), now)
	return true
}

// sendFailed records that the echo seq could not be sent: it is lost now.
func (c *core) sendFailed(seq uint16, err error, now time.Time) {
	in, ok := c.pending[seq]
	if !ok {
		return
	}
	delete(c.pending, seq)
	in.t.paths[in.path].stats.LastError = err.Error()
	c.outcome(in, false, 0, now)
}

func (c *core) outcome(in inflight, answered bool, rtt time.Duration, now time.Time) {
	p := &in.t.paths[in.path]
	if answered {
		p.stats.Received++
		p.stats.RTT = rtt
		p.stats.LastReply = now
	}
	p.record(!answered)
	if in.sent.Before(p.newest) {
		return
	}
	p.newest = in.sent
	p.answered = answered
	if answered {
		p.stats.LostInRow = 0
	} else {
		p.stats.LostInRow++
	}
	c.evaluate(in.t, now)
}

// evaluate moves t's State by its paths' latest outcomes.
func (c *core) evaluate(t *target, now time.Time) {
	o, u := &t.paths[overlay], &t.paths[underlay]
	b := c.cfg.BrokenAfter
	next := t.state
	switch {
	case o.answered && o.stats.LostInRow == 0:
		next = StateOK
	case o.stats.LostInRow >= b && (!t.Underlay.IsValid() || u.stats.LostInRow >= b):
		next = StateUnreachable
	case o.stats.LostInRow >= b && u.answered:
		next = StateOverlayBroken
	}
	if next == t.state {
		return
	}
	prev := t.state
	t.state, t.since = next, now
	c.changed = true
	if _, seen := c.moved[t.Peer]; !seen {
		c.moved[t.Peer] = prev
	}
	c.logChange(t, prev)
}

func (c *core) logChange(t *target, prev State) {
	attrs := []any{"peer", t.Peer, "host", t.Name, "overlay", t.Overlay, "underlay", t.Underlay,
		"from", prev, "to", t.state}
	log := c.cfg.Log
	switch t.state {
	case StateOK:
		if prev == StateUnknown {
			log.Debug("peer answers over the overlay", attrs...)
			return
		}
		log.Info("peer answers over the overlay again", append(attrs,
			"overlay_rtt", t.paths[overlay].stats.RTT)...)
	case StateOverlayBroken:
		if err := t.paths[overlay].stats.LastError; err != "" {
			log.Warn("peer answers on the underlay but echoes over the overlay cannot be sent: "+
				"this host has no usable route to the peer's VTEP address", append(attrs, "error", err)...)
			return
		}
		log.Warn("peer answers on the underlay but not over the overlay: "+
			"the VXLAN port (UDP "+portString(c.cfg.Port)+") is blocked on the path, "+
			"or checksum offload corrupts encapsulated packets", append(attrs,
			"overlay_lost_in_row", t.paths[overlay].stats.LostInRow)...)
	case StateUnreachable:
		log.Warn("peer answers neither over the overlay nor on the underlay: "+
			"the host is down, the underlay between us is broken, or ICMP is filtered", append(attrs,
			"overlay_lost_in_row", t.paths[overlay].stats.LostInRow,
			"underlay_lost_in_row", t.paths[underlay].stats.LostInRow)...)
	}
}

func portString(p uint16) string {
	if p == 0 {
		return "port unknown"
	}
	return strconv.Itoa(int(p))
}

// results returns every target's results, sorted by Peer.
func (c *core) results() []Result {
	out := make([]Result, 0, len(c.targets))
	for _, t := range c.targets {
		out = append(out, t.result())
	}
	sortResults(out)
	return out
}

func (t *target) result() Result {
	r := Result{Peer: t.Peer, Name: t.Name, Overlay: t.Overlay, Underlay: t.Underlay, Direct: t.Direct,
		OverlayPath: t.paths[overlay].stats, UnderlayPath: t.paths[underlay].stats,
		State: t.state, Since: t.since}
	r.OverlayPath.Loss = t.paths[overlay].loss()
	r.UnderlayPath.Loss = t.paths[underlay].loss()
	return r
}

func sortResults(rs []Result) {
	slices.SortFunc(rs, func(a, b Result) int {
		if c := a.Peer.Addr().Compare(b.Peer.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Peer.Bits(), b.Peer.Bits())
	})
}

// transitions returns the targets whose State differs from what it was
// at the last call, and forgets them.
func (c *core) transitions() []Transition {
	out := make([]Transition, 0, len(c.moved))
	for peer, was := range c.moved {
		if t, ok := c.targets[peer]; ok && t.state != was {
			out = append(out, Transition{Result: t.result(), Was: was})
		}
	}
	clear(c.moved)
	slices.SortFunc(out, func(a, b Transition) int { return a.Peer.Addr().Compare(b.Peer.Addr()) })
	return out
}
