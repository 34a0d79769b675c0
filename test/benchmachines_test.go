package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// benchScript is hack/bench-machines.sh, from test/.
const benchScript = "../hack/bench-machines.sh"

// benchRunner stands in for ssh: each "host" is a host namespace of the
// cluster, entered for the network only, as an ssh session on a machine
// would be. (`ip netns exec` would not do: its private mount namespace
// keeps the test container's netns from outliving the command.)
const benchRunner = "nsenter --net=/var/run/netns/{} --"

// benchArg is how the script is told about h: its namespace as the ssh
// destination, with the harness's run dir and IPAM store.
func (h *Host) benchArg(extra ...string) string {
	return strings.Join(append([]string{h.NS, "run-dir=" + h.RunDir, "ipam-dir=" + h.DataDir}, extra...), ",")
}

// benchCmd builds (without starting) the script for hosts, its run named id
// and short measurements.
func (c *Cluster) benchCmd(ctx context.Context, id string, env []string, hosts ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, benchScript, hosts...)
	cmd.Env = append(os.Environ(),
		"BENCH_RUN="+benchRunner, "BENCH_CNI_BIN="+c.Bin, "BENCH_NETWORK="+networkName,
		"BENCH_TMP="+c.Dir, "BENCH_ID="+id,
		"BENCH_TIME=1", "BENCH_RUNS=2", "BENCH_PINGS=20", "BENCH_PING_INTERVAL=0.05")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// runBench runs the script to its end and returns stdout, stderr and its
// exit code.
func (c *Cluster) runBench(t *testing.T, id string, env []string, hosts ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := c.benchCmd(ctx, id, env, hosts...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %s: %v\n%s", benchScript, err, errOut.String())
	}
	return out.String(), errOut.String(), cmd.ProcessState.ExitCode()
}

