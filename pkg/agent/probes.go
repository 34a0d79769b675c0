package agent

import (
	"context"
	"net/netip"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/probe"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// runProber runs the prober until ctx ends. A prober that cannot start
// (no CAP_NET_RAW) costs the diagnosis, not the network: it is logged and
// the status file says so.
func (a *Agent) runProber(ctx context.Context) {
	if a.deps.Prober == nil {
		return
	}
	if err := a.deps.Prober.Run(ctx); err != nil && ctx.Err() == nil {
		a.probeErr.Store(&err)
		a.log.Error("peer probes are off: cannot probe (overlayd needs CAP_NET_RAW for ICMP)", "err", err)
	}
}

// probeChanges is the prober's signal (nil, never ready, without one).
func (a *Agent) probeChanges() <-chan struct{} {
	if a.deps.Prober == nil {
		return nil
	}
	return a.deps.Prober.Changes()
}

// setProbeTargets probes every peer: its VTEP address through the
// overlay, its public IP on the underlay. Names come from the leases.
func (a *Agent) setProbeTargets(peers []datapath.Peer, leases []subnet.Lease) {
	if a.deps.Prober == nil {
		return
	}
	names := make(map[netip.Prefix]string, len(leases))
	for _, l := range leases {
		names[l.Subnet] = l.Hostname
	}
	ts := make([]probe.Target, 0, len(peers))
	for _, p := range peers {
		ts = append(ts, probe.Target{Peer: p.Subnet, Name: names[p.Subnet], Overlay: p.VTEPIP, Underlay: p.PublicIP})
	}
	a.deps.Prober.SetTargets(ts)
}

// onProbes logs and counts the peers whose probe state changed, and turns
// tx checksum offload off once the overlay is broken to a peer that
// answers on the underlay, if the operator asked for that. It reports
// whether the wanted state changed.
func (a *Agent) onProbes() bool {
	results := a.deps.Prober.Results()
	now := make(map[netip.Prefix]probe.State, len(results))
	broken := false
	for _, r := range results {
		now[r.Peer] = r.State
		broken = broken || r.State == probe.StateOverlayBroken
		if a.probed[r.Peer] == r.State {
			continue
		}
		a.noteProbe(r, a.probed[r.Peer])
	}
	a.probed = now
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
	attrs := []any{"peer", r.Peer, "host", r.Name, "vtep", r.Overlay, "public_ip", r.Underlay}
	switch r.State {
	case probe.StateOK:
		if was == probe.StateOverlayBroken || was == probe.StateUnreachable {
			a.log.Info("peer answers through the overlay again", attrs...)
		}
	case probe.StateOverlayBroken:
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
