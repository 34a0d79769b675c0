package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SyncPeers makes the peer entries on device match wanted and returns the
// plan it applied. It names no underlay: direct peers are routed over VXLAN
// (see SyncPeersTarget).
func SyncPeers(device string, wanted []Peer) (Plan, error) {
	return SyncPeersTarget(PeerTarget{Device: device}, wanted)
}

// SyncPeersFrom is SyncPeers for routes whose preferred source is src (an
// edge host's overlay address, so what it sends carries that address; an
// invalid src sets none).
func SyncPeersFrom(device string, src netip.Addr, wanted []Peer) (Plan, error) {
	return SyncPeersTarget(PeerTarget{Device: device, Src: src}, wanted)
}

// SyncPeersTarget makes the kernel's entries for target t match wanted
// (see DiffTarget: neighbours, FDB entries and routes on t.Device, direct
// routes on t.Underlay) and returns the plan it applied. Additions go
// first, per kind neighbours, then FDB, then routes, so no route ever
// points at a next hop the kernel would have to ARP for; deletions follow
// in the reverse order. A failing entry does not stop the others: all
// failures come back joined, and invalid peers are reported and skipped.
//
// Neighbours and FDB entries are written with replace semantics, so a
// changed peer is a single update. A route is replaced only when a route of
// ours to that destination is installed, on either device: a replace
// matches the route to the destination on any device (which is what moves a
// switching peer's route from one device to the other in one step), and a
// route to the same subnet that is not ours, on another device or of
// another protocol on the underlay, must cause an error, not be taken over.
func SyncPeersTarget(t PeerTarget, wanted []Peer) (Plan, error) {
	errs := invalidPeers(wanted)
	links, err := lookupTarget(t)
	if err != nil {
		return Plan{}, errors.Join(append(errs, err)...)
	}
	installed, err := listInstalled(links, t.Range)
	if err != nil {
		return Plan{}, errors.Join(append(errs, err)...)
	}
	plan := DiffTarget(t, wanted, installed)
	errs = append(errs, applyPlan(links, plan, installed)...)
	return plan, errors.Join(errs...)
}

func invalidPeers(peers []Peer) []error {
	var errs []error
	for _, p := range peers {
		if err := ValidatePeer(p); err != nil {
			errs = append(errs, fmt.Errorf("skip invalid %w", err))
		}
	}
	return errs
}

// device is a link we program: its index, and its name for messages.
type device struct {
	idx  int
	name string
}

// targetLinks are the links of a PeerTarget. underlay is the zero device
// when the target has no direct routes.
type targetLinks struct {
	vxlan, underlay device
}

func lookupTarget(t PeerTarget) (targetLinks, error) {
	var links targetLinks
	var err error
	if links.vxlan, err = lookupDevice(t.Device); err != nil {
		return targetLinks{}, err
	}
	if t.direct() {
		if links.underlay, err = lookupDevice(t.Underlay); err != nil {
			return targetLinks{}, err
		}
	}
	return links, nil
}

func lookupDevice(name string) (device, error) {
	link, err := netlinksafe.LinkByName(name)
	if err != nil {
		return device{}, fmt.Errorf("look up device %q: %w", name, err)
	}
	return device{idx: link.Attrs().Index, name: name}, nil
}

// applyPlan applies p, which was computed from installed.
func applyPlan(links targetLinks, p Plan, installed Installed) []error {
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	vx, ul := links.vxlan, links.underlay
	for _, n := range p.AddNeighs {
		note(addNeigh(vx.idx, vx.name, n))
	}
	for _, f := range p.AddFDB {
		note(addFDB(vx.idx, vx.name, f))
	}
	ours := make(map[netip.Prefix]bool, len(installed.Routes)+len(installed.Direct))
	for _, r := range append(slices.Clone(installed.Routes), installed.Direct...) {
		ours[r.Dst] = true
	}
	for _, r := range p.AddRoutes {
		note(addRoute(vx, r, ours[r.Dst]))
	}
	for _, r := range p.AddDirect {
		note(addDirectRoute(ul, r, ours[r.Dst]))
	}
	for _, r := range p.DelRoutes {
		note(delRoute(vx, r))
	}
	for _, r := range p.DelDirect {
		note(delDirectRoute(ul, r))
	}
	for _, n := range p.DelNeighs {
		note(delNeigh(vx.idx, vx.name, n))
	}
	for _, f := range p.DelFDB {
		note(delFDB(vx.idx, vx.name, f))
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

// addRoute writes r on the VXLAN device: onlink, since the VTEP IPs lie
// on no connected prefix.
func addRoute(dev device, r Route, replace bool) error {
	route := ourKernelRoute(dev.idx, r)
	route.Flags = int(netlink.FLAG_ONLINK)
	return writeRoute(dev, r, route, replace)
}

// addDirectRoute writes r on the underlay: a plain gateway route, the
// peer's public IP being on a connected prefix of the underlay.
func addDirectRoute(dev device, r Route, replace bool) error {
	return writeRoute(dev, r, ourKernelRoute(dev.idx, r), replace)
}

// ourKernelRoute is r on link idx as overlay writes it: main table,
// universe scope, protocol RouteProtocol.
func ourKernelRoute(idx int, r Route) *netlink.Route {
	return &netlink.Route{
		LinkIndex: idx,
		Dst:       toIPNet(r.Dst),
		Gw:        toIP(r.Via),
		Src:       toIP(r.Src),
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_UNIVERSE,
	}
}

// writeRoute adds route, or replaces whatever route to its destination the
// main table holds (on any device) when replace is set. Without replace
// the kernel refuses a destination it already routes (EEXIST): that route
// is not ours.
func writeRoute(dev device, r Route, route *netlink.Route, replace bool) error {
	write := netlink.RouteAdd
	if replace {
		write = netlink.RouteReplace
	}
	err := write(route)
	switch {
	case err == nil:
		return nil
	case !replace && isExist(err):
		return fmt.Errorf("add route %s via %s on %s: a route to %s exists on another device or with another protocol, which overlay does not touch: %w", r.Dst, r.Via, dev.name, r.Dst, err)
	}
	return fmt.Errorf("add route %s via %s on %s: %w", r.Dst, r.Via, dev.name, err)
}

// delRoute deletes r from the VXLAN device. It names the gateway (when
// there is one) so a sibling route to the same destination is kept, and
// scope "nowhere" so a route of any scope matches. Protocol is left out on
// purpose: every route on our device is ours. A route a replace has moved
// to the underlay no longer matches (another device): the delete finds
// nothing, which is fine.
func delRoute(dev device, r Route) error {
	return removeRoute(dev, r, &netlink.Route{
		LinkIndex: dev.idx,
		Dst:       toIPNet(r.Dst),
		Gw:        toIP(r.Via),
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_NOWHERE,
	})
}

// delDirectRoute deletes our direct route r from the underlay. Unlike on
// our device, the protocol is named: the underlay is not ours, and a route
// of another protocol to the same destination and gateway (at another
// metric) must stay.
func delDirectRoute(dev device, r Route) error {
	return removeRoute(dev, r, &netlink.Route{
		LinkIndex: dev.idx,
		Dst:       toIPNet(r.Dst),
		Gw:        toIP(r.Via),
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_NOWHERE,
	})
}

func removeRoute(dev device, r Route, route *netlink.Route) error {
	if err := netlink.RouteDel(route); err != nil && !isAbsent(err) {
		return fmt.Errorf("delete route %s via %s on %s: %w", r.Dst, r.Via, dev.name, err)
	}
	return nil
}
