package agent

import (
	"net/netip"
	"slices"

	"github.com/overlaynet/overlay/pkg/datapath"
)

// entryKinds are the labels of what a pass adds or removes.
const (
	routeAdded   = "route_added"
	routeRemoved = "route_removed"
	neighAdded   = "neigh_added"
	neighRemoved = "neigh_removed"
	fdbAdded     = "fdb_added"
	fdbRemoved   = "fdb_removed"
)

// peerEntries is what a set of peers wants in the kernel, by key.
type peerEntries struct {
	routes map[netip.Prefix]netip.Addr // destination -> next hop
	neighs map[netip.Addr]string       // VTEP IP -> MAC
	fdb    map[string]netip.Addr       // MAC -> public IP
}

func entriesOf(peers []datapath.Peer) peerEntries {
	e := peerEntries{routes: make(map[netip.Prefix]netip.Addr, len(peers)), neighs: make(map[netip.Addr]string, len(peers)),
		fdb: make(map[string]netip.Addr, len(peers))}
	for _, p := range peers {
		via := p.VTEPIP
		if p.Mode == datapath.ModeDirect {
			via = p.PublicIP
		}
		e.routes[p.Subnet] = via
		for _, lan := range p.Routes {
			e.routes[lan] = p.VTEPIP
		}
		mac := p.VTEPMAC.String()
		e.neighs[p.VTEPIP], e.fdb[mac] = mac, p.PublicIP
	}
	return e
}

// splitDrift sorts what plan p (for the wanted state now) added and
// removed into drift, entries the last state the kernel was known to
// hold (prev) already had as they are now written, or still wants
// unchanged as they are now removed: the kernel lost or changed them
// behind overlayd's back; and churn, entries for peers that came, went or
// changed in etcd. With no such state (a first pass, or one after
// failures), or another target (a new device, source or underlay),
// everything is churn: the pass programs.
func splitDrift(prev *Wanted, now *Wanted, p datapath.Plan) (drift, churn map[string]int) {
	drift, churn = map[string]int{}, map[string]int{}
	count := func(isDrift bool, kind string) {
		if isDrift {
			drift[kind]++
		} else {
			churn[kind]++
		}
	}
	if prev == nil || prev.target() != now.target() {
		for kind, n := range map[string]int{
			routeAdded: len(p.AddRoutes) + len(p.AddDirect), routeRemoved: len(p.DelRoutes) + len(p.DelDirect),
			neighAdded: len(p.AddNeighs), neighRemoved: len(p.DelNeighs), fdbAdded: len(p.AddFDB), fdbRemoved: len(p.DelFDB),
		} {
			if n > 0 {
				churn[kind] = n
			}
		}
		return drift, churn
	}
	before, after := entriesOf(prev.Peers), entriesOf(now.Peers)
	for _, r := range slices.Concat(p.AddRoutes, p.AddDirect) {
		via, had := before.routes[r.Dst]
		count(had && via == r.Via, routeAdded)
	}
	for _, r := range slices.Concat(p.DelRoutes, p.DelDirect) {
		was, had := before.routes[r.Dst]
		is, wanted := after.routes[r.Dst]
		count(!had || (wanted && was == is), routeRemoved)
	}
	for _, n := range p.AddNeighs {
		mac, had := before.neighs[n.IP]
		count(had && mac == n.MAC.String(), neighAdded)
	}
	for _, n := range p.DelNeighs {
		was, had := before.neighs[n.IP]
		is, wanted := after.neighs[n.IP]
		count(!had || (wanted && was == is), neighRemoved)
	}
	for _, f := range p.AddFDB {
		dst, had := before.fdb[f.MAC.String()]
		count(had && dst == f.Dst, fdbAdded)
	}
	for _, f := range p.DelFDB {
		was, had := before.fdb[f.MAC.String()]
		is, wanted := after.fdb[f.MAC.String()]
		count(!had || (wanted && was == is), fdbRemoved)
	}
	return drift, churn
}
