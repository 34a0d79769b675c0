package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// whyResult is the part of `overlayctl why -o json` the tests read.
type whyResult struct {
	Broken     string `json:"broken"`
	Verdict    string `json:"verdict"`
	ExitStatus int    `json:"exitStatus"`
	Steps      []struct {
		Step   string `json:"step"`
		OK     bool   `json:"ok"`
		Detail string `json:"detail"`
	} `json:"steps"`
}

// why runs `overlayctl why ip -o json` on h and returns its verdict and
// exit status, which must agree.
func (h *Host) why(t *testing.T, ip netip.Addr) (whyResult, int) {
	t.Helper()
	out, err := h.Ctl("why", ip.String(), "-o", "json")
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("overlayctl why %s: %v\n%s", ip, err, out)
	}
	var r whyResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("overlayctl why %s -o json: %v\n%s", ip, err, out)
	}
	if r.ExitStatus != code {
		t.Fatalf("why %s exited %d but says %d:\n%s", ip, code, r.ExitStatus, out)
	}
	return r, code
}

// wantWhy requires why ip on h to break at step with exit status code and
// a verdict naming what broke.
func (h *Host) wantWhy(t *testing.T, ip netip.Addr, step string, code int, words ...string) {
	t.Helper()
	r, got := h.why(t, ip)
	if got != code || r.Broken != step {
		t.Fatalf("why %s: exit %d at %q (%s), want %d at %q\n%+v", ip, got, r.Broken, r.Verdict, code, step, r.Steps)
	}
	for _, w := range words {
		if !strings.Contains(r.Verdict, w) {
			t.Fatalf("why %s verdict %q does not say %q", ip, r.Verdict, w)
		}
	}
	table, _ := h.Ctl("why", ip.String())
	t.Logf("why %s (exit %d):\n%s", ip, got, table)
}

// vtep reads h's VXLAN device: its MAC.
func (h *Host) vtepMAC(t *testing.T) string {
	t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	out := run(t, "ip", "-n", h.NS, "-j", "link", "show", "overlay.1")
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("parse ip -j link show overlay.1: %v\n%s", err, out)
	}
	return links[0].Address
}

