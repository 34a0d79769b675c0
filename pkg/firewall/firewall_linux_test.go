package firewall

import (
	"net/netip"
	"os"
	"os/exec"
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
		blue, err := NewForward("blue")
		if err != nil {
			t.Fatal(err)
		}
		if err := blue.Ensure(netip.MustParsePrefix("10.99.0.0/16")); err != nil {
			t.Fatal(err)
		}
		f, _ := NewForward("default")
		for range 2 { // idempotent
			if err := f.Ensure(netip.MustParsePrefix("10.244.0.0/16")); err != nil {
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
		if err := f.Ensure(netip.MustParsePrefix("10.250.0.0/16")); err != nil {
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
