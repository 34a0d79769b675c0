package bench

import (
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	s := Summarize(ds)
	if s.N != 100 || s.P50 != 50 || s.P90 != 90 || s.P99 != 99 || s.Max != 100 {
		t.Errorf("Summarize(1..100 ms) = %+v", s)
	}
	if s := Summarize([]time.Duration{7 * time.Millisecond}); s.P50 != 7 || s.P99 != 7 {
		t.Errorf("one sample: %+v", s)
	}
	if s := Summarize(nil); s.N != 0 {
		t.Errorf("no samples: %+v", s)
	}
}

func TestCNIVerdicts(t *testing.T) {
	results := []CNIResult{
		{Chain: "overlay", Add: Summary{P50: 6, P99: 11}, Del: Summary{P50: 5, P99: 12}},
		{Chain: "flannel", Add: Summary{P50: 14, P99: 20}, Del: Summary{P50: 24, P99: 30}},
	}
	v := CNIVerdicts(results, "overlay", "flannel")
	if len(v) != 3 || !strings.Contains(v[0], "0.43×") || !strings.HasSuffix(v[0], ": met)") ||
		!strings.HasSuffix(v[1], "NOT met)") || !strings.HasSuffix(v[2], ": met)") {
		t.Errorf("verdicts = %q", v)
	}
	if CNIVerdicts(results[:1], "overlay", "flannel") != nil {
		t.Error("verdicts without the reference chain")
	}
}
