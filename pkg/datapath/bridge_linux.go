package datapath

import (
	"crypto/rand"
	"fmt"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// EnsureBridge creates the bridge if missing, makes spec.Gateway its only
// IPv4 address (others are left from an earlier subnet), sets its MTU while
// it has no ports, and brings it up. It is overlayd's: the bridge has one
// writer, so a CNI plugin working from an older host file cannot put an old
// gateway back (plugins use CheckBridge). Concurrent callers are still safe;
// losing the creation race is fine.
func EnsureBridge(spec BridgeSpec) error {
	if err := validateBridgeSpec(spec); err != nil {
		return err
	}
	br, err := findOrCreateBridge(spec)
	if err != nil {
		return err
	}
	if err := setBridgeMTU(br, spec.MTU); err != nil {
		return err
	}
	if err := ensureOnlyIPv4Addr(br, spec.Gateway); err != nil {
		return err
	}
	if err := ensureAlias(br, ownerAlias(spec.Owner)); err != nil {
		return err
	}
	return ensureUp(br)
}

func validateBridgeSpec(s BridgeSpec) error {
	switch {
	case s.Name == "" || len(s.Name) > 15:
		return fmt.Errorf("bridge name %q must have 1 to 15 bytes", s.Name)
	case !s.Gateway.IsValid() || !s.Gateway.Addr().Is4():
		return fmt.Errorf("bridge %q: gateway %q is not an IPv4 prefix", s.Name, s.Gateway)
	case s.MTU < 68:
		return fmt.Errorf("bridge %q: MTU %d is below the IPv4 minimum 68", s.Name, s.MTU)
	}
	return nil
}

func findOrCreateBridge(spec BridgeSpec) (netlink.Link, error) {
	link, err := netlinksafe.LinkByName(spec.Name)
	switch {
	case isLinkNotFound(err):
		link, err = createBridge(spec)
	case err != nil:
		err = fmt.Errorf("look up bridge %q: %w", spec.Name, err)
	}
	if err != nil {
		return nil, err
	}
	if _, ok := link.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("link %q exists but is of type %s, not a bridge; delete it or choose another bridge name", spec.Name, link.Type())
	}
	return link, nil
}

// createBridge gives the bridge an explicit random MAC: a bridge with a
// kernel-chosen MAC takes over the lowest MAC of its ports, so the gateway
// MAC would change as containers come and go and stale container ARP
// caches would black-hole traffic. EEXIST means another plugin process won
// the race; the caller's type check tells whether what it made is a bridge.
func createBridge(spec BridgeSpec) (netlink.Link, error) {
	mac, err := randomMAC()
	if err != nil {
		return nil, err
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = spec.Name
	attrs.MTU = spec.MTU
	attrs.HardwareAddr = mac
	if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil && !isExist(err) {
		return nil, fmt.Errorf("create bridge %q: %w", spec.Name, err)
	}
	link, err := netlinksafe.LinkByName(spec.Name)
	if err != nil {
		return nil, fmt.Errorf("look up bridge %q after creating it: %w", spec.Name, err)
	}
	return link, nil
}

// randomMAC returns a random unicast, locally administered MAC.
func randomMAC() ([]byte, error) {
	mac := make([]byte, 6)
	if _, err := rand.Read(mac); err != nil {
		return nil, fmt.Errorf("generate bridge MAC: %w", err)
	}
	mac[0] = mac[0]&^0x01 | 0x02
	return mac, nil
}

// setBridgeMTU sets the MTU only while the bridge has no ports: once
// containers hang off it, their veths carry the MTU they were created with
// and the bridge follows them.
func setBridgeMTU(br netlink.Link, mtu int) error {
	if br.Attrs().MTU == mtu {
		return nil // the common pass: no link dump
	}
	links, err := netlinksafe.LinkList()
	if err != nil {
		return fmt.Errorf("list links to find ports of bridge %q: %w", br.Attrs().Name, err)
	}
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			return nil
		}
	}
	return ensureMTU(br, mtu)
}

// CheckBridge reports, changing nothing, whether the bridge exists
// (*BridgeMissingError if not) and carries gateway with its prefix length
// (*BridgeGatewayError if not): what a container needs before it is
// attached. It reads one link and the IPv4 address table (a host has few
// IPv4 addresses; its veths have none), never the whole link table.
func CheckBridge(name string, gateway netip.Prefix) error {
	br, err := lookupBridge(name)
	if err != nil {
		return err
	}
	addrs, err := netlinksafe.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of bridge %q: %w", name, err)
	}
	have := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		p := fromIPNet(a.IPNet)
		if p == gateway {
			return nil
		}
		have = append(have, p)
	}
	return &BridgeGatewayError{Name: name, Gateway: gateway, Have: have}
}

// PortMTUs returns the MTU of each port of bridge (the host ends of the
// containers' veths, which the plugin gives the container's MTU): a port
// above the network's MTU is a container started before the MTU dropped.
func PortMTUs(bridge string) (map[string]int, error) {
	br, err := netlinksafe.LinkByName(bridge)
	if err != nil {
		return nil, fmt.Errorf("look up bridge %q: %w", bridge, err)
	}
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := map[string]int{}
	for _, l := range links {
		if a := l.Attrs(); a.MasterIndex == br.Attrs().Index {
			out[a.Name] = a.MTU
		}
	}
	return out, nil
}
