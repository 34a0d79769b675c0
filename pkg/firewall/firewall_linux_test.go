package firewall

import (
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
)

// inNewNetns runs fn in a fresh network namespace removed afterwards; the
// iptables binaries go-iptables runs inherit it from the locked thread.
func inNewNetns(t *testing.T, fn func(ns.NetNS)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces: run make test as root")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Fatal("iptables is not installed; run make deps")
	}
	netns, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Close(); testutils.UnmountNS(netns) })
	if err := netns.Do(func(ns.NetNS) error { fn(netns); return nil }); err != nil {
		t.Fatal(err)
	}
}

// countingRunner counts the iptables runs that change something, so a
// test can tell an Ensure that found everything in place from one that
// rewrote it.
type countingRunner struct {
	runner
	writes int
}

func (c *countingRunner) NewChain(table, chain string) error {
	c.writes++
	return c.runner.NewChain(table, chain)
}

func (c *countingRunner) Insert(table, chain string, pos int, spec ...string) error {
	c.writes++
	return c.runner.Insert(table, chain, pos, spec...)
}

func (c *countingRunner) Append(table, chain string, spec ...string) error {
	c.writes++
	return c.runner.Append(table, chain, spec...)
}

func (c *countingRunner) DeleteById(table, chain string, id int) error {
	c.writes++
	return c.runner.DeleteById(table, chain, id)
}

func (c *countingRunner) Delete(table, chain string, spec ...string) error {
	c.writes++
	return c.runner.Delete(table, chain, spec...)
}

func (c *countingRunner) ClearAndDeleteChain(table, chain string) error {
	c.writes++
	return c.runner.ClearAndDeleteChain(table, chain)
}

// newCountingRunner is the real iptables (in the current netns), counted.
func newCountingRunner(t *testing.T) *countingRunner {
	t.Helper()
	ipt, err := newRunner()
	if err != nil {
		t.Fatal(err)
	}
	return &countingRunner{runner: ipt}
}

func rulesOf(t *testing.T, chain string) []string {
	t.Helper()
	out, err := exec.Command("iptables", "-S", chain).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -S %s: %v\n%s", chain, err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func TestForwardEnsure(t *testing.T) {
	inNewNetns(t, func(ns.NetNS) {
		tables, err := NewTables()
		if err != nil {
			t.Fatal(err)
		}
		blue := tables.Forward("blue")
		if err := blue.Ensure(netip.MustParsePrefix("10.99.0.0/16"), nil); err != nil {
			t.Fatal(err)
		}
		f := tables.Forward("default")
		for range 2 { // idempotent
			if err := f.Ensure(netip.MustParsePrefix("10.244.0.0/16"), nil); err != nil {
				t.Fatal(err)
			}
		}
		fwd := rulesOf(t, "FORWARD")
		if len(fwd) != 2 || fwd[1] != "-A FORWARD -j "+Chain {
			t.Fatalf("FORWARD = %q, want one jump to %s", fwd, Chain)
		}
		got := strings.Join(rulesOf(t, Chain), "\n")
		for _, want := range []string{
			"-A OVERLAY-FORWARD -s 10.244.0.0/16 -m comment --comment \"overlay-net=default\" -j ACCEPT",
			"-A OVERLAY-FORWARD -d 10.244.0.0/16 -m comment --comment \"overlay-net=default\" -j ACCEPT",
			"-A OVERLAY-FORWARD -s 10.99.0.0/16 -m comment --comment \"overlay-net=blue\" -j ACCEPT",
		} {
			if !strings.Contains(got, want) {
				t.Errorf("chain lacks %q:\n%s", want, got)
			}
		}
		if n := len(rulesOf(t, Chain)); n != 5 {
			t.Errorf("chain has %d lines, want -N + 4 rules:\n%s", n, got)
		}

		// The network's range changed: its old rules go, blue's stay.
		if err := f.Ensure(netip.MustParsePrefix("10.250.0.0/16"), nil); err != nil {
			t.Fatal(err)
		}
		got = strings.Join(rulesOf(t, Chain), "\n")
		if strings.Contains(got, "10.244.0.0/16") || !strings.Contains(got, "10.250.0.0/16") || !strings.Contains(got, "10.99.0.0/16") {
			t.Fatalf("after range change:\n%s", got)
		}

		// Remove takes our rules; the chain stays while blue uses it.
		if err := f.Remove(); err != nil {
			t.Fatal(err)
		}
		if got := rulesOf(t, Chain); len(got) != 3 {
			t.Fatalf("after removing default: %q", got)
		}
		if err := blue.Remove(); err != nil {
			t.Fatal(err)
		}
		if got := rulesOf(t, "FORWARD"); len(got) != 1 {
			t.Fatalf("FORWARD after removing both: %q", got)
		}
		if err := blue.Remove(); err != nil {
			t.Fatalf("second Remove: %v", err)
		}
	})
}