// TestWhy walks `overlayctl why` through a healthy path and each broken
// step, each with its own diagnosis and exit status.
func TestWhy(t *testing.T) {
	t.Parallel()
	c, a, b := connectedPair(t, 1)
	h1, h2 := c.Hosts[0], c.Hosts[1]
	if r, code := h1.why(t, b.IP); code != 0 || r.Broken != "" {
		t.Fatalf("healthy path to b: exit %d %+v", code, r)
	}
	if r, code := h1.why(t, a.IP); code != 0 || !strings.Contains(r.Steps[len(r.Steps)-1].Detail, "veth") {
		t.Fatalf("local container a: exit %d %+v", code, r)
	}
	h2sub := h2.HostFile().Subnet
	vtep, mac := h2sub.Addr(), h2.vtepMAC(t)

	// The local container's veth taken off the bridge: nothing answers.
	ports := h1.bridgePorts("overlay0")
	if len(ports) != 1 {
		t.Fatalf("h1's bridge ports %v, want a's veth", ports)
	}
	inNS(t, h1.NS, "ip", "link", "set", ports[0], "nomaster")
	h1.wantWhy(t, a.IP, "local", 13, a.IP.String(), "bridge overlay0")
	inNS(t, h1.NS, "ip", "link", "set", ports[0], "master", "overlay0")

	// Kernel entries deleted by hand, with h1's overlayd stopped so nothing
	// repairs them, then put back by hand.
	h1.Daemon.Stop(5 * time.Second)
	inNS(t, h1.NS, "bridge", "fdb", "del", mac, "dev", "overlay.1", "dst", h2.IP)
	h1.wantWhy(t, b.IP, "fdb", 9, "fdb "+mac, "MISSING")
	inNS(t, h1.NS, "bridge", "fdb", "append", mac, "dev", "overlay.1", "dst", h2.IP, "self", "permanent")
	inNS(t, h1.NS, "ip", "neigh", "del", vtep.String(), "dev", "overlay.1")
	h1.wantWhy(t, b.IP, "neighbour", 8, "neighbour "+vtep.String(), "MISSING")
	inNS(t, h1.NS, "ip", "neigh", "replace", vtep.String(), "lladdr", mac, "dev", "overlay.1", "nud", "permanent")
	inNS(t, h1.NS, "ip", "route", "del", h2sub.String())
	h1.wantWhy(t, b.IP, "route", 7, "route "+h2sub.String(), "MISSING")
	h1.Start()
	h1.WaitStampedBy(h1.Daemon)
	waitFor(t, 10*time.Second, "the path whole again", func() bool { _, code := h1.why(t, b.IP); return code == 0 })

	// The path between the hosts carries less than the overlay assumes.
	inNS(t, c.Fabric, "ip", "link", "set", "vh2", "mtu", "1400")
	h1.wantWhy(t, b.IP, "mtu", 12, "1450-byte packets", "less than 1500")
	inNS(t, c.Fabric, "ip", "link", "set", "vh2", "mtu", "1500")

	// The peer's underlay gone: it answers on neither path.
	inNS(t, c.Fabric, "ip", "link", "set", "vh2", "down")
	h1.wantWhy(t, b.IP, "probe", 11, "answers neither")
	inNS(t, c.Fabric, "ip", "link", "set", "vh2", "up")

	// UDP to the peer's VTEP lost while ICMP crosses, as when checksum
	// offload corrupts what is inside the VXLAN packets (the peer drops
	// them for their checksum; here its firewall drops them).
	dropUDP := []string{"INPUT", "-d", vtep.String(), "-p", "udp", "--dport", "33434", "-j", "DROP"}
	inNS(t, h2.NS, append([]string{"iptables", "-I"}, dropUDP...)...)
	h1.wantWhy(t, b.IP, "udp", 15, "ICMP echoes cross the overlay", "checksum offload")
	inNS(t, h2.NS, append([]string{"iptables", "-D"}, dropUDP...)...)
	// A peer that drops that UDP on every address: not testable, not blamed.
	dropAll := []string{"INPUT", "-p", "udp", "--dport", "33434", "-j", "DROP"}
	inNS(t, h2.NS, append([]string{"iptables", "-I"}, dropAll...)...)
	if r, code := h1.why(t, b.IP); code != 0 || !strings.Contains(r.Steps[len(r.Steps)-3].Detail, "not tested") {
		t.Fatalf("UDP dropped on every address of the peer: exit %d, %+v", code, r.Steps)
	}
	inNS(t, h2.NS, append([]string{"iptables", "-D"}, dropAll...)...)

	// The peer's overlayd stopped and the VXLAN port dropped on its way in.
	h2.Daemon.Stop(5 * time.Second)
	inNS(t, h2.NS, "iptables", "-I", "INPUT", "-p", "udp", "--dport", "8472", "-j", "DROP")
	h1.wantWhy(t, b.IP, "probe", 10, "answers on the underlay but not through the overlay", "UDP port 8472")
	inNS(t, h2.NS, "iptables", "-D", "INPUT", "-p", "udp", "--dport", "8472", "-j", "DROP")

	// The peer's lease gone: released while its overlayd is down.
	if out, err := c.Ctl("lease", "release", "h2"); err != nil {
		t.Fatalf("lease release h2: %v\n%s", err, out)
	}
	h1.wantWhy(t, b.IP, "lease", 4, "no lease", b.IP.String())

	// Not an address of the network at all.
	h1.wantWhy(t, netip.MustParseAddr("10.9.0.1"), "network", 3, "outside network")

	// This host's own lease gone (its overlayd stopped, then released).
	h1.Daemon.Stop(5 * time.Second)
	if out, err := c.Ctl("lease", "release", "h1"); err != nil {
		t.Fatalf("lease release h1: %v\n%s", err, out)
	}
	h1.wantWhy(t, a.IP, "own lease", 6, "no lease for this host's")
}