// TestBenchMachines runs hack/bench-machines.sh on simulated hosts with a
// local command runner in place of ssh: a full run whose table has real
// numbers for both paths, then a host without overlayd, an underlay
// address that does not answer (through a stand-in for ssh), a ^C in the
// middle and a host whose overlayd stopped; after each, nothing the script
// made is left.
func TestBenchMachines(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	c.SetNetwork()
	h1, h2, h3 := c.Hosts[0], c.Hosts[1], c.Hosts[2]
	h1.Start()
	h2.Start()
	h1.WaitReady()
	h2.WaitReady()
	// h3 never runs overlayd.

	t.Run("measures", func(t *testing.T) {
		id := c.Prefix + "-bm1"
		jsonPath := filepath.Join(c.Dir, "bench-machines.json")
		stdout, stderr, code := c.runBench(t, id, []string{"BENCH_JSON=" + jsonPath}, h1.benchArg(), h2.benchArg())
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		t.Logf("table:\n%s", stdout)
		checkBenchTable(t, stdout, h1, h2)
		checkBenchJSON(t, jsonPath, h2)
		c.assertBenchLeftNothing(t, id, stderr, h1, h2)
	})

	t.Run("host not ready", func(t *testing.T) {
		id := c.Prefix + "-bm2"
		stdout, stderr, code := c.runBench(t, id, nil, h1.benchArg(), h3.benchArg())
		if code == 0 {
			t.Fatalf("exit 0 with a host without overlayd\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
		want := h3.NS + ": overlayd is not ready: no host file " + h3.HostFilePath()
		if !strings.Contains(stderr, want) || strings.Contains(stderr, h1.NS+": ") || stdout != "" {
			t.Fatalf("stderr does not name only h3 as not ready (want %q):\n%s\nstdout:\n%s", want, stderr, stdout)
		}
		c.assertBenchLeftNothing(t, id, stderr, h1, h3)
	})

	t.Run("underlay does not answer", func(t *testing.T) {
		// Fails after both containers are attached and h2's servers run.
		// Through ssh's code path this time: the stand-in gets the
		// destination and one string, which a shell "there" runs, as
		// sshd has the login shell run it.
		fakeSSH := filepath.Join(c.Dir, "fake-ssh")
		script := "#!/bin/sh\nhost=$1\nshift\nexec nsenter --net=/var/run/netns/\"$host\" -- sh -c \"$*\"\n"
		if err := os.WriteFile(fakeSSH, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		id := c.Prefix + "-bm3"
		stdout, stderr, code := c.runBench(t, id, []string{"BENCH_RUN=", "BENCH_SSH=" + fakeSSH},
			h1.benchArg(), h2.benchArg("underlay=198.18.0.99"))
		if code == 0 {
			t.Fatalf("exit 0 with an unreachable underlay address\nstdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
		if !strings.Contains(stderr, "does not reach "+h2.NS+"'s underlay address 198.18.0.99") ||
			!strings.Contains(stderr, "removing what this run made") {
			t.Fatalf("stderr does not say what failed and that it cleaned up:\n%s", stderr)
		}
		c.assertBenchLeftNothing(t, id, stderr, h1, h2)
	})

	t.Run("interrupted", func(t *testing.T) {
		id := c.Prefix + "-bm4"
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := c.benchCmd(ctx, id, []string{"BENCH_TIME=30"}, h1.benchArg(), h2.benchArg())
		// Its own process group, which gets the SIGINT as a terminal's
		// foreground group gets ^C.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		cmd.Stderr = pw
		err = cmd.Start()
		pw.Close() // the script's copy keeps it open
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		lines := make(chan string, 100)
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		var stderr strings.Builder
		measuring := time.After(time.Minute)
	wait:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("script ended before it measured:\n%s", stderr.String())
				}
				stderr.WriteString(l + "\n")
				if strings.Contains(l, ": measuring") {
					break wait
				}
			case <-measuring:
				t.Fatalf("script did not start measuring within a minute:\n%s", stderr.String())
			}
		}
		time.Sleep(time.Second) // into the first iperf3 run
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
			t.Fatal(err)
		}
		err = <-done
		// Its stderr closes once nothing it started holds it any more.
		closed := time.After(10 * time.Second)
	drain:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break drain
				}
				stderr.WriteString(l + "\n")
			case <-closed:
				t.Errorf("the script's stderr is still open 10 s after it ended: something it started runs on")
				break drain
			}
		}
		if code := cmd.ProcessState.ExitCode(); code != 130 {
			t.Fatalf("exit %d (%v) after SIGINT, want 130\nstderr:\n%s", code, err, stderr.String())
		}
		if !strings.Contains(stderr.String(), "interrupted") || !strings.Contains(stderr.String(), "removing what this run made") {
			t.Fatalf("stderr does not say it was interrupted and cleaned up:\n%s", stderr.String())
		}
		c.assertBenchLeftNothing(t, id, stderr.String(), h1, h2)
	})

	t.Run("overlayd stopped", func(t *testing.T) {
		// The host file stays; the ready stamp is what says overlayd
		// vouches for it, and the plugin's STATUS reads it.
		h2.Daemon.Stop(5 * time.Second)
		if err := os.Remove(hostfile.ReadyPath(h2.RunDir, networkName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		id := c.Prefix + "-bm5"
		stdout, stderr, code := c.runBench(t, id, nil, h1.benchArg(), h2.benchArg())
		want := h2.NS + ": overlayd is not ready for network default (the plugin's STATUS answers code 50)"
		if code == 0 || !strings.Contains(stderr, want) || strings.Contains(stderr, h1.NS+": ") {
			t.Fatalf("exit %d; stderr does not name only h2 as not ready (want %q):\n%s\nstdout:\n%s", code, want, stderr, stdout)
		}
		c.assertBenchLeftNothing(t, id, stderr, h1, h2)
	})
}

// benchNumber matches the leading number of a table cell ("9.81 Gbit/s
// (9.50–10.02)", "0.061 ms").
var benchNumber = regexp.MustCompile(`^([0-9]+\.[0-9]+) (Gbit/s|ms)`)

// checkBenchTable checks the rows of client h1 -> server h2: both paths
// have nonzero throughput for 1 and 4 streams and nonzero ping times, the
// overlay row names a container of h2's subnet and the underlay row h2's
// underlay address.
func checkBenchTable(t *testing.T, table string, h1, h2 *Host) {
	t.Helper()
	prefix := fmt.Sprintf("| %s → %s | ", h1.NS, h2.NS)
	subnet := h2.HostFile().Subnet
	paths := map[string]bool{}
	for line := range strings.SplitSeq(table, "\n") {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		cells := strings.Split(strings.TrimSuffix(rest, " |"), " | ")
		if len(cells) != 5 {
			t.Fatalf("row %q: want 6 cells", line)
		}
		var path string
		switch {
		case strings.HasPrefix(cells[0], "container → container"):
			path = "overlay"
			ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(cells[0], "container → container (overlay, "), ")"))
			if err != nil || !subnet.Contains(ip) {
				t.Errorf("row %q: want a container address of %s (%v)", line, subnet, err)
			}
		case strings.HasPrefix(cells[0], "host → host"):
			path = "underlay"
			if cells[0] != "host → host (underlay, "+h2.IP+")" {
				t.Errorf("row %q: want h2's underlay address %s", line, h2.IP)
			}
		default:
			continue // the ratio row
		}
		paths[path] = true
		for i, unit := range []string{"Gbit/s", "Gbit/s", "ms", "ms"} {
			m := benchNumber.FindStringSubmatch(cells[i+1])
			if m == nil || m[2] != unit {
				t.Errorf("%s row, cell %q: want a number in %s", path, cells[i+1], unit)
				continue
			}
			if v, _ := strconv.ParseFloat(m[1], 64); v <= 0 {
				t.Errorf("%s row, cell %q: want more than 0", path, cells[i+1])
			}
		}
	}
	if !paths["overlay"] || !paths["underlay"] {
		t.Fatalf("table lacks a row for a path (have %v):\n%s", paths, table)
	}
}

