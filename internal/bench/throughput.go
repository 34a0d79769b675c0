package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// TputConfig says what the throughput row runs.
type TputConfig struct {
	// Prefix makes namespace names unique to this run.
	Prefix string
	// Bin holds overlay's binaries (overlayd, overlayctl, devetcd, the
	// plugins).
	Bin string
	// WorkDir is private to this run.
	WorkDir string
	// Runs is how many times each path is measured, paths alternating.
	Runs int
	// Seconds is the length of one iperf3 test.
	Seconds int
	// Pings is the number of pings per path, spread over the runs.
	Pings int
	// Tunings are variants measured beside their base paths.
	Tunings []Tuning
	// Only limits the tests to these (tcp1, tcp4, udp, ping) while
	// exploring; empty runs all.
	Only []string
	// Log gets a line per measurement (nil: none).
	Log io.Writer
}

// TputResult is the throughput row: each path's rates and round trips.
type TputResult struct {
	Runs    int `json:"runs"`
	Seconds int `json:"seconds"`
	// UDPLen is the UDP payload: the overlay MTU less IP and UDP headers,
	// the largest datagram no path fragments.
	UDPLen int          `json:"udp_payload_bytes"`
	MTU    int          `json:"overlay_mtu"`
	Paths  []PathResult `json:"paths"`
	Ratios []TputRatio  `json:"ratios"`
}

// PathResult is one path's numbers over all runs.
type PathResult struct {
	Name    string `json:"name"`
	TCP1    Spread `json:"tcp_1_stream_gbps"`
	TCP4    Spread `json:"tcp_4_streams_gbps"`
	UDP     Spread `json:"udp_gbps"`
	UDPLoss Spread `json:"udp_loss_percent"`
	// UDPCPU is sender and receiver CPU seconds per GB received in the UDP
	// test (IperfResult.CPUPerGB): steadier than the rate on a busy
	// machine.
	UDPCPU Spread `json:"udp_cpu_s_per_gb"`
	// RTT is ping's round trip, all runs pooled.
	RTT Summary `json:"rtt"`
}

// Spread is a measurement repeated once per run: the median, the range,
// and each run's value in run order (pairable across paths).
type Spread struct {
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Runs   []float64 `json:"runs"`
}

// TputRatio compares path Of with path To: for the rates the median of the
// per-run ratios (each run's two measurements were taken moments apart),
// for ping the ratio of the p50s.
type TputRatio struct {
	Of   string  `json:"of"`
	To   string  `json:"to"`
	TCP1 float64 `json:"tcp_1_stream"`
	TCP4 float64 `json:"tcp_4_streams"`
	UDP  float64 `json:"udp"`
	// UDPCPU is the ratio of CPU per GB: below 1 is cheaper.
	UDPCPU  float64 `json:"udp_cpu_per_gb"`
	PingP50 float64 `json:"ping_p50"`
}

const pingInterval = 10 * time.Millisecond

