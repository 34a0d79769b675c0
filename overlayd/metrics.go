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

	"github.com/overlaynet/overlay/pkg/agent"
	"github.com/overlaynet/overlay/pkg/probe"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// metricsMux serves /metrics, /healthz (every agent's loop is passing)
// and /readyz (every agent holds its lease, its last pass succeeded and its
// host file is written).
func metricsMux(reg *prometheus.Registry, agents []*agent.Agent) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", allHandler(agents, (*agent.Agent).Alive))
	mux.HandleFunc("/readyz", allHandler(agents, (*agent.Agent).Ready))
	return mux
}

// startingHandler answers until the agents have started: alive, not
// ready, no metrics yet.
func startingHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok: starting\n")) })
	notYet := func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "starting: connecting to etcd, waiting for the network config or taking the lease (see the log)", http.StatusServiceUnavailable)
	}
	mux.HandleFunc("/readyz", notYet)
	mux.HandleFunc("/metrics", notYet)
	return mux
}

// switchHandler is an http.Handler that can be replaced while serving.
type switchHandler struct{ h atomic.Pointer[http.Handler] }

func (s *switchHandler) set(h http.Handler) { s.h.Store(&h) }

func (s *switchHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	(*s.h.Load()).ServeHTTP(w, r)
}

// serveHTTP serves h on ln until ctx ends.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
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

func allHandler(agents []*agent.Agent, ok func(*agent.Agent) bool) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for _, a := range agents {
			if !ok(a) {
				http.Error(w, "not ok", http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok\n"))
	}
}

// etcdCollector exports the etcd client's failure counts: requests by
// operation, lease-watch re-lists by network.
type etcdCollector struct {
	etcd            *subnet.Client
	errors, relists *prometheus.Desc
}

func newEtcdCollector(etcd *subnet.Client) *etcdCollector {
	return &etcdCollector{etcd: etcd,
		errors: prometheus.NewDesc("overlay_etcd_request_errors_total",
			"etcd requests that failed, by operation (get, put, txn, delete, lease_grant, lease_revoke, lease_ttl, other).", []string{"op"}, nil),
		relists: prometheus.NewDesc("overlay_etcd_watch_relists_total",
			"Lease watches that failed and made the subnet map be listed again, by network.", []string{"network"}, nil),
	}
}

func (c *etcdCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.errors; ch <- c.relists }

func (c *etcdCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.etcd.Stats()
	for op, n := range st.RequestErrors {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(n), op)
	}
	for network, n := range st.WatchRelists {
		ch <- prometheus.MustNewConstMetric(c.relists, prometheus.CounterValue, float64(n), network)
	}
}

// udpChecksumErrors exports the namespace's UDP InCsumErrors: it rises when
// encapsulated packets arrive corrupted (checksum offload on a sender).
func udpChecksumErrors(log *slog.Logger) prometheus.Collector {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "overlay_udp_checksum_errors_total",
		Help: "UDP packets this host dropped for a bad checksum (/proc/net/snmp InCsumErrors): rising while a peer's overlay path is broken points at checksum offload."},
		func() float64 {
			n, err := probe.UDPChecksumErrors()
			if err != nil {
				log.Warn("cannot read UDP checksum errors", "err", err)
			}
			return float64(n)
		})
}
