package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// testdata/gobench.txt is real output of
//
//	go test -run '^$' -bench '^Benchmark(Next|Reserve|PickFree|DecodeRecord|ParseLease|BuildWanted|Diff)$' \
//	  -benchmem -count 2 -benchtime 100ms ./ipam/allocator ./pkg/subnet ./pkg/agent ./pkg/datapath
//
// on a 2-core VM: four packages, two samples each, and a b.SetBytes MB/s
// column in DecodeRecord.
func TestParseGoBenchRealOutput(t *testing.T) {
	f, err := os.Open("testdata/gobench.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := ParseGoBench(f)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rows {
		names = append(names, r.Name)
		if r.Samples != 2 || r.Procs != 2 {
			t.Errorf("%s: %d samples, procs %d; want 2, 2", r.Name, r.Samples, r.Procs)
		}
	}
	want := []string{
		"BenchmarkNext/scattered", "BenchmarkNext/wrap",
		"BenchmarkPickFree/slash8/leases=1000", "BenchmarkPickFree/slash8/leases=10000",
		"BenchmarkPickFree/slash8/leases=10000+gone", "BenchmarkPickFree/slash16/leases=230",
		"BenchmarkDecodeRecord", "BenchmarkParseLease",
		"BenchmarkBuildWanted/leases=1000", "BenchmarkBuildWanted/leases=10000",
		"BenchmarkDiff/peers=1000", "BenchmarkDiff/peers=10000",
	}
	if strings.Join(names, "\n") != strings.Join(want, "\n") {
		t.Fatalf("benchmarks in order of their first run:\n%s\nwant:\n%s", strings.Join(names, "\n"), strings.Join(want, "\n"))
	}
	// Medians of two samples are the mean of both, each column on its own.
	check := func(r GoBenchRow, pkg string, iters int64, ns, bytes, allocs float64) {
		t.Helper()
		if r.Package != pkg || r.Iterations != iters || r.NsPerOp != ns || r.BytesPerOp != bytes || r.AllocsPerOp != allocs {
			t.Errorf("%s = %+v; want package %s, %d iterations, %v ns/op, %v B/op, %v allocs/op", r.Name, r, pkg, iters, ns, bytes, allocs)
		}
	}
	check(rows[0], "github.com/overlaynet/overlay/ipam/allocator", (67548+207134)/2, (1513+931.7)/2.0, 0, 0)
	check(rows[6], "github.com/overlaynet/overlay/pkg/subnet", (54928+62924)/2, (2308+2265)/2.0, 480, 11)
	check(rows[9], "github.com/overlaynet/overlay/pkg/agent", 4 /* (4+5)/2 truncated */, (29397824+20889757)/2.0, (19879004+19878979)/2.0, 20148)
}

func TestParseGoBenchEdges(t *testing.T) {
	out := `pkg: example.com/m/p
BenchmarkA 	 10	 300 ns/op	 16 B/op	 1 allocs/op
some log line a benchmark printed
--- FAIL: BenchmarkB
BenchmarkA 	 30	 100 ns/op	 48 B/op	 3 allocs/op
BenchmarkC/size=10-8 	 5	 7 ns/op	 0 B/op	 0 allocs/op	 12.5 widgets/op
BenchmarkA 	 20	 200 ns/op	 32 B/op	 2 allocs/op
`
	rows, err := ParseGoBench(strings.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 {
		t.Fatalf("rows = %+v; want A and C", rows)
	}
	a, c := rows[0], rows[1]
	if a.Name != "BenchmarkA" || a.Procs != 1 || a.Samples != 3 || a.Iterations != 20 || a.NsPerOp != 200 || a.BytesPerOp != 32 || a.AllocsPerOp != 2 {
		t.Errorf("A = %+v; want the median of three samples, procs 1", a)
	}
	if c.Name != "BenchmarkC/size=10" || c.Procs != 8 || c.NsPerOp != 7 {
		t.Errorf("C = %+v; want name without -8, procs 8, 7 ns/op", c)
	}

	for _, bad := range []string{
		"BenchmarkA 	 x	 300 ns/op	 16 B/op	 1 allocs/op\n",
		"BenchmarkA 	 10	 3e ns/op	 16 B/op	 1 allocs/op\n",
		"BenchmarkA 	 10	 300 ns/op\n",
	} {
		if rows, err := ParseGoBench(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseGoBench(%q) = %+v, nil; want an error", bad, rows)
		}
	}
}

func TestWriteGoBench(t *testing.T) {
	var b strings.Builder
	Report{GoBench: []GoBenchRow{
		{Package: "ipam/allocator", Name: "BenchmarkNext/wrap", Samples: 5, NsPerOp: 2232405, BytesPerOp: 0, AllocsPerOp: 0},
		{Package: "pkg/subnet", Name: "BenchmarkDecodeRecord", Samples: 5, NsPerOp: 2686, BytesPerOp: 480, AllocsPerOp: 11},
		{Package: "pkg/agent", Name: "BenchmarkBuildWanted/leases=10000", Samples: 5, NsPerOp: 67160707, BytesPerOp: 19878932, AllocsPerOp: 20147},
	}}.WriteMarkdown(&b)
	for _, line := range []string{
		"| Go micro-benchmark (median of 5) | package | time/op | B/op | allocs/op |",
		"| Next/wrap | ipam/allocator | 2.23 ms | 0 B | 0 |",
		"| DecodeRecord | pkg/subnet | 2.69 µs | 480 B | 11 |",
		"| BuildWanted/leases=10000 | pkg/agent | 67.2 ms | 19.9 MB | 20147 |",
	} {
		if !strings.Contains(b.String(), line+"\n") {
			t.Errorf("Markdown lacks %q:\n%s", line, b.String())
		}
	}
}

// RunGoBench runs the real go command on a module of its own: rows come
// back with module-relative packages, and a failing benchmark is an error.
func TestRunGoBench(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("go"); err != nil {
		t.Setenv("PATH", filepath.Join(runtime.GOROOT(), "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	dir := t.TempDir()
	for name, body := range map[string]string{
		"go.mod":          "module example.com/m\n\ngo 1.24\n",
		"ok/ok_test.go":   "package ok\n\nimport \"testing\"\n\nvar sink []byte\n\nfunc BenchmarkAlloc(b *testing.B) {\n\tb.ReportAllocs()\n\tfor b.Loop() {\n\t\tsink = make([]byte, 64)\n\t}\n}\n",
		"bad/bad_test.go": "package bad\n\nimport \"testing\"\n\nfunc BenchmarkBroken(b *testing.B) { b.Fatal(\"broken on purpose\") }\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg := GoBenchConfig{Dir: dir, Packages: []string{"./ok"}, Regex: ".", Count: 3, Benchtime: "100x"}
	rows, err := RunGoBench(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Package != "ok" || rows[0].Name != "BenchmarkAlloc" || rows[0].Samples != 3 ||
		rows[0].Iterations != 100 || rows[0].BytesPerOp != 64 || rows[0].AllocsPerOp != 1 || rows[0].NsPerOp <= 0 {
		t.Errorf("rows = %+v; want one of package ok, BenchmarkAlloc, 3 samples of 100 iterations, 64 B/op, 1 allocs/op", rows)
	}

	cfg.Packages = []string{"./ok", "./bad"}
	if rows, err := RunGoBench(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "broken on purpose") {
		t.Errorf("RunGoBench with a failing benchmark = %+v, %v; want an error showing its output", rows, err)
	}
}
