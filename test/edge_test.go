package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

const (
	edgeCIDR = "10.244.255.0/24"
	// The gateway test's legacy LAN, behind the gateway host; like every
	// test address it lies in 198.18.0.0/15, away from the fabric's /24.
	legacyLAN     = "198.19.10.0/24"
	legacyGateway = "198.19.10.1"
	legacyHost    = "198.19.10.2"
	echoPort      = 7007
)

// StartEdge launches overlayd on h as an edge host (no containers).
func (h *Host) StartEdge(extra ...string) *Proc {
	h.c.t.Helper()
	return h.Start(append([]string{"--mode", "edge"}, extra...)...)
}

// edgeAddress waits until h is ready as an edge host and returns its
// overlay address.
func (h *Host) edgeAddress() netip.Addr {
	t := h.c.t
	t.Helper()
	hf := h.WaitReady()
	if hf.Kind != hostfile.KindEdge || !hf.Address.IsValid() {
		t.Fatalf("h%d's host file is not an edge host's: %+v", h.N, hf)
	}
	return hf.Address
}

// serveEcho listens on addr:echoPort inside netns and answers every
// connection with the peer address it sees, then closes it.
func serveEcho(t *testing.T, netns string, addr netip.Addr) {
	t.Helper()
	var ln net.Listener
	err := inNetns(netns, func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(addr, echoPort).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", netns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "peer %s\n", c.RemoteAddr())
			c.Close()
		}
	}()
}

// callEcho connects from netns to addr's echo server, retrying for up to
// 30s (peers are programmed asynchronously), and returns the peer IP the
// server saw and the local IP the connection used.
func callEcho(t *testing.T, netns string, addr netip.Addr) (seen, local netip.Addr) {
	t.Helper()
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if seen, local, last = tryEcho(netns, addr); last == nil {
			return seen, local
		}
	}
	t.Fatalf("TCP from %s to %s:%d: %v", netns, addr, echoPort, last)
	return
}

func tryEcho(netns string, addr netip.Addr) (seen, local netip.Addr, err error) {
	var c net.Conn
	err = inNetns(netns, func() (err error) {
		c, err = net.DialTimeout("tcp4", netip.AddrPortFrom(addr, echoPort).String(), time.Second)
		return err
	})
	if err != nil {
		return seen, local, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return seen, local, fmt.Errorf("read answer: %w", err)
	}
	ap, err := netip.ParseAddrPort(strings.TrimSpace(strings.TrimPrefix(line, "peer ")))
	if err != nil {
		return seen, local, fmt.Errorf("answer %q: %w", line, err)
	}
	return ap.Addr(), c.LocalAddr().(*net.TCPAddr).AddrPort().Addr().Unmap(), nil
}

// inNetns runs fn on a thread in the named namespace. Sockets made there
// stay in it, so they can be used from any goroutine afterwards.
func inNetns(name string, fn func() error) error {
	target, err := ns.GetNS("/var/run/netns/" + name)
	if err != nil {
		return err
	}
	defer target.Close()
	return target.Do(func(ns.NetNS) error { return fn() })
}

// edgeCluster is a running cluster of container hosts h1..hosts and edge
// hosts after them, with the network's edge range set.
func edgeCluster(t *testing.T, hosts, edges int, edgeFlags ...string) *Cluster {
	t.Helper()
	c := newCluster(t, hosts+edges)
	c.SetNetwork("--edge-cidr", edgeCIDR)
	for i, h := range c.Hosts {
		if i < hosts {
			h.Start()
		} else {
			h.StartEdge(edgeFlags...)
		}
	}
	return c
}

