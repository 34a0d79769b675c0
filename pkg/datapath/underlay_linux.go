package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FindUnderlay finds the interface VXLAN packets leave by. ifaceOrIP is ""
// (the interface of the IPv4 default route), an interface name, or an IPv4
// address held by some interface. With an address, Underlay.IP is that
// address; otherwise it is the interface's first global IPv4 address.
func FindUnderlay(ifaceOrIP string) (Underlay, error) {
	if ifaceOrIP == "" {
		link, err := defaultRouteLink()
		if err != nil {
			return Underlay{}, err
		}
		return underlayOf(link, netip.Addr{})
	}
	if ip, err := netip.ParseAddr(ifaceOrIP); err == nil {
		link, err := linkWithAddr(ip)
		if err != nil {
			return Underlay{}, err
		}
		return underlayOf(link, ip)
	}
	link, err := netlinksafe.LinkByName(ifaceOrIP)
	if isLinkNotFound(err) {
		return Underlay{}, fmt.Errorf("interface %q not found; list interfaces with 'ip -br link'", ifaceOrIP)
	}
	if err != nil {
		return Underlay{}, fmt.Errorf("look up interface %q: %w", ifaceOrIP, err)
	}
	return underlayOf(link, netip.Addr{})
}

// underlayOf fills in an Underlay; ip is the chosen address, or zero to
// take the link's first global IPv4 address.
func underlayOf(link netlink.Link, ip netip.Addr) (Underlay, error) {
	a := link.Attrs()
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return Underlay{}, fmt.Errorf("list addresses of %q: %w", a.Name, err)
	}
	u := Underlay{Name: a.Name, Index: a.Index, IP: ip, MTU: a.MTU}
	for _, addr := range addrs {
		if addr.Scope != unix.RT_SCOPE_UNIVERSE {
			continue
		}
		if !u.IP.IsValid() {
			u.IP = fromIP(addr.IP)
		}
		if p := fromIPNet(addr.IPNet); p.IsValid() {
			u.Segments = append(u.Segments, p.Masked())
		}
	}
	if !u.IP.IsValid() {
		return Underlay{}, fmt.Errorf("interface %q has no global IPv4 address; pass --iface IP or add one", a.Name)
	}
	return u, nil
}

func linkWithAddr(ip netip.Addr) (netlink.Link, error) {
	if !ip.Is4() {
		return nil, fmt.Errorf("underlay address %s is not IPv4; the overlay runs over IPv4 only", ip)
	}
	addrs, err := netlinksafe.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list IPv4 addresses: %w", err)
	}
	for _, a := range addrs {
		if fromIP(a.IP) == ip {
			link, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("look up interface %d holding %s: %w", a.LinkIndex, ip, err)
			}
			return link, nil
		}
	}
	return nil, fmt.Errorf("no interface has address %s in this network namespace; list addresses with 'ip -br addr'", ip)
}

var errNoDefaultRoute = errors.New("no IPv4 default route in this network namespace; pass --iface NAME or --iface IP")

// defaultRouteLink returns the outgoing link of the IPv4 default route with
// the lowest metric (the one the kernel uses).
func defaultRouteLink() (netlink.Link, error) {
	routes, err := netlinksafe.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list IPv4 routes: %w", err)
	}
	best, found := netlink.Route{}, false
	for _, r := range routes {
		if fromIPNet(r.Dst).Bits() != 0 || routeLinkIndex(r) == 0 {
			continue
		}
		if !found || r.Priority < best.Priority {
			best, found = r, true
		}
	}
	if !found {
		return nil, errNoDefaultRoute
	}
	link, err := netlink.LinkByIndex(routeLinkIndex(best))
	if err != nil {
		return nil, fmt.Errorf("look up interface of the default route: %w", err)
	}
	return link, nil
}

// routeLinkIndex is the outgoing link of a route, the first hop's for a
// multipath route.
func routeLinkIndex(r netlink.Route) int {
	if r.LinkIndex == 0 && len(r.MultiPath) > 0 {
		return r.MultiPath[0].LinkIndex
	}
	return r.LinkIndex
}

// UnderlayOf finds the underlay a VXLAN device of ours sends from (its
// local address), for tools that were not told --iface.
func UnderlayOf(device string) (Underlay, error) {
	link, err := netlinksafe.LinkByName(device)
	if err != nil {
		return Underlay{}, fmt.Errorf("look up device %q: %w", device, err)
	}
	v, ok := link.(*netlink.Vxlan)
	if !ok {
		return Underlay{}, fmt.Errorf("device %q is a %s, not a vxlan device", device, link.Type())
	}
	return FindUnderlay(fromIP(v.SrcAddr).String())
}
