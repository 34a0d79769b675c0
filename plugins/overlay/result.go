package main

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

// This file is the plugin's one boundary between net/netip and the
// net.IP/net.IPNet values of the CNI result types.

// attachment is what ADD did, as the result reports it.
type attachment struct {
	link   datapath.ContainerLink
	ifName string
	netns  string
	addr   netip.Prefix
	mtu    int
	host   hostfile.HostFile
	dns    types.DNS
}

// result lists the host veth and the container interface (index 1, in its
// sandbox), the container's address on it, and the default route via the
// bridge, which is what the kernel now holds.
func (a attachment) result() *current.Result {
	gw := net.IP(a.host.Gateway.AsSlice())
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: a.link.HostVeth, Mac: a.link.HostMAC.String()},
			{Name: a.ifName, Mac: a.link.ContainerMAC.String(), Mtu: a.mtu, Sandbox: a.netns},
		},
		IPs: []*current.IPConfig{{
			Interface: current.Int(1),
			Address:   net.IPNet{IP: net.IP(a.addr.Addr().AsSlice()), Mask: net.CIDRMask(a.addr.Bits(), 32)},
			Gateway:   gw,
		}},
		Routes: []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, GW: gw}},
		DNS:    a.dns,
	}
}

// ipamAddr returns the first IPv4 address of an IPAM result, with its prefix
// length, checked to lie in the host's subnet: the container reaches the
// gateway on the bridge only from inside that subnet.
func ipamAddr(r *current.Result, subnet netip.Prefix) (netip.Prefix, error) {
	for _, ipc := range r.IPs {
		p, ok := toPrefix(ipc.Address)
		if !ok || !p.Addr().Is4() {
			continue
		}
		if !subnet.Contains(p.Addr()) || p.Bits() != subnet.Bits() {
			return netip.Prefix{}, fmt.Errorf("ipam returned %s, which is not an address of this host's subnet %s", p, subnet)
		}
		return p, nil
	}
	return netip.Prefix{}, fmt.Errorf("ipam returned no IPv4 address (got %v)", r.IPs)
}

// containerAddr finds the container interface ifName in a cached result and
// returns its first IPv4 address with prefix length.
func containerAddr(r *current.Result, ifName string) (netip.Prefix, error) {
	for _, ipc := range r.IPs {
		if ipc.Interface == nil || *ipc.Interface < 0 || *ipc.Interface >= len(r.Interfaces) {
			continue
		}
		iface := r.Interfaces[*ipc.Interface]
		if iface.Name != ifName || iface.Sandbox == "" {
			continue
		}
		if p, ok := toPrefix(ipc.Address); ok && p.Addr().Is4() {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("prevResult has no IPv4 address on container interface %q", ifName)
}

func toPrefix(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 0 || (a.Is4() && bits != 32) {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}
