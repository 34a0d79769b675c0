package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// ScaleConfig says what the scale benchmark runs.
type ScaleConfig struct {
	Prefix string // unique on the machine: names the namespaces
	Bin    string // overlay's binaries
	// Baseline, when set, holds an older build's binaries (overlayd,
	// overlayctl, devetcd): each round runs with it too, right after the
	// current build, so before and after come from one run.
	Baseline string
	Dir      string // a private work directory
	Peers    []int  // fake remote leases per round, e.g. 1000 and 10000
	// Writers is how many clients write the fake leases at once, as that
	// many hosts joining together would.
	Writers int
}

// ScaleResult is one round: Peers fake leases against one overlayd.
type ScaleResult struct {
	// Build is "" for the build under test, "baseline" for Baseline.
	Build string `json:"build,omitempty"`
	Peers int    `json:"peers"`
	// Write is how long writing every lease took.
	Write time.Duration `json:"writeNs"`
	// Programmed: the last write acknowledged → the last route added.
	Programmed time.Duration `json:"programmedNs"`
	// Reprogram: overlayd started (after it was stopped and its VXLAN
	// device deleted, which takes every entry with it) → the last route.
	Reprogram time.Duration `json:"reprogramNs"`
	// Withdrawn: the last delete acknowledged → the last route removed.
	Withdrawn time.Duration `json:"withdrawnNs"`
	// RSS is overlayd's resident memory settle after the last route was
	// programmed, Peak the most it ever had resident; CPU is what it used
	// from its start to the last route (Peers writes followed as they
	// came).
	RSS  int64         `json:"rssBytes"`
	Peak int64         `json:"peakBytes"`
	CPU  time.Duration `json:"cpuNs"`
	// ReprogramCPU is the CPU the restarted overlayd used to program
	// every peer at once.
	ReprogramCPU time.Duration `json:"reprogramCpuNs"`
}

// settle is how long after the last route the daemon's RSS is read.
const settle = 2 * time.Second

// The scale network: a /8 of /24 subnets has room for 65 536 hosts.
const (
	scaleNetwork = "scale"
	scaleCIDR    = "10.0.0.0/8"
	scaleVNI     = 1
)

// RunScale runs one round per entry of cfg.Peers, each on a cluster of its
// own, and removes everything it made.
func RunScale(ctx context.Context, cfg ScaleConfig) ([]ScaleResult, error) {
	if cfg.Writers <= 0 {
		cfg.Writers = 32
	}
	builds := []struct{ name, bin string }{{"", cfg.Bin}}
	if cfg.Baseline != "" {
		builds = append(builds, struct{ name, bin string }{"baseline", cfg.Baseline})
	}
	var out []ScaleResult
	for i, n := range cfg.Peers {
		for j, b := range builds {
			dir := filepath.Join(cfg.Dir, fmt.Sprintf("scale%d-%d", i, j))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return out, err
			}
			r, err := scaleRound(ctx, cfg.Bin, b.bin, cfg.Writers, fmt.Sprintf("%s-s%d%d", cfg.Prefix, i, j), dir, n)
			if err != nil {
				return out, fmt.Errorf("scale with %d peers (%s): %w", n, cmp.Or(b.name, "this build"), err)
			}
			r.Build = b.name
			out = append(out, r)
		}
	}
	return out, nil
}

// scaleRound runs one round with the cluster's tools (devetcd, overlayctl)
// from bin and the overlayd under test from daemonBin.
func scaleRound(ctx context.Context, bin, daemonBin string, writers int, prefix, dir string, n int) (res ScaleResult, err error) {
	res.Peers = n
	c, err := NewCluster(ctx, prefix, bin, dir, scaleNetwork)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	if _, err := c.Ctl("network", "set", scaleNetwork, "--cidr", scaleCIDR, "--subnet-len", "24", "--vni", fmt.Sprint(scaleVNI)); err != nil {
		return res, err
	}
	h, err := c.AddHost(1)
	if err != nil {
		return res, err
	}
	if _, err := h.StartDaemonFrom(daemonBin, "--log-level", "warn"); err != nil {
		return res, err
	}
	if err := h.WaitHostFile(ctx, 30*time.Second); err != nil {
		return res, err
	}
	own, err := hostSubnet(h.HostFile())
	if err != nil {
		return res, err
	}
	cli, err := EtcdIn(ctx, c.Fabric, c.EtcdURL)
	if err != nil {
		return res, err
	}
	defer cli.Close()
	leases, err := fakeLeases(n, own)
	if err != nil {
		return res, err
	}
	if err := scalePhases(ctx, writers, h, daemonBin, cli, leases, &res); err != nil {
		return res, fmt.Errorf("%w (overlayd log: %s)", err, filepath.Join(h.Dir, "overlayd.log"))
	}
	return res, nil
}

