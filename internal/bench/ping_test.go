package bench

import (
	"testing"
	"time"
)

// testdata/ping.txt is real iputils ping output (20 pings over overlay).
func TestParsePing(t *testing.T) {
	rtts, err := ParsePing(readTestdata(t, "ping.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if len(rtts) != 20 {
		t.Fatalf("%d round trips, want 20", len(rtts))
	}
	if rtts[0] != 133*time.Microsecond || rtts[10] != 146*time.Microsecond || rtts[19] != 135*time.Microsecond {
		t.Errorf("got %v %v %v, want 133µs 146µs 135µs", rtts[0], rtts[10], rtts[19])
	}
	if s := Summarize(rtts); s.P50 != 0.128 || s.Max != 0.146 {
		t.Errorf("summary %+v, want p50 0.128 ms, max 0.146 ms", s)
	}
}

func TestParsePingNoReplies(t *testing.T) {
	rtts, err := ParsePing(readTestdata(t, "ping-unreachable.txt"))
	if err != nil || len(rtts) != 0 {
		t.Errorf("got %v, %v; want no round trips, no error", rtts, err)
	}
}

func TestParsePingBadLine(t *testing.T) {
	for _, line := range []string{
		"64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=abc ms\n",
		"64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=1.0 s\n",
	} {
		if _, err := ParsePing([]byte(line)); err == nil {
			t.Errorf("%q: no error", line)
		}
	}
}