// RunThroughput builds a two-host cluster running overlayd, attaches a
// container on each host through overlay's CNI plugin, wires the reference
// by hand on the same two hosts, and measures container→container over
// overlay, over the reference and host→host on the underlay (and the
// tunings), run after run, alternating between paths for every test. It
// removes all it made, also when ctx is cancelled.
func RunThroughput(ctx context.Context, cfg TputConfig) (res *TputResult, err error) {
	c, err := NewCluster(ctx, cfg.Prefix, cfg.Bin, filepath.Join(cfg.WorkDir, "cluster"), "default")
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	if _, err := c.Ctl("network", "set", "default", "--cidr", "10.244.0.0/16", "--port", fmt.Sprint(overlayPort)); err != nil {
		return nil, err
	}
	var hosts [2]*ClusterHost
	for i := range hosts {
		if hosts[i], err = c.AddHost(i + 1); err != nil {
			return nil, err
		}
		if _, err := hosts[i].StartDaemon(); err != nil {
			return nil, err
		}
	}
	for _, h := range hosts {
		if err := h.WaitHostFile(ctx, 30*time.Second); err != nil {
			return nil, err
		}
	}
	hf, err := hostfile.Read(hosts[0].HostFile())
	if err != nil {
		return nil, err
	}

	var atts []*overlayAttachment
	defer func() {
		for _, a := range atts {
			err = errors.Join(err, a.detach(ctx))
		}
	}()
	for _, h := range hosts {
		a, err := attachOverlay(ctx, cfg.Prefix, cfg.Bin, cfg.WorkDir, h)
		if a != nil {
			atts = append(atts, a)
		}
		if err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, h := range hosts {
			err = errors.Join(err, delNetns(refCtr(cfg.Prefix, h)))
		}
	}()
	ref, err := referencePath(cfg.Prefix, hosts[0], hosts[1], hf.MTU)
	if err != nil {
		return nil, err
	}
	ovl, err := overlayPath(atts[0], atts[1], hf)
	if err != nil {
		return nil, err
	}
	paths := []Path{ovl, ref, underlayPath(hosts[0], hosts[1])}

	var servers []*Proc
	defer func() {
		for _, s := range servers {
			s.Stop(2 * time.Second)
		}
	}()
	for _, p := range paths {
		s, err := StartProc(p.Server, filepath.Join(cfg.WorkDir, "iperf3-"+p.Name+".log"), "iperf3", "-s", "--forceflush")
		if err != nil {
			return nil, err
		}
		servers = append(servers, s)
		if err := s.WaitLog(ctx, "Server listening", 10*time.Second); err != nil {
			return nil, err
		}
		if err := waitReachable(ctx, p); err != nil {
			return nil, err
		}
	}
	return measure(ctx, cfg, paths, hf.MTU)
}

// variant is one row: a path, maybe tuned.
type variant struct {
	name   string
	path   Path
	tuning *Tuning
}

func variants(paths []Path, tunings []Tuning) ([]variant, error) {
	var vs []variant
	for _, p := range paths {
		vs = append(vs, variant{name: p.Name, path: p})
	}
	for i, t := range tunings {
		j := slices.IndexFunc(paths, func(p Path) bool { return p.Name == t.Base })
		if j < 0 {
			return nil, fmt.Errorf("tuning %s: no path %q", t.Name(), t.Base)
		}
		vs = append(vs, variant{name: t.Name(), path: paths[j], tuning: &tunings[i]})
	}
	return vs, nil
}

// tputSamples collects one variant's measurements.
type tputSamples struct {
	tcp1, tcp4, udp, loss, udpCPU []float64
	rtt                           []time.Duration
}

