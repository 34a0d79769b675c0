package datapath

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// underlayHost has ul0 (198.18.0.1/24, MTU 1500) with a default route,
// ul1 (198.18.1.1/24 after a link-scope 198.18.9.1, MTU 9000) and bare
// (no IPv4 address).
func underlayHost(t *testing.T) (host nsNetNS, ul0, ul1 int) {
	t.Helper()
	host = newNS(t)
	do(t, host, func() error {
		a, err := addUnderlay("ul0", "198.18.0.1/24")
		if err != nil {
			return err
		}
		b, err := addUnderlay("ul1", "198.18.1.1/24")
		if err != nil {
			return err
		}
		if err := netlink.AddrAdd(b, &netlink.Addr{IPNet: toIPNet(mustPrefix("198.18.9.1/24")), Scope: int(netlink.SCOPE_LINK)}); err != nil {
			return err
		}
		if err := netlink.LinkSetMTU(b, 9000); err != nil {
			return err
		}
		if _, err := addUnderlay("bare", "198.18.2.1/24"); err != nil {
			return err
		}
		bare, err := netlinksafe.LinkByName("bare")
		if err != nil {
			return err
		}
		if err := netlink.AddrDel(bare, &netlink.Addr{IPNet: toIPNet(mustPrefix("198.18.2.1/24"))}); err != nil {
			return err
		}
		ul0, ul1 = a.Attrs().Index, b.Attrs().Index
		return netlink.RouteAdd(&netlink.Route{LinkIndex: ul0, Dst: toIPNet(mustPrefix("0.0.0.0/0")), Gw: toIP(netip.MustParseAddr("198.18.0.254"))})
	})
	return host, ul0, ul1
}

func TestFindUnderlay(t *testing.T) {
	host, ul0, ul1 := underlayHost(t)
	// Segments hold the global prefixes only: ul1's link-scope address is
	// no segment a peer could share.
	seg0, seg1 := []netip.Prefix{mustPrefix("198.18.0.0/24")}, []netip.Prefix{mustPrefix("198.18.1.0/24")}
	tests := []struct {
		arg  string
		want Underlay
	}{
		{"", Underlay{Name: "ul0", Index: ul0, IP: netip.MustParseAddr("198.18.0.1"), MTU: 1500, Segments: seg0}},
		{"ul0", Underlay{Name: "ul0", Index: ul0, IP: netip.MustParseAddr("198.18.0.1"), MTU: 1500, Segments: seg0}},
		{"ul1", Underlay{Name: "ul1", Index: ul1, IP: netip.MustParseAddr("198.18.1.1"), MTU: 9000, Segments: seg1}},
		{"198.18.1.1", Underlay{Name: "ul1", Index: ul1, IP: netip.MustParseAddr("198.18.1.1"), MTU: 9000, Segments: seg1}},
		{"198.18.9.1", Underlay{Name: "ul1", Index: ul1, IP: netip.MustParseAddr("198.18.9.1"), MTU: 9000, Segments: seg1}},
	}
	for _, tt := range tests {
		var got Underlay
		do(t, host, func() (err error) { got, err = FindUnderlay(tt.arg); return err })
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("FindUnderlay(%q) = %+v, want %+v", tt.arg, got, tt.want)
		}
	}
}

func TestFindUnderlayErrors(t *testing.T) {
	host, _, _ := underlayHost(t)
	bare := newNS(t)
	tests := []struct {
		in   nsNetNS
		arg  string
		want string
	}{
		{host, "eth7", `interface "eth7" not found; list interfaces with 'ip -br link'`},
		{host, "198.18.3.3", "no interface has address 198.18.3.3"},
		{host, "fd00::1", "not IPv4"},
		{host, "bare", `interface "bare" has no global IPv4 address`},
		{bare, "", "no IPv4 default route in this network namespace; pass --iface NAME or --iface IP"},
	}
	for _, tt := range tests {
		var err error
		do(t, tt.in, func() error { _, err = FindUnderlay(tt.arg); return nil })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("FindUnderlay(%q): err = %v, want %q", tt.arg, err, tt.want)
		}
	}
}

// With two default routes the kernel uses the lower metric; so do we.
func TestFindUnderlayPrefersLowestMetric(t *testing.T) {
	host, _, ul1 := underlayHost(t)
	var got Underlay
	do(t, host, func() (err error) {
		dflt := toIPNet(mustPrefix("0.0.0.0/0"))
		if err = netlink.RouteDel(&netlink.Route{Dst: dflt}); err != nil {
			return err
		}
		gw0, gw1 := toIP(netip.MustParseAddr("198.18.0.254")), toIP(netip.MustParseAddr("198.18.1.254"))
		ul0, err := netlinksafe.LinkByName("ul0")
		if err != nil {
			return err
		}
		if err = netlink.RouteAdd(&netlink.Route{LinkIndex: ul0.Attrs().Index, Dst: dflt, Gw: gw0, Priority: 200}); err != nil {
			return err
		}
		if err = netlink.RouteAdd(&netlink.Route{LinkIndex: ul1, Dst: dflt, Gw: gw1, Priority: 100}); err != nil {
			return err
		}
		got, err = FindUnderlay("")
		return err
	})
	if got.Name != "ul1" {
		t.Errorf("FindUnderlay(\"\") = %+v, want ul1 (metric 100 beats 200)", got)
	}
}
