package datapath

import (
	"net/netip"
	"slices"
)

// Gap is what the kernel lacks for one wanted peer: an entry that is
// missing, or installed with another value (a route via another next hop,
// a neighbour with another MAC, an FDB entry to another underlay address).
type Gap struct {
	Peer netip.Prefix
	// Route names the destinations (the peer's subnet, a gateway's LANs)
	// whose route is missing or wrong; Neigh and FDB the peer's neighbour
	// and FDB entry.
	Routes []netip.Prefix
	Neigh  bool
	FDB    bool
}

// Missing lists the kinds of entry the gap is about: route, neigh, fdb.
func (g Gap) Missing() []string {
	var out []string
	if len(g.Routes) > 0 {
		out = append(out, "route")
	}
	if g.Neigh {
		out = append(out, "neigh")
	}
	if g.FDB {
		out = append(out, "fdb")
	}
	return out
}

// Gaps compares the wanted peers of target t with what is installed and
// returns, in wanted order, each peer that is not fully programmed. It is
// DiffTarget read per peer, so overlayd's metrics, overlayctl status and
// overlayctl why judge a peer exactly as a reconcile pass would.
func Gaps(t PeerTarget, wanted []Peer, installed Installed) []Gap {
	return GapsIn(DiffTarget(t, wanted, installed), wanted)
}

// GapsIn is Gaps read from a plan DiffTarget made for wanted.
func GapsIn(plan Plan, wanted []Peer) []Gap {
	if len(plan.AddRoutes)+len(plan.AddDirect)+len(plan.AddNeighs)+len(plan.AddFDB) == 0 {
		return nil
	}
	routes := map[netip.Prefix]bool{}
	for _, r := range slices.Concat(plan.AddRoutes, plan.AddDirect) {
		routes[r.Dst] = true
	}
	neighs := map[netip.Addr]bool{}
	for _, n := range plan.AddNeighs {
		neighs[n.IP] = true
	}
	fdb := map[string]bool{}
	for _, f := range plan.AddFDB {
		fdb[f.MAC.String()] = true
	}
	var gaps []Gap
	for _, p := range wanted {
		g := Gap{Peer: p.Subnet, Neigh: neighs[p.VTEPIP], FDB: fdb[p.VTEPMAC.String()]}
		for _, dst := range append([]netip.Prefix{p.Subnet}, p.Routes...) {
			if routes[dst] {
				g.Routes = append(g.Routes, dst)
			}
		}
		if len(g.Routes) > 0 || g.Neigh || g.FDB {
			gaps = append(gaps, g)
		}
	}
	return gaps
}

// Census counts what the kernel holds for a network's peers.
type Census struct {
	// Routes, Neighs and FDB are the entries on the VXLAN device; Direct
	// the direct routes on the underlay.
	Routes, Direct, Neighs, FDB int
	// Programmed is how many wanted peers have every entry in place.
	Programmed int
}

// Count is the census of installed against the wanted peers of t.
func Count(t PeerTarget, wanted []Peer, installed Installed) Census {
	return Census{
		Routes: len(installed.Routes) + len(installed.Stale), Direct: len(installed.Direct) + len(installed.StaleDirect),
		Neighs: len(installed.Neighs), FDB: len(installed.FDB),
		Programmed: len(wanted) - len(Gaps(t, wanted, installed)),
	}
}
