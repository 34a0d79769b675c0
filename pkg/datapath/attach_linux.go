package datapath

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// ContainerSpec is what AttachContainer builds.
type ContainerSpec struct {
	// Netns is the path of the container's network namespace.
	Netns string
	// IfName is the container end's name; it must not exist yet.
	IfName string
	Bridge string
	MTU    int
	// Addr is the container's address with the subnet's prefix length.
	Addr    netip.Prefix
	Gateway netip.Addr
	// Owner is written as the host veth's alias (see VethOwner).
	Owner VethOwner
}

// AttachContainer wires a container into the bridge: a veth pair with MTU
// spec.MTU, the container end named spec.IfName holding spec.Addr with a
// default route via spec.Gateway, the host end (named "veth" + 8 hex
// digits) an up port of the bridge in hairpin mode. The calling thread must
// be in the host namespace.
//
// Both ends get their MACs from here, so no link has to be read back for
// the result, and a udev MACAddressPolicy cannot change them under us. The
// pair is made by one request from the host namespace, the host end already
// up and enslaved before the container end comes up: the gratuitous ARP the
// kernel sends then (arp_notify) reaches the bridge, so a reused address
// does not meet the previous container's MAC in a neighbour cache. A name
// already taken in the container is a *IfExistsError. On failure nothing
// is left behind: once the pair exists, any later error deletes it.
func AttachContainer(spec ContainerSpec) (ContainerLink, error) {
	if err := validateAttach(spec.IfName, spec.MTU, spec.Addr, spec.Gateway); err != nil {
		return ContainerLink{}, err
	}
	br, err := lookupBridge(spec.Bridge)
	if err != nil {
		return ContainerLink{}, err
	}
	cns, err := ns.GetNS(spec.Netns)
	if err != nil {
		return ContainerLink{}, fmt.Errorf("open container netns %q: %w", spec.Netns, err)
	}
	defer cns.Close()
	cl, err := createPair(spec, br, cns)
	if err != nil {
		return ContainerLink{}, fmt.Errorf("attach %q in netns %q: %w", spec.IfName, spec.Netns, err)
	}
	err = cns.Do(func(ns.NetNS) error { return configureContainerIf(spec.IfName, spec.Addr, spec.Gateway) })
	if err != nil {
		undo := deleteLink(cl.HostVeth, "veth")
		return ContainerLink{}, errors.Join(fmt.Errorf("attach %q in netns %q: %w", spec.IfName, spec.Netns, err), undo)
	}
	return cl, nil
}

func validateAttach(ifName string, mtu int, addr netip.Prefix, gw netip.Addr) error {
	switch {
	case ifName == "" || len(ifName) > 15:
		return fmt.Errorf("container interface name %q must have 1 to 15 bytes", ifName)
	case mtu < 68:
		return fmt.Errorf("MTU %d is below the IPv4 minimum 68", mtu)
	case !addr.IsValid() || !addr.Addr().Is4():
		return fmt.Errorf("container address %q is not an IPv4 prefix", addr)
	case !gw.Is4() || !addr.Masked().Contains(gw) || gw == addr.Addr():
		return fmt.Errorf("gateway %q is not another address in the container's subnet %s", gw, addr.Masked())
	}
	return nil
}

