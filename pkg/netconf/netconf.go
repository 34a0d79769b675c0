// Package netconf holds the cluster-wide configuration of one overlay network
// (the JSON an operator stores at PREFIX/networks/NAME/config) and its
// validation. It knows nothing about etcd or the kernel: it turns bytes into a
// checked Config or an error that names the offending field.
package netconf

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
)

// Defaults applied to fields the operator leaves out. 8472 is the Linux
// kernel's historical VXLAN port, the one flannel uses, so mixed tooling
// (tcpdump filters, firewall rules) keeps working.
const (
	DefaultSubnetLen = 24
	DefaultVNI       = 1
	DefaultPort      = 8472

	// MaxVNI is the largest 24-bit VXLAN network identifier.
	MaxVNI = 1<<24 - 1
	// MaxSubnetLen leaves each host at least a gateway and one container
	// address besides the network and broadcast addresses.
	MaxSubnetLen = 30
)

// Config is the validated configuration of one overlay network. The zero value
// is not valid; build one with Parse or fill it and call Validate.
type Config struct {
	// Network is the IPv4 range every host subnet is carved from.
	Network netip.Prefix `json:"network"`
	// SubnetLen is the prefix length of each host's subnet.
	SubnetLen int `json:"subnetLen"`
	// VNI is the VXLAN network identifier (1–16777215).
	VNI uint32 `json:"vni"`
	// Port is the UDP port VXLAN packets use on the underlay.
	Port uint16 `json:"port"`
	// MTU, when set, overrides the overlay MTU (VXLAN device, bridge and new
	// containers) that hosts otherwise derive from their underlay MTU minus
	// the encapsulation overhead. 0 means derive it.
	MTU int `json:"mtu,omitempty"`
	// EdgeCIDR, when set, is the range edge hosts (machines without
	// containers, overlayd --mode edge) take one address each from. It is
	// whole container subnets taken out of Network: containers get every
	// other subnet. Unset, the network has no edge hosts.
	EdgeCIDR netip.Prefix `json:"edgeCIDR,omitzero"`
	// IPMasq makes container hosts masquerade what their containers send
	// to destinations outside the network (and outside the LANs gateways
	// advertise) behind the host's own address, so containers reach the
	// rest of the world with no routing built for them. On by default, as
	// in kube-flannel: without it a container reaches only other
	// containers.
	IPMasq bool `json:"ipMasq"`
	// DirectRouting routes a peer whose public IP is on this host's own
	// L2 segment directly via that IP, without encapsulation; peers
	// elsewhere stay on VXLAN (flannel's DirectRouting).
	DirectRouting bool `json:"directRouting"`
}

// MTU bounds of the override: IPv4's minimum datagram size every host must
// accept, and the largest jumbo frame in common use.
const (
	MinMTU = 576
	MaxMTU = 9000
)

// wireConfig mirrors Config with loose types so that a bad value surfaces as
// a validation error naming the field rather than a JSON type error.
type wireConfig struct {
	Network   string `json:"network"`
	SubnetLen *int64 `json:"subnetLen"`
	VNI       *int64 `json:"vni"`
	Port      *int64 `json:"port"`
	MTU       *int64 `json:"mtu,omitempty"`
	EdgeCIDR  string `json:"edgeCIDR,omitempty"`
	// Pointers, so an absent field takes its default.
	IPMasq        *bool `json:"ipMasq,omitempty"`
	DirectRouting *bool `json:"directRouting,omitempty"`
}

