package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// outsideIP is a machine on the underlay that is not part of the overlay
// (the "internet" of these tests).
const outsideIP = "198.18.0.200"

// addOutside puts a machine with outsideIP on the fabric and returns its
// namespace.
func addOutside(t *testing.T, c *Cluster) string {
	t.Helper()
	out := c.Prefix + "-out"
	addNetns(t, out)
	run(t, "ip", "-n", c.Fabric, "link", "add", "vout", "type", "veth", "peer", "name", "eth0", "netns", out)
	run(t, "ip", "-n", c.Fabric, "link", "set", "vout", "master", "fabric0", "up")
	run(t, "ip", "-n", out, "addr", "add", outsideIP+"/24", "dev", "eth0")
	run(t, "ip", "-n", out, "link", "set", "eth0", "up")
	return out
}

// linkInfo is what the tests read of a link: its MTU and packet counters.
type linkInfo struct {
	MTU   int `json:"mtu"`
	Stats struct {
		TX struct {
			Packets uint64 `json:"packets"`
		} `json:"tx"`
		RX struct {
			Packets uint64 `json:"packets"`
		} `json:"rx"`
	} `json:"stats64"`
}

func (h *Host) link(name string) linkInfo {
	t := h.c.t
	t.Helper()
	var links []linkInfo
	out := run(t, "ip", "-n", h.NS, "-j", "-s", "link", "show", "dev", name)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j -s link show %s on h%d: %v\n%s", name, h.N, err, out)
	}
	return links[0]
}

// setUnderlayMTU sets the MTU of h's underlay and of its fabric end, as a
// jumbo-frame or small-MTU segment would be.
func (h *Host) setUnderlayMTU(mtu int) {
	t := h.c.t
	t.Helper()
	run(t, "ip", "-n", h.c.Fabric, "link", "set", fmt.Sprintf("vh%d", h.N), "mtu", strconv.Itoa(mtu))
	run(t, "ip", "-n", h.NS, "link", "set", "eth0", "mtu", strconv.Itoa(mtu))
}

// Egress masquerade: a container reaches a machine outside the overlay,
// which sees the host's address; a container on another host sees the real
// container IP. The host file says so, and turning ipMasq off live takes
// the rule away (the outside then sees the container's own address).
func TestMasquerade(t *testing.T) {
	c := newCluster(t, 2)
	out := addOutside(t, c)
	c.SetNetwork()
	c.startAll()
	h1, h2 := c.Hosts[0], c.Hosts[1]
	if !h1.HostFile().IPMasq {
		t.Fatalf("h1's host file does not say ipMasq: %+v", h1.HostFile())
	}
	a, b := h1.Attach("a"), h2.Attach("b")
	serveEcho(t, out, netip.MustParseAddr(outsideIP))
	serveEcho(t, a.NS, a.IP)

	if seen, _ := callEcho(t, b.NS, netip.MustParseAddr(outsideIP)); seen.String() != h2.IP {
		t.Errorf("outside saw %s for a container of h2, want h2's address %s (masquerade)", seen, h2.IP)
	}
	if seen, _ := callEcho(t, b.NS, a.IP); seen != b.IP {
		t.Errorf("a container on h1 saw %s for b, want b's own IP %s (no masquerade inside the overlay)", seen, b.IP)
	}

	// Off, live: the outside then needs a route back, and sees b itself.
	run(t, "ip", "-n", out, "route", "add", overlayCIDR, "via", h2.IP)
	c.SetNetwork("--ip-masq=false")
	waitFor(t, 15*time.Second, "h2's host file to say ipMasq false", func() bool { return !h2.HostFile().IPMasq })
	waitFor(t, 15*time.Second, "the outside to see b's own address", func() bool {
		seen, _, err := tryEcho(b.NS, netip.MustParseAddr(outsideIP))
		return err == nil && seen == b.IP
	})
}

