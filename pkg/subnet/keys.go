package subnet

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultPrefix is the etcd key prefix everything of overlay lives under.
const DefaultPrefix = "/overlay"

// Keys builds and parses the etcd key layout (DESIGN.md Contract 1):
//
//	PREFIX/networks/NAME/config
//	PREFIX/networks/NAME/subnets/A.B.C.D-LEN
//	PREFIX/networks/NAME/reservations/A.B.C.D-LEN
//
// The subnet segment uses '-' rather than '/' so a subnet is one key segment.
type Keys struct {
	Prefix string
}

func (k Keys) network(name string) string {
	return strings.TrimRight(k.Prefix, "/") + "/networks/" + name
}

// Networks is the key prefix every network lives under.
func (k Keys) Networks() string { return strings.TrimRight(k.Prefix, "/") + "/networks/" }

// ParseConfigKey returns the network whose config key is key.
func (k Keys) ParseConfigKey(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, k.Networks())
	if !ok {
		return "", false
	}
	name, ok := strings.CutSuffix(rest, "/config")
	return name, ok && name != "" && !strings.Contains(name, "/")
}

// Config is the key of a network's config.
func (k Keys) Config(network string) string { return k.network(network) + "/config" }

// Subnets is the key prefix under which a network's leases live (with a
// trailing slash, so "default" never matches "default2").
func (k Keys) Subnets(network string) string { return k.network(network) + "/subnets/" }

// Reservations is the key prefix of a network's quarantine reservations:
// one key per subnet a host holds, bound to an etcd lease that outlives the
// host's subnet lease by the quarantine time, so a host that was away
// briefly finds its subnet still unleased to anyone else.
func (k Keys) Reservations(network string) string { return k.network(network) + "/reservations/" }

// Reservation is the key of one subnet's reservation.
func (k Keys) Reservation(network string, s netip.Prefix) string {
	return k.Reservations(network) + FormatSubnet(s)
}

// Subnet is the key of one lease.
func (k Keys) Subnet(network string, s netip.Prefix) string {
	return k.Subnets(network) + FormatSubnet(s)
}

// ParseSubnetKey extracts the subnet from a lease key of the given network.
func (k Keys) ParseSubnetKey(network, key string) (netip.Prefix, error) {
	seg, ok := strings.CutPrefix(key, k.Subnets(network))
	if !ok {
		return netip.Prefix{}, fmt.Errorf("key %q is not under %s", key, k.Subnets(network))
	}
	return ParseSubnet(seg)
}

// FormatSubnet renders a subnet as a key segment: 10.244.3.0/24 -> 10.244.3.0-24.
func FormatSubnet(s netip.Prefix) string {
	return s.Addr().String() + "-" + strconv.Itoa(s.Bits())
}

// ParseSubnet reads a key segment written by FormatSubnet. It accepts only the
// canonical form (IPv4, host bits clear), so one subnet has exactly one key.
func ParseSubnet(seg string) (netip.Prefix, error) {
	addr, bits, ok := strings.Cut(seg, "-")
	if !ok {
		return netip.Prefix{}, fmt.Errorf("subnet key segment %q: want A.B.C.D-LEN", seg)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, fmt.Errorf("subnet key segment %q: %q is not an IPv4 address", seg, addr)
	}
	n, err := strconv.Atoi(bits)
	if err != nil || n < 0 || n > 32 || strconv.Itoa(n) != bits {
		return netip.Prefix{}, fmt.Errorf("subnet key segment %q: %q is not a prefix length 0-32", seg, bits)
	}
	p := netip.PrefixFrom(a, n)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("subnet key segment %q: host bits set", seg)
	}
	return p, nil
}
