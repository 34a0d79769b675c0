package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// --- traffic -------------------------------------------------------------------

// pingRun is a 100 pps ping between two containers for the length of a fault.
type pingRun struct {
	p *Proc
}

// startPing pings ip from ct at 100 packets a second for d.
func startPing(t *testing.T, ct *Container, ip netip.Addr, d time.Duration) *pingRun {
	t.Helper()
	count := int(d / (10 * time.Millisecond))
	log := filepath.Join(ct.Host.c.Dir, fmt.Sprintf("ping-%s-%s.log", ct.Name, ip))
	return &pingRun{p: startProc(t, "ping "+ct.Name, ct.NS, log,
		"ping", "-n", "-q", "-i", "0.01", "-W", "1", "-c", strconv.Itoa(count), ip.String())}
}

var pingStats = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// lost waits for the ping to end and returns how many of how many were lost.
func (r *pingRun) lost(t *testing.T) (lost, sent int) {
	t.Helper()
	if _, ok := r.p.WaitExit(5 * time.Minute); !ok {
		t.Fatal("ping did not end")
	}
	m := pingStats.FindStringSubmatch(r.p.Output())
	if m == nil {
		t.Fatalf("no ping summary in:\n%s", r.p.Output())
	}
	sent, _ = strconv.Atoi(m[1])
	recv, _ := strconv.Atoi(m[2])
	return sent - recv, sent
}

// requireNoLoss fails the test when the ping lost anything.
func (r *pingRun) requireNoLoss(t *testing.T, during string) {
	t.Helper()
	lost, sent := r.lost(t)
	t.Logf("%s: %d of %d pings lost", during, lost, sent)
	if lost != 0 {
		t.Errorf("%s: lost %d of %d pings at 100 pps, want 0", during, lost, sent)
	}
}

// subnets returns each host's subnet from its host file.
func (c *Cluster) subnets() []netip.Prefix {
	var out []netip.Prefix
	for _, h := range c.Hosts {
		out = append(out, h.HostFile().Subnet)
	}
	return out
}

func (c *Cluster) requireSubnets(want []netip.Prefix) {
	c.t.Helper()
	for i, s := range c.subnets() {
		if s != want[i] {
			c.t.Errorf("h%d's subnet changed from %s to %s", i+1, want[i], s)
		}
	}
}

// waitLeaseHeld waits until h's overlayd holds its lease and vouches for
// its host file again (a fresh ready stamp written after the last loss).
func (h *Host) waitLeaseHeld() {
	t := h.c.t
	t.Helper()
	path := hostfile.ReadyPath(h.RunDir, networkName)
	waitFor(t, readyTimeout, fmt.Sprintf("h%d to hold its lease again", h.N), func() bool {
		return hostfile.CheckReady(path, time.Now()) == nil
	})
}

// logCount counts lines of p's log containing s.
func logCount(p *Proc, s string) int { return strings.Count(p.Output(), s) }

// --- faults --------------------------------------------------------------------

// TestFaultEtcdOutage: etcd stopped for 60s under 100 pps cross-host ping:
// nothing is lost, containers start on every host during the outage, and
// when etcd returns the leases are held with the same subnets, without
// restarting overlayd.
func TestFaultEtcdOutage(t *testing.T) {
	t.Parallel()
	c, a, b := connectedPair(t, 1)
	h1, h2 := c.Hosts[0], c.Hosts[1]
	before := c.subnets()
	daemons := []*Proc{h1.Daemon, h2.Daemon}

	const outage = 60 * time.Second
	ping := startPing(t, a, b.IP, outage+10*time.Second)
	time.Sleep(2 * time.Second)
	c.Etcd.Kill()
	began := time.Now()
	// Containers start while etcd is down: the plugins need only the host file.
	d1, d2 := h1.Attach("d1"), h2.Attach("d2")
	d1.mustReach(t, d2.IP)
	d2.mustReach(t, a.IP)
	time.Sleep(outage - time.Since(began))
	c.startEtcd()
	back := time.Now()
	for _, h := range c.Hosts {
		h.waitLeaseHeld()
	}
	t.Logf("leases held again on every host %s after etcd returned", time.Since(back).Round(time.Millisecond))
	ping.requireNoLoss(t, "etcd down for 60s")
	for i, d := range daemons {
		if c.Hosts[i].Daemon != d || d.Exited() {
			t.Errorf("overlayd on h%d was restarted or exited", i+1)
		}
	}
	c.requireSubnets(before)
	if got := len(c.leases()); got != 2 {
		t.Errorf("%d leases in etcd after the outage, want 2", got)
	}
	for i, h := range c.Hosts {
		t.Logf("h%d: %d lease losses logged during the outage", i+1, logCount(h.Daemon, "lease lost"))
	}
	a.mustReach(t, d2.IP)
}