// An edge machine and a container on another host talk TCP both ways,
// with no NAT: each side sees the other's own overlay address.
func TestEdgeReachesContainersBothWays(t *testing.T) {
	t.Parallel()
	c := edgeCluster(t, 2, 2)
	h1, edge, edge2 := c.Hosts[0], c.Hosts[2], c.Hosts[3]
	c.Hosts[1].WaitReady()
	addr, addr2 := edge.edgeAddress(), edge2.edgeAddress()
	if !netip.MustParsePrefix(edgeCIDR).Contains(addr) {
		t.Fatalf("edge address %s is outside the edge range %s", addr, edgeCIDR)
	}
	ct := h1.Attach("svc")

	// Edge machine -> container: the container sees the edge address.
	serveEcho(t, ct.NS, ct.IP)
	seen, local := callEcho(t, edge.NS, ct.IP)
	if seen != addr || local != addr {
		t.Fatalf("edge -> container: container saw %s, edge used %s; want the edge address %s on both", seen, local, addr)
	}
	// Container -> edge machine: the edge machine sees the container's IP.
	serveEcho(t, edge.NS, addr)
	if seen, _ := callEcho(t, ct.NS, addr); seen != ct.IP {
		t.Fatalf("container -> edge: edge saw %s, want the container's %s", seen, ct.IP)
	}
	// Edge hosts are peers of each other.
	if seen, _ := callEcho(t, edge2.NS, addr); seen != addr2 {
		t.Fatalf("edge2 -> edge: edge saw %s, want edge2's address %s", seen, addr2)
	}

	out, err := c.Ctl("leases")
	if err != nil || !strings.Contains(out, "edge ") || !strings.Contains(out, addr.String()+"/32") {
		t.Fatalf("overlayctl leases does not show the edge lease %s with its kind: %v\n%s", addr, err, out)
	}
	// An edge lease is no container subnet: the hosts' subnets stay /24s
	// outside the edge range.
	for _, h := range c.Hosts[:2] {
		if s := h.HostFile().Subnet; s.Overlaps(netip.MustParsePrefix(edgeCIDR)) {
			t.Fatalf("h%d leased %s inside the edge range", h.N, s)
		}
	}
	waitFor(t, 10*time.Second, "overlayctl status on the edge host to show every peer ok", func() bool {
		out, err := edge.Ctl("status")
		return err == nil && strings.Contains(out, "edge host") && !strings.Contains(out, "MISSING")
	})
}

// Finding: CNI ADD on an edge machine fails with code 7 and says why, and
// leaves nothing behind; DEL still succeeds.
func TestEdgeRefusesContainers(t *testing.T) {
	t.Parallel()
	c := edgeCluster(t, 0, 1)
	edge := c.Hosts[0]
	addr := edge.edgeAddress()
	before := inNS(t, edge.NS, "ip", "-o", "link", "show", "type", "veth")
	_, err := edge.TryAttach("nope")
	if err == nil {
		t.Fatal("CNI ADD on an edge host succeeded")
	}
	if !strings.Contains(err.Error(), "edge host") || !strings.Contains(err.Error(), addr.String()) {
		t.Fatalf("ADD error does not say this is an edge host with address %s: %v", addr, err)
	}
	if code := cniCode(err); code != 7 {
		t.Fatalf("ADD error code %d, want 7: %v", code, err)
	}
	if after := inNS(t, edge.NS, "ip", "-o", "link", "show", "type", "veth"); after != before {
		t.Fatalf("ADD left a veth on the edge host:\nbefore %s\nafter %s", before, after)
	}
	// The IPAM store keeps a file per reserved address and per attachment.
	for _, dir := range []string{"ips", "attachments"} {
		entries, err := os.ReadDir(filepath.Join(edge.DataDir, networkName, dir))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		if len(entries) != 0 {
			t.Fatalf("ADD left %d entries in the IPAM store's %s: %s", len(entries), dir, entries[0].Name())
		}
	}
}

// Finding: a killed edge machine's /32 leaves every container host within
// the lease TTL; restarted, it gets the same address back.
func TestEdgeDeathAndReturn(t *testing.T) {
	t.Parallel()
	const ttl = 4 * time.Second
	c := newCluster(t, 3)
	c.SetNetwork("--edge-cidr", edgeCIDR)
	hosts, edge := c.Hosts[:2], c.Hosts[2]
	for _, h := range hosts {
		h.Start("--lease-ttl", ttl.String())
	}
	edge.StartEdge("--lease-ttl", ttl.String())
	addr := edge.edgeAddress()
	route := addr.String()
	for _, h := range hosts {
		h.WaitReady()
		waitFor(t, 10*time.Second, fmt.Sprintf("h%d to route %s", h.N, route), func() bool { return hasRoute(h, route) })
	}
	ct := hosts[0].Attach("svc")
	serveEcho(t, ct.NS, ct.IP)
	callEcho(t, edge.NS, ct.IP)

	edge.Daemon.Kill()
	killed := time.Now()
	for _, h := range hosts {
		waitFor(t, ttl+5*time.Second, fmt.Sprintf("h%d to drop %s", h.N, route), func() bool { return !hasRoute(h, route) })
	}
	t.Logf("edge /32 withdrawn on both hosts %s after SIGKILL (TTL %s)", time.Since(killed).Round(100*time.Millisecond), ttl)

	edge.StartEdge("--lease-ttl", ttl.String())
	edge.WaitStampedBy(edge.Daemon)
	if again := edge.edgeAddress(); again != addr {
		t.Fatalf("restarted edge host got %s, want its address %s back", again, addr)
	}
	if seen, _ := callEcho(t, edge.NS, ct.IP); seen != addr {
		t.Fatalf("after restart the container saw %s, want %s", seen, addr)
	}
}

