package agent

import (
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one agent's Prometheus series, labelled with its network so
// several agents can share one registry.
type metrics struct {
	reconciles       prometheus.Counter
	reconcileErrors  prometheus.Counter
	reconcileSeconds prometheus.Histogram
	peers            prometheus.Gauge
	leaseHeld        prometheus.Gauge
	ready            prometheus.Gauge
	leaseAcquired    prometheus.Counter
	leaseLost        prometheus.Counter
	subnetChanges    prometheus.Counter
	rejected         *prometheus.CounterVec
	repaired         *prometheus.CounterVec
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
		peers:         gauge("overlay_peers", "Remote hosts currently wanted in the datapath."),
		leaseHeld:     gauge("overlay_lease_held", "1 while this host holds its subnet lease."),
		ready:         gauge("overlay_ready", "1 while the lease is held, the last pass succeeded and the host file is written."),
		leaseAcquired: counter("overlay_lease_acquisitions_total", "Subnet leases acquired (1 at start, more after a lost lease)."),
		leaseLost:     counter("overlay_lease_losses_total", "Times this host's lease was lost (expired, or its key taken)."),
		subnetChanges: counter("overlay_subnet_changes_total", "Times this host had to take a subnet other than the one it held."),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "overlay_lease_records_rejected_total",
			Help: "Lease records not programmed, by reason (counted when first seen).", ConstLabels: labels}, []string{"reason"}),
		repaired: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "overlay_drift_repaired_total",
			Help: "Entries the reconcile added or removed, by kind.", ConstLabels: labels}, []string{"kind"}),
	}
	if reg != nil {
		reg.MustRegister(m.reconciles, m.reconcileErrors, m.reconcileSeconds, m.peers, m.leaseHeld, m.ready,
			m.leaseAcquired, m.leaseLost, m.subnetChanges, m.rejected, m.repaired)
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