func measure(ctx context.Context, cfg TputConfig, paths []Path, mtu int) (*TputResult, error) {
	vs, err := variants(paths, cfg.Tunings)
	if err != nil {
		return nil, err
	}
	udpLen := mtu - 28
	wanted := func(key string) bool { return len(cfg.Only) == 0 || slices.Contains(cfg.Only, key) }
	var tests []IperfTest
	for _, t := range []IperfTest{
		{Key: "tcp1", Name: "TCP 1 stream", Streams: 1},
		{Key: "tcp4", Name: "TCP 4 streams", Streams: 4},
		{Key: "udp", Name: "UDP", Streams: 1, UDP: true, UDPLen: udpLen},
	} {
		if wanted(t.Key) {
			tests = append(tests, t)
		}
	}
	pings := max(1, (cfg.Pings+cfg.Runs-1)/cfg.Runs)
	got := make([]tputSamples, len(vs))
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", args...)
		}
	}
	for run := range cfg.Runs {
		// Every other run goes backwards, so no path always follows the
		// same one.
		order := make([]int, len(vs))
		for i := range order {
			order[i] = i
		}
		if run%2 == 1 {
			slices.Reverse(order)
		}
		for _, t := range tests {
			for _, i := range order {
				var r IperfResult
				err := vs[i].tuned(func() (err error) {
					r, err = RunIperf(ctx, vs[i].path.Client, vs[i].path.Dst.String(), cfg.Seconds, t)
					if err != nil && ctx.Err() == nil {
						// iperf3 now and then loses its control connection
						// on a loaded machine; once more before giving up.
						logf("throughput run %d/%d: %s %s: %v; again", run+1, cfg.Runs, vs[i].name, t.Name, err)
						r, err = RunIperf(ctx, vs[i].path.Client, vs[i].path.Dst.String(), cfg.Seconds, t)
					}
					return err
				})
				if err != nil {
					return nil, fmt.Errorf("%s: %w", vs[i].name, err)
				}
				s := &got[i]
				switch {
				case t.UDP:
					s.udp, s.loss, s.udpCPU = append(s.udp, r.Gbps), append(s.loss, r.LossPercent), append(s.udpCPU, r.CPUPerGB)
					logf("throughput run %d/%d: %s %s: %.2f Gbit/s, %.2f %% lost, %.2f CPU s/GB", run+1, cfg.Runs, vs[i].name, t.Name, r.Gbps, r.LossPercent, r.CPUPerGB)
					continue
				case t.Streams == 1:
					s.tcp1 = append(s.tcp1, r.Gbps)
				default:
					s.tcp4 = append(s.tcp4, r.Gbps)
				}
				logf("throughput run %d/%d: %s %s: %.2f Gbit/s, %d retransmits, %.3f CPU s/GB", run+1, cfg.Runs, vs[i].name, t.Name, r.Gbps, r.Retransmits, r.CPUPerGB)
			}
		}
		for _, i := range order {
			if !wanted("ping") {
				break
			}
			var rtts []time.Duration
			err := vs[i].tuned(func() (err error) {
				rtts, err = RunPing(ctx, vs[i].path.Client, vs[i].path.Dst.String(), pings, pingInterval)
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("%s: %w", vs[i].name, err)
			}
			got[i].rtt = append(got[i].rtt, rtts...)
			logf("throughput run %d/%d: %s ping: p50 %.3f ms", run+1, cfg.Runs, vs[i].name, Summarize(rtts).P50)
		}
	}
	res := &TputResult{Runs: cfg.Runs, Seconds: cfg.Seconds, UDPLen: udpLen, MTU: mtu}
	for i, v := range vs {
		s := got[i]
		res.Paths = append(res.Paths, PathResult{Name: v.name, TCP1: spreadOf(s.tcp1), TCP4: spreadOf(s.tcp4),
			UDP: spreadOf(s.udp), UDPLoss: spreadOf(s.loss), UDPCPU: spreadOf(s.udpCPU), RTT: Summarize(s.rtt)})
	}
	res.Ratios = ratios(res.Paths, vs)
	return res, nil
}

// tuned runs fn with v's tuning applied, and undoes it whatever happens.
func (v variant) tuned(fn func() error) error {
	if v.tuning == nil {
		return fn()
	}
	undo, err := v.tuning.apply(v.path.devs)
	if err == nil {
		err = fn()
	}
	return errors.Join(err, undo())
}

// ratios are the headline: overlay to the reference and to the underlay,
// and each tuned variant to its base path.
func ratios(ps []PathResult, vs []variant) []TputRatio {
	byName := map[string]PathResult{}
	for _, p := range ps {
		byName[p.Name] = p
	}
	pairs := [][2]string{{"overlay", "reference"}, {"overlay", "underlay"}, {"reference", "underlay"}}
	for _, v := range vs {
		if v.tuning != nil {
			pairs = append(pairs, [2]string{v.name, v.tuning.Base})
			if v.tuning.Base == "reference" {
				pairs = append(pairs, [2]string{"overlay", v.name})
			}
		}
	}
	var out []TputRatio
	for _, pr := range pairs {
		a, b := byName[pr[0]], byName[pr[1]]
		q := TputRatio{Of: pr[0], To: pr[1],
			TCP1: pairedRatio(a.TCP1.Runs, b.TCP1.Runs), TCP4: pairedRatio(a.TCP4.Runs, b.TCP4.Runs),
			UDP: pairedRatio(a.UDP.Runs, b.UDP.Runs), UDPCPU: pairedRatio(a.UDPCPU.Runs, b.UDPCPU.Runs)}
		if b.RTT.P50 > 0 { // no pings measured (-tput-only): no ratio, and no NaN in the JSON
			q.PingP50 = a.RTT.P50 / b.RTT.P50
		}
		out = append(out, q)
	}
	return out
}

