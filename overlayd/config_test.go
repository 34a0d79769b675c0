package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	c, err := parseFlags([]string{"--etcd-endpoints", "http://a:2379, http://b:2379", "--network", "blue", "--iface", "eth1",
		"--run-dir", "/tmp/r", "--state-dir", "/tmp/s", "--public-ip", "198.18.0.9", "--lease-ttl", "5s", "--log-level", "debug", "--forward-rules=false"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.EtcdEndpoints) != 2 || c.EtcdEndpoints[1] != "http://b:2379" || len(c.Networks) != 1 || c.Networks[0] != (Network{"blue", "overlay0"}) || c.Iface != "eth1" ||
		c.RunDir != "/tmp/r" || c.StateDir != "/tmp/s" || c.PublicIP.String() != "198.18.0.9" || c.LeaseTTL != 5*time.Second || c.ForwardRules {
		t.Fatalf("config = %+v", c)
	}
	d, err := parseFlags(nil, io.Discard)
	if err != nil || len(d.Networks) != 1 || d.Networks[0] != (Network{"default", "overlay0"}) || !d.IngressFilter || d.RunDir != "/run/overlay" || d.StateDir != "/var/lib/overlay" || d.EtcdPrefix != "/overlay" || !d.ForwardRules {
		t.Fatalf("defaults = %+v, %v", d, err)
	}
}

func TestParseFlagsRejects(t *testing.T) {
	cases := map[string][]string{
		"--network":         {"--network", "a/b"},
		"--public-ip":       {"--public-ip", "nope"},
		"--lease-ttl":       {"--lease-ttl", "1s"},
		"--log-level":       {"--log-level", "loud"},
		"--etcd-endpoints":  {"--etcd-endpoints", " , "},
		"--bridge":          {"--bridge", "a-very-long-bridge-name"},
		"given twice":       {"--network", "a", "--network", "a"},
		"already network":   {"--network", "a=br0,b=br0"},
		"--forward-rules":   {"--network", "a,b", "--forward-rules=false"},
		"--network b-with":  {"--network", "a", "--network", "b-with-a-long-name"},
		"argument":          {"extra"},
		"--probe-rate":      {"--probe-rate", "NaN"},
		"--probe-rate +Inf": {"--probe-rate", "+Inf"},
		"--probe-rate 0":    {"--probe-rate", "0"},
		"--probe-interval":  {"--probe-interval", "10ms"},
	}
	for want, args := range cases {
		_, err := parseFlags(args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseFlags(%q) err = %v, want it to mention %s", args, err, want)
		}
	}
}

// Several networks: repeated or listed; the first keeps --bridge, the
// others get ovl-NAME unless named.
func TestParseSeveralNetworks(t *testing.T) {
	c, err := parseFlags([]string{"--network", "default", "--network", "blue,red=br-red", "--bridge", "cni0"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	want := []Network{{"default", "cni0"}, {"blue", "ovl-blue"}, {"red", "br-red"}}
	if !slices.Equal(c.Networks, want) {
		t.Fatalf("networks = %+v, want %+v", c.Networks, want)
	}
}
