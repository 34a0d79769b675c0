package probe

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// nthTarget is the i-th of many distinct targets.
func nthTarget(i int) Target {
	return Target{
		Peer:     netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32),
		Name:     fmt.Sprintf("host%d", i),
		Overlay:  netip.AddrFrom4([4]byte{10, 128 | byte(i>>16), byte(i >> 8), byte(i)}),
		Underlay: netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)}),
	}
}

func nTargets(n int) []Target {
	ts := make([]Target, n)
	for i := range ts {
		ts[i] = nthTarget(i)
	}
	return ts
}

// probe is one probe a simulation saw: the target (by overlay address) and
// when.
type probe struct {
	overlay netip.Addr
	at      time.Time
}

// simulate drives c in fake time from start until end, answering the
// echoes answer says yes to at once, and returns the probes in order.
func simulate(t *testing.T, c *core, start, end time.Time, answer func(echo) bool) []probe {
	t.Helper()
	var out []probe
	now := start
	for now.Before(end) {
		echoes, wake := c.poll(now)
		if len(echoes) > 0 {
			out = append(out, probe{overlay: echoes[0].addr, at: now})
			for _, e := range echoes {
				if answer(e) && !c.reply(e.seq, e.addr, now) {
					t.Fatalf("reply to %s seq %d at once was not taken", e.addr, e.seq)
				}
			}
			continue
		}
		if wake.IsZero() {
			break
		}
		if !wake.After(now) {
			t.Fatalf("poll at %v sent nothing and wants to wake at %v: it would spin", now.Sub(start), wake.Sub(start))
		}
		now = wake
	}
	return out
}

func TestRateBoundManyTargets(t *testing.T) {
	t.Parallel()
	const n, rate = 10000, 50
	c := newCore(Config{Interval: 5 * time.Second, Rate: rate, Timeout: time.Second})
	c.setTargets(nTargets(n), t0)
	round := time.Duration(n/rate) * time.Second // 200s
	if got := c.peerInterval(); got != round {
		t.Fatalf("peerInterval = %v, want n/Rate = %v", got, round)
	}
	// Every other peer answers; the rest time out, so expiry runs too.
	probes := simulate(t, c, t0, t0.Add(2*round+round/2), func(e echo) bool { return e.addr.As4()[3]%2 == 0 })

	// Never more than Rate probes in any second: probe i and probe i+Rate
	// are at least a second apart.
	for i := 0; i+rate < len(probes); i++ {
		if d := probes[i+rate].at.Sub(probes[i].at); d < time.Second {
			t.Fatalf("probes %d..%d (%d probes) within %v: more than %d in a second", i, i+rate, rate+1, d, rate)
		}
	}
	// Every peer is first probed within n/Rate, then every n/Rate (one
	// pacing step of slack).
	last := map[netip.Addr]time.Time{}
	step := time.Second / rate
	for _, p := range probes {
		prev, ok := last[p.overlay]
		if !ok {
			prev = t0.Add(-step) // the first probe comes within a round of the start
		}
		if gap := p.at.Sub(prev); gap > round+step {
			t.Fatalf("%s probed %v after its previous probe, want within %v", p.overlay, gap, round)
		}
		last[p.overlay] = p.at
	}
	if len(last) != n {
		t.Fatalf("%d of %d peers probed", len(last), n)
	}
	res := c.results()
	for _, r := range res {
		if r.OverlayPath.Sent < 2 || r.OverlayPath.Sent != r.UnderlayPath.Sent {
			t.Fatalf("%s: overlay sent %d, underlay sent %d; want the same, at least 2 (two and a half rounds)",
				r.Peer, r.OverlayPath.Sent, r.UnderlayPath.Sent)
		}
	}
}

func TestUnderloadedPeersProbedEveryInterval(t *testing.T) {
	t.Parallel()
	c := newCore(Config{Interval: time.Second, Rate: 50, Timeout: 300 * time.Millisecond})
	c.setTargets(nTargets(10), t0)
	if got := c.peerInterval(); got != time.Second {
		t.Fatalf("peerInterval = %v, want Interval 1s", got)
	}
	probes := simulate(t, c, t0, t0.Add(10*time.Second), func(echo) bool { return true })
	last := map[netip.Addr]time.Time{}
	for _, p := range probes {
		if prev, ok := last[p.overlay]; ok && p.at.Sub(prev) != time.Second {
			t.Fatalf("%s probed %v after its previous probe, want exactly Interval", p.overlay, p.at.Sub(prev))
		}
		last[p.overlay] = p.at
	}
	if len(probes) != 100 {
		t.Fatalf("%d probes in 10s of 10 peers at 1s, want 100", len(probes))
	}
}

