package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// lease is the part of `overlayctl leases -o json` the tests read.
type lease struct {
	Subnet   string `json:"subnet"`
	Hostname string `json:"hostname"`
	PublicIP string `json:"publicIP"`
	VTEPMAC  string `json:"vtepMAC"`
}

func (c *Cluster) leases() []lease {
	c.t.Helper()
	out, err := c.Ctl("leases", "--network", networkName, "-o", "json")
	if err != nil {
		c.t.Fatalf("overlayctl leases: %v\n%s", err, out)
	}
	var ls []lease
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		c.t.Fatalf("overlayctl leases -o json: %v\n%s", err, out)
	}
	return ls
}

// TestCrossHostPing: two hosts lease distinct subnets, publish them in etcd,
// and containers on different hosts reach each other by their own IPs.
func TestCrossHostPing(t *testing.T) {
	c := newCluster(t, 2)
	c.SetNetwork()
	c.startAll()
	h1, h2 := c.Hosts[0], c.Hosts[1]
	f1, f2 := h1.HostFile(), h2.HostFile()
	network := netip.MustParsePrefix(overlayCIDR)
	if f1.Subnet == f2.Subnet || !network.Contains(f1.Subnet.Addr()) || !network.Contains(f2.Subnet.Addr()) {
		t.Fatalf("host subnets %s and %s: want two distinct subnets of %s", f1.Subnet, f2.Subnet, network)
	}

	// etcd holds one lease per host, naming its underlay address.
	byIP := map[string]lease{}
	for _, l := range c.leases() {
		byIP[l.PublicIP] = l
	}
	for _, h := range c.Hosts {
		l, ok := byIP[h.IP]
		if !ok || l.Subnet != h.HostFile().Subnet.String() || l.VTEPMAC == "" {
			t.Errorf("h%d: lease %+v, want subnet %s for publicIP %s with a VTEP MAC", h.N, l, h.HostFile().Subnet, h.IP)
		}
	}

	a, b := h1.Attach("a"), h2.Attach("b")
	if !f1.Subnet.Contains(a.IP) || !f2.Subnet.Contains(b.IP) {
		t.Fatalf("container IPs %s, %s: want them in %s and %s", a.IP, b.IP, f1.Subnet, f2.Subnet)
	}
	a.mustReach(t, b.IP)
	b.mustReach(t, a.IP)
	if err := a.Check(); err != nil {
		t.Errorf("CNI CHECK: %v", err)
	}
}

// TestDaemonCrashRestart: overlayd killed with SIGKILL leaves the datapath
// working, the plugins keep attaching containers while it is down, and the
// restarted daemon (same state dir) reclaims the same subnet.
func TestDaemonCrashRestart(t *testing.T) {
	c, a, b := connectedPair(t, 1)
	h2 := c.Hosts[1]

	before := h2.HostFile()

	h2.Daemon.Kill()
	if err := a.Ping(b.IP, 3); err != nil {
		t.Errorf("with overlayd on h2 dead, the kernel state should still carry traffic: %v", err)
	}
	// The plugins read only the host file, so attaching works without the daemon.
	d := h2.Attach("d")

	h2.Start()
	// The restarted daemon vouches for the host file again (its ready
	// stamp names it) once it holds its lease again.
	h2.WaitStampedBy(h2.Daemon)
	after := h2.HostFile()
	if after.Subnet != before.Subnet {
		t.Fatalf("h2's subnet changed across restart: %s -> %s (containers would lose their addresses)", before.Subnet, after.Subnet)
	}
	var found bool
	for _, l := range c.leases() {
		if l.PublicIP == h2.IP {
			found = l.Subnet == before.Subnet.String()
		}
	}
	if !found {
		t.Errorf("etcd has no lease of %s for h2 (%s) after restart: %+v", before.Subnet, h2.IP, c.leases())
	}
	a.mustReach(t, b.IP)
	b.mustReach(t, a.IP)
	a.mustReach(t, d.IP)
	e := h2.Attach("e")
	a.mustReach(t, e.IP)
}

