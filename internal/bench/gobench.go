package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// GoBenchRow is one Go micro-benchmark: the median of its samples (one per
// -count run), each of ns/op, B/op and allocs/op taken on its own.
type GoBenchRow struct {
	// Package is the import path, relative to the module when inside it.
	Package string `json:"package"`
	// Name is the benchmark's full name without the -GOMAXPROCS suffix.
	Name        string  `json:"name"`
	Procs       int     `json:"procs"`
	Samples     int     `json:"samples"`
	Iterations  int64   `json:"iterations"`
	NsPerOp     float64 `json:"nsPerOp"`
	BytesPerOp  float64 `json:"bytesPerOp"`
	AllocsPerOp float64 `json:"allocsPerOp"`
}

// GoBenchConfig says which micro-benchmarks to run and how often.
type GoBenchConfig struct {
	// Dir is the module's root directory.
	Dir      string
	Packages []string
	// Regex selects the benchmarks (go test -bench).
	Regex string
	// Count is the number of samples per benchmark (go test -count).
	Count int
	// Benchtime is go test -benchtime; empty means go test's default (1s).
	Benchtime string
	// Progress, if set, receives go test's output as it runs.
	Progress io.Writer
}

// GoBenchSuite is issue 10's set of micro-benchmarks: the allocator on a
// 90%-full /16 (in memory and through the on-disk store), the subnet
// choice and record decoding, the agent's wanted state and the datapath
// diff at 1k and 10k peers. The quick suite leaves out the on-disk store,
// whose setup writes 118 000 files.
func GoBenchSuite(dir string, quick bool) GoBenchConfig {
	c := GoBenchConfig{
		Dir:      dir,
		Packages: []string{"./ipam/allocator", "./ipam/store", "./pkg/subnet", "./pkg/agent", "./pkg/datapath"},
		Regex:    "^Benchmark(Next|Reserve|PickFree|DecodeRecord|ParseLease|BuildWanted|Diff)$",
		Count:    5,
	}
	if quick {
		c.Packages = slices.DeleteFunc(c.Packages, func(p string) bool { return p == "./ipam/store" })
		c.Count, c.Benchtime = 1, "200ms"
	}
	return c
}

// RunGoBench runs `go test -bench` (go from PATH) in cfg.Dir and returns a
// row per benchmark. When ctx ends, go test and the test binaries it runs
// get SIGINT (so they clean up after themselves) and, if still there 10 s
// later, SIGKILL.
func RunGoBench(ctx context.Context, cfg GoBenchConfig) ([]GoBenchRow, error) {
	module, err := modulePath(cfg.Dir)
	if err != nil {
		return nil, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("go benchmarks need the go command on PATH (make bench puts /usr/local/go/bin there): %w", err)
	}
	args := []string{"test", "-run", "^$", "-bench", cfg.Regex, "-benchmem", "-count", strconv.Itoa(max(cfg.Count, 1))}
	if cfg.Benchtime != "" {
		args = append(args, "-benchtime", cfg.Benchtime)
	}
	args = append(args, cfg.Packages...)
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = cfg.Dir
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if cfg.Progress != nil {
		cmd.Stdout, cmd.Stderr = io.MultiWriter(&out, cfg.Progress), io.MultiWriter(&stderr, cfg.Progress)
	}
	// A group of its own, so the test binaries go test starts are reached
	// too; the terminal's ^C reaches this process, which cancels ctx.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGINT) }
	cmd.WaitDelay = 10 * time.Second
	err = cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // ESRCH when all are gone, as they should be
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("go benchmarks: %w", ctx.Err())
	}
	if err != nil {
		return nil, fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.String()+out.String(), 40))
	}
	rows, err := ParseGoBench(&out)
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("go %s ran no benchmark", strings.Join(args, " "))
	}
	for i := range rows {
		if rel, ok := strings.CutPrefix(rows[i].Package, module+"/"); ok {
			rows[i].Package = rel
		}
	}
	return rows, nil
}