// MTU from the whole cluster: a 9000-byte host and a 1500-byte host both
// use 1450; 1400-byte payloads with DF cross both ways and larger packets
// are fragmented to fit (they were black-holed when the jumbo host used
// 8950). A 1400-byte host joins and both lower to 1350, saying that
// running containers keep their MTU.
func TestClusterMTU(t *testing.T) {
	c := newCluster(t, 2)
	h1, h2 := c.Hosts[0], c.Hosts[1]
	h1.setUnderlayMTU(9000)
	c.SetNetwork()
	c.startAll()
	for _, h := range c.Hosts {
		if got := h.HostFile().MTU; got != 1450 {
			t.Fatalf("h%d host file MTU %d, want 1450 (smallest underlay 1500 - 50)", h.N, got)
		}
		if got := h.link("overlay.1").MTU; got != 1450 {
			t.Fatalf("h%d overlay.1 MTU %d, want 1450", h.N, got)
		}
	}
	a, b := h1.Attach("a"), h2.Attach("b")
	a.mustReach(t, b.IP)
	for _, p := range []struct {
		from *Container
		to   netip.Addr
	}{{a, b.IP}, {b, a.IP}} {
		if out, err := nsCmd(p.from.NS, "ping", "-c", "2", "-W", "2", "-M", "do", "-s", "1400", p.to.String()).CombinedOutput(); err != nil {
			t.Errorf("1400-byte payload with DF from %s: %v\n%s", p.from.Name, err, out)
		}
		if out, err := nsCmd(p.from.NS, "ping", "-c", "2", "-W", "2", "-s", "3000", p.to.String()).CombinedOutput(); err != nil {
			t.Errorf("3000-byte ping (fragmented) from %s: %v\n%s", p.from.Name, err, out)
		}
	}

	c.addHost(3)
	h3 := c.Hosts[2]
	h3.setUnderlayMTU(1400)
	h3.Start()
	h3.WaitReady()
	for _, h := range c.Hosts {
		waitFor(t, 15*time.Second, fmt.Sprintf("h%d to lower its MTU to 1350", h.N), func() bool {
			return h.HostFile().MTU == 1350 && h.link("overlay.1").MTU == 1350
		})
	}
	if !strings.Contains(h1.Daemon.Output(), "overlay MTU lowered") {
		t.Errorf("h1's log does not say the MTU was lowered:\n%s", h1.Daemon.Output())
	}
	out, err := h1.Ctl("status")
	if err != nil || !strings.Contains(out, "keep MTU 1450") {
		t.Errorf("overlayctl status does not say running containers keep MTU 1450: %v\n%s", err, out)
	}
	a3 := h3.Attach("c")
	a3.mustReach(t, a.IP)
	if out, err := nsCmd(a3.NS, "ping", "-c", "2", "-W", "2", "-s", "3000", a.IP.String()).CombinedOutput(); err != nil {
		t.Errorf("3000-byte ping from the 1400-byte host: %v\n%s", err, out)
	}
}

