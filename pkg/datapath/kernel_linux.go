package datapath

import (
	"context"
	"net/netip"
	"sync"
	"time"
)

// Kernel is the datapath of the calling process's network namespace, as
// the agent uses it (pkg/agent.Datapath).
//
// It remembers what each successful peer sync left on a target, so that
// the next sync (a lease came or went) diffs against that instead of
// dumping every route, neighbour and FDB entry again: with 10 000 peers a
// dump is 30 000 entries, and a burst of hosts joining means a sync after
// every few of them. What it remembers is dropped, and the next sync
// dumps, when Watch sees a kernel change that may concern them (an event
// about the VXLAN device or the underlay, a neighbour or FDB entry there,
// a route anywhere that is not our own write, a lost subscription), when a
// sync fails in part, when the target's devices change, and once the last
// dump is verifyEvery old, so drift nothing reported is still found.
type Kernel struct {
	verifyEvery time.Duration

	mu    sync.Mutex
	known map[string]knownPeers // by VXLAN device name
	// gen counts forgets: a sync that recalled before a forget must not
	// store what it saw after it.
	gen uint64
	// links are the indices of every synced target's VXLAN device and
	// underlay: events on them concern what is remembered.
	links map[int]bool
}

// knownPeers is what a target holds, as of a dump at dumped and the
// successful syncs since: the entries of peers (settledTarget), the
// wanted state of the last sync, which the agent keeps anyway, so
// remembering costs no copy of 30 000 entries.
type knownPeers struct {
	target  PeerTarget
	links   targetLinks
	peers   []Peer
	foreign map[netip.Prefix]bool
	dumped  time.Time
}

// NewKernel returns a Kernel that dumps a target's entries again at least
// every verifyEvery (0: on every sync).
func NewKernel(verifyEvery time.Duration) *Kernel {
	return &Kernel{verifyEvery: verifyEvery, known: map[string]knownPeers{}, links: map[int]bool{}}
}

func (*Kernel) FindUnderlay(ifaceOrIP string) (Underlay, error) { return FindUnderlay(ifaceOrIP) }

func (*Kernel) EnsureVXLAN(spec VXLANSpec) (VXLANResult, error) { return ReconcileVXLAN(spec) }

func (*Kernel) EnsureBridge(spec BridgeSpec) error { return EnsureBridge(spec) }

// Census reads the target from the kernel, not from what syncs left: it
// answers "what does the kernel hold", drift included.
func (*Kernel) Census(t PeerTarget, peers []Peer) (Census, error) { return TakeCensus(t, peers) }

func (*Kernel) TxChecksumOffload(device string) (bool, error) { return TxChecksumOffload(device) }

func (*Kernel) SetTxChecksumOffload(device string, on bool) error {
	return SetTxChecksumOffload(device, on)
}

// SyncPeers is SyncPeersTarget, against what the last syncs left when
// that is still known.
func (k *Kernel) SyncPeers(t PeerTarget, peers []Peer) (Plan, error) {
	known, gen, ok := k.recall(t)
	if ok && time.Since(known.dumped) >= k.verifyEvery {
		ok = false
	}
	var prior *knownPeers
	if ok {
		prior = &known
	}
	res := syncPeers(t, peers, prior)
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, idx := range []int{res.links.vxlan.idx, res.links.underlay.idx} {
		if idx != 0 {
			k.links[idx] = true
		}
	}
	if res.settled == nil || k.gen != gen {
		delete(k.known, t.Device)
	} else {
		k.known[t.Device] = *res.settled
	}
	return res.plan, res.err
}

func (k *Kernel) recall(t PeerTarget) (knownPeers, uint64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	known, ok := k.known[t.Device]
	return known, k.gen, ok && known.target == t
}

// stale forgets what is remembered when an event on link index (0: any
// link) may have changed it: the link is a remembered target's VXLAN
// device or underlay. A container's veth coming and going on the bridge
// changes none of it.
func (k *Kernel) stale(index int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if index == 0 || k.links[index] {
		clear(k.known)
		k.gen++
	}
}

func (*Kernel) RemoveOrphans(network string, t PeerTarget) ([]string, error) {
	return RemoveOrphans(network, t)
}

func (*Kernel) OtherRoutes(exclude string) ([]netip.Prefix, error) { return OtherRoutes(exclude) }

func (*Kernel) OwnedLinks(network string) ([]OwnedLink, error) { return OwnedLinks(network) }

func (*Kernel) EnableIPv4Forwarding() error { return EnableIPv4Forwarding() }

func (*Kernel) IPv4Forwarding() (bool, error) { return IPv4Forwarding() }

// Watch is the package's Watch; what it sees that may concern the peers'
// entries also makes the next sync dump what the kernel holds (stale).
func (k *Kernel) Watch(ctx context.Context, watched func() []string, changed func(string)) {
	watch(ctx, watched, changed, k.stale)
}
