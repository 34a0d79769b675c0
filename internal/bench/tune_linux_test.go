package bench

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/overlaynet/overlay/pkg/ingress"
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
	devs := pathDevs{hosts: [2]string{ns, ns}, veths: [2]string{"va", "vb"}, port: "4790", cidr: "10.245.0.0/16",
		ips: [2]netip.Addr{netip.MustParseAddr("198.18.0.11"), netip.MustParseAddr("198.18.0.12")}}
	tu, err := ParseTuning("reference:veth.gro=on,veth.tx=off,sysctl.net.ipv4.ip_forward=1,notrack,notrack.vxlan,notrack.inner,ingress")
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

	// A datagram to the port from a non-member (here 127.0.0.1): the
	// ingress filter, when in place, drops and counts it.
	filterDrops := func() uint64 {
		var n uint64
		err := inNetns(ns, func() error {
			c, err := net.Dial("udp", "127.0.0.1:4790")
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.Write([]byte("x")); err != nil {
				return err
			}
			n, err = ingress.New(benchIngressNetwork).Dropped()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	undo, err := tu.apply(devs)
	if err != nil {
		t.Fatal(err)
	}
	if n := filterDrops(); n != 1 {
		t.Errorf("ingress filter dropped %d datagrams from a non-member after apply, want 1", n)
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
	r := raw()
	for rule, n := range map[string]int{
		"-A PREROUTING -j CT --notrack":                                   2,
		"-A OUTPUT -j CT --notrack":                                       2,
		"-A PREROUTING -p udp -m udp --dport 4790 -j CT --notrack":        2,
		"-A OUTPUT -p udp -m udp --dport 4790 -j CT --notrack":            2,
		"-A PREROUTING -s 10.245.0.0/16 -d 10.245.0.0/16 -j CT --notrack": 2,
	} {
		if got := strings.Count(r, rule+"\n"); got != n {
			t.Errorf("%q %d times after apply, want %d (once per host):\n%s", rule, got, n, r)
		}
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
	if n := filterDrops(); n != 0 {
		t.Errorf("ingress filter still counts %d drops after undo, want none (no filter)", n)
	}
}
