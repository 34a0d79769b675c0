// Command bench runs `make bench`: it measures overlay against the overlays
// and paths users compare it with, on simulated hosts (network namespaces)
// of this machine, prints a Markdown table and saves JSON under -results.
// Everything it creates is removed when it ends, also on ^C.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/overlaynet/overlay/internal/bench"
)

// options are the command line.
type options struct {
	bin, refBin, baseline string
	results               string
	keep, verbose         bool

	cni                bool
	containers, rounds int
	portmap            bool

	converge       bool
	convergeRounds int
	daemonArgs     string

	scale   string
	gobench goBenchFlags
	tput    tputFlags
}

// tputFlags are the throughput row's flags.
type tputFlags struct {
	on                   bool
	runs, seconds, pings int
	tunings              []bench.Tuning
	only                 []string
}

// goBenchFlags are the flags of the Go micro-benchmarks.
type goBenchFlags struct {
	run, quick bool
	count      int
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory holding overlay's binaries")
	flag.StringVar(&o.refBin, "ref-bin", "bin/ref", "directory holding flannel, bridge, host-local and portmap")
	flag.StringVar(&o.baseline, "baseline", "", "directory holding an older build of overlay's binaries: its plugins are measured as a third CNI chain, its overlayd in joins alternating with this build's and in the scale rounds (before/after)")
	flag.StringVar(&o.results, "results", "bench/results", "directory for the JSON report")
	flag.BoolVar(&o.keep, "keep", false, "keep the work directory (the daemons' logs) and print its path")
	flag.BoolVar(&o.verbose, "v", false, "print each convergence round")
	flag.BoolVar(&o.cni, "cni", true, "measure CNI ADD and DEL against flannel's chain")
	flag.IntVar(&o.containers, "containers", 100, "containers attached and detached per round")
	flag.IntVar(&o.rounds, "rounds", 4, "rounds per chain, alternating between chains")
	flag.BoolVar(&o.portmap, "portmap", false, "also measure both overlays with portmap chained")
	flag.BoolVar(&o.converge, "converge", true, "measure a new host's convergence (a cluster of overlayd, etcd in a namespace)")
	flag.IntVar(&o.convergeRounds, "converge-rounds", 30, "joins measured per kind (first join, rejoin after reboot)")
	flag.StringVar(&o.daemonArgs, "daemon-args", "", "extra overlayd flags for the convergence part, space-separated (e.g. --log-level=debug)")
	flag.StringVar(&o.scale, "scale", "1000,10000", "fake remote leases per scale round, comma-separated (empty: no scale rounds)")
	flag.BoolVar(&o.gobench.run, "gobench", true, "run the Go micro-benchmarks (go test -bench, with go from PATH, in the current directory: the repository's root)")
	flag.BoolVar(&o.gobench.quick, "gobench-quick", false, "run the quick set of Go micro-benchmarks: one sample each, shorter, without the on-disk IPAM store")
	flag.IntVar(&o.gobench.count, "gobench-count", 0, "samples per Go micro-benchmark, of which the median is reported (0: 5, or 1 with -gobench-quick)")
	flag.BoolVar(&o.tput.on, "throughput", true, "measure throughput and latency: overlay, the kernel's VXLAN wired by hand, the underlay")
	flag.IntVar(&o.tput.runs, "tput-runs", 6, "throughput runs per path, paths alternating (each run pairs the paths moments apart: more short runs resolve a ratio better than fewer long ones on a busy machine)")
	flag.IntVar(&o.tput.seconds, "tput-seconds", 2, "seconds per iperf3 test")
	flag.IntVar(&o.tput.pings, "tput-pings", 300, "pings per path, spread over the runs")
	o.tput.tunings = bench.DefaultTunings()
	tuned := false
	flag.Func("tput-tune", "a tuned variant measured beside its base path, BASE:SETTING,… (e.g. reference:veth.gro=on; see bench.ParseTuning); repeatable; replaces the default (reference:ingress); none: no variant", func(s string) error {
		if !tuned {
			o.tput.tunings, tuned = nil, true
		}
		if s == "none" {
			return nil
		}
		t, err := bench.ParseTuning(s)
		o.tput.tunings = append(o.tput.tunings, t)
		return err
	})
	flag.Func("tput-only", "run only these throughput tests, comma-separated: tcp1,tcp4,udp,ping (for exploring)", func(s string) error {
		o.tput.only = strings.Split(s, ",")
		return nil
	})
	flag.Parse()
	if err := o.check(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// check refuses flag values that would measure nothing or break a part.
func (o options) check() error {
	if o.tput.runs < 1 || o.tput.seconds < 1 || o.tput.pings < 1 {
		return fmt.Errorf("-tput-runs, -tput-seconds and -tput-pings must be at least 1")
	}
	for _, k := range o.tput.only {
		if !slices.Contains([]string{"tcp1", "tcp4", "udp", "ping"}, k) {
			return fmt.Errorf("-tput-only: %q is none of tcp1, tcp4, udp, ping", k)
		}
	}
	if o.cni && (o.containers < 1 || o.rounds < 1) {
		return fmt.Errorf("-containers and -rounds must be at least 1")
	}
	if o.converge && o.convergeRounds < 1 {
		return fmt.Errorf("-converge-rounds must be at least 1")
	}
	return nil
}

func run(o options) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	peers, err := parseCounts(o.scale)
	if err != nil {
		return fmt.Errorf("-scale: %w", err)
	}
	work, err := os.MkdirTemp("", "overlay-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		defer fmt.Println("kept", work)
	} else {
		defer os.RemoveAll(work)
	}
	prefix := fmt.Sprintf("ovlb%d", os.Getpid())
	rep := bench.Report{Date: time.Now(), Machine: bench.ThisMachine(), Floors: map[string]bench.Summary{}}
	if o.tput.on {
		rep.Throughput, err = bench.RunThroughput(ctx, bench.TputConfig{Prefix: prefix + "t", Bin: o.bin, WorkDir: filepath.Join(work, "tput"),
			Runs: o.tput.runs, Seconds: o.tput.seconds, Pings: o.tput.pings, Tunings: o.tput.tunings, Only: o.tput.only, Log: os.Stderr})
		if err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
		rep.Verdicts = append(rep.Verdicts, rep.Throughput.Verdicts()...)
	}
	if o.cni {
		if err := runCNI(ctx, o, work, prefix, &rep); err != nil {
			return err
		}
	}
	if o.converge {
		if err := runConverge(ctx, o, work, prefix, &rep); err != nil {
			return err
		}
	}
	if len(peers) > 0 {
		rep.Scale, err = bench.RunScale(ctx, bench.ScaleConfig{Prefix: prefix, Bin: o.bin, Baseline: o.baseline, Dir: work, Peers: peers})
		if err != nil {
			return err
		}
		rep.Verdicts = append(rep.Verdicts, bench.ScaleVerdicts(rep.Scale)...)
		rep.Notes = append(rep.Notes, "Scale: one overlayd, fake remote leases written into etcd in overlayd's own record format by 32 clients at once; times from the last write (or overlayd's start) to the kernel's route notifications; RSS read 2 s after the last route.")
	}
	if o.gobench.run {
		if err := runGoBench(ctx, &rep, o.gobench); err != nil {
			return err
		}
	}
	rep.WriteMarkdown(os.Stdout)
	path, err := rep.Save(o.results)
	if err != nil {
		return err
	}
	fmt.Println("saved", path)
	return nil
}

func parseCounts(list string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 || n > 60000 {
			return nil, fmt.Errorf("%q is not a number of peers between 1 and 60000", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// runConverge measures a new host's convergence.
func runConverge(ctx context.Context, o options, work, prefix string, rep *bench.Report) error {
	dir := filepath.Join(work, "converge")
	cfg := bench.ConvergeConfig{Prefix: prefix + "-cv", Bin: o.bin, WorkDir: dir, Rounds: o.convergeRounds, DaemonArgs: strings.Fields(o.daemonArgs)}
	if o.baseline != "" {
		if _, err := os.Stat(filepath.Join(o.baseline, "overlayd")); err == nil {
			cfg.Baseline = o.baseline
		} else {
			rep.Notes = append(rep.Notes, "Convergence: the baseline directory holds no overlayd; only this build's joins are measured.")
		}
	}
	if o.verbose {
		cfg.Progress = os.Stderr
	}
	var err error
	rep.Converge, err = bench.RunConverge(ctx, cfg)
	if err != nil {
		return fmt.Errorf("convergence: %w", err)
	}
	rep.Verdicts = append(rep.Verdicts, bench.ConvergeVerdicts(rep.Converge)...)
	rep.Notes = append(rep.Notes, fmt.Sprintf("Convergence: %d joins per kind into a cluster of 2 running hosts (etcd in a third namespace); times from the bench's exec of overlayd (from a thread in the host's namespace, as an init system starts it) to netlink notifications on the other hosts and inotify events in the new host's run dir (on tmpfs, as /run is).", o.convergeRounds))
	return nil
}

// runGoBench adds the Go micro-benchmarks to rep; go test's output goes
// to stderr as it runs, the table to stdout with the rest.
func runGoBench(ctx context.Context, rep *bench.Report, gb goBenchFlags) error {
	cfg := bench.GoBenchSuite(".", gb.quick)
	if gb.count > 0 {
		cfg.Count = gb.count
	}
	cfg.Progress = os.Stderr
	rows, err := bench.RunGoBench(ctx, cfg)
	if err != nil {
		return err
	}
	rep.GoBench = rows
	bt := cfg.Benchtime
	if bt == "" {
		bt = "1s"
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("Go micro-benchmarks: go test -bench -benchmem, %d sample(s) of -benchtime %s each, median; time, bytes and allocations per operation.", cfg.Count, bt))
	return nil
}

// runCNI measures CNI ADD and DEL of both overlays and the exec floors.
func runCNI(ctx context.Context, o options, work, prefix string, rep *bench.Report) error {
	host := prefix + "-host"
	env, err := bench.NewHost(host)
	if err != nil {
		return err
	}
	defer env.Close()
	chains, err := cniChains(work, host, o.bin, o.refBin, o.baseline, o.portmap)
	if err != nil {
		return err
	}
	rep.CNI, err = bench.RunCNI(ctx, bench.CNIConfig{Prefix: prefix, Containers: o.containers, Rounds: o.rounds, Chains: chains, WorkDir: work}, host)
	if err != nil {
		return err
	}
	rep.Verdicts = append(rep.Verdicts, bench.CNIVerdicts(rep.CNI, "overlay", "flannel")...)
	version := []string{"CNI_COMMAND=VERSION"}
	for name, argv := range map[string][]string{
		"ip netns exec HOST true":   {"ip", "netns", "exec", host, "true"},
		"overlay plugin VERSION":    {filepath.Join(o.bin, "overlay")},
		"flannel plugin VERSION":    {filepath.Join(o.refBin, "flannel")},
		"bridge plugin VERSION":     {filepath.Join(o.refBin, "bridge")},
		"host-local plugin VERSION": {filepath.Join(o.refBin, "host-local")},
	} {
		if rep.Floors[name], err = bench.ExecFloor(host, 50, version, argv...); err != nil {
			return err
		}
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("CNI: %d containers × %d rounds per chain, chains alternating; each ADD/DEL timed as a runtime sees it (libcni executing the plugins from the host namespace); no portmap unless named.", o.containers, o.rounds))
	return nil
}

// cniChains sets up both overlays on host and returns the chains to compare:
// overlay first (the table's reference column is relative to it), flannel as
// kube-flannel ships it, and optionally an older overlay build and the
// portmap variants.
func cniChains(work, host, bin, refBin, baseline string, portmap bool) ([]bench.Chain, error) {
	const mtu = 1450
	run := filepath.Join(work, "run")
	if err := bench.OverlayHost(host, run, netip.MustParsePrefix("10.244.1.0/24"), mtu); err != nil {
		return nil, err
	}
	subnetEnv := filepath.Join(work, "subnet.env")
	if err := bench.FlannelHost(subnetEnv, netip.MustParsePrefix("10.245.1.0/24"), mtu); err != nil {
		return nil, err
	}
	pm := ""
	if portmap {
		pm = `,{"type":"portmap","capabilities":{"portMappings":true},"snat":true}`
	}
	overlay := func(name, data, tail string) string {
		return fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[{"type":"overlay","network":"default","runDir":%q,"ipam":{"type":"overlay-ipam","dataDir":%q}}%s]}`,
			name, run, filepath.Join(work, data), tail)
	}
	flannel := func(name, tail string) string {
		return fmt.Sprintf(`{"cniVersion":"0.4.0","name":%q,"plugins":[{"type":"flannel","subnetFile":%q,"dataDir":%q,"ipam":{"dataDir":%q},"delegate":{"hairpinMode":true,"isDefaultGateway":true}}%s]}`,
			name, subnetEnv, filepath.Join(work, "flannel"), filepath.Join(work, "host-local"), tail)
	}
	ours, theirs := []string{bin}, []string{refBin, bin} // portmap is in bin
	type spec struct {
		name string
		bins []string
		conf string
	}
	specs := []spec{{"overlay", ours, overlay("overlay", "ipam", "")}, {"flannel", theirs, flannel("flannel", "")}}
	if baseline != "" {
		specs = append(specs, spec{"overlay (baseline build)", []string{baseline}, overlay("overlay-base", "ipam-base", "")})
	}
	if portmap {
		specs = append(specs,
			spec{"overlay + portmap", ours, overlay("overlay-pm", "ipam-pm", pm)},
			spec{"flannel + portmap", theirs, flannel("flannel-pm", pm)})
	}
	chains := make([]bench.Chain, 0, len(specs))
	for _, s := range specs {
		list, err := libcni.NetworkConfFromBytes([]byte(s.conf))
		if err != nil {
			return nil, fmt.Errorf("conflist %s: %w", s.name, err)
		}
		chains = append(chains, bench.Chain{Name: s.name, BinDirs: s.bins, List: list})
	}
	return chains, nil
}
