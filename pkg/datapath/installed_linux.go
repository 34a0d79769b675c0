package datapath

import (
	"fmt"
	"net/netip"

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
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return Installed{}, fmt.Errorf("open netlink socket: %w", err)
	}
	defer h.Close()
	in, _, err := listInstalled(h, links, t.Range)
	return in, err
}

// listInstalled reads the target's links through h; direct routes only
// when it has an underlay link. It also returns the destinations of the
// main table's other routes (foreign: not on our device, and not ours on
// the underlay), which no route of ours may join.
func listInstalled(h *netlink.Handle, links targetLinks, rng netip.Prefix) (Installed, map[netip.Prefix]bool, error) {
	var in Installed
	vx := links.vxlan
	foreign, err := listRoutes(h, links, rng, &in)
	if err != nil {
		return Installed{}, nil, fmt.Errorf("list routes: %w", err)
	}
	if in.Neighs, err = listNeighs(h, vx.idx); err != nil {
		return Installed{}, nil, fmt.Errorf("list neighbours on %q: %w", vx.name, err)
	}
	if in.FDB, err = listFDB(h, vx.idx); err != nil {
		return Installed{}, nil, fmt.Errorf("list FDB entries on %q: %w", vx.name, err)
	}
	return in, foreign, nil
}

// listRoutes reads the main table once and sorts its IPv4 routes: those on
// the VXLAN device except the kernel's own (proto kernel) into in.Routes;
// those of protocol RouteProtocol on the underlay inside rng into
// in.Direct (exactly one network's direct routes, since network ranges do
// not overlap and the underlay's other routes are not ours); the
// destinations of the rest into foreign.
func listRoutes(h *netlink.Handle, links targetLinks, rng netip.Prefix, in *Installed) (map[netip.Prefix]bool, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, err
	}
	foreign := map[netip.Prefix]bool{}
	for _, r := range routes {
		dst := fromIPNet(r.Dst)
		ours := Route{Dst: dst, Via: fromIP(r.Gw), Src: fromIP(r.Src)}
		stale := r.Priority != RouteMetric(dst)
		if stale {
			ours.Metric = r.Priority
		}
		switch {
		case r.LinkIndex == links.vxlan.idx && r.Protocol == unix.RTPROT_KERNEL:
		case r.LinkIndex == links.vxlan.idx && stale:
			in.Stale = append(in.Stale, ours)
		case r.LinkIndex == links.vxlan.idx:
			in.Routes = append(in.Routes, ours)
		case links.underlay.idx != 0 && r.LinkIndex == links.underlay.idx && r.Protocol == RouteProtocol && within(rng, dst):
			if stale {
				in.StaleDirect = append(in.StaleDirect, ours)
			} else {
				in.Direct = append(in.Direct, ours)
			}
		case dst.IsValid():
			foreign[dst] = true
		}
	}
	return foreign, nil
}

func listNeighs(h *netlink.Handle, linkIndex int) ([]Neigh, error) {
	neighs, err := neighList(h, linkIndex, netlink.FAMILY_V4)
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
func listFDB(h *netlink.Handle, linkIndex int) ([]FDBEntry, error) {
	entries, err := neighList(h, linkIndex, unix.AF_BRIDGE)
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

// TakeCensus reads target t from the kernel and counts it against the
// wanted peers (Count).
func TakeCensus(t PeerTarget, wanted []Peer) (Census, error) {
	in, err := ListInstalledTarget(t)
	if err != nil {
		return Census{}, err
	}
	return Count(t, wanted, in), nil
}
