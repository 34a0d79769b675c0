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

// A permanent neighbour or FDB entry appearing is a pass's own write; a
// deletion, or an entry the kernel learned, is not.
func TestOwnNeighWrite(t *testing.T) {
	for _, c := range []struct {
		typ   uint16
		state int
		want  bool
	}{
		{unix.RTM_NEWNEIGH, netlink.NUD_PERMANENT, true},
		{unix.RTM_DELNEIGH, netlink.NUD_PERMANENT, false},
		{unix.RTM_NEWNEIGH, netlink.NUD_REACHABLE, false},
	} {
		u := netlink.NeighUpdate{Type: c.typ, Neigh: netlink.Neigh{State: c.state}}
		if got := ownNeighWrite(u); got != c.want {
			t.Errorf("ownNeighWrite(type %d, state %#x) = %v, want %v", c.typ, c.state, got, c.want)
		}
	}
}