func TestRoundRobinFairness(t *testing.T) {
	t.Parallel()
	const n = 100
	c := newCore(Config{Interval: time.Second, Rate: 10, Timeout: 500 * time.Millisecond})
	c.setTargets(nTargets(n), t0)
	// Overloaded (n/Rate = 10s > Interval): every peer is always due.
	probes := simulate(t, c, t0, t0.Add(100*time.Second), func(e echo) bool { return true })
	if len(probes) != 10*n {
		t.Fatalf("%d probes in 100s at 10/s, want %d", len(probes), 10*n)
	}
	// Each block of n consecutive probes serves every peer once, and in the
	// same order as the block before: round-robin.
	for b := 0; b < len(probes)/n; b++ {
		seen := map[netip.Addr]bool{}
		for i, p := range probes[b*n : (b+1)*n] {
			if seen[p.overlay] {
				t.Fatalf("round %d: %s probed twice before every peer was probed once", b, p.overlay)
			}
			seen[p.overlay] = true
			if b > 0 && p.overlay != probes[i].overlay {
				t.Fatalf("round %d probe %d is %s, round 0 had %s: order not kept", b, i, p.overlay, probes[i].overlay)
			}
		}
	}

	// A peer that appears joins the end of the line: it waits for the
	// peers already due, no one is skipped.
	now := probes[len(probes)-1].at.Add(100 * time.Millisecond)
	c.setTargets(nTargets(n+1), now)
	next := simulate(t, c, now, now.Add(time.Duration(n+1)*100*time.Millisecond), func(echo) bool { return true })
	seen := map[netip.Addr]int{}
	for _, p := range next {
		seen[p.overlay]++
	}
	if len(next) != n+1 || len(seen) != n+1 {
		t.Fatalf("after adding a peer, %d probes reached %d peers in one round, want %d each once", len(next), len(seen), n+1)
	}
}

func TestSetTargetsKeepsStats(t *testing.T) {
	t.Parallel()
	c := newCore(Config{Interval: time.Second, Rate: 100, Timeout: 500 * time.Millisecond})
	a, b := nthTarget(1), nthTarget(2)
	c.setTargets([]Target{a, b}, t0)
	simulate(t, c, t0, t0.Add(3500*time.Millisecond), func(echo) bool { return true })
	before := resultOf(t, c, a.Peer)
	if before.OverlayPath.Received != 4 || before.State != StateOK {
		t.Fatalf("before: %+v, want 4 replies and ok", before)
	}

	// At 4s both are due: a goes first, b one pacing step later. Then a is
	// renamed, b removed, d added: a's echoes in flight are still taken,
	// b's are dropped.
	now := t0.Add(4 * time.Second)
	ea, _ := c.poll(now)
	eb, _ := c.poll(now.Add(10 * time.Millisecond))
	if len(ea) != 2 || ea[0].addr != a.Overlay || len(eb) != 2 || eb[0].addr != b.Overlay {
		t.Fatalf("at 4s: echoes %v then %v, want a's then b's", ea, eb)
	}
	now = now.Add(20 * time.Millisecond)
	d := nthTarget(3)
	renamed := a
	renamed.Name = "renamed"
	c.setTargets([]Target{renamed, d}, now)
	for _, e := range eb {
		if c.reply(e.seq, e.addr, now) {
			t.Errorf("reply from %s taken after its peer was removed", e.addr)
		}
	}
	for _, e := range ea {
		if !c.reply(e.seq, e.addr, now) {
			t.Errorf("reply from %s dropped, though its peer stays", e.addr)
		}
	}
	before.Name = "renamed"
	before.OverlayPath.Sent++
	before.OverlayPath.Received++
	before.OverlayPath.RTT = 20 * time.Millisecond
	before.OverlayPath.LastReply = now
	before.UnderlayPath = before.OverlayPath
	got := resultOf(t, c, a.Peer)
	if !reflect.DeepEqual(got, before) {
		t.Errorf("kept peer after SetTargets:\n%+v\nwant\n%+v", got, before)
	}
	if r := c.results(); len(r) != 2 || r[0].Peer != a.Peer || r[1].Peer != d.Peer {
		t.Fatalf("results after SetTargets: %v, want %s and %s sorted", r, a.Peer, d.Peer)
	}
	if r := resultOf(t, c, d.Peer); r.State != StateUnknown || r.OverlayPath.Sent != 0 || !r.Since.Equal(now) {
		t.Errorf("new peer: %+v, want unknown, nothing sent, since now", r)
	}
	if len(c.pending) != 0 {
		t.Errorf("%d echoes still pending, want none", len(c.pending))
	}

	// A changed address is a new peer: its stats start again.
	moved := renamed
	moved.Underlay = netip.MustParseAddr("198.19.9.9")
	c.setTargets([]Target{moved, d}, now)
	if r := resultOf(t, c, a.Peer); r.OverlayPath.Sent != 0 || r.State != StateUnknown || r.Underlay != moved.Underlay {
		t.Errorf("peer with a new underlay address kept old stats: %+v", r)
	}
}

