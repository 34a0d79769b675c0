package probe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestProbeOverlayBlocked follows one peer through healthy, VXLAN port
// blocked on the peer (the overlay lost, the underlay answering), host
// unreachable, and healthy again.
func TestProbeOverlayBlocked(t *testing.T) {
	t.Parallel()
	a, b := overlayPair(t)
	logs := &syncBuffer{}
	p := New(Config{Interval: 200 * time.Millisecond, Timeout: 300 * time.Millisecond, Port: vxlanPort, Log: testLogger(logs)})
	p.SetTargets([]Target{b.target()})
	startProber(t, a, p)
	peer := b.subnet()
	// Detection takes BrokenAfter probes; a few intervals more are slack
	// for a loaded machine, not a speed target.
	detect := 10*p.PeerInterval() + time.Second

	r := resultFor(t, p, peer, detect, "ok with 3 replies on each path", func(r Result) bool {
		return r.State == StateOK && r.OverlayPath.Received >= 3 && r.UnderlayPath.Received >= 3
	})
	for _, ps := range []PathStats{r.OverlayPath, r.UnderlayPath} {
		if ps.Loss != 0 || ps.RTT <= 0 || ps.RTT >= time.Second || ps.LastReply.IsZero() || ps.LostInRow != 0 || ps.LastError != "" {
			t.Errorf("healthy path: %+v, want no loss and an RTT", ps)
		}
	}
	if r.Name != "host2" || r.Overlay != b.vtep() || r.Underlay != b.underlay() {
		t.Errorf("result names %s %s %s, want the target's", r.Name, r.Overlay, r.Underlay)
	}
	drain(p.Changes())

	b.exec(t, "iptables", "-I", "INPUT", "-p", "udp", "--dport", fmt.Sprint(vxlanPort), "-j", "DROP")
	start := time.Now()
	r = resultFor(t, p, peer, detect, "overlay_broken", func(r Result) bool { return r.State == StateOverlayBroken })
	t.Logf("overlay_broken after %v (per-peer interval %v)", time.Since(start).Round(time.Millisecond), p.PeerInterval())
	if r.UnderlayPath.LostInRow != 0 || r.OverlayPath.LostInRow < 3 || r.OverlayPath.Loss == 0 {
		t.Errorf("blocked port: overlay %+v underlay %+v; want the overlay losing, the underlay answering", r.OverlayPath, r.UnderlayPath)
	}
	if !r.Since.After(start) {
		t.Errorf("since %v, before the port was blocked at %v", r.Since, start)
	}
	select {
	case <-p.Changes():
	default:
		t.Error("Changes not signalled on ok -> overlay_broken")
	}
	if want := "the VXLAN port (UDP 8472) is blocked on the path, or checksum offload corrupts encapsulated packets"; !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs)
	}

	b.exec(t, "iptables", "-I", "INPUT", "-p", "icmp", "-j", "DROP")
	resultFor(t, p, peer, detect, "unreachable", func(r Result) bool {
		return r.State == StateUnreachable && r.UnderlayPath.LostInRow >= 3
	})

	b.exec(t, "iptables", "-F", "INPUT")
	r = resultFor(t, p, peer, detect, "ok again", func(r Result) bool { return r.State == StateOK })
	if !strings.Contains(logs.String(), `level=INFO msg="peer answers over the overlay again"`) {
		t.Errorf("no recovery log:\n%s", logs)
	}
	if r.OverlayPath.Sent < r.OverlayPath.Received || r.OverlayPath.Received < 3 {
		t.Errorf("totals after the run: %+v", r.OverlayPath)
	}
}

func drain(c <-chan struct{}) {
	select {
	case <-c:
	default:
	}
}

