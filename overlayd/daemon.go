package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/firewall"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/reconcile"
	"github.com/overlaynet/overlay/pkg/state"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// Reacquire backoff after a lost lease.
const (
	reacquireMin = 200 * time.Millisecond
	reacquireMax = 10 * time.Second
)

// daemon is one overlayd serving one network. It owns three goroutines: the
// lease watch (etcd → desired state), the lease keeper (renew, reassert,
// reacquire) and the reconcile loop (desired state → kernel + host file,
// the only writer of either).
type daemon struct {
	cfg     Config
	log     *slog.Logger
	etcd    *subnet.Client
	state   state.Dir
	loop    *reconcile.Loop[desired]
	metrics *metrics
	// metricsLn is bound at start when --metrics-addr is set, else nil.
	metricsLn net.Listener

	// forward keeps the FORWARD accept rules; nil with --forward-rules=false.
	// forwardFor and forwardAt say for which range and when they were last
	// checked; only the reconcile loop touches these.
	forward    *firewall.Forward
	forwardFor netip.Prefix
	forwardAt  time.Time

	// rec is the lease record this host publishes; fixed once joined.
	rec subnet.Record

	mu     sync.Mutex
	local  local
	leases []subnet.Lease
	held   *subnet.HeldLease

	reassert chan struct{}
	written  hostfile.HostFile // last host file written; only the loop touches it
}

// startupError is a failure at start that needs the operator: main prints it
// as one line and exits non-zero.
type startupError struct{ err error }

func (e startupError) Error() string { return e.err.Error() }
func (e startupError) Unwrap() error { return e.err }

func fail(format string, args ...any) error { return startupError{fmt.Errorf(format, args...)} }

func closeListener(ln net.Listener) {
	if ln != nil {
		ln.Close()
	}
}

// run joins the network and serves until ctx ends. On return the kernel
// state is left in place so containers keep working across restarts.
func run(ctx context.Context, cfg Config, log *slog.Logger) error {
	d, err := start(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer d.etcd.Close()
	var wg sync.WaitGroup
	wg.Go(func() { d.loop.Run(ctx) })
	wg.Go(func() { d.etcd.WatchLeases(ctx, cfg.Network, d.onLeases) })
	wg.Go(func() { d.keepLease(ctx) })
	if d.metricsLn != nil {
		wg.Go(func() { d.metrics.serve(ctx, d.metricsLn, log) })
	}
	<-ctx.Done()
	wg.Wait()
	log.Info("stopped; kernel state left in place", "network", cfg.Network)
	return nil
}

// start does everything that can fail for a reason the operator must fix,
// and the first full programming of the datapath, before serving.
func start(ctx context.Context, cfg Config, log *slog.Logger) (*daemon, error) {
	st := state.Dir{Path: cfg.StateDir}
	hostID, err := st.HostID()
	if err != nil {
		return nil, fail("state dir %s: %w; check --state-dir is writable", cfg.StateDir, err)
	}
	saved, err := st.LoadNetwork(cfg.Network)
	if err != nil {
		return nil, fail("%w", err)
	}
	mac, _ := net.ParseMAC(saved.VTEPMAC)

	underlay, err := datapath.FindUnderlay(cfg.Iface)
	if err != nil {
		return nil, fail("underlay: %w", err)
	}
	// Bind the metrics address now, so a taken or malformed --metrics-addr
	// stops the start instead of only being logged once serving.
	var metricsLn net.Listener
	if cfg.MetricsAddr != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return nil, fail("--metrics-addr %s: %w; give a free host:port, or leave it empty to disable metrics", cfg.MetricsAddr, err)
		}
	}
	etcd, err := subnet.Connect(ctx, subnet.ClientConfig{
		Endpoints: cfg.EtcdEndpoints, Prefix: cfg.EtcdPrefix, DialTimeout: cfg.EtcdTimeout,
		CAFile: cfg.EtcdCAFile, CertFile: cfg.EtcdCertFile, KeyFile: cfg.EtcdKeyFile, Logger: log.With("component", "subnet"),
	})
	if err != nil {
		closeListener(metricsLn)
		return nil, fail("%w; check --etcd-endpoints and that etcd is running", err)
	}
	d := &daemon{cfg: cfg, log: log, etcd: etcd, state: st, metrics: newMetrics(), metricsLn: metricsLn, reassert: make(chan struct{}, 1)}
	if cfg.ForwardRules {
		if d.forward, err = firewall.NewForward(cfg.Network); err != nil {
			closeListener(metricsLn)
			etcd.Close()
			return nil, fail("%w (--forward-rules=false)", err)
		}
	}
	if err := d.join(ctx, hostID, underlay, mac, saved.Subnet); err != nil {
		closeListener(metricsLn)
		etcd.Close()
		return nil, err
	}
	return d, nil
}

