package bench

import (
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
