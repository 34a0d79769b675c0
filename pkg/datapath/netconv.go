package datapath

import (
	"net"
	"net/netip"
)

// The netlink library speaks net.IP and *net.IPNet; the rest of the package
// speaks net/netip. These helpers are the only place the two meet.

func toIP(a netip.Addr) net.IP {
	return net.IP(a.AsSlice())
}

func toIPNet(p netip.Prefix) *net.IPNet {
	a := p.Addr()
	return &net.IPNet{IP: toIP(a), Mask: net.CIDRMask(p.Bits(), a.BitLen())}
}

// fromIP converts, turning IPv4-in-IPv6 forms (as net.IPv4zero is) into
// plain IPv4. The zero Addr means nil or malformed.
func fromIP(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	return a.Unmap()
}

// fromIPNet converts without masking, so an interface address keeps its host
// part; nil (the kernel's way of saying "default") becomes the IPv4 default
// prefix because this package only reads IPv4 tables.
func fromIPNet(n *net.IPNet) netip.Prefix {
	if n == nil {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	a := fromIP(n.IP)
	ones, bits := n.Mask.Size()
	if !a.IsValid() || bits == 0 {
		return netip.Prefix{}
	}
	if a.Is4() && bits == 128 {
		ones -= 96
	}
	return netip.PrefixFrom(a, ones)
}
