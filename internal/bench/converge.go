package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/state"
)

// ConvergeConfig says what the convergence row runs.
type ConvergeConfig struct {
	// Prefix makes namespace names unique to this run.
	Prefix string
	// Bin holds overlayd, overlayctl and devetcd.
	Bin string
	// WorkDir holds the cluster's directories.
	WorkDir string
	// Rounds is how many joins of each kind are measured.
	Rounds int
	// DaemonArgs are extra overlayd flags (e.g. --log-level debug to
	// profile a run from the daemons' logs).
	DaemonArgs []string
	// Baseline, when set, holds an older overlayd whose joins alternate
	// with the build under test's (before and after, under the same noise).
	Baseline string
	// Progress, when set, gets one line per round.
	Progress io.Writer
}

// ConvergeResult is one kind of join: the times from the moment the bench
// execs the new host's overlayd (from a thread in its namespace) until the other
// hosts have a route and an FDB entry for it (the later of the two
// hosts); until its host file appears (the CNI plugins' ADD works: the
// host is ready); until its ready stamp appears (the plugins' STATUS says
// ready); and until it logs "ready" (its first pass is over).
type ConvergeResult struct {
	Kind string `json:"kind"`
	// Build is "" for the build under test, "baseline" for the older one.
	Build      string  `json:"build,omitempty"`
	Route      Summary `json:"route"`
	FDB        Summary `json:"fdb"`
	HostFile   Summary `json:"host_file"`
	ReadyStamp Summary `json:"ready_stamp"`
	Logged     Summary `json:"ready_logged"`
}

// Kinds of join.
const (
	// FirstJoin is a machine joining for the first time: a new namespace,
	// an empty state dir (a new host ID, VTEP MAC and subnet).
	FirstJoin = "first join"
	// Rejoin is a host coming back after a reboot while its lease was
	// deleted (or expired): its state dir (host ID, subnet, VTEP MAC)
	// stays, its kernel state and run dir are new, and it leases its old
	// subnet again.
	Rejoin = "rejoin after reboot"
)

const (
	convergeNetwork = "default"
	convergeCIDR    = "10.244.0.0/16"
	// convergeTimeout bounds each wait; it fails the run, it is no target.
	convergeTimeout = 30 * time.Second
)

// RunConverge builds a cluster of two running hosts and measures a third
// host joining it, cfg.Rounds times as a first join (a fresh host each
// round) and cfg.Rounds times as a rejoin; with cfg.Baseline, joins of
// both builds alternate. The other hosts' kernels report the route and
// FDB entry (netlink notifications, see kernelEvents), the new host's run
// dir reports the host file (inotify): no time here comes from a poll.
func RunConverge(ctx context.Context, cfg ConvergeConfig) (_ []ConvergeResult, err error) {
	builds := []build{{dir: cfg.Bin}}
	if cfg.Baseline != "" {
		builds = append(builds, build{name: "baseline", dir: cfg.Baseline})
	}
	// Hosts are numbered 1..; each needs an address 198.18.0.(10+N).
	if hosts := 2 + len(builds)*(cfg.Rounds+1); cfg.Rounds < 1 || hosts > 240 {
		return nil, fmt.Errorf("convergence rounds %d: give 1 to %d", cfg.Rounds, 238/len(builds)-1)
	}
	c, err := NewCluster(ctx, cfg.Prefix, cfg.Bin, cfg.WorkDir, convergeNetwork)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	if _, err := c.Ctl("network", "set", convergeNetwork, "--cidr", convergeCIDR); err != nil {
		return nil, err
	}
	var others []*kernelEvents
	defer func() {
		for _, k := range others {
			k.Close()
		}
	}()
	for n := 1; n <= 2; n++ {
		h, err := c.AddHost(n)
		if err != nil {
			return nil, err
		}
		if _, err := h.StartDaemon(cfg.DaemonArgs...); err != nil {
			return nil, err
		}
		k, err := watchKernel(h.NS)
		if err != nil {
			return nil, err
		}
		others = append(others, k)
	}
	for _, h := range c.hosts {
		if err := h.WaitHostFile(ctx, convergeTimeout); err != nil {
			return nil, err
		}
	}
	j := joiner{c: c, others: others, args: cfg.DaemonArgs, progress: cfg.Progress}
	next := 3 // the next host's number

	first := make([]*joinSamples, len(builds))
	for b := range builds {
		first[b] = &joinSamples{kind: FirstJoin, build: builds[b]}
	}
	for i := range cfg.Rounds {
		for b := range builds {
			h, err := c.AddHost(next)
			if err != nil {
				return nil, err
			}
			next++
			if err := j.measure(ctx, h, first[b]); err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", FirstJoin, i+1, err)
			}
			if err := j.leave(ctx, h); err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", FirstJoin, i+1, err)
			}
			if err := h.Remove(); err != nil {
				return nil, err
			}
		}
	}

	again := make([]*joinSamples, len(builds))
	hosts := make([]*ClusterHost, len(builds))
	for b := range builds {
		again[b] = &joinSamples{kind: Rejoin, build: builds[b]}
		if hosts[b], err = c.AddHost(next); err != nil {
			return nil, err
		}
		next++
		if _, err := j.join(ctx, hosts[b], builds[b].dir); err != nil { // its first join, not counted
			return nil, err
		}
	}
	for i := range cfg.Rounds {
		for b := range builds {
			if err := j.leave(ctx, hosts[b]); err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", Rejoin, i+1, err)
			}
			if hosts[b], err = c.reboot(hosts[b]); err != nil {
				return nil, err
			}
			if err := j.measure(ctx, hosts[b], again[b]); err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", Rejoin, i+1, err)
			}
		}
	}
	var out []ConvergeResult
	for _, s := range append(first, again...) {
		out = append(out, s.result())
	}
	return out, nil
}

