package datapath

import (
	"net/netip"
	"reflect"
	"testing"
)

// Gaps names, per peer, exactly what a pass would add: a missing
// neighbour, an FDB entry pointing at another underlay address, a
// gateway's missing LAN route; Count agrees with the kernel's entries.
func TestGapsAndCount(t *testing.T) {
	p1, p2, p3 := peer(1), peer(2), peer(3)
	lan := netip.MustParsePrefix("192.168.10.0/24")
	p3.Routes = []netip.Prefix{lan}
	in := installedFor(p1, p2, p3)
	in.Neighs = in.Neighs[1:]                                                      // p1's neighbour deleted
	in.FDB[1].Dst = netip.MustParseAddr("198.18.0.99")                             // p2's FDB entry moved
	in.Routes = append(in.Routes, Route{Dst: peer(4).Subnet, Via: peer(4).VTEPIP}) // a stale one
	got := Gaps(PeerTarget{}, []Peer{p1, p2, p3}, in)
	want := []Gap{{Peer: p1.Subnet, Neigh: true}, {Peer: p2.Subnet, FDB: true}, {Peer: p3.Subnet, Routes: []netip.Prefix{lan}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("gaps = %+v\nwant %+v", got, want)
	}
	if m := got[0].Missing(); !reflect.DeepEqual(m, []string{"neigh"}) {
		t.Fatalf("missing = %v", m)
	}
	c := Count(PeerTarget{}, []Peer{p1, p2, p3}, in)
	if c != (Census{Routes: 4, Neighs: 2, FDB: 3, Programmed: 0}) {
		t.Fatalf("census = %+v", c)
	}
	if c := Count(PeerTarget{}, []Peer{p1, p2}, installedFor(p1, p2)); c.Programmed != 2 {
		t.Fatalf("a fully programmed pair counts %d programmed", c.Programmed)
	}
	if Gaps(PeerTarget{}, []Peer{p1}, installedFor(p1)) != nil {
		t.Fatal("a programmed peer has a gap")
	}
}
