package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeIPT is an in-memory iptables: chains of rule specs, listed the way
// iptables-nft prints them (comment quoted, addresses masked, /0 left
// out), so the tests see the same differences between what is wanted and
// what is listed as the real thing shows.
type fakeIPT struct {
	mu          sync.Mutex
	chains      map[string][]string // "table/chain" -> rules, in order
	noRandom    bool                // an iptables without --random-fully
	writes      []string            // each change, in order
	lists       int
	reads       int         // iptables runs that change nothing
	afterWrite  func()      // called after each change, unlocked
	afterListFn func(n int) // called after the n-th List, unlocked
	failAppend  func(string) bool
}

func newFake() *fakeIPT {
	return &fakeIPT{chains: map[string][]string{"filter/FORWARD": nil, "nat/POSTROUTING": nil}}
}

func key(table, chain string) string { return table + "/" + chain }

func builtin(chain string) bool { return chain == "FORWARD" || chain == "POSTROUTING" }

// printed is a rule spec as iptables -S shows it.
func printed(spec []string) string {
	var out []string
	for i := 0; i < len(spec); i++ {
		switch f := spec[i]; {
		case (f == "-s" || f == "-d") && i+1 < len(spec):
			p := netip.MustParsePrefix(spec[i+1])
			i++
			if p.Bits() == 0 {
				if len(out) > 0 && out[len(out)-1] == "!" {
					out = out[:len(out)-1]
				}
				continue
			}
			out = append(out, f, p.Masked().String())
		case f == "--comment" && i+1 < len(spec):
			out = append(out, f, `"`+spec[i+1]+`"`)
			i++
		default:
			out = append(out, f)
		}
	}
	return strings.Join(out, " ")
}

func (f *fakeIPT) changed(what string) {
	f.writes = append(f.writes, what)
	if hook := f.afterWrite; hook != nil {
		f.mu.Unlock()
		hook()
		f.mu.Lock()
	}
}

func (f *fakeIPT) ChainExists(table, chain string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	_, ok := f.chains[key(table, chain)]
	return ok, nil
}

func (f *fakeIPT) NewChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.chains[key(table, chain)]; ok {
		return fmt.Errorf("chain %s exists", chain)
	}
	f.chains[key(table, chain)] = nil
	f.changed("-N " + chain)
	return nil
}

func (f *fakeIPT) Exists(table, chain string, spec ...string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	rules, ok := f.chains[key(table, chain)]
	if !ok {
		return false, fmt.Errorf("no chain %s", chain)
	}
	return slices.Contains(rules, printed(spec)), nil
}

func (f *fakeIPT) HasRandomFully() bool { return !f.noRandom }

func (f *fakeIPT) Insert(table, chain string, pos int, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	rules, ok := f.chains[key(table, chain)]
	if !ok || pos < 1 || pos > len(rules)+1 {
		return fmt.Errorf("insert %s %d: no such chain or position", chain, pos)
	}
	if f.failAppend != nil && f.failAppend(printed(spec)) {
		return fmt.Errorf("insert %s: refused", chain)
	}
	f.chains[key(table, chain)] = slices.Insert(rules, pos-1, printed(spec))
	f.changed(fmt.Sprintf("-I %s %d %s", chain, pos, printed(spec)))
	return nil
}

func (f *fakeIPT) Append(table, chain string, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	rules, ok := f.chains[key(table, chain)]
	if !ok {
		return fmt.Errorf("append %s: no such chain", chain)
	}
	if f.failAppend != nil && f.failAppend(printed(spec)) {
		return fmt.Errorf("append %s: refused", chain)
	}
	f.chains[key(table, chain)] = append(rules, printed(spec))
	f.changed("-A " + chain + " " + printed(spec))
	return nil
}