// build is an overlayd build whose joins are measured.
type build struct {
	name string // "" for the build under test
	dir  string
}

// joiner starts and stops the joining host and watches the others.
type joiner struct {
	c        *Cluster
	others   []*kernelEvents
	args     []string
	progress io.Writer
}

// joined is what one join took, from the exec.
type joined struct {
	route, fdb, hostFile, stamp, logged time.Duration
}

// join starts h's overlayd and waits until the other hosts route to it and
// it is ready.
func (j joiner) join(ctx context.Context, h *ClusterHost, binDir string) (joined, error) {
	for _, k := range j.others {
		k.forget()
	}
	hostFile, stamp := filepath.Base(h.HostFile()), filepath.Base(hostfile.ReadyPath(h.RunDir, j.c.Network))
	w, err := watchFiles(h.RunDir, hostFile, stamp)
	if err != nil {
		return joined{}, err
	}
	defer w.Close()
	p, err := h.StartDaemonFrom(binDir, j.args...)
	if err != nil {
		return joined{}, err
	}
	start := p.Started
	fileAt, err := w.Wait(ctx, hostFile, convergeTimeout)
	if err != nil {
		return joined{}, fmt.Errorf("%w (%s: %s)", err, h.NS, p.LastLog())
	}
	stampAt, err := w.Wait(ctx, stamp, convergeTimeout)
	if err != nil {
		return joined{}, fmt.Errorf("%w (%s: %s)", err, h.NS, p.LastLog())
	}
	loggedAt, err := p.WaitLine(ctx, "msg=ready ", convergeTimeout)
	if err != nil {
		return joined{}, err
	}
	hf, err := hostfile.Read(h.HostFile())
	if err != nil {
		return joined{}, err
	}
	saved, err := state.Dir{Path: h.StateDir}.LoadNetwork(j.c.Network)
	if err != nil {
		return joined{}, err
	}
	mac, err := net.ParseMAC(saved.VTEPMAC)
	if err != nil {
		return joined{}, fmt.Errorf("VTEP MAC of %s: %w", h.NS, err)
	}
	r := joined{hostFile: fileAt.Sub(start), stamp: stampAt.Sub(start), logged: loggedAt.Sub(start)}
	for _, k := range j.others {
		routeAt, err := k.wait(ctx, start, "the route to "+hf.Subnet.String(), convergeTimeout, routeTo(hf.Subnet, false))
		if err != nil {
			return joined{}, err
		}
		fdbAt, err := k.wait(ctx, start, "the FDB entry of "+mac.String(), convergeTimeout, fdbOf(mac))
		if err != nil {
			return joined{}, err
		}
		r.route, r.fdb = max(r.route, routeAt.Sub(start)), max(r.fdb, fdbAt.Sub(start))
	}
	return r, nil
}

func (j joiner) measure(ctx context.Context, h *ClusterHost, s *joinSamples) error {
	r, err := j.join(ctx, h, s.build.dir)
	if err != nil {
		return err
	}
	s.add(r)
	if j.progress != nil {
		fmt.Fprintf(j.progress, "%s%s %s (%s): route %.1f ms, fdb %.1f ms, host file %.1f ms, ready stamp %.1f ms, logged ready %.1f ms\n",
			s.kind, s.build.suffix(), h.NS, h.Dir, ms(r.route), ms(r.fdb), ms(r.hostFile), ms(r.stamp), ms(r.logged))
	}
	return nil
}

