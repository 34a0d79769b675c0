package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"time"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/statusfile"
)

// stampLife is how far ahead of now the ready stamp's Until is set, in
// resync intervals: a missed pass or two must not flip STATUS.
const stampLife = 3

// apply makes everything this agent owns match w. It runs only on the
// reconcile loop's goroutine (and once in Start, before the loop runs).
// Each part is attempted even when an earlier one failed, except what
// needs the VXLAN device or the bridge; all failures come back joined.
func (a *Agent) apply(_ context.Context, w Wanted) error {
	start := time.Now()
	a.m.reconciles.Inc()
	a.repairs, a.changes = map[string]int{}, map[string]int{}
	err := a.applyAll(w)
	a.applied.Store(&w)
	a.setReady(w.Held, err == nil)
	if err != nil {
		a.m.reconcileErrors.Inc()
	}
	end := time.Now()
	a.m.reconcileSeconds.Observe(end.Sub(start).Seconds())
	a.notePass(start, end, err)
	a.passAt.Store(end.UnixNano())
	return err
}

// repaired counts n entries of kind the pass added or removed.
func (a *Agent) repaired(kind string, n int) {
	if n > 0 {
		a.m.repaired.WithLabelValues(kind).Add(float64(n))
		a.repairs[kind] += n
	}
}

// notePass publishes what the pass did, for the metrics and the status
// file.
func (a *Agent) notePass(start, end time.Time, err error) {
	p := &statusfile.Pass{At: end, Duration: end.Sub(start), Repaired: a.repairs, Programmed: a.changes}
	if err != nil {
		p.Error = err.Error()
	}
	a.lastPass.Store(p)
	if len(a.repairs) > 0 {
		a.lastRepair.Store(p)
	}
	a.m.passDone(end, len(a.repairs) > 0)
}

func (a *Agent) applyAll(w Wanted) error {
	a.devicesReady = false
	if err := a.ensureDevices(w); err != nil {
		return err
	}
	var errs []error
	// Orphans first: the device of an earlier VNI still holds routes to
	// every peer, and the kernel would refuse the same routes on ours.
	errs = append(errs, wrap("remove orphans", a.removeOrphans(w)))
	plan, err := a.deps.Datapath.SyncPeers(w.target(), w.Peers)
	a.notePlan(plan, &w)
	if err == nil {
		a.settled = &w
	} else {
		a.settled = nil // what the kernel holds is not known: no drift until a pass succeeds
	}
	a.memory.wrote(planSize(plan))
	errs = append(errs, wrap("sync peers on "+w.VXLAN.Name, err))
	if w.Forward {
		errs = append(errs, a.deps.Datapath.EnableIPv4Forwarding())
	}
	// The host file depends only on the local devices, which are ready: a
	// peer that cannot be programmed must not keep the plugins on a stale
	// subnet after this host took a new one.
	hfErr := a.ensureHostFile(w.HostFile)
	a.devicesReady = hfErr == nil
	if w.Forward {
		errs = append(errs, wrap("forward rules", a.ensureForward(w.HostFile.Network)))
	}
	errs = append(errs, wrap("masquerade rules", a.ensureMasq(w.Masq)))
	errs = append(errs, wrap("vxlan ingress filter", a.ensureIngress(w.Ingress)))
	errs = append(errs, hfErr)
	return errors.Join(errs...)
}

