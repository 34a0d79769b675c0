package datapath

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// CheckContainer verifies that the container's interface ifName exists, is
// up and holds addr, as a CNI CHECK needs. An interface that is not so is a
// *MismatchError; a namespace that cannot be opened is a *NetnsError.
func CheckContainer(netnsPath, ifName string, addr netip.Prefix) error {
	cns, err := ns.GetNS(netnsPath)
	if err != nil {
		return &NetnsError{Path: netnsPath, Err: err}
	}
	defer cns.Close()
	err = cns.Do(func(ns.NetNS) error { return checkIf(ifName, addr) })
	if err != nil {
		return fmt.Errorf("check %q in netns %q: %w", ifName, netnsPath, err)
	}
	return nil
}

func checkIf(ifName string, want netip.Prefix) error {
	link, err := netlinksafe.LinkByName(ifName)
	if isLinkNotFound(err) {
		return &MismatchError{fmt.Sprintf("interface %q does not exist", ifName)}
	}
	if err != nil {
		return fmt.Errorf("look up %q: %w", ifName, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return &MismatchError{fmt.Sprintf("interface %q is down", ifName)}
	}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %q: %w", ifName, err)
	}
	var have []netip.Prefix
	for _, a := range addrs {
		p := fromIPNet(a.IPNet)
		if p == want {
			return nil
		}
		have = append(have, p)
	}
	return &MismatchError{fmt.Sprintf("interface %q lacks address %s (has %v)", ifName, want, have)}
}
