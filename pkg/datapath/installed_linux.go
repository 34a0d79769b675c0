package datapath

import (
	"fmt"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ListInstalled reads what the kernel holds on device: main-table IPv4
// routes except the kernel's own (proto kernel), permanent IPv4 neighbours,
// and the device's own FDB entries. Dumps are filtered to the device, so
// nothing on another device is ever returned or acted on. It reads no
// direct routes (see ListInstalledTarget).
func ListInstalled(device string) (Installed, error) {
	return ListInstalledTarget(PeerTarget{Device: device})
}

// ListInstalledTarget is ListInstalled for target t: what t.Device holds,
// and, when t names an underlay and a range, the direct routes (routes of
// protocol RouteProtocol on t.Underlay inside t.Range). Compare it with the
// wanted peers by DiffTarget(t, ...).
func ListInstalledTarget(t PeerTarget) (Installed, error) {
	links, err := lookupTarget(t)
	if err != nil {
		return Installed{}, err
	}
	return listInstalled(links, t.Range)
}

// listInstalled reads the target's links; direct routes only when it has
// an underlay link.
func listInstalled(links targetLinks, rng netip.Prefix) (Installed, error) {
	var (
		in  Installed
		err error
	)
	vx := links.vxlan
	if in.Routes, err = listRoutes(vx.idx); err != nil {
		return Installed{}, fmt.Errorf("list routes on %q: %w", vx.name, err)
	}
	if in.Neighs, err = listNeighs(vx.idx); err != nil {
		return Installed{}, fmt.Errorf("list neighbours on %q: %w", vx.name, err)
	}
	if in.FDB, err = listFDB(vx.idx); err != nil {
		return Installed{}, fmt.Errorf("list FDB entries on %q: %w", vx.name, err)
	}
	if ul := links.underlay; ul.idx != 0 {
		if in.Direct, err = listDirectRoutes(ul.idx, rng); err != nil {
			return Installed{}, fmt.Errorf("list direct routes on %q: %w", ul.name, err)
		}
	}
	return in, nil
}

func listRoutes(linkIndex int) ([]Route, error) {
	filter := &netlink.Route{LinkIndex: linkIndex, Table: unix.RT_TABLE_MAIN}
	routes, err := netlinksafe.RouteListFiltered(netlink.FAMILY_V4, filter, netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		out = append(out, Route{Dst: fromIPNet(r.Dst), Via: fromIP(r.Gw), Src: fromIP(r.Src)})
	}
	return out, nil
}

// listDirectRoutes reads the routes of protocol RouteProtocol on the
// underlay inside rng: exactly one network's direct routes, since network
// ranges do not overlap and the underlay's other routes are not ours.
func listDirectRoutes(linkIndex int, rng netip.Prefix) ([]Route, error) {
	filter := &netlink.Route{LinkIndex: linkIndex, Table: unix.RT_TABLE_MAIN, Protocol: RouteProtocol}
	routes, err := netlinksafe.RouteListFiltered(netlink.FAMILY_V4, filter,
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, err
	}
	var out []Route
	for _, r := range routes {
		if dst := fromIPNet(r.Dst); within(rng, dst) {
			out = append(out, Route{Dst: dst, Via: fromIP(r.Gw), Src: fromIP(r.Src)})
		}
	}
	return out, nil
}

func listNeighs(linkIndex int) ([]Neigh, error) {
	neighs, err := neighList(linkIndex, netlink.FAMILY_V4)
	if err != nil {
		return nil, err
	}
	var out []Neigh
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT == 0 {
			continue
		}
		out = append(out, Neigh{IP: fromIP(n.IP), MAC: n.HardwareAddr})
	}
	return out, nil
}

// listFDB keeps NTF_SELF entries: those of the VXLAN device itself, the
// ones that name a remote VTEP.
func listFDB(linkIndex int) ([]FDBEntry, error) {
	entries, err := neighList(linkIndex, unix.AF_BRIDGE)
	if err != nil {
		return nil, err
	}
	var out []FDBEntry
	for _, n := range entries {
		if n.Flags&netlink.NTF_SELF == 0 {
			continue
		}
		out = append(out, FDBEntry{MAC: n.HardwareAddr, Dst: fromIP(n.IP)})
	}
	return out, nil
}
