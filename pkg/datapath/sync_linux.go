package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SyncPeers makes the peer entries on device match wanted and returns the
// plan it applied. Additions go first, per kind neighbours, then FDB, then
// routes, so no route ever points at a next hop the kernel would have to
// ARP for; deletions follow in the reverse order. A failing entry does not
// stop the others: all failures come back joined, and invalid peers are
// reported and skipped.
//
// Neighbours and FDB entries are written with replace semantics, so a
// changed peer is a single update. Routes are replaced only when our device
// already has one to that destination: a replace matches routes of any
// device, and a route to the same subnet on a device we do not own must
// cause an error, not be taken over.
func SyncPeers(device string, wanted []Peer) (Plan, error) {
	return SyncPeersFrom(device, netip.Addr{}, wanted)
}

// SyncPeersFrom is SyncPeers for routes whose preferred source is src (an
// edge host's overlay address, so what it sends carries that address; an
// invalid src sets none).
func SyncPeersFrom(device string, src netip.Addr, wanted []Peer) (Plan, error) {
	var errs []error
	for _, p := range wanted {
		if err := ValidatePeer(p); err != nil {
			errs = append(errs, fmt.Errorf("skip invalid %w", err))
		}
	}
	link, err := netlinksafe.LinkByName(device)
	if err != nil {
		return Plan{}, errors.Join(append(errs, fmt.Errorf("look up device %q: %w", device, err))...)
	}
	idx := link.Attrs().Index
	installed, err := listInstalled(idx, device)
	if err != nil {
		return Plan{}, errors.Join(append(errs, err)...)
	}
	plan := DiffFrom(src, wanted, installed)
	errs = append(errs, applyPlan(idx, device, plan, installed.Routes)...)
	return plan, errors.Join(errs...)
}

// applyPlan applies p; ours are the routes installed on our device.
func applyPlan(idx int, dev string, p Plan, ours []Route) []error {
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range p.AddNeighs {
		note(addNeigh(idx, dev, n))
	}
	for _, f := range p.AddFDB {
		note(addFDB(idx, dev, f))
	}
	replace := make(map[netip.Prefix]bool, len(ours))
	for _, r := range ours {
		replace[r.Dst] = true
	}
	for _, r := range p.AddRoutes {
		note(addRoute(idx, dev, r, replace[r.Dst]))
	}
	for _, r := range p.DelRoutes {
		note(delRoute(idx, dev, r))
	}
	for _, n := range p.DelNeighs {
		note(delNeigh(idx, dev, n))
	}
	for _, f := range p.DelFDB {
		note(delFDB(idx, dev, f))
	}
	return errs
}

func addNeigh(idx int, dev string, n Neigh) error {
	err := netlink.NeighSet(&netlink.Neigh{
		LinkIndex:    idx,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           toIP(n.IP),
		HardwareAddr: n.MAC,
	})
	if err != nil {
		return fmt.Errorf("add neighbour %s lladdr %s on %s: %w", n.IP, n.MAC, dev, err)
	}
	return nil
}

// delNeigh matches by IP only: the kernel ignores the MAC of a delete.
func delNeigh(idx int, dev string, n Neigh) error {
	err := netlink.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: toIP(n.IP)})
	if err != nil && !isAbsent(err) {
		return fmt.Errorf("delete neighbour %s on %s: %w", n.IP, dev, err)
	}
	return nil
}

func fdbNeigh(idx int, f FDBEntry) *netlink.Neigh {
	return &netlink.Neigh{
		LinkIndex:    idx,
		Family:       unix.AF_BRIDGE,
		State:        netlink.NUD_PERMANENT,
		Flags:        netlink.NTF_SELF,
		IP:           toIP(f.Dst),
		HardwareAddr: f.MAC,
	}
}

func addFDB(idx int, dev string, f FDBEntry) error {
	if err := netlink.NeighSet(fdbNeigh(idx, f)); err != nil {
		return fmt.Errorf("add fdb entry %s dst %s on %s: %w", f.MAC, f.Dst, dev, err)
	}
	return nil
}

// delFDB names the destination too, so only that remote of the MAC goes.
func delFDB(idx int, dev string, f FDBEntry) error {
	if err := netlink.NeighDel(fdbNeigh(idx, f)); err != nil && !isAbsent(err) {
		return fmt.Errorf("delete fdb entry %s dst %s on %s: %w", f.MAC, f.Dst, dev, err)
	}
	return nil
}

func addRoute(idx int, dev string, r Route, replace bool) error {
	route := &netlink.Route{
		LinkIndex: idx,
		Dst:       toIPNet(r.Dst),
		Gw:        toIP(r.Via),
		Src:       toIP(r.Src),
		Flags:     int(netlink.FLAG_ONLINK),
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_UNIVERSE,
	}
	write := netlink.RouteAdd
	if replace {
		write = netlink.RouteReplace
	}
	err := write(route)
	switch {
	case err == nil:
		return nil
	case !replace && isExist(err):
		return fmt.Errorf("add route %s via %s on %s: a route to %s exists on another device, which overlay does not touch: %w", r.Dst, r.Via, dev, r.Dst, err)
	}
	return fmt.Errorf("add route %s via %s on %s: %w", r.Dst, r.Via, dev, err)
}

// delRoute names the gateway (when there is one) so a sibling route to the
// same destination is kept, and scope "nowhere" so a route of any scope
// matches. Protocol is left out on purpose: every route on our device is ours.
func delRoute(idx int, dev string, r Route) error {
	err := netlink.RouteDel(&netlink.Route{
		LinkIndex: idx,
		Dst:       toIPNet(r.Dst),
		Gw:        toIP(r.Via),
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_NOWHERE,
	})
	if err != nil && !isAbsent(err) {
		return fmt.Errorf("delete route %s via %s on %s: %w", r.Dst, r.Via, dev, err)
	}
	return nil
}
