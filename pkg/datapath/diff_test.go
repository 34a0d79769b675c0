package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
)

// peer n is host n: subnet 10.244.n.0/24, VTEP 10.244.n.0, MAC 02:00:00:00:00:n,
// public IP 198.18.0.n.
func peer(n int) Peer {
	return Peer{
		Subnet:   netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", n)),
		VTEPIP:   netip.MustParseAddr(fmt.Sprintf("10.244.%d.0", n)),
		VTEPMAC:  mac(n),
		PublicIP: netip.MustParseAddr(fmt.Sprintf("198.18.0.%d", n)),
	}
}

func mac(n int) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 0, byte(n)} }

// installedFor is what SyncPeers leaves on the device for peers.
func installedFor(peers ...Peer) Installed {
	var in Installed
	for _, p := range peers {
		in.Routes = append(in.Routes, Route{Dst: p.Subnet.Masked(), Via: p.VTEPIP})
		in.Neighs = append(in.Neighs, Neigh{IP: p.VTEPIP, MAC: p.VTEPMAC})
		in.FDB = append(in.FDB, FDBEntry{MAC: p.VTEPMAC, Dst: p.PublicIP})
	}
	return in
}

// planLines renders a plan one entry per line, in plan order, for comparison.
func planLines(p Plan) []string {
	var out []string
	for _, r := range p.AddRoutes {
		out = append(out, routeLine("+route", r))
	}
	for _, r := range p.DelRoutes {
		out = append(out, routeLine("-route", r))
	}
	for _, r := range p.AddDirect {
		out = append(out, routeLine("+direct", r))
	}
	for _, r := range p.DelDirect {
		out = append(out, routeLine("-direct", r))
	}
	for _, n := range p.AddNeighs {
		out = append(out, fmt.Sprintf("+neigh %s %s", n.IP, n.MAC))
	}
	for _, n := range p.DelNeighs {
		out = append(out, fmt.Sprintf("-neigh %s %s", n.IP, n.MAC))
	}
	for _, f := range p.AddFDB {
		out = append(out, fmt.Sprintf("+fdb %s %s", f.MAC, f.Dst))
	}
	for _, f := range p.DelFDB {
		out = append(out, fmt.Sprintf("-fdb %s %s", f.MAC, f.Dst))
	}
	return out
}

func routeLine(op string, r Route) string {
	s := fmt.Sprintf("%s %s via %s", op, r.Dst, r.Via)
	if r.Src.IsValid() {
		s += " src " + r.Src.String()
	}
	return s
}

