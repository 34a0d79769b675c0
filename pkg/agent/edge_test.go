package agent

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/etcdtest"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/subnet"
)

var edgeNet = func() netconf.Config {
	c := testNet
	c.EdgeCIDR = netip.MustParsePrefix("10.244.255.0/24")
	return c
}()

func edgeLease(addr, publicIP string, mac byte, created int64, advertise ...string) subnet.Lease {
	l := subnet.Lease{Subnet: netip.MustParsePrefix(addr + "/32"), CreateRevision: created, Record: subnet.Record{
		Version: 1, Kind: subnet.KindEdge, HostID: "edge-" + addr, PublicIP: netip.MustParseAddr(publicIP),
		VTEPMAC: net.HardwareAddr{2, 0, 0, 0, 1, mac}.String(),
	}}
	for _, a := range advertise {
		l.Advertise = append(l.Advertise, netip.MustParsePrefix(a))
	}
	return l
}

func hostLease(s, publicIP string, mac byte, created int64) subnet.Lease {
	return subnet.Lease{Subnet: netip.MustParsePrefix(s), CreateRevision: created, Record: subnet.Record{
		Version: 1, Kind: subnet.KindHost, HostID: "host-" + s, PublicIP: netip.MustParseAddr(publicIP),
		VTEPMAC: net.HardwareAddr{2, 0, 0, 0, 2, mac}.String(),
	}}
}

func edgeLocal(advertise ...netip.Prefix) local {
	return local{
		Network: "default", Config: edgeNet, Kind: subnet.KindEdge, Advertise: advertise, HostID: "me",
		Underlay: datapath.Underlay{Name: "eth0", Index: 2, IP: netip.MustParseAddr("198.18.0.11"), MTU: 1500},
		PublicIP: netip.MustParseAddr("198.18.0.11"), VTEPMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		Subnet: netip.MustParsePrefix("10.244.255.9/32"), Held: true,
	}
}

// An edge host wants its address on the VXLAN device and as the source of
// its routes, no bridge, no forwarding, and every other member (edge hosts
// too) as a peer; a gateway's LANs are routed through it.
func TestEdgeWanted(t *testing.T) {
	leases := []subnet.Lease{
		hostLease("10.244.3.0/24", "198.18.0.12", 1, 10),
		edgeLease("10.244.255.4", "198.18.0.13", 2, 11, "198.19.10.0/24"),
		edgeLease("10.244.255.5", "198.18.0.14", 3, 12),
	}
	w, rejected := buildWanted(edgeLocal(), leases)
	addr := netip.MustParseAddr("10.244.255.9")
	switch {
	case w.Bridge.Name != "" || w.Forward || w.Src != addr:
		t.Fatalf("edge host: bridge %q forward %v src %s", w.Bridge.Name, w.Forward, w.Src)
	case w.VXLAN.Address != netip.PrefixFrom(addr, 32):
		t.Fatalf("VXLAN address %s", w.VXLAN.Address)
	case w.HostFile.Kind != hostfile.KindEdge || w.HostFile.Address != addr || w.HostFile.Validate() != nil:
		t.Fatalf("host file %+v: %v", w.HostFile, w.HostFile.Validate())
	case len(rejected) != 0 || len(w.Peers) != 3:
		t.Fatalf("peers %v rejected %v", w.Peers, rejected)
	}
	gw := w.Peers[1]
	if gw.Subnet != netip.MustParsePrefix("10.244.255.4/32") || gw.VTEPIP != netip.MustParseAddr("10.244.255.4") ||
		!slices.Equal(gw.Routes, []netip.Prefix{netip.MustParsePrefix("198.19.10.0/24")}) {
		t.Fatalf("gateway peer %+v", gw)
	}
	if w, _ := buildWanted(edgeLocal(netip.MustParsePrefix("192.168.5.0/24")), leases); !w.Forward {
		t.Fatal("a gateway must forward")
	}
}

// Finding: members drop an advertised LAN that overlaps the overlay, a LAN
// an earlier gateway advertises, or a member's underlay (two gateways that
// started at once both passed the start check); the edge host stays a peer.
func TestAdvertisedLANsRejected(t *testing.T) {
	l := edgeLocal()
	l.Kind, l.Subnet, l.Advertise = subnet.KindHost, netip.MustParsePrefix("10.244.7.0/24"), nil
	// This host has a LAN of its own, and a static route to another.
	l.Routes = []netip.Prefix{netip.MustParsePrefix("172.16.0.0/16"), netip.MustParsePrefix("192.168.50.0/24")}
	first := edgeLease("10.244.255.4", "198.18.0.13", 2, 11, "198.19.10.0/24")
	later := edgeLease("10.244.255.5", "198.18.0.14", 3, 12, "198.19.0.0/16", "10.244.0.0/20", "198.18.0.0/24",
		"172.16.5.0/24", "192.168.50.0/24", "192.168.1.0/24")
	// A newcomer (created after the gateway) whose underlay lies inside the
	// gateway's LAN is not programmed; the gateway keeps its LAN.
	newcomer := hostLease("10.244.9.0/24", "198.19.10.7", 4, 13)
	// An older member inside a later gateway's LAN keeps its place.
	oldMember := hostLease("10.244.8.0/24", "192.168.70.5", 5, 5)
	lateGW := edgeLease("10.244.255.6", "198.18.0.15", 6, 14, "192.168.70.0/24")
	w, rejected := buildWanted(l, []subnet.Lease{later, newcomer, lateGW, first, oldMember})
	if len(w.Peers) != 4 {
		t.Fatalf("peers %v", w.Peers)
	}
	byAddr := map[netip.Addr][]netip.Prefix{}
	for _, p := range w.Peers {
		byAddr[p.VTEPIP] = p.Routes
	}
	if !slices.Equal(byAddr[first.Subnet.Addr()], first.Advertise) ||
		!slices.Equal(byAddr[later.Subnet.Addr()], []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}) ||
		len(byAddr[lateGW.Subnet.Addr()]) != 0 {
		t.Fatalf("routes: %v", byAddr)
	}
	if _, ok := byAddr[newcomer.Subnet.Addr()]; ok {
		t.Fatal("newcomer inside a gateway's LAN was programmed")
	}
	var kinds []string
	for _, r := range rejected {
		kinds = append(kinds, r.Kind)
	}
	want := []string{RejectAdvertiseOverlap, RejectAdvertiseOverlap, RejectAdvertiseUnderlay,
		RejectAdvertiseLocalRoute, RejectAdvertiseLocalRoute, RejectPublicIPInLAN, RejectAdvertiseUnderlay}
	if !slices.Equal(kinds, want) {
		t.Fatalf("rejections %v, want %v (%+v)", kinds, want, rejected)
	}
	if w.Src.IsValid() || !w.Forward {
		t.Fatalf("container host: src %s forward %v", w.Src, w.Forward)
	}
}

