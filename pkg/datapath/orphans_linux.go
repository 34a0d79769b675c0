package datapath

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// OwnedLink is a link that carries a network's owner alias.
type OwnedLink struct {
	Name string
	Type string
}

// OwnedLinks lists the links whose alias marks them as made for network
// (OwnerAlias), whatever their names are now.
func OwnedLinks(network string) ([]OwnedLink, error) {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	alias := OwnerAlias(network)
	var out []OwnedLink
	for _, l := range links {
		if l.Attrs().Alias == alias {
			out = append(out, OwnedLink{Name: l.Attrs().Name, Type: l.Type()})
		}
	}
	return out, nil
}

// RemoveOrphans deletes what an earlier configuration of network left
// behind: VXLAN devices of the network other than t.Device (a VNI or port
// change renames the device; the old one still holds routes to every peer),
// and routes of ours (protocol RouteProtocol) inside t.Range on any device
// but t.Device and, when t has direct routes, t.Underlay: our routes there
// are the network's direct routes, which SyncPeersTarget keeps (and
// removes when no peer wants them). It returns a description of each thing
// removed.
func RemoveOrphans(network string, t PeerTarget) ([]string, error) {
	owned, err := OwnedLinks(network)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, l := range owned {
		if l.Type != "vxlan" || l.Name == t.Device {
			continue
		}
		if err := deleteLink(l.Name, "vxlan"); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "device "+l.Name)
	}
	keep := []string{t.Device}
	if t.direct() {
		keep = append(keep, t.Underlay)
	}
	routes, err := strayRoutes(t.Range, keep...)
	if err != nil {
		return removed, errors.Join(append(errs, err)...)
	}
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !isAbsent(err) {
			errs = append(errs, fmt.Errorf("delete stray route %s: %w", r.Dst, err))
			continue
		}
		removed = append(removed, "route "+r.Dst.String())
	}
	return removed, errors.Join(errs...)
}

// strayRoutes returns our routes inside cidr that are on none of the
// devices named keep.
func strayRoutes(cidr netip.Prefix, keep ...string) ([]netlink.Route, error) {
	if !cidr.IsValid() {
		return nil, nil
	}
	kept := make(map[int]bool, len(keep))
	for _, name := range keep {
		idx, err := indexOrNone(name)
		if err != nil {
			return nil, err
		}
		kept[idx] = true
	}
	filter := &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
	all, err := netlinksafe.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes of protocol %d: %w", RouteProtocol, err)
	}
	var out []netlink.Route
	for _, r := range all {
		if !kept[r.LinkIndex] && within(cidr, fromIPNet(r.Dst)) {
			out = append(out, r)
		}
	}
	return out, nil
}

// indexOrNone is the link index of the device named name, -1 when name is
// empty or no such device exists (no route can be on it).
func indexOrNone(name string) (int, error) {
	if name == "" {
		return -1, nil
	}
	link, err := netlinksafe.LinkByName(name)
	switch {
	case err == nil:
		return link.Attrs().Index, nil
	case isLinkNotFound(err):
		return -1, nil
	}
	return -1, fmt.Errorf("look up %q: %w", name, err)
}

// TeardownNetwork removes every link network owns (its VXLAN devices and
// bridge, found by alias; with them go their routes, neighbours and FDB
// entries), the links named in also (devices of releases that set no
// alias), and our routes inside cidr left on other devices (the direct
// routes on the underlay among them). It returns what it removed.
func TeardownNetwork(network string, cidr netip.Prefix, also ...OwnedLink) ([]string, error) {
	owned, err := OwnedLinks(network)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	seen := map[string]bool{}
	for _, l := range append(owned, also...) {
		if seen[l.Name] || l.Name == "" {
			continue
		}
		seen[l.Name] = true
		exists, err := linkExists(l.Name)
		if err != nil || !exists {
			errs = append(errs, err)
			continue
		}
		if err := deleteLink(l.Name, l.Type); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, l.Type+" "+l.Name)
	}
	routes, err := strayRoutes(cidr)
	errs = append(errs, err)
	for _, r := range routes {
		if err := netlink.RouteDel(&r); err != nil && !isAbsent(err) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r.Dst, err))
			continue
		}
		removed = append(removed, "route "+r.Dst.String())
	}
	return removed, errors.Join(errs...)
}

func linkExists(name string) (bool, error) {
	_, err := netlinksafe.LinkByName(name)
	if isLinkNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up %q: %w", name, err)
	}
	return true, nil
}
