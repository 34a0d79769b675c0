package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// IperfResult is what one iperf3 client run measured, as the receiver saw
// it: a sender's rate counts bytes that may never arrive.
type IperfResult struct {
	// Gbps is the rate the receiver got, in Gbit/s.
	Gbps float64
	// Retransmits is TCP's count at the sender (0 for UDP).
	Retransmits int
	// LossPercent is UDP's datagram loss (0 for TCP).
	LossPercent float64
	// Packets is how many UDP datagrams were sent (0 for TCP).
	Packets int
	// CPUPerGB is the CPU time sender and receiver used per GB received,
	// in seconds: iperf3's own CPU use, which on veths includes the
	// softirq work of the path run in their context (and tick accounting
	// charges to them). It moves less than the rate when other work
	// competes for the CPUs.
	CPUPerGB float64
}

// iperfJSON is the part of `iperf3 -J` client output we read (iperf3 3.12).
type iperfJSON struct {
	Error string `json:"error"`
	End   struct {
		CPU struct {
			Host   float64 `json:"host_total"`
			Remote float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
		SumSent     *iperfSum `json:"sum_sent"`
		SumReceived *iperfSum `json:"sum_received"`
		// Sum is UDP's: the receiver's loss and jitter, reported back.
		Sum *iperfSum `json:"sum"`
	} `json:"end"`
}

type iperfSum struct {
	Seconds       float64 `json:"seconds"`
	Bytes         float64 `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   int     `json:"retransmits"`
	LostPercent   float64 `json:"lost_percent"`
	Packets       int     `json:"packets"`
}

// ParseIperf reads the JSON of one `iperf3 -c … -J` run. udp says which
// kind of test it was: a UDP run without the receiver's loss is an error,
// not a lossless run.
func ParseIperf(data []byte, udp bool) (IperfResult, error) {
	var j iperfJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return IperfResult{}, fmt.Errorf("parse iperf3 JSON: %w", err)
	}
	if j.Error != "" {
		return IperfResult{}, fmt.Errorf("iperf3: %s", j.Error)
	}
	e := j.End
	if !udp {
		if e.SumReceived == nil || e.SumSent == nil {
			return IperfResult{}, errors.New("iperf3 JSON has no end.sum_sent/sum_received")
		}
		r := IperfResult{Gbps: e.SumReceived.BitsPerSecond / 1e9, Retransmits: e.SumSent.Retransmits}
		r.CPUPerGB = cpuPerGB(j, e.SumReceived)
		return r, nil
	}
	if e.Sum == nil {
		return IperfResult{}, errors.New("iperf3 UDP JSON has no end.sum (the receiver's report)")
	}
	r := IperfResult{LossPercent: e.Sum.LostPercent, Packets: e.Sum.Packets}
	if e.SumReceived != nil {
		r.Gbps = e.SumReceived.BitsPerSecond / 1e9
	} else {
		// Older iperf3 reports the sent rate only; what arrived is the
		// part that was not lost.
		r.Gbps = e.Sum.BitsPerSecond / 1e9 * (1 - e.Sum.LostPercent/100)
	}
	if e.SumReceived != nil {
		r.CPUPerGB = cpuPerGB(j, e.SumReceived)
	}
	return r, nil
}

// cpuPerGB is (sender + receiver CPU seconds) per GB received.
func cpuPerGB(j iperfJSON, recv *iperfSum) float64 {
	if recv.Bytes == 0 {
		return 0
	}
	cpuSeconds := (j.End.CPU.Host + j.End.CPU.Remote) / 100 * recv.Seconds
	return cpuSeconds / (recv.Bytes / 1e9)
}

// IperfTest is one kind of iperf3 test.
type IperfTest struct {
	Key     string // as -tput-only names it
	Name    string
	Streams int
	UDP     bool
	// UDPLen is the datagram payload (-l) of a UDP test.
	UDPLen int
}

// args are the iperf3 client flags of t beyond -c and -t.
func (t IperfTest) args() []string {
	var a []string
	if t.Streams > 1 {
		a = append(a, "-P", strconv.Itoa(t.Streams))
	}
	if t.UDP {
		// -b 0: no pacing, as fast as the sender can (see README).
		a = append(a, "-u", "-b", "0", "-l", strconv.Itoa(t.UDPLen))
	}
	return a
}

// RunIperf runs one iperf3 client in netns against server for seconds.
func RunIperf(ctx context.Context, netns, server string, seconds int, t IperfTest) (IperfResult, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+20*time.Second)
	defer cancel()
	argv := append([]string{"netns", "exec", netns, "iperf3", "-c", server, "-t", strconv.Itoa(seconds), "-J", "--connect-timeout", "3000"}, t.args()...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	if ctx.Err() != nil {
		return IperfResult{}, fmt.Errorf("iperf3 %s from %s to %s: %w", t.Name, netns, server, ctx.Err())
	}
	r, err := ParseIperf(stdout.Bytes(), t.UDP)
	if err != nil {
		if runErr != nil {
			err = errors.Join(err, runErr)
		}
		return IperfResult{}, fmt.Errorf("iperf3 %s from %s to %s: %w (%s)", t.Name, netns, server, err, strings.TrimSpace(stderr.String()))
	}
	return r, nil
}
