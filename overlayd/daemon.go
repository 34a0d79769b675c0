package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/overlaynet/overlay/pkg/agent"
	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/firewall"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// run wires one agent for the configured network and serves until ctx
// ends. Every error is one line for the operator.
func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	// Bind the metrics address first, so a taken or malformed --metrics-addr
	// stops the start instead of only being logged once serving.
	var ln net.Listener
	if cfg.MetricsAddr != "" {
		var err error
		if ln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics-addr %s: %w; give a free host:port, or leave it empty to disable metrics", cfg.MetricsAddr, err)
		}
		defer ln.Close()
	}
	etcd, err := subnet.Connect(ctx, subnet.ClientConfig{
		Endpoints: cfg.EtcdEndpoints, Prefix: cfg.EtcdPrefix, DialTimeout: cfg.EtcdTimeout,
		CAFile: cfg.EtcdCAFile, CertFile: cfg.EtcdCertFile, KeyFile: cfg.EtcdKeyFile, Logger: log.With("component", "subnet"),
	})
	if errors.Is(err, subnet.ErrTLS) {
		return err // already names the file or flag to fix
	}
	if err != nil {
		return fmt.Errorf("%w; check --etcd-endpoints and that etcd is running", err)
	}
	defer etcd.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	deps := agent.Deps{Etcd: etcd, Datapath: datapath.Kernel{}, Log: log, Registry: reg}
	if cfg.ForwardRules {
		fw, err := firewall.NewForward(cfg.Network)
		if err != nil {
			return fmt.Errorf("%w (or run with --forward-rules=false)", err)
		}
		deps.Firewall = fw
	}
	a, err := agent.New(cfg.agentConfig(), deps)
	if err != nil {
		return err
	}
	if err := a.Start(ctx); err != nil {
		return err
	}
	done := make(chan struct{})
	if ln != nil {
		go func() { defer close(done); serveMetrics(ctx, ln, reg, []*agent.Agent{a}, log) }()
	} else {
		close(done)
	}
	a.Run(ctx)
	<-done
	return nil
}
