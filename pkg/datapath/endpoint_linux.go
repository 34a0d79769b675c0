package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Endpoint is where an address lives behind this host's bridge.
type Endpoint struct {
	MAC net.HardwareAddr
	// Port is the bridge port the MAC was learned on (a container's
	// host-side veth); empty when the bridge has not learned it.
	Port string
	// PortUp is true when that port is up and still the bridge's.
	PortUp bool
}

// ErrNoEndpoint means the bridge has no usable neighbour entry for the
// address: nothing behind it answered ARP for it.
var ErrNoEndpoint = errors.New("no neighbour entry on the bridge")

// FindOnBridge finds what holds ip behind bridge: the bridge's neighbour
// entry gives its MAC, the bridge's forwarding database the port the MAC
// was learned on. Entries exist only after traffic to ip, so send some
// (a ping) first.
func FindOnBridge(bridge string, ip netip.Addr) (Endpoint, error) {
	br, err := netlinksafe.LinkByName(bridge)
	if err != nil {
		return Endpoint{}, fmt.Errorf("look up bridge %s: %w", bridge, err)
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return Endpoint{}, fmt.Errorf("open netlink socket: %w", err)
	}
	defer h.Close()
	neighs, err := neighList(h, br.Attrs().Index, unix.AF_INET)
	if err != nil {
		return Endpoint{}, fmt.Errorf("list neighbours on %s: %w", bridge, err)
	}
	var ep Endpoint
	for _, n := range neighs {
		usable := n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE) == 0 && len(n.HardwareAddr) == 6
		if fromIP(n.IP) == ip && usable {
			ep.MAC = n.HardwareAddr
		}
	}
	if ep.MAC == nil {
		return Endpoint{}, fmt.Errorf("%s on %s: %w", ip, bridge, ErrNoEndpoint)
	}
	fdb, err := neighList(h, 0, unix.AF_BRIDGE)
	if err != nil {
		return ep, fmt.Errorf("list the forwarding database of %s: %w", bridge, err)
	}
	for _, f := range fdb {
		if !bytes.Equal(f.HardwareAddr, ep.MAC) || f.MasterIndex != br.Attrs().Index {
			continue
		}
		port, err := h.LinkByIndex(f.LinkIndex)
		if err != nil {
			continue // the port went away since the dump
		}
		ep.Port = port.Attrs().Name
		ep.PortUp = port.Attrs().MasterIndex == br.Attrs().Index && port.Attrs().OperState == netlink.OperUp
		break
	}
	return ep, nil
}