// addRoutedHost adds host n on its own segment 198.18.n.0/24, behind the
// fabric namespace acting as a router: it shares no L2 with the others.
func (c *Cluster) addRoutedHost(n int) *Host {
	t := c.t
	t.Helper()
	c.addHost(n)
	h := c.Hosts[len(c.Hosts)-1]
	veth := fmt.Sprintf("vh%d", n)
	router, ip := fmt.Sprintf("198.18.%d.1", n), fmt.Sprintf("198.18.%d.%d", n, 10+n)
	run(t, "ip", "-n", c.Fabric, "link", "set", veth, "nomaster")
	run(t, "ip", "-n", c.Fabric, "addr", "add", router+"/24", "dev", veth)
	run(t, "ip", "netns", "exec", c.Fabric, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	run(t, "ip", "-n", h.NS, "addr", "flush", "dev", "eth0")
	run(t, "ip", "-n", h.NS, "addr", "add", ip+"/24", "dev", "eth0")
	run(t, "ip", "-n", h.NS, "route", "replace", "default", "via", router)
	h.IP = ip
	return h
}

// Direct routing: h1 and h2 share a segment and talk unencapsulated (h1's
// VXLAN device counts no packet for them); h3 is behind a router and stays
// on VXLAN; every pair reaches each other; status shows the mode.
func TestDirectRouting(t *testing.T) {
	c := newCluster(t, 2)
	h3 := c.addRoutedHost(3)
	c.SetNetwork("--direct-routing")
	c.startAll()
	h1, h2 := c.Hosts[0], c.Hosts[1]
	a, b, d := h1.Attach("a"), h2.Attach("b"), h3.Attach("d")
	for _, p := range [][2]*Container{{a, b}, {b, a}, {a, d}, {d, a}, {b, d}, {d, b}} {
		p[0].mustReach(t, p[1].IP)
	}
	route := inNS(t, h1.NS, "ip", "route", "show", h2.HostFile().Subnet.String())
	if !strings.Contains(route, "via "+h2.IP+" dev eth0") {
		t.Errorf("h1's route to h2's subnet is %q, want it via %s dev eth0 (direct)", route, h2.IP)
	}
	route = inNS(t, h1.NS, "ip", "route", "show", h3.HostFile().Subnet.String())
	if !strings.Contains(route, "dev overlay.1") {
		t.Errorf("h1's route to h3's subnet is %q, want it on overlay.1 (VXLAN)", route)
	}
	before := h1.link("overlay.1").Stats.TX.Packets
	if err := a.Ping(b.IP, 5); err != nil {
		t.Fatal(err)
	}
	if after := h1.link("overlay.1").Stats.TX.Packets; after != before {
		t.Errorf("h1's overlay.1 sent %d packets while a pinged b on the same segment, want 0 (direct)", after-before)
	}
	if err := a.Ping(d.IP, 5); err != nil {
		t.Fatal(err)
	}
	if after := h1.link("overlay.1").Stats.TX.Packets; after-before < 5 {
		t.Errorf("h1's overlay.1 sent %d packets while a pinged d behind the router, want ≥ 5 (VXLAN)", after-before)
	}
	out, err := h1.Ctl("status")
	if err != nil || !strings.Contains(out, "direct") || !strings.Contains(out, "vxlan") {
		t.Errorf("overlayctl status does not show the mode per peer: %v\n%s", err, out)
	}
}

// Several networks from one overlayd: two networks with their own VNI,
// port, device, bridge and host file on the same two hosts; same-network
// pairs reach each other, cross-network pairs do not, across hosts or on
// one host. A clashing config is refused by network set and by overlayd.
func TestSeveralNetworks(t *testing.T) {
	c := newCluster(t, 2)
	c.SetNetwork()
	if out, err := c.Ctl("network", "set", "blue", "--cidr", "10.245.0.0/16"); err == nil || !strings.Contains(out, `field "vni" 1 is already network default's`) {
		t.Fatalf("network set blue with default's VNI: %v\n%s", err, out)
	}
	if out, err := c.Ctl("network", "set", "blue", "--cidr", "10.245.0.0/16", "--vni", "2", "--port", "8473"); err != nil {
		t.Fatalf("network set blue: %v\n%s", err, out)
	}
	for _, h := range c.Hosts {
		h.Start("--network", "blue")
	}
	h1, h2 := c.Hosts[0], c.Hosts[1]
	for _, h := range c.Hosts {
		h.WaitReady()
		waitFor(t, readyTimeout, fmt.Sprintf("h%d's host file for blue", h.N), func() bool {
			hf, err := hostfile.Read(hostfile.Path(h.RunDir, "blue"))
			return err == nil && hf.Bridge == "ovl-blue" && hf.VNI == 2
		})
	}
	a1, a2 := h1.Attach("a1"), h2.Attach("a2")
	b1, err := h1.AttachWith("b1", h1.confListFor("blue"))
	if err != nil {
		t.Fatal(err)
	}
	b2, err := h2.AttachWith("b2", h2.confListFor("blue"))
	if err != nil {
		t.Fatal(err)
	}
	if !netip.MustParsePrefix("10.245.0.0/16").Contains(b1.IP) {
		t.Fatalf("b1 got %s, want an address of blue", b1.IP)
	}
	a1.mustReach(t, a2.IP)
	b1.mustReach(t, b2.IP)
	b2.mustReach(t, b1.IP)
	// One-way datagrams, so a leak in either direction shows (a ping
	// needs both); a same-network pair proves the probe itself works.
	listeners := map[*Container]net.PacketConn{}
	for _, ct := range []*Container{a1, a2, b1, b2} {
		listeners[ct] = listenUDP(t, ct)
	}
	if err := sendUDP(a2.NS, a1.IP, 3); err != nil || received(listeners[a1], time.Second) == 0 {
		t.Fatalf("the one-way probe does not get through inside one network (%v)", err)
	}
	for _, p := range []struct {
		from *Container
		to   *Container
	}{{a1, b2}, {b2, a1}, {a1, b1}, {b1, a1}, {a2, b1}, {b1, a2}} {
		if err := sendUDP(p.from.NS, p.to.IP, 3); err != nil {
			continue // no route is isolation too
		}
		if n := received(listeners[p.to], 500*time.Millisecond); n > 0 {
			t.Errorf("%s (one network) reached %s (the other): %d datagrams", p.from.Name, p.to.Name, n)
		}
	}

	// A config written around overlayctl that clashes with another network
	// the same overlayd serves: it refuses to start, naming the field,
	// builds nothing for either network and takes no lease.
	c.EtcdPut("/overlay/networks/red/config", `{"network":"10.246.0.0/16","vni":1,"port":8474}`)
	c.addHost(3)
	h3 := c.Hosts[2]
	p := h3.Start("--network", "red")
	if code, ok := p.WaitExit(30 * time.Second); !ok || code == 0 {
		t.Fatalf("overlayd with a clashing network config: exit %d (exited %v)", code, ok)
	}
	if !strings.Contains(p.Output(), `field "vni" 1 is already network`) {
		t.Errorf("overlayd's error does not name the clash:\n%s", p.Output())
	}
	if links := inNS(t, h3.NS, "ip", "-br", "link", "show"); strings.Contains(links, "overlay.2") || strings.Contains(links, "ovl-red") {
		t.Errorf("h3 built devices for the refused network: %s", links)
	}
	for _, n := range []string{"red", networkName} {
		if _, err := hostfile.Read(hostfile.Path(h3.RunDir, n)); err == nil {
			t.Errorf("h3 wrote a host file for network %s in a refused start", n)
		}
	}
	for _, l := range c.leases() {
		if l.PublicIP == h3.IP {
			t.Errorf("h3 holds a lease after a refused start: %+v", l)
		}
	}
}

// metric reads one series of overlayd's /metrics on h.
func (h *Host) metric(addr, name string) (float64, bool) {
	out, err := nsCmd(h.NS, "curl", "-sf", "http://"+addr+"/metrics").Output()
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.HasPrefix(f[0], name) {
			v, err := strconv.ParseFloat(f[1], 64)
			return v, err == nil
		}
	}
	return 0, false
}