func wrap(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// ensureDevices makes the VXLAN device and the bridge; nothing else can
// work without them.
func (a *Agent) ensureDevices(w Wanted) error {
	vx, err := a.deps.Datapath.EnsureVXLAN(w.VXLAN)
	if err != nil {
		return fmt.Errorf("ensure vxlan device %s: %w", w.VXLAN.Name, err)
	}
	switch {
	case vx.Replaced != "":
		a.repaired("device", 1)
		a.log.Warn("vxlan device was incompatible; recreated it", "device", w.VXLAN.Name, "reason", vx.Replaced)
	case vx.Created:
		a.repaired("device", 1)
		a.log.Info("vxlan device created", "device", w.VXLAN.Name)
	}
	if w.TxChecksumOff {
		// An opt-in fix that fails must not stop the pass: it is logged
		// on every pass until it works.
		if err := a.ensureTxChecksumOff(w.VXLAN.Name); err != nil {
			a.log.Error("cannot turn tx checksum offload off (--fix-checksum-offload); the rest of the pass goes on", "err", err)
		} else {
			a.m.txChecksumOff.Set(1)
		}
	}
	if w.Bridge.Name == "" {
		return nil // an edge host has none
	}
	if err := a.deps.Datapath.EnsureBridge(w.Bridge); err != nil {
		return fmt.Errorf("ensure bridge %s: %w", w.Bridge.Name, err)
	}
	return nil
}

func planSize(p datapath.Plan) int {
	return len(p.AddRoutes) + len(p.DelRoutes) + len(p.AddDirect) + len(p.DelDirect) +
		len(p.AddNeighs) + len(p.DelNeighs) + len(p.AddFDB) + len(p.DelFDB)
}

// notePlan counts what a sync of peers did: drift it repaired, and
// entries it wrote or removed for peers that changed in etcd.
func (a *Agent) notePlan(p datapath.Plan, w *Wanted) {
	if p.Empty() {
		return
	}
	drift, churn := splitDrift(a.settled, w, p)
	for kind, n := range drift {
		a.repaired(kind, n)
	}
	for kind, n := range churn {
		a.m.programmed.WithLabelValues(kind).Add(float64(n))
		a.changes[kind] += n
	}
	a.log.Info("peers reconciled",
		"routes_added", len(p.AddRoutes), "routes_deleted", len(p.DelRoutes),
		"direct_routes_added", len(p.AddDirect), "direct_routes_deleted", len(p.DelDirect),
		"neighs_added", len(p.AddNeighs), "neighs_deleted", len(p.DelNeighs),
		"fdb_added", len(p.AddFDB), "fdb_deleted", len(p.DelFDB))
}

// ensureHostFile compares the host file on disk, not a copy in memory, so
// a file deleted or edited by hand is rewritten.
func (a *Agent) ensureHostFile(want hostfile.HostFile) error {
	path := hostfile.Path(a.cfg.RunDir, a.cfg.Network)
	if have, err := hostfile.Read(path); err == nil && have == want {
		return nil
	}
	if err := os.MkdirAll(a.cfg.RunDir, 0o755); err != nil {
		return fmt.Errorf("create run dir %s: %w", a.cfg.RunDir, err)
	}
	if err := hostfile.Write(path, want); err != nil {
		return err
	}
	if want.Kind == hostfile.KindEdge {
		a.log.Info("host file written", "path", path, "kind", want.Kind, "address", want.Address, "mtu", want.MTU)
		return nil
	}
	a.log.Info("host file written", "path", path, "subnet", want.Subnet, "mtu", want.MTU)
	return nil
}

// ensureTxChecksumOff turns tx checksum offload off on the VXLAN device
// if it is on (a device created again comes back with it on).
func (a *Agent) ensureTxChecksumOff(device string) error {
	on, err := a.deps.Datapath.TxChecksumOffload(device)
	if err != nil {
		return fmt.Errorf("read tx checksum offload of %s: %w", device, err)
	}
	if !on {
		return nil
	}
	if err := a.deps.Datapath.SetTxChecksumOffload(device, false); err != nil {
		return fmt.Errorf("turn tx checksum offload off on %s: %w", device, err)
	}
	a.repaired("tx_checksum_offload", 1)
	a.log.Warn("turned tx checksum offload off on the vxlan device (--fix-checksum-offload): a peer answered on the underlay but not through the overlay", "device", device)
	return nil
}

// throttle spaces out a check that has no kernel events to trigger it
// and costs more than a pass should (an iptables run, a dump of every link
// and route): it is due when what it checks for changed, or once per
// interval.
type throttle struct {
	key string
	at  time.Time
}

func (t *throttle) due(key string, interval time.Duration) bool {
	return key != t.key || time.Since(t.at) >= interval
}

func (t *throttle) done(key string) { t.key, t.at = key, time.Now() }

// removeOrphans removes devices of an earlier config of this network and
// our routes inside it on other devices: at once when the wanted device
// or the underlay changes (a VNI or port change; direct routes left on an
// old underlay), else once per resync interval, so the
// passes that container starts trigger do not dump every link and route.
func (a *Agent) removeOrphans(w Wanted) error {
	key := w.VXLAN.Name + " " + w.Underlay + " " + w.HostFile.Network.String()
	if !a.orphanCheck.due(key, a.cfg.ResyncInterval) {
		return nil
	}
	removed, err := a.deps.Datapath.RemoveOrphans(a.cfg.Network, w.target())
	if len(removed) > 0 {
		a.repaired("orphan", len(removed))
		a.log.Warn("removed what an earlier configuration left", "removed", removed)
	}
	if err != nil {
		return err
	}
	a.orphanCheck.done(key)
	return nil
}

// ensureForward checks the FORWARD rules when the network or the other
// networks change, else once per resync interval: each check starts
// several iptables processes (tens of ms), which must not slow the passes
// that events trigger.
func (a *Agent) ensureForward(network netip.Prefix) error {
	fw := a.deps.Firewall
	if fw == nil {
		return nil
	}
	var isolate []netip.Prefix
	if a.deps.OtherNetworks != nil {
		isolate = a.deps.OtherNetworks()
	}
	return a.throttled(&a.forwardCheck, fmt.Sprint(network, isolate), func() error { return fw.Ensure(network, isolate) })
}

// ensureMasq checks the masquerade rules when what is wanted changes,
// else once per resync interval (iptables runs, like ensureForward).
func (a *Agent) ensureMasq(m Masq) error {
	if a.deps.Masq == nil {
		return nil
	}
	return a.throttled(&a.masqCheck, fmt.Sprint(m.Subnet, m.Keep), func() error { return a.deps.Masq.Ensure(m.Subnet, m.Keep) })
}

// ensureIngress checks the ingress filter when the members or the port
// change, else once per resync interval (a dump of the member set, which
// at 10 000 members is too much for every pass).
func (a *Agent) ensureIngress(in Ingress) error {
	if a.deps.Ingress == nil {
		return nil
	}
	return a.throttled(&a.ingressCheck, ingressKey(in), func() error { return a.deps.Ingress.Ensure(in.Port, in.Members) })
}

// throttled runs ensure when key (what it should make true) changed or its
// last success is a resync interval old.
func (a *Agent) throttled(t *throttle, key string, ensure func() error) error {
	if !t.due(key, a.cfg.ResyncInterval) {
		return nil
	}
	if err := ensure(); err != nil {
		return err
	}
	t.done(key)
	return nil
}

// ingressKey is a short digest of the filter's wanted state.
func ingressKey(in Ingress) string {
	h := fnv.New64a()
	for _, m := range in.Members {
		b := m.As4()
		h.Write(b[:])
	}
	return fmt.Sprintf("%d/%d/%x", in.Port, len(in.Members), h.Sum64())
}

// setReady records readiness and keeps the ready stamp: renewed after
// successful passes while the lease is held, removed once the lease is
// lost. A failing pass only stops renewing it, so STATUS turns to 50 after
// stampLife intervals of failure, not on one bad peer. held is the pass's
// own wanted state, not a newer one published meanwhile.
func (a *Agent) setReady(held, passed bool) {
	ok := held && passed
	path := hostfile.ReadyPath(a.cfg.RunDir, a.cfg.Network)
	switch {
	case !held:
		if err := hostfile.RemoveReady(path); err != nil {
			a.log.Warn("cannot remove the ready stamp", "err", err)
		}
		a.stampAt = time.Time{}
	case ok && (time.Since(a.stampAt) > a.cfg.ResyncInterval/2 || !fileExists(path)):
		now := time.Now()
		r := hostfile.Ready{PID: os.Getpid(), Written: now, Until: now.Add(stampLife * a.cfg.ResyncInterval)}
		if err := hostfile.WriteReady(path, r); err != nil {
			a.log.Warn("cannot write the ready stamp; STATUS will answer 50", "err", err)
			ok = false // /readyz must not say yes while STATUS says no
		} else {
			a.stampAt = now
		}
	}
	a.ready.Store(ok)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