// createPair makes the veth pair: the host end up, aliased, a hairpin port
// of br; the container end, still down, in cns. A host name that happens
// to be taken is retried with another.
func createPair(spec ContainerSpec, br netlink.Link, cns ns.NetNS) (ContainerLink, error) {
	hostMAC, err := randomMAC()
	if err != nil {
		return ContainerLink{}, err
	}
	ctrMAC, err := randomMAC()
	if err != nil {
		return ContainerLink{}, err
	}
	for range 5 {
		name, err := randomVethName()
		if err != nil {
			return ContainerLink{}, err
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name, attrs.MTU, attrs.HardwareAddr = name, spec.MTU, hostMAC
		attrs.Flags = net.FlagUp
		attrs.Alias = spec.Owner.Alias()
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: spec.IfName, PeerHardwareAddr: ctrMAC,
			PeerNamespace: netlink.NsFd(int(cns.Fd()))}
		err = netlink.LinkAdd(veth)
		if isExist(err) {
			if taken, lerr := ifExists(cns, spec.IfName); lerr != nil || taken {
				return ContainerLink{}, errors.Join(&IfExistsError{IfName: spec.IfName}, lerr)
			}
			continue // the host name was taken
		}
		if err != nil {
			return ContainerLink{}, fmt.Errorf("create veth pair: %w", err)
		}
		if err := enslave(veth, br); err != nil {
			return ContainerLink{}, errors.Join(err, deleteLink(name, "veth"))
		}
		return ContainerLink{HostVeth: name, HostMAC: hostMAC, ContainerMAC: ctrMAC}, nil
	}
	return ContainerLink{}, errors.New("create veth pair: no free host veth name after 5 tries")
}

// enslave makes the host veth a port of br with hairpin on. Hairpin lets a
// frame leave by the port it came in on. Without it a container cannot
// reach itself through its host's published port: portmap's DNAT (seen at
// the bridge via br_netfilter) turns the packet back towards the sender's
// own port, and the bridge drops it.
func enslave(veth netlink.Link, br netlink.Link) error {
	name := veth.Attrs().Name
	if err := netlink.LinkSetMasterByIndex(veth, br.Attrs().Index); err != nil {
		return fmt.Errorf("attach %q to bridge %q: %w", name, br.Attrs().Name, err)
	}
	if err := netlink.LinkSetHairpin(veth, true); err != nil {
		return fmt.Errorf("enable hairpin on %q: %w", name, err)
	}
	// The kernel ignores an alias in the create request; set it now.
	if err := netlink.LinkSetAlias(veth, veth.Attrs().Alias); err != nil {
		return fmt.Errorf("set alias of %q: %w", name, err)
	}
	return nil
}

// ifExists reports whether the container namespace has a link named ifName.
func ifExists(cns ns.NetNS, ifName string) (bool, error) {
	found := false
	err := cns.Do(func(ns.NetNS) error {
		_, err := netlinksafe.LinkByName(ifName)
		if isLinkNotFound(err) {
			return nil
		}
		found = err == nil
		return err
	})
	return found, err
}

// configureContainerIf runs inside the container namespace. arp_notify is
// set before the link comes up, so the kernel announces the address as it
// does; the link is up before the route is added, because the gateway is
// only reachable once the link's subnet route exists.
func configureContainerIf(ifName string, addr netip.Prefix, gw netip.Addr) error {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("look up %q: %w", ifName, err)
	}
	if err := setSysctl(fmt.Sprintf("net/ipv4/conf/%s/arp_notify", ifName), "1"); err != nil {
		return err
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: toIPNet(addr)}); err != nil {
		return fmt.Errorf("add address %s to %q: %w", addr, ifName, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %q up: %w", ifName, err)
	}
	err = netlink.RouteAdd(&netlink.Route{
		LinkIndex: link.Attrs().Index,
		Dst:       toIPNet(netip.PrefixFrom(netip.IPv4Unspecified(), 0)),
		Gw:        toIP(gw),
		Scope:     netlink.SCOPE_UNIVERSE,
	})
	if isExist(err) {
		return fmt.Errorf("add default route via %s: the container already has an IPv4 default route", gw)
	}
	if err != nil {
		return fmt.Errorf("add default route via %s dev %q: %w", gw, ifName, err)
	}
	return nil
}

// randomVethName is "veth" and 8 random hex digits, as CNI plugins name
// host ends.
func randomVethName() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate veth name: %w", err)
	}
	return "veth" + hex.EncodeToString(b), nil
}

func lookupBridge(name string) (netlink.Link, error) {
	br, err := netlinksafe.LinkByName(name)
	if isLinkNotFound(err) {
		return nil, &BridgeMissingError{Name: name}
	}
	if err != nil {
		return nil, fmt.Errorf("look up bridge %q: %w", name, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return nil, fmt.Errorf("link %q is of type %s, not a bridge", name, br.Type())
	}
	return br, nil
}
