package datapath

import (
	"net/netip"
	"testing"
)

// An edge host's routes carry its overlay address as source (what it sends
// uses that address), a gateway's LANs are routed via its VTEP, and a pass
// over what is installed is a no-op; dropping the source rewrites them.
func TestSyncPeersFromSourceAndAdvertisedRoutes(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	src := spec.Address.Addr()
	gw := Peer{Subnet: netip.MustParsePrefix("10.244.255.4/32"), VTEPIP: netip.MustParseAddr("10.244.255.4"),
		VTEPMAC: mac(9), PublicIP: netip.MustParseAddr("198.18.0.9"), Routes: []netip.Prefix{netip.MustParsePrefix("198.19.10.0/24")}}
	peers := []Peer{peer(2), gw}
	var again, plain Plan
	var state rawState
	do(t, host, func() (err error) {
		if _, err = SyncPeersFrom(spec.Name, src, peers); err != nil {
			return err
		}
		if state, err = dumpDevice(spec.Name); err != nil {
			return err
		}
		if again, err = SyncPeersFrom(spec.Name, src, peers); err != nil {
			return err
		}
		plain, err = SyncPeers(spec.Name, peers)
		return err
	})
	want := map[netip.Prefix]netip.Addr{peer(2).Subnet: peer(2).VTEPIP, gw.Subnet: gw.VTEPIP, gw.Routes[0]: gw.VTEPIP}
	if len(state.routes) != len(want) {
		t.Fatalf("routes %v, want %v", state.routes, want)
	}
	for _, r := range state.routes {
		dst := fromIPNet(r.Dst)
		if via, ok := want[dst]; !ok || fromIP(r.Gw) != via || fromIP(r.Src) != src {
			t.Errorf("route %s via %s src %s; want via %s src %s", dst, fromIP(r.Gw), fromIP(r.Src), via, src)
		}
	}
	if !again.Empty() {
		t.Errorf("second pass not a no-op: %q", planLines(again))
	}
	if len(plain.AddRoutes) != 3 {
		t.Errorf("a pass without source rewrote %d routes, want 3: %q", len(plain.AddRoutes), planLines(plain))
	}
}