func resultOf(t *testing.T, c *core, peer netip.Prefix) Result {
	t.Helper()
	for _, r := range c.results() {
		if r.Peer == peer {
			return r
		}
	}
	t.Fatalf("no result for %s", peer)
	return Result{}
}

// stateRun drives one target through probes whose paths answer as told.
type stateRun struct {
	t   *testing.T
	c   *core
	now time.Time
	log *bytes.Buffer
}

func newStateRun(t *testing.T, tg Target) *stateRun {
	log := &bytes.Buffer{}
	c := newCore(Config{Interval: time.Second, Rate: 10, Timeout: 500 * time.Millisecond, BrokenAfter: 3, Window: 4,
		Port: 8472, Log: slog.New(slog.NewTextHandler(log, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c.setTargets([]Target{tg}, t0)
	return &stateRun{t: t, c: c, now: t0, log: log}
}

// probe sends one probe, answers the paths told to after rtt, lets the
// rest time out, and returns the state after it.
func (s *stateRun) probe(overlayUp, underlayUp bool) State {
	s.t.Helper()
	echoes, _ := s.c.poll(s.now)
	if len(echoes) == 0 {
		s.t.Fatalf("no probe due at %v", s.now.Sub(t0))
	}
	for _, e := range echoes {
		up := underlayUp
		if e.addr == s.c.due[0].Overlay {
			up = overlayUp
		}
		if up && !s.c.reply(e.seq, e.addr, s.now.Add(3*time.Millisecond)) {
			s.t.Fatalf("reply from %s not taken", e.addr)
		}
	}
	s.c.poll(s.now.Add(600 * time.Millisecond)) // expires the rest
	s.now = s.now.Add(time.Second)
	return s.c.results()[0].State
}

func TestStateMachine(t *testing.T) {
	t.Parallel()
	tg := nthTarget(7)
	s := newStateRun(t, tg)
	steps := []struct {
		overlay, underlay bool
		want              State
	}{
		{false, true, StateUnknown},
		{false, true, StateUnknown},
		{true, true, StateOK}, // ok at the first overlay reply
		{false, true, StateOK},
		{false, true, StateOK},
		{false, true, StateOverlayBroken}, // third overlay loss in a row, underlay answers
		{false, true, StateOverlayBroken},
		{false, false, StateOverlayBroken}, // underlay lost once: not yet unreachable
		{false, false, StateOverlayBroken},
		{false, false, StateUnreachable}, // both lost three in a row
		{false, true, StateOverlayBroken},
		{true, false, StateOK}, // the overlay answers: ok whatever the underlay does
	}
	for i, st := range steps {
		if got := s.probe(st.overlay, st.underlay); got != st.want {
			t.Fatalf("step %d (overlay %v, underlay %v): state %s, want %s\nlog:\n%s", i, st.overlay, st.underlay, got, st.want, s.log)
		}
	}
	r := s.c.results()[0]
	if r.OverlayPath.Sent != 12 || r.OverlayPath.Received != 2 || r.UnderlayPath.Received != 8 {
		t.Errorf("totals %+v / %+v, want 12 sent, 2 and 8 received", r.OverlayPath, r.UnderlayPath)
	}
	if r.OverlayPath.Loss != 0.75 || r.OverlayPath.LostInRow != 0 || r.UnderlayPath.LostInRow != 1 {
		t.Errorf("overlay loss %v (want 0.75 over the last 4), lost in row %d/%d (want 0/1)",
			r.OverlayPath.Loss, r.OverlayPath.LostInRow, r.UnderlayPath.LostInRow)
	}
	if r.OverlayPath.RTT != 3*time.Millisecond || !r.OverlayPath.LastReply.Equal(s.now.Add(-time.Second+3*time.Millisecond)) {
		t.Errorf("overlay RTT %v at %v, want 3ms at the last probe", r.OverlayPath.RTT, r.OverlayPath.LastReply)
	}
	if !r.Since.Equal(s.now.Add(-time.Second + 3*time.Millisecond)) {
		t.Errorf("since %v, want the last reply's time", r.Since)
	}
	log := s.log.String()
	for _, want := range []string{
		"level=WARN msg=\"peer answers on the underlay but not over the overlay: the VXLAN port (UDP 8472) is blocked on the path, or checksum offload corrupts encapsulated packets\"",
		"level=WARN msg=\"peer answers neither over the overlay nor on the underlay",
		"level=INFO msg=\"peer answers over the overlay again\"",
		"host=host7", "overlay=" + tg.Overlay.String(), "underlay=" + tg.Underlay.String(),
	} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if !s.c.changed {
		t.Error("changed not set after state changes")
	}
}

func TestNoUnderlayMeansUnreachable(t *testing.T) {
	t.Parallel()
	tg := nthTarget(8)
	tg.Underlay = netip.Addr{}
	s := newStateRun(t, tg)
	for range 3 {
		s.probe(false, false)
	}
	r := s.c.results()[0]
	if r.State != StateUnreachable || r.UnderlayPath.Sent != 0 {
		t.Errorf("no underlay address, overlay lost 3 times: %s with %d underlay echoes, want unreachable and none", r.State, r.UnderlayPath.Sent)
	}
}

func TestLateReplyIsLost(t *testing.T) {
	t.Parallel()
	c := newCore(Config{Interval: time.Second, Rate: 10, Timeout: 500 * time.Millisecond})
	tg := nthTarget(9)
	c.setTargets([]Target{tg}, t0)
	echoes, wake := c.poll(t0)
	if len(echoes) != 2 || !wake.Equal(t0.Add(500*time.Millisecond)) {
		t.Fatalf("first poll: %v, wake %v; want two echoes, wake at their timeout", echoes, wake.Sub(t0))
	}
	if c.reply(echoes[0].seq, tg.Underlay, t0.Add(time.Millisecond)) {
		t.Error("reply from the wrong address taken")
	}
	if c.reply(echoes[0].seq, echoes[0].addr, t0.Add(500*time.Millisecond)) {
		t.Error("reply at Timeout taken")
	}
	_, wake = c.poll(t0.Add(500 * time.Millisecond))
	if !wake.Equal(t0.Add(time.Second)) {
		t.Errorf("wake %v after the timeout, want the next probe at Interval", wake.Sub(t0))
	}
	r := c.results()[0]
	if r.OverlayPath.Received != 0 || r.OverlayPath.LostInRow != 1 || r.OverlayPath.Loss != 1 || len(c.pending) != 0 {
		t.Errorf("after a late reply: %+v, %d pending; want counted lost", r.OverlayPath, len(c.pending))
	}
	// The outcome of an older probe arriving after a newer one's does not
	// change the streak.
	e2, _ := c.poll(t0.Add(time.Second))
	e3, _ := c.poll(t0.Add(1100 * time.Millisecond)) // Interval not over: nothing
	if len(e3) != 0 {
		t.Fatalf("probe before Interval: %v", e3)
	}
	c.sendFailed(e2[1].seq, fmt.Errorf("no route to host"), t0.Add(time.Second))
	if r := c.results()[0]; r.UnderlayPath.LastError != "no route to host" || r.UnderlayPath.LostInRow != 2 {
		t.Errorf("send failure: %+v, want its error and a second loss in a row", r.UnderlayPath)
	}
}

func TestSNMPCounter(t *testing.T) {
	t.Parallel()
	const snmp = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 12
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 10 2 3 11 0 0 42 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 7 0 0
`
	if v, err := snmpCounter(strings.NewReader(snmp), "Udp", "InCsumErrors"); err != nil || v != 42 {
		t.Errorf("Udp InCsumErrors = %d, %v; want 42", v, err)
	}
	if _, err := snmpCounter(strings.NewReader(snmp), "Udp", "Nope"); err == nil {
		t.Error("a missing counter gave no error")
	}
	if _, err := snmpCounter(strings.NewReader("Ip: A\nIp: 1\n"), "Udp", "InCsumErrors"); err == nil {
		t.Error("missing Udp lines gave no error")
	}
}

func TestOlderOutcomeKeepsStreak(t *testing.T) {
	t.Parallel()
	// Timeout longer than Interval: two probes in flight at once.
	c := newCore(Config{Interval: time.Second, Rate: 10, Timeout: 1500 * time.Millisecond})
	tg := nthTarget(10)
	c.setTargets([]Target{tg}, t0)
	c.poll(t0) // probe 1: never answered
	e2, _ := c.poll(t0.Add(time.Second))
	for _, e := range e2 {
		c.reply(e.seq, e.addr, t0.Add(1010*time.Millisecond))
	}
	c.poll(t0.Add(1500 * time.Millisecond)) // probe 1 expires after probe 2's reply
	r := c.results()[0]
	if r.State != StateOK || r.OverlayPath.LostInRow != 0 || r.OverlayPath.Loss != 0.5 {
		t.Errorf("older loss after newer reply: %s, lost in row %d, loss %v; want ok, 0, 0.5",
			r.State, r.OverlayPath.LostInRow, r.OverlayPath.Loss)
	}
}

func TestParseTakesOnlyOurReplies(t *testing.T) {
	t.Parallel()
	ours := newIdentity()
	from := netip.MustParseAddr("198.18.0.2")
	asReply := func(id identity, seq uint16) []byte {
		b, err := id.echoRequest(seq, 56)
		if err != nil {
			t.Fatal(err)
		}
		b[0] = 0 // type 8 (request) -> 0 (reply); the checksum is not checked on parse
		return b
	}
	if r, ok := ours.parse(asReply(ours, 42), from); !ok || r.seq != 42 || r.from != from {
		t.Errorf("our own reply: %+v, %v", r, ok)
	}
	req, _ := ours.echoRequest(42, 56)
	if _, ok := ours.parse(req, from); ok {
		t.Error("an echo request taken as a reply")
	}
	sameID := newIdentity()
	sameID.id = ours.id
	sameID.token[0] = ^ours.token[0]
	if _, ok := ours.parse(asReply(sameID, 42), from); ok {
		t.Error("a reply with our ID but another token taken")
	}
	otherID := ours
	otherID.id++
	if _, ok := ours.parse(asReply(otherID, 42), from); ok {
		t.Error("a reply with another ID taken")
	}
}

func TestOverlaySendFailureNamed(t *testing.T) {
	t.Parallel()
	tg := nthTarget(11)
	s := newStateRun(t, tg)
	for range 3 {
		echoes, _ := s.c.poll(s.now)
		for _, e := range echoes {
			if e.addr == tg.Overlay {
				s.c.sendFailed(e.seq, fmt.Errorf("sendto: network is unreachable"), s.now)
			} else {
				s.c.reply(e.seq, e.addr, s.now.Add(time.Millisecond))
			}
		}
		s.now = s.now.Add(time.Second)
	}
	r := s.c.results()[0]
	if r.State != StateOverlayBroken || r.OverlayPath.LastError != "sendto: network is unreachable" {
		t.Fatalf("overlay echoes failing to send: %s, last error %q", r.State, r.OverlayPath.LastError)
	}
	if log := s.log.String(); !strings.Contains(log, "echoes over the overlay cannot be sent") || strings.Contains(log, "VXLAN port") {
		t.Errorf("log should name the send failure, not the port:\n%s", log)
	}
}

// Transitions reports each peer whose state changed once, with the state
// it had at the last call, and nothing when it changed back.
func TestTransitions(t *testing.T) {
	t.Parallel()
	tg := nthTarget(3)
	s := newStateRun(t, tg)
	if tr := s.c.transitions(); len(tr) != 0 {
		t.Fatalf("transitions before any probe: %+v", tr)
	}
	s.probe(true, true) // unknown -> ok
	tr := s.c.transitions()
	if len(tr) != 1 || tr[0].Peer != tg.Peer || tr[0].Was != StateUnknown || tr[0].State != StateOK {
		t.Fatalf("after the first reply: %+v, want unknown -> ok", tr)
	}
	if tr := s.c.transitions(); len(tr) != 0 {
		t.Fatalf("reported twice: %+v", tr)
	}
	for range 3 {
		s.probe(false, true) // ok -> overlay_broken
	}
	s.probe(true, true) // and back to ok before anyone looked
	if tr := s.c.transitions(); len(tr) != 0 {
		t.Fatalf("a change undone before the call is reported: %+v", tr)
	}
	for range 3 {
		s.probe(false, true)
	}
	if tr := s.c.transitions(); len(tr) != 1 || tr[0].Was != StateOK || tr[0].State != StateOverlayBroken {
		t.Fatalf("ok -> overlay_broken: %+v", tr)
	}
}