// injector is a machine on the underlay, not a member, that has built a
// VXLAN device of its own to send crafted frames into a host's overlay.
type injector struct {
	ns  string
	dev string
}

// addInjector builds the attacker aimed at target, pretending to be a
// container of the subnet spoof (so the victim's reverse path agrees).
func addInjector(t *testing.T, c *Cluster, target *Host, spoof netip.Addr) injector {
	t.Helper()
	in := injector{ns: c.Prefix + "-inj", dev: "vx"}
	addNetns(t, in.ns)
	run(t, "ip", "-n", c.Fabric, "link", "add", "vinj", "type", "veth", "peer", "name", "eth0", "netns", in.ns)
	run(t, "ip", "-n", c.Fabric, "link", "set", "vinj", "master", "fabric0", "up")
	run(t, "ip", "-n", in.ns, "addr", "add", "198.18.0.250/24", "dev", "eth0")
	run(t, "ip", "-n", in.ns, "link", "set", "eth0", "up")
	var mac string
	for _, l := range c.leases() {
		if l.PublicIP == target.IP {
			mac = l.VTEPMAC
		}
	}
	vtep := target.HostFile().Subnet.Addr().String()
	run(t, "ip", "-n", in.ns, "link", "add", in.dev, "type", "vxlan", "id", "1", "dstport", "8472", "local", "198.18.0.250", "nolearning")
	run(t, "ip", "-n", in.ns, "addr", "add", spoof.String()+"/32", "dev", in.dev)
	run(t, "ip", "-n", in.ns, "link", "set", in.dev, "up")
	run(t, "ip", "-n", in.ns, "neigh", "add", vtep, "lladdr", mac, "dev", in.dev, "nud", "permanent")
	run(t, "ip", "netns", "exec", in.ns, "bridge", "fdb", "append", mac, "dev", in.dev, "dst", target.IP)
	run(t, "ip", "-n", in.ns, "route", "add", target.HostFile().Subnet.String(), "via", vtep, "dev", in.dev, "onlink")
	return in
}

// send sends n UDP datagrams to dst:9999 from the injector.
func (in injector) send(t *testing.T, dst netip.Addr, n int) {
	t.Helper()
	if err := sendUDP(in.ns, dst, n); err != nil {
		t.Fatalf("inject: %v", err)
	}
}

