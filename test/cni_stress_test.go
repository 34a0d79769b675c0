package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// The stress tests are not parallel: they load both cores on purpose, and
// the churn's kill window is measured on the machine as it is then.

// TestCNIConcurrentAttach: 50 ADDs at once on one host (as a node starting
// 50 pods) give 50 distinct addresses of the host's subnet, each reserved
// once and reachable from a container on another host, with one host veth
// each on the bridge; 50 DELs at once then leave no reservation, veth or
// cached result behind.
func TestCNIConcurrentAttach(t *testing.T) {
	const n = 50
	c := newCluster(t, 2)
	c.SetNetwork()
	c.startAll()
	h1, h2 := c.Hosts[0], c.Hosts[1]
	hf := h1.HostFile()
	probe := h2.Attach("probe")
	list := h1.confList()
	cts := make([]*Container, n)
	for i := range cts {
		cts[i] = h1.newContainer(fmt.Sprintf("c%02d", i), list, nil, nil)
	}

	ctx, cancel := cniCtx()
	defer cancel()
	began := time.Now()
	errs := parallel(n, n, func(i int) error { return cts[i].add(ctx) })
	t.Logf("%d concurrent ADDs took %s", n, time.Since(began).Round(time.Millisecond))
	for _, err := range errs {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d concurrent ADDs failed", len(errs), n)
	}

	byIP := map[netip.Addr]*Container{}
	for _, ct := range cts {
		if other, dup := byIP[ct.IP]; dup {
			t.Errorf("%s and %s both got %s", other.Name, ct.Name, ct.IP)
		}
		byIP[ct.IP] = ct
		if !hf.Subnet.Contains(ct.IP) || ct.IP == hf.Gateway {
			t.Errorf("%s got %s, which is not a container address of h1's subnet %s", ct.Name, ct.IP, hf.Subnet)
		}
	}
	held := h1.storeIPs()
	if len(held) != n {
		t.Errorf("IPAM store holds %d addresses, want the %d handed out: %v", len(held), n, sortedKeys(held))
	}
	for ip, id := range held {
		if ct := byIP[ip]; ct == nil || ct.rt.ContainerID != id {
			t.Errorf("IPAM store reserves %s for %q, which no ADD was given", ip, id)
		}
	}
	for _, sub := range []string{"ips", "attachments"} {
		if files := h1.storeFiles(sub); len(files) != n {
			t.Errorf("IPAM store %s/%s has %d files after %d ADDs: %v", h1.storeDir(), sub, len(files), n, files)
		}
	}

	// Each container's eth0 holds its address and its peer is on the bridge.
	veths := h1.hostVeths()
	ports := 0
	for _, v := range veths {
		if v.Master == hf.Bridge {
			ports++
		}
	}
	for _, ct := range cts {
		l, ok, err := containerIf(ct.NS)
		switch {
		case err != nil:
			t.Fatal(err)
		case !ok:
			t.Errorf("%s has no eth0 after ADD", ct.Name)
		case len(l.v4()) != 1 || l.v4()[0] != netip.PrefixFrom(ct.IP, hf.Subnet.Bits()):
			t.Errorf("%s's eth0 holds %v, want %s/%d", ct.Name, l.v4(), ct.IP, hf.Subnet.Bits())
		case veths[l.Peer].Master != hf.Bridge:
			t.Errorf("%s's host veth (ifindex %d) is not on bridge %s: %+v", ct.Name, l.Peer, hf.Bridge, veths[l.Peer])
		}
	}
	if ports != n || len(veths) != n {
		t.Errorf("h1 has %d host veths, %d of them on bridge %s; want %d on the bridge", len(veths), ports, hf.Bridge, n)
	}

	// From another host, every address answers.
	began = time.Now()
	for _, err := range parallel(n, 16, func(i int) error { return probe.reach(cts[i].IP, 30*time.Second) }) {
		t.Error(err)
	}
	t.Logf("%d addresses reached from h2 in %s", n, time.Since(began).Round(time.Millisecond))

	began = time.Now()
	dels := parallel(n, n, func(i int) error {
		if err := cts[i].Del(); err != nil {
			return fmt.Errorf("DEL %s: %w", cts[i].Name, err)
		}
		return nil
	})
	t.Logf("%d concurrent DELs took %s", n, time.Since(began).Round(time.Millisecond))
	for _, err := range dels {
		t.Error(err)
	}
	for _, sub := range []string{"ips", "attachments"} {
		if left := h1.storeFiles(sub); len(left) != 0 {
			t.Errorf("IPAM store %s/%s holds %v after every DEL", h1.storeDir(), sub, left)
		}
	}
	// DEL takes the host veth off the bridge before it answers; the pair
	// itself is deleted just after, by a detached reaper (the kernel takes
	// 15-25 ms per pair).
	if ports := h1.bridgePorts(hf.Bridge); len(ports) != 0 {
		t.Errorf("bridge %s has ports %v after every DEL", hf.Bridge, ports)
	}
	waitFor(t, 10*time.Second, "every host veth deleted after DEL", func() bool { return len(h1.hostVeths()) == 0 })
	if cached := cachedAttachments(t, h1.cacheDir); len(cached) != 0 {
		t.Errorf("libcni cache still holds %v after every DEL", cached)
	}
	for _, ct := range cts {
		if linkExists(ct.NS, "eth0") {
			t.Errorf("%s still has eth0 after DEL", ct.Name)
		}
	}
}

