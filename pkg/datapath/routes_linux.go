package datapath

import (
	"fmt"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// OtherRoutes lists the destinations of this host's own IPv4 routes in the
// main table: every route except those on device exclude (ours), those of
// protocol RouteProtocol (ours, left on another device) and the default
// route. A LAN a gateway advertises must not shadow any of them.
func OtherRoutes(exclude string) ([]netip.Prefix, error) {
	skip, err := indexOrNone(exclude)
	if err != nil {
		return nil, err
	}
	filter := &netlink.Route{Table: unix.RT_TABLE_MAIN}
	routes, err := netlinksafe.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []netip.Prefix
	for _, r := range routes {
		dst := fromIPNet(r.Dst)
		if r.LinkIndex == skip || int(r.Protocol) == RouteProtocol || !dst.IsValid() || dst.Bits() == 0 {
			continue
		}
		out = append(out, dst)
	}
	return out, nil
}