// sendUDP sends n datagrams to dst:9999 from netns, 10ms apart.
func sendUDP(netns string, dst netip.Addr, n int) error {
	return inNetns(netns, func() error {
		conn, err := net.Dial("udp4", netip.AddrPortFrom(dst, 9999).String())
		if err != nil {
			return err
		}
		defer conn.Close()
		for range n {
			if _, err := conn.Write([]byte("datagram")); err != nil {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
		return nil
	})
}

// listenUDP listens on ct's address, port 9999.
func listenUDP(t *testing.T, ct *Container) net.PacketConn {
	t.Helper()
	var conn net.PacketConn
	if err := inNetns(ct.NS, func() (err error) {
		conn, err = net.ListenPacket("udp4", netip.AddrPortFrom(ct.IP, 9999).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// received counts the datagrams conn gets within d.
func received(conn net.PacketConn, d time.Duration) int {
	n := 0
	buf := make([]byte, 64)
	_ = conn.SetReadDeadline(time.Now().Add(d))
	for {
		if _, _, err := conn.ReadFrom(buf); err != nil {
			return n
		}
		n++
	}
}

// VXLAN ingress filter: a non-member on the underlay that crafts VXLAN
// frames (valid VNI, the host's VTEP MAC, a container's address) reaches
// the container while the filter is off, and nothing gets through once
// it is on, with the drop counter moving; members still work; a member
// whose lease ends is dropped within the lease TTL.
func TestIngressFilter(t *testing.T) {
	c := newCluster(t, 2)
	c.SetNetwork()
	h1, h2 := c.Hosts[0], c.Hosts[1]
	const metrics = "127.0.0.1:9472"
	h1.Start("--ingress-filter=false")
	h2.Start("--lease-ttl", "3s")
	h1.WaitReady()
	h2.WaitReady()
	a, b := h1.Attach("a"), h2.Attach("b")
	a.mustReach(t, b.IP)
	spoof := h2.HostFile().Subnet.Addr().Next().Next().Next() // a "container" of h2
	in := addInjector(t, c, h1, spoof)
	conn := listenUDP(t, a)
	in.send(t, a.IP, 5)
	if n := received(conn, time.Second); n == 0 {
		t.Fatal("with the filter off, no injected datagram arrived: the injector does not work, so the test below would prove nothing")
	}

	h1.Daemon.Stop(5 * time.Second)
	h1.Start("--metrics-addr", metrics)
	h1.WaitStampedBy(h1.Daemon)
	before, _ := h1.metric(metrics, "overlay_vxlan_ingress_dropped_packets_total")
	in.send(t, a.IP, 5)
	if n := received(conn, time.Second); n != 0 {
		t.Errorf("with the filter on, %d injected datagrams reached the container", n)
	}
	after, ok := h1.metric(metrics, "overlay_vxlan_ingress_dropped_packets_total")
	if !ok || after-before < 5 {
		t.Errorf("drop counter moved from %v to %v (read %v), want ≥ 5 more", before, after, ok)
	}
	if err := b.Ping(a.IP, 3); err != nil {
		t.Errorf("a member is dropped: %v", err)
	}

	// h2 dies; its datapath stays and b keeps sending one-way datagrams
	// (which need no route back), but h2's lease ends.
	h2.Daemon.Kill()
	killed := time.Now()
	for received(conn, 0) > 0 {
	}
	waitFor(t, 20*time.Second, "h1 to drop what h2 sends", func() bool {
		if err := sendUDP(b.NS, a.IP, 5); err != nil {
			t.Fatal(err)
		}
		return received(conn, 200*time.Millisecond) == 0
	})
	if took := time.Since(killed); took > 3*time.Second+4*time.Second {
		t.Errorf("h2 was dropped %s after its daemon died, want within the 3s lease TTL (plus a pass)", took)
	}
	if dropped, _ := h1.metric(metrics, "overlay_vxlan_ingress_dropped_packets_total"); dropped <= after {
		t.Errorf("drop counter did not move for the departed member: %v, was %v", dropped, after)
	}

	// Turned off, the filter goes: a stale member set must not keep
	// dropping new members.
	h1.Daemon.Stop(5 * time.Second)
	h1.Start("--ingress-filter=false")
	h1.WaitStampedBy(h1.Daemon)
	in.send(t, a.IP, 5)
	if n := received(conn, time.Second); n == 0 {
		t.Error("with --ingress-filter=false after a filtered run, the old filter still drops")
	}
}
