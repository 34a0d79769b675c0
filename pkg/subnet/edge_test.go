package subnet

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/etcdtest"
	"github.com/overlaynet/overlay/pkg/netconf"
)

var edgeNet = func() netconf.Config {
	c := testNet
	c.EdgeCIDR = netip.MustParsePrefix("10.244.255.0/24")
	return c
}()

func edgeRecord(i int, advertise ...string) Record {
	r := hostRecord(i)
	r.Kind = KindEdge
	for _, a := range advertise {
		r.Advertise = append(r.Advertise, netip.MustParsePrefix(a))
	}
	return r
}

// Edge hosts take /32s of the edge range and hosts subnets outside it;
// both are listed with their kind, and a restarted edge host gets its
// address back.
func TestEdgeLeasesComeFromTheEdgeRange(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	e := acquire(t, c, edgeNet, edgeRecord(1, "198.19.10.0/24"), netip.Prefix{})
	if !edgeNet.ContainsEdge(e.Subnet) {
		t.Fatalf("edge lease %s is not an address of the edge range", e.Subnet)
	}
	h := acquire(t, c, edgeNet, hostRecord(2), netip.Prefix{})
	if h.Subnet.Overlaps(edgeNet.EdgeCIDR) || !edgeNet.Contains(h.Subnet) {
		t.Fatalf("host lease %s is not a container subnet outside the edge range", h.Subnet)
	}
	leases, _, err := c.Leases(t.Context(), "default")
	if err != nil || len(leases) != 2 {
		t.Fatalf("leases: %v %v", leases, err)
	}
	for _, l := range leases {
		if l.Subnet == e.Subnet && (l.Kind != KindEdge || len(l.Advertise) != 1) {
			t.Fatalf("edge lease read back as %+v", l)
		}
	}
	e.Stop()
	again := acquire(t, c, edgeNet, edgeRecord(1), e.Subnet)
	if again.Subnet != e.Subnet {
		t.Fatalf("restarted edge host got %s, want %s", again.Subnet, e.Subnet)
	}
}

// Finding: a full edge range gives one clear line naming the range.
func TestEdgeRangeFull(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	cfg := netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 30, VNI: 1, Port: 8472,
		EdgeCIDR: netip.MustParsePrefix("10.244.255.252/30")}
	acquire(t, c, cfg, edgeRecord(1), netip.Prefix{})
	acquire(t, c, cfg, edgeRecord(2), netip.Prefix{})
	_, err := c.Acquire(t.Context(), AcquireRequest{Network: "default", Config: cfg, Record: edgeRecord(3), TTL: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "edge range 10.244.255.252/30: all 2 addresses are leased") {
		t.Fatalf("third edge host: %v", err)
	}
	_, err = c.Acquire(t.Context(), AcquireRequest{Network: "default", Config: testNet, Record: edgeRecord(4), TTL: 10 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "no edge range") {
		t.Fatalf("edge host in a network without edge range: %v", err)
	}
}

// Finding: network set refuses an edge range over a leased container
// subnet, and removing the range under a live edge host.
func TestSetNetworkConfigRefusesStranding(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	if err := c.SetNetworkConfig(t.Context(), "default", testNet); err != nil {
		t.Fatal(err)
	}
	h := acquire(t, c, testNet, hostRecord(1), netip.Prefix{})
	over := testNet
	over.EdgeCIDR = h.Subnet
	err := c.SetNetworkConfig(t.Context(), "default", over)
	if err == nil || !strings.Contains(err.Error(), "overlaps container subnet "+h.Subnet.String()+", leased by host h1") {
		t.Fatalf("edge range over a leased subnet: %v", err)
	}
	free := testNet
	free.EdgeCIDR = netip.MustParsePrefix("10.244.255.0/24")
	if h.Subnet == free.EdgeCIDR {
		free.EdgeCIDR = netip.MustParsePrefix("10.244.254.0/24")
	}
	if err := c.SetNetworkConfig(t.Context(), "default", free); err != nil {
		t.Fatalf("edge range no host holds: %v", err)
	}
	acquire(t, c, free, edgeRecord(2), netip.Prefix{})
	err = c.SetNetworkConfig(t.Context(), "default", testNet)
	if err == nil || !strings.Contains(err.Error(), "would lie outside the edge range (none: edgeCIDR is unset)") {
		t.Fatalf("removing the edge range under a live edge host: %v", err)
	}
}

// Finding: an advertised LAN that overlaps the overlay, another gateway's
// LAN or a member's underlay is refused with both named.
func TestAdvertiseConflict(t *testing.T) {
	other := Lease{Subnet: netip.MustParsePrefix("10.244.255.7/32"), Record: edgeRecord(7, "198.19.10.0/24")}
	host := Lease{Subnet: netip.MustParsePrefix("10.244.3.0/24"), Record: hostRecord(3)}
	for _, tc := range []struct{ lan, want string }{
		{"10.0.0.0/8", "overlaps the overlay network 10.244.0.0/16"},
		{"198.19.7.5/24", "has host bits set; did you mean 198.19.7.0/24"},
		{"198.19.0.0/16", "advertised 198.19.0.0/16 overlaps 198.19.10.0/24, already advertised by gateway edge h7 (10.244.255.7, public IP 198.18.0.17)"},
		{"198.18.0.0/24", "holds this machine's own underlay address 198.18.0.11"},
		{"198.18.0.12/31", "holds the underlay address 198.18.0.13 of host h3"},
		{"0.0.0.0/0", "is shorter than /8"},
		{"128.0.0.0/1", "is shorter than /8"},
		{"169.254.0.0/16", "overlaps the special-use range 169.254.0.0/16"},
		{"127.0.0.0/8", "overlaps the special-use range 127.0.0.0/8"},
		{"192.168.7.0/24", ""},
	} {
		self := edgeRecord(1, tc.lan)
		err := AdvertiseConflict(edgeNet, self, []Lease{other, host})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.lan, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.lan, err, tc.want)
		}
	}
}

