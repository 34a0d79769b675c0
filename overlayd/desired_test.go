package main

import (
	"net"
	"net/netip"
	"testing"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/subnet"
)

func TestBuildDesired(t *testing.T) {
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	l := local{
		Network:  "default",
		Config:   netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, VNI: 7, Port: 8472},
		HostID:   "me",
		Underlay: datapath.Underlay{Name: "eth0", Index: 2, IP: netip.MustParseAddr("198.18.0.11"), MTU: 1500},
		VTEPMAC:  mac, Bridge: "overlay0",
		Subnet: netip.MustParsePrefix("10.244.3.0/24"),
	}
	lease := func(s, host, ip, mac string) subnet.Lease {
		return subnet.Lease{Subnet: netip.MustParsePrefix(s), Record: subnet.Record{
			Version: 1, Kind: subnet.KindHost, HostID: host, PublicIP: netip.MustParseAddr(ip), VTEPMAC: mac}}
	}
	d := buildDesired(l, []subnet.Lease{
		lease("10.244.3.0/24", "me", "198.18.0.11", "02:00:00:00:00:01"),    // ourselves
		lease("10.244.9.0/24", "me", "198.18.0.11", "02:00:00:00:00:01"),    // our stale record
		lease("10.244.5.0/24", "peer", "198.18.0.12", "02:00:00:00:00:02"),  // a peer
		lease("10.245.5.0/24", "alien", "198.18.0.13", "02:00:00:00:00:03"), // outside the network
		lease("10.244.6.0/25", "odd", "198.18.0.14", "02:00:00:00:00:04"),   // wrong size
	})
	if d.VXLAN.Name != "overlay.7" || d.VXLAN.MTU != 1450 || d.VXLAN.Address != netip.MustParsePrefix("10.244.3.0/32") {
		t.Errorf("VXLAN spec = %+v", d.VXLAN)
	}
	if d.Bridge.Gateway != netip.MustParsePrefix("10.244.3.1/24") {
		t.Errorf("bridge gateway = %v", d.Bridge.Gateway)
	}
	if d.HostFile.Gateway != netip.MustParseAddr("10.244.3.1") || d.HostFile.MTU != 1450 || d.HostFile.Subnet != l.Subnet {
		t.Errorf("host file = %+v", d.HostFile)
	}
	if err := d.HostFile.Validate(); err != nil {
		t.Errorf("host file invalid: %v", err)
	}
	if len(d.Peers) != 1 {
		t.Fatalf("peers = %+v, want only 10.244.5.0/24", d.Peers)
	}
	p := d.Peers[0]
	if p.Subnet != netip.MustParsePrefix("10.244.5.0/24") || p.VTEPIP != netip.MustParseAddr("10.244.5.0") ||
		p.PublicIP != netip.MustParseAddr("198.18.0.12") || p.VTEPMAC.String() != "02:00:00:00:00:02" {
		t.Errorf("peer = %+v", p)
	}
}
