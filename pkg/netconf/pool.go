package netconf

import "net/netip"

// Pool is the set of equal-sized, aligned slots one kind of lease takes
// from a network: the container subnets of hosts (HostPool) or the single
// addresses of edge hosts (EdgePool). Slots are numbered from 0 in address
// order; a contiguous block of them can be left out (the edge range, taken
// out of the container subnets).
type Pool struct {
	// Range is the prefix the slots are carved from.
	Range netip.Prefix
	// Len is the prefix length of each slot.
	Len int
	// lo and hi bound the slot numbers within Range ([lo, hi)); skipLo and
	// skipHi bound the left-out block (empty when equal).
	lo, hi         int
	skipLo, skipHi int
}

// HostPool is the container subnets of the network: every subnetLen block
// of it except those inside the edge range.
func (c Config) HostPool() Pool {
	p := Pool{Range: c.Network, Len: c.SubnetLen, hi: slotCount(c.Network.Bits(), c.SubnetLen)}
	if c.EdgeCIDR.IsValid() {
		p.skipLo = p.index(c.EdgeCIDR.Addr())
		p.skipHi = p.skipLo + slotCount(c.EdgeCIDR.Bits(), c.SubnetLen)
	}
	return p
}

// EdgePool is the edge hosts' addresses: each address of the edge range as
// a /32, except its first and last (they read as network and broadcast
// addresses, which confuses people and some tools). Empty without an edge
// range.
func (c Config) EdgePool() Pool {
	if !c.EdgeCIDR.IsValid() {
		return Pool{}
	}
	n := slotCount(c.EdgeCIDR.Bits(), 32)
	return Pool{Range: c.EdgeCIDR, Len: 32, lo: 1, hi: n - 1}
}

// slotCount is how many /slotLen fit in a /bits, capped so it fits a
// 32-bit int (no overlay gets near 2^30 slots).
func slotCount(bits, slotLen int) int {
	if shift := slotLen - bits; shift < 30 {
		return 1 << shift
	}
	return 1 << 30
}

// Count is the number of slots.
func (p Pool) Count() int {
	if p.hi <= p.lo {
		return 0
	}
	return p.hi - p.lo - (p.skipHi - p.skipLo)
}

// At returns slot i (0 ≤ i < Count).
func (p Pool) At(i int) netip.Prefix {
	j := p.lo + i
	if p.skipHi > p.skipLo && j >= p.skipLo {
		j += p.skipHi - p.skipLo
	}
	return netip.PrefixFrom(fromUint32(toUint32(p.Range.Addr())+uint32(j)<<(32-p.Len)), p.Len)
}

// Contains reports whether s is one of the pool's slots.
func (p Pool) Contains(s netip.Prefix) bool {
	if p.Count() == 0 || s.Bits() != p.Len || s.Masked() != s || !p.Range.Contains(s.Addr()) {
		return false
	}
	j := p.index(s.Addr())
	return j >= p.lo && j < p.hi && (j < p.skipLo || j >= p.skipHi)
}

// index is the slot number of the slot holding a (a inside Range).
func (p Pool) index(a netip.Addr) int {
	return int((toUint32(a) - toUint32(p.Range.Addr())) >> (32 - p.Len))
}

// toUint32 and fromUint32 convert IPv4 addresses for slot arithmetic.
func toUint32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func fromUint32(n uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}