// Churn parameters: ADD attempts in all, spread over workers that each own
// a share of the container namespaces; the first churnWarmup ADDs of each
// worker are never killed and time the ADD; after them every killEvery-th
// ADD of a worker gets a deadline at a random point of that time.
const (
	churnAdds    = 300
	churnWorkers = 4
	churnSlots   = 20
	churnWarmup  = 10
	killEvery    = 9
)

// churnSlot is one container namespace of the churn and the attachment it
// holds (nil while it holds none).
type churnSlot struct {
	ns string
	ct *Container
}

// churn is the state the workers share.
type churn struct {
	h    *Host
	list *libcni.NetworkConfigList

	mu       sync.Mutex
	seq      int
	made     []string        // every namespace created, removed at cleanup
	lost     []string        // namespaces of killed ADDs, kept as they were
	warmup   []time.Duration // durations of the warm-up ADDs
	adds     int             // successful ADDs
	dels     int
	attempts int // ADDs given a deadline inside their run
	killed   int // of those, killed mid-ADD (the plugin got SIGKILL)
	late     int // of the killed, those that had printed their result
	early    int // deadline passed before the plugin started
	outran   int // ADD finished before its deadline
	errs     []error
}

// newNS creates a container namespace with loopback up. It may run on any
// goroutine: errors are returned, and the cleanup that removes the
// namespace is the churn's.
func (ch *churn) newNS() (string, error) {
	ch.mu.Lock()
	ch.seq++
	name := fmt.Sprintf("%s-h%d-n%03d", ch.h.c.Prefix, ch.h.N, ch.seq)
	ch.made = append(ch.made, name)
	ch.mu.Unlock()
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return "", fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return "", fmt.Errorf("ip -n %s link set lo up: %v: %s", name, err, out)
	}
	return name, nil
}

func (ch *churn) fail(err error) {
	ch.mu.Lock()
	ch.errs = append(ch.errs, err)
	ch.mu.Unlock()
}

// run makes adds ADD attempts on slots, each on a free slot picked at
// random; picking a busy slot DELs its attachment instead, so ADDs and
// DELs interleave and whatever is attached at the end survives. window > 0
// arms the kills.
func (ch *churn) run(slots []*churnSlot, adds int, window time.Duration, rng *rand.Rand) {
	for n := 0; n < adds; {
		s := slots[rng.IntN(len(slots))]
		if s.ct != nil {
			if err := s.ct.Del(); err != nil {
				ch.fail(fmt.Errorf("DEL %s: %w", s.ct.Name, err))
			}
			s.ct = nil
			ch.mu.Lock()
			ch.dels++
			ch.mu.Unlock()
			continue
		}
		n++
		if err := ch.add(s, window > 0 && n%killEvery == 0, window, rng); err != nil {
			ch.fail(err)
			return
		}
	}
}

// add runs one ADD on s, with a deadline inside its run if kill. A killed
// ADD is treated as a runtime that lost track of it would: no DEL, the
// namespace is left as the kill left it, and s gets a fresh one.
func (ch *churn) add(s *churnSlot, kill bool, window time.Duration, rng *rand.Rand) error {
	ch.mu.Lock()
	ch.seq++
	id := fmt.Sprintf("churn-%03d", ch.seq)
	ch.mu.Unlock()
	ct := &Container{Host: ch.h, Name: id, NS: s.ns, list: ch.list,
		rt: &libcni.RuntimeConf{ContainerID: id, NetNS: "/var/run/netns/" + s.ns, IfName: "eth0"}}
	ctx, cancel := cniCtx()
	if kill {
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), time.Duration(rng.Int64N(int64(window))))
	}
	began := time.Now()
	err := ct.add(ctx)
	took := time.Since(began)
	expired := errors.Is(ctx.Err(), context.DeadlineExceeded)
	cancel()

	ch.mu.Lock()
	defer ch.mu.Unlock()
	if kill {
		ch.attempts++
	}
	switch {
	case err == nil:
		s.ct = ct
		ch.adds++
		if kill {
			ch.outran++
		}
		if window == 0 {
			ch.warmup = append(ch.warmup, took)
		}
		return nil
	case kill && expired:
		// libcni reports how the plugin ended in the error's message:
		// the SIGKILL of exec.CommandContext, or the context's own error
		// when the deadline passed before the plugin was started. A plugin
		// killed after it printed its result (but before it exited) leaves
		// libcni decoding that result as an error: code 0, no message.
		var ce *types.Error
		switch {
		case strings.Contains(err.Error(), "signal: killed"):
			ch.killed++
		case errors.As(err, &ce) && ce.Code == 0 && ce.Msg == "":
			ch.killed++
			ch.late++
		case strings.Contains(err.Error(), context.DeadlineExceeded.Error()):
			ch.early++
		default:
			return fmt.Errorf("ADD %s with an expired deadline failed in an unexpected way: %w", id, err)
		}
		ch.lost = append(ch.lost, s.ns)
		ch.mu.Unlock()
		ns, err := ch.newNS()
		ch.mu.Lock()
		s.ns = ns
		return err
	default:
		return fmt.Errorf("ADD %s failed before any deadline: %w", id, err)
	}
}