func TestHasComment(t *testing.T) {
	fields := strings.Fields(`-A OVERLAY-FORWARD -s 10.0.0.0/8 -m comment --comment "overlay-net=a" -j ACCEPT`)
	if !hasComment(fields, "overlay-net=a") || hasComment(fields, "overlay-net=ab") {
		t.Fatal("hasComment mismatch")
	}
}

// chainRules returns the chain's rules without the -N line, quotes
// dropped, in order.
func chainRules(t *testing.T, table, chain string) []string {
	t.Helper()
	out, err := exec.Command("iptables", "-t", table, "-S", chain).CombinedOutput()
	if err != nil {
		t.Fatalf("iptables -t %s -S %s: %v\n%s", table, chain, err, out)
	}
	lines := strings.Split(strings.ReplaceAll(strings.TrimSpace(string(out)), `"`, ""), "\n")
	return lines[1:]
}

var (
	netA = netip.MustParsePrefix("10.244.0.0/16")
	netB = netip.MustParsePrefix("10.245.0.0/16")
)

// Finding: with several networks on one host, the accept rules let one
// network's containers reach another's. Each network now drops what it
// sends to the others, above every network's accepts; a network no longer
// served loses its drop; a second Ensure writes nothing.
func TestForwardIsolation(t *testing.T) {
	inNewNetns(t, func(ns.NetNS) {
		ipt := newCountingRunner(t)
		a, b := newTables(ipt).Forward("a"), newTables(ipt).Forward("b")
		if err := a.Ensure(netA, nil); err != nil {
			t.Fatal(err)
		}
		if err := b.Ensure(netB, []netip.Prefix{netA}); err != nil {
			t.Fatal(err)
		}
		if err := a.Ensure(netA, []netip.Prefix{netB}); err != nil {
			t.Fatal(err)
		}
		got := chainRules(t, "filter", Chain)
		lastDrop, firstAccept := -1, len(got)
		for i, r := range got {
			if strings.HasSuffix(r, "-j DROP") {
				lastDrop = i
			} else if i < firstAccept {
				firstAccept = i
			}
		}
		if lastDrop < 0 || lastDrop > firstAccept || len(got) != 6 {
			t.Fatalf("want 2 drops above 4 accepts:\n%s", strings.Join(got, "\n"))
		}
		for _, want := range []string{
			"-A OVERLAY-FORWARD -s 10.244.0.0/16 -d 10.245.0.0/16 -m comment --comment overlay-net=a -j DROP",
			"-A OVERLAY-FORWARD -s 10.245.0.0/16 -d 10.244.0.0/16 -m comment --comment overlay-net=b -j DROP",
		} {
			if !slices.Contains(got, want) {
				t.Errorf("missing %q in\n%s", want, strings.Join(got, "\n"))
			}
		}
		ipt.writes = 0
		if err := a.Ensure(netA, []netip.Prefix{netB}); err != nil || ipt.writes != 0 {
			t.Errorf("second Ensure: %d writes, %v; want none", ipt.writes, err)
		}
		if err := a.Ensure(netA, nil); err != nil {
			t.Fatal(err)
		}
		if got := chainRules(t, "filter", Chain); slices.ContainsFunc(got, func(r string) bool { return strings.Contains(r, "overlay-net=a -j DROP") }) {
			t.Errorf("a's drop stayed after b was no longer served:\n%s", strings.Join(got, "\n"))
		}
	})
}

