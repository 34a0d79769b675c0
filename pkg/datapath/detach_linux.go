package datapath

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// DetachContainer deletes the container end of the veth pair, which takes
// the host end with it. A container, namespace or interface that is already
// gone is success, so a CNI DEL can be repeated. A path that exists but is
// no longer a namespace (unmounted, file left behind) also counts as gone:
// the veth died with the namespace.
func DetachContainer(netnsPath, ifName string) error {
	if netnsPath == "" {
		return nil
	}
	cns, err := ns.GetNS(netnsPath)
	if nsGone(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open container netns %q: %w", netnsPath, err)
	}
	defer cns.Close()
	err = cns.Do(func(ns.NetNS) error { return deleteLink(ifName, "") })
	if err != nil {
		return fmt.Errorf("detach %q in netns %q: %w", ifName, netnsPath, err)
	}
	return nil
}

// HostVeth names the host end of a container's veth pair.
type HostVeth struct {
	Index int
	Name  string
}

// DisarmContainer takes owner's container interface out of use without
// deleting it: down, its IPv4 addresses (and so its routes) removed,
// renamed aside in the container, its host end off the bridge and in the
// doomed link group (see DeleteDoomedVeths). Deleting a veth pair costs the
// kernel 15 to 25 ms of RCU grace periods, most of a CNI DEL, while this
// takes microseconds; once it returns the address is on no interface and
// can be handed out again, and the interface name is free for the next ADD
// (of any plugin).
//
// cns is the container's namespace, opened (and locked) by the caller, so
// it cannot vanish while the address is still on the interface. Only
// owner's interface is touched: a veth whose host end (in the calling
// thread's namespace, the host's) carries owner's alias or one of its
// names, or, as veths made before aliases were, an unaliased port of the
// network's bridge. Anything else under ifName is another plugin's and is
// left alone. It returns the host end, or the zero HostVeth when there is
// nothing of owner's.
func DisarmContainer(cns ns.NetNS, ifName string, owner VethOwner) (HostVeth, error) {
	var ce containerEnd
	err := cns.Do(func(hostNS ns.NetNS) (err error) {
		ce, err = readOwnEnd(hostNS, ifName)
		return err
	})
	if err != nil || ce.peerIndex == 0 {
		return HostVeth{}, err
	}
	host, err := netlink.LinkByIndex(ce.peerIndex)
	if isLinkNotFound(err) {
		return HostVeth{}, nil
	}
	if err != nil {
		return HostVeth{}, fmt.Errorf("look up host end (index %d) of %q: %w", ce.peerIndex, ifName, err)
	}
	if mine, err := ownsHostEnd(host, owner); err != nil || !mine {
		return HostVeth{}, err
	}
	if err := cns.Do(func(ns.NetNS) error { return disarm(ifName, ce.addrs) }); err != nil {
		return HostVeth{}, fmt.Errorf("disarm %q: %w", ifName, err)
	}
	if host.Attrs().MasterIndex != 0 {
		if err := netlink.LinkSetNoMaster(host); err != nil && !isAbsent(err) {
			return HostVeth{}, fmt.Errorf("take host veth %s off its bridge: %w", host.Attrs().Name, err)
		}
	}
	if err := netlink.LinkSetGroup(host, int(doomedGroup)); err != nil && !isAbsent(err) {
		return HostVeth{}, fmt.Errorf("mark host veth %s for deletion: %w", host.Attrs().Name, err)
	}
	return HostVeth{Index: ce.peerIndex, Name: host.Attrs().Name}, nil
}

// readOwnEnd runs in the container namespace: ifName's addresses and, if it
// is a veth whose peer is in the host's namespace, the peer's index there
// (0 otherwise, or when there is no ifName).
func readOwnEnd(hostNS ns.NetNS, ifName string) (containerEnd, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if isLinkNotFound(err) {
		return containerEnd{}, nil
	}
	if err != nil {
		return containerEnd{}, fmt.Errorf("look up %q: %w", ifName, err)
	}
	if _, ok := link.(*netlink.Veth); !ok {
		return containerEnd{}, nil
	}
	hostID, err := netlink.GetNetNsIdByFd(int(hostNS.Fd()))
	if err != nil || link.Attrs().NetNsID < 0 || link.Attrs().NetNsID != hostID {
		return containerEnd{}, nil
	}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return containerEnd{}, fmt.Errorf("list addresses of %q: %w", ifName, err)
	}
	ce := containerEnd{ifName: ifName, index: link.Attrs().Index, peerIndex: link.Attrs().ParentIndex}
	for _, a := range addrs {
		ce.addrs = append(ce.addrs, fromIPNet(a.IPNet))
	}
	return ce, nil
}

// ownsHostEnd reports whether host is owner's host veth (see
// DisarmContainer).
func ownsHostEnd(host netlink.Link, owner VethOwner) (bool, error) {
	a := host.Attrs()
	switch {
	case host.Type() != "veth":
		return false, nil
	case a.Alias == owner.Alias() || a.Alias == "" && slices.Contains(owner.hostVethNames(), a.Name):
		return true, nil
	case a.Alias != "" || a.MasterIndex == 0:
		return false, nil
	}
	br, err := netlink.LinkByIndex(a.MasterIndex)
	if err != nil {
		return false, fmt.Errorf("look up the bridge of host veth %s: %w", a.Name, err)
	}
	return br.Attrs().Alias == OwnerAlias(owner.Network), nil
}

