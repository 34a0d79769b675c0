package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// control is the only goroutine that changes what this host is (local):
// lease reports, config changes and underlay changes arrive here one at a
// time, as do the feed's signals that the leases changed, and each change
// republishes the whole wanted state from a fresh snapshot of the feed.
// Because nothing else writes these, a snapshot can never be overwritten
// by an older copy (the lost update of a copy taken under one lock and
// stored under another).
func (a *Agent) control(ctx context.Context) {
	underlay := time.NewTicker(a.cfg.ResyncInterval)
	defer underlay.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.feed.Changed():
			// publish takes one snapshot however many events arrived.
		case st := <-a.session.Reports():
			a.onLeaseStatus(st)
		case cfg := <-a.configs:
			if !a.onConfig(cfg) {
				continue
			}
		case <-a.probeChanges():
			if !a.onProbes() {
				continue
			}
		case <-underlay.C:
			changed := a.checkUnderlay()
			if a.checkRoutes() {
				changed = true
			}
			if !changed {
				continue
			}
		}
		a.publish()
	}
}

// publish builds the wanted state and hands it to the reconcile loop.
func (a *Agent) publish() Wanted {
	// A fresh snapshot each time rather than one kept here: with 10 000
	// leases a copy is 2 MB the daemon would carry for nothing.
	w, rejected := buildWanted(a.local, a.feed.Snapshot())
	a.publishSelf(w)
	a.noteRejections(rejected)
	a.noteMTU(w)
	names := []string{w.VXLAN.Name}
	if w.Bridge.Name != "" {
		names = append(names, w.Bridge.Name)
	}
	a.watched.Store(&names)
	wf := w.HostFile
	a.wantFile.Store(&wf)
	routed := routedBy(w)
	a.routed.Store(&routed)
	a.wantHeld.Store(w.Held)
	a.wantForward.Store(w.Forward)
	a.m.peers.Set(float64(len(w.Peers)))
	a.loop.Set(w)
	return w
}

// noteMTU says when the overlay MTU changes: new containers get the new
// one from the host file, running ones keep theirs, which after a drop is
// too large for the paths to the member that lowered it.
func (a *Agent) noteMTU(w Wanted) {
	old, mtu := a.mtu, w.HostFile.MTU
	a.mtu = mtu
	switch {
	case old == 0 || mtu == old:
	case mtu < old:
		a.log.Warn("overlay MTU lowered: the device, the bridge and new containers use the new MTU; containers started before keep the old one and lose large packets to the member that lowered it: restart them, or pin the MTU with overlayctl network set --mtu",
			"old", old, "new", mtu, "set_by", w.MTUSetBy)
	default:
		a.log.Info("overlay MTU raised: new containers get the new MTU; running ones keep the old, smaller one, which is safe", "old", old, "new", mtu)
	}
}

// noteRejections logs and counts each rejected record once, when it first
// appears (snapshots repeat them on every change).
func (a *Agent) noteRejections(rs []Rejection) {
	now := make(map[Rejection]bool, len(rs))
	for _, r := range rs {
		now[r] = true
		if a.rejected[r] {
			continue
		}
		a.m.rejected.WithLabelValues(r.Kind).Inc()
		a.log.Warn("skipping lease record", "subnet", r.Subnet, "reason", r.Kind, "detail", r.Detail)
	}
	a.rejected = now
}

func (a *Agent) onLeaseStatus(st subnet.Status) {
	l := &a.local
	defer func() { a.m.setLeaseInfo(*l) }()
	if !st.Held {
		l.Held = false
		a.m.leaseLost.Inc()
		a.m.leaseHeld.Set(0)
		a.log.Warn("lease lost; the datapath stays, leasing again", "subnet", st.Subnet, "reason", st.Reason)
		return
	}
	if l.Subnet != st.Subnet {
		a.m.subnetChanges.Inc()
		a.log.Error("this host now has another subnet: containers started before keep their old addresses and cannot reach other hosts until they are restarted",
			"old", l.Subnet, "new", st.Subnet, "reason", st.Reason)
	} else {
		a.log.Info("lease held again", "subnet", st.Subnet, "reason", st.Reason)
	}
	l.Subnet, l.Held = st.Subnet, true
	a.m.leaseAcquired.Inc()
	a.m.leaseHeld.Set(1)
}

