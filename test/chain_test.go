package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// The rates asked of the bandwidth plugin: different in each direction, so
// that a swapped ingress/egress shows. Bits per second, as the runtime passes
// them; the burst is small (64 KiB) so that it does not blur a 2 s run.
const (
	ingressRate = 20_000_000
	egressRate  = 30_000_000
	burstBits   = 64 * 1024 * 8
	iperfPort   = 5201
)

// bandwidthCaps is the "bandwidth" capability argument a runtime (containerd
// or CRI-O, from the pod's kubernetes.io/*-bandwidth annotations) passes.
func bandwidthCaps() map[string]any {
	return map[string]any{"ingressRate": ingressRate, "ingressBurst": burstBits, "egressRate": egressRate, "egressBurst": burstBits}
}

// TestChainedMetaPlugins runs the overlay plugin followed by each reference
// meta plugin (built by make build from the pinned plugins module) and checks
// what each one did, in the kernel, after ADD and after DEL; then all of them
// at once on one container. portmap alone is TestPortmapChain. One 2-host
// cluster serves every subtest; they run one after the other because the
// bandwidth one measures throughput.
func TestChainedMetaPlugins(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	c.SetNetwork()
	c.startAll()
	h1, h2 := c.Hosts[0], c.Hosts[1]
	peer := h2.Attach("peer")
	iperfServer(t, peer.NS, iperfPort)

	t.Run("bandwidth", func(t *testing.T) {
		list := h1.chainList(t, "overlay-bw", `{"type":"bandwidth","capabilities":{"bandwidth":true}}`)
		ct, err := h1.AttachWithCaps("bw", list, map[string]any{"bandwidth": bandwidthCaps()})
		if err != nil {
			t.Fatal(err)
		}
		veth, ifb := hostVeth(t, ct), ifbOf(t, ct)
		// ingressRate shapes what enters the container: a tbf on the host
		// veth's egress. egressRate shapes what leaves it: the host veth's
		// ingress is redirected to the ifb device, which has the tbf.
		h1.wantTBF(t, veth, ingressRate)
		h1.wantQdisc(t, veth, "ingress")
		h1.wantTBF(t, ifb, egressRate)
		if err := ct.Check(); err != nil {
			t.Errorf("CHECK: %v", err)
		}
		ct.mustReach(t, peer.IP)

		free := h1.Attach("free")
		unlimited := iperfRate(t, free.NS, peer.IP.String(), iperfPort, false)
		up := iperfRate(t, ct.NS, peer.IP.String(), iperfPort, false)
		down := iperfRate(t, ct.NS, peer.IP.String(), iperfPort, true)
		t.Logf("to a container on h2: unlimited %.1f Mbit/s; limited container sends %.1f Mbit/s (asked %d), receives %.1f Mbit/s (asked %d)",
			unlimited/1e6, up/1e6, egressRate/1_000_000, down/1e6, ingressRate/1_000_000)
		wantLimited(t, "egress (container sends)", up, egressRate)
		wantLimited(t, "ingress (container receives)", down, ingressRate)
		if unlimited < 4*egressRate {
			t.Errorf("the unlimited container reached only %.1f Mbit/s, under 4x the limit: the limit is not what is measured", unlimited/1e6)
		}

		if err := ct.Del(); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		if linkExists(h1.NS, ifb) {
			t.Errorf("ifb device %s is still there after DEL", ifb)
		}
	})

	t.Run("firewall", func(t *testing.T) {
		list := h1.chainList(t, "overlay-fw", `{"type":"firewall","backend":"iptables"}`)
		ct, err := h1.AttachWith("fw", list)
		if err != nil {
			t.Fatal(err)
		}
		h1.wantFirewallRules(t, ct)
		if err := ct.Check(); err != nil {
			t.Errorf("CHECK: %v", err)
		}
		ct.mustReach(t, peer.IP)
		peer.mustReach(t, ct.IP)
		// The rules are in the path, not only present: the container's
		// packets were counted by its ACCEPT rule.
		if n := h1.firewallPackets(t, ct); n == 0 {
			t.Errorf("CNI-FORWARD's rule for %s counted no packets after pings across hosts", ct.IP)
		}
		if err := ct.Del(); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		h1.wantNoRuleFor(t, ct)
	})

	t.Run("tuning", func(t *testing.T) {
		const mac, mtu = "02:42:0a:f4:00:99", 1400
		list := h1.chainList(t, "overlay-tune", fmt.Sprintf(`{"type":"tuning","mtu":%d,"dataDir":%q,
			"sysctl":{"net.core.somaxconn":"1234","net.ipv4.conf.IFNAME.rp_filter":"2"}}`, mtu, h1.TuningDir()))
		// The MAC as podman's --mac-address passes it: in CNI_ARGS.
		ct, err := h1.AttachWithArgs("tune", list, nil, [][2]string{{"IgnoreUnknown", "1"}, {"MAC", mac}})
		if err != nil {
			t.Fatal(err)
		}
		wantSysctl(t, ct.NS, "net/core/somaxconn", "1234")
		wantSysctl(t, ct.NS, "net/ipv4/conf/eth0/rp_filter", "2")
		if got := sysctl(t, h1.NS, "net/core/somaxconn"); got == "1234" {
			t.Errorf("net.core.somaxconn is 1234 in the host namespace too: the plugin wrote outside the container")
		}
		l := containerLink(t, ct.NS, "eth0")
		if l.Address != mac || l.MTU != mtu {
			t.Errorf("container eth0: mac %s mtu %d, want %s and %d", l.Address, l.MTU, mac, mtu)
		}
		if got := ct.Result.Interfaces[containerIface(t, ct)].Mac; got != mac {
			t.Errorf("result names eth0's MAC %s, want %s (the one tuning set)", got, mac)
		}
		if err := ct.Check(); err != nil {
			t.Errorf("CHECK: %v", err)
		}
		// Into the container first: the host must learn the new MAC, not
		// keep the one the veth was created with.
		peer.mustReach(t, ct.IP)
		ct.mustReach(t, peer.IP)
		backup := filepath.Join(h1.TuningDir(), ct.rt.ContainerID+"_eth0.json")
		if _, err := os.Stat(backup); err != nil {
			t.Errorf("tuning's backup of the original settings: %v", err)
		}
		if err := ct.Del(); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		if _, err := os.Stat(backup); err == nil {
			t.Errorf("tuning's backup %s is still there after DEL", backup)
		}
	})

	t.Run("all at once", func(t *testing.T) {
		const hostPort = 18081
		list := h1.chainList(t, "overlay-all",
			`{"type":"portmap","capabilities":{"portMappings":true},"snat":true}`,
			`{"type":"bandwidth","capabilities":{"bandwidth":true}}`,
			`{"type":"firewall","backend":"iptables"}`,
			fmt.Sprintf(`{"type":"tuning","promisc":true,"dataDir":%q,"sysctl":{"net.core.somaxconn":"2048"}}`, h1.TuningDir()))
		caps := map[string]any{
			"portMappings": []map[string]any{{"hostPort": hostPort, "containerPort": iperfPort, "protocol": "tcp"}},
			"bandwidth":    bandwidthCaps(),
		}
		ct, err := h1.AttachWithCaps("all", list, caps)
		if err != nil {
			t.Fatal(err)
		}
		veth, ifb := hostVeth(t, ct), ifbOf(t, ct)
		h1.wantTBF(t, veth, ingressRate)
		h1.wantTBF(t, ifb, egressRate)
		h1.wantFirewallRules(t, ct)
		h1.wantDNAT(t, ct, hostPort, iperfPort)
		wantSysctl(t, ct.NS, "net/core/somaxconn", "2048")
		if l := containerLink(t, ct.NS, "eth0"); l.Promiscuity == 0 {
			t.Errorf("container eth0 is not promiscuous")
		}
		if err := ct.Check(); err != nil {
			t.Errorf("CHECK: %v", err)
		}
		// Through the published port from a container on h2, into the
		// limited container: portmap and bandwidth both in the path.
		iperfServer(t, ct.NS, iperfPort)
		rate := iperfRate(t, peer.NS, h1.IP, hostPort, false)
		t.Logf("h2 container -> %s:%d (published by %s): %.1f Mbit/s (ingress limit %d)", h1.IP, hostPort, ct.IP, rate/1e6, ingressRate/1_000_000)
		wantLimited(t, "ingress through the published port", rate, ingressRate)

		if err := ct.Del(); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		h1.wantNoRuleFor(t, ct)
		if linkExists(h1.NS, ifb) {
			t.Errorf("ifb device %s is still there after DEL", ifb)
		}
		if !hostVethGone(h1.NS, veth) {
			t.Errorf("host veth %s is still there after DEL", veth)
		}
	})
}

