package probe

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
)

// The root tests build hosts in namespaces of their own: host N has eth0
// 198.18.0.N/24 (a veth to the other host) and, for the overlay, a VXLAN
// device vx0 (VNI 1, port vxlanPort) with the VTEP address 10.244.N.0/32
// and, by hand, the route, neighbour and FDB entry overlayd would program
// for the peer.

const vxlanPort = 8472

type testHost struct {
	ns ns.NetNS
	n  int
}

func (h testHost) name() string         { return filepath.Base(h.ns.Path()) }
func (h testHost) underlay() netip.Addr { return netip.AddrFrom4([4]byte{198, 18, 0, byte(h.n)}) }
func (h testHost) vtep() netip.Addr     { return netip.AddrFrom4([4]byte{10, 244, byte(h.n), 0}) }
func (h testHost) mac() string          { return fmt.Sprintf("02:aa:00:00:00:%02x", h.n) }
func (h testHost) subnet() netip.Prefix { return netip.PrefixFrom(h.vtep(), 24) }
func (h testHost) target() Target {
	return Target{Peer: h.subnet(), Name: fmt.Sprintf("host%d", h.n), Overlay: h.vtep(), Underlay: h.underlay()}
}

// newHost creates a namespace with loopback up, removed when the test ends.
func newHost(t *testing.T, n int) testHost {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces: run make test as root")
	}
	netns, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		netns.Close()
		if err := testutils.UnmountNS(netns); err != nil {
			t.Errorf("remove netns %s: %v", netns.Path(), err)
		}
	})
	h := testHost{ns: netns, n: n}
	h.ip(t, "link set lo up")
	return h
}

// ip runs `ip -n NS` with each of cmds (one command line each).
func (h testHost) ip(t *testing.T, cmds ...string) {
	t.Helper()
	for _, c := range cmds {
		h.exec(t, append([]string{"ip"}, strings.Fields(c)...)...)
	}
}

// exec runs a command inside h's namespace.
func (h testHost) exec(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", h.name()}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", h.name(), strings.Join(args, " "), err, out)
	}
}

// underlayPair makes hosts 1 and 2 joined by a veth.
func underlayPair(t *testing.T) (a, b testHost) {
	t.Helper()
	a, b = newHost(t, 1), newHost(t, 2)
	a.ip(t, "link add eth0 type veth peer name eth0 netns "+b.name())
	for _, h := range []testHost{a, b} {
		h.ip(t, fmt.Sprintf("addr add %s/24 dev eth0", h.underlay()), "link set eth0 up")
	}
	return a, b
}

// overlayPair makes hosts 1 and 2 joined by a veth and by VXLAN over it.
func overlayPair(t *testing.T) (a, b testHost) {
	t.Helper()
	a, b = underlayPair(t)
	for _, h := range []testHost{a, b} {
		peer := map[int]testHost{1: b, 2: a}[h.n]
		h.ip(t,
			fmt.Sprintf("link add vx0 type vxlan id 1 dstport %d local %s dev eth0 nolearning", vxlanPort, h.underlay()),
			fmt.Sprintf("link set vx0 address %s mtu 1450 up", h.mac()),
			fmt.Sprintf("addr add %s/32 dev vx0", h.vtep()),
			fmt.Sprintf("neigh replace %s lladdr %s dev vx0 nud permanent", peer.vtep(), peer.mac()),
			fmt.Sprintf("route add %s via %s dev vx0 onlink", peer.subnet(), peer.vtep()),
		)
		h.exec(t, "bridge", "fdb", "append", peer.mac(), "dev", "vx0", "dst", peer.underlay().String(), "self", "permanent")
	}
	return a, b
}

// inNS runs f in h's namespace on a locked thread.
func (h testHost) do(t *testing.T, f func() error) {
	t.Helper()
	if err := h.ns.Do(func(ns.NetNS) error { return f() }); err != nil {
		t.Fatal(err)
	}
}

// startProber runs p in h's namespace until the test ends and checks that
// Run then returns nil (it closed its socket and reader).
func startProber(t *testing.T, h testHost, p *Prober) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.ns.Do(func(ns.NetNS) error { return p.Run(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return 5s after its context ended")
		}
	})
	// Run fails at once or not at all.
	select {
	case err := <-done:
		t.Fatalf("Run returned at once: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
}

// resultFor waits until cond holds for peer's result and returns it.
func resultFor(t *testing.T, p *Prober, peer netip.Prefix, timeout time.Duration, what string, cond func(Result) bool) Result {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var r Result
		for _, x := range p.Results() {
			if x.Peer == peer {
				r = x
			}
		}
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %s is %+v", timeout, what, peer, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a log sink the Prober's goroutine writes while the test
// reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func netip4(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }
