// Package agent is overlayd's logic for one network: it leases this host's
// subnet through a subnet.Session, follows the other hosts' leases and the
// network config in etcd, and keeps everything it owns on this host — the
// VXLAN device, the bridge and its address, the peers' routes, neighbours
// and FDB entries, orphans of earlier configs, ip_forward, the FORWARD
// rules, the host file and its ready stamp — equal to the wanted state,
// through one reconcile loop that is their only writer. One process may
// run several agents (one per network).
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/reconcile"
	"github.com/overlaynet/overlay/pkg/state"
	"github.com/overlaynet/overlay/pkg/statusfile"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// Config is what one agent is told.
type Config struct {
	Network  string
	Iface    string
	PublicIP netip.Addr // overrides the underlay interface's address when valid
	Hostname string
	Bridge   string
	RunDir   string
	StateDir string

	// Kind is what this machine is: subnet.KindHost (the default) runs
	// containers on a leased subnet; subnet.KindEdge runs none and leases
	// one address of the network's edge range.
	Kind subnet.Kind
	// Advertise lists the legacy LANs an edge host forwards for (a
	// gateway); every other member routes them through it.
	Advertise []netip.Prefix
	// Siblings are the other networks this process serves: a config that
	// clashes with one of theirs is refused at start.
	Siblings []string

	LeaseTTL       time.Duration
	ResyncInterval time.Duration
	// Quarantine is how long a subnet stays reserved for this host after its
	// lease ended, so a host that was away briefly gets it back.
	Quarantine time.Duration

	// FixChecksumOffload turns tx checksum offload off on the VXLAN device
	// once a probe finds a peer that answers on the underlay but not
	// through the overlay (the fix for encapsulated packets corrupted by
	// offload; harmless when the cause is a blocked port).
	FixChecksumOffload bool
	// ProbeInterval and ProbeRate are what Deps.Prober was made with, for
	// the status file.
	ProbeInterval time.Duration
	ProbeRate     float64
}

// Deps are the agent's connections to the world.
type Deps struct {
	Etcd     *subnet.Client
	Datapath Datapath
	Firewall Firewall // nil: no FORWARD rules are kept
	// OtherNetworks lists the ranges of the other networks this process
	// serves, which this network's traffic must not reach (nil: none).
	OtherNetworks func() []netip.Prefix
	Masq          Masquerade    // nil: no masquerade is kept (the host file says so)
	Ingress       IngressFilter // nil: no ingress filter is kept
	// Prober probes the peers; nil: no probes (the status says so).
	Prober   Prober
	Log      *slog.Logger
	Registry prometheus.Registerer // nil: metrics are not exported
}

// fileCheckInterval is how often the agent looks at what no kernel event
// reports (its host file, its ready stamp, ip_forward): a stat, a small
// read and a sysctl read, cheap enough to repair their drift within 2s.
const fileCheckInterval = time.Second

// Agent serves one network on this host.
type Agent struct {
	cfg   Config
	deps  Deps
	log   *slog.Logger
	m     *metrics
	state state.Dir

	unlock   func()
	previous state.Network // what the state dir remembered, for the lease
	vtepMAC  string        // fixed once identified; read by the session's Remember
	session  *subnet.Session
	loop     *reconcile.Loop[Wanted]

	// Owned by the control goroutine (and Start before it runs).
	local    local
	rejected map[Rejection]bool
	mtu      int // the overlay MTU last published
	selfGen  uint64
	pidNS    string

	feed    *subnet.LeaseFeed
	configs chan netconf.Config

	// Owned by the reconcile goroutine (and Start before it runs).
	devicesReady bool
	stampAt      time.Time
	forwardCheck throttle
	orphanCheck  throttle
	masqCheck    throttle
	ingressCheck throttle
	memory       memoryReturner
	repairs      map[string]int // drift the current pass repaired, by kind
	changes      map[string]int // entries it wrote or removed for peers that changed
	settled      *Wanted        // the last state a sync of peers wrote whole (nil: not known)

	// Shared between goroutines.
	watched  atomic.Pointer[[]string]
	wantFile atomic.Pointer[hostfile.HostFile]
	routed   atomic.Pointer[[]netip.Prefix]
	wantHeld atomic.Bool
	// wantForward: this host routes (a container host or a gateway).
	wantForward atomic.Bool
	ready       atomic.Bool
	passAt      atomic.Int64 // unix nanos of the last finished pass
	// applied is the last wanted state a pass applied (the metrics read
	// the kernel against it); lastPass and lastRepair describe the last
	// pass and the last one that changed anything; self is who this host
	// is as last published (the status file).
	applied    atomic.Pointer[Wanted]
	lastPass   atomic.Pointer[statusfile.Pass]
	lastRepair atomic.Pointer[statusfile.Pass]
	self       atomic.Pointer[selfView]
	sessionRef atomic.Pointer[subnet.Session]
	probeErr   atomic.Pointer[error]
	// probeMoves counts the peers' probe state changes seen and the
	// target sets given, so the status file is rewritten when one
	// happened.
	probeMoves atomic.Uint64
}

