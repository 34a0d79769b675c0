package bench

import (
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

// The files are real `iperf3 -c … -J` output of iperf3 3.12 (Debian 12),
// container→container over overlay.
func TestParseIperf(t *testing.T) {
	for _, tc := range []struct {
		file string
		udp  bool
		want IperfResult
	}{
		{"iperf3-tcp.json", false, IperfResult{Gbps: 9.94238814994921, Retransmits: 57, CPUPerGB: 0.7284911965817422}},
		{"iperf3-tcp-p4.json", false, IperfResult{Gbps: 11.77247219558869, Retransmits: 246, CPUPerGB: 0.6205416831527986}},
		{"iperf3-udp.json", true, IperfResult{Gbps: 0.5627540090693137, LossPercent: 2.2491145218417947, Packets: 50820, CPUPerGB: 13.837166606806926}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			got, err := ParseIperf(readTestdata(t, tc.file), tc.udp)
			if err != nil {
				t.Fatal(err)
			}
			if !near(got.Gbps, tc.want.Gbps) || got.Retransmits != tc.want.Retransmits ||
				!near(got.LossPercent, tc.want.LossPercent) || got.Packets != tc.want.Packets || !near(got.CPUPerGB, tc.want.CPUPerGB) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseIperfErrors(t *testing.T) {
	_, err := ParseIperf(readTestdata(t, "iperf3-error.json"), false)
	if err == nil || !strings.Contains(err.Error(), "unable to connect to server") {
		t.Errorf("error output: got %v, want iperf3's error", err)
	}
	if _, err := ParseIperf(nil, false); err == nil {
		t.Error("empty output (iperf3 killed): no error")
	}
	// A TCP run read as UDP has no receiver's loss report: not lossless.
	if _, err := ParseIperf(readTestdata(t, "iperf3-tcp.json"), true); err == nil {
		t.Error("TCP output parsed as UDP: no error")
	}
	if _, err := ParseIperf(readTestdata(t, "iperf3-udp.json"), false); err != nil {
		t.Errorf("UDP output has sum_sent/sum_received too, readable as TCP: %v", err)
	}
}

// Older iperf3 has no sum_received for UDP: what arrived is what was sent
// less the loss.
func TestParseIperfUDPWithoutSumReceived(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(readTestdata(t, "iperf3-udp.json"), &doc); err != nil {
		t.Fatal(err)
	}
	end := doc["end"].(map[string]any)
	delete(end, "sum_received")
	sum := end["sum"].(map[string]any)
	data, _ := json.Marshal(doc)
	got, err := ParseIperf(data, true)
	if err != nil {
		t.Fatal(err)
	}
	want := sum["bits_per_second"].(float64) / 1e9 * (1 - sum["lost_percent"].(float64)/100)
	if !near(got.Gbps, want) || got.Gbps >= sum["bits_per_second"].(float64)/1e9 {
		t.Errorf("Gbps = %v, want %v (below the sent rate)", got.Gbps, want)
	}
}

func TestIperfTestArgs(t *testing.T) {
	for _, tc := range []struct {
		t    IperfTest
		want string
	}{
		{IperfTest{Streams: 1}, ""},
		{IperfTest{Streams: 4}, "-P 4"},
		{IperfTest{Streams: 1, UDP: true, UDPLen: 1422}, "-u -b 0 -l 1422"},
	} {
		if got := strings.Join(tc.t.args(), " "); got != tc.want {
			t.Errorf("%+v: args %q, want %q", tc.t, got, tc.want)
		}
	}
}
