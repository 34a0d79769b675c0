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

// fakeKernel models how the kernel applies a plan to one network's
// entries: a neighbour is unique per IP and deleted by IP alone; a route or
// FDB delete names the exact entry; an FDB replace overwrites the first
// remote of a MAC. Routes on the VXLAN device (Routes) and the underlay
// (Direct) share the main table, keyed by destination whatever the device:
// a route write to a destination that has routes of ours replaces one of
// them, on either device, and which one is up to the kernel (the model
// draws it from pick). (Routes differing only in metric are outside the
// model: Route has no metric.)
type fakeKernel struct {
	Installed
	pick *rand.Rand
	// step, when set, is called after every single change.
	step func()
}

func (k *fakeKernel) apply(p Plan) {
	var ops []func()
	for _, n := range p.AddNeighs {
		ops = append(ops, func() { k.Neighs = replaceOrAppend(k.Neighs, n, func(e Neigh) bool { return e.IP == n.IP }) })
	}
	for _, f := range p.AddFDB {
		ops = append(ops, func() { k.FDB = replaceOrAppend(k.FDB, f, func(e FDBEntry) bool { return bytes.Equal(e.MAC, f.MAC) }) })
	}
	for _, r := range p.AddRoutes {
		ops = append(ops, func() { k.writeRoute(ourRoute{Route: r}) })
	}
	for _, r := range p.AddDirect {
		ops = append(ops, func() { k.writeRoute(ourRoute{Route: r, direct: true}) })
	}
	for _, r := range p.DelRoutes {
		ops = append(ops, func() { k.Routes = slices.DeleteFunc(k.Routes, func(e Route) bool { return e == r }) })
	}
	for _, r := range p.DelDirect {
		ops = append(ops, func() { k.Direct = slices.DeleteFunc(k.Direct, func(e Route) bool { return e == r }) })
	}
	for _, n := range p.DelNeighs {
		ops = append(ops, func() { k.Neighs = slices.DeleteFunc(k.Neighs, func(e Neigh) bool { return e.IP == n.IP }) })
	}
	for _, f := range p.DelFDB {
		ops = append(ops, func() { k.FDB = slices.DeleteFunc(k.FDB, func(e FDBEntry) bool { return fdbTable.same(e, f) }) })
	}
	for _, op := range ops {
		op()
		if k.step != nil {
			k.step()
		}
	}
}

// writeRoute is a route add or replace: it overwrites one of the routes to
// r's destination, on either device, or adds r when there is none.
func (k *fakeKernel) writeRoute(r ourRoute) {
	type at struct {
		direct bool
		i      int
	}
	var same []at
	for i, e := range k.Routes {
		if e.Dst == r.Dst {
			same = append(same, at{false, i})
		}
	}
	for i, e := range k.Direct {
		if e.Dst == r.Dst {
			same = append(same, at{true, i})
		}
	}
	if len(same) > 0 {
		v := same[k.pick.IntN(len(same))]
		if v.direct {
			k.Direct = slices.Delete(k.Direct, v.i, v.i+1)
		} else {
			k.Routes = slices.Delete(k.Routes, v.i, v.i+1)
		}
	}
	if r.direct {
		k.Direct = append(k.Direct, r.Route)
	} else {
		k.Routes = append(k.Routes, r.Route)
	}
}

func replaceOrAppend[E any](s []E, e E, sameKey func(E) bool) []E {
	if i := slices.IndexFunc(s, sameKey); i >= 0 {
		s[i] = e
		return s
	}
	return append(s, e)
}

// routeValue is a wanted route for wantedState: VXLAN routes rank before
// direct ones, then by gateway and source.
type routeValue struct {
	direct   bool
	via, src netip.Addr
}

func (a routeValue) less(b routeValue) bool {
	if a.direct != b.direct {
		return !a.direct
	}
	if a.via != b.via {
		return a.via.Less(b.via)
	}
	return a.src.Less(b.src)
}

