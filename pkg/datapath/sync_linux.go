package datapath

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

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
	res := syncPeers(t, wanted, nil)
	return res.plan, res.err
}

// syncResult is what one sync did: the plan it applied, its errors, and,
// when every entry was written, what the target holds now (else nil).
type syncResult struct {
	plan    Plan
	err     error
	settled *knownPeers
	links   targetLinks // zero when they could not be looked up
}

// syncPeers diffs wanted against prior when given (what earlier syncs
// left, still valid), else against a dump, and applies the plan.
func syncPeers(t PeerTarget, wanted []Peer, prior *knownPeers) syncResult {
	errs := invalidPeers(wanted)
	links, err := lookupTarget(t)
	if err != nil {
		return syncResult{err: errors.Join(append(errs, err)...)}
	}
	// One socket for the whole pass: a request on netlink's package handle
	// opens and closes a socket of its own, which at 10 000 peers (30 000
	// entries) was a large part of a pass.
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return syncResult{err: errors.Join(append(errs, fmt.Errorf("open netlink socket: %w", err))...)}
	}
	defer h.Close()
	known := knownPeers{target: t, links: links, peers: wanted}
	res := syncResult{links: links}
	var installed Installed
	if prior != nil && prior.links == links {
		installed, known.foreign, known.dumped = settledTarget(t, prior.peers), prior.foreign, prior.dumped
	} else {
		known.dumped = time.Now()
		if installed, known.foreign, err = listInstalled(h, links, t.Range); err != nil {
			res.err = errors.Join(append(errs, err)...)
			return res
		}
	}
	plan := DiffTarget(t, wanted, installed)
	plan.DelRoutes = append(plan.DelRoutes, installed.Stale...)
	plan.DelDirect = append(plan.DelDirect, installed.StaleDirect...)
	failed := refuseForeign(&plan, installed, known.foreign, links)
	failed = append(failed, applyPlan(h, links, plan, installed)...)
	res.plan, res.err = plan, errors.Join(append(errs, failed...)...)
	if len(failed) == 0 {
		res.settled = &known
	}
	return res
}

// refuseForeign takes out of p the routes whose destination another route
// holds that is not ours (another device, or another protocol on the
// underlay), unless one of ours is installed there too: overlay does not
// take such a route over, and says so. The kernel would refuse most of
// them anyway (EEXIST), but not one at another metric than ours. A route
// of ours that such a route shadows (added after ours, at a lower metric)
// is reported too, as long as overlay keeps it.
func refuseForeign(p *Plan, installed Installed, foreign map[netip.Prefix]bool, links targetLinks) []error {
	if len(foreign) == 0 {
		return nil
	}
	ours := ourDestinations(installed)
	var errs []error
	keep := func(rs []Route, dev device) []Route {
		out := rs[:0]
		for _, r := range rs {
			if foreign[r.Dst] && !ours[r.Dst] {
				errs = append(errs, fmt.Errorf("add route %s via %s on %s: a route to %s exists on another device or with another protocol, which overlay does not touch", r.Dst, r.Via, dev.name, r.Dst))
				continue
			}
			out = append(out, r)
		}
		return out
	}
	p.AddRoutes = keep(p.AddRoutes, links.vxlan)
	p.AddDirect = keep(p.AddDirect, links.underlay)
	going := map[netip.Prefix]bool{}
	for _, r := range append(slices.Clone(p.DelRoutes), p.DelDirect...) {
		going[r.Dst] = true
	}
	for _, dst := range slices.SortedFunc(maps.Keys(foreign), netip.Prefix.Compare) {
		if ours[dst] && !going[dst] {
			errs = append(errs, fmt.Errorf("route %s: a route to it that is not overlay's (another device or protocol) exists beside overlay's and may take its traffic; remove it", dst))
		}
	}
	return errs
}

