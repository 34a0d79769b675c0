package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// ensureOnlyIPv4Addr makes want the only IPv4 address on link. It adds
// before it removes, so the link never has no address in between; other
// addresses are leftovers of an earlier subnet. IPv6 (link-local) is left
// alone. An address already in place is not written again: a reconcile pass
// that finds nothing wrong must change nothing (and raise no kernel events).
func ensureOnlyIPv4Addr(link netlink.Link, want netip.Prefix) error {
	name := link.Attrs().Name
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %q: %w", name, err)
	}
	if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return fromIPNet(a.IPNet) == want }) {
		if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: toIPNet(want)}); err != nil {
			return fmt.Errorf("add address %s to %q: %w", want, name, err)
		}
	}
	var errs []error
	for _, a := range addrs {
		if fromIPNet(a.IPNet) == want {
			continue
		}
		if err := netlink.AddrDel(link, &a); err != nil && !isAbsent(err) {
			errs = append(errs, fmt.Errorf("remove stale address %s from %q: %w", a.IPNet, name, err))
		}
	}
	return errors.Join(errs...)
}