func TestDiff(t *testing.T) {
	p2, p3 := peer(2), peer(3)
	newMAC := p2
	newMAC.VTEPMAC = mac(9)
	newIP := p2
	newIP.PublicIP = netip.MustParseAddr("198.18.1.2")
	hostBits := p2
	hostBits.Subnet = netip.MustParsePrefix("10.244.2.7/24")
	invalid := p3
	invalid.VTEPMAC = nil
	claim3 := p3 // claims subnet 2 too, with its own VTEP
	claim3.Subnet = p2.Subnet

	multi := installedFor(p2)
	multi.Routes = append(multi.Routes, Route{Dst: p2.Subnet, Via: netip.MustParseAddr("10.244.2.99")})
	multi.FDB = append(multi.FDB, FDBEntry{MAC: p2.VTEPMAC, Dst: netip.MustParseAddr("198.18.1.1")})
	foreign := installedFor(p2)
	foreign.Routes = append(foreign.Routes, Route{Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("10.244.2.0")})
	foreign.FDB = append(foreign.FDB, FDBEntry{MAC: net.HardwareAddr{0, 0, 0, 0, 0, 0}, Dst: netip.MustParseAddr("198.18.0.200")})

	tests := []struct {
		name      string
		wanted    []Peer
		installed Installed
		want      []string
	}{
		{"empty installs everything", []Peer{p3, p2}, Installed{}, []string{
			"+route 10.244.2.0/24 via 10.244.2.0", "+route 10.244.3.0/24 via 10.244.3.0",
			"+neigh 10.244.2.0 02:00:00:00:00:02", "+neigh 10.244.3.0 02:00:00:00:00:03",
			"+fdb 02:00:00:00:00:02 198.18.0.2", "+fdb 02:00:00:00:00:03 198.18.0.3",
		}},
		{"all in place", []Peer{p2, p3}, installedFor(p3, p2), nil},
		{"nothing wanted nothing installed", nil, Installed{}, nil},
		{"stale peer removed", []Peer{p2}, installedFor(p2, p3), []string{
			"-route 10.244.3.0/24 via 10.244.3.0", "-neigh 10.244.3.0 02:00:00:00:00:03", "-fdb 02:00:00:00:00:03 198.18.0.3",
		}},
		{"changed MAC", []Peer{newMAC}, installedFor(p2), []string{
			"+neigh 10.244.2.0 02:00:00:00:00:09", "+fdb 02:00:00:00:00:09 198.18.0.2", "-fdb 02:00:00:00:00:02 198.18.0.2",
		}},
		{"changed public IP", []Peer{newIP}, installedFor(p2), []string{"+fdb 02:00:00:00:00:02 198.18.1.2"}},
		{"duplicate wanted", []Peer{p2, p2, p2}, Installed{}, []string{
			"+route 10.244.2.0/24 via 10.244.2.0", "+neigh 10.244.2.0 02:00:00:00:00:02", "+fdb 02:00:00:00:00:02 198.18.0.2",
		}},
		{"duplicate installed", []Peer{p2}, installedFor(p2, p2), nil},
		{"duplicate stale installed deleted once", nil, installedFor(p3, p3), []string{
			"-route 10.244.3.0/24 via 10.244.3.0", "-neigh 10.244.3.0 02:00:00:00:00:03", "-fdb 02:00:00:00:00:03 198.18.0.3",
		}},
		{"subnet with host bits is masked", []Peer{hostBits}, installedFor(p2), nil},
		{"invalid peer skipped and its entries removed", []Peer{p2, invalid}, installedFor(p2, p3), []string{
			"-route 10.244.3.0/24 via 10.244.3.0", "-neigh 10.244.3.0 02:00:00:00:00:03", "-fdb 02:00:00:00:00:03 198.18.0.3",
		}},
		{"conflicting claims: smallest value wins", []Peer{claim3, p2}, Installed{}, []string{
			"+route 10.244.2.0/24 via 10.244.2.0",
			"+neigh 10.244.2.0 02:00:00:00:00:02", "+neigh 10.244.3.0 02:00:00:00:00:03",
			"+fdb 02:00:00:00:00:02 198.18.0.2", "+fdb 02:00:00:00:00:03 198.18.0.3",
		}},
		{"extra route and remote under a wanted key are deleted", []Peer{p2}, multi, []string{
			"-route 10.244.2.0/24 via 10.244.2.99", "-fdb 02:00:00:00:00:02 198.18.1.1",
		}},
		{"foreign entries on our device are removed", []Peer{p2}, foreign, []string{
			"-route 0.0.0.0/0 via 10.244.2.0", "-fdb 00:00:00:00:00:00 198.18.0.200",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planLines(Diff(tt.wanted, tt.installed))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Diff:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// directTarget is host 1's target with direct routes: underlay eth0,
// range 10.244.0.0/16, its own overlay address as the direct source.
var directTarget = PeerTarget{Device: "overlay.1", Underlay: "eth0", DirectSrc: netip.MustParseAddr("10.244.1.0"),
	Range: netip.MustParsePrefix("10.244.0.0/16")}

// direct is peer n in direct mode.
func direct(n int) Peer {
	p := peer(n)
	p.Mode = ModeDirect
	return p
}

// directRoute is the direct route to peer n as directTarget installs it.
func directRoute(n int) Route {
	p := peer(n)
	return Route{Dst: p.Subnet, Via: p.PublicIP, Src: directTarget.DirectSrc}
}

// installedDirect is what SyncPeersTarget leaves for direct peers.
func installedDirect(ns ...int) Installed {
	var in Installed
	for _, n := range ns {
		p := peer(n)
		in.Direct = append(in.Direct, directRoute(n))
		in.Neighs = append(in.Neighs, Neigh{IP: p.VTEPIP, MAC: p.VTEPMAC})
		in.FDB = append(in.FDB, FDBEntry{MAC: p.VTEPMAC, Dst: p.PublicIP})
	}
	return in
}

func TestDiffDirect(t *testing.T) {
	gw := direct(2)
	gw.Routes = []netip.Prefix{netip.MustParsePrefix("198.19.10.0/24")}
	moved := direct(2)
	moved.PublicIP = netip.MustParseAddr("198.18.0.22")
	claim := direct(3) // claims subnet 2 directly, which peer 2 wants over VXLAN
	claim.Subnet = peer(2).Subnet
	invalid := direct(2)
	invalid.PublicIP = netip.MustParseAddr("2001:db8::2")
	noUnderlay := directTarget
	noUnderlay.Underlay = ""
	narrow := directTarget
	narrow.Range = netip.MustParsePrefix("10.244.0.0/23") // 10.244.0-1 only
	noSrc := installedDirect(2)
	noSrc.Direct[0].Src = netip.Addr{}
	both := installedDirect(2)
	both.Routes = installedFor(peer(2)).Routes

	tests := []struct {
		name      string
		target    PeerTarget
		wanted    []Peer
		installed Installed
		want      []string
	}{
		{"direct peer from scratch: its subnet on the underlay, neighbour and FDB on our device", directTarget,
			[]Peer{direct(2), peer(3)}, Installed{}, []string{
				"+route 10.244.3.0/24 via 10.244.3.0", "+direct 10.244.2.0/24 via 198.18.0.2 src 10.244.1.0",
				"+neigh 10.244.2.0 02:00:00:00:00:02", "+neigh 10.244.3.0 02:00:00:00:00:03",
				"+fdb 02:00:00:00:00:02 198.18.0.2", "+fdb 02:00:00:00:00:03 198.18.0.3",
			}},
		{"direct peer in place", directTarget, []Peer{direct(2)}, installedDirect(2), nil},
		{"switch to direct: add on the underlay, delete on our device", directTarget, []Peer{direct(2)}, installedFor(peer(2)), []string{
			"-route 10.244.2.0/24 via 10.244.2.0", "+direct 10.244.2.0/24 via 198.18.0.2 src 10.244.1.0",
		}},
		{"switch to VXLAN: add on our device, delete on the underlay", directTarget, []Peer{peer(2)}, installedDirect(2), []string{
			"+route 10.244.2.0/24 via 10.244.2.0", "-direct 10.244.2.0/24 via 198.18.0.2 src 10.244.1.0",
		}},
		{"gone direct peer removed from both devices", directTarget, nil, installedDirect(2), []string{
			"-direct 10.244.2.0/24 via 198.18.0.2 src 10.244.1.0", "-neigh 10.244.2.0 02:00:00:00:00:02", "-fdb 02:00:00:00:00:02 198.18.0.2",
		}},
		{"a direct gateway's LANs stay on VXLAN", directTarget, []Peer{gw}, Installed{}, []string{
			"+route 198.19.10.0/24 via 10.244.2.0", "+direct 10.244.2.0/24 via 198.18.0.2 src 10.244.1.0",
			"+neigh 10.244.2.0 02:00:00:00:00:02", "+fdb 02:00:00:00:00:02 198.18.0.2",
		}},
		{"no underlay: a direct peer goes over VXLAN", noUnderlay, []Peer{direct(2)}, installedFor(peer(2)), nil},
		{"subnet outside the range: over VXLAN", narrow, []Peer{direct(2)}, installedFor(peer(2)), nil},
		{"direct peer's public IP changed: route and FDB rewritten", directTarget, []Peer{moved}, installedDirect(2), []string{
			"+direct 10.244.2.0/24 via 198.18.0.22 src 10.244.1.0", "+fdb 02:00:00:00:00:02 198.18.0.22",
		}},
		{"direct source changed", directTarget, []Peer{direct(2)}, noSrc, []string{
			"+direct 10.244.2.0/24 via 198.18.0.2 src 10.244.1.0",
		}},
		{"one subnet wanted over VXLAN and directly: VXLAN wins", directTarget, []Peer{claim, peer(2)}, Installed{}, []string{
			"+route 10.244.2.0/24 via 10.244.2.0",
			"+neigh 10.244.2.0 02:00:00:00:00:02", "+neigh 10.244.3.0 02:00:00:00:00:03",
			"+fdb 02:00:00:00:00:02 198.18.0.2", "+fdb 02:00:00:00:00:03 198.18.0.3",
		}},
		{"invalid direct peer skipped and its entries removed", directTarget, []Peer{invalid}, installedDirect(2), []string{
			"-direct 10.244.2.0/24 via 198.18.0.2 src 10.244.1.0", "-neigh 10.244.2.0 02:00:00:00:00:02", "-fdb 02:00:00:00:00:02 198.18.0.2",
		}},
		{"ours on both devices: the unwanted one is deleted", directTarget, []Peer{direct(2)}, both, []string{
			"-route 10.244.2.0/24 via 10.244.2.0",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := planLines(DiffTarget(tt.target, tt.wanted, tt.installed))
			if !slices.Equal(got, tt.want) {
				t.Errorf("DiffTarget:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestDiffIgnoresPeerOrder(t *testing.T) {
	peers := []Peer{peer(4), direct(2), peer(3)}
	claim := peer(5)
	claim.Subnet = peer(2).Subnet
	claimDirect := direct(6)
	claimDirect.Subnet = peer(3).Subnet
	peers = append(peers, claim, claimDirect)
	want := planLines(DiffTarget(directTarget, peers, installedFor(peer(7))))
	for i := range peers {
		rotated := append(slices.Clone(peers[i:]), peers[:i]...)
		if got := planLines(DiffTarget(directTarget, rotated, installedFor(peer(7)))); !slices.Equal(got, want) {
			t.Errorf("rotation %d: got %q, want %q", i, got, want)
		}
	}
}

func TestDiffDoesNotModifyInputs(t *testing.T) {
	peers := []Peer{peer(3), peer(2)}
	in := installedFor(peer(5), peer(4))
	before := planLines(Plan{AddRoutes: in.Routes, AddNeighs: in.Neighs, AddFDB: in.FDB})
	Diff(peers, in)
	after := planLines(Plan{AddRoutes: in.Routes, AddNeighs: in.Neighs, AddFDB: in.FDB})
	if !slices.Equal(before, after) || peers[0].Subnet != peer(3).Subnet {
		t.Errorf("Diff reordered or changed its inputs: %q -> %q", before, after)
	}
}

func TestPlanEmpty(t *testing.T) {
	if !(Plan{}).Empty() {
		t.Error("zero plan not empty")
	}
	if (Plan{DelFDB: []FDBEntry{{}}}).Empty() {
		t.Error("plan with a delete reported empty")
	}
	if (Plan{AddDirect: []Route{{}}}).Empty() || (Plan{DelDirect: []Route{{}}}).Empty() {
		t.Error("plan with a direct route reported empty")
	}
}

func TestValidatePeer(t *testing.T) {
	mod := func(f func(*Peer)) Peer { p := peer(2); f(&p); return p }
	bad := map[string]Peer{
		"zero":          {},
		"IPv6 subnet":   mod(func(p *Peer) { p.Subnet = netip.MustParsePrefix("fd00::/64") }),
		"no VTEP IP":    mod(func(p *Peer) { p.VTEPIP = netip.Addr{} }),
		"short MAC":     mod(func(p *Peer) { p.VTEPMAC = p.VTEPMAC[:4] }),
		"zero MAC":      mod(func(p *Peer) { p.VTEPMAC = make(net.HardwareAddr, 6) }),
		"multicast MAC": mod(func(p *Peer) { p.VTEPMAC = net.HardwareAddr{1, 0, 0x5e, 0, 0, 1} }),
		"IPv6 public":   mod(func(p *Peer) { p.PublicIP = netip.MustParseAddr("2001:db8::1") }),
		"direct, IPv6 public": mod(func(p *Peer) {
			p.Mode, p.PublicIP = ModeDirect, netip.MustParseAddr("2001:db8::1")
		}),
		"unknown mode": mod(func(p *Peer) { p.Mode = 7 }),
	}
	for name, p := range bad {
		if err := ValidatePeer(p); err == nil {
			t.Errorf("%s: ValidatePeer accepted %+v", name, p)
		}
	}
	for _, good := range []Peer{peer(2), direct(2)} {
		if err := ValidatePeer(good); err != nil {
			t.Errorf("ValidatePeer(%+v) = %v", good, err)
		}
	}
}

func TestDeviceName(t *testing.T) {
	cases := map[uint32]string{1: "overlay.1", 9999999: "overlay.9999999", 10000000: "ovl.10000000", 16777215: "ovl.16777215"}
	for vni, want := range cases {
		if got := DeviceName(vni); got != want {
			t.Errorf("DeviceName(%d) = %q, want %q", vni, got, want)
		}
	}
	// The length depends only on the number of digits: check both ends of
	// every digit count up to the largest VNI.
	seen := map[string]uint32{}
	for lo := uint32(1); lo <= 1<<24-1; lo *= 10 {
		for _, vni := range []uint32{lo, min(lo*10-1, 1<<24-1)} {
			n := DeviceName(vni)
			if len(n) > 15 {
				t.Errorf("DeviceName(%d) = %q is %d bytes, over IFNAMSIZ-1", vni, n, len(n))
			}
			if other, dup := seen[n]; dup && other != vni {
				t.Errorf("DeviceName(%d) = DeviceName(%d) = %q", vni, other, n)
			}
			seen[n] = vni
		}
	}
}

// RouteMetric spreads the metrics of one network's routes (the kernel's
// next-hop hash ignores gateways; see RouteMetric) and is never 0.
func TestRouteMetric(t *testing.T) {
	for dst, want := range map[string]int{
		"10.244.1.0/24":   0xf401 + 1,
		"10.0.0.0/24":     1,
		"10.1.2.0/24":     0x0102 + 1,
		"10.255.255.0/24": 0xffff + 1,
		"10.244.255.7/32": 0xff07 + 1,
		"0.0.0.0/0":       1,
	} {
		if got := RouteMetric(netip.MustParsePrefix(dst)); got != want {
			t.Errorf("RouteMetric(%s) = %d, want %d", dst, got, want)
		}
	}
	seen := map[int]bool{}
	for i := range 4096 {
		seen[RouteMetric(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))] = true
	}
	if len(seen) != 4096 {
		t.Errorf("4096 /24 subnets got %d distinct metrics, want 4096", len(seen))
	}
}
