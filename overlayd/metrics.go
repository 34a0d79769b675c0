package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/overlaynet/overlay/pkg/agent"
)

// serveMetrics exposes /metrics, /healthz (every agent's loop is passing)
// and /readyz (every agent holds its lease, its last pass succeeded and its
// host file is written) until ctx ends.
func serveMetrics(ctx context.Context, ln net.Listener, reg *prometheus.Registry, agents []*agent.Agent, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", allHandler(agents, (*agent.Agent).Alive))
	mux.HandleFunc("/readyz", allHandler(agents, (*agent.Agent).Ready))
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