// cniCode is the CNI error code of a plugin's failure, 0 if it is none.
func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

func hasRoute(h *Host, dst string) bool {
	for _, r := range h.vxlanRoutes() {
		if r == dst {
			return true
		}
	}
	return false
}

// Gateway: a machine on a legacy LAN behind an edge host started with
// --advertise reaches a container with only a static route, and the
// container sees the legacy machine's own LAN address.
func TestGatewayServesLegacyLAN(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	c.SetNetwork("--edge-cidr", edgeCIDR)
	h1, h2, gw := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	lan := addLegacyLAN(t, c, gw)
	// Strict reverse-path filtering, as RHEL sets it: every packet must
	// arrive on the interface its source is routed by.
	for _, ns := range []string{h1.NS, h2.NS, gw.NS, lan} {
		inNS(t, ns, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1")
	}
	h1.Start()
	h2.Start()
	gw.StartEdge("--advertise", legacyLAN)
	gwAddr := gw.edgeAddress()
	h2.WaitReady()
	ct := h1.Attach("svc")
	serveEcho(t, ct.NS, ct.IP)
	if seen, _ := callEcho(t, lan, ct.IP); seen != netip.MustParseAddr(legacyHost) {
		t.Fatalf("legacy LAN -> container: container saw %s, want the legacy machine's %s", seen, legacyHost)
	}
	// And back: the container reaches the legacy machine by its LAN address.
	serveEcho(t, lan, netip.MustParseAddr(legacyHost))
	if seen, _ := callEcho(t, ct.NS, netip.MustParseAddr(legacyHost)); seen != ct.IP {
		t.Fatalf("container -> legacy LAN: legacy machine saw %s, want %s", seen, ct.IP)
	}
	waitFor(t, 10*time.Second, "overlayctl status on h1 to show the gateway's LAN ok", func() bool {
		out, err := h1.Ctl("status")
		return err == nil && strings.Contains(out, legacyLAN+"  ") && !strings.Contains(out, "MISSING")
	})

	// The gateway restarted with another LAN: members drop the old route
	// and route the new one.
	const otherLAN = "198.19.20.0/24"
	inNS(t, gw.NS, "ip", "addr", "add", "198.19.20.1/24", "dev", "lan0")
	gw.Daemon.Stop(10 * time.Second)
	gw.StartEdge("--advertise", otherLAN)
	if again := gw.edgeAddress(); again != gwAddr {
		t.Fatalf("restarted gateway got %s, want %s", again, gwAddr)
	}
	for _, h := range []*Host{h1, h2} {
		waitFor(t, 10*time.Second, fmt.Sprintf("h%d to route %s instead of %s", h.N, otherLAN, legacyLAN), func() bool {
			return hasRoute(h, otherLAN) && !hasRoute(h, legacyLAN)
		})
	}

	// Finding: a second gateway for an overlapping LAN is refused, naming both.
	c.addHost(4)
	second := c.Hosts[3]
	p := second.StartEdge("--advertise", "198.19.0.0/16")
	code, ok := p.WaitExit(30 * time.Second)
	out := p.Output()
	if !ok || code == 0 || !strings.Contains(out, "198.19.0.0/16 overlaps "+otherLAN) || !strings.Contains(out, "gateway") {
		t.Fatalf("overlapping gateway: exited %v code %d, want a refusal naming both LANs:\n%s", ok, code, out)
	}
	if linkExists(second.NS, "overlay.1") {
		t.Fatal("the refused gateway left a VXLAN device")
	}
}

// addLegacyLAN puts a legacy machine (its own namespace, nothing of
// overlay installed) on a LAN behind gw, with one static route to the
// overlay network via gw, and returns its namespace.
func addLegacyLAN(t *testing.T, c *Cluster, gw *Host) string {
	t.Helper()
	lan := c.Prefix + "-lan"
	addNetns(t, lan)
	run(t, "ip", "-n", gw.NS, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", lan)
	run(t, "ip", "-n", gw.NS, "addr", "add", legacyGateway+"/24", "dev", "lan0")
	run(t, "ip", "-n", gw.NS, "link", "set", "lan0", "up")
	run(t, "ip", "-n", lan, "addr", "add", legacyHost+"/24", "dev", "eth0")
	run(t, "ip", "-n", lan, "link", "set", "eth0", "up")
	run(t, "ip", "-n", lan, "route", "add", overlayCIDR, "via", legacyGateway)
	return lan
}

// Finding: bad edge input is refused with the field named, and a full
// edge range gives the next edge machine one clear line and leaves
// nothing half-built.
func TestEdgeBadInput(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	for _, tc := range []struct{ edge, want string }{
		{"10.245.0.0/24", `field "edgeCIDR" 10.245.0.0/24 lies outside network ` + overlayCIDR},
		{"10.244.3.0/28", `field "edgeCIDR" 10.244.3.0/28 overlaps container subnet 10.244.3.0/24`},
	} {
		out, err := c.Ctl("network", "set", networkName, "--cidr", overlayCIDR, "--edge-cidr", tc.edge)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Fatalf("network set --edge-cidr %s: %v, want %q in:\n%s", tc.edge, err, tc.want, out)
		}
	}
	// overlayd refuses a bad edgeCIDR written around overlayctl, naming it.
	c.EtcdPut("/overlay/networks/"+networkName+"/config", `{"network":"10.244.0.0/16","subnetLen":24,"edgeCIDR":"10.245.0.0/24"}`)
	p := c.Hosts[0].StartEdge()
	if code, ok := p.WaitExit(30 * time.Second); !ok || code == 0 || !strings.Contains(p.Output(), `field "edgeCIDR"`) {
		t.Fatalf("overlayd with a bad edgeCIDR: exited %v code %d:\n%s", ok, code, p.Output())
	}

	// An edge range with two addresses: the third edge machine is refused.
	c.SetNetwork("--subnet-len", "30", "--edge-cidr", "10.244.255.252/30")
	for _, h := range c.Hosts[:2] {
		h.StartEdge()
	}
	for _, h := range c.Hosts[:2] {
		h.edgeAddress()
	}
	third := c.Hosts[2]
	p = third.StartEdge()
	code, ok := p.WaitExit(30 * time.Second)
	last := lastLine(p.Output())
	if !ok || code == 0 || !strings.Contains(last, "edge range 10.244.255.252/30: all 2 addresses are leased") || !strings.Contains(last, "--edge-cidr") {
		t.Fatalf("third edge host on a full edge range: exited %v code %d, want one line naming the range and the fix:\n%s", ok, code, p.Output())
	}
	if linkExists(third.NS, "overlay.1") {
		t.Fatal("the refused edge host left a VXLAN device")
	}
	if _, err := os.Stat(third.HostFilePath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refused edge host left a host file: %v", err)
	}
	// A host whose edge lease is live cannot be stranded by a config change.
	out, err := c.Ctl("network", "set", networkName, "--cidr", overlayCIDR, "--subnet-len", "30")
	if err == nil || !strings.Contains(out, "would lie outside the edge range") {
		t.Fatalf("removing the edge range under live edge hosts: %v\n%s", err, out)
	}
}

// A container host switched to an edge host: refused while its bridge is
// there, and after overlayctl teardown it joins as an edge host and
// reaches the other host's containers.
func TestSwitchHostToEdge(t *testing.T) {
	t.Parallel()
	c := edgeCluster(t, 2, 0)
	h1, h2 := c.Hosts[0], c.Hosts[1]
	h1.WaitReady()
	h2.WaitReady()
	h1.Daemon.Stop(10 * time.Second)
	p := h1.StartEdge()
	if code, ok := p.WaitExit(30 * time.Second); !ok || code == 0 || !strings.Contains(lastLine(p.Output()), "bridge overlay0 of network default is still here") {
		t.Fatalf("edge start over a container host's bridge: exited %v code %d:\n%s", ok, code, p.Output())
	}
	if out, err := h1.Ctl("teardown"); err != nil {
		t.Fatalf("teardown: %v\n%s", err, out)
	}
	h1.StartEdge()
	addr := h1.edgeAddress()
	ct := h2.Attach("svc")
	serveEcho(t, ct.NS, ct.IP)
	if seen, _ := callEcho(t, h1.NS, ct.IP); seen != addr {
		t.Fatalf("after the switch the container saw %s, want the edge address %s", seen, addr)
	}
}