// ourDestinations are the destinations of our installed routes, on either
// device.
func ourDestinations(in Installed) map[netip.Prefix]bool {
	ours := make(map[netip.Prefix]bool, len(in.Routes)+len(in.Direct))
	for _, r := range in.Routes {
		ours[r.Dst] = true
	}
	for _, r := range in.Direct {
		ours[r.Dst] = true
	}
	return ours
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

// applyPlan applies p, which was computed from installed, through h.
func applyPlan(h *netlink.Handle, links targetLinks, p Plan, installed Installed) []error {
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	vx, ul := links.vxlan, links.underlay
	for _, n := range p.AddNeighs {
		note(addNeigh(h, vx, n))
	}
	for _, f := range p.AddFDB {
		note(addFDB(h, vx, f))
	}
	ours := ourDestinations(installed)
	for _, r := range p.AddRoutes {
		note(addRoute(h, vx, r, ours[r.Dst]))
	}
	for _, r := range p.AddDirect {
		note(addDirectRoute(h, ul, r, ours[r.Dst]))
	}
	for _, r := range p.DelRoutes {
		note(delRoute(h, vx, r))
	}
	for _, r := range p.DelDirect {
		note(delDirectRoute(h, ul, r))
	}
	for _, n := range p.DelNeighs {
		note(delNeigh(h, vx, n))
	}
	for _, f := range p.DelFDB {
		note(delFDB(h, vx, f))
	}
	return errs
}

func addNeigh(h *netlink.Handle, dev device, n Neigh) error {
	err := h.NeighSet(&netlink.Neigh{
		LinkIndex:    dev.idx,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		Type:         unix.RTN_UNICAST,
		IP:           toIP(n.IP),
		HardwareAddr: n.MAC,
	})
	if err != nil {
		return fmt.Errorf("add neighbour %s lladdr %s on %s: %w", n.IP, n.MAC, dev.name, err)
	}
	return nil
}

// delNeigh matches by IP only: the kernel ignores the MAC of a delete.
func delNeigh(h *netlink.Handle, dev device, n Neigh) error {
	err := h.NeighDel(&netlink.Neigh{LinkIndex: dev.idx, Family: netlink.FAMILY_V4, IP: toIP(n.IP)})
	if err != nil && !isAbsent(err) {
		return fmt.Errorf("delete neighbour %s on %s: %w", n.IP, dev.name, err)
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

func addFDB(h *netlink.Handle, dev device, f FDBEntry) error {
	if err := h.NeighSet(fdbNeigh(dev.idx, f)); err != nil {
		return fmt.Errorf("add fdb entry %s dst %s on %s: %w", f.MAC, f.Dst, dev.name, err)
	}
	return nil
}

// delFDB names the destination too, so only that remote of the MAC goes.
func delFDB(h *netlink.Handle, dev device, f FDBEntry) error {
	if err := h.NeighDel(fdbNeigh(dev.idx, f)); err != nil && !isAbsent(err) {
		return fmt.Errorf("delete fdb entry %s dst %s on %s: %w", f.MAC, f.Dst, dev.name, err)
	}
	return nil
}

// addRoute writes r on the VXLAN device: onlink, since the VTEP IPs lie
// on no connected prefix.
func addRoute(h *netlink.Handle, dev device, r Route, replace bool) error {
	route := ourKernelRoute(dev.idx, r)
	route.Flags = int(netlink.FLAG_ONLINK)
	return writeRoute(h, dev, r, route, replace)
}

// addDirectRoute writes r on the underlay: a plain gateway route, the
// peer's public IP being on a connected prefix of the underlay.
func addDirectRoute(h *netlink.Handle, dev device, r Route, replace bool) error {
	return writeRoute(h, dev, r, ourKernelRoute(dev.idx, r), replace)
}

// ourKernelRoute is r on link idx as overlay writes it: main table,
// universe scope, protocol RouteProtocol, metric RouteMetric(r.Dst).
func ourKernelRoute(idx int, r Route) *netlink.Route {
	return &netlink.Route{
		LinkIndex: idx,
		Dst:       toIPNet(r.Dst),
		Gw:        toIP(r.Via),
		Src:       toIP(r.Src),
		Protocol:  RouteProtocol,
		Priority:  RouteMetric(r.Dst),
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_UNIVERSE,
	}
}

// RouteMetric is the metric overlay gives its route to dst: the 16 bits of
// the destination just above its host part, plus one (never 0).
//
// Why not 0: the kernel files a route's next hop (its fib_info) in a hash
// of protocol, scope, preferred source, metric and device, but not of the
// gateway. Every route of ours differs only in its gateway, so with one
// metric all of them landed in one bucket, and each insert scanned all the
// others: 10 000 routes took 1.4 s of kernel time, against 0.11 s with
// metrics spread like this. The metric matters only between routes to one
// destination, where overlay has one route and refuses to add one beside
// a route that is not its own (refuseForeign).
func RouteMetric(dst netip.Prefix) int {
	bits := dst.Bits()
	if !dst.Addr().Is4() || bits <= 0 {
		return 1
	}
	a := dst.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	return int(v>>(32-bits)&0xffff) + 1
}

// writeRoute adds route, or replaces whatever route to its destination the
// main table holds (on any device) when replace is set. Without replace
// the kernel refuses a destination it already routes (EEXIST): that route
// is not ours.
func writeRoute(h *netlink.Handle, dev device, r Route, route *netlink.Route, replace bool) error {
	write := h.RouteAdd
	if replace {
		write = h.RouteReplace
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
func delRoute(h *netlink.Handle, dev device, r Route) error {
	return removeRoute(h, dev, r, &netlink.Route{
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
func delDirectRoute(h *netlink.Handle, dev device, r Route) error {
	return removeRoute(h, dev, r, &netlink.Route{
		LinkIndex: dev.idx,
		Dst:       toIPNet(r.Dst),
		Gw:        toIP(r.Via),
		Protocol:  RouteProtocol,
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_NOWHERE,
	})
}

func removeRoute(h *netlink.Handle, dev device, r Route, route *netlink.Route) error {
	route.Priority = r.Metric
	if err := h.RouteDel(route); err != nil && !isAbsent(err) {
		return fmt.Errorf("delete route %s via %s on %s: %w", r.Dst, r.Via, dev.name, err)
	}
	return nil
}