// wantedState computes, independently of Diff, the entries the kernel must
// hold for target tg: per key the smallest value any valid peer asks for,
// one route per destination across both devices.
func wantedState(tg PeerTarget, peers []Peer) Installed {
	routes, neighs, fdb := map[netip.Prefix]routeValue{}, map[netip.Addr]string{}, map[string]netip.Addr{}
	want := func(dst netip.Prefix, v routeValue) {
		if old, ok := routes[dst]; !ok || v.less(old) {
			routes[dst] = v
		}
	}
	for _, p := range peers {
		if ValidatePeer(p) != nil {
			continue
		}
		dst := p.Subnet.Masked()
		direct := p.Mode == ModeDirect && tg.Underlay != "" && tg.Range.IsValid() &&
			dst.Bits() >= tg.Range.Bits() && tg.Range.Contains(dst.Addr())
		if direct {
			want(dst, routeValue{direct: true, via: p.PublicIP, src: tg.DirectSrc})
		} else {
			want(dst, routeValue{via: p.VTEPIP, src: tg.Src})
		}
		for _, lan := range p.Routes {
			want(lan.Masked(), routeValue{via: p.VTEPIP, src: tg.Src})
		}
		if v, ok := neighs[p.VTEPIP]; !ok || p.VTEPMAC.String() < v {
			neighs[p.VTEPIP] = p.VTEPMAC.String()
		}
		if v, ok := fdb[p.VTEPMAC.String()]; !ok || p.PublicIP.Less(v) {
			fdb[p.VTEPMAC.String()] = p.PublicIP
		}
	}
	var in Installed
	for d, v := range routes {
		r := Route{Dst: d, Via: v.via, Src: v.src}
		if v.direct {
			in.Direct = append(in.Direct, r)
		} else {
			in.Routes = append(in.Routes, r)
		}
	}
	for ip, m := range neighs {
		hw, _ := net.ParseMAC(m)
		in.Neighs = append(in.Neighs, Neigh{IP: ip, MAC: hw})
	}
	for m, ip := range fdb {
		hw, _ := net.ParseMAC(m)
		in.FDB = append(in.FDB, FDBEntry{MAC: hw, Dst: ip})
	}
	return in
}

// stateLines renders installed state, sorted, for comparison.
func stateLines(in Installed) []string {
	out := planLines(Plan{AddRoutes: in.Routes, AddNeighs: in.Neighs, AddFDB: in.FDB, AddDirect: in.Direct})
	slices.Sort(out)
	return out
}

// routedDsts is the set of destinations the kernel routes.
func routedDsts(in Installed) map[netip.Prefix]bool {
	out := map[netip.Prefix]bool{}
	for _, r := range append(slices.Clone(in.Routes), in.Direct...) {
		out[r.Dst] = true
	}
	return out
}

// checkConverges applies DiffTarget to a fake kernel and requires that the
// result is exactly the wanted state, that a second pass is empty, and that
// a destination routed before and wanted after is never without a route
// in between (a mode switch moves it in one step).
func checkConverges(t *testing.T, pick *rand.Rand, tg PeerTarget, wanted []Peer, installed Installed) Installed {
	t.Helper()
	plan := DiffTarget(tg, wanted, installed)
	checkPlanShape(t, plan)
	k := fakeKernel{Installed: cloneInstalled(installed), pick: pick}
	want := wantedState(tg, wanted)
	before, wantDsts := routedDsts(installed), routedDsts(want)
	var gap []netip.Prefix
	k.step = func() {
		now := routedDsts(k.Installed)
		for d := range wantDsts {
			if before[d] && !now[d] && !slices.Contains(gap, d) {
				gap = append(gap, d)
			}
		}
	}
	k.apply(plan)
	ctx := fmt.Sprintf("\ntarget %+v\nwanted %v\ninstalled %q\nplan %q", tg, wanted, stateLines(installed), planLines(plan))
	if len(gap) > 0 {
		t.Fatalf("destinations %v went without a route during the pass%s", gap, ctx)
	}
	if again := DiffTarget(tg, wanted, k.Installed); !again.Empty() {
		t.Fatalf("second Diff not empty: %q%s", planLines(again), ctx)
	}
	if got, want := stateLines(k.Installed), stateLines(want); !slices.Equal(got, want) {
		t.Fatalf("kernel after apply:\n got %q\nwant %q%s", got, want, ctx)
	}
	return k.Installed
}

func cloneInstalled(in Installed) Installed {
	return Installed{Routes: slices.Clone(in.Routes), Neighs: slices.Clone(in.Neighs), FDB: slices.Clone(in.FDB), Direct: slices.Clone(in.Direct)}
}

