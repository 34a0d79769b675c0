package agent

import (
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/overlaynet/overlay/pkg/probe"
)

// metrics are one agent's Prometheus series, labelled with its network so
// several agents can share one registry. README.md lists them all.
type metrics struct {
	reconciles       prometheus.Counter
	reconcileErrors  prometheus.Counter
	reconcileSeconds prometheus.Histogram
	lastReconcile    prometheus.Gauge
	lastRepair       prometheus.Gauge
	peers            prometheus.Gauge
	leaseHeld        prometheus.Gauge
	leaseInfo        *prometheus.GaugeVec
	leaseAcquired    prometheus.Counter
	leaseLost        prometheus.Counter
	subnetChanges    prometheus.Counter
	rejected         *prometheus.CounterVec
	repaired         *prometheus.CounterVec
	programmed       *prometheus.CounterVec
	probeChanges     *prometheus.CounterVec
	txChecksumOff    prometheus.Gauge
}

func newMetrics(network string, reg prometheus.Registerer) *metrics {
	labels := prometheus.Labels{"network": network}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	}
	m := &metrics{
		reconciles:      counter("overlay_reconciles_total", "Passes of the datapath reconcile loop."),
		reconcileErrors: counter("overlay_reconcile_errors_total", "Reconcile passes that failed."),
		reconcileSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "overlay_reconcile_duration_seconds",
			Help: "Duration of a reconcile pass.", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		lastReconcile: gauge("overlay_last_reconcile_timestamp_seconds", "Unix time the last reconcile pass ended."),
		lastRepair:    gauge("overlay_last_repair_timestamp_seconds", "Unix time of the last reconcile pass that repaired drift (overlay_drift_repaired_total; 0: none yet)."),
		peers:         gauge("overlay_peers_wanted", "Remote members the datapath should reach (from etcd's leases)."),
		leaseHeld:     gauge("overlay_lease_held", "1 while this host holds its subnet lease."),
		leaseInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "overlay_lease_info",
			Help: "1, labelled with this host's lease: subnet, VTEP address and MAC, public IP, kind (host or edge).", ConstLabels: labels},
			[]string{"subnet", "vtep_ip", "vtep_mac", "public_ip", "kind"}),
		leaseAcquired: counter("overlay_lease_acquisitions_total", "Subnet leases acquired (1 at start, more after a lost lease)."),
		leaseLost:     counter("overlay_lease_losses_total", "Times this host's lease was lost (expired, or its key taken)."),
		subnetChanges: counter("overlay_subnet_changes_total", "Times this host had to take a subnet other than the one it held."),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "overlay_lease_records_rejected_total",
			Help: "Lease records not programmed, by reason (counted when first seen).", ConstLabels: labels}, []string{"reason"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "overlay_drift_repaired_total",
			Help: "Drift the reconcile repaired, by kind: entries the kernel lost or changed behind overlayd's back, devices recreated, orphans removed.", ConstLabels: labels}, []string{"kind"}),
		programmed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "overlay_peer_entries_programmed_total",
			Help: "Entries the reconcile wrote or removed because peers came, went or changed in etcd, by kind.", ConstLabels: labels}, []string{"kind"}),
		probeChanges: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "overlay_peer_probe_state_changes_total",
			Help: "Times a peer's probe state changed, by the state entered (ok, overlay_broken, unreachable).", ConstLabels: labels}, []string{"state"}),
		txChecksumOff: gauge("overlay_vxlan_tx_checksum_offload_disabled", "1 once overlayd turned tx checksum offload off on the VXLAN device (--fix-checksum-offload)."),
	}
	if reg != nil {
		reg.MustRegister(m.reconciles, m.reconcileErrors, m.reconcileSeconds, m.lastReconcile, m.lastRepair, m.peers,
			m.leaseHeld, m.leaseInfo, m.leaseAcquired, m.leaseLost, m.subnetChanges, m.rejected, m.repaired, m.programmed,
			m.probeChanges, m.txChecksumOff)
	}
	return m
}

// ingressDropped exports the ingress filter's drop counter, read from the
// kernel at each scrape.
func ingressDropped(network string, f IngressFilter, log *slog.Logger) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "overlay_vxlan_ingress_dropped_packets_total",
		Help:        "VXLAN packets the ingress filter dropped: sent to the network's port from an address that is no member's.",
		ConstLabels: prometheus.Labels{"network": network}}, func() float64 {
		n, err := f.Dropped()
		if err != nil {
			log.Warn("cannot read the ingress filter's drop counter", "err", err)
		}
		return float64(n)
	})
}

// leaseExpiry exports how long this host's etcd lease has left unless it
// is renewed: it runs down towards 0 while etcd is unreachable.
func (a *Agent) leaseExpiry() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "overlay_lease_expiry_seconds",
		Help:        "Seconds until this host's etcd lease expires unless renewed (0 while no lease is held).",
		ConstLabels: prometheus.Labels{"network": a.cfg.Network}}, func() float64 {
		if s := a.sessionRef.Load(); s != nil {
			if exp := s.Expires(); !exp.IsZero() {
				return max(time.Until(exp).Seconds(), 0)
			}
		}
		return 0
	})
}

// kernelCollector reads the kernel at each scrape: the entries on the
// network's devices and how many wanted peers are fully programmed, so the
// series show drift that no pass has repaired yet.
type kernelCollector struct {
	a                   *Agent
	entries, programmed *prometheus.Desc
	mu                  sync.Mutex // one dump at a time, however many scrapers
}