func (c Config) checkKind() error {
	switch {
	case c.Kind != subnet.KindHost && c.Kind != subnet.KindEdge:
		return fmt.Errorf("agent: kind %q is neither %q nor %q", c.Kind, subnet.KindHost, subnet.KindEdge)
	case len(c.Advertise) > 0 && c.Kind != subnet.KindEdge:
		return errors.New("only an edge host advertises LANs: add --mode edge, or drop --advertise")
	}
	for _, p := range c.Advertise {
		if err := subnet.ValidateAdvertised(p); err != nil {
			return err
		}
	}
	return nil
}

// New checks cfg and prepares an agent; nothing is touched before Start.
func New(cfg Config, deps Deps) (*Agent, error) {
	if err := netconf.ValidateName(cfg.Network); err != nil {
		return nil, err
	}
	if deps.Etcd == nil || deps.Datapath == nil {
		return nil, errors.New("agent: Etcd and Datapath are required")
	}
	if cfg.Kind == "" {
		cfg.Kind = subnet.KindHost
	}
	if err := cfg.checkKind(); err != nil {
		return nil, err
	}
	if cfg.ResyncInterval <= 0 || cfg.LeaseTTL < 2*time.Second {
		return nil, fmt.Errorf("agent: resync interval %s and lease TTL %s must be positive (TTL ≥ 2s)", cfg.ResyncInterval, cfg.LeaseTTL)
	}
	if deps.Log == nil {
		deps.Log = slog.New(slog.DiscardHandler)
	}
	log := deps.Log.With("network", cfg.Network)
	if deps.Ingress != nil && deps.Registry != nil {
		deps.Registry.MustRegister(ingressDropped(cfg.Network, deps.Ingress, log))
	}
	a := &Agent{
		cfg: cfg, deps: deps, log: log, m: newMetrics(cfg.Network, deps.Registry),
		state: state.Dir{Path: cfg.StateDir}, rejected: map[Rejection]bool{},
		feed: subnet.NewLeaseFeed(), configs: make(chan netconf.Config), pidNS: statusfile.PIDNamespace(),
	}
	if deps.Registry != nil {
		a.registerCollectors(deps.Registry)
	}
	return a, nil
}

// Network is the name of the network this agent serves.
func (a *Agent) Network() string { return a.cfg.Network }

// Routed lists what this network routes, as last published: its range and
// the LANs its gateways advertise (nil before Start). The other networks
// of the process drop traffic to these.
func (a *Agent) Routed() []netip.Prefix {
	if r := a.routed.Load(); r != nil {
		return *r
	}
	return nil
}

// Abandon undoes a successful Prepare or Start of an agent that will not
// Run (another network of the process failed to start): the lease is
// given back at once, the ready stamp removed (STATUS must not say ready
// for a subnet no longer held) and the state dir unlocked; the kernel
// state stays, as on SIGTERM.
func (a *Agent) Abandon() {
	if a.session != nil {
		a.withdraw()
		if err := hostfile.RemoveReady(hostfile.ReadyPath(a.cfg.RunDir, a.cfg.Network)); err != nil {
			a.log.Warn("cannot remove the ready stamp", "err", err)
		}
	}
	if a.unlock != nil {
		a.unlock()
		a.unlock = nil
	}
}

// Ready reports whether the lease is held, the last pass succeeded and the
// host file is on disk (/readyz). The lease and the file are looked at
// now, not as of the last pass: a lost lease or a deleted host file turns
// it false at once, until a pass has put things right.
func (a *Agent) Ready() bool {
	return a.ready.Load() && a.wantHeld.Load() && fileExists(hostfile.Path(a.cfg.RunDir, a.cfg.Network))
}

// Alive reports whether the reconcile loop finished a pass recently: a
// hung loop turns it false (/healthz).
func (a *Agent) Alive() bool {
	last := a.passAt.Load()
	return last != 0 && time.Since(time.Unix(0, last)) < 3*a.cfg.ResyncInterval+time.Minute
}

