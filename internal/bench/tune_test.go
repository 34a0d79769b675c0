package bench

import (
	"reflect"
	"testing"
)

func TestParseTuning(t *testing.T) {
	got, err := ParseTuning("reference:veth.gro=on,veth.rx-udp-gro-forwarding=on,sysctl.net.bridge.bridge-nf-call-iptables=0,notrack")
	if err != nil {
		t.Fatal(err)
	}
	want := Tuning{Base: "reference", Settings: []Setting{
		{Dev: "veth", Feature: "gro", Value: "on"},
		{Dev: "veth", Feature: "rx-udp-gro-forwarding", Value: "on"},
		{Dev: "sysctl", Feature: "net.bridge.bridge-nf-call-iptables", Value: "0"},
		{Dev: "notrack"},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if n := got.Name(); n != "reference + veth.gro=on, veth.rx-udp-gro-forwarding=on, sysctl.net.bridge.bridge-nf-call-iptables=0, notrack" {
		t.Errorf("name %q", n)
	}
}

func TestParseTuningRejects(t *testing.T) {
	for _, spec := range []string{
		"",
		"reference",
		"reference:",
		"flannel:veth.gro=on",   // no such path
		"overlay:veth.gro",      // no value
		"overlay:veth=on",       // no feature
		"overlay:nic.gro=on",    // no such device
		"overlay:veth.gro=yes",  // ethtool wants on/off
		"underlay:veth.gro=on",  // the underlay has no veth
		"overlay:veth.gro=on,,", // empty setting
	} {
		if _, err := ParseTuning(spec); err == nil {
			t.Errorf("%q: no error", spec)
		}
	}
	if tu, err := ParseTuning("reference:ingress"); err != nil || !reflect.DeepEqual(tu, DefaultTunings()[0]) || tu.Name() != "reference + overlay's ingress filter" {
		t.Errorf("ingress: %+v, %v; want the default tuning", tu, err)
	}
	if tu, err := ParseTuning("overlay:notrack.vxlan,notrack.inner"); err != nil || tu.Name() != "overlay + notrack.vxlan, notrack.inner" {
		t.Errorf("notrack kinds: %+v, %v", tu, err)
	}
	if _, err := ParseTuning("underlay:eth0.gro=on,notrack"); err != nil {
		t.Errorf("underlay eth0: %v", err)
	}
}

// testdata/ethtool-k-veth.txt is `ethtool -k` of a fresh veth (ethtool 6.1,
// kernel 6.18).
func TestParseEthtoolFeatures(t *testing.T) {
	fs := parseEthtoolFeatures(string(readTestdata(t, "ethtool-k-veth.txt")))
	for name, want := range map[string]string{
		"generic-receive-offload":  "off",
		"tx-checksum-ip-generic":   "on", // indented sub-feature
		"rx-udp-gro-forwarding":    "off",
		"tcp-segmentation-offload": "on",
	} {
		if fs[name] != want {
			t.Errorf("%s = %q, want %q", name, fs[name], want)
		}
	}
	for _, fixed := range []string{"tx-checksum-ipv4", "Features for va"} {
		if _, ok := fs[fixed]; ok {
			t.Errorf("%s listed: fixed features and the header cannot be set", fixed)
		}
	}
}

func TestSpreadAndRatio(t *testing.T) {
	s := spreadOf([]float64{3, 1, 2, 10})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 || !reflect.DeepEqual(s.Runs, []float64{3, 1, 2, 10}) {
		t.Errorf("spread %+v", s)
	}
	// Paired: run i of a against run i of b, then the median.
	if r := pairedRatio([]float64{10, 9, 12}, []float64{10, 10, 10}); r != 1 {
		t.Errorf("paired ratio %v, want 1", r)
	}
	if r := pairedRatio([]float64{1}, []float64{0}); r != 0 {
		t.Errorf("ratio to zero %v, want 0 (none)", r)
	}
}
