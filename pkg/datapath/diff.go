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
func Diff(wanted []Peer, installed Installed) Plan {
	return DiffFrom(netip.Addr{}, wanted, installed)
}

// DiffFrom is Diff for routes that carry src as their preferred source
// address (an edge host's routes; invalid src: none).
func DiffFrom(src netip.Addr, wanted []Peer, installed Installed) Plan {
	wr, wn, wf := wantedEntries(src, wanted)
	var p Plan
	p.AddRoutes, p.DelRoutes = routeTable.diff(wr, installed.Routes)
	p.AddNeighs, p.DelNeighs = neighTable.diff(wn, installed.Neighs)
	p.AddFDB, p.DelFDB = fdbTable.diff(wf, installed.FDB)
	return p
}

func wantedEntries(src netip.Addr, peers []Peer) ([]Route, []Neigh, []FDBEntry) {
	routes := make([]Route, 0, len(peers))
	neighs := make([]Neigh, 0, len(peers))
	fdb := make([]FDBEntry, 0, len(peers))
	for _, p := range peers {
		if ValidatePeer(p) != nil {
			continue
		}
		routes = append(routes, Route{Dst: p.Subnet.Masked(), Via: p.VTEPIP, Src: src})
		for _, r := range p.Routes {
			routes = append(routes, Route{Dst: r.Masked(), Via: p.VTEPIP, Src: src})
		}
		neighs = append(neighs, Neigh{IP: p.VTEPIP, MAC: p.VTEPMAC})
		fdb = append(fdb, FDBEntry{MAC: p.VTEPMAC, Dst: p.PublicIP})
	}
	return routes, neighs, fdb
}

// table describes one kind of entry for the generic diff: how to order keys,
// how to order values under one key, and whether the kernel can hold several
// entries with one key.
type table[E any] struct {
	key   func(a, b E) int
	value func(a, b E) int
	multi bool
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
	if !t.multi || len(have) < 2 {
		return add, del
	}
	for _, e := range have {
		if !t.same(e, want) {
			del = append(del, e)
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