// Start does everything that can fail for a reason the operator must fix:
// it locks the state dir, waits for the network config, takes the lease and
// programs the datapath once, so "started" means "ready". Its errors are
// one line for the operator. A failure after leasing withdraws the lease at
// once, so peers do not route to a host that never came up.
func (a *Agent) Start(ctx context.Context) error {
	if err := a.Prepare(ctx); err != nil {
		return err
	}
	if err := a.start(ctx); err != nil {
		a.unlock()
		a.unlock = nil
		return err
	}
	return nil
}

// Prepare does what needs no lease: it locks the state dir, reads who
// this host is, waits for the network config and checks it. Nothing is
// leased or built, so a process serving several networks prepares them all
// before any of them takes a lease (Start prepares if this was not done).
func (a *Agent) Prepare(ctx context.Context) error {
	if a.unlock != nil {
		return nil
	}
	unlock, err := a.state.Lock(a.cfg.Network)
	if errors.Is(err, state.ErrLocked) {
		return fmt.Errorf("another overlayd already serves network %s with state dir %s (%v); stop it, or give this one its own --state-dir", a.cfg.Network, a.cfg.StateDir, err)
	}
	if err != nil {
		return fmt.Errorf("state dir %s: %w; check --state-dir is writable", a.cfg.StateDir, err)
	}
	if err := a.prepare(ctx); err != nil {
		unlock()
		return err
	}
	a.unlock = unlock
	return nil
}

func (a *Agent) prepare(ctx context.Context) error {
	l, previous, err := a.identify()
	if err != nil {
		return err
	}
	if l.Config, err = a.waitConfig(ctx); err != nil {
		return err
	}
	if err := a.checkConfig(ctx, l); err != nil {
		return err
	}
	a.local, a.vtepMAC, a.previous = l, l.VTEPMAC.String(), previous
	if l.Config.IPMasq && !l.CanMasq && l.Kind == subnet.KindHost {
		a.log.Warn("the network asks for masquerade (ipMasq) but iptables is not usable here: containers reach only the overlay, and the host file says ipMasq false")
	}
	if a.local.Routes, err = a.readRoutes(); err != nil {
		return err
	}
	return a.checkMembership(ctx)
}

func (a *Agent) start(ctx context.Context) error {
	if err := a.lease(ctx, a.previous); err != nil {
		return err
	}
	if err := a.firstPass(ctx); err != nil {
		if ctx.Err() == nil {
			a.withdraw()
		} else {
			a.session.Stop()
		}
		return err
	}
	w := a.current()
	msg := "ready"
	if !a.ready.Load() {
		msg = "started; not ready yet (the last pass failed in part), retrying"
	}
	a.log.Info(msg, "kind", a.local.Kind, "subnet", a.local.Subnet, "vtep", w.VXLAN.Name, "vtep_mac", a.local.VTEPMAC.String(),
		"public_ip", a.local.PublicIP, "underlay", a.local.Underlay.Name, "mtu", w.HostFile.MTU, "peers", len(w.Peers),
		"host_file", hostfile.Path(a.cfg.RunDir, a.cfg.Network))
	return nil
}

// identify reads who this host is: its ID and saved state, and its underlay.
func (a *Agent) identify() (local, state.Network, error) {
	hostID, err := a.state.HostID()
	if err != nil {
		return local{}, state.Network{}, fmt.Errorf("state dir %s: %w; check --state-dir is writable", a.cfg.StateDir, err)
	}
	saved, err := a.state.LoadNetwork(a.cfg.Network)
	if err != nil {
		return local{}, state.Network{}, err
	}
	mac, _ := net.ParseMAC(saved.VTEPMAC)
	underlay, err := a.deps.Datapath.FindUnderlay(a.cfg.Iface)
	if err != nil {
		return local{}, state.Network{}, fmt.Errorf("underlay: %w", err)
	}
	if underlay.MTU-datapath.VXLANOverhead < netconf.MinMTU {
		return local{}, state.Network{}, fmt.Errorf("underlay %s has MTU %d; VXLAN needs at least %d", underlay.Name, underlay.MTU, netconf.MinMTU+datapath.VXLANOverhead)
	}
	publicIP := underlay.IP
	if a.cfg.PublicIP.IsValid() {
		publicIP = a.cfg.PublicIP
	}
	l := local{Network: a.cfg.Network, Kind: a.cfg.Kind, Advertise: a.cfg.Advertise, HostID: hostID, CanMasq: a.deps.Masq != nil,
		Underlay: underlay, PublicIP: publicIP, VTEPMAC: mac, Bridge: a.cfg.Bridge}
	if l.Kind == subnet.KindEdge {
		l.Bridge = "" // an edge host has no containers to bridge
	}
	return l, saved, nil
}