// TestTwoProbersOneNamespace runs two Probers and a Ping in one namespace
// against the same peer; the peer drops the echoes of the second Prober
// only (by its echo ID), so that one must see no replies at all although
// the first's replies with the same sequence numbers reach its socket.
func TestTwoProbersOneNamespace(t *testing.T) {
	t.Parallel()
	a, b := underlayPair(t)
	// A second address on the peer stands in for its VTEP.
	b.ip(t, "addr add 198.18.1.2/32 dev lo")
	a.ip(t, "route add 198.18.1.2/32 via 198.18.0.2")
	tg := b.target()
	tg.Overlay = netip4(198, 18, 1, 2)
	cfg := Config{Interval: 100 * time.Millisecond, Timeout: 300 * time.Millisecond}
	p1, p2 := New(cfg), New(cfg)
	for p2.id.id == p1.id.id {
		p2.id = newIdentity()
	}
	b.exec(t, "nft", "add table ip probetest")
	b.exec(t, "nft", "add chain ip probetest in { type filter hook input priority 0 ; }")
	b.exec(t, "nft", fmt.Sprintf("add rule ip probetest in icmp type echo-request icmp id %d drop", p2.id.id))
	p1.SetTargets([]Target{tg})
	p2.SetTargets([]Target{tg})
	startProber(t, a, p1)
	startProber(t, a, p2)

	var st PathStats
	var err error
	a.do(t, func() error {
		st, err = Ping(context.Background(), Echo{Addr: tg.Underlay, Count: 5, Interval: 50 * time.Millisecond})
		return nil
	})
	if err != nil || st.Received != 5 {
		t.Errorf("Ping beside two Probers: %+v, %v; want 5 replies", st, err)
	}
	r2 := resultFor(t, p2, tg.Peer, 5*time.Second, "the second Prober unreachable", func(r Result) bool { return r.State == StateUnreachable })
	r1 := resultFor(t, p1, tg.Peer, 5*time.Second, "the first Prober ok", func(r Result) bool { return r.State == StateOK })
	r2 = p2.Results()[0]
	if r2.OverlayPath.Received != 0 || r2.UnderlayPath.Received != 0 || r2.OverlayPath.Sent < 3 {
		t.Errorf("second Prober took replies that were not its own: overlay %+v underlay %+v", r2.OverlayPath, r2.UnderlayPath)
	}
	for _, ps := range []PathStats{r1.OverlayPath, r1.UnderlayPath} {
		if ps.Received < 3 || ps.Received > ps.Sent || ps.Loss != 0 {
			t.Errorf("first Prober: %+v, want every echo answered", ps)
		}
	}
}

// TestPingDontFragment checks that an echo larger than a link on the path
// is lost with DF while a small one crosses, and that one larger than the
// local route's MTU fails to send with ErrTooBig.
func TestPingDontFragment(t *testing.T) {
	t.Parallel()
	a, b := underlayPair(t)
	dst := b.underlay()
	ping := func(e Echo) (PathStats, error) {
		e.Addr, e.Interval, e.Timeout = dst, 20*time.Millisecond, 300*time.Millisecond
		var st PathStats
		var err error
		a.do(t, func() error { st, err = Ping(context.Background(), e); return nil })
		return st, err
	}
	if st, err := ping(Echo{Size: 1400, DontFragment: true}); err != nil || st.Sent != 3 || st.Received != 3 || st.Loss != 0 || st.RTT <= 0 {
		t.Fatalf("1400-byte DF ping over a 1500 path: %+v, %v; want 3 of 3", st, err)
	}
	// The peer's side of the link takes at most 1000 bytes.
	b.ip(t, "link set eth0 mtu 1000")
	if st, err := ping(Echo{Size: 1400, DontFragment: true}); err != nil || st.Sent != 3 || st.Received != 0 || st.Loss != 1 || st.LostInRow != 3 {
		t.Errorf("1400-byte DF ping over a 1000 link: %+v, %v; want 3 sent, all lost", st, err)
	}
	if st, err := ping(Echo{DontFragment: true, Count: 2}); err != nil || st.Received != 2 {
		t.Errorf("small DF ping over a 1000 link: %+v, %v; want 2 of 2", st, err)
	}
	st, err := ping(Echo{Size: 1600, DontFragment: true})
	if !errors.Is(err, ErrTooBig) || st.Sent != 0 {
		t.Errorf("1600-byte DF ping with a 1500 local MTU: %+v, %v; want ErrTooBig, nothing sent", st, err)
	}
	// Without DF the kernel fragments it: it is sent (and lost on the 1000 link).
	if st, err := ping(Echo{Size: 1600, Count: 1}); err != nil || st.Sent != 1 {
		t.Errorf("1600-byte ping without DF: %+v, %v; want sent", st, err)
	}
}