// scalePhases programs, reprograms and withdraws the fake leases.
func scalePhases(ctx context.Context, writers int, h *ClusterHost, daemonBin string, cli *clientv3.Client, leases []fakeLease, res *ScaleResult) error {
	n := len(leases)
	w, err := WatchRoutes(h.NS, datapath.RouteProtocol)
	if err != nil {
		return err
	}
	defer w.Close()
	timeout := 2*time.Minute + time.Duration(n)*10*time.Millisecond
	began := time.Now()
	lastWrite, err := forEach(ctx, writers, leases, func(ctx context.Context, l fakeLease) error {
		_, err := cli.Put(ctx, l.key, l.value)
		return err
	})
	if err != nil {
		return fmt.Errorf("write leases: %w", err)
	}
	res.Write = lastWrite.Sub(began)
	at, err := w.WaitCount(ctx, n, timeout)
	if err != nil {
		return fmt.Errorf("program: %w", err)
	}
	res.Programmed = at.Sub(lastWrite)
	u, err := ProcUsage(h.Daemon().PID())
	if err != nil {
		return err
	}
	res.CPU = u.CPU
	// RSS is a steady-state figure: read it once the daemon had a moment
	// to settle after the burst.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(settle):
	}
	if u, err = ProcUsage(h.Daemon().PID()); err != nil {
		return err
	}
	res.RSS, res.Peak = u.RSSBytes, u.PeakBytes

	if err := reprogram(ctx, h, daemonBin, w, n, timeout, res); err != nil {
		return err
	}

	lastDelete, err := forEach(ctx, writers, leases, func(ctx context.Context, l fakeLease) error {
		_, err := cli.Delete(ctx, l.key)
		return err
	})
	if err != nil {
		return fmt.Errorf("delete leases: %w", err)
	}
	at, err = w.WaitCount(ctx, 0, timeout)
	if err != nil {
		return fmt.Errorf("withdraw: %w", err)
	}
	res.Withdrawn = at.Sub(lastDelete)
	return nil
}

// reprogram stops overlayd, deletes its VXLAN device (and so every entry
// on it) and starts it again: a host whose datapath was lost.
func reprogram(ctx context.Context, h *ClusterHost, daemonBin string, w *RouteWatch, n int, timeout time.Duration, res *ScaleResult) error {
	h.Daemon().Stop(10 * time.Second)
	if err := ipIn(h.NS, "link del "+datapath.DeviceName(scaleVNI)); err != nil {
		return err
	}
	w.Forget()
	p, err := h.StartDaemonFrom(daemonBin, "--log-level", "warn")
	if err != nil {
		return err
	}
	at, err := w.WaitCount(ctx, n, timeout)
	if err != nil {
		return fmt.Errorf("reprogram: %w", err)
	}
	res.Reprogram = at.Sub(p.Started)
	u, err := ProcUsage(p.PID())
	if err != nil {
		return err
	}
	res.ReprogramCPU = u.CPU
	return nil
}

// hostSubnet reads the subnet from a host file.
func hostSubnet(path string) (netip.Prefix, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return netip.Prefix{}, err
	}
	var hf struct {
		Subnet netip.Prefix `json:"subnet"`
	}
	if err := json.Unmarshal(b, &hf); err != nil {
		return netip.Prefix{}, fmt.Errorf("read host file %s: %w", path, err)
	}
	return hf.Subnet, nil
}

type fakeLease struct {
	key, value string
}