func (a *Agent) waitConfig(ctx context.Context) (netconf.Config, error) {
	key := a.deps.Etcd.Keys().Config(a.cfg.Network)
	cfg, err := a.deps.Etcd.WaitNetworkConfig(ctx, a.cfg.Network, func() {
		a.log.Warn("waiting for the network config; write it with: overlayctl --etcd-endpoints URLS network set "+a.cfg.Network+" --cidr CIDR", "key", key)
	})
	if err != nil && ctx.Err() == nil {
		return cfg, fmt.Errorf("%w; fix it with: overlayctl network set %s --cidr CIDR ...", err, a.cfg.Network)
	}
	return cfg, err
}

// checkConfig refuses a network config this host cannot serve: one that
// clashes with another network's, or whose MTU override does not fit this
// host's underlay. overlayctl refuses the same configs; this catches one
// written around it, before anything is built.
func (a *Agent) checkConfig(ctx context.Context, l local) error {
	err := l.Config.CheckUnderlay("this host ("+l.Underlay.Name+")", l.Underlay.MTU)
	if err == nil {
		err = a.checkSiblings(ctx, l.Config)
	}
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("%w; fix it with: overlayctl network set %s ...", err, a.cfg.Network)
	}
	return err
}

// checkSiblings refuses a config that clashes with another network this
// process serves (their devices, routes or ports would collide here). A
// clash with a network served only elsewhere is logged: it breaks nothing
// on this host, and networks written before these checks existed must not
// stop hosts on an upgrade.
func (a *Agent) checkSiblings(ctx context.Context, cfg netconf.Config) error {
	others, err := a.deps.Etcd.OtherNetworkConfigs(ctx, a.cfg.Network)
	if err != nil {
		return err
	}
	served, elsewhere := map[string]netconf.Config{}, map[string]netconf.Config{}
	for name, c := range others {
		if slices.Contains(a.cfg.Siblings, name) {
			served[name] = c
		} else {
			elsewhere[name] = c
		}
	}
	if err := cfg.CheckOthers(elsewhere); err != nil {
		a.log.Warn("the network config clashes with a network this host does not serve; fix it before a host serves both", "err", err)
	}
	return cfg.CheckOthers(served) // the caller names the network
}

// lease starts the lease session and takes the first lease.
func (a *Agent) lease(ctx context.Context, saved state.Network) error {
	l := &a.local
	a.notePreviousLease(saved.Subnet)
	rec := subnet.Record{Kind: l.Kind, HostID: l.HostID, Hostname: a.cfg.Hostname, PublicIP: l.PublicIP, VTEPMAC: l.VTEPMAC.String(),
		UnderlayMTU: l.Underlay.MTU, Advertise: l.Advertise}
	a.session = a.deps.Etcd.NewSession(subnet.AcquireRequest{
		Network: a.cfg.Network, Config: l.Config, Record: rec,
		Previous: saved.Subnet, PreviousLease: saved.Lease,
		TTL: a.cfg.LeaseTTL, Quarantine: a.cfg.Quarantine, Remember: a.remember,
	}, a.log.With("component", "lease"))
	st, err := a.session.Start(ctx)
	if err != nil {
		return a.leaseError(err)
	}
	a.sessionRef.Store(a.session)
	l.Subnet, l.Held = st.Subnet, true
	a.m.leaseAcquired.Inc()
	a.m.leaseHeld.Set(1)
	a.m.setLeaseInfo(*l)
	return nil
}

// notePreviousLease logs why this host will not get its previous slot
// back: it switched between container host and edge host, or the network's
// ranges changed.
func (a *Agent) notePreviousLease(prev netip.Prefix) {
	l := a.local
	other := subnet.KindEdge
	if l.Kind == subnet.KindEdge {
		other = subnet.KindHost
	}
	switch {
	case !prev.IsValid() || l.Kind.Pool(l.Config).Contains(prev):
	case other.Pool(l.Config).Contains(prev):
		a.log.Warn("this machine was a member of kind "+string(other)+" and now joins as "+string(l.Kind)+": it takes a new slot; its old key expires after the lease TTL",
			"previous", prev)
	default:
		a.log.Warn("previous lease is not part of the network's "+string(l.Kind)+" range any more; taking a new one", "previous", prev, "network", l.Config.Network)
	}
}