func (f *fakeIPT) List(table, chain string) ([]string, error) {
	f.mu.Lock()
	f.reads++
	rules, ok := f.chains[key(table, chain)]
	if !ok {
		f.mu.Unlock()
		return nil, fmt.Errorf("no chain %s", chain)
	}
	head := "-N " + chain
	if builtin(chain) {
		head = "-P " + chain + " ACCEPT"
	}
	out := []string{head}
	for _, r := range rules {
		out = append(out, "-A "+chain+" "+r)
	}
	f.lists++
	n, hook := f.lists, f.afterListFn
	f.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return out, nil
}

func (f *fakeIPT) DeleteById(table, chain string, id int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	rules := f.chains[key(table, chain)]
	if id < 1 || id > len(rules) {
		return fmt.Errorf("delete %s %d: no such rule", chain, id)
	}
	f.chains[key(table, chain)] = slices.Delete(rules, id-1, id)
	f.changed(fmt.Sprintf("-D %s %d", chain, id))
	return nil
}

func (f *fakeIPT) Delete(table, chain string, spec ...string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	rules := f.chains[key(table, chain)]
	i := slices.Index(rules, printed(spec))
	if i < 0 {
		return fmt.Errorf("delete %s %q: no such rule", chain, printed(spec))
	}
	f.chains[key(table, chain)] = slices.Delete(rules, i, i+1)
	f.changed("-D " + chain + " " + printed(spec))
	return nil
}

func (f *fakeIPT) ClearAndDeleteChain(table, chain string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.chains[key(table, chain)]; ok {
		delete(f.chains, key(table, chain))
		f.changed("-X " + chain)
	}
	return nil
}

// rules is the chain as iptables -S prints it, without the -N line.
func (f *fakeIPT) rules(table, chain string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, r := range f.chains[key(table, chain)] {
		out = append(out, "-A "+chain+" "+r)
	}
	return out
}