// TestUDPChecksumErrors sends the peer a UDP packet with a bad checksum and
// reads the counter rise in the peer's namespace, not in the sender's.
func TestUDPChecksumErrors(t *testing.T) {
	t.Parallel()
	a, b := underlayPair(t)
	read := func(h testHost) uint64 {
		var v uint64
		h.do(t, func() error {
			var err error
			v, err = UDPChecksumErrors()
			return err
		})
		return v
	}
	before := read(b)
	a.do(t, func() error {
		c, err := net.ListenIP("ip4:udp", nil)
		if err != nil {
			return err
		}
		defer c.Close()
		udp := make([]byte, 8+4)
		binary.BigEndian.PutUint16(udp[0:], 4000)
		binary.BigEndian.PutUint16(udp[2:], 9)
		binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
		binary.BigEndian.PutUint16(udp[6:], 0xbad) // wrong (and not 0, which means none)
		copy(udp[8:], "oops")
		_, err = c.WriteToIP(udp, &net.IPAddr{IP: b.underlay().AsSlice()})
		return err
	})
	deadline := time.Now().Add(5 * time.Second)
	for read(b) != before+1 {
		if time.Now().After(deadline) {
			t.Fatalf("peer's Udp InCsumErrors %d, want %d after one bad packet", read(b), before+1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v := read(a); v != 0 {
		t.Errorf("sender's Udp InCsumErrors %d, want 0 (the counter is per namespace)", v)
	}
}

// TestRunWithoutCapNetRaw drops CAP_NET_RAW on one thread (capabilities
// are per thread) and runs a Prober there: Run must fail at once.
func TestRunWithoutCapNetRaw(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("needs root (to hold CAP_NET_RAW and drop it): run make test as root")
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread exits with the goroutine, so the
		// dropped capability never reaches other goroutines.
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capget: %w", err)
			return
		}
		data[0].Effective &^= 1 << unix.CAP_NET_RAW
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- fmt.Errorf("capset: %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := New(Config{}).Run(ctx)
		if ctx.Err() != nil {
			err = fmt.Errorf("Run returned only when its context ended (%v), not at once", err)
		} else if err == nil {
			err = errors.New("Run returned nil")
		} else {
			err = fmt.Errorf("ok: %w", err)
		}
		errc <- err
	}()
	err := <-errc
	if err == nil || !strings.HasPrefix(err.Error(), "ok: ") || !strings.Contains(err.Error(), "CAP_NET_RAW") {
		t.Fatalf("Run without CAP_NET_RAW: %v; want an error at once that names CAP_NET_RAW", err)
	}
	t.Log(err)
}

// UDPEcho counts the peer's port-unreachable answers through the overlay;
// when the peer drops that UDP (as it drops datagrams whose checksum
// offload corrupted), ICMP echoes still cross and UDPEcho sees none.
func TestUDPEchoThroughOverlay(t *testing.T) {
	t.Parallel()
	a, b := overlayPair(t)
	udp := func() PathStats {
		var st PathStats
		a.do(t, func() error {
			var err error
			st, err = UDPEcho(context.Background(), b.vtep(), 3, 300*time.Millisecond)
			return err
		})
		return st
	}
	if st := udp(); st.Sent != 3 || st.Received != 3 {
		t.Fatalf("udp through the overlay: %+v, want 3 of 3 answered", st)
	}
	b.exec(t, "iptables", "-I", "INPUT", "-p", "udp", "--dport", "33434", "-j", "DROP")
	if st := udp(); st.Sent != 3 || st.Received != 0 || st.Loss != 1 {
		t.Fatalf("udp dropped by the peer: %+v, want 3 sent, none answered", st)
	}
	var echo PathStats
	a.do(t, func() error {
		var err error
		echo, err = Ping(context.Background(), Echo{Addr: b.vtep(), Timeout: 300 * time.Millisecond})
		return err
	})
	if echo.Received != 3 {
		t.Fatalf("icmp through the overlay while udp is dropped: %+v, want 3 of 3", echo)
	}
}