// Masquerade: RETURN for the network and each kept LAN, then MASQUERADE,
// in that order whatever changes; idempotent; another network's rules
// untouched; an invalid subnet removes the network's rules, and the chain
// goes with the last network.
func TestMasqEnsure(t *testing.T) {
	inNewNetns(t, func(ns.NetNS) {
		ipt := newCountingRunner(t)
		m, other := newTables(ipt).Masq("default"), newTables(ipt).Masq("blue")
		s1, lan := netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("198.19.10.0/24")
		if err := other.Ensure(netip.MustParsePrefix("10.245.7.0/24"), []netip.Prefix{netB}); err != nil {
			t.Fatal(err)
		}
		if err := m.Ensure(s1, []netip.Prefix{netA}); err != nil {
			t.Fatal(err)
		}
		if err := m.Ensure(s1, []netip.Prefix{netA, lan}); err != nil {
			t.Fatal(err)
		}
		var mine []string
		for _, r := range chainRules(t, "nat", MasqChain) {
			if strings.Contains(r, "overlay-net=default") {
				mine = append(mine, r)
			}
		}
		want := []string{
			"-A OVERLAY-POSTROUTING -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment overlay-net=default -j RETURN",
			"-A OVERLAY-POSTROUTING -s 10.244.1.0/24 -d 198.19.10.0/24 -m comment --comment overlay-net=default -j RETURN",
			"-A OVERLAY-POSTROUTING -s 10.244.1.0/24 ! -d 224.0.0.0/4 -m comment --comment overlay-net=default -j MASQUERADE --random-fully",
		}
		if !slices.Equal(mine, want) {
			t.Fatalf("rules:\n%s\nwant:\n%s", strings.Join(mine, "\n"), strings.Join(want, "\n"))
		}
		ipt.writes = 0
		if err := m.Ensure(s1, []netip.Prefix{netA, lan}); err != nil || ipt.writes != 0 {
			t.Errorf("second Ensure: %d writes, %v; want none", ipt.writes, err)
		}
		if err := m.Ensure(netip.Prefix{}, nil); err != nil {
			t.Fatal(err)
		}
		got := chainRules(t, "nat", MasqChain)
		if len(got) != 2 || !strings.Contains(got[0], "overlay-net=blue") {
			t.Fatalf("after turning default off, want blue's 2 rules only:\n%s", strings.Join(got, "\n"))
		}
		if err := other.Remove(); err != nil {
			t.Fatal(err)
		}
		if out, _ := exec.Command("iptables", "-t", "nat", "-S", "POSTROUTING").CombinedOutput(); strings.Contains(string(out), MasqChain) {
			t.Errorf("jump left after the last network's rules went:\n%s", out)
		}
	})
}

// The fake prints rules as iptables-nft does, and the wanted rules are
// built in that form: the same calls against both give the same chains,
// line for line (quotes included), and a second round writes nothing on
// the real one — also for an unmasked subnet and a kept /0.
func TestFakePrintsLikeIptables(t *testing.T) {
	inNewNetns(t, func(ns.NetNS) {
		real, fake := newCountingRunner(t), newFake()
		calls := func(ipt runner) error {
			m, f := newTables(ipt).Masq("default"), newTables(ipt).Forward("default")
			if err := m.Ensure(netip.MustParsePrefix("10.244.1.7/24"), pfx("10.244.0.0/16", "198.19.10.0/24", "0.0.0.0/0")); err != nil {
				return err
			}
			return f.Ensure(netip.MustParsePrefix("10.244.3.4/16"), pfx("10.245.0.0/16", "198.19.10.1/32"))
		}
		for _, ipt := range []runner{real, fake} {
			if err := calls(ipt); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range [][2]string{{"nat", MasqChain}, {"filter", Chain}, {"nat", "POSTROUTING"}, {"filter", "FORWARD"}} {
			got, err := real.List(tc[0], tc[1])
			if err != nil {
				t.Fatal(err)
			}
			if want := fake.rules(tc[0], tc[1]); !slices.Equal(got[1:], want) {
				t.Errorf("%s %s, iptables:\n%s\nfake:\n%s", tc[0], tc[1], strings.Join(got[1:], "\n"), strings.Join(want, "\n"))
			}
		}
		real.writes = 0
		if err := calls(real); err != nil || real.writes != 0 {
			t.Errorf("second round: %d writes, %v; want none", real.writes, err)
		}
	})
}
