package subnet

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/overlaynet/overlay/pkg/netconf"
)

// Keys that are not subnets of the current config (left from a config with
// another subnetLen, or outside the range) must neither be handed out again
// through an overlapping subnet nor make the network look full.
func TestPickFreeForeignKeys(t *testing.T) {
	cfg := netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/22"), SubnetLen: 24, VNI: 1, Port: 8472}
	taken := func(ss ...string) map[netip.Prefix]occupiedLease {
		m := map[netip.Prefix]occupiedLease{}
		for _, s := range ss {
			p := netip.MustParsePrefix(s)
			m[p] = occupiedLease{Subnet: p}
		}
		return m
	}
	req := AcquireRequest{Config: cfg}

	// A /23 from an older config covers 10.244.0.0/24 and 10.244.1.0/24;
	// 10.244.2.0/24 is leased: only 10.244.3.0/24 is free.
	busy := taken("10.244.0.0/23", "10.244.2.0/24")
	for range 50 {
		s, err := pickFree(req, mapSnapshot{subnets: busy})
		if err != nil || s != netip.MustParsePrefix("10.244.3.0/24") {
			t.Fatalf("pickFree = %v, %v; want 10.244.3.0/24", s, err)
		}
	}
	// The previous subnet is not reclaimed when a foreign key overlaps it.
	prev := req
	prev.Previous = netip.MustParsePrefix("10.244.1.0/24")
	if s, err := pickFree(prev, mapSnapshot{subnets: busy}); err != nil || s != netip.MustParsePrefix("10.244.3.0/24") {
		t.Fatalf("pickFree with overlapped previous = %v, %v; want 10.244.3.0/24", s, err)
	}
	// Keys outside the network block nothing and do not count as leases.
	out := taken("10.99.0.0/24", "10.99.1.0/24", "10.99.2.0/24", "10.99.3.0/24", "10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24")
	if s, err := pickFree(req, mapSnapshot{subnets: out}); err != nil || s != netip.MustParsePrefix("10.244.3.0/24") {
		t.Fatalf("pickFree with keys outside the network = %v, %v; want 10.244.3.0/24", s, err)
	}
	if _, err := pickFree(req, mapSnapshot{subnets: taken("10.244.0.0/22")}); !errors.Is(err, ErrNetworkFull) {
		t.Fatalf("pickFree under a covering foreign key: err = %v, want ErrNetworkFull", err)
	}
}