// TestFaultEtcdLeaderKilled: the leader of a 3-member etcd killed under
// traffic: nothing is lost, no lease is lost, no subnet changes hands.
func TestFaultEtcdLeaderKilled(t *testing.T) {
	c, a, b := connectedPair(t, 3)
	h2 := c.Hosts[1]
	before := c.subnets()

	var leader *EtcdMember
	waitFor(t, 10*time.Second, "an etcd leader", func() bool { leader = c.Leader(); return leader != nil })
	ping := startPing(t, a, b.IP, 15*time.Second)
	time.Sleep(2 * time.Second)
	leader.Proc.Kill()
	killed := time.Now()
	waitFor(t, 15*time.Second, "a new etcd leader", func() bool {
		l := c.Leader()
		return l != nil && l != leader
	})
	t.Logf("new leader %s elected %s after %s was killed", c.Leader().Name, time.Since(killed).Round(time.Millisecond), leader.Name)
	ping.requireNoLoss(t, "etcd leader killed")
	// A new container starts and reaches across hosts with the leader gone.
	d := h2.Attach("d")
	a.mustReach(t, d.IP)
	for i, h := range c.Hosts {
		if n := logCount(h.Daemon, "lease lost"); n != 0 {
			t.Errorf("h%d lost its lease %d times when the etcd leader died", i+1, n)
		}
	}
	c.requireSubnets(before)
}