// chainList is a conflist for h: the overlay plugin (h's dirs) followed by
// the given plugin configs (JSON objects), cniVersion 1.0.0.
func (h *Host) chainList(t *testing.T, name string, plugins ...string) *libcni.NetworkConfigList {
	t.Helper()
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[
		{"type":"overlay","network":%q,"runDir":%q,"ipam":{"type":"overlay-ipam","dataDir":%q}}`,
		name, networkName, h.RunDir, h.DataDir)
	for _, p := range plugins {
		conf += ",\n" + p
	}
	l, err := libcni.NetworkConfFromBytes([]byte(conf + "]}"))
	if err != nil {
		t.Fatalf("conflist %s: %v\n%s", name, err, conf)
	}
	return l
}

// --- what the plugins leave in the kernel -------------------------------------

// hostVeth is the host end of ct's veth: the overlay plugin's result lists
// it first, with no sandbox.
func hostVeth(t *testing.T, ct *Container) string {
	t.Helper()
	if len(ct.Result.Interfaces) == 0 || ct.Result.Interfaces[0].Sandbox != "" {
		t.Fatalf("result of %s does not start with the host veth: %+v", ct.Name, ct.Result.Interfaces)
	}
	return ct.Result.Interfaces[0].Name
}

// containerIface is the index of ct's eth0 in its result.
func containerIface(t *testing.T, ct *Container) int {
	t.Helper()
	for i, iface := range ct.Result.Interfaces {
		if iface.Sandbox != "" && iface.Name == ct.rt.IfName {
			return i
		}
	}
	t.Fatalf("result of %s has no %s: %+v", ct.Name, ct.rt.IfName, ct.Result.Interfaces)
	return -1
}

// ifbOf is the ifb device the bandwidth plugin added to ct's result (the
// egress limit lives there), after checking the kernel has it as an ifb.
func ifbOf(t *testing.T, ct *Container) string {
	t.Helper()
	for _, iface := range ct.Result.Interfaces {
		if iface.Sandbox == "" && strings.HasPrefix(iface.Name, "bwp") {
			out := run(t, "ip", "-n", ct.Host.NS, "-d", "-j", "link", "show", iface.Name)
			if !strings.Contains(out, `"info_kind":"ifb"`) {
				t.Fatalf("%s on h%d is not an ifb device: %s", iface.Name, ct.Host.N, out)
			}
			return iface.Name
		}
	}
	t.Fatalf("the bandwidth plugin added no ifb device to the result of %s: %+v", ct.Name, ct.Result.Interfaces)
	return ""
}

type qdisc struct {
	Kind    string `json:"kind"`
	Root    bool   `json:"root"`
	Options struct {
		Rate uint64 `json:"rate"` // bytes per second
	} `json:"options"`
}

func (h *Host) qdiscs(t *testing.T, dev string) []qdisc {
	t.Helper()
	out := inNS(t, h.NS, "tc", "-j", "qdisc", "show", "dev", dev)
	var qs []qdisc
	if err := json.Unmarshal([]byte(out), &qs); err != nil {
		t.Fatalf("parse tc -j qdisc show dev %s: %v\n%s", dev, err, out)
	}
	return qs
}

// wantTBF checks dev's root qdisc is a token bucket with rate bits/s.
func (h *Host) wantTBF(t *testing.T, dev string, rate uint64) {
	t.Helper()
	for _, q := range h.qdiscs(t, dev) {
		if q.Kind == "tbf" && q.Root {
			if q.Options.Rate*8 != rate {
				t.Errorf("tbf on %s: rate %d bit/s, want %d", dev, q.Options.Rate*8, rate)
			}
			return
		}
	}
	t.Errorf("no root tbf qdisc on %s: %+v", dev, h.qdiscs(t, dev))
}

func (h *Host) wantQdisc(t *testing.T, dev, kind string) {
	t.Helper()
	for _, q := range h.qdiscs(t, dev) {
		if q.Kind == kind {
			return
		}
	}
	t.Errorf("no %s qdisc on %s: %+v", kind, dev, h.qdiscs(t, dev))
}

// wantFirewallRules checks the firewall plugin's iptables backend: its
// chains, FORWARD's jump to CNI-FORWARD, and the two rules for ct's address.
func (h *Host) wantFirewallRules(t *testing.T, ct *Container) {
	t.Helper()
	fwd := inNS(t, h.NS, "iptables", "-S", "FORWARD")
	if !strings.Contains(fwd, "-j CNI-FORWARD") {
		t.Errorf("FORWARD on h%d does not jump to CNI-FORWARD:\n%s", h.N, fwd)
	}
	cni := inNS(t, h.NS, "iptables", "-S", "CNI-FORWARD")
	inNS(t, h.NS, "iptables", "-S", "CNI-ADMIN") // fails the test if missing
	for _, want := range []string{
		"-j CNI-ADMIN",
		fmt.Sprintf("-s %s/32 -j ACCEPT", ct.IP),
		fmt.Sprintf("-d %s/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", ct.IP),
	} {
		if !strings.Contains(cni, want) {
			t.Errorf("CNI-FORWARD on h%d lacks %q:\n%s", h.N, want, cni)
		}
	}
}

// firewallPackets is the packet counter of CNI-FORWARD's "-s IP" rule.
func (h *Host) firewallPackets(t *testing.T, ct *Container) int {
	t.Helper()
	out := inNS(t, h.NS, "iptables", "-L", "CNI-FORWARD", "-v", "-x", "-n")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// pkts bytes target prot opt in out source destination
		if len(f) >= 9 && f[2] == "ACCEPT" && f[7] == ct.IP.String() {
			var n int
			fmt.Sscan(f[0], &n)
			return n
		}
	}
	t.Fatalf("no ACCEPT rule for source %s in CNI-FORWARD:\n%s", ct.IP, out)
	return 0
}

// wantDNAT checks portmap's nat rule sending hostPort to ct's port.
func (h *Host) wantDNAT(t *testing.T, ct *Container, hostPort, port int) {
	t.Helper()
	nat := inNS(t, h.NS, "iptables-save", "-t", "nat")
	want := fmt.Sprintf("--dport %d -j DNAT --to-destination %s:%d", hostPort, ct.IP, port)
	if !strings.Contains(nat, want) {
		t.Errorf("no portmap rule %q in h%d's nat table:\n%s", want, h.N, nat)
	}
}

// wantNoRuleFor checks no iptables rule of any table names ct's address.
func (h *Host) wantNoRuleFor(t *testing.T, ct *Container) {
	t.Helper()
	ip := regexp.MustCompile(`(^|[^0-9.])` + regexp.QuoteMeta(ct.IP.String()) + `([^0-9]|$)`)
	for _, line := range strings.Split(inNS(t, h.NS, "iptables-save"), "\n") {
		if ip.MatchString(line) {
			t.Errorf("h%d still has a rule for %s after DEL: %s", h.N, ct.IP, line)
		}
	}
}

type link struct {
	Address     string `json:"address"`
	MTU         int    `json:"mtu"`
	Promiscuity int    `json:"promiscuity"`
}

func containerLink(t *testing.T, netns, dev string) link {
	t.Helper()
	out := run(t, "ip", "-n", netns, "-d", "-j", "link", "show", dev)
	var ls []link
	if err := json.Unmarshal([]byte(out), &ls); err != nil || len(ls) != 1 {
		t.Fatalf("parse ip -j link show %s in %s: %v\n%s", dev, netns, err, out)
	}
	return ls[0]
}

// sysctl reads a net sysctl (a path under /proc/sys) as netns sees it.
func sysctl(t *testing.T, netns, key string) string {
	t.Helper()
	return strings.TrimSpace(inNS(t, netns, "cat", "/proc/sys/"+key))
}

func wantSysctl(t *testing.T, netns, key, want string) {
	t.Helper()
	if got := sysctl(t, netns, key); got != want {
		t.Errorf("%s in %s is %s, want %s", key, netns, got, want)
	}
}

// --- throughput ---------------------------------------------------------------

// iperfServer runs an iperf3 server in netns until the test ends; it serves
// one client after another.
func iperfServer(t *testing.T, netns string, port int) {
	t.Helper()
	srv := nsCmd(netns, "iperf3", "-s", "-p", fmt.Sprint(port))
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
}

// iperfRate runs a 2-second iperf3 client in netns against addr:port (the
// server sends with reverse) and returns what the receiver got, in bit/s.
func iperfRate(t *testing.T, netns, addr string, port int, reverse bool) float64 {
	t.Helper()
	args := []string{"iperf3", "-c", addr, "-p", fmt.Sprint(port), "-t", "2", "-J", "--connect-timeout", "2000"}
	if reverse {
		args = append(args, "-R")
	}
	var out []byte
	var err error
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) { // a new server needs a moment to listen
		// iperf3 -J exits 0 on "connection refused" too, with the error
		// in its JSON: that is a retry as well.
		if out, err = nsCmd(netns, args...).Output(); err == nil {
			res.End.SumReceived.BitsPerSecond, res.Error = 0, ""
			if err = json.Unmarshal(out, &res); err == nil && res.Error != "" {
				err = errors.New(res.Error)
			}
			if err == nil {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s", strings.Join(args, " "), netns, err, out)
	}
	if res.End.SumReceived.BitsPerSecond == 0 {
		t.Logf("%s in %s measured nothing:\n%s", strings.Join(args, " "), netns, out)
	}
	return res.End.SumReceived.BitsPerSecond
}

// wantLimited checks a measured rate is held near the asked one: under 1.5x
// it, and above a quarter of it (traffic did flow; it was shaped, not cut).
func wantLimited(t *testing.T, what string, got float64, asked uint64) {
	t.Helper()
	if got > 1.5*float64(asked) || got < 0.25*float64(asked) {
		t.Errorf("%s: %.1f Mbit/s measured, asked %.1f Mbit/s (want between 0.25x and 1.5x)", what, got/1e6, float64(asked)/1e6)
	}
}
