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

// splitDrift sorts what plan p added and removed into drift, entries the
// previous wanted state (prev) already had as they are now written or
// still wants as they are now removed: the kernel lost or changed them
// behind overlayd's back; and churn, entries for peers that came, went or
// changed in etcd. A first pass (prev nil) is all churn: it programs.
func splitDrift(prev *Wanted, now []datapath.Peer, p datapath.Plan) (drift, churn map[string]int) {
	drift, churn = map[string]int{}, map[string]int{}
	count := func(isDrift bool, kind string) {
		if isDrift {
			drift[kind]++
		} else {
			churn[kind]++
		}
	}
	if prev == nil {
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
	before, after := entriesOf(prev.Peers), entriesOf(now)
	for _, r := range slices.Concat(p.AddRoutes, p.AddDirect) {
		via, had := before.routes[r.Dst]
		count(had && via == r.Via, routeAdded)
	}
	for _, r := range slices.Concat(p.DelRoutes, p.DelDirect) {
		_, had := before.routes[r.Dst]
		_, wanted := after.routes[r.Dst]
		count(wanted || !had, routeRemoved)
	}
	for _, n := range p.AddNeighs {
		mac, had := before.neighs[n.IP]
		count(had && mac == n.MAC.String(), neighAdded)
	}
	for _, n := range p.DelNeighs {
		_, had := before.neighs[n.IP]
		_, wanted := after.neighs[n.IP]
		count(wanted || !had, neighRemoved)
	}
	for _, f := range p.AddFDB {
		dst, had := before.fdb[f.MAC.String()]
		count(had && dst == f.Dst, fdbAdded)
	}
	for _, f := range p.DelFDB {
		_, had := before.fdb[f.MAC.String()]
		_, wanted := after.fdb[f.MAC.String()]
		count(wanted || !had, fdbRemoved)
	}
	return drift, churn
}