func newKernelCollector(a *Agent) *kernelCollector {
	labels := prometheus.Labels{"network": a.cfg.Network}
	return &kernelCollector{a: a,
		entries: prometheus.NewDesc("overlay_datapath_entries",
			"Entries the kernel holds for the network's peers, by kind: route (on the VXLAN device), direct_route (on the underlay), neigh, fdb.",
			[]string{"kind"}, labels),
		programmed: prometheus.NewDesc("overlay_peers_programmed",
			"Wanted peers whose route, neighbour and FDB entries are all in the kernel as etcd says.", nil, labels),
	}
}

func (c *kernelCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.entries; ch <- c.programmed }

func (c *kernelCollector) Collect(ch chan<- prometheus.Metric) {
	w := c.a.applied.Load()
	if w == nil {
		return // nothing applied yet: no device to read
	}
	c.mu.Lock()
	n, err := c.a.deps.Datapath.Census(w.target(), w.Peers)
	c.mu.Unlock()
	if err != nil {
		// Left out rather than an invalid metric, which would fail the
		// whole scrape while the device is being recreated.
		c.a.log.Warn("cannot read the kernel's entries for the metrics; overlay_datapath_entries and overlay_peers_programmed left out of this scrape", "err", err)
		return
	}
	for kind, v := range map[string]int{"route": n.Routes, "direct_route": n.Direct, "neigh": n.Neighs, "fdb": n.FDB} {
		ch <- prometheus.MustNewConstMetric(c.entries, prometheus.GaugeValue, float64(v), kind)
	}
	ch <- prometheus.MustNewConstMetric(c.programmed, prometheus.GaugeValue, float64(n.Programmed))
}

// probeCollector exports the probes' last results per peer and path, and
// how many peers are in each state. One series per peer: with thousands of
// peers, drop overlay_peer_probe_* at the scraper if that is too many.
type probeCollector struct {
	p                                   Prober
	rtt, loss, broken, states, interval *prometheus.Desc
}

func newProbeCollector(network string, p Prober) *probeCollector {
	labels := prometheus.Labels{"network": network}
	return &probeCollector{p: p,
		rtt: prometheus.NewDesc("overlay_peer_probe_rtt_seconds",
			"Round-trip time of the last answered probe to a peer, by path: overlay (its VTEP address, through the VXLAN device) or underlay (its public IP).",
			[]string{"peer", "path"}, labels),
		loss: prometheus.NewDesc("overlay_peer_probe_loss_ratio",
			"Share of a peer's recent probes that got no answer, by path.", []string{"peer", "path"}, labels),
		broken: prometheus.NewDesc("overlay_peer_overlay_broken",
			"1 while a peer answers on the underlay but not through the overlay: the VXLAN port is blocked on the path, or checksum offload corrupts encapsulated packets.",
			[]string{"peer"}, labels),
		states: prometheus.NewDesc("overlay_peers_by_probe_state",
			"Peers in each probe state: unknown, ok, overlay_broken, unreachable.", []string{"state"}, labels),
		interval: prometheus.NewDesc("overlay_probe_peer_interval_seconds",
			"How often each peer is probed: the probe interval, or longer where the probe rate bound spreads many peers out.", nil, labels),
	}
}

func (c *probeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.rtt, c.loss, c.broken, c.states, c.interval} {
		ch <- d
	}
}

func (c *probeCollector) Collect(ch chan<- prometheus.Metric) {
	states := map[probe.State]int{probe.StateUnknown: 0, probe.StateOK: 0, probe.StateOverlayBroken: 0, probe.StateUnreachable: 0}
	for _, r := range c.p.Results() {
		peer := r.Peer.String()
		states[r.State]++
		for path, s := range map[string]probe.PathStats{"overlay": r.OverlayPath, "underlay": r.UnderlayPath} {
			if s.Received > 0 {
				ch <- prometheus.MustNewConstMetric(c.rtt, prometheus.GaugeValue, s.RTT.Seconds(), peer, path)
			}
			if s.Sent > 0 {
				ch <- prometheus.MustNewConstMetric(c.loss, prometheus.GaugeValue, s.Loss, peer, path)
			}
		}
		ch <- prometheus.MustNewConstMetric(c.broken, prometheus.GaugeValue, boolFloat(r.State == probe.StateOverlayBroken), peer)
	}
	for st, n := range states {
		ch <- prometheus.MustNewConstMetric(c.states, prometheus.GaugeValue, float64(n), string(st))
	}
	ch <- prometheus.MustNewConstMetric(c.interval, prometheus.GaugeValue, c.p.PeerInterval().Seconds())
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// setLeaseInfo labels overlay_lease_info with the lease held now (none
// while it is lost).
func (m *metrics) setLeaseInfo(l local) {
	m.leaseInfo.Reset()
	if !l.Held {
		return
	}
	m.leaseInfo.WithLabelValues(l.Subnet.String(), l.Subnet.Addr().String(), l.VTEPMAC.String(), l.PublicIP.String(), string(l.Kind)).Set(1)
}

// passDone records a finished pass's times.
func (m *metrics) passDone(end time.Time, repaired bool) {
	m.lastReconcile.Set(float64(end.UnixNano()) / 1e9)
	if repaired {
		m.lastRepair.Set(float64(end.UnixNano()) / 1e9)
	}
}

// readiness exports Ready, as /readyz answers it.
func (a *Agent) readiness() prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "overlay_ready",
		Help:        "1 while the lease is held, the last pass succeeded and the host file is on disk (what /readyz answers).",
		ConstLabels: prometheus.Labels{"network": a.cfg.Network}}, func() float64 { return boolFloat(a.Ready()) })
}

// registerCollectors adds what is read at scrape time.
func (a *Agent) registerCollectors(reg prometheus.Registerer) {
	reg.MustRegister(a.leaseExpiry(), a.readiness(), newKernelCollector(a))
	if a.deps.Prober != nil {
		reg.MustRegister(newProbeCollector(a.cfg.Network, a.deps.Prober))
	}
}