// checkBenchJSON checks the JSON report: both paths of the pair with two
// nonzero runs per cell and every ping answered.
func checkBenchJSON(t *testing.T, path string, h2 *Host) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	type cell struct {
		Runs   []float64 `json:"runs_gbps"`
		Median float64   `json:"median_gbps"`
	}
	var r struct {
		Hosts []struct {
			Kernel string `json:"kernel"`
			Cores  int    `json:"cores"`
		} `json:"hosts"`
		Pairs []struct {
			ServerUnderlay string `json:"server_underlay"`
			UnderlayFrom   string `json:"underlay_from"`
			Paths          []struct {
				Path  string `json:"path"`
				TCP1  cell   `json:"tcp_1_stream"`
				TCP4  cell   `json:"tcp_4_streams"`
				Pings struct {
					P50, P99 float64
					Replies  int
				} `json:"ping_ms"`
			} `json:"paths"`
		} `json:"pairs"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%s: %v\n%s", path, err, data)
	}
	if len(r.Hosts) != 2 || r.Hosts[0].Kernel == "" || r.Hosts[0].Cores < 1 || len(r.Pairs) != 1 ||
		r.Pairs[0].ServerUnderlay != h2.IP || len(r.Pairs[0].Paths) != 2 {
		t.Fatalf("%s: want 2 hosts with kernel and cores, 1 pair to %s with 2 paths:\n%s", path, h2.IP, data)
	}
	// Where h1's overlayd sends h2's VXLAN packets, not a guess.
	if !strings.Contains(r.Pairs[0].UnderlayFrom, "FDB entry") {
		t.Errorf("underlay address %s came from %q, want h1's FDB entry", h2.IP, r.Pairs[0].UnderlayFrom)
	}
	for _, p := range r.Pairs[0].Paths {
		for _, c := range []cell{p.TCP1, p.TCP4} {
			if len(c.Runs) != 2 || c.Runs[0] <= 0 || c.Runs[1] <= 0 || c.Median <= 0 {
				t.Errorf("%s path: runs %v median %v, want 2 nonzero runs", p.Path, c.Runs, c.Median)
			}
		}
		if p.Pings.P50 <= 0 || p.Pings.P99 < p.Pings.P50 || p.Pings.Replies != 20 {
			t.Errorf("%s path: ping %+v, want 20 replies, 0 < p50 <= p99", p.Path, p.Pings)
		}
	}
}

// benchAttached matches the script's "HOST: test container NS attached, IP".
var benchAttached = regexp.MustCompile(`test container \S+ attached, (\S+)`)

// assertBenchLeftNothing checks that run id left nothing: no namespace or
// scratch dir named after it, no process naming it or a test container's
// address (from the script's log), and on each host no IPAM reservation,
// no bridge port, no veth but the underlay's eth0 and no process but
// overlayd.
func (c *Cluster) assertBenchLeftNothing(t *testing.T, id, log string, hosts ...*Host) {
	t.Helper()
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), id) {
			t.Errorf("namespace %s is left", e.Name())
		}
	}
	if left, _ := filepath.Glob(filepath.Join(c.Dir, id+"*")); len(left) > 0 {
		t.Errorf("scratch dirs left: %v", left)
	}
	marks := []string{id}
	for _, m := range benchAttached.FindAllStringSubmatch(log, -1) {
		marks = append(marks, " "+m[1]+" ")
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || len(b) == 0 {
			continue
		}
		cmdline := " " + string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		for _, m := range marks {
			if strings.Contains(cmdline, m) {
				t.Errorf("process %s is left: %s", filepath.Dir(p), cmdline)
			}
		}
	}
	for _, h := range hosts {
		for _, sub := range []string{"ips", "attachments"} {
			dir := filepath.Join(h.DataDir, networkName, sub)
			if es, _ := os.ReadDir(dir); len(es) > 0 {
				t.Errorf("h%d: IPAM store %s is not empty: %v", h.N, dir, es)
			}
		}
		if hf, err := os.Stat(h.HostFilePath()); err == nil && hf.Mode().IsRegular() {
			if ports := h.bridgePorts(h.HostFile().Bridge); len(ports) > 0 {
				t.Errorf("h%d: bridge ports left: %v", h.N, ports)
			}
		}
		// DEL leaves the pair to the plugin's reaper, which deletes it
		// just after; removing the container's netns deletes it too.
		var veths []string
		deadline := time.Now().Add(5 * time.Second)
		for {
			veths = h.veths(t)
			if len(veths) == 1 && veths[0] == "eth0" || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if len(veths) != 1 || veths[0] != "eth0" {
			t.Errorf("h%d: veths %v, want only eth0", h.N, veths)
		}
		// The reaper (a copy of the plugin) may still be exiting.
		var others []string
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if others = h.processesBut(t, "overlayd"); len(others) == 0 || time.Now().After(deadline) {
				break
			}
		}
		if len(others) > 0 {
			t.Errorf("h%d: processes left in the host namespace: %v", h.N, others)
		}
	}
}

// processesBut lists the processes in h's namespace ("PID (NAME)") not
// named name.
func (h *Host) processesBut(t *testing.T, name string) []string {
	t.Helper()
	var others []string
	for _, pid := range strings.Fields(run(t, "ip", "netns", "pids", h.NS)) {
		comm, err := os.ReadFile("/proc/" + pid + "/comm")
		if n := strings.TrimSpace(string(comm)); err == nil && n != name {
			others = append(others, pid+" ("+n+")")
		}
	}
	return others
}

// veths returns the names of h's veth devices.
func (h *Host) veths(t *testing.T) []string {
	t.Helper()
	return h.linkNames(t, "type", "veth")
}