// leave stops h's overlayd and deletes its lease (SIGTERM alone leaves
// both the kernel state and the lease in place, by design), and waits
// until the other hosts dropped their route to it, so the next join
// starts from a cluster without it.
func (j joiner) leave(ctx context.Context, h *ClusterHost) error {
	hf, err := hostfile.Read(h.HostFile())
	if err != nil {
		return err
	}
	h.Daemon().Stop(5 * time.Second)
	since := time.Now()
	if _, err := j.c.Ctl("lease", "release", hf.Subnet.String(), "--network", j.c.Network); err != nil {
		return err
	}
	for _, k := range j.others {
		if _, err := k.wait(ctx, since, "the route to "+hf.Subnet.String()+" to go", convergeTimeout, routeTo(hf.Subnet, true)); err != nil {
			return err
		}
	}
	return nil
}

// reboot replaces h by the same host after a reboot: a new namespace with
// the same address, an empty run dir (tmpfs on a real machine), the same
// state dir.
func (c *Cluster) reboot(h *ClusterHost) (*ClusterHost, error) {
	if err := h.Remove(); err != nil {
		return nil, err
	}
	if err := os.RemoveAll(h.RunDir); err != nil {
		return nil, err
	}
	return c.AddHost(h.N)
}

type joinSamples struct {
	kind                                string
	build                               build
	route, fdb, hostFile, stamp, logged []time.Duration
}

// suffix names a build other than the one under test.
func (b build) suffix() string {
	if b.name == "" {
		return ""
	}
	return " (" + b.name + " build)"
}

func (s *joinSamples) add(r joined) {
	s.route = append(s.route, r.route)
	s.fdb = append(s.fdb, r.fdb)
	s.hostFile = append(s.hostFile, r.hostFile)
	s.stamp = append(s.stamp, r.stamp)
	s.logged = append(s.logged, r.logged)
}

func (s *joinSamples) result() ConvergeResult {
	return ConvergeResult{Kind: s.kind, Build: s.build.name, Route: Summarize(s.route), FDB: Summarize(s.fdb), HostFile: Summarize(s.hostFile), ReadyStamp: Summarize(s.stamp), Logged: Summarize(s.logged)}
}

// Convergence targets (issue 10): a new host's daemon start to the route
// on the other hosts, and to its own host file.
const (
	routeTargetMS = 25
	readyTargetMS = 50
)

// ConvergeVerdicts says how the medians stand against the targets.
func ConvergeVerdicts(rs []ConvergeResult) []string {
	var out []string
	verdict := func(got, target float64) string {
		if got <= target {
			return "met"
		}
		return "NOT met"
	}
	for _, r := range rs {
		if r.Build != "" {
			continue
		}
		out = append(out, fmt.Sprintf("convergence, %s: route on the other hosts p50 %.1f ms (target ≤ %d ms: %s), ready p50 %.1f ms (target ≤ %d ms: %s)",
			r.Kind, r.Route.P50, routeTargetMS, verdict(r.Route.P50, routeTargetMS), r.HostFile.P50, readyTargetMS, verdict(r.HostFile.P50, readyTargetMS)))
	}
	return out
}

// writeConverge prints the convergence table: one column pair per kind of
// join.
func writeConverge(w io.Writer, rs []ConvergeResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprint(w, "| convergence, from overlayd's exec |")
	for _, r := range rs {
		name := r.Kind + build{name: r.Build}.suffix()
		fmt.Fprintf(w, " %s p50 | %s max |", name, name)
	}
	fmt.Fprintf(w, "\n|---|%s\n", strings.Repeat("---|---|", len(rs)))
	rows := []struct {
		name string
		get  func(ConvergeResult) Summary
	}{
		{"route on the other hosts (the later of 2)", func(r ConvergeResult) Summary { return r.Route }},
		{"FDB entry on the other hosts (the later of 2)", func(r ConvergeResult) Summary { return r.FDB }},
		{"host file written (ready for ADD)", func(r ConvergeResult) Summary { return r.HostFile }},
		{"ready stamp written (STATUS ready)", func(r ConvergeResult) Summary { return r.ReadyStamp }},
		{"\"ready\" logged (first pass over)", func(r ConvergeResult) Summary { return r.Logged }},
	}
	for _, row := range rows {
		fmt.Fprintf(w, "| %s |", row.name)
		for _, r := range rs {
			s := row.get(r)
			fmt.Fprintf(w, " %.1f ms | %.1f ms |", s.P50, s.Max)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
}