// Finding: a member whose underlay lies inside an older gateway's LAN is
// refused at start; one older than the gateway (a restart) is not.
func TestUnderlayInLAN(t *testing.T) {
	gw := Lease{Subnet: netip.MustParsePrefix("10.244.255.7/32"), Record: edgeRecord(7, "198.18.0.0/28"), CreateRevision: 10}
	self := hostRecord(3) // 198.18.0.13
	self.Kind = KindHost
	err := UnderlayInLAN(self, []Lease{gw})
	if err == nil || !strings.Contains(err.Error(), "underlay address 198.18.0.13 lies inside 198.18.0.0/28, which gateway edge h7") {
		t.Fatalf("newcomer inside a LAN: %v", err)
	}
	own := Lease{Subnet: netip.MustParsePrefix("10.244.3.0/24"), Record: self, CreateRevision: 5}
	if err := UnderlayInLAN(self, []Lease{gw, own}); err != nil {
		t.Fatalf("restart of a member older than the gateway: %v", err)
	}
}

// Finding: an edge range over the subnet of a host that went away recently
// (its quarantine reservation) is refused; evicting it frees the subnet.
func TestSetNetworkConfigRefusesReservedSubnet(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	if err := c.SetNetworkConfig(t.Context(), "default", testNet); err != nil {
		t.Fatal(err)
	}
	h, err := c.Acquire(t.Context(), AcquireRequest{Network: "default", Config: testNet, Record: hostRecord(1), TTL: 10 * time.Second, Quarantine: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Withdraw(t.Context()); err != nil { // the key goes, the reservation stays
		t.Fatal(err)
	}
	over := testNet
	over.EdgeCIDR = h.Subnet
	err = c.SetNetworkConfig(t.Context(), "default", over)
	if err == nil || !strings.Contains(err.Error(), "reserved for host host-1, which went away recently") {
		t.Fatalf("edge range over a reserved subnet: %v", err)
	}
	if ok, err := c.DeleteLease(t.Context(), "default", h.Subnet); !ok || err != nil {
		t.Fatalf("evict the reservation: %v %v", ok, err)
	}
	if err := c.SetNetworkConfig(t.Context(), "default", over); err != nil {
		t.Fatalf("after eviction: %v", err)
	}
}
