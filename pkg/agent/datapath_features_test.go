package agent

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// hostLocal is a container host on 198.18.0.0/24 with a 9000-byte underlay.
func hostLocal() local {
	cfg := edgeNet
	cfg.IPMasq = true
	return local{
		Network: "default", Config: cfg, Kind: subnet.KindHost, HostID: "me", Bridge: "overlay0", CanMasq: true,
		Underlay: datapath.Underlay{Name: "eth0", Index: 2, IP: netip.MustParseAddr("198.18.0.11"), MTU: 9000,
			Segments: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24")}},
		PublicIP: netip.MustParseAddr("198.18.0.11"), VTEPMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		Subnet: netip.MustParsePrefix("10.244.1.0/24"), Held: true,
	}
}

func withMTU(l subnet.Lease, mtu int) subnet.Lease {
	l.UnderlayMTU = mtu
	return l
}

// Finding: the overlay MTU came from the local underlay only, so a jumbo
// host gave its containers 8950 bytes that a 1500-byte member drops. It is
// now the smallest member's underlay MTU minus 50, with the member named;
// a rejected record does not count; the override wins.
func TestClusterMTU(t *testing.T) {
	l := hostLocal()
	small := withMTU(hostLease("10.244.3.0/24", "198.18.0.12", 1, 10), 1500)
	w, _ := buildWanted(l, []subnet.Lease{small})
	if w.VXLAN.MTU != 1450 || w.Bridge.MTU != 1450 || w.HostFile.MTU != 1450 {
		t.Fatalf("MTU vxlan %d bridge %d host file %d, want 1450 (1500-byte member)", w.VXLAN.MTU, w.Bridge.MTU, w.HostFile.MTU)
	}
	if !strings.Contains(w.MTUSetBy, "198.18.0.12") {
		t.Errorf("MTUSetBy = %q, want the member that sets it", w.MTUSetBy)
	}
	alone, _ := buildWanted(l, nil)
	if alone.HostFile.MTU != 8950 {
		t.Errorf("alone MTU = %d, want 8950", alone.HostFile.MTU)
	}
	// A record with a public IP inside the overlay is rejected: its MTU
	// must not lower everyone's.
	bad := withMTU(hostLease("10.244.4.0/24", "10.244.9.9", 2, 11), 1300)
	if w, _ := buildWanted(l, []subnet.Lease{small, bad}); w.HostFile.MTU != 1450 {
		t.Errorf("MTU with a rejected 1300-byte record = %d, want 1450", w.HostFile.MTU)
	}
	joined := withMTU(hostLease("10.244.5.0/24", "198.18.0.15", 3, 12), 1400)
	if w, _ := buildWanted(l, []subnet.Lease{small, joined}); w.HostFile.MTU != 1350 {
		t.Errorf("MTU after a 1400-byte host joined = %d, want 1350", w.HostFile.MTU)
	}
	l.Config.MTU = 1200
	if w, _ := buildWanted(l, []subnet.Lease{small}); w.HostFile.MTU != 1200 || w.MTUSetBy != "" {
		t.Errorf("override: MTU %d set by %q, want 1200 by the config", w.HostFile.MTU, w.MTUSetBy)
	}
}

// Direct routing picks direct mode only for members on this host's own
// segment, only when the network asks for it, and never for a gateway.
func TestPeerModes(t *testing.T) {
	l := hostLocal()
	same := hostLease("10.244.3.0/24", "198.18.0.12", 1, 10)
	routed := hostLease("10.244.4.0/24", "198.18.1.12", 2, 11)
	gw := edgeLease("10.244.255.4", "198.18.0.13", 3, 12, "198.19.10.0/24")
	modes := func(l local) map[string]datapath.PeerMode {
		w, _ := buildWanted(l, []subnet.Lease{same, routed, gw})
		out := map[string]datapath.PeerMode{}
		for _, p := range w.Peers {
			out[p.Subnet.String()] = p.Mode
		}
		return out
	}
	for s, m := range modes(l) {
		if m != datapath.ModeVXLAN {
			t.Errorf("directRouting off: %s is %v, want vxlan", s, m)
		}
	}
	l.Config.DirectRouting = true
	got := modes(l)
	want := map[string]datapath.PeerMode{"10.244.3.0/24": datapath.ModeDirect, "10.244.4.0/24": datapath.ModeVXLAN, "10.244.255.4/32": datapath.ModeVXLAN}
	for s, m := range want {
		if got[s] != m {
			t.Errorf("directRouting on: %s is %v, want %v", s, got[s], m)
		}
	}
	// A gateway's own view: it reaches everyone over VXLAN too, so the
	// paths to and from it are the same.
	g := l
	g.Advertise = []netip.Prefix{netip.MustParsePrefix("198.19.20.0/24")}
	for s, m := range modes(g) {
		if m != datapath.ModeVXLAN {
			t.Errorf("on a gateway, %s is %v, want vxlan", s, m)
		}
	}
	w, _ := buildWanted(l, nil)
	if tg := w.target(); tg.Underlay != "eth0" || tg.DirectSrc != netip.MustParseAddr("10.244.1.0") || tg.Range != l.Config.Network {
		t.Errorf("target = %+v", tg)
	}
}

// A container host masquerades its subnet except towards the network and
// the LANs gateways advertise, and its host file says so; an edge host and
// a network with ipMasq off masquerade nothing.
func TestMasqWanted(t *testing.T) {
	l := hostLocal()
	gw := edgeLease("10.244.255.4", "198.18.0.13", 3, 12, "198.19.10.0/24")
	w, _ := buildWanted(l, []subnet.Lease{gw})
	want := Masq{Subnet: l.Subnet, Keep: []netip.Prefix{l.Config.Network, netip.MustParsePrefix("198.19.10.0/24")}}
	if w.Masq.Subnet != want.Subnet || !slices.Equal(w.Masq.Keep, want.Keep) || !w.HostFile.IPMasq {
		t.Errorf("masq = %+v ipMasq %v, want %+v and true", w.Masq, w.HostFile.IPMasq, want)
	}
	l.CanMasq = false // no iptables: the host file must not claim it
	if w, _ := buildWanted(l, nil); w.Masq.Subnet.IsValid() || w.HostFile.IPMasq {
		t.Errorf("no masquerade keeper: masq %+v, host file ipMasq %v", w.Masq, w.HostFile.IPMasq)
	}
	l.CanMasq, l.Config.IPMasq = true, false
	if w, _ := buildWanted(l, nil); w.Masq.Subnet.IsValid() || w.HostFile.IPMasq {
		t.Errorf("ipMasq off: masq %+v, host file ipMasq %v", w.Masq, w.HostFile.IPMasq)
	}
	e := edgeLocal()
	e.Config.IPMasq = true
	if w, _ := buildWanted(e, nil); w.Masq.Subnet.IsValid() || w.HostFile.IPMasq {
		t.Errorf("edge host: masq %+v, host file ipMasq %v", w.Masq, w.HostFile.IPMasq)
	}
}

// The ingress filter admits every accepted member (container hosts, edge
// hosts, gateways) once, and no rejected record.
func TestIngressMembers(t *testing.T) {
	l := hostLocal()
	leases := []subnet.Lease{
		hostLease("10.244.3.0/24", "198.18.0.12", 1, 10),
		edgeLease("10.244.255.4", "198.18.0.13", 3, 12, "198.19.10.0/24"),
		edgeLease("10.244.255.5", "198.18.0.14", 4, 13),
		hostLease("10.244.6.0/24", "10.244.9.9", 6, 15), // inside the overlay: rejected
	}
	w, _ := buildWanted(l, leases)
	want := []netip.Addr{netip.MustParseAddr("198.18.0.12"), netip.MustParseAddr("198.18.0.13"), netip.MustParseAddr("198.18.0.14")}
	if w.Ingress.Port != l.Config.Port || !slices.Equal(w.Ingress.Members, want) {
		t.Errorf("ingress = %+v, want port %d members %v", w.Ingress, l.Config.Port, want)
	}
}

// Finding (review): another network's traffic reached this network's
// gateway LANs. What a network routes — its range and its gateways'
// LANs — is what the other networks of the process drop.
func TestRoutedBy(t *testing.T) {
	l := hostLocal()
	gw := edgeLease("10.244.255.4", "198.18.0.13", 3, 12, "198.19.10.0/24")
	w, _ := buildWanted(l, []subnet.Lease{gw})
	want := []netip.Prefix{l.Config.Network, netip.MustParsePrefix("198.19.10.0/24")}
	if got := routedBy(w); !slices.Equal(got, want) {
		t.Errorf("routedBy = %v, want %v", got, want)
	}
}
