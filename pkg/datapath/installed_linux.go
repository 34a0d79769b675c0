package datapath

import (
	"fmt"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ListInstalled reads what the kernel holds on device: main-table IPv4
// routes except the kernel's own (proto kernel), permanent IPv4 neighbours,
// and the device's own FDB entries. Dumps are filtered to the device, so
// nothing on another device is ever returned or acted on.
func ListInstalled(device string) (Installed, error) {
	link, err := netlinksafe.LinkByName(device)
	if err != nil {
		return Installed{}, fmt.Errorf("look up device %q: %w", device, err)
	}
	return listInstalled(link.Attrs().Index, device)
}

func listInstalled(idx int, device string) (Installed, error) {
	var (
		in  Installed
		err error
	)
	if in.Routes, err = listRoutes(idx); err != nil {
		return Installed{}, fmt.Errorf("list routes on %q: %w", device, err)
	}
	if in.Neighs, err = listNeighs(idx); err != nil {
		return Installed{}, fmt.Errorf("list neighbours on %q: %w", device, err)
	}
	if in.FDB, err = listFDB(idx); err != nil {
		return Installed{}, fmt.Errorf("list FDB entries on %q: %w", device, err)
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