// TestWhyPeerNotRunning: a host joins while a peer's overlayd is stopped;
// the peer never programs it, so the overlay to it is lost while its
// underlay answers, and why names the peer's lease that nobody renews.
func TestWhyPeerNotRunning(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	c.SetNetwork()
	h1, h2, h3 := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	h1.Start()
	h2.Start("--lease-ttl", "10s")
	h1.WaitReady()
	h2.WaitReady()
	b := h2.Attach("b")
	h2.Daemon.Stop(5 * time.Second)
	stopped := time.Now()
	h3.Start()
	h3.WaitReady()
	// Half the TTL unrenewed, before the lease expires.
	var r whyResult
	var code int
	waitFor(t, 9*time.Second-time.Since(stopped), "why to name h2's unrenewed lease", func() bool {
		r, code = h3.why(t, b.IP)
		return code == 10 && strings.Contains(r.Verdict, "not renewing")
	})
	if !strings.Contains(r.Verdict, "has not programmed this host") {
		t.Fatalf("verdict %q does not say h2 has not programmed h3", r.Verdict)
	}
}

// statusResult is the part of `overlayctl status -o json` the tests read.
type statusResult struct {
	PeersWanted     int `json:"peersWanted"`
	PeersProgrammed int `json:"peersProgrammed"`
	Lease           struct {
		Found bool `json:"found"`
	} `json:"lease"`
	Overlayd struct {
		Running bool `json:"running"`
	} `json:"overlayd"`
	LastPass *struct {
		At string `json:"at"`
	} `json:"lastPass"`
	Peers []struct {
		Subnet string `json:"subnet"`
		Kernel string `json:"kernel"`
		Probe  string `json:"probe"`
		Note   string `json:"note"`
	} `json:"peers"`
}

func (h *Host) ctlStatus(t *testing.T) statusResult {
	t.Helper()
	out, err := h.Ctl("status", "-o", "json")
	if err != nil {
		t.Fatalf("overlayctl status: %v\n%s", err, out)
	}
	var s statusResult
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("overlayctl status -o json: %v\n%s", err, out)
	}
	return s
}

// TestProbeFindsBlockedPort: the probes find a VXLAN port blocked on the
// way to a peer within a few probe intervals, and say so in status and
// the metrics; unblocked, the peer is ok again.
func TestProbeFindsBlockedPort(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	c.SetNetwork()
	h1, h2 := c.Hosts[0], c.Hosts[1]
	const metrics = "127.0.0.1:9472"
	h1.Start("--probe-interval", "300ms", "--metrics-addr", metrics)
	h2.Start("--probe-interval", "300ms")
	h1.WaitReady()
	h2.WaitReady()
	peer := h2.HostFile().Subnet.String()
	probeState := func() string {
		for _, p := range h1.ctlStatus(t).Peers {
			if p.Subnet == peer {
				return p.Probe
			}
		}
		return ""
	}
	waitFor(t, 10*time.Second, "h2 probed ok", func() bool { return probeState() == "ok" })
	broken := fmt.Sprintf(`overlay_peer_overlay_broken{network="default",peer=%q}`, peer)
	if v, ok := h1.metric(metrics, broken); !ok || v != 0 {
		t.Fatalf("%s = %v (%v) while healthy", broken, v, ok)
	}
	inNS(t, h2.NS, "iptables", "-I", "INPUT", "-p", "udp", "--dport", "8472", "-j", "DROP")
	began := time.Now()
	// 3 lost probes in a row at 300ms, and a status write each second.
	waitFor(t, 10*time.Second, "h2 reported overlay_broken", func() bool { return probeState() == "overlay_broken" })
	t.Logf("blocked port reported in status %s after the rule", time.Since(began).Round(time.Millisecond))
	if v, ok := h1.metric(metrics, broken); !ok || v != 1 {
		t.Fatalf("%s = %v (%v) while blocked", broken, v, ok)
	}
	table, _ := h1.Ctl("status")
	if !strings.Contains(table, "OVERLAY_BROKEN") || !strings.Contains(table, "UDP port 8472") {
		t.Fatalf("status does not show the blocked port:\n%s", table)
	}
	t.Logf("status while blocked:\n%s", table)
	if !strings.Contains(h1.Daemon.Output(), "not through the overlay") {
		t.Fatalf("overlayd did not log the broken overlay:\n%s", h1.Daemon.Output())
	}
	inNS(t, h2.NS, "iptables", "-D", "INPUT", "-p", "udp", "--dport", "8472", "-j", "DROP")
	waitFor(t, 10*time.Second, "h2 ok again", func() bool { return probeState() == "ok" })
}