// TestCNIChurnWithKills: 300 ADDs interleaved with DELs over 20 container
// namespaces, with about one ADD in ten SIGKILLed at a random point by its
// libcni context and then forgotten (no DEL, as a runtime that crashed).
// GC with the surviving attachments must then leave exactly the survivors:
// their reservations and no other, distinct addresses on their interfaces,
// and one host veth each on the bridge, no orphan.
func TestCNIChurnWithKills(t *testing.T) {
	c := newCluster(t, 1)
	c.SetNetwork()
	c.startAll()
	h := c.Hosts[0]
	hf := h.HostFile()
	ch := &churn{h: h, list: h.confListOf(networkName, "1.1.0")}
	t.Cleanup(func() {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		for _, name := range ch.made {
			if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
				t.Errorf("cleanup: ip netns del %s: %v %s", name, err, out)
			}
		}
	})
	slots := make([]*churnSlot, churnSlots)
	for i := range slots {
		ns, err := ch.newNS()
		if err != nil {
			t.Fatal(err)
		}
		slots[i] = &churnSlot{ns: ns}
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("churn seed %d", seed)
	rngs := make([]*rand.Rand, churnWorkers)
	for w := range rngs {
		rngs[w] = rand.New(rand.NewPCG(seed, uint64(w)))
	}
	phase := func(adds int, window time.Duration) {
		var wg sync.WaitGroup
		per := churnSlots / churnWorkers
		for w := range churnWorkers {
			wg.Go(func() { ch.run(slots[w*per:(w+1)*per], adds, window, rngs[w]) })
		}
		wg.Wait()
		for _, err := range ch.errs {
			t.Error(err)
		}
		if len(ch.errs) > 0 {
			t.FailNow()
		}
	}

	began := time.Now()
	phase(churnWarmup, 0)
	durations := slices.Sorted(slices.Values(ch.warmup))
	window := durations[len(durations)/2]
	t.Logf("warm-up: %d ADDs under churn took %s (min) / %s (median) / %s (max); kill window [0, %s)",
		len(durations), durations[0], window, durations[len(durations)-1], window)
	phase(churnAdds/churnWorkers-churnWarmup, window)
	waitPluginsGone(t, c.Bin)
	t.Logf("churn: %d ADD attempts, %d succeeded, %d DELs in %s; %d ADDs given a deadline: %d killed mid-ADD (%d of them after printing their result), %d before the plugin started, %d finished first",
		churnAdds, ch.adds, ch.dels, time.Since(began).Round(time.Millisecond), ch.attempts, ch.killed, ch.late, ch.early, ch.outran)
	if ch.killed < 5 {
		t.Fatalf("only %d of %d ADDs were killed mid-ADD: the kill window %s does not hit the ADD", ch.killed, ch.attempts, window)
	}

	var survivors []*Container
	valid := []types.GCAttachment{} // never nil: libcni would send null
	for _, s := range slots {
		if s.ct != nil {
			survivors = append(survivors, s.ct)
			valid = append(valid, types.GCAttachment{ContainerID: s.ct.rt.ContainerID, IfName: s.ct.rt.IfName})
		}
	}
	before := len(h.storeIPs())
	t.Logf("before GC: %d survivors, %d reservations, %d host veths", len(survivors), before, len(h.hostVeths()))
	if before <= len(survivors) {
		t.Fatalf("the killed ADDs left no reservation behind (%d reservations, %d survivors): GC would have nothing to collect", before, len(survivors))
	}
	err := h.cniIn(h.cacheDir, func(cni *libcni.CNIConfig) error {
		ctx, cancel := cniCtx()
		defer cancel()
		return cni.GCNetworkList(ctx, ch.list, &libcni.GCArgs{ValidAttachments: valid})
	})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}

	// The store holds the survivors' addresses, each once, and nothing else.
	byIP := map[netip.Addr]*Container{}
	for _, s := range survivors {
		if o := byIP[s.IP]; o != nil {
			t.Errorf("duplicate address: survivors %s and %s both hold %s", o.Name, s.Name, s.IP)
		}
		byIP[s.IP] = s
	}
	held := h.storeIPs()
	for _, ip := range sortedKeys(held) {
		if s := byIP[ip]; s == nil || s.rt.ContainerID != held[ip] {
			t.Errorf("leaked allocation: after GC the store reserves %s for %q, which is no survivor's", ip, held[ip])
		}
	}
	for ip, s := range byIP {
		if held[ip] != s.rt.ContainerID {
			t.Errorf("GC released survivor %s's address %s (store: %q)", s.Name, ip, held[ip])
		}
	}
	// GC also sweeps index files no reservation confirms and temp files.
	for _, sub := range []string{"ips", "attachments"} {
		if files := h.storeFiles(sub); len(files) != len(survivors) {
			t.Errorf("IPAM store %s/%s has %d files after GC, want one per survivor (%d): %v", h.storeDir(), sub, len(files), len(survivors), files)
		}
	}

	// Each survivor's eth0 holds its address; its host end is on the bridge.
	want := map[int]*Container{}
	for _, s := range survivors {
		l, ok, err := containerIf(s.NS)
		switch {
		case err != nil:
			t.Fatal(err)
		case !ok:
			t.Errorf("survivor %s has no eth0 in %s", s.Name, s.NS)
			continue
		case len(l.v4()) != 1 || l.v4()[0] != netip.PrefixFrom(s.IP, hf.Subnet.Bits()):
			t.Errorf("survivor %s's eth0 holds %v, want %s/%d", s.Name, l.v4(), s.IP, hf.Subnet.Bits())
		}
		want[l.Peer] = s
		if err := s.Check(); err != nil {
			t.Errorf("CHECK of survivor %s after GC: %v", s.Name, err)
		}
	}
	veths := h.hostVeths()
	var wantPorts []string
	for idx, s := range want {
		v, ok := veths[idx]
		if !ok || v.Master != hf.Bridge {
			t.Errorf("survivor %s's host veth (ifindex %d) is not on bridge %s: %+v", s.Name, idx, hf.Bridge, v)
		}
		wantPorts = append(wantPorts, v.Name)
	}
	// Every other host veth is an orphan. Its container end sits in the
	// namespace of a killed ADD, perhaps holding an address GC has given
	// back to the store, which the next ADD may hand out again.
	ends := map[int]string{}
	for _, ns := range ch.lost {
		l, ok, err := containerIf(ns)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			continue
		}
		end := fmt.Sprintf("container end in %s holds %v", ns[len(c.Prefix)+1:], l.v4())
		for _, a := range l.v4() {
			if s := byIP[a.Addr()]; s != nil {
				t.Errorf("duplicate address: %s is on survivor %s and on eth0 in %s, left by a killed ADD", a.Addr(), s.Name, ns)
			} else if _, reserved := held[a.Addr()]; !reserved {
				end += fmt.Sprintf(" (%s is free in the store)", a.Addr())
			}
		}
		ends[l.Peer] = end
	}
	var onBridge, offBridge []string
	for idx, v := range veths {
		if want[idx] != nil {
			continue
		}
		end, ok := ends[idx]
		if !ok {
			end = "container end not found"
		}
		if v.Master == hf.Bridge {
			onBridge = append(onBridge, v.Name+": "+end)
		} else {
			offBridge = append(offBridge, fmt.Sprintf("%s (master %q): %s", v.Name, v.Master, end))
		}
	}
	slices.Sort(onBridge)
	slices.Sort(offBridge)
	slices.Sort(wantPorts)
	ports := h.bridgePorts(hf.Bridge)
	slices.Sort(ports)
	if len(onBridge) > 0 || !slices.Equal(ports, wantPorts) {
		t.Errorf("orphan veths on the bridge: after GC bridge %s has %d ports, want the %d survivors' host veths; %d ports belong to no survivor: %v",
			hf.Bridge, len(ports), len(survivors), len(onBridge), onBridge)
	}
	if len(offBridge) > 0 {
		t.Errorf("orphan veths off the bridge: after GC h1 has %d host veths of no survivor that are not bridge ports (killed between creating the pair and enslaving it): %v",
			len(offBridge), offBridge)
	}
	t.Logf("after GC: %d survivors, %d reservations, %d host veths, %d namespaces of killed ADDs (%d still with an eth0)",
		len(survivors), len(held), len(veths), len(ch.lost), len(ends))
}