// TestFaultDaemonRestarts: overlayd stopped with SIGTERM, killed with
// SIGKILL, and replaced by another binary (an upgrade) under 100 pps ping:
// nothing is lost and the subnet stays.
func TestFaultDaemonRestarts(t *testing.T) {
	t.Parallel()
	c, a, b := connectedPair(t, 1)
	before := c.subnets()
	// The upgrade binary: a copy of overlayd at another path, as a package
	// upgrade replaces the file the unit starts.
	upgraded := filepath.Join(c.Dir, "overlayd-upgraded")
	data, err := os.ReadFile(filepath.Join(c.Bin, "overlayd"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(upgraded, data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		stop func(*Proc)
		bin  string
	}{
		{"SIGTERM and restart", func(p *Proc) { p.Stop(10 * time.Second) }, ""},
		{"SIGKILL and restart", (*Proc).Kill, ""},
		{"upgrade to a new binary", func(p *Proc) { p.Stop(10 * time.Second) }, upgraded},
	} {
		ping := startPing(t, a, b.IP, 8*time.Second)
		time.Sleep(time.Second)
		began := time.Now()
		for _, h := range c.Hosts {
			step.stop(h.Daemon)
			if step.bin != "" {
				h.StartBinary(step.bin)
			} else {
				h.Start()
			}
		}
		for _, h := range c.Hosts {
			h.WaitStampedBy(h.Daemon)
		}
		t.Logf("%s: both hosts ready again %s after the stop", step.name, time.Since(began).Round(time.Millisecond))
		ping.requireNoLoss(t, step.name)
		c.requireSubnets(before)
	}
	a.mustReach(t, b.IP)
}

// TestFaultTenHostsAtOnce: 10 hosts started at the same moment, with etcd
// compacting its history all the while: every host ends with all 9 peers.
func TestFaultTenHostsAtOnce(t *testing.T) {
	c := newCluster(t, 10)
	c.SetNetwork()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var compactions int
	wg.Go(func() { compactions = c.compactUntil(stop) })
	began := time.Now()
	for _, h := range c.Hosts {
		h.Start()
	}
	const bound = 20 * time.Second
	waitFor(t, bound, "every host to program its 9 peers", func() bool {
		for _, h := range c.Hosts {
			if len(h.vxlanRoutes()) != 9 {
				return false
			}
		}
		return true
	})
	t.Logf("10 hosts started at once: all 9 peers on every host after %s", time.Since(began).Round(time.Millisecond))
	seen := map[netip.Prefix]int{}
	for _, h := range c.Hosts {
		h.WaitReady()
		seen[h.HostFile().Subnet]++
	}
	if len(seen) != 10 {
		t.Fatalf("10 hosts hold %d distinct subnets: %v", len(seen), seen)
	}
	// Churn after compaction: one host leaves and returns, the rest follow.
	h := c.Hosts[4]
	h.Daemon.Stop(10 * time.Second)
	if _, err := c.Ctl("lease", "release", h.HostFile().Subnet.String(), "--network", networkName); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the others to drop h5", func() bool { return len(c.Hosts[0].vxlanRoutes()) == 8 })
	h.Start()
	waitFor(t, 10*time.Second, "the others to program h5 again", func() bool {
		for _, o := range c.Hosts {
			if len(o.vxlanRoutes()) != 9 {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
	t.Logf("%d compactions of etcd during the start and the churn", compactions)
	if compactions == 0 {
		t.Error("etcd was never compacted during the test")
	}
}

// compactUntil compacts etcd's history to its current revision every
// 50ms, through the JSON gateway, until stop is closed; it returns how many
// compactions etcd accepted.
func (c *Cluster) compactUntil(stop <-chan struct{}) int {
	rev := regexp.MustCompile(`"revision":"(\d+)"`)
	done := 0
	for {
		select {
		case <-stop:
			return done
		case <-time.After(50 * time.Millisecond):
		}
		out, err := nsCmd(c.Fabric, "curl", "-sS", "-X", "POST", etcdURL+"/v3/kv/range", "-d", `{"key":"AA=="}`).Output()
		m := rev.FindSubmatch(out)
		if err != nil || m == nil {
			continue
		}
		out, err = nsCmd(c.Fabric, "curl", "-sS", "-X", "POST", etcdURL+"/v3/kv/compaction", "-d", `{"revision":"`+string(m[1])+`"}`).Output()
		if err == nil && !strings.Contains(string(out), "error") {
			done++
		}
	}
}

// TestFaultHostDeathAndReturn: a host killed is withdrawn everywhere within
// its lease TTL; its subnet stays quarantined (a new host cannot take it);
// when it returns within the quarantine it gets the same subnet and its
// containers work again.
func TestFaultHostDeathAndReturn(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	// Two subnets only: one each for h1 and h2, none for h3 while h2's is
	// quarantined.
	c.SetNetwork("--cidr", "10.244.0.0/23", "--subnet-len", "24")
	const ttl = 4 * time.Second
	h1, h2, h3 := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	for _, h := range []*Host{h1, h2} {
		h.Start("--lease-ttl", ttl.String())
	}
	h1.WaitReady()
	h2.WaitReady()
	a, b := h1.Attach("a"), h2.Attach("b")
	a.mustReach(t, b.IP)
	sub2 := h2.HostFile().Subnet

	h2.Daemon.Kill()
	killed := time.Now()
	waitFor(t, ttl+3*time.Second, "h1 to withdraw h2's route", func() bool { return len(h1.vxlanRoutes()) == 0 })
	t.Logf("h2 withdrawn on h1 %s after SIGKILL (lease TTL %s)", time.Since(killed).Round(time.Millisecond), ttl)

	p := h3.Start("--lease-ttl", ttl.String())
	if code, ok := p.WaitExit(30 * time.Second); !ok || code == 0 {
		t.Fatalf("h3 started in a network whose only free subnet is quarantined (exit %d, ended %v):\n%s", code, ok, p.Output())
	}
	if !strings.Contains(p.Output(), "quarantined") {
		t.Errorf("h3's refusal does not mention the quarantine: %s", lastLine(p.Output()))
	}

	h2.Start("--lease-ttl", ttl.String())
	h2.WaitStampedBy(h2.Daemon)
	if got := h2.HostFile().Subnet; got != sub2 {
		t.Fatalf("h2 came back with %s, want its quarantined %s", got, sub2)
	}
	a.mustReach(t, b.IP)
	b.mustReach(t, a.IP)
}

// TestFaultDuplicateDaemons: a second overlayd on the same state dir, and a
// host whose host ID was cloned from another: each refuses with one line,
// and the first keeps working.
func TestFaultDuplicateDaemons(t *testing.T) {
	c := newCluster(t, 2)
	c.SetNetwork()
	h1, h2 := c.Hosts[0], c.Hosts[1]
	// A short TTL: a clone is refused once the key it collides with has
	// been renewed for longer than a TTL (a dead holder's would expire).
	h1.Start("--lease-ttl", "4s")
	h1.WaitReady()
	first := h1.Daemon
	a := h1.Attach("a")

	second := h1.Start()
	code, ok := second.WaitExit(30 * time.Second)
	if !ok || code == 0 || !strings.Contains(lastLine(second.Output()), "another overlayd already serves network default") {
		t.Fatalf("second overlayd on one state dir: exit %d (ended %v), last line %q", code, ok, lastLine(second.Output()))
	}
	h1.Daemon = first

	id, err := os.ReadFile(filepath.Join(h1.StateDir, "host-id"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h2.StateDir, "host-id"), id, 0o644); err != nil {
		t.Fatal(err)
	}
	clone := h2.Start("--lease-ttl", "4s")
	code, ok = clone.WaitExit(30 * time.Second)
	line := lastLine(clone.Output())
	if !ok || code == 0 || !strings.Contains(line, "cloned") || !strings.Contains(line, filepath.Join(h2.StateDir, "host-id")) {
		t.Fatalf("cloned host: exit %d (ended %v), last line %q; want a refusal naming %s", code, ok, line, filepath.Join(h2.StateDir, "host-id"))
	}
	if first.Exited() {
		t.Fatalf("the first overlayd exited:\n%s", first.Output())
	}
	h1.WaitStampedBy(first)
	if err := hostfile.CheckReady(hostfile.ReadyPath(h1.RunDir, networkName), time.Now()); err != nil {
		t.Fatal(err)
	}
	if ls := c.leases(); len(ls) != 1 || ls[0].PublicIP != h1.IP {
		t.Fatalf("leases = %+v, want only h1's", ls)
	}
	b := h1.Attach("b")
	a.mustReach(t, b.IP)
}
