package bench

import (
	"strings"
	"testing"
)

func TestConvergeTableAndVerdicts(t *testing.T) {
	rs := []ConvergeResult{
		{Kind: FirstJoin, Route: Summary{P50: 21.5, Max: 40}, HostFile: Summary{P50: 26, Max: 51}},
		{Kind: FirstJoin, Build: "baseline", Route: Summary{P50: 30, Max: 45}, HostFile: Summary{P50: 60, Max: 80}},
	}
	var b strings.Builder
	writeConverge(&b, rs)
	out := b.String()
	for _, want := range []string{
		"| first join p50 | first join max | first join (baseline build) p50 |",
		"| route on the other hosts (the later of 2) | 21.5 ms | 40.0 ms | 30.0 ms | 45.0 ms |",
		"| host file written (ready for ADD) | 26.0 ms | 51.0 ms | 60.0 ms | 80.0 ms |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	v := ConvergeVerdicts(rs)
	if len(v) != 1 || !strings.Contains(v[0], "p50 21.5 ms (target ≤ 25 ms: met)") || !strings.Contains(v[0], "ready p50 26.0 ms (target ≤ 50 ms: met)") {
		t.Errorf("verdicts = %q; want one, for the build under test", v)
	}
	rs[0].Route.P50 = 25.1
	if v := ConvergeVerdicts(rs); !strings.Contains(v[0], "25.1 ms (target ≤ 25 ms: NOT met)") {
		t.Errorf("verdicts = %q; want the route target missed", v)
	}
}
