package datapath

import (
	"bytes"
	"net/netip"
	"slices"
)

// Diff compares the wanted peers with the installed state of our VXLAN
// device and returns what to add and delete. It is pure: no kernel access.
//
// Each valid peer (see ValidatePeer; invalid peers are left out, so their
// entries are removed) wants a route Subnet via VTEPIP, a neighbour
// VTEPIP -> VTEPMAC and an FDB entry VTEPMAC -> PublicIP. Entries are keyed
// by route destination, neighbour IP and FDB MAC. A wanted entry that is
// missing, or whose key is installed with another value, is added (the apply
// step replaces); an installed entry whose key nobody wants is deleted.
//
// Routes and FDB entries can exist several times under one key (different
// metrics, several remotes for one MAC). When that happens the copies that
// differ from the wanted value are deleted as well, precisely, so one pass
// converges. Neighbours are unique per IP in the kernel and a delete matches
// the IP only, so a wanted neighbour is never deleted, only replaced.
//
// When peers disagree about one key (two peers claiming a subnet or a MAC),
// the smallest value wins, so the result does not depend on peer order.
// The plan is sorted and holds no duplicates.
//
// Diff names no underlay, so it routes direct peers over VXLAN too; see
// DiffTarget.
func Diff(wanted []Peer, installed Installed) Plan {
	return DiffTarget(PeerTarget{}, wanted, installed)
}

// DiffFrom is Diff for routes that carry src as their preferred source
// address (an edge host's routes; invalid src: none).
func DiffFrom(src netip.Addr, wanted []Peer, installed Installed) Plan {
	return DiffTarget(PeerTarget{Src: src}, wanted, installed)
}

// DiffTarget is Diff for the peers of target t. Routes on the VXLAN device
// carry t.Src. A direct peer (ModeDirect) has its Subnet routed via its
// PublicIP on t.Underlay with source t.DirectSrc, compared with
// installed.Direct; its neighbour, FDB entry and advertised Routes stay on
// the VXLAN device. A direct peer is routed over VXLAN instead when t names
// no underlay or range, or its subnet lies outside t.Range: there a direct
// route could not be told from another network's, so it would never be
// found again as ours.
//
// The kernel keys the routes of the main table by destination (and metric),
// whatever their device: adding a second route to a destination fails with
// EEXIST, and a replace overwrites the route to it on any device. So the
// routes on both devices are diffed as one table keyed by destination, each
// destination getting one route on one device (when one peer wants it over
// VXLAN and another directly, VXLAN wins: it works off the L2 segment too).
// A mode switch is then an add on the new device, which the apply step
// writes as a replace of our route on the old one (no moment without a
// route), and a delete on the old device, which normally finds nothing
// left.
func DiffTarget(t PeerTarget, wanted []Peer, installed Installed) Plan {
	wr, wn, wf := wantedEntries(t, wanted)
	addR, delR := ourRouteTable.diff(wr, ourRoutes(installed))
	var p Plan
	p.AddRoutes, p.AddDirect = splitRoutes(addR)
	p.DelRoutes, p.DelDirect = splitRoutes(delR)
	p.AddNeighs, p.DelNeighs = neighTable.diff(wn, installed.Neighs)
	p.AddFDB, p.DelFDB = fdbTable.diff(wf, installed.FDB)
	return p
}

// settledTarget is what target t holds once a plan for wanted was applied
// without error: each wanted entry, one per key as DiffTarget picks them.
// Entries the diff would leave alone (a second copy of a route at another
// metric) are not in it; the next dump finds them.
func settledTarget(t PeerTarget, wanted []Peer) Installed {
	wr, wn, wf := wantedEntries(t, wanted)
	var in Installed
	for _, r := range slices.CompactFunc(ourRouteTable.sorted(wr), ourRouteTable.sameKey) {
		if r.direct {
			in.Direct = append(in.Direct, r.Route)
		} else {
			in.Routes = append(in.Routes, r.Route)
		}
	}
	in.Neighs = slices.CompactFunc(neighTable.sorted(wn), neighTable.sameKey)
	in.FDB = slices.CompactFunc(fdbTable.sorted(wf), fdbTable.sameKey)
	return in
}

// ourRoute is a route of ours on either device of a target.
type ourRoute struct {
	Route
	// direct: on the underlay, else on the VXLAN device.
	direct bool
}

func ourRoutes(in Installed) []ourRoute {
	out := make([]ourRoute, 0, len(in.Routes)+len(in.Direct))
	for _, r := range in.Routes {
		out = append(out, ourRoute{Route: r})
	}
	for _, r := range in.Direct {
		out = append(out, ourRoute{Route: r, direct: true})
	}
	return out
}

// splitRoutes separates the VXLAN device's routes from the direct ones,
// keeping their order.
func splitRoutes(rs []ourRoute) (vxlan, direct []Route) {
	for _, r := range rs {
		if r.direct {
			direct = append(direct, r.Route)
		} else {
			vxlan = append(vxlan, r.Route)
		}
	}
	return vxlan, direct
}

func wantedEntries(t PeerTarget, peers []Peer) ([]ourRoute, []Neigh, []FDBEntry) {
	routes := make([]ourRoute, 0, len(peers))
	neighs := make([]Neigh, 0, len(peers))
	fdb := make([]FDBEntry, 0, len(peers))
	for _, p := range peers {
		if ValidatePeer(p) != nil {
			continue
		}
		routes = append(routes, subnetRoute(t, p))
		for _, r := range p.Routes {
			routes = append(routes, ourRoute{Route: Route{Dst: r.Masked(), Via: p.VTEPIP, Src: t.Src}})
		}
		neighs = append(neighs, Neigh{IP: p.VTEPIP, MAC: p.VTEPMAC})
		fdb = append(fdb, FDBEntry{MAC: p.VTEPMAC, Dst: p.PublicIP})
	}
	return routes, neighs, fdb
}