// disarm runs in the container namespace on an interface of ours.
func disarm(ifName string, addrs []netip.Prefix) error {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("look up %q: %w", ifName, err)
	}
	if err := netlink.LinkSetDown(link); err != nil {
		return fmt.Errorf("set %q down: %w", ifName, err)
	}
	for _, a := range addrs {
		if err := netlink.AddrDel(link, &netlink.Addr{IPNet: toIPNet(a)}); err != nil && !isAbsent(err) {
			return fmt.Errorf("remove address %s from %q: %w", a, ifName, err)
		}
	}
	return renameAside(link)
}

// renameAside gives a disarmed container end a name of its own ("ovd" and
// 12 random hex digits), so the name the runtime chose is free at once.
func renameAside(link netlink.Link) error {
	for range 3 {
		b := make([]byte, 6)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("generate a name: %w", err)
		}
		err := netlink.LinkSetName(link, "ovd"+hex.EncodeToString(b))
		if !isExist(err) {
			if err != nil {
				return fmt.Errorf("rename %q aside: %w", link.Attrs().Name, err)
			}
			return nil
		}
	}
	return fmt.Errorf("rename %q aside: every name tried is taken", link.Attrs().Name)
}

// doomedGroup is the link group (IFLA_GROUP; 0 is every link's default)
// of host veths DisarmContainer took out of use: DeleteDoomedVeths deletes
// them all in one request, so a burst of DELs costs the kernel one round
// of RCU grace periods instead of one per pair. The number spells "ovld".
const doomedGroup uint32 = 0x6f766c64

// DeleteDoomedVeths deletes every veth pair DisarmContainer marked in the
// calling thread's (the host's) namespace, in one request: the kernel
// unregisters them as one batch. None marked is success.
func DeleteDoomedVeths() error {
	req := nl.NewNetlinkRequest(unix.RTM_DELLINK, unix.NLM_F_ACK)
	req.AddData(nl.NewIfInfomsg(unix.AF_UNSPEC))
	req.AddData(nl.NewRtAttr(unix.IFLA_GROUP, nl.Uint32Attr(doomedGroup)))
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil && !isAbsent(err) {
		return fmt.Errorf("delete the veth pairs of finished containers (link group %#x): %w", doomedGroup, err)
	}
	return nil
}

// AnyDoomedVeth reports whether a veth DisarmContainer marked is still in
// the calling thread's namespace. It reads the whole link table.
func AnyDoomedVeth() (bool, error) {
	links, err := netlinksafe.LinkList()
	if err != nil {
		return false, fmt.Errorf("list links: %w", err)
	}
	return slices.ContainsFunc(links, func(l netlink.Link) bool { return uint32(l.Attrs().Group) == doomedGroup }), nil
}

// DeleteOwnedVeth deletes owner's veth pair by its host end, found by name
// in the calling thread's (the host's) namespace: what DEL can still do
// when the runtime gives no netns (CRI's DEL after the sandbox is gone)
// while something else holds the netns, and with it the veth, alive. It
// waits for the kernel: the container end goes with the pair, and its
// address must be gone before DEL releases it. A pair that does not exist
// is success.
func DeleteOwnedVeth(owner VethOwner) error {
	for _, name := range owner.hostVethNames() {
		l, err := netlinksafe.LinkByName(name)
		if isLinkNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("look up host veth %s: %w", name, err)
		}
		if a := l.Attrs().Alias; l.Type() != "veth" || a != "" && a != owner.Alias() || uint32(l.Attrs().Group) == doomedGroup {
			continue // not ours, or disarmed already: DeleteDoomedVeths has it
		}
		if err := netlink.LinkDel(l); err != nil && !isAbsent(err) {
			return fmt.Errorf("delete host veth %s: %w", name, err)
		}
	}
	return nil
}

// RemoveStrayVeths deletes every host veth of network whose attachment is
// not in valid: one its alias names (see VethOwner.Alias), or one without
// an alias but with a name HostVethName gives (an ADD died before it set
// the alias; such a veth is off the bridge and holds no address) that is
// not a valid attachment's. A pair DisarmContainer marked goes whatever
// its attachment (it is out of use even if the attachment was added
// again). It returns the owners of the aliased veths it could not delete
// with the joined errors. It reads the host's whole link table, which only
// GC does.
//
// An unaliased veth cannot tell which network it is of: one that another
// network's ADD is creating at this very moment is deleted too, and that
// ADD fails and is retried by the runtime.
func RemoveStrayVeths(network string, valid []VethOwner) (failed []VethOwner, err error) {
	keep := make(map[string]bool, len(valid)*(hostVethTries+1))
	for _, o := range valid {
		keep[o.Alias()] = true
		for _, n := range o.hostVethNames() {
			keep[n] = true
		}
	}
	links, err := netlinksafe.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		a := l.Attrs()
		stray := ownedBy(a.Alias, network) && (!keep[a.Alias] || uint32(a.Group) == doomedGroup) ||
			a.Alias == "" && a.MasterIndex == 0 && isHostVethName(a.Name) && !keep[a.Name]
		if l.Type() != "veth" || !stray {
			continue
		}
		if err := netlink.LinkDel(l); err != nil && !isAbsent(err) {
			if o, ok := ParseVethAlias(a.Alias); ok {
				failed = append(failed, o)
			}
			errs = append(errs, fmt.Errorf("delete stray veth %s (%s): %w", a.Name, a.Alias, err))
		}
	}
	return failed, errors.Join(errs...)
}

func nsGone(err error) bool {
	var notExist ns.NSPathNotExistErr
	var notNS ns.NSPathNotNSErr
	return errors.As(err, &notExist) || errors.As(err, &notNS) || errors.Is(err, os.ErrNotExist)
}
