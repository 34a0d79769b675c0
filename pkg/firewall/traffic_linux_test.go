package firewall

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// lab builds a small network of namespaces for one test: every name
// starts with a random prefix, and every namespace is deleted when the
// test ends, pass or fail (its veths go with it). Nothing is done in the
// root namespace: links are created inside a namespace with their peer
// sent straight to another, sysctls and iptables run through
// ip netns exec or in ns.Do.
type lab struct {
	t      *testing.T
	prefix string
}

func newLab(t *testing.T) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces")
	}
	for _, bin := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("%s is not installed", bin)
		}
	}
	b := make([]byte, 3)
	rand.Read(b)
	forward := rootForwarding(t)
	t.Cleanup(func() {
		if got := rootForwarding(t); got != forward {
			t.Errorf("root namespace ip_forward changed from %q to %q", forward, got)
		}
	})
	return &lab{t: t, prefix: "ovfw-" + hex.EncodeToString(b)}
}

// rootForwarding reads ip_forward of the root namespace (goroutines
// outside ns.Do run there), to check the test never changes it.
func rootForwarding(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func (l *lab) run(args ...string) {
	l.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		l.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// ns creates a namespace with lo up and returns its name.
func (l *lab) ns(role string) string {
	l.t.Helper()
	name := l.prefix + "-" + role
	l.run("ip", "netns", "add", name)
	l.t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	l.ip(name, "link", "set", "lo", "up")
	return name
}

// ip runs ip inside namespace name.
func (l *lab) ip(name string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "-n", name}, args...)...)
}

// exec runs a command inside namespace name.
func (l *lab) exec(name string, args ...string) {
	l.t.Helper()
	l.run(append([]string{"ip", "netns", "exec", name}, args...)...)
}

// link joins two namespaces with a veth pair, addresses both ends and
// sets them up; an invalid address leaves that end unaddressed.
func (l *lab) link(a, ifA, addrA, b, ifB, addrB string) {
	l.t.Helper()
	l.ip(a, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", b)
	for _, end := range [][3]string{{a, ifA, addrA}, {b, ifB, addrB}} {
		if end[2] != "" {
			l.ip(end[0], "addr", "add", end[2], "dev", end[1])
		}
		l.ip(end[0], "link", "set", end[1], "up")
	}
}

// router turns forwarding on inside namespace name (only there).
func (l *lab) router(name string) {
	l.t.Helper()
	l.exec(name, "sysctl", "-qw", "net.ipv4.ip_forward=1")
}

// do runs fn inside namespace name: sockets it opens and iptables runs it
// starts belong to that namespace.
func (l *lab) do(name string, fn func() error) {
	l.t.Helper()
	netns, err := ns.GetNS("/run/netns/" + name)
	if err != nil {
		l.t.Fatal(err)
	}
	defer netns.Close()
	if err := netns.Do(func(ns.NetNS) error { return fn() }); err != nil {
		l.t.Fatalf("in %s: %v", name, err)
	}
}

const port = 9999

// listen opens a UDP socket on port 9999 in namespace name.
func (l *lab) listen(name string) *net.UDPConn {
	l.t.Helper()
	var conn *net.UDPConn
	l.do(name, func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	})
	l.t.Cleanup(func() { conn.Close() })
	return conn
}

// send sends one datagram from namespace name to dst:9999 from a fresh
// socket (a new flow, so no old conntrack entry decides its fate) and
// returns the source it was sent from.
func (l *lab) send(name, dst, payload string) netip.AddrPort {
	l.t.Helper()
	var src netip.AddrPort
	l.do(name, func() error {
		conn, err := net.Dial("udp4", net.JoinHostPort(dst, "9999"))
		if err != nil {
			return err
		}
		defer conn.Close()
		src = conn.LocalAddr().(*net.UDPAddr).AddrPort()
		_, err = conn.Write([]byte(payload))
		return err
	})
	return src
}

// arrival is where the datagram carrying payload came from, if it came
// within d.
func arrival(conn *net.UDPConn, payload string, d time.Duration) (netip.AddrPort, bool) {
	conn.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 256)
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return netip.AddrPort{}, false
		}
		if string(buf[:n]) == payload {
			return netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), true
		}
	}
}

// sourceSeen sends from namespace name to dst and returns the source the
// receiver saw, failing the test when nothing arrives.
func (l *lab) sourceSeen(name, dst string, recv *net.UDPConn) (sent, seen netip.AddrPort) {
	l.t.Helper()
	payload := "to " + dst + " " + hex.EncodeToString([]byte(time.Now().String()))
	sent = l.send(name, dst, payload)
	seen, ok := arrival(recv, payload, 3*time.Second)
	if !ok {
		l.t.Fatalf("a datagram from %s to %s did not arrive", name, dst)
	}
	return sent, seen
}

