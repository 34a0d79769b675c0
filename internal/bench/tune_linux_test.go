package bench

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// Tuning.apply on real devices: the settings land, and undo restores every
// feature, including those one -K switched as a side effect.
func TestTuningApplyUndo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces: run make test as root")
	}
	ns := fmt.Sprintf("tputtest%d", os.Getpid())
	if err := addNetns(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { delNetns(ns) })
	if err := ipIn(ns, "link add name va type veth peer name vb"); err != nil {
		t.Fatal(err)
	}
	devs := pathDevs{hosts: [2]string{ns, ns}, veths: [2]string{"va", "vb"}}
	tu, err := ParseTuning("reference:veth.gro=on,veth.tx=off,sysctl.net.ipv4.ip_forward=1,notrack")
	if err != nil {
		t.Fatal(err)
	}
	before := map[string]map[string]string{}
	for _, d := range []string{"va", "vb"} {
		if before[d], err = ethtoolFeatures(ns, d); err != nil {
			t.Fatal(err)
		}
	}
	sysctl := func() string {
		out, err := nsOutput(ns, "sysctl", "-n", "net.ipv4.ip_forward")
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	raw := func() string {
		out, err := nsOutput(ns, "iptables", "-w", "-t", "raw", "-S")
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	undo, err := tu.apply(devs)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"va", "vb"} {
		fs, err := ethtoolFeatures(ns, d)
		if err != nil {
			t.Fatal(err)
		}
		if fs["generic-receive-offload"] != "on" || fs["tx-checksum-ip-generic"] != "off" || fs["tx-tcp-segmentation"] != "off" {
			t.Errorf("%s after apply: gro %s, tx-checksum-ip-generic %s, tso %s; want on, off, off (tx off takes TSO with it)",
				d, fs["generic-receive-offload"], fs["tx-checksum-ip-generic"], fs["tx-tcp-segmentation"])
		}
	}
	if v := sysctl(); v != "1" {
		t.Errorf("ip_forward %s after apply, want 1", v)
	}
	if r := raw(); strings.Count(r, "-j CT --notrack") != 4 {
		t.Errorf("raw table after apply (want notrack in PREROUTING and OUTPUT, once per host):\n%s", r)
	}

	if err := undo(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"va", "vb"} {
		fs, err := ethtoolFeatures(ns, d)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fs, before[d]) {
			for f, v := range before[d] {
				if fs[f] != v {
					t.Errorf("%s: %s is %s after undo, was %s", d, f, fs[f], v)
				}
			}
		}
	}
	if v := sysctl(); v != "0" {
		t.Errorf("ip_forward %s after undo, want 0", v)
	}
	if r := raw(); strings.Contains(r, "notrack") {
		t.Errorf("raw table after undo:\n%s", r)
	}
}