// onConfig takes a changed network config; it reports whether anything
// changed.
func (a *Agent) onConfig(cfg netconf.Config) bool {
	old := a.local.Config
	if cfg == old {
		return false
	}
	a.session.SetConfig(cfg)
	if cfg.VNI != old.VNI || cfg.Port != old.Port {
		a.log.Warn("network VNI or port changed: the VXLAN device is recreated under its new name and the old one removed; cross-host traffic pauses until every host has switched",
			"old_vni", old.VNI, "new_vni", cfg.VNI, "old_port", old.Port, "new_port", cfg.Port)
	}
	if err := cfg.CheckUnderlay("this host ("+a.local.Underlay.Name+")", a.local.Underlay.MTU); err != nil {
		a.log.Error("the new network config does not fit this host; the MTU override is used anyway, and large packets will be dropped", "err", err)
	}
	if cfg.MTU != old.MTU {
		a.log.Warn("network MTU changed: new containers get the new MTU; running containers keep theirs until restarted", "old", old.MTU, "new", cfg.MTU)
	}
	if cfg.Network != old.Network {
		a.log.Info("network range changed", "old", old.Network, "new", cfg.Network)
	}
	a.local.Config = cfg
	return true
}

// checkRoutes re-reads this host's own routes (which advertised LANs must
// not shadow); it reports whether they changed.
func (a *Agent) checkRoutes() bool {
	routes, err := a.readRoutes()
	if err != nil {
		a.log.Warn("cannot list this host's routes; keeping the last list", "err", err)
		return false
	}
	if slices.Equal(routes, a.local.Routes) {
		return false
	}
	a.local.Routes = routes
	for _, lan := range a.unroutedLANs() {
		a.log.Error("this gateway has no route to a LAN it advertises any more (its interface down?): members still send its traffic here", "lan", lan)
	}
	return true
}

// readRoutes lists this host's own routes, sorted (OtherRoutes).
func (a *Agent) readRoutes() ([]netip.Prefix, error) {
	routes, err := a.deps.Datapath.OtherRoutes(datapath.DeviceName(a.local.Config.VNI))
	if err != nil {
		return nil, fmt.Errorf("list this machine's routes: %w", err)
	}
	slices.SortFunc(routes, netip.Prefix.Compare)
	return slices.Compact(routes), nil
}

// checkUnderlay re-reads the underlay interface; it reports whether its MTU
// or index changed (the wanted state follows). An address change needs a
// restart, which republishes the lease: it is logged.
func (a *Agent) checkUnderlay() bool {
	u, err := a.deps.Datapath.FindUnderlay(a.cfg.Iface)
	if err != nil {
		a.log.Warn("cannot read the underlay interface; keeping the last one", "err", err)
		return false
	}
	old := a.local.Underlay
	if u.IP != old.IP && !a.cfg.PublicIP.IsValid() {
		a.log.Error("the underlay address changed; peers still send to the old one: restart overlayd to publish the new one", "old", old.IP, "new", u.IP)
	}
	if u.MTU == old.MTU && u.Index == old.Index && slices.Equal(u.Segments, old.Segments) {
		return false
	}
	a.log.Warn("underlay interface changed", "old_mtu", old.MTU, "new_mtu", u.MTU, "old_index", old.Index, "new_index", u.Index)
	a.local.Underlay.MTU, a.local.Underlay.Index, a.local.Underlay.Name, a.local.Underlay.Segments = u.MTU, u.Index, u.Name, u.Segments
	return true
}
