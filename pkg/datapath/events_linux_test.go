package datapath

import (
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The echoes of a pass's own writes are told apart from other changes.
func TestOwnWrite(t *testing.T) {
	for _, c := range []struct {
		typ   uint16
		proto netlink.RouteProtocol
		want  bool
	}{
		{unix.RTM_NEWROUTE, RouteProtocol, true},
		{unix.RTM_DELROUTE, RouteProtocol, false},    // a deletion is drift until proven otherwise
		{unix.RTM_NEWROUTE, unix.RTPROT_BOOT, false}, // `ip route add` by hand
	} {
		u := netlink.RouteUpdate{Type: c.typ, Route: netlink.Route{Protocol: c.proto}}
		if got := ownWrite(u); got != c.want {
			t.Errorf("ownWrite(type %d, proto %d) = %v, want %v", c.typ, c.proto, got, c.want)
		}
	}
}
