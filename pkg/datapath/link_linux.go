package datapath

import (
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}

// isAbsent reports whether a delete failed only because the object was
// already gone: ESRCH for routes, ENOENT for neighbours and FDB entries,
// ENODEV for links.
func isAbsent(err error) bool {
	return errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
}

func isExist(err error) bool { return errors.Is(err, unix.EEXIST) }

// deleteLink removes the named link if it is of type kind ("vxlan",
// "bridge", "" for any), so a mistyped name cannot take down, say, the
// uplink. An absent link is success.
func deleteLink(name, kind string) error {
	link, err := netlinksafe.LinkByName(name)
	if isLinkNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up link %q: %w", name, err)
	}
	if kind != "" && link.Type() != kind {
		return fmt.Errorf("refuse to delete link %q: it is of type %s, not %s", name, link.Type(), kind)
	}
	if err := netlink.LinkDel(link); err != nil && !isAbsent(err) {
		return fmt.Errorf("delete link %q: %w", name, err)
	}
	return nil
}

// ensureUp brings a link up unless it already is.
func ensureUp(link netlink.Link) error {
	if link.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set link %q up: %w", link.Attrs().Name, err)
	}
	return nil
}

// ensureMTU sets the MTU unless it already has that value.
func ensureMTU(link netlink.Link, mtu int) error {
	if link.Attrs().MTU == mtu {
		return nil
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("set MTU %d on %q: %w", mtu, link.Attrs().Name, err)
	}
	return nil
}

// ensureAlias sets the link's alias unless it already has it (or alias is
// empty: the caller does not claim the link).
func ensureAlias(link netlink.Link, alias string) error {
	if alias == "" || link.Attrs().Alias == alias {
		return nil
	}
	if err := netlink.LinkSetAlias(link, alias); err != nil {
		return fmt.Errorf("set alias %q on %q: %w", alias, link.Attrs().Name, err)
	}
	return nil
}