// checkPlanShape: every list sorted, no entry twice, no destination both
// added on one device and on the other.
func checkPlanShape(t *testing.T, p Plan) {
	t.Helper()
	ok := sortedUnique(p.AddRoutes, routeTable) && sortedUnique(p.DelRoutes, routeTable) &&
		sortedUnique(p.AddDirect, routeTable) && sortedUnique(p.DelDirect, routeTable) &&
		sortedUnique(p.AddNeighs, neighTable) && sortedUnique(p.DelNeighs, neighTable) &&
		sortedUnique(p.AddFDB, fdbTable) && sortedUnique(p.DelFDB, fdbTable)
	if !ok {
		t.Fatalf("plan not sorted or has duplicates: %q", planLines(p))
	}
	for _, r := range p.AddRoutes {
		if slices.ContainsFunc(p.AddDirect, func(d Route) bool { return d.Dst == r.Dst }) {
			t.Fatalf("plan adds a route to %s on both devices: %q", r.Dst, planLines(p))
		}
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

// genTarget draws a target: mostly with an underlay and the whole range,
// sometimes with no underlay, a narrower range (some subnets outside it)
// or none, with and without source addresses.
func genTarget(r *rand.Rand) PeerTarget {
	tg := PeerTarget{Device: "overlay.1", Underlay: "eth0", Range: mustPrefix("10.244.0.0/16")}
	switch r.IntN(8) {
	case 0:
		tg.Underlay = ""
	case 1:
		tg.Range = mustPrefix("10.244.0.0/22")
	case 2:
		tg.Range = netip.Prefix{}
	}
	if r.IntN(3) == 0 {
		tg.Src = netip.MustParseAddr("10.244.9.0")
	}
	if r.IntN(3) > 0 {
		tg.DirectSrc = netip.MustParseAddr("10.244.1.0")
	}
	return tg
}

// genCase draws a target, peers and installed entries from small pools so
// that keys collide often: shared subnets, MACs and IPs, stale and foreign
// entries, several routes or remotes under one key, peers of both modes,
// advertised LANs that are another peer's subnet, routes of ours to one
// destination on both devices, now and then an invalid peer.
func genCase(r *rand.Rand) (PeerTarget, []Peer, Installed) {
	tg := genTarget(r)
	subnet := func() netip.Prefix { return netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", r.IntN(6))) }
	vtep := func() netip.Addr { return netip.MustParseAddr(fmt.Sprintf("10.244.%d.0", r.IntN(6))) }
	hw := func() net.HardwareAddr { return mac(1 + r.IntN(5)) }
	public := func() netip.Addr { return netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", 1+r.IntN(4))) }
	src := func(s netip.Addr) netip.Addr { return []netip.Addr{{}, s}[r.IntN(2)] }
	var peers []Peer
	for range r.IntN(7) {
		p := Peer{Subnet: subnet(), VTEPIP: vtep(), VTEPMAC: hw(), PublicIP: public(), Mode: PeerMode(r.IntN(2))}
		if r.IntN(10) == 0 {
			p.VTEPMAC = nil
		}
		if r.IntN(4) == 0 {
			p.Routes = []netip.Prefix{[]netip.Prefix{subnet(), mustPrefix("198.19.0.0/24")}[r.IntN(2)]}
		}
		peers = append(peers, p)
	}
	k := fakeKernel{pick: r}
	for range r.IntN(8) {
		k.apply(Plan{AddNeighs: []Neigh{{IP: vtep(), MAC: hw()}}})
		k.Routes = appendUnique(k.Routes, Route{Dst: subnet(), Via: vtep(), Src: src(tg.Src)}, routeTable)
		k.FDB = appendUnique(k.FDB, FDBEntry{MAC: hw(), Dst: public()}, fdbTable)
		// Only a target with direct routes reads them, and only inside its range.
		if d := (Route{Dst: subnet(), Via: public(), Src: src(tg.DirectSrc)}); tg.holdsDirect(d.Dst) && r.IntN(2) == 0 {
			k.Direct = appendUnique(k.Direct, d, routeTable)
		}
	}
	return tg, peers, k.Installed
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

// switchModes turns every direct peer to VXLAN and every VXLAN peer direct.
func switchModes(peers []Peer) []Peer {
	out := slices.Clone(peers)
	for i := range out {
		out[i].Mode = ModeDirect - out[i].Mode
	}
	return out
}

// checkCase converges from the drawn state, then switches every peer's mode
// and back, each switch in one pass from the converged kernel.
func checkCase(t *testing.T, r *rand.Rand) {
	tg, wanted, installed := genCase(r)
	k := checkConverges(t, r, tg, wanted, installed)
	k = checkConverges(t, r, tg, switchModes(wanted), k)
	checkConverges(t, r, tg, wanted, k)
}

func TestDiffConverges(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 5000 {
		checkCase(t, r)
	}
}

func FuzzDiffConverges(f *testing.F) {
	for _, seed := range []uint64{0, 1, 42, 1 << 40} {
		f.Add(seed, seed^0xdeadbeef)
	}
	f.Fuzz(func(t *testing.T, a, b uint64) {
		checkCase(t, rand.New(rand.NewPCG(a, b)))
	})
}
