package datapath

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"
)

// fakeKernel models how the kernel applies a plan on one device: a
// neighbour is unique per IP and deleted by IP alone; a replace overwrites
// the first route to a destination or the first remote of a MAC; a route or
// FDB delete names the exact entry. (Routes differing only in metric are
// outside the model: Route has no metric.)
type fakeKernel struct{ Installed }

func (k *fakeKernel) apply(p Plan) {
	for _, n := range p.AddNeighs {
		k.Neighs = replaceOrAppend(k.Neighs, n, func(e Neigh) bool { return e.IP == n.IP })
	}
	for _, f := range p.AddFDB {
		k.FDB = replaceOrAppend(k.FDB, f, func(e FDBEntry) bool { return bytes.Equal(e.MAC, f.MAC) })
	}
	for _, r := range p.AddRoutes {
		k.Routes = replaceOrAppend(k.Routes, r, func(e Route) bool { return e.Dst == r.Dst })
	}
	for _, r := range p.DelRoutes {
		k.Routes = slices.DeleteFunc(k.Routes, func(e Route) bool { return e == r })
	}
	for _, n := range p.DelNeighs {
		k.Neighs = slices.DeleteFunc(k.Neighs, func(e Neigh) bool { return e.IP == n.IP })
	}
	for _, f := range p.DelFDB {
		k.FDB = slices.DeleteFunc(k.FDB, func(e FDBEntry) bool { return fdbTable.same(e, f) })
	}
}

func replaceOrAppend[E any](s []E, e E, sameKey func(E) bool) []E {
	if i := slices.IndexFunc(s, sameKey); i >= 0 {
		s[i] = e
		return s
	}
	return append(s, e)
}

// wantedState computes, independently of Diff, the entries the device must
// hold: per key the smallest value any valid peer asks for.
func wantedState(peers []Peer) []string {
	routes, neighs, fdb := map[netip.Prefix]netip.Addr{}, map[netip.Addr]string{}, map[string]netip.Addr{}
	for _, p := range peers {
		if ValidatePeer(p) != nil {
			continue
		}
		dst := p.Subnet.Masked()
		if v, ok := routes[dst]; !ok || p.VTEPIP.Less(v) {
			routes[dst] = p.VTEPIP
		}
		if v, ok := neighs[p.VTEPIP]; !ok || p.VTEPMAC.String() < v {
			neighs[p.VTEPIP] = p.VTEPMAC.String()
		}
		if v, ok := fdb[p.VTEPMAC.String()]; !ok || p.PublicIP.Less(v) {
			fdb[p.VTEPMAC.String()] = p.PublicIP
		}
	}
	var out []string
	for d, v := range routes {
		out = append(out, fmt.Sprintf("+route %s via %s", d, v))
	}
	for ip, m := range neighs {
		out = append(out, fmt.Sprintf("+neigh %s %s", ip, m))
	}
	for m, ip := range fdb {
		out = append(out, fmt.Sprintf("+fdb %s %s", m, ip))
	}
	slices.Sort(out)
	return out
}

// checkConverges applies Diff to a fake kernel and requires that the
// result is exactly the wanted state and a second Diff is empty.
func checkConverges(t *testing.T, wanted []Peer, installed Installed) {
	t.Helper()
	plan := Diff(wanted, installed)
	checkPlanShape(t, plan)
	k := fakeKernel{installed}
	k.apply(plan)
	if again := Diff(wanted, k.Installed); !again.Empty() {
		t.Fatalf("second Diff not empty: %q\nwanted %v\ninstalled %v\nplan %q", planLines(again), wanted, installed, planLines(plan))
	}
	got := planLines(Plan{AddRoutes: k.Routes, AddNeighs: k.Neighs, AddFDB: k.FDB})
	slices.Sort(got)
	if want := wantedState(wanted); !slices.Equal(got, want) {
		t.Fatalf("kernel after apply:\n got %q\nwant %q", got, want)
	}
}

// checkPlanShape: every list sorted, no entry twice.
func checkPlanShape(t *testing.T, p Plan) {
	t.Helper()
	ok := sortedUnique(p.AddRoutes, routeTable) && sortedUnique(p.DelRoutes, routeTable) &&
		sortedUnique(p.AddNeighs, neighTable) && sortedUnique(p.DelNeighs, neighTable) &&
		sortedUnique(p.AddFDB, fdbTable) && sortedUnique(p.DelFDB, fdbTable)
	if !ok {
		t.Fatalf("plan not sorted or has duplicates: %q", planLines(p))
	}
}

func sortedUnique[E any](s []E, tb table[E]) bool {
	for i := 1; i < len(s); i++ {
		if tb.cmp(s[i-1], s[i]) >= 0 {
			return false
		}
	}
	return true
}

// genCase draws peers and installed entries from small pools so that keys
// collide often: shared subnets, MACs and IPs, stale and foreign entries,
// several routes or remotes under one key, now and then an invalid peer.
func genCase(r *rand.Rand) ([]Peer, Installed) {
	subnet := func() netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", r.IntN(6))) }
	vtep := func() netip.Addr { return netip.MustParseAddr(fmt.Sprintf("10.244.%d.0", r.IntN(6))) }
	hw := func() net.HardwareAddr { return mac(1 + r.IntN(5)) }
	public := func() netip.Addr { return netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", 1+r.IntN(4))) }
	var peers []Peer
	for range r.IntN(7) {
		p := Peer{Subnet: subnet(), VTEPIP: vtep(), VTEPMAC: hw(), PublicIP: public()}
		if r.IntN(10) == 0 {
			p.VTEPMAC = nil
		}
		peers = append(peers, p)
	}
	k := fakeKernel{}
	for range r.IntN(8) {
		k.apply(Plan{AddNeighs: []Neigh{{IP: vtep(), MAC: hw()}}})
		k.Routes = appendUnique(k.Routes, Route{Dst: subnet(), Via: vtep()}, routeTable)
		k.FDB = appendUnique(k.FDB, FDBEntry{MAC: hw(), Dst: public()}, fdbTable)
	}
	return peers, k.Installed
}

// appendUnique adds e unless the exact entry is there: the kernel holds one
// route per destination and gateway (at one metric) and one remote per MAC
// and destination.
func appendUnique[E any](s []E, e E, tb table[E]) []E {
	if slices.ContainsFunc(s, func(x E) bool { return tb.same(x, e) }) {
		return s
	}
	return append(s, e)
}

func TestDiffConverges(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		wanted, installed := genCase(r)
		checkConverges(t, wanted, installed)
	}
}

func FuzzDiffConverges(f *testing.F) {
	for _, seed := range []uint64{0, 1, 42, 1 << 40} {
		f.Add(seed, seed^0xdeadbeef)
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		wanted, installed := genCase(rand.New(rand.NewPCG(a, b)))
		checkConverges(t, wanted, installed)
	})
}