// subnetRoute is the route to p's subnet: via its public IP on the underlay
// when p is direct and t can hold the route, else via its VTEP on the
// VXLAN device.
func subnetRoute(t PeerTarget, p Peer) ourRoute {
	dst := p.Subnet.Masked()
	if p.Mode == ModeDirect && t.holdsDirect(dst) {
		return ourRoute{Route: Route{Dst: dst, Via: p.PublicIP, Src: t.DirectSrc}, direct: true}
	}
	return ourRoute{Route: Route{Dst: dst, Via: p.VTEPIP, Src: t.Src}}
}

// direct reports whether t has direct routes at all: it names the
// underlay they go on and the range that tells them apart.
func (t PeerTarget) direct() bool { return t.Underlay != "" && t.Range.IsValid() }

// holdsDirect reports whether a direct route to dst is t's: t has direct
// routes and dst lies inside its range.
func (t PeerTarget) holdsDirect(dst netip.Prefix) bool { return t.direct() && within(t.Range, dst) }

// within reports whether prefix p lies inside prefix r.
func within(r, p netip.Prefix) bool {
	return r.IsValid() && p.IsValid() && p.Bits() >= r.Bits() && r.Contains(p.Addr())
}

// table describes one kind of entry for the generic diff: how to order keys,
// how to order values under one key, and whether the kernel can hold several
// entries with one key.
type table[E any] struct {
	key   func(a, b E) int
	value func(a, b E) int
	multi bool
	// overwrites, when set, says whether writing want overwrites the one
	// installed entry have of its key in place; when it does not, have is
	// deleted as well. Unset: always.
	overwrites func(want, have E) bool
}

var (
	routeTable = table[Route]{
		key: func(a, b Route) int { return a.Dst.Compare(b.Dst) },
		value: func(a, b Route) int {
			if c := a.Via.Compare(b.Via); c != 0 {
				return c
			}
			return a.Src.Compare(b.Src)
		},
		multi: true,
	}
	// ourRouteTable keys the routes of both devices by destination alone,
	// as the kernel's main table does (see DiffTarget); a VXLAN route sorts
	// before a direct one, so it wins a conflict.
	ourRouteTable = table[ourRoute]{
		key: func(a, b ourRoute) int { return routeTable.key(a.Route, b.Route) },
		value: func(a, b ourRoute) int {
			if c := cmpBool(a.direct, b.direct); c != 0 {
				return c
			}
			return routeTable.value(a.Route, b.Route)
		},
		multi: true,
		// The replace that writes a route overwrites ours to the same
		// destination on the other device too (the kernel matches by
		// destination), but the plan still deletes that one: so it shows
		// the switch, and a route at another metric, which the replace
		// misses, goes as well.
		overwrites: func(want, have ourRoute) bool { return want.direct == have.direct },
	}
	neighTable = table[Neigh]{
		key:   func(a, b Neigh) int { return a.IP.Compare(b.IP) },
		value: func(a, b Neigh) int { return bytes.Compare(a.MAC, b.MAC) },
	}
	fdbTable = table[FDBEntry]{
		key:   func(a, b FDBEntry) int { return bytes.Compare(a.MAC, b.MAC) },
		value: func(a, b FDBEntry) int { return a.Dst.Compare(b.Dst) },
		multi: true,
	}
)

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func (t table[E]) cmp(a, b E) int {
	if c := t.key(a, b); c != 0 {
		return c
	}
	return t.value(a, b)
}

func (t table[E]) same(a, b E) bool { return t.cmp(a, b) == 0 }

func (t table[E]) sameKey(a, b E) bool { return t.key(a, b) == 0 }

// diff walks the sorted wanted and installed entries side by side. The
// slices it is given are not modified.
func (t table[E]) diff(wanted, installed []E) (add, del []E) {
	w := t.sorted(wanted)
	w = slices.CompactFunc(w, t.sameKey) // keeps the smallest value per key
	h := slices.CompactFunc(t.sorted(installed), t.same)
	for len(w) > 0 || len(h) > 0 {
		switch c := t.order(w, h); {
		case c < 0:
			add = append(add, w[0])
			w = w[1:]
		case c > 0:
			del = append(del, h[0])
			h = h[1:]
		default:
			n := runLen(h, t.sameKey)
			add, del = t.diffKey(w[0], h[:n], add, del)
			w, h = w[1:], h[n:]
		}
	}
	return add, del
}

func (t table[E]) sorted(s []E) []E {
	s = slices.Clone(s)
	slices.SortFunc(s, t.cmp)
	return s
}

// order compares the heads of the two walks by key; an exhausted side sorts last.
func (t table[E]) order(w, h []E) int {
	switch {
	case len(h) == 0:
		return -1
	case len(w) == 0:
		return 1
	}
	return t.key(w[0], h[0])
}

// diffKey handles one wanted entry against the installed entries of its key.
func (t table[E]) diffKey(want E, have, add, del []E) ([]E, []E) {
	if !slices.ContainsFunc(have, func(e E) bool { return t.same(e, want) }) {
		add = append(add, want)
	}
	if t.multi && len(have) >= 2 || t.overwrites != nil && len(have) == 1 && !t.overwrites(want, have[0]) {
		for _, e := range have {
			if !t.same(e, want) {
				del = append(del, e)
			}
		}
	}
	return add, del
}

// runLen is the length of the leading run of s whose elements equal s[0].
func runLen[E any](s []E, eq func(a, b E) bool) int {
	n := 1
	for n < len(s) && eq(s[0], s[n]) {
		n++
	}
	return n
}