// Masquerade with real packets: host routes between a container, a
// container of the same overlay network elsewhere (reached through the
// host) and an uplink towards the outside and a LAN a gateway advertises.
//
//	ct 10.244.1.2 ── ct0 10.244.1.1 [host] up0 198.18.0.1 ── 198.18.0.2 out
//	peer 10.244.2.2 ── peer0 10.244.2.1 [host]           lo 198.19.200.1, 198.19.10.1 (LAN)
func TestMasqueradeTraffic(t *testing.T) {
	l := newLab(t)
	ct, peer, host, out := l.ns("ct"), l.ns("peer"), l.ns("host"), l.ns("out")
	l.link(ct, "eth0", "10.244.1.2/24", host, "ct0", "10.244.1.1/24")
	l.link(peer, "eth0", "10.244.2.2/24", host, "peer0", "10.244.2.1/24")
	l.link(host, "up0", "198.18.0.1/24", out, "eth0", "198.18.0.2/24")
	l.ip(ct, "route", "add", "default", "via", "10.244.1.1")
	l.ip(peer, "route", "add", "default", "via", "10.244.2.1")
	l.ip(out, "addr", "add", "198.19.200.1/32", "dev", "lo")
	l.ip(out, "addr", "add", "198.19.10.1/32", "dev", "lo")
	l.ip(out, "route", "add", "10.244.0.0/16", "via", "198.18.0.1")
	l.ip(host, "route", "add", "198.19.0.0/16", "via", "198.18.0.2")
	l.router(host)
	outRecv, peerRecv := l.listen(out), l.listen(peer)
	const container, hostUplink = "10.244.1.2", "198.18.0.1"

	// Without the rules the container's own address goes out: what the
	// test sees below is the rules' doing.
	if _, seen := l.sourceSeen(ct, "198.19.200.1", outRecv); seen.Addr().String() != container {
		t.Fatalf("before Ensure: outside saw %s, want %s", seen, container)
	}

	var m *Masq
	ensure := func(subnet netip.Prefix, keep []netip.Prefix) {
		t.Helper()
		l.do(host, func() (err error) {
			if m == nil {
				tables, err := NewTables()
				if err != nil {
					return err
				}
				m = tables.Masq("default")
			}
			return m.Ensure(subnet, keep)
		})
	}
	ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16", "198.19.10.0/24"))

	changedPort := false
	for _, dst := range []string{"198.19.200.1", "198.18.0.2", "198.19.200.1", "198.19.200.1"} {
		sent, seen := l.sourceSeen(ct, dst, outRecv)
		if seen.Addr().String() != hostUplink {
			t.Errorf("to the outside %s: seen from %s, want the host's uplink %s", dst, seen, hostUplink)
		}
		changedPort = changedPort || seen.Port() != sent.Port()
	}
	// MASQUERADE alone keeps a free source port; --random-fully picks one
	// at random, so four flows all keeping theirs means it did nothing.
	if !changedPort {
		t.Error("every masqueraded flow kept its source port: --random-fully had no effect")
	}
	for _, tc := range []struct {
		dst  string
		recv *net.UDPConn
		what string
	}{
		{"10.244.2.2", peerRecv, "a container of the network"},
		{"198.19.10.1", outRecv, "a LAN in keep"},
	} {
		if _, seen := l.sourceSeen(ct, tc.dst, tc.recv); seen.Addr().String() != container {
			t.Errorf("to %s (%s): seen from %s, want the container's own %s", tc.dst, tc.what, seen, container)
		}
	}

	// The LAN is no longer advertised: it is masqueraded like the outside.
	ensure(netip.MustParsePrefix("10.244.1.0/24"), pfx("10.244.0.0/16"))
	if _, seen := l.sourceSeen(ct, "198.19.10.1", outRecv); seen.Addr().String() != hostUplink {
		t.Errorf("to a LAN no longer kept: seen from %s, want %s", seen, hostUplink)
	}
	// ipMasq off: the container's address goes out again.
	ensure(netip.Prefix{}, nil)
	if _, seen := l.sourceSeen(ct, "198.19.200.1", outRecv); seen.Addr().String() != container {
		t.Errorf("after turning masquerade off: seen from %s, want %s", seen, container)
	}
}

// reaches reports whether a datagram from namespace name to dst arrives
// at recv within d.
func (l *lab) reaches(name, dst string, recv *net.UDPConn, d time.Duration) bool {
	l.t.Helper()
	payload := name + " to " + dst + " " + hex.EncodeToString([]byte(time.Now().String()))
	l.send(name, dst, payload)
	_, ok := arrival(recv, payload, d)
	return ok
}