// fakeLeases makes n lease records of hosts that do not exist, in
// overlayd's own record format: subnets 10.x.y.0/24 (skipping own), public
// IPs in 198.19.0.0/16 (off the hosts' segment, so every peer is a VXLAN
// peer), distinct VTEP MACs.
func fakeLeases(n int, own netip.Prefix) ([]fakeLease, error) {
	keys := subnet.Keys{Prefix: subnet.DefaultPrefix}
	out := make([]fakeLease, 0, n)
	for i := 1; len(out) < n; i++ {
		s := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)
		if s == own {
			continue
		}
		k := len(out) + 1
		v, err := subnet.EncodeRecord(subnet.Record{
			HostID:      fmt.Sprintf("fake-%05d", k),
			Hostname:    fmt.Sprintf("fake-%05d", k),
			PublicIP:    netip.AddrFrom4([4]byte{198, 19, byte(k >> 8), byte(k)}),
			VTEPMAC:     net.HardwareAddr{0x02, 0xfa, 0, 0, byte(k >> 8), byte(k)}.String(),
			UnderlayMTU: 1500,
		})
		if err != nil {
			return nil, err
		}
		out = append(out, fakeLease{key: keys.Subnet(scaleNetwork, s), value: v})
	}
	return out, nil
}

// forEach runs fn on every item with workers goroutines and returns when
// the last call returned.
func forEach[T any](ctx context.Context, workers int, items []T, fn func(context.Context, T) error) (time.Time, error) {
	ch := make(chan T)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range workers {
		wg.Go(func() {
			for it := range ch {
				if err := fn(ctx, it); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
feed:
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if len(errs) > 0 {
		return time.Time{}, fmt.Errorf("%d of %d failed, first: %w", len(errs), len(items), errs[0])
	}
	return time.Now(), ctx.Err()
}

// EtcdIn connects to an etcd served inside netns: every connection is
// dialled from a thread in that namespace, so the bench itself stays in
// the root namespace and nothing there can reach the simulated fabric.
func EtcdIn(ctx context.Context, netnsName, url string) (*clientv3.Client, error) {
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		var conn net.Conn
		err := inNetns(netnsName, func() error {
			var err error
			conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return err
		})
		return conn, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), Context: ctx,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(dial)},
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client for %s in %s: %w", url, netnsName, err)
	}
	return cli, nil
}

// Scale targets (issue 10): what a 10 000-host cluster needs of one host.
const (
	scaleTargetPeers     = 10000
	scaleTargetProgram   = time.Second
	scaleTargetReprogram = time.Second
	scaleTargetRSS       = 40 << 20
	smallTargetPeers     = 1000
	smallTargetReprogram = 100 * time.Millisecond
)

// ScaleVerdicts checks the rounds against the targets.
func ScaleVerdicts(rs []ScaleResult) []string {
	var out []string
	verdict := func(ok bool, format string, args ...any) {
		mark := "NOT met"
		if ok {
			mark = "met"
		}
		out = append(out, "scale: "+fmt.Sprintf(format, args...)+": "+mark)
	}
	for _, r := range rs {
		if r.Build != "" {
			continue
		}
		switch r.Peers {
		case scaleTargetPeers:
			verdict(r.Programmed <= scaleTargetProgram, "%d leases programmed %s after the last write (target ≤ %s)", r.Peers, msText(r.Programmed), scaleTargetProgram)
			verdict(r.Reprogram <= scaleTargetReprogram, "%d peers reprogrammed %s after overlayd started (target ≤ %s)", r.Peers, msText(r.Reprogram), scaleTargetReprogram)
			verdict(r.RSS <= scaleTargetRSS, "RSS %s with %d peers, %s after the last route; peak %s (target ≤ %s in steady state)", mib(r.RSS), r.Peers, settle, mib(r.Peak), mib(scaleTargetRSS))
		case smallTargetPeers:
			verdict(r.Reprogram <= smallTargetReprogram, "%d peers reprogrammed %s after overlayd started (target ≤ %s)", r.Peers, msText(r.Reprogram), smallTargetReprogram)
		}
	}
	return out
}

func writeScale(w io.Writer, rs []ScaleResult) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w, "| fake remote leases | build | write all | last write → last route | restart after VXLAN device deleted → last route | last delete → last route gone | RSS (peak) | CPU to program | CPU to reprogram |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		fmt.Fprintf(w, "| %d | %s | %s | %s | %s | %s | %s (%s) | %s | %s |\n", r.Peers, cmp.Or(r.Build, "this"), msText(r.Write), msText(r.Programmed), msText(r.Reprogram), msText(r.Withdrawn),
			mib(r.RSS), mib(r.Peak), msText(r.CPU), msText(r.ReprogramCPU))
	}
	fmt.Fprintln(w)
}

func msText(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