func (a *Agent) leaseError(err error) error {
	var conflict *subnet.HostConflictError
	switch {
	case errors.As(err, &conflict) && conflict.Cloned:
		return fmt.Errorf("%w. Two machines must not share a host ID: on this machine (the one that should change), stop overlayd, delete %s and start it again; it will get a new ID and subnet", err, a.state.HostIDPath())
	case errors.As(err, &conflict):
		return fmt.Errorf("%w. Stop the other overlayd (same --state-dir contents, e.g. a copied %s) before starting this one", err, a.state.HostIDPath())
	case errors.Is(err, subnet.ErrNetworkFull) && a.local.Kind == subnet.KindEdge:
		return fmt.Errorf("lease an edge address in network %s: %w; release the leases of edge hosts that are gone (overlayctl leases, overlayctl lease release HOST|ADDRESS) or give the network a larger --edge-cidr", a.cfg.Network, err)
	case errors.Is(err, subnet.ErrNetworkFull):
		return fmt.Errorf("lease a subnet in network %s: %w; release the leases of hosts that are gone (overlayctl leases, overlayctl lease release HOST|SUBNET) or give the network a larger --cidr", a.cfg.Network, err)
	}
	return fmt.Errorf("lease a subnet in network %s: %w", a.cfg.Network, err)
}

// remember persists the subnet and etcd lease before the session writes
// the key (subnet.AcquireRequest.Remember).
func (a *Agent) remember(s netip.Prefix, lease int64) error {
	return a.state.SaveNetwork(a.cfg.Network, state.Network{Subnet: s, VTEPMAC: a.vtepMAC, Lease: lease})
}

// firstPass lists the leases and applies the wanted state once. One bad
// peer must not keep this host off the network: only a failure of the
// local devices or the host file fails the start.
func (a *Agent) firstPass(ctx context.Context) error {
	leases, _, err := a.deps.Etcd.Leases(ctx, a.cfg.Network)
	if err != nil {
		return fmt.Errorf("list leases: %w", err)
	}
	a.feed.Replace(leases)
	a.loop = reconcile.New(a.apply, a.cfg.ResyncInterval, a.log.With("component", "reconcile"))
	w := a.publish()
	if err := a.apply(ctx, w); err != nil {
		if !a.devicesReady {
			return fmt.Errorf("program datapath: %s; overlayd needs CAP_NET_ADMIN (run it as root) and the vxlan and bridge kernel features",
				strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		a.log.Error("some of the datapath could not be programmed; retrying", "err", err)
	}
	return nil
}

func (a *Agent) withdraw() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.session.Withdraw(ctx); err != nil {
		a.log.Error("could not withdraw the lease; peers drop it when its TTL runs out", "err", err)
	}
}

// current builds the wanted state from what the control goroutine holds.
func (a *Agent) current() Wanted {
	w, _ := buildWanted(a.local, a.feed.Snapshot())
	return w
}

// Run serves until ctx ends; Start must have succeeded. On return the
// kernel state is left in place and the lease is not revoked, so
// containers keep working while overlayd restarts or is upgraded.
func (a *Agent) Run(ctx context.Context) {
	defer a.unlock()
	var wg sync.WaitGroup
	wg.Go(func() { a.loop.Run(ctx) })
	wg.Go(func() { a.session.Run(ctx) })
	wg.Go(func() { a.deps.Etcd.FollowLeases(ctx, a.cfg.Network, a.feed) })
	wg.Go(func() {
		a.deps.Etcd.WatchNetworkConfig(ctx, a.cfg.Network, func(c netconf.Config) { deliver(ctx, a.configs, c) })
	})
	wg.Go(func() { a.deps.Datapath.Watch(ctx, a.watchedDevices, a.kernelChanged) })
	wg.Go(func() { a.checkFiles(ctx) })
	wg.Go(func() { a.runProber(ctx) })
	wg.Go(func() { a.reportStatus(ctx) })
	a.control(ctx)
	wg.Wait()
	a.memory.stop()
	a.log.Info("stopped; kernel state and lease left in place")
}

func deliver[T any](ctx context.Context, ch chan<- T, v T) {
	select {
	case ch <- v:
	case <-ctx.Done():
	}
}