// join waits for the network config, leases a subnet and programs the
// datapath once, so "started" means "ready".
func (d *daemon) join(ctx context.Context, hostID string, underlay datapath.Underlay, mac net.HardwareAddr, previous netip.Prefix) error {
	cfg := d.cfg
	key := d.etcd.Keys().Config(cfg.Network)
	netCfg, err := d.etcd.WaitNetworkConfig(ctx, cfg.Network, func() {
		d.log.Warn("waiting for the network config; write it with: overlayctl --etcd-endpoints URLS network set "+cfg.Network+" --cidr CIDR", "key", key)
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fail("%w; fix it with: overlayctl network set %s --cidr CIDR ...", err, cfg.Network)
	}
	if underlay.MTU-datapath.VXLANOverhead < 576 {
		return fail("underlay %s has MTU %d; VXLAN needs at least %d", underlay.Name, underlay.MTU, 576+datapath.VXLANOverhead)
	}
	publicIP := underlay.IP
	if cfg.PublicIP.IsValid() {
		publicIP = cfg.PublicIP
	}
	if previous.IsValid() && !netCfg.Contains(previous) {
		d.log.Warn("previous subnet is not part of the network any more; taking a new one", "previous", previous, "network", netCfg.Network)
	}
	d.local = local{Network: cfg.Network, Config: netCfg, HostID: hostID, Underlay: underlay, VTEPMAC: mac, Bridge: cfg.Bridge}
	d.rec = subnet.Record{HostID: hostID, Hostname: cfg.Hostname, PublicIP: publicIP, VTEPMAC: mac.String(), UnderlayMTU: underlay.MTU}
	held, err := d.etcd.Acquire(ctx, subnet.AcquireRequest{Network: cfg.Network, Config: netCfg, Record: d.rec, Previous: previous, TTL: cfg.LeaseTTL})
	if errors.Is(err, subnet.ErrNetworkFull) {
		return fail("lease a subnet in network %s: %w; delete leases of hosts that are gone (overlayctl leases, overlayctl leases delete SUBNET) or give the network a larger --cidr", cfg.Network, err)
	}
	if err != nil {
		return fail("lease a subnet in network %s: %w", cfg.Network, err)
	}
	d.adoptLease(held)
	if err := datapath.EnableIPv4Forwarding(); err != nil {
		held.Stop()
		return fail("%w", err)
	}
	leases, _, err := d.etcd.Leases(ctx, cfg.Network)
	if err != nil {
		held.Stop()
		return fail("list leases: %w", err)
	}
	d.loop = reconcile.New(d.apply, cfg.ResyncInterval, d.log.With("component", "reconcile"))
	first := d.setLeases(leases)
	if err := d.apply(ctx, first); err != nil {
		if d.written != first.HostFile {
			// The local devices could not be made: nothing can work here.
			held.Stop()
			return fail("program datapath: %w", err)
		}
		// Only some peers failed; the loop retries them, and one bad
		// peer must not keep this host off the network.
		d.log.Error("some peers could not be programmed; retrying", "err", err)
	}
	d.log.Info("ready", "network", cfg.Network, "subnet", held.Subnet, "vtep", first.VXLAN.Name, "vtep_mac", mac.String(),
		"public_ip", publicIP, "underlay", underlay.Name, "mtu", first.HostFile.MTU, "peers", len(first.Peers),
		"host_file", hostfile.Path(cfg.RunDir, cfg.Network))
	return nil
}

// adoptLease records a (new) held lease and remembers its subnet on disk.
func (d *daemon) adoptLease(held *subnet.HeldLease) {
	d.mu.Lock()
	old := d.local.Subnet
	d.held, d.local.Subnet = held, held.Subnet
	d.mu.Unlock()
	if old.IsValid() && old != held.Subnet {
		d.log.Warn("subnet changed; containers started before keep their old addresses until restarted", "old", old, "new", held.Subnet)
	}
	if err := d.state.SaveNetwork(d.cfg.Network, state.Network{Subnet: held.Subnet, VTEPMAC: d.rec.VTEPMAC}); err != nil {
		d.log.Error("cannot remember subnet; a restart may not reclaim it", "err", err)
	}
	d.metrics.leaseAcquisitions.Inc()
}

// setLeases stores a lease snapshot and publishes the resulting desired state.
func (d *daemon) setLeases(leases []subnet.Lease) desired {
	d.mu.Lock()
	d.leases = leases
	want := buildDesired(d.local, leases)
	ours := false
	for _, l := range leases {
		ours = ours || (l.Subnet == d.local.Subnet && l.HostID == d.local.HostID)
	}
	// Publish under mu: the watch and the keeper both call this, and a
	// snapshot built before a subnet change must not be published after
	// the one built from the new subnet (Set never blocks).
	d.loop.Set(want)
	d.mu.Unlock()
	if !ours {
		select { // our key is gone or overwritten: let the keeper put it back
		case d.reassert <- struct{}{}:
		default:
		}
	}
	return want
}

func (d *daemon) onLeases(leases []subnet.Lease) {
	d.log.Debug("lease snapshot", "leases", len(leases))
	d.setLeases(leases)
}

// rebuild republishes the desired state after a local change (new subnet).
func (d *daemon) rebuild() {
	d.mu.Lock()
	leases := d.leases
	d.mu.Unlock()
	d.setLeases(leases)
}

// apply makes the kernel and the host file match want. It runs only on the
// reconcile loop's goroutine (and once before the loop starts).
func (d *daemon) apply(_ context.Context, want desired) error {
	start := time.Now()
	defer func() { d.metrics.reconcileSeconds.Observe(time.Since(start).Seconds()) }()
	d.metrics.reconciles.Inc()
	vx, err := datapath.ReconcileVXLAN(want.VXLAN)
	if err != nil {
		return d.failed(fmt.Errorf("ensure vxlan device %s: %w", want.VXLAN.Name, err))
	}
	if vx.Replaced != "" {
		d.log.Warn("vxlan device was incompatible; recreated it", "device", want.VXLAN.Name, "reason", vx.Replaced)
	} else if vx.Created {
		d.log.Info("vxlan device created", "device", want.VXLAN.Name)
	}
	if err := datapath.EnsureBridge(want.Bridge); err != nil {
		return d.failed(fmt.Errorf("ensure bridge %s: %w", want.Bridge.Name, err))
	}
	plan, peerErr := datapath.SyncPeers(want.VXLAN.Name, want.Peers)
	d.metrics.peers.Set(float64(len(want.Peers)))
	if !plan.Empty() {
		d.log.Info("peers reconciled", "peers", len(want.Peers),
			"routes_added", len(plan.AddRoutes), "routes_deleted", len(plan.DelRoutes),
			"neighs_added", len(plan.AddNeighs), "neighs_deleted", len(plan.DelNeighs),
			"fdb_added", len(plan.AddFDB), "fdb_deleted", len(plan.DelFDB))
	}
	// The host file depends only on the local devices, which are ready: a
	// peer that cannot be programmed must not keep the plugins on a stale
	// subnet after this host took a new one.
	if want.HostFile != d.written {
		path := hostfile.Path(d.cfg.RunDir, d.cfg.Network)
		if err := hostfile.Write(path, want.HostFile); err != nil {
			return d.failed(err)
		}
		d.written = want.HostFile
		d.metrics.ready.Store(true)
	}
	if peerErr != nil {
		return d.failed(fmt.Errorf("sync peers on %s: %w", want.VXLAN.Name, peerErr))
	}
	if err := d.ensureForward(want.HostFile.Network); err != nil {
		return d.failed(fmt.Errorf("forward rules: %w", err))
	}
	d.metrics.healthy.Store(true)
	return nil
}

// ensureForward checks the FORWARD rules at most once per resync interval:
// each check starts several iptables processes (tens of ms), which must not
// slow the passes that lease events trigger. Drift is still repaired within
// one interval.
func (d *daemon) ensureForward(network netip.Prefix) error {
	if d.forward == nil || (network == d.forwardFor && time.Since(d.forwardAt) < d.cfg.ResyncInterval) {
		return nil
	}
	if err := d.forward.Ensure(network); err != nil {
		return err
	}
	d.forwardFor, d.forwardAt = network, time.Now()
	return nil
}

// failed records a failed reconcile pass (so /healthz reports it) and
// returns err.
func (d *daemon) failed(err error) error {
	d.metrics.reconcileErrors.Inc()
	d.metrics.healthy.Store(false)
	return err
}

// keepLease keeps this host's lease in etcd: it puts a deleted key back and
// re-leases after the etcd lease is lost (e.g. etcd was unreachable for
// longer than the TTL). On shutdown it stops renewing without revoking.
func (d *daemon) keepLease(ctx context.Context) {
	for {
		d.mu.Lock()
		held := d.held
		d.mu.Unlock()
		select {
		case <-ctx.Done():
			held.Stop()
			return
		case <-d.reassert:
			err := held.Reassert(ctx)
			switch {
			case errors.Is(err, subnet.ErrSubnetTaken):
				d.log.Error("another host took this host's subnet; leasing again", "subnet", held.Subnet)
				held.Stop()
				d.reacquire(ctx, held.Subnet)
			case err != nil && ctx.Err() == nil:
				d.log.Warn("could not put back this host's lease key", "subnet", held.Subnet, "err", err)
			}
		case <-held.Done():
			d.log.Warn("etcd lease lost; leasing again", "subnet", held.Subnet)
			held.Stop() // releases its keep-alive context; Done is already closed
			d.reacquire(ctx, held.Subnet)
		}
	}
}

// reacquire leases a subnet again, preferring the one just lost, retrying
// with backoff until it succeeds or ctx ends.
func (d *daemon) reacquire(ctx context.Context, previous netip.Prefix) {
	d.mu.Lock()
	netCfg := d.local.Config
	d.mu.Unlock()
	backoff := reacquireMin
	for ctx.Err() == nil {
		held, err := d.etcd.Acquire(ctx, subnet.AcquireRequest{Network: d.cfg.Network, Config: netCfg, Record: d.rec, Previous: previous, TTL: d.cfg.LeaseTTL})
		if err == nil {
			d.adoptLease(held)
			d.log.Info("lease reacquired", "subnet", held.Subnet)
			d.rebuild()
			return
		}
		d.log.Warn("lease a subnet failed; retrying", "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(backoff*2, reacquireMax)
	}
}
