package ipamplugin

import (
	"net"
	"net/netip"
	"slices"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// newResult is the IPAM result for ip: the address with the host subnet's
// prefix length, the bridge as gateway and a default route through it, so a
// main plugin other than overlay's (bridge, macvlan) can use it as is.
//
// This is the one place the plugin turns net/netip values into the
// net.IP/net.IPNet the CNI types use.
func newResult(ip netip.Addr, hf hostfile.HostFile) *current.Result {
	gw := net.IP(hf.Gateway.AsSlice())
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		IPs: []*current.IPConfig{{
			Address: net.IPNet{IP: net.IP(ip.AsSlice()), Mask: net.CIDRMask(hf.Subnet.Bits(), 32)},
			Gateway: gw,
		}},
		Routes: []*types.Route{{
			Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			GW:  gw,
		}},
	}
}

// listsAddr reports whether r holds ip among its addresses.
func listsAddr(r *current.Result, ip netip.Addr) bool {
	return slices.ContainsFunc(r.IPs, func(ipc *current.IPConfig) bool {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		return ok && a.Unmap() == ip
	})
}
