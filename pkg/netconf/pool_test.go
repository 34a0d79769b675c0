package netconf

import (
	"net/netip"
	"strings"
	"testing"
)

func edgeConfig(t *testing.T, edge string) Config {
	t.Helper()
	c := Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, VNI: 1, Port: 8472,
		EdgeCIDR: netip.MustParsePrefix(edge)}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// The edge range is taken out of the container subnets: every host subnet
// the pool hands out lies outside it, and every edge address inside it.
func TestPoolsSplitTheNetwork(t *testing.T) {
	c := edgeConfig(t, "10.244.128.0/23")
	hp, ep := c.HostPool(), c.EdgePool()
	if hp.Count() != 254 || ep.Count() != 510 {
		t.Fatalf("counts: host %d (want 254), edge %d (want 510)", hp.Count(), ep.Count())
	}
	seen := map[netip.Prefix]bool{}
	for i := range hp.Count() {
		s := hp.At(i)
		if s.Overlaps(c.EdgeCIDR) || !hp.Contains(s) || seen[s] {
			t.Fatalf("host slot %d = %s: overlaps edge range, not contained, or repeated", i, s)
		}
		seen[s] = true
	}
	if hp.At(127) != netip.MustParsePrefix("10.244.127.0/24") || hp.At(128) != netip.MustParsePrefix("10.244.130.0/24") {
		t.Fatalf("slots around the edge range: %s, %s", hp.At(127), hp.At(128))
	}
	if ep.At(0) != netip.MustParsePrefix("10.244.128.1/32") || ep.At(509) != netip.MustParsePrefix("10.244.129.254/32") {
		t.Fatalf("edge slots: first %s, last %s", ep.At(0), ep.At(509))
	}
	for _, tc := range []struct {
		s          string
		host, edge bool
	}{
		{"10.244.127.0/24", true, false},
		{"10.244.128.0/24", false, false},
		{"10.244.129.0/24", false, false},
		{"10.244.130.0/24", true, false},
		{"10.244.128.0/32", false, false}, // first address of the edge range
		{"10.244.128.1/32", false, true},
		{"10.244.129.255/32", false, false}, // last
		{"10.244.3.7/32", false, false},
	} {
		p := netip.MustParsePrefix(tc.s)
		if c.Contains(p) != tc.host || c.ContainsEdge(p) != tc.edge {
			t.Errorf("%s: host %v edge %v, want %v %v", tc.s, c.Contains(p), c.ContainsEdge(p), tc.host, tc.edge)
		}
	}
}

func TestNoEdgeRangeNoEdgePool(t *testing.T) {
	c := Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, VNI: 1, Port: 8472}
	if c.EdgePool().Count() != 0 || c.ContainsEdge(netip.MustParsePrefix("10.244.0.1/32")) || c.HostPool().Count() != 256 {
		t.Fatal("a network without edgeCIDR has edge addresses or lost subnets")
	}
}

// Finding: an edgeCIDR outside the network or sharing a container subnet
// is refused with the field named.
func TestEdgeCIDRValidation(t *testing.T) {
	for _, tc := range []struct{ edge, want string }{
		{"10.245.0.0/24", `"edgeCIDR" 10.245.0.0/24 lies outside network 10.244.0.0/16; pick a range inside it, e.g. its last subnet 10.244.255.0/24`},
		{"10.0.0.0/8", "lies outside network"},
		{"10.244.0.0/16", "is the whole network"},
		{"10.244.3.0/28", `"edgeCIDR" 10.244.3.0/28 overlaps container subnet 10.244.3.0/24 (subnetLen 24)`},
		{"10.244.3.1/24", "has host bits set; did you mean 10.244.3.0/24?"},
	} {
		data := `{"network":"10.244.0.0/16","subnetLen":24,"edgeCIDR":"` + tc.edge + `"}`
		_, err := Parse([]byte(data))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("edgeCIDR %s: error %v, want it to say %q", tc.edge, err, tc.want)
		}
	}
	if _, err := Parse([]byte(`{"network":"10.244.0.0/16","edgeCIDR":"nope"}`)); err == nil || !strings.Contains(err.Error(), `field "edgeCIDR" "nope" is not a CIDR`) {
		t.Errorf("bad CIDR: %v", err)
	}
	c, err := Parse([]byte(`{"network":"10.244.0.0/16","subnetLen":24,"edgeCIDR":"10.244.255.0/24"}`))
	if err != nil || c.EdgeCIDR != netip.MustParsePrefix("10.244.255.0/24") {
		t.Fatalf("valid edgeCIDR: %+v, %v", c, err)
	}
	data, _ := c.Marshal()
	if back, err := Parse(data); err != nil || back != c {
		t.Fatalf("round trip %s: %+v, %v", data, back, err)
	}
}

// For every valid split of a few networks: the host and edge pools never
// share an address, At and Contains agree, and together with the edge
// range's first and last address they cover the network exactly.
func TestPoolsPartitionTheNetwork(t *testing.T) {
	for _, network := range []string{"10.244.0.0/16", "10.244.0.0/20", "192.168.0.0/24"} {
		nw := netip.MustParsePrefix(network)
		for subnetLen := nw.Bits() + 1; subnetLen <= min(nw.Bits()+6, MaxSubnetLen); subnetLen++ {
			for edgeBits := nw.Bits() + 1; edgeBits <= subnetLen; edgeBits++ {
				for _, at := range []int{0, 1, -1} { // first, second and last block of that size
					n := 1 << (edgeBits - nw.Bits())
					i := (at + n) % n
					c := Config{Network: nw, SubnetLen: subnetLen, VNI: 1, Port: 8472,
						EdgeCIDR: netip.PrefixFrom(Config{Network: nw, SubnetLen: edgeBits}.HostPool().At(i).Addr(), edgeBits)}
					if err := c.Validate(); err != nil {
						t.Fatalf("%+v: %v", c, err)
					}
					checkPartition(t, c)
				}
			}
		}
	}
}

func checkPartition(t *testing.T, c Config) {
	t.Helper()
	hp, ep := c.HostPool(), c.EdgePool()
	addrs := 0
	for i := range hp.Count() {
		s := hp.At(i)
		if !hp.Contains(s) || s.Overlaps(c.EdgeCIDR) || ep.Contains(netip.PrefixFrom(s.Addr(), 32)) {
			t.Fatalf("%s edge %s: host slot %d %s", c.Network, c.EdgeCIDR, i, s)
		}
		addrs += 1 << (32 - s.Bits())
	}
	for i := range ep.Count() {
		s := ep.At(i)
		if !ep.Contains(s) || !c.EdgeCIDR.Contains(s.Addr()) || hp.Contains(s) {
			t.Fatalf("%s edge %s: edge slot %d %s", c.Network, c.EdgeCIDR, i, s)
		}
	}
	addrs += ep.Count() + 2 // the edge range's first and last address are no slot
	if want := 1 << (32 - c.Network.Bits()); addrs != want {
		t.Fatalf("%s edge %s subnetLen %d: pools cover %d addresses, want %d", c.Network, c.EdgeCIDR, c.SubnetLen, addrs, want)
	}
}
