package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Machine names where a result came from.
type Machine struct {
	CPU    string `json:"cpu"`
	Cores  int    `json:"cores"`
	Kernel string `json:"kernel"`
	OS     string `json:"os"`
}

// ThisMachine reads the CPU model, core count, kernel and OS release.
func ThisMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), CPU: "unknown", Kernel: "unknown", OS: "unknown"}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(data))
	}
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	return m
}

// Report is one `make bench` run.
type Report struct {
	Date    time.Time   `json:"date"`
	Machine Machine     `json:"machine"`
	CNI     []CNIResult `json:"cni,omitempty"`
	// Converge is a new host joining a running cluster.
	Converge []ConvergeResult `json:"converge,omitempty"`
	// Throughput is the throughput and latency row.
	Throughput *TputResult `json:"throughput,omitempty"`
	// Verdicts say how the results stand against the project's targets.
	Verdicts []string           `json:"verdicts,omitempty"`
	Floors   map[string]Summary `json:"floors,omitempty"`
	Scale    []ScaleResult      `json:"scale,omitempty"`
	Notes    []string           `json:"notes,omitempty"`
	// GoBench are the Go micro-benchmarks (gobench.go).
	GoBench []GoBenchRow `json:"goBench,omitempty"`
}

// WriteMarkdown prints the report as Markdown tables.
func (r Report) WriteMarkdown(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "Machine: %s, %d cores, kernel %s, %s; %s\n\n", m.CPU, m.Cores, m.Kernel, m.OS, r.Date.Format("2006-01-02 15:04 MST"))
	if r.Throughput != nil {
		r.Throughput.WriteMarkdown(w)
	}
	if len(r.CNI) > 0 {
		fmt.Fprintf(w, "| CNI chain | ADD p50 | ADD p90 | ADD p99 | DEL p50 | DEL p90 | DEL p99 | ADD p50 ÷ %s's | DEL p50 ÷ %s's |\n", r.CNI[0].Chain, r.CNI[0].Chain)
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
		base := r.CNI[0]
		for _, c := range r.CNI {
			fmt.Fprintf(w, "| %s | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.1f ms | %.2f× | %.2f× |\n",
				c.Chain, c.Add.P50, c.Add.P90, c.Add.P99, c.Del.P50, c.Del.P90, c.Del.P99,
				c.Add.P50/base.Add.P50, c.Del.P50/base.Del.P50)
		}
		fmt.Fprintln(w)
	}
	if len(r.Floors) > 0 {
		fmt.Fprintln(w, "| floor (no plugin work) | p50 | p99 |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, k := range sortedKeys(r.Floors) {
			fmt.Fprintf(w, "| %s | %.1f ms | %.1f ms |\n", k, r.Floors[k].P50, r.Floors[k].P99)
		}
		fmt.Fprintln(w)
	}
	writeConverge(w, r.Converge)
	writeScale(w, r.Scale)
	writeGoBench(w, r.GoBench)
	if len(r.Verdicts) > 0 {
		fmt.Fprintln(w, "Targets:")
		fmt.Fprintln(w)
	}
	for _, v := range r.Verdicts {
		fmt.Fprintf(w, "- %s\n", v)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "How each part was measured:")
		fmt.Fprintln(w)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
}

// Save writes the report as JSON into dir, named by its date.
func (r Report) Save(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create results dir: %w", err)
	}
	path := filepath.Join(dir, "bench-"+r.Date.UTC().Format("20060102T150405Z")+".json")
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode report: %w", err)
	}
	return path, os.WriteFile(path, append(data, '\n'), 0o644)
}

func sortedKeys(m map[string]Summary) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
