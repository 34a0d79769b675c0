package main

import (
	"net"
	"net/netip"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// local is what this host is: fixed at start except Subnet, which changes
// only if the host loses its lease and has to take another one.
type local struct {
	Network  string
	Config   netconf.Config
	HostID   string
	Underlay datapath.Underlay
	VTEPMAC  net.HardwareAddr
	Bridge   string
	Subnet   netip.Prefix
}

// desired is the whole kernel and file state overlayd wants on this host. It
// is rebuilt from scratch on every change and applied as a unit.
type desired struct {
	VXLAN    datapath.VXLANSpec
	Bridge   datapath.BridgeSpec
	Peers    []datapath.Peer
	HostFile hostfile.HostFile
}

// buildDesired derives the desired state from this host and the current
// leases. Leases that are this host's own, outside the network, or of a
// different subnet size are not peers.
func buildDesired(l local, leases []subnet.Lease) desired {
	mtu := l.Underlay.MTU - datapath.VXLANOverhead
	vtepIP := l.Subnet.Addr()
	gateway := vtepIP.Next()
	d := desired{
		VXLAN: datapath.VXLANSpec{
			Name: datapath.DeviceName(l.Config.VNI), VNI: l.Config.VNI, Port: l.Config.Port,
			LocalIP: l.Underlay.IP, UnderlayIndex: l.Underlay.Index,
			MAC: l.VTEPMAC, MTU: mtu, Address: netip.PrefixFrom(vtepIP, 32),
		},
		Bridge: datapath.BridgeSpec{Name: l.Bridge, Gateway: netip.PrefixFrom(gateway, l.Subnet.Bits()), MTU: mtu},
		HostFile: hostfile.HostFile{
			Network: l.Config.Network, Subnet: l.Subnet, Gateway: gateway,
			MTU: mtu, Bridge: l.Bridge, VNI: l.Config.VNI,
		},
	}
	for _, ls := range leases {
		if ls.HostID == l.HostID || ls.Subnet == l.Subnet || !l.Config.Contains(ls.Subnet) {
			continue
		}
		mac, err := ls.MAC()
		if err != nil {
			continue // Record.Validate already rejected these; be safe anyway
		}
		d.Peers = append(d.Peers, datapath.Peer{
			Subnet: ls.Subnet, VTEPIP: ls.Subnet.Addr(), VTEPMAC: mac, PublicIP: ls.PublicIP,
		})
	}
	return d
}