// TestDelReleasesAddress: with /30 host subnets there is exactly one
// container address per host, which makes leaks and double allocations
// visible: a second ADD must fail while the first holds it, DEL must remove
// the veth and free the address for the next ADD, and DEL is idempotent,
// also when the container's netns is already gone.
func TestDelReleasesAddress(t *testing.T) {
	c := newCluster(t, 1)
	c.SetNetwork("--subnet-len", "30")
	c.startAll()
	h := c.Hosts[0]
	hf := h.HostFile()
	basePorts := len(h.bridgePorts(hf.Bridge))

	a := h.Attach("a")
	if got := len(h.bridgePorts(hf.Bridge)); got != basePorts+1 {
		t.Fatalf("bridge %s has %d ports after ADD, want %d", hf.Bridge, got, basePorts+1)
	}
	if len(h.ipamFiles(a.IP)) == 0 {
		t.Fatalf("no reservation file for %s under %s after ADD", a.IP, h.DataDir)
	}

	// The only address is taken: a second ADD must fail, not double-allocate.
	full, err := h.TryAttach("full")
	if err == nil {
		t.Fatalf("second ADD in a /30 got %s while %s holds %s: address handed out twice?", full.IP, a.Name, a.IP)
	}
	t.Logf("ADD with the subnet full fails as it should: %v", err)
	// A runtime cleans up a failed ADD with DEL.
	if err := full.Del(); err != nil {
		t.Errorf("DEL after a failed ADD: %v", err)
	}

	if err := a.Del(); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if linkExists(a.NS, "eth0") {
		t.Errorf("eth0 still exists in %s after DEL", a.NS)
	}
	if got := len(h.bridgePorts(hf.Bridge)); got != basePorts {
		t.Errorf("bridge %s has %d ports after DEL, want %d (host veth left behind)", hf.Bridge, got, basePorts)
	}
	if files := h.ipamFiles(a.IP); len(files) != 0 {
		t.Errorf("reservation of %s still on disk after DEL: %v", a.IP, files)
	}
	if err := a.Del(); err != nil {
		t.Errorf("second DEL must succeed: %v", err)
	}

	// The freed address is the next one handed out.
	b := h.Attach("b")
	if b.IP != a.IP {
		t.Errorf("ADD after DEL got %s, want the freed %s", b.IP, a.IP)
	}

	// DEL succeeds when the runtime already removed the netns, and still
	// frees the address and the host side of the veth.
	run(t, "ip", "netns", "del", b.NS)
	if err := b.Del(); err != nil {
		t.Errorf("DEL with the netns gone: %v", err)
	}
	if files := h.ipamFiles(b.IP); len(files) != 0 {
		t.Errorf("reservation of %s still on disk after DEL without netns: %v", b.IP, files)
	}
	waitFor(t, 5*time.Second, "the host veth of a deleted netns to disappear", func() bool {
		return len(h.bridgePorts(hf.Bridge)) == basePorts
	})
}