// An edge agent leases from the edge range, programs its peers with its
// address as source, makes no bridge and leaves ip_forward alone.
func TestEdgeAgent(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, edgeNet)
	p := h.peer(1, "198.18.0.12", "02:00:00:00:00:02")
	h.cfg.Kind = subnet.KindEdge
	a := h.start()
	hf, err := h.hostFile()
	if err != nil || hf.Kind != hostfile.KindEdge || !edgeNet.ContainsEdge(netip.PrefixFrom(hf.Address, 32)) {
		t.Fatalf("host file %+v: %v", hf, err)
	}
	devs, _, br := h.dp.state()
	if devs["overlay.1"].Address.Addr() != hf.Address || br.Name != "" {
		t.Fatalf("vxlan %+v bridge %+v", devs["overlay.1"], br)
	}
	h.dp.mu.Lock()
	src, forward := h.dp.src["overlay.1"], h.dp.forward
	h.dp.mu.Unlock()
	if src != hf.Address || forward {
		t.Fatalf("routes' source %s (want %s), ip_forward turned on %v", src, hf.Address, forward)
	}
	if got := h.peersOn("overlay.1"); !slices.Equal(got, []netip.Prefix{p.Subnet}) || !a.Ready() {
		t.Fatalf("peers %v ready %v", got, a.Ready())
	}
}

// Finding: an edge host in a network without an edge range is refused
// before anything is leased or built.
func TestEdgeAgentNeedsEdgeRange(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, testNet)
	h.cfg.Kind = subnet.KindEdge
	a, err := New(h.cfg, Deps{Etcd: h.etcd, Datapath: h.dp})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Start(t.Context())
	if err == nil || !strings.Contains(err.Error(), "has no edge range") || !strings.Contains(err.Error(), "--edge-cidr") {
		t.Fatalf("start: %v", err)
	}
	if devs, _, _ := h.dp.state(); len(devs) != 0 {
		t.Fatalf("devices built: %v", devs)
	}
	leases, _, _ := h.etcd.Leases(t.Context(), "default")
	if len(leases) != 0 {
		t.Fatalf("leased: %v", leases)
	}
}

// Finding: a gateway must have a route of its own to each LAN it
// advertises, and an edge host must not start over a container host's
// bridge; both are refused before anything is leased.
func TestEdgeAgentStartChecks(t *testing.T) {
	srv := etcdtest.New(t)
	h := newHarness(t, srv)
	setConfig(t, h.etcd, edgeNet)
	h.cfg.Kind, h.cfg.Advertise = subnet.KindEdge, []netip.Prefix{netip.MustParsePrefix("198.19.10.0/24")}
	start := func() error {
		a, err := New(h.cfg, Deps{Etcd: h.etcd, Datapath: h.dp})
		if err != nil {
			t.Fatal(err)
		}
		return a.Start(t.Context())
	}
	if err := start(); err == nil || !strings.Contains(err.Error(), "--advertise 198.19.10.0/24: this machine has no route to it") {
		t.Fatalf("gateway without a route to its LAN: %v", err)
	}
	h.dp.mu.Lock()
	h.dp.routes = []netip.Prefix{netip.MustParsePrefix("198.19.10.0/24")}
	h.dp.bridge = datapath.BridgeSpec{Name: "overlay0"}
	h.dp.mu.Unlock()
	if err := start(); err == nil || !strings.Contains(err.Error(), "bridge overlay0 of network default is still here") {
		t.Fatalf("edge host over a container host's bridge: %v", err)
	}
	if leases, _, _ := h.etcd.Leases(t.Context(), "default"); len(leases) != 0 {
		t.Fatalf("leased: %v", leases)
	}
	h.dp.mu.Lock()
	h.dp.bridge = datapath.BridgeSpec{}
	h.dp.mu.Unlock()
	a := h.start()
	if !a.Ready() {
		t.Fatal("gateway with its LAN routed did not start ready")
	}
}