// Parse decodes a network config, applies defaults and validates it.
func Parse(data []byte) (Config, error) {
	var w wireConfig
	if err := json.Unmarshal(data, &w); err != nil {
		return Config{}, fmt.Errorf("network config is not valid JSON: %w", err)
	}
	if w.Network == "" {
		return Config{}, fmt.Errorf(`network config: field "network" is missing; set it to an IPv4 CIDR such as "10.244.0.0/16"`)
	}
	network, err := netip.ParsePrefix(w.Network)
	if err != nil {
		return Config{}, fmt.Errorf(`network config: field "network" %q is not a CIDR: %w`, w.Network, err)
	}
	c := Config{Network: network, SubnetLen: DefaultSubnetLen, VNI: DefaultVNI, Port: DefaultPort, IPMasq: true}
	if w.IPMasq != nil {
		c.IPMasq = *w.IPMasq
	}
	if w.DirectRouting != nil {
		c.DirectRouting = *w.DirectRouting
	}
	if w.SubnetLen != nil {
		if *w.SubnetLen < 0 || *w.SubnetLen > 128 {
			return Config{}, fmt.Errorf(`network config: field "subnetLen" %d is not a prefix length`, *w.SubnetLen)
		}
		c.SubnetLen = int(*w.SubnetLen)
	}
	if w.VNI != nil {
		if *w.VNI < 1 || *w.VNI > MaxVNI {
			return Config{}, fmt.Errorf(`network config: field "vni" %d is out of range; use 1-%d`, *w.VNI, MaxVNI)
		}
		c.VNI = uint32(*w.VNI)
	}
	if w.Port != nil {
		if *w.Port < 1 || *w.Port > 65535 {
			return Config{}, fmt.Errorf(`network config: field "port" %d is out of range; use 1-65535`, *w.Port)
		}
		c.Port = uint16(*w.Port)
	}
	if w.MTU != nil {
		if *w.MTU < MinMTU || *w.MTU > MaxMTU {
			return Config{}, fmt.Errorf(`network config: field "mtu" %d is out of range; use %d-%d, or leave it out to derive it from each host's underlay`, *w.MTU, MinMTU, MaxMTU)
		}
		c.MTU = int(*w.MTU)
	}
	if w.EdgeCIDR != "" {
		if c.EdgeCIDR, err = netip.ParsePrefix(w.EdgeCIDR); err != nil {
			return Config{}, fmt.Errorf(`network config: field "edgeCIDR" %q is not a CIDR: %w`, w.EdgeCIDR, err)
		}
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate reports the first field that makes c unusable.
func (c Config) Validate() error {
	if !c.Network.IsValid() {
		return fmt.Errorf(`network config: field "network" is missing; set it to an IPv4 CIDR such as "10.244.0.0/16"`)
	}
	if !c.Network.Addr().Is4() {
		return fmt.Errorf(`network config: field "network" %s is not IPv4; only IPv4 overlays are supported`, c.Network)
	}
	if c.Network.Masked() != c.Network {
		return fmt.Errorf(`network config: field "network" %s has host bits set; did you mean %s?`, c.Network, c.Network.Masked())
	}
	if c.SubnetLen <= c.Network.Bits() || c.SubnetLen > MaxSubnetLen {
		return fmt.Errorf(`network config: field "subnetLen" %d does not fit network %s; use a length from %d to %d`,
			c.SubnetLen, c.Network, c.Network.Bits()+1, MaxSubnetLen)
	}
	if c.VNI < 1 || c.VNI > MaxVNI {
		return fmt.Errorf(`network config: field "vni" %d is out of range; use 1-%d`, c.VNI, MaxVNI)
	}
	if c.Port == 0 {
		return fmt.Errorf(`network config: field "port" 0 is out of range; use 1-65535`)
	}
	if c.MTU != 0 && (c.MTU < MinMTU || c.MTU > MaxMTU) {
		return fmt.Errorf(`network config: field "mtu" %d is out of range; use %d-%d, or 0 to derive it from each host's underlay`, c.MTU, MinMTU, MaxMTU)
	}
	return c.validateEdgeCIDR()
}

// validateEdgeCIDR checks that the edge range is whole container subnets
// inside the network, leaving at least one subnet for containers: then no
// edge address can ever fall inside a subnet a host leases.
func (c Config) validateEdgeCIDR() error {
	e := c.EdgeCIDR
	example := netip.PrefixFrom(lastAddr(c.Network), c.SubnetLen).Masked()
	shared := netip.PrefixFrom(e.Addr(), c.SubnetLen).Masked() // the container subnet holding e
	switch {
	case !e.IsValid():
		return nil
	case !e.Addr().Is4():
		return fmt.Errorf(`network config: field "edgeCIDR" %s is not IPv4`, e)
	case e.Masked() != e:
		return fmt.Errorf(`network config: field "edgeCIDR" %s has host bits set; did you mean %s?`, e, e.Masked())
	case !c.Network.Contains(e.Addr()) || e.Bits() < c.Network.Bits():
		return fmt.Errorf(`network config: field "edgeCIDR" %s lies outside network %s; pick a range inside it, e.g. its last subnet %s`, e, c.Network, example)
	case e.Bits() == c.Network.Bits():
		return fmt.Errorf(`network config: field "edgeCIDR" %s is the whole network, leaving no subnet for containers; pick a part of it, e.g. %s`, e, example)
	case e.Bits() > c.SubnetLen:
		return fmt.Errorf(`network config: field "edgeCIDR" %s overlaps container subnet %s (subnetLen %d); the edge range must be whole container subnets, /%d or larger, e.g. %s`,
			e, shared, c.SubnetLen, c.SubnetLen, shared)
	}
	return nil
}

// Marshal encodes c in the wire format Parse reads.
func (c Config) Marshal() ([]byte, error) {
	return json.Marshal(wireConfig{
		Network:   c.Network.String(),
		SubnetLen: ptr(int64(c.SubnetLen)),
		VNI:       ptr(int64(c.VNI)),
		Port:      ptr(int64(c.Port)),
		MTU:       mtuField(c.MTU),
		EdgeCIDR:  prefixField(c.EdgeCIDR),
		// Both written always, so `network get` shows what is in force.
		IPMasq:        ptr(c.IPMasq),
		DirectRouting: ptr(c.DirectRouting),
	})
}

// VXLANOverhead is the IPv4 VXLAN encapsulation cost: outer IPv4 (20) +
// UDP (8) + VXLAN (8) + inner Ethernet (14).
const VXLANOverhead = 50

// OverlayMTU is the MTU of the overlay over an underlay of MTU underlayMTU:
// the override when set, else what is left after the encapsulation.
func (c Config) OverlayMTU(underlayMTU int) int {
	if c.MTU != 0 {
		return c.MTU
	}
	return underlayMTU - VXLANOverhead
}

// CheckUnderlay reports whether a host whose underlay MTU is underlayMTU
// can carry this network: the overlay MTU override must fit inside it.
func (c Config) CheckUnderlay(host string, underlayMTU int) error {
	if c.MTU == 0 || underlayMTU == 0 || c.MTU+VXLANOverhead <= underlayMTU {
		return nil
	}
	return fmt.Errorf(`network config: field "mtu" %d is larger than %s allows: its underlay MTU %d leaves %d after the %d-byte VXLAN encapsulation; set mtu to at most %d, or leave it out to derive it from the smallest underlay MTU`,
		c.MTU, host, underlayMTU, underlayMTU-VXLANOverhead, VXLANOverhead, underlayMTU-VXLANOverhead)
}

// CheckOthers reports the first way c clashes with another network's
// config (by name): a shared VNI (every host names its device after the
// VNI, and the kernel demultiplexes by it), overlapping ranges (an address
// would be routed into two networks) or a shared UDP port (each port's
// ingress filter admits one network's members, so two networks on one port
// would admit each other's hosts into both).
func (c Config) CheckOthers(others map[string]Config) error {
	for _, name := range slices.Sorted(maps.Keys(others)) {
		o := others[name]
		switch {
		case o.VNI == c.VNI:
			return fmt.Errorf(`network config: field "vni" %d is already network %s's; give each network its own VNI`, c.VNI, name)
		case o.Network.Overlaps(c.Network):
			return fmt.Errorf(`network config: field "network" %s overlaps network %s's range %s; networks must not share addresses`, c.Network, name, o.Network)
		case o.Port == c.Port:
			return fmt.Errorf(`network config: field "port" %d is already network %s's; give each network its own UDP port (the ingress filter admits a port's packets from one network's hosts), e.g. --port %d`, c.Port, name, freePort(c.Port, others))
		}
	}
	return nil
}

// freePort suggests the first port above p that no other network uses.
func freePort(p uint16, others map[string]Config) uint16 {
	used := map[uint16]bool{}
	for _, o := range others {
		used[o.Port] = true
	}
	for q := p + 1; q != 0; q++ {
		if !used[q] {
			return q
		}
	}
	return p
}

// Contains reports whether s is one of the network's container subnets.
func (c Config) Contains(s netip.Prefix) bool { return c.HostPool().Contains(s) }

// ContainsEdge reports whether s is one of the network's edge addresses (a /32).
func (c Config) ContainsEdge(s netip.Prefix) bool { return c.EdgePool().Contains(s) }

func ptr[T any](v T) *T { return &v }

func mtuField(mtu int) *int64 {
	if mtu == 0 {
		return nil
	}
	return ptr(int64(mtu))
}

// lastAddr is the highest address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	return fromUint32(toUint32(p.Masked().Addr()) | (uint32(1)<<(32-p.Bits()) - 1))
}

func prefixField(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// ValidateName checks a network name. Names become etcd key segments and file
// names (RUNDIR/NAME.json), so they are limited to a safe character set.
func ValidateName(name string) error {
	if !validName(name) {
		return fmt.Errorf("network name %q is invalid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit", name)
	}
	return nil
}

// validName is ^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$, checked by hand: the
// regexp costs every CNI plugin start a quarter of a millisecond to
// compile.
func validName(name string) bool {
	if len(name) == 0 || len(name) > 63 {
		return false
	}
	for i, c := range []byte(name) {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return false
		}
	}
	return true
}
