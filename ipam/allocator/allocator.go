// Package allocator picks container addresses inside one host subnet. It is
// pure address arithmetic on net/netip: it knows nothing about files or locks,
// and asks its caller whether an address is taken, so the store can answer
// from disk one address at a time instead of loading every reservation.
//
// Addresses are handed out round-robin, starting after the last one reserved,
// so a just-released address is the last to be reused: a late packet for a
// deleted container is unlikely to reach its successor.
package allocator

import (
	"errors"
	"fmt"
	"net/netip"
)

// Range is the set of addresses containers may get in a host subnet: every
// address except the subnet's first (the network address, which overlay
// gives the VXLAN device as its VTEP address), the gateway (the bridge) and
// the broadcast address. The zero Range is empty; build one with NewRange.
type Range struct {
	subnet  netip.Prefix
	gateway netip.Addr
	last    netip.Addr // broadcast address
	usable  int
}

// ExhaustedError is returned by Next when every usable address is taken.
type ExhaustedError struct {
	Subnet netip.Prefix
	InUse  int
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("subnet %s is exhausted (%d addresses in use)", e.Subnet, e.InUse)
}

// NewRange checks that subnet is an IPv4 subnet with room for at least one
// container next to gateway.
func NewRange(subnet netip.Prefix, gateway netip.Addr) (Range, error) {
	if !subnet.IsValid() || !subnet.Addr().Is4() {
		return Range{}, fmt.Errorf("subnet %s is not an IPv4 prefix", subnet)
	}
	subnet = subnet.Masked()
	if subnet.Bits() > 30 {
		return Range{}, fmt.Errorf("subnet %s is too small: a /30 is the smallest with a container address", subnet)
	}
	if !subnet.Contains(gateway) {
		return Range{}, fmt.Errorf("gateway %s is outside subnet %s", gateway, subnet)
	}
	size := 1 << (32 - subnet.Bits())
	r := Range{subnet: subnet, gateway: gateway, last: lastAddr(subnet), usable: size - 2}
	if gateway != subnet.Addr() && gateway != r.last {
		r.usable--
	}
	return r, nil
}

// Subnet returns the range's subnet.
func (r Range) Subnet() netip.Prefix { return r.subnet }

// Gateway returns the range's gateway.
func (r Range) Gateway() netip.Addr { return r.gateway }

// Usable returns how many addresses the range can hand out.
func (r Range) Usable() int { return r.usable }

// Contains reports whether a is an address the range may hand out.
func (r Range) Contains(a netip.Addr) bool {
	return r.subnet.Contains(a) && a != r.subnet.Addr() && a != r.gateway && a != r.last
}

// Next returns the first address after last that inUse reports free,
// wrapping around the subnet once. last may be the zero Addr or outside the
// subnet (nothing reserved yet, or the subnet changed); the search then
// starts at the subnet's beginning. An error from inUse stops the search: an
// address whose state is unknown must not be handed out.
func (r Range) Next(last netip.Addr, inUse func(netip.Addr) (bool, error)) (netip.Addr, error) {
	if r.usable <= 0 {
		return netip.Addr{}, errors.New("allocator: empty range")
	}
	a := r.subnet.Addr()
	if r.subnet.Contains(last) {
		a = last
	}
	for range 1 << (32 - r.subnet.Bits()) {
		a = r.after(a)
		if !r.Contains(a) {
			continue
		}
		used, err := inUse(a)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("check whether %s is in use: %w", a, err)
		}
		if !used {
			return a, nil
		}
	}
	return netip.Addr{}, &ExhaustedError{Subnet: r.subnet, InUse: r.usable}
}

// after returns the address following a in the subnet, wrapping from the
// broadcast address back to the network address.
func (r Range) after(a netip.Addr) netip.Addr {
	if a == r.last {
		return r.subnet.Addr()
	}
	return a.Next()
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