func spreadOf(xs []float64) Spread {
	if len(xs) == 0 {
		return Spread{}
	}
	return Spread{Median: median(xs), Min: slices.Min(xs), Max: slices.Max(xs), Runs: xs}
}

// pairedRatio is the median of a[i]/b[i].
func pairedRatio(a, b []float64) float64 {
	var rs []float64
	for i := range min(len(a), len(b)) {
		if b[i] > 0 {
			rs = append(rs, a[i]/b[i])
		}
	}
	if len(rs) == 0 {
		return 0
	}
	return median(rs)
}

// waitReachable waits until p's destination answers a ping: overlayd
// programs the peer shortly after both hosts are up.
func waitReachable(ctx context.Context, p Path) error {
	return waitUntil(ctx, 20*time.Second, fmt.Sprintf("%s to reach %s", p.Client, p.Dst), func() (bool, error) {
		_, err := RunPing(ctx, p.Client, p.Dst.String(), 1, pingInterval)
		return err == nil, nil
	})
}

// Verdicts says how overlay stands against the target, at least 0.98×
// the reference for every TCP and UDP rate, and (for information) against
// each tuned reference.
func (r *TputResult) Verdicts() []string {
	var out []string
	for _, q := range r.Ratios {
		switch {
		case q.Of == "overlay" && q.To == "reference":
			mark := "met"
			below := func(r float64) bool { return r > 0 && r < 0.98 } // 0: not measured (-tput-only)
			if below(q.TCP1) || below(q.TCP4) || below(q.UDP) {
				mark = "NOT met"
			}
			out = append(out, fmt.Sprintf("overlay ÷ reference: TCP 1 stream %.2f×, TCP 4 streams %.2f×, UDP %.2f× (target ≥ 0.98×: %s)", q.TCP1, q.TCP4, q.UDP, mark))
		case q.Of == "overlay" && strings.HasPrefix(q.To, "reference + "):
			out = append(out, fmt.Sprintf("overlay ÷ %s: TCP 1 stream %.2f×, TCP 4 streams %.2f×, UDP %.2f×", q.To, q.TCP1, q.TCP4, q.UDP))
		}
	}
	return out
}

// WriteMarkdown prints the row's tables.
func (r *TputResult) WriteMarkdown(w io.Writer) {
	fmt.Fprintf(w, "Throughput, container→container across two hosts (underlay: host→host); median [min–max] of %d runs × %d s, paths alternating; UDP: -b 0 (as fast as one sender goes), %d-byte datagrams (overlay MTU %d):\n\n",
		r.Runs, r.Seconds, r.UDPLen, r.MTU)
	fmt.Fprintln(w, "| path | TCP 1 stream | TCP 4 streams | UDP received | UDP loss | UDP CPU per GB | ping p50 | ping p99 |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|")
	g := func(s Spread) string { return fmt.Sprintf("%.2f Gbit/s [%.2f–%.2f]", s.Median, s.Min, s.Max) }
	for _, p := range r.Paths {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.2f %% [%.2f–%.2f] | %.1f s [%.1f–%.1f] | %.0f µs | %.0f µs |\n", p.Name, g(p.TCP1), g(p.TCP4), g(p.UDP),
			p.UDPLoss.Median, p.UDPLoss.Min, p.UDPLoss.Max, p.UDPCPU.Median, p.UDPCPU.Min, p.UDPCPU.Max, p.RTT.P50*1000, p.RTT.P99*1000)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| ratio (median of per-run ratios) | TCP 1 stream | TCP 4 streams | UDP received | UDP CPU per GB (lower: cheaper) | ping p50 (lower: faster) |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, q := range r.Ratios {
		fmt.Fprintf(w, "| %s ÷ %s | %.3f× | %.3f× | %.3f× | %.3f× | %.3f× |\n", q.Of, q.To, q.TCP1, q.TCP4, q.UDP, q.UDPCPU, q.PingP50)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "UDP CPU per GB is the CPU time iperf3's sender and receiver used per GB received; on veths it includes the path's softirq work, which runs in their context.")
	fmt.Fprintln(w)
}
