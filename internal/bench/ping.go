package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ParsePing reads iputils ping's per-reply lines ("… time=0.127 ms") and
// returns the round-trip times in the order they came.
func ParsePing(out []byte) ([]time.Duration, error) {
	var rtts []time.Duration
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		_, rest, ok := strings.Cut(sc.Text(), " time=")
		if !ok {
			continue
		}
		num, unit, ok := strings.Cut(rest, " ")
		if !ok || unit != "ms" {
			return nil, fmt.Errorf("ping line %q: want time=N ms", sc.Text())
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil {
			return nil, fmt.Errorf("ping line %q: %w", sc.Text(), err)
		}
		rtts = append(rtts, time.Duration(v*float64(time.Millisecond)))
	}
	return rtts, sc.Err()
}

// RunPing sends count pings from netns to dst, one every interval, and
// returns the round-trip times. The first reply is dropped: it may carry
// an ARP resolution or a cold cache. A lost reply is an error, since a
// path that loses pings on an idle machine is broken, not slow.
func RunPing(ctx context.Context, netns, dst string, count int, interval time.Duration) ([]time.Duration, error) {
	// ping sleeps at least interval between sends, often more on a busy machine.
	ctx, cancel := context.WithTimeout(ctx, 3*time.Duration(count+1)*interval+10*time.Second)
	defer cancel()
	sent := count + 1
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", netns, "ping", "-n", "-c", strconv.Itoa(sent),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), "-W", "1", dst)
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ping %s from %s: %w: %s", dst, netns, err, lastLine(out))
	}
	rtts, err := ParsePing(out)
	if err != nil {
		return nil, err
	}
	if len(rtts) != sent {
		return nil, fmt.Errorf("ping %s from %s: %d of %d replies", dst, netns, len(rtts), sent)
	}
	return rtts[1:], nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