func (f *fakeIPT) countWrites(fn func()) int {
	n := len(f.writes)
	fn()
	return len(f.writes) - n
}

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantRules(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("chain:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

const (
	lan1 = "198.19.10.0/24"
	lan2 = "198.19.20.0/24"
)

// masqRules is what iptables prints for a network's masquerade rules.
func masqRules(net, subnet string, keep ...string) []string {
	c := ` -m comment --comment "overlay-net=` + net + `"`
	var out []string
	for _, k := range keep {
		out = append(out, "-A OVERLAY-POSTROUTING -s "+subnet+" -d "+k+c+" -j RETURN")
	}
	return append(out, "-A OVERLAY-POSTROUTING -s "+subnet+" ! -d 224.0.0.0/4"+c+" -j MASQUERADE --random-fully")
}

// returnsAbove fails the test at a moment when a MASQUERADE of subnet
// precedes a RETURN to one of dsts, or a RETURN is missing: from there a
// container's packet to that destination would be masqueraded.
func returnsAbove(t *testing.T, f *fakeIPT, subnet string, dsts ...string) func() {
	return func() {
		rules := f.rules("nat", MasqChain)
		m := slices.IndexFunc(rules, func(r string) bool {
			return strings.Contains(r, "-s "+subnet+" ") && strings.Contains(r, "MASQUERADE")
		})
		if m < 0 {
			return
		}
		for _, d := range dsts {
			if !slices.ContainsFunc(rules[:m], func(r string) bool {
				return strings.Contains(r, "-s "+subnet+" -d "+d+" ") && strings.HasSuffix(r, "-j RETURN")
			}) {
				t.Errorf("a MASQUERADE of %s precedes every RETURN to %s:\n%s", subnet, d, strings.Join(rules, "\n"))
			}
		}
	}
}

func TestMasqRulesAndJump(t *testing.T) {
	f := newFake()
	m := newTables(f).Masq("default")
	mustNil(t, m.Ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16", lan1)))
	wantRules(t, f.rules("nat", MasqChain), masqRules("default", "10.244.1.0/24", "10.244.0.0/16", lan1)...)
	wantRules(t, f.rules("nat", "POSTROUTING"), "-A POSTROUTING -j OVERLAY-POSTROUTING")
	if n := f.countWrites(func() { mustNil(t, m.Ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16", lan1))) }); n != 0 {
		t.Errorf("unchanged Ensure wrote %d times: %q", n, f.writes[len(f.writes)-n:])
	}
}

// A subnet given unmasked or a kept /0 must compare equal to what
// iptables prints back, else every pass rewrites the rules.
func TestMasqCanonicalForm(t *testing.T) {
	f := newFake()
	m := newTables(f).Masq("default")
	ensure := func() {
		mustNil(t, m.Ensure(netip.MustParsePrefix("10.244.1.7/24"), pfx("10.244.0.0/16", "0.0.0.0/0")))
	}
	ensure()
	if n := f.countWrites(ensure); n != 0 {
		t.Errorf("unchanged Ensure wrote %d times: %q", n, f.writes[len(f.writes)-n:])
	}
	c := ` -m comment --comment "overlay-net=default"`
	wantRules(t, f.rules("nat", MasqChain),
		"-A OVERLAY-POSTROUTING -s 10.244.1.0/24 -d 10.244.0.0/16"+c+" -j RETURN",
		"-A OVERLAY-POSTROUTING -s 10.244.1.0/24"+c+" -j RETURN",
		"-A OVERLAY-POSTROUTING -s 10.244.1.0/24 ! -d 224.0.0.0/4"+c+" -j MASQUERADE --random-fully")
}

// Whatever changes in keep — a LAN added, removed, the order — the result
// is the wanted list in order, the writes add everything before deleting
// anything, and at no moment does the MASQUERADE precede a RETURN that
// both the old and the new list have.
func TestMasqKeepChanges(t *testing.T) {
	const s, n = "10.244.1.0/24", "10.244.0.0/16"
	steps := []struct {
		name   string
		keep   []string
		stable []string // RETURNs wanted before and after
	}{
		{"first", []string{n}, nil},
		{"LAN added", []string{n, lan1}, []string{n}},
		{"second LAN", []string{n, lan1, lan2}, []string{n, lan1}},
		{"order changed", []string{n, lan2, lan1}, []string{n, lan1, lan2}},
		{"LAN removed", []string{n, lan1}, []string{n, lan1}},
		{"all LANs removed", []string{n}, []string{n}},
	}
	f := newFake()
	m := newTables(f).Masq("default")
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			f.afterWrite = returnsAbove(t, f, s, st.stable...)
			from := len(f.writes)
			mustNil(t, m.Ensure(netip.MustParsePrefix(s), pfx(st.keep...)))
			f.afterWrite = nil
			wantRules(t, f.rules("nat", MasqChain), masqRules("default", s, st.keep...)...)
			assertAddsFirst(t, f.writes[from:])
		})
	}
}

// assertAddsFirst fails when a delete comes before an add.
func assertAddsFirst(t *testing.T, writes []string) {
	t.Helper()
	deleted := false
	for _, w := range writes {
		isDelete := strings.HasPrefix(w, "-D ")
		if !isDelete && deleted {
			t.Fatalf("an add after a delete: %q", writes)
		}
		deleted = deleted || isDelete
	}
}

func TestMasqSubnetChange(t *testing.T) {
	f := newFake()
	m := newTables(f).Masq("default")
	mustNil(t, m.Ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16")))
	mustNil(t, m.Ensure(netip.MustParsePrefix("10.244.9.0/24"), pfx("10.244.0.0/16")))
	wantRules(t, f.rules("nat", MasqChain), masqRules("default", "10.244.9.0/24", "10.244.0.0/16")...)
}

// Two networks share the chain: changing, turning off or removing one
// leaves the other's rules as they were, in order; the chain and the jump
// go with the last.
func TestMasqTwoNetworks(t *testing.T) {
	f := newFake()
	a, b := newTables(f).Masq("a"), newTables(f).Masq("b")
	mustNil(t, a.Ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16", lan1)))
	mustNil(t, b.Ensure(netip.MustParsePrefix("10.245.3.0/24"), pfx("10.245.0.0/16")))
	bRules := masqRules("b", "10.245.3.0/24", "10.245.0.0/16")
	mustNil(t, a.Ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16", lan2)))
	// a's changed rules go above b's (order between networks is free).
	wantRules(t, f.rules("nat", MasqChain), append(masqRules("a", "10.244.1.0/24", "10.244.0.0/16", lan2), bRules...)...)

	mustNil(t, a.Ensure(netip.Prefix{}, nil)) // a turned ipMasq off
	wantRules(t, f.rules("nat", MasqChain), bRules...)
	mustNil(t, a.Ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16")))
	mustNil(t, a.Remove())
	wantRules(t, f.rules("nat", MasqChain), bRules...)
	wantRules(t, f.rules("nat", "POSTROUTING"), "-A POSTROUTING -j OVERLAY-POSTROUTING")

	mustNil(t, b.Remove())
	if ok, _ := f.ChainExists("nat", MasqChain); ok {
		t.Error("chain left after the last network's rules went")
	}
	wantRules(t, f.rules("nat", "POSTROUTING"))
	if n := f.countWrites(func() { mustNil(t, b.Remove()) }); n != 0 {
		t.Errorf("Remove of absent rules wrote %d times", n)
	}
}

func TestMasqWithoutRandomFully(t *testing.T) {
	f := newFake()
	f.noRandom = true
	mustNil(t, newTables(f).Masq("a").Ensure(netip.MustParsePrefix("10.244.1.0/24"), nil))
	wantRules(t, f.rules("nat", MasqChain),
		`-A OVERLAY-POSTROUTING -s 10.244.1.0/24 ! -d 224.0.0.0/4 -m comment --comment "overlay-net=a" -j MASQUERADE`)
}

// What iptables would refuse is refused before anything is written: a
// rule failing after some adds would leave a partial copy at every retry.
func TestInvalidPrefixesWriteNothing(t *testing.T) {
	f := newFake()
	m, fw := newTables(f).Masq("a"), newTables(f).Forward("a")
	mustNil(t, m.Ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16")))
	mustNil(t, fw.Ensure(netip.MustParsePrefix("10.244.0.0/16"), nil))
	before := len(f.writes)
	for _, err := range []error{
		m.Ensure(netip.MustParsePrefix("10.244.1.0/24"), []netip.Prefix{{}}),
		m.Ensure(netip.MustParsePrefix("fd00::/64"), nil),
		fw.Ensure(netip.Prefix{}, nil),
		fw.Ensure(netip.MustParsePrefix("10.244.0.0/16"), pfx("fd00::/48")),
	} {
		if err == nil || !strings.Contains(err.Error(), "overlay-net=a") {
			t.Errorf("err = %v, want one naming the network's rules", err)
		}
	}
	if len(f.writes) != before {
		t.Errorf("refused Ensures wrote %q", f.writes[before:])
	}
}

// A failed add leaves the old rules in place (nothing deleted), and the
// next good Ensure cleans up the partial copy.
func TestMasqFailedAppendKeepsOldRules(t *testing.T) {
	f := newFake()
	m := newTables(f).Masq("a")
	old := masqRules("a", "10.244.1.0/24", "10.244.0.0/16")
	mustNil(t, m.Ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16")))
	f.failAppend = func(r string) bool { return strings.Contains(r, lan1) }
	err := m.Ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16", lan1))
	if err == nil || !strings.Contains(err.Error(), MasqChain) || !strings.Contains(err.Error(), lan1) {
		t.Fatalf("err = %v, want one naming the chain and the rule", err)
	}
	if got := f.rules("nat", MasqChain); len(got) < len(old) || !slices.Equal(got[len(got)-len(old):], old) {
		t.Fatalf("old rules gone after a failed add:\n%s", strings.Join(got, "\n"))
	}
	f.failAppend = nil
	mustNil(t, m.Ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16", lan1)))
	wantRules(t, f.rules("nat", MasqChain), masqRules("a", "10.244.1.0/24", "10.244.0.0/16", lan1)...)
}

// forwardRules is what iptables prints for a network's FORWARD rules.
func forwardRules(net, cidr string, isolate ...string) (drops, accepts []string) {
	c := ` -m comment --comment "overlay-net=` + net + `"`
	for _, o := range isolate {
		drops = append(drops, "-A OVERLAY-FORWARD -s "+cidr+" -d "+o+c+" -j DROP")
	}
	accepts = []string{"-A OVERLAY-FORWARD -s " + cidr + c + " -j ACCEPT", "-A OVERLAY-FORWARD -d " + cidr + c + " -j ACCEPT"}
	return drops, accepts
}

// Each network's DROPs sit above every network's ACCEPTs; a range no
// longer served loses its DROP; a range change replaces both kinds; the
// other network's rules stay.
func TestForwardIsolationRules(t *testing.T) {
	f := newFake()
	a, b := newTables(f).Forward("a"), newTables(f).Forward("b")
	const na, nb, nc = "10.244.0.0/16", "10.245.0.0/16", "10.246.0.0/16"
	mustNil(t, a.Ensure(netip.MustParsePrefix(na), nil))
	mustNil(t, b.Ensure(netip.MustParsePrefix(nb), pfx(na, nc)))
	mustNil(t, a.Ensure(netip.MustParsePrefix(na), pfx(nb, nc)))
	aDrops, aAccepts := forwardRules("a", na, nb, nc)
	bDrops, bAccepts := forwardRules("b", nb, na, nc)
	wantRules(t, f.rules("filter", Chain), slices.Concat(aDrops, bDrops, aAccepts, bAccepts)...)
	if n := f.countWrites(func() { mustNil(t, a.Ensure(netip.MustParsePrefix(na), pfx(nb, nc))) }); n != 0 {
		t.Errorf("unchanged Ensure wrote %d times", n)
	}

	// c is no longer served: its DROPs go, nothing else moves.
	mustNil(t, a.Ensure(netip.MustParsePrefix(na), pfx(nb)))
	mustNil(t, b.Ensure(netip.MustParsePrefix(nb), pfx(na)))
	aDrops, _ = forwardRules("a", na, nb)
	bDrops, _ = forwardRules("b", nb, na)
	wantRules(t, f.rules("filter", Chain), slices.Concat(bDrops, aDrops, aAccepts, bAccepts)...)

	// a's range changes: both kinds of its rules are replaced.
	const na2 = "10.250.0.0/16"
	from := len(f.writes)
	mustNil(t, a.Ensure(netip.MustParsePrefix(na2), pfx(nb)))
	assertAddsFirst(t, f.writes[from:])
	aDrops, aAccepts = forwardRules("a", na2, nb)
	wantRules(t, f.rules("filter", Chain), slices.Concat(aDrops, bDrops, bAccepts, aAccepts)...)

	// Removing a keeps b's rules; the chain stays for b.
	mustNil(t, a.Remove())
	wantRules(t, f.rules("filter", Chain), slices.Concat(bDrops, bAccepts)...)
	wantRules(t, f.rules("filter", "FORWARD"), "-A FORWARD -j OVERLAY-FORWARD")
	mustNil(t, b.Remove())
	wantRules(t, f.rules("filter", "FORWARD"))
}

// While a network's DROPs change, the ones it keeps never go missing.
func TestForwardDropsNeverMissing(t *testing.T) {
	f := newFake()
	a := newTables(f).Forward("a")
	const na, nb, nc = "10.244.0.0/16", "10.245.0.0/16", "10.246.0.0/16"
	mustNil(t, a.Ensure(netip.MustParsePrefix(na), pfx(nb)))
	f.afterWrite = func() {
		rules := f.rules("filter", Chain)
		drop := `-A OVERLAY-FORWARD -s ` + na + ` -d ` + nb + ` -m comment --comment "overlay-net=a" -j DROP`
		if i := slices.Index(rules, drop); i < 0 || i > slices.IndexFunc(rules, func(r string) bool { return strings.HasSuffix(r, "ACCEPT") }) {
			t.Errorf("the DROP to %s is missing or below an ACCEPT:\n%s", nb, strings.Join(rules, "\n"))
		}
	}
	mustNil(t, a.Ensure(netip.MustParsePrefix(na), pfx(nc, nb)))
	mustNil(t, a.Ensure(netip.MustParsePrefix(na), pfx(nb)))
}

// Two networks' keepers run at once (overlayd runs one agent per network):
// another keeper's insert between a keeper's List and its deletes by
// number must not make it delete the wrong rule.
func TestConcurrentKeepers(t *testing.T) {
	f := newFake()
	tables := newTables(f) // one per process, as overlayd makes it
	a, b := tables.Forward("a"), tables.Forward("b")
	const na, nb = "10.244.0.0/16", "10.245.0.0/16"
	mustNil(t, b.Ensure(netip.MustParsePrefix(nb), nil))
	mustNil(t, a.Ensure(netip.MustParsePrefix("10.250.0.0/16"), nil))
	lists := f.lists
	bDone := make(chan error, 1)
	f.afterListFn = func(n int) {
		if n != lists+1 { // a's List, before its writes
			return
		}
		go func() { bDone <- b.Ensure(netip.MustParsePrefix(nb), pfx(na)) }()
		select { // b runs now unless it has to wait for a
		case err := <-bDone:
			bDone <- err
		case <-time.After(200 * time.Millisecond):
		}
	}
	mustNil(t, a.Ensure(netip.MustParsePrefix(na), pfx(nb)))
	mustNil(t, <-bDone)
	f.afterListFn = nil
	aDrops, aAccepts := forwardRules("a", na, nb)
	bDrops, bAccepts := forwardRules("b", nb, na)
	got := f.rules("filter", Chain)
	firstAccept := slices.IndexFunc(got, func(r string) bool { return strings.HasSuffix(r, "ACCEPT") })
	if slices.ContainsFunc(got[firstAccept:], func(r string) bool { return strings.HasSuffix(r, "DROP") }) {
		t.Errorf("a DROP below an ACCEPT:\n%s", strings.Join(got, "\n"))
	}
	slices.Sort(got)
	want := slices.Concat(aDrops, bDrops, aAccepts, bAccepts)
	slices.Sort(want)
	wantRules(t, got, want...)
}

// Every iptables run is a process start on the way to a new host's ready
// stamp: a first start looks only for the chain, and later ones find
// everything in place without writing.
func TestFirstEnsureOnlyLooksForTheChain(t *testing.T) {
	f := newFake()
	tables := newTables(f)
	fw, m := tables.Forward("default"), tables.Masq("default")
	const cidr, subnet = "10.244.0.0/16", "10.244.1.0/24"
	ensure := func() {
		mustNil(t, fw.Ensure(netip.MustParsePrefix(cidr), nil))
		mustNil(t, m.Ensure(netip.MustParsePrefix(subnet), pfx(cidr)))
	}
	ensure()
	if f.reads != 2 {
		t.Errorf("first Ensures read iptables %d times, want 2 (is the chain there?)", f.reads)
	}
	_, accepts := forwardRules("default", cidr)
	wantRules(t, f.rules("filter", Chain), accepts...)
	wantRules(t, f.rules("filter", "FORWARD"), "-A FORWARD -j "+Chain)
	wantRules(t, f.rules("nat", MasqChain), masqRules("default", subnet, cidr)...)
	wantRules(t, f.rules("nat", "POSTROUTING"), "-A POSTROUTING -j "+MasqChain)
	if n := f.countWrites(ensure); n != 0 {
		t.Errorf("unchanged Ensures wrote %d times: %q", n, f.writes[len(f.writes)-n:])
	}
}

// A jump already gone (flushed by hand) does not stop Remove from taking
// the rules and the chain.
func TestRemoveWithoutJump(t *testing.T) {
	f := newFake()
	fw := newTables(f).Forward("a")
	mustNil(t, fw.Ensure(netip.MustParsePrefix("10.244.0.0/16"), nil))
	mustNil(t, f.Delete("filter", "FORWARD", "-j", Chain))
	mustNil(t, fw.Remove())
	if ok, _ := f.ChainExists("filter", Chain); ok {
		t.Error("chain left after Remove")
	}
}