// tcpRoundTrip connects from namespace name to an echo server on dst and
// reports whether the echo came back: replies need the rules too.
func (l *lab) tcpRoundTrip(name, dst string) error {
	l.t.Helper()
	var err error
	l.do(name, func() error {
		var conn net.Conn
		if conn, err = net.DialTimeout("tcp4", net.JoinHostPort(dst, "9999"), 2*time.Second); err != nil {
			return nil
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 4)
		if _, err = conn.Write([]byte("ping")); err == nil {
			_, err = io.ReadFull(conn, buf)
		}
		if err == nil && string(buf) != "ping" {
			err = errors.New("wrong echo " + string(buf))
		}
		return nil
	})
	return err
}

// echoServer serves TCP echo on port 9999 in namespace name.
func (l *lab) echoServer(name string) {
	l.t.Helper()
	var ln net.Listener
	l.do(name, func() (err error) {
		ln, err = net.Listen("tcp4", ":9999")
		return err
	})
	l.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
}

// Isolation with real packets: one host serves networks A and B, a
// container on each, FORWARD policy DROP as on Docker hosts.
//
//	ca 10.244.1.2 ── a0 10.244.1.1 [host] up0 198.18.0.1 ── 198.18.0.2 out (lo 198.19.200.1)
//	cb 10.245.1.2 ── b0 10.245.1.1 [host]
func TestIsolationTraffic(t *testing.T) {
	l := newLab(t)
	ca, cb, host, out := l.ns("ca"), l.ns("cb"), l.ns("host"), l.ns("out")
	l.link(ca, "eth0", "10.244.1.2/24", host, "a0", "10.244.1.1/24")
	l.link(cb, "eth0", "10.245.1.2/24", host, "b0", "10.245.1.1/24")
	l.link(host, "up0", "198.18.0.1/24", out, "eth0", "198.18.0.2/24")
	l.ip(ca, "route", "add", "default", "via", "10.244.1.1")
	l.ip(cb, "route", "add", "default", "via", "10.245.1.1")
	l.ip(out, "addr", "add", "198.19.200.1/32", "dev", "lo")
	l.ip(out, "route", "add", "10.244.0.0/15", "via", "198.18.0.1")
	l.ip(host, "route", "add", "198.19.200.0/24", "via", "198.18.0.2")
	l.router(host)
	l.exec(host, "iptables", "-P", "FORWARD", "DROP")
	caRecv, cbRecv, outRecv := l.listen(ca), l.listen(cb), l.listen(out)
	l.echoServer(out)
	const outside = "198.19.200.1"

	// Policy DROP and no rules: nothing is routed.
	if l.reaches(ca, outside, outRecv, 500*time.Millisecond) {
		t.Fatal("A reaches the outside with no rules: the FORWARD policy is not DROP")
	}

	netA, netB := netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("10.245.0.0/16")
	var fa, fb *Forward
	l.do(host, func() (err error) {
		tables, err := NewTables()
		if err != nil {
			return err
		}
		fa, fb = tables.Forward("a"), tables.Forward("b")
		return nil
	})
	ensure := func(isolateA, isolateB []netip.Prefix) {
		t.Helper()
		l.do(host, func() error {
			if err := fa.Ensure(netA, isolateA); err != nil {
				return err
			}
			return fb.Ensure(netB, isolateB)
		})
	}

	// Accepts alone: the networks reach each other (what isolation stops).
	ensure(nil, nil)
	if !l.reaches(ca, "10.245.1.2", cbRecv, 3*time.Second) || !l.reaches(cb, "10.244.1.2", caRecv, 3*time.Second) {
		t.Fatal("with accepts only, A and B should reach each other")
	}

	ensure([]netip.Prefix{netB}, []netip.Prefix{netA})
	if l.reaches(ca, "10.245.1.2", cbRecv, time.Second) {
		t.Error("A reaches B")
	}
	if l.reaches(cb, "10.244.1.2", caRecv, time.Second) {
		t.Error("B reaches A")
	}
	for _, c := range []string{ca, cb} {
		if !l.reaches(c, outside, outRecv, 3*time.Second) {
			t.Errorf("%s does not reach the outside", c)
		}
		if err := l.tcpRoundTrip(c, outside); err != nil {
			t.Errorf("%s: TCP to the outside and back: %v", c, err)
		}
	}

	// Only A isolates: B's datagrams to A pass, A's to B do not — each
	// network's DROP stops what that network sends.
	ensure([]netip.Prefix{netB}, nil)
	if !l.reaches(cb, "10.244.1.2", caRecv, 3*time.Second) {
		t.Error("B no longer isolates, yet B does not reach A")
	}
	if l.reaches(ca, "10.245.1.2", cbRecv, time.Second) {
		t.Error("A isolates, yet A reaches B")
	}
}
