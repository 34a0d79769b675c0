package agent

import (
	"context"
	"sync"
	"time"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/probe"
)

// probeTargetsInterval is how often the probe targets follow the peers
// applied: a burst of hosts joining costs one new target set a second,
// not one per pass.
const probeTargetsInterval = time.Second

// runProber runs the prober until ctx ends, and keeps its targets equal
// to the peers last applied. A prober that cannot start (no CAP_NET_RAW)
// costs the diagnosis, not the network: it is logged and the status file
// says so.
func (a *Agent) runProber(ctx context.Context) {
	if a.deps.Prober == nil {
		return
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.followPeers(ctx) })
	if err := a.deps.Prober.Run(ctx); err != nil && ctx.Err() == nil {
		a.probeErr.Store(&err)
		a.log.Error("peer probes are off: cannot probe (overlayd needs CAP_NET_RAW for ICMP)", "err", err)
	}
}

// followPeers sets the probe targets from the wanted state last applied,
// once a second at most, until ctx ends.
func (a *Agent) followPeers(ctx context.Context) {
	t := time.NewTicker(probeTargetsInterval)
	defer t.Stop()
	var last *Wanted
	for {
		if w := a.applied.Load(); w != nil && w != last {
			a.deps.Prober.SetTargets(probeTargets(w.Peers))
			a.probeMoves.Add(1) // the status file lists the new set
			last = w
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeTargets probes every peer: its VTEP address through the overlay,
// its public IP on the underlay. Names are looked up when a state change
// is logged, not kept for every peer.
func probeTargets(peers []datapath.Peer) []probe.Target {
	ts := make([]probe.Target, 0, len(peers))
	for _, p := range peers {
		ts = append(ts, probe.Target{Peer: p.Subnet, Overlay: p.VTEPIP, Underlay: p.PublicIP, Direct: p.Mode == datapath.ModeDirect})
	}
	return ts
}

// probeChanges is the prober's signal (nil, never ready, without one).
func (a *Agent) probeChanges() <-chan struct{} {
	if a.deps.Prober == nil {
		return nil
	}
	return a.deps.Prober.Changes()
}

// onProbes logs and counts the peers whose probe state changed, and turns
// tx checksum offload off once the overlay is broken to a peer that
// answers on the underlay, if the operator asked for that. It reports
// whether the wanted state changed. It costs the peers that changed, not
// every peer: at 10 000 peers, states change many times a second while
// they are first probed.
func (a *Agent) onProbes() bool {
	broken := false
	for _, tr := range a.deps.Prober.Transitions() {
		a.probeMoves.Add(1)
		// A direct peer's overlay path has no VXLAN in it: offload is
		// not what breaks it.
		broken = broken || (tr.State == probe.StateOverlayBroken && !tr.Direct)
		a.noteProbe(tr.Result, tr.Was)
	}
	if !broken || !a.cfg.FixChecksumOffload || a.local.TxChecksumOff {
		return false
	}
	a.local.TxChecksumOff = true
	return true
}

// noteProbe logs a peer's new probe state with what it likely means.
func (a *Agent) noteProbe(r probe.Result, was probe.State) {
	if r.State != probe.StateUnknown {
		a.m.probeChanges.WithLabelValues(string(r.State)).Inc()
	}
	attrs := []any{"peer", r.Peer, "host", a.feed.Hostname(r.Peer), "vtep", r.Overlay, "public_ip", r.Underlay}
	switch r.State {
	case probe.StateOK:
		if was == probe.StateOverlayBroken || was == probe.StateUnreachable {
			a.log.Info("peer answers through the overlay again", attrs...)
		}
	case probe.StateOverlayBroken:
		if r.Direct {
			a.log.Warn("peer answers on its public IP but not at its VTEP address over the direct route (no VXLAN involved): its firewall, rp_filter or routing drops traffic from this host's overlay address", attrs...)
			return
		}
		if err := r.OverlayPath.LastError; err != "" {
			a.log.Warn("peer answers on the underlay but probes through the overlay cannot be sent: this host has no usable route to the peer's VTEP address",
				append(attrs, "error", err)...)
			return
		}
		fix := "if it is checksum offload, turn it off on this host's VXLAN device: overlayd --fix-checksum-offload, or ethtool -K " +
			datapath.DeviceName(a.local.Config.VNI) + " tx off"
		a.log.Warn("peer answers on the underlay but not through the overlay: the VXLAN port (UDP "+
			itoa(int(a.local.Config.Port))+") is blocked on the path (firewall, security group, hypervisor), or checksum offload corrupts encapsulated packets; "+fix,
			attrs...)
	case probe.StateUnreachable:
		a.log.Warn("peer answers neither through the overlay nor on the underlay: the host is down, its underlay unreachable, or ICMP is filtered", attrs...)
	}
}