// modulePath reads the module path from dir's go.mod, which also checks
// that dir is the module's root.
func modulePath(dir string) (string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		return "", fmt.Errorf("go benchmarks run from the repository's root: %w", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if m, ok := strings.CutPrefix(strings.TrimSpace(line), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`), nil
		}
	}
	return "", fmt.Errorf("%s has no module line", filepath.Join(dir, "go.mod"))
}

// procsSuffix is the -GOMAXPROCS go test appends to a name when it is not 1;
// like golang.org/x/perf's benchfmt, a name's trailing -N is taken for it.
var procsSuffix = regexp.MustCompile(`-([0-9]+)$`)

// ParseGoBench reads go test -bench -benchmem output (several packages,
// any -count) and returns one row per benchmark, in the order they first
// ran. Lines other than results (headers, PASS, logs) are skipped.
func ParseGoBench(r io.Reader) ([]GoBenchRow, error) {
	type key struct{ pkg, name string }
	type samples struct {
		row               GoBenchRow
		iters             []float64
		ns, bytes, allocs []float64
	}
	var order []key
	byKey := map[key]*samples{}
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || f[3] != "ns/op" {
			continue // not a result: a header, a log line, a "--- FAIL"
		}
		iters, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: iterations %q: %w", n, f[1], err)
		}
		name, procs := f[0], 1
		if m := procsSuffix.FindStringSubmatch(name); m != nil {
			procs, _ = strconv.Atoi(m[1])
			name = strings.TrimSuffix(name, m[0])
		}
		k := key{pkg, name}
		s, ok := byKey[k]
		if !ok {
			s = &samples{row: GoBenchRow{Package: pkg, Name: name, Procs: procs}}
			byKey[k] = s
			order = append(order, k)
		}
		s.iters = append(s.iters, float64(iters))
		// The rest are value-unit pairs; -benchmem adds B/op and allocs/op,
		// b.SetBytes MB/s and b.ReportMetric its own, which are skipped.
		var sawB, sawAllocs bool
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s value %q: %w", n, f[i+1], f[i], err)
			}
			switch f[i+1] {
			case "ns/op":
				s.ns = append(s.ns, v)
			case "B/op":
				s.bytes, sawB = append(s.bytes, v), true
			case "allocs/op":
				s.allocs, sawAllocs = append(s.allocs, v), true
			}
		}
		if !sawB || !sawAllocs {
			return nil, fmt.Errorf("line %d: %s has no B/op and allocs/op (run with -benchmem)", n, name)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read benchmark output: %w", err)
	}
	rows := make([]GoBenchRow, 0, len(order))
	for _, k := range order {
		s := byKey[k]
		row := s.row
		row.Samples = len(s.ns)
		row.Iterations = int64(median(s.iters))
		row.NsPerOp, row.BytesPerOp, row.AllocsPerOp = median(s.ns), median(s.bytes), median(s.allocs)
		rows = append(rows, row)
	}
	return rows, nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(len(lines)-n, 0):], "\n")
}

// writeGoBench prints the micro-benchmarks as a Markdown table.
func writeGoBench(w io.Writer, rows []GoBenchRow) {
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "| Go micro-benchmark (median of %d) | package | time/op | B/op | allocs/op |\n", rows[0].Samples)
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %.0f |\n",
			strings.TrimPrefix(r.Name, "Benchmark"), r.Package, fmtNs(r.NsPerOp), fmtBytes(r.BytesPerOp), r.AllocsPerOp)
	}
	fmt.Fprintln(w)
}

// fmtNs renders a duration in ns with three significant digits.
func fmtNs(ns float64) string {
	switch {
	case ns >= 1e9:
		return fmt.Sprintf("%.3g s", ns/1e9)
	case ns >= 1e6:
		return fmt.Sprintf("%.3g ms", ns/1e6)
	case ns >= 1e3:
		return fmt.Sprintf("%.3g µs", ns/1e3)
	}
	return fmt.Sprintf("%.3g ns", ns)
}

// fmtBytes renders a byte count in SI units, as benchstat does.
func fmtBytes(b float64) string {
	switch {
	case b >= 1e6:
		return fmt.Sprintf("%.3g MB", b/1e6)
	case b >= 1e3:
		return fmt.Sprintf("%.3g kB", b/1e3)
	}
	return fmt.Sprintf("%.0f B", b)
}
