package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are overlayd's Prometheus metrics and health flags, on a registry
// of their own (no global state).
type metrics struct {
	registry          *prometheus.Registry
	reconciles        prometheus.Counter
	reconcileErrors   prometheus.Counter
	reconcileSeconds  prometheus.Histogram
	peers             prometheus.Gauge
	leaseAcquisitions prometheus.Counter
	healthy, ready    atomic.Bool
}

func newMetrics() *metrics {
	m := &metrics{
		registry:          prometheus.NewRegistry(),
		reconciles:        prometheus.NewCounter(prometheus.CounterOpts{Name: "overlay_reconciles_total", Help: "Passes of the datapath reconcile loop."}),
		reconcileErrors:   prometheus.NewCounter(prometheus.CounterOpts{Name: "overlay_reconcile_errors_total", Help: "Reconcile passes that failed."}),
		reconcileSeconds:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "overlay_reconcile_duration_seconds", Help: "Duration of a reconcile pass.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)}),
		peers:             prometheus.NewGauge(prometheus.GaugeOpts{Name: "overlay_peers", Help: "Remote hosts currently wanted in the datapath."}),
		leaseAcquisitions: prometheus.NewCounter(prometheus.CounterOpts{Name: "overlay_lease_acquisitions_total", Help: "Subnet leases acquired (1 at start, more after a lost lease)."}),
	}
	m.registry.MustRegister(m.reconciles, m.reconcileErrors, m.reconcileSeconds, m.peers, m.leaseAcquisitions,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// serve exposes /metrics, /healthz (last reconcile succeeded) and /readyz
// (the host file is written) until ctx ends.
func (m *metrics) serve(ctx context.Context, ln net.Listener, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", flagHandler(&m.healthy))
	mux.HandleFunc("/readyz", flagHandler(&m.ready))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Error("metrics server failed", "addr", ln.Addr().String(), "err", err)
	}
}

func flagHandler(ok *atomic.Bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if !ok.Load() {
			http.Error(w, "not ok", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	}
}
