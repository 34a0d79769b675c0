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
	"strings"
	"syscall"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/overlaynet/overlay/internal/bench"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding overlay's plugins")
	refBin := flag.String("ref-bin", "bin/ref", "directory holding flannel, bridge, host-local and portmap")
	baseline := flag.String("baseline", "", "directory holding an older build of overlay's plugins, measured as a third chain (before/after)")
	containers := flag.Int("containers", 100, "containers attached and detached per round")
	rounds := flag.Int("rounds", 4, "rounds per chain, alternating between chains")
	portmap := flag.Bool("portmap", false, "also measure both overlays with portmap chained")
	results := flag.String("results", "bench/results", "directory for the JSON report")
	cni := flag.Bool("cni", true, "measure CNI ADD and DEL")
	var tput tputFlags
	flag.BoolVar(&tput.on, "throughput", true, "measure throughput and latency: overlay, the kernel's VXLAN wired by hand, the underlay")
	flag.IntVar(&tput.runs, "tput-runs", 6, "throughput runs per path, paths alternating (each run pairs the paths moments apart: more short runs resolve a ratio better than fewer long ones on a busy machine)")
	flag.IntVar(&tput.seconds, "tput-seconds", 2, "seconds per iperf3 test")
	flag.IntVar(&tput.pings, "tput-pings", 300, "pings per path, spread over the runs")
	tput.tunings = bench.DefaultTunings()
	tuned := false
	flag.Func("tput-tune", "a tuned variant measured beside its base path, BASE:SETTING,… (e.g. reference:veth.gro=on; see bench.ParseTuning); repeatable; replaces the default (reference:ingress); none: no variant", func(s string) error {
		if !tuned {
			tput.tunings, tuned = nil, true
		}
		if s == "none" {
			return nil
		}
		t, err := bench.ParseTuning(s)
		tput.tunings = append(tput.tunings, t)
		return err
	})
	flag.Func("tput-only", "run only these throughput tests, comma-separated: tcp1,tcp4,udp,ping (for exploring)", func(s string) error {
		tput.only = strings.Split(s, ",")
		return nil
	})
	flag.Parse()
	if err := run(*bin, *refBin, *baseline, *containers, *rounds, *portmap, *results, *cni, tput); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// tputFlags are the throughput row's flags.
type tputFlags struct {
	on                   bool
	runs, seconds, pings int
	tunings              []bench.Tuning
	only                 []string
}

func run(bin, refBin, baseline string, containers, rounds int, portmap bool, results string, cni bool, tput tputFlags) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "overlay-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	prefix := fmt.Sprintf("ovlb%d", os.Getpid())
	host := prefix + "-host"
	env, err := bench.NewHost(host)
	if err != nil {
		return err
	}
	defer env.Close()

	rep := bench.Report{Date: time.Now(), Machine: bench.ThisMachine(), Floors: map[string]bench.Summary{}}
	if tput.on {
		rep.Throughput, err = bench.RunThroughput(ctx, bench.TputConfig{Prefix: prefix + "t", Bin: bin, WorkDir: filepath.Join(work, "tput"),
			Runs: tput.runs, Seconds: tput.seconds, Pings: tput.pings, Tunings: tput.tunings, Only: tput.only, Log: os.Stderr})
		if err != nil {
			return fmt.Errorf("throughput: %w", err)
		}
		rep.Verdicts = append(rep.Verdicts, rep.Throughput.Verdicts()...)
	}
	if cni {
		if err := runCNI(ctx, &rep, work, host, bin, refBin, baseline, prefix, containers, rounds, portmap); err != nil {
			return err
		}
	}
	rep.WriteMarkdown(os.Stdout)
	path, err := rep.Save(results)
	if err != nil {
		return err
	}
	fmt.Println("saved", path)
	return nil
}

// runCNI is the CNI row and its floors.
func runCNI(ctx context.Context, rep *bench.Report, work, host, bin, refBin, baseline, prefix string, containers, rounds int, portmap bool) error {
	chains, err := cniChains(work, host, bin, refBin, baseline, portmap)
	if err != nil {
		return err
	}
	rep.CNI, err = bench.RunCNI(ctx, bench.CNIConfig{Prefix: prefix, Containers: containers, Rounds: rounds, Chains: chains, WorkDir: work}, host)
	if err != nil {
		return err
	}
	rep.Verdicts = append(rep.Verdicts, bench.CNIVerdicts(rep.CNI, "overlay", "flannel")...)
	version := []string{"CNI_COMMAND=VERSION"}
	for name, argv := range map[string][]string{
		"ip netns exec HOST true":   {"ip", "netns", "exec", host, "true"},
		"overlay plugin VERSION":    {filepath.Join(bin, "overlay")},
		"flannel plugin VERSION":    {filepath.Join(refBin, "flannel")},
		"bridge plugin VERSION":     {filepath.Join(refBin, "bridge")},
		"host-local plugin VERSION": {filepath.Join(refBin, "host-local")},
	} {
		if rep.Floors[name], err = bench.ExecFloor(host, 50, version, argv...); err != nil {
			return err
		}
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("CNI: %d containers × %d rounds per chain, chains alternating; each ADD/DEL timed as a runtime sees it (libcni executing the plugins from the host namespace); no portmap unless named.", containers, rounds))
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