// TestBadInput: overlayd refuses bad input with a non-zero exit and a last
// line that says what is wrong, instead of crashing or hanging.
func TestBadInput(t *testing.T) {
	c := newCluster(t, 1)
	h := c.Hosts[0]

	expectExit := func(t *testing.T, want string, extra ...string) {
		t.Helper()
		p := h.Start(extra...)
		code, exited := p.WaitExit(45 * time.Second)
		out := p.Output()
		if !exited {
			t.Fatalf("overlayd still running after 45s, want a non-zero exit naming %q; output:\n%s", want, out)
		}
		if code == 0 {
			t.Fatalf("overlayd exited 0, want non-zero; output:\n%s", out)
		}
		if strings.Contains(out, "panic:") || strings.Contains(out, "goroutine ") {
			t.Fatalf("overlayd crashed instead of reporting an error:\n%s", out)
		}
		if line := lastLine(out); !strings.Contains(strings.ToLower(line), strings.ToLower(want)) {
			t.Fatalf("last line %q does not mention %q; output:\n%s", line, want, out)
		}
		t.Logf("exit %d: %s", code, lastLine(out))
	}

	t.Run("unreachable etcd", func(t *testing.T) {
		// Nothing listens on this port of the fabric: connections are refused.
		expectExit(t, "etcd", "--etcd-endpoints", "http://198.18.0.1:2999", "--etcd-timeout", "3s")
	})

	c.SetNetwork()
	t.Run("unknown iface", func(t *testing.T) {
		expectExit(t, "nosuch0", "--iface", "nosuch0")
	})

	// overlayctl refuses invalid configs, so write them to etcd directly.
	for _, tc := range []struct{ name, config, field string }{
		{"vni zero", `{"network":"10.244.0.0/16","subnetLen":24,"vni":0,"port":8472}`, `"vni"`},
		{"port too big", `{"network":"10.244.0.0/16","subnetLen":24,"vni":1,"port":70000}`, `"port"`},
		{"subnetLen outside network", `{"network":"10.244.0.0/16","subnetLen":8,"vni":1,"port":8472}`, `"subnetLen"`},
		{"network not a CIDR", `{"network":"banana","subnetLen":24,"vni":1,"port":8472}`, `"network"`},
	} {
		t.Run("config "+tc.name, func(t *testing.T) {
			c.EtcdPut("/overlay/networks/"+networkName+"/config", tc.config)
			expectExit(t, tc.field)
		})
	}
}

// TestLeaseDeletedRemovesPeer: when a host's lease disappears from etcd
// (expired or removed by an operator), the other hosts drop its route, and
// when the host comes back with the same state dir it republishes the same
// subnet and traffic flows again.
func TestLeaseDeletedRemovesPeer(t *testing.T) {
	c, a, b := connectedPair(t, 1)
	h1, h2 := c.Hosts[0], c.Hosts[1]
	subnet2 := h2.HostFile().Subnet.String()
	hasRoute := func() bool {
		for _, d := range h1.vxlanRoutes() {
			if d == subnet2 {
				return true
			}
		}
		return false
	}
	if !hasRoute() {
		t.Fatalf("h1 has no route to h2's subnet %s: %v", subnet2, h1.vxlanRoutes())
	}

	// SIGTERM: the daemon goes away but leaves its kernel state.
	h2.Daemon.Stop(10 * time.Second)
	if h2.HostFile().Subnet.String() != subnet2 {
		t.Fatalf("h2's host file changed after SIGTERM")
	}
	a.mustReach(t, b.IP) // both datapaths still in place, lease not yet expired
	// Released by hostname: overlayctl finds h2's lease among all.
	if out, err := c.Ctl("lease", "release", fmt.Sprintf("h%d", h2.N), "--network", networkName); err != nil || !strings.Contains(out, "released "+subnet2) {
		t.Fatalf("overlayctl lease release h%d: %v\n%s", h2.N, err, out)
	}
	waitFor(t, 20*time.Second, "h1 to drop its route to "+subnet2, func() bool { return !hasRoute() })
	if err := a.Ping(b.IP, 1); err == nil {
		t.Errorf("h1 still reaches %s after h2's lease was deleted", b.IP)
	}

	h2.Start()
	waitFor(t, readyTimeout, "h2's lease to come back in etcd", func() bool {
		for _, l := range c.leases() {
			if l.PublicIP == h2.IP {
				if l.Subnet != subnet2 {
					t.Fatalf("h2 came back with subnet %s, want its old %s", l.Subnet, subnet2)
				}
				return true
			}
		}
		return false
	})
	waitFor(t, 20*time.Second, "h1 to route "+subnet2+" again", hasRoute)
	a.mustReach(t, b.IP)
}
