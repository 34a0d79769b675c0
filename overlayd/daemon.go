package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/overlaynet/overlay/pkg/agent"
	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/firewall"
	"github.com/overlaynet/overlay/pkg/ingress"
	"github.com/overlaynet/overlay/pkg/probe"
	"github.com/overlaynet/overlay/pkg/state"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// run wires one agent per configured network and serves until ctx ends.
// Every error is one line for the operator.
func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	// Bind the metrics address first, so a taken or malformed --metrics-addr
	// stops the start instead of only being logged once serving.
	// It serves from the start: while overlayd waits for etcd or the
	// network config, /healthz says it is alive (a liveness probe must not
	// kill a wait) and /readyz says it is not ready yet.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var web switchHandler
	web.set(startingHandler())
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("--metrics-addr %s: %w; give a free host:port, or leave it empty to disable metrics", cfg.MetricsAddr, err)
		}
		wg.Go(func() { serveHTTP(ctx, ln, &web, log) })
	}
	// What needs no etcd runs while it is dialed: finding iptables (it
	// runs `iptables --version`), and a first start's disk writes in the
	// state dir. The agents make the same writes if these failed, and say
	// why.
	tables := make(chan tablesFound, 1)
	go func() {
		t, err := firewall.NewTables()
		tables <- tablesFound{t, err}
	}()
	stateInit := make(chan struct{})
	go func() {
		defer close(stateInit)
		_ = state.Dir{Path: cfg.StateDir}.Init()
	}()
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
	reg.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}),
		newEtcdCollector(etcd), udpChecksumErrors(log))
	<-stateInit
	// Half the resync interval: a resync pass dumps the peers' entries
	// unless another pass did within half an interval, so drift nothing
	// reported is found within 1.5 intervals, while the passes in between
	// (leases changing) diff against what the last ones left.
	kernel := datapath.NewKernel(cfg.ResyncInterval / 2)
	agents, err := newAgents(cfg, <-tables, agent.Deps{Etcd: etcd, Datapath: kernel, Log: log, Registry: reg})
	if err != nil {
		return err
	}
	if err := startAll(ctx, agents); err != nil {
		return err
	}
	web.set(metricsMux(reg, agents))
	var running sync.WaitGroup
	for _, a := range agents {
		running.Go(func() { a.Run(ctx) })
	}
	running.Wait()
	return nil
}

// tablesFound is firewall.NewTables' answer.
type tablesFound struct {
	tables *firewall.Tables
	err    error
}

// newAgents prepares one agent per network, each with its own rule
// keepers (from found, one hold on the iptables chains for every
// network's keepers); each network's FORWARD rules drop traffic to the
// others.
func newAgents(cfg Config, found tablesFound, base agent.Deps) ([]*agent.Agent, error) {
	tables := found.tables
	if found.err != nil && cfg.ForwardRules {
		return nil, fmt.Errorf("%w (or run with --forward-rules=false)", found.err)
	}
	agents := make([]*agent.Agent, len(cfg.Networks))
	for i, n := range cfg.Networks {
		deps := base
		deps.OtherNetworks = func() []netip.Prefix { return rangesBut(agents, i) }
		// Without iptables there is no masquerade: the agent says so and
		// its host file does not claim it.
		if tables != nil {
			deps.Masq = tables.Masq(n.Name)
			if cfg.ForwardRules {
				deps.Firewall = tables.Forward(n.Name)
			}
		}
		filter := ingress.New(n.Name)
		if cfg.IngressFilter {
			deps.Ingress = filter
		} else if err := filter.Remove(); err != nil {
			// A filter an earlier run left would keep dropping new members.
			return nil, fmt.Errorf("--ingress-filter=false: remove the filter an earlier run left: %w", err)
		}
		if cfg.ProbeInterval > 0 {
			// No logger: the agent logs the peers' state changes, with
			// the network's VXLAN port and what to do.
			deps.Prober = probe.New(probe.Config{Interval: cfg.ProbeInterval, Rate: cfg.ProbeRate})
		}
		acfg := cfg.agentConfig(n)
		for _, other := range cfg.Networks {
			if other.Name != n.Name {
				acfg.Siblings = append(acfg.Siblings, other.Name)
			}
		}
		a, err := agent.New(acfg, deps)
		if err != nil {
			return nil, err
		}
		agents[i] = a
	}
	return agents, nil
}

// rangesBut lists what every agent but the i-th routes: its range and its
// gateways' LANs (an agent that has not published yet adds nothing).
func rangesBut(agents []*agent.Agent, i int) []netip.Prefix {
	var out []netip.Prefix
	for j, a := range agents {
		if j != i {
			out = append(out, a.Routed()...)
		}
	}
	return out
}

// startAll prepares every agent (configs waited for and checked, nothing
// leased or built), then starts them one after another, so "started"
// means every network is ready and a bad config of one network stops the
// start before any network builds anything. When one fails, the others
// give back what they took (leases, ready stamps, locks).
func startAll(ctx context.Context, agents []*agent.Agent) error {
	fail := func(a *agent.Agent, err error) error {
		for _, other := range agents {
			if other != a { // a failed start undoes itself
				other.Abandon()
			}
		}
		if len(agents) > 1 {
			return fmt.Errorf("network %s: %w", a.Network(), err)
		}
		return err
	}
	for _, a := range agents {
		if err := a.Prepare(ctx); err != nil {
			return fail(a, err)
		}
	}
	for _, a := range agents {
		if err := a.Start(ctx); err != nil {
			return fail(a, err)
		}
	}
	return nil
}
