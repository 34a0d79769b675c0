package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// requireRoot is the only skip in the package's tests: network namespaces
// need root (CI and the dev machine run as root).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces: run make test as root")
	}
}

// newNS creates a fresh named network namespace (visible to `ip netns`
// under its base name) that is removed when the test ends, pass or fail.
func newNS(t *testing.T) ns.NetNS {
	t.Helper()
	requireRoot(t)
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() {
		n.Close()
		if _, err := os.Stat(n.Path()); os.IsNotExist(err) {
			return // the test removed it already
		}
		if err := unmountNS(n); err != nil {
			t.Errorf("remove netns %s: %v", n.Path(), err)
		}
	})
	return n
}

// unmountNS removes a namespace made by newNS (it dies with its last user).
func unmountNS(n ns.NetNS) error { return testutils.UnmountNS(n) }

func nsName(n ns.NetNS) string { return filepath.Base(n.Path()) }

// do runs f inside n and fails the test (from the test goroutine) on error.
// f must not call t.Fatal: it runs on another goroutine.
func do(t *testing.T, n ns.NetNS, f func() error) {
	t.Helper()
	if err := n.Do(func(ns.NetNS) error { return f() }); err != nil {
		t.Fatal(err)
	}
}

// addUnderlay creates an up link holding cidr, a stand-in underlay: one
// end of a veth pair whose peer (name+"p") stays in the same namespace,
// because not every kernel has the dummy driver.
func addUnderlay(name, cidr string) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: name + "p"}); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", name, err)
	}
	for _, n := range []string{name + "p", name} {
		link, err := netlinksafe.LinkByName(n)
		if err != nil {
			return nil, err
		}
		if err := netlink.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("set %s up: %w", n, err)
		}
	}
	link, err := netlinksafe.LinkByName(name)
	if err != nil {
		return nil, err
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: toIPNet(netip.MustParsePrefix(cidr))}); err != nil {
		return nil, fmt.Errorf("add %s to %s: %w", cidr, name, err)
	}
	return link, nil
}

// testUnderlay is the dummy underlay every single-host test uses.
const testUnderlay = "198.18.0.1/24"

// vxlanSpec is the spec for VNI vni on the test underlay with subnet 10.244.1.0/24.
func vxlanSpec(vni uint32) VXLANSpec {
	return VXLANSpec{
		Name:    DeviceName(vni),
		VNI:     vni,
		Port:    8472,
		LocalIP: netip.MustParseAddr("198.18.0.1"),
		MAC:     net.HardwareAddr{2, 0xaa, 0, 0, 0, 1},
		MTU:     1450,
		Address: netip.MustParsePrefix("10.244.1.0/32"),
	}
}

// hostWithVXLAN makes a namespace with the test underlay and our VXLAN device.
func hostWithVXLAN(t *testing.T) (ns.NetNS, VXLANSpec) {
	t.Helper()
	host := newNS(t)
	spec := vxlanSpec(1)
	do(t, host, func() error {
		ul, err := addUnderlay("ul0", testUnderlay)
		if err != nil {
			return err
		}
		spec.UnderlayIndex = ul.Attrs().Index
		_, err = EnsureVXLAN(spec)
		return err
	})
	return host, spec
}

// rawState is what independent netlink dumps see on one device.
type rawState struct {
	routes []netlink.Route
	neighs []netlink.Neigh
	fdb    []netlink.Neigh
}

func dumpDevice(name string) (rawState, error) {
	link, err := netlinksafe.LinkByName(name)
	if err != nil {
		return rawState{}, err
	}
	idx := link.Attrs().Index
	var s rawState
	routes, err := netlinksafe.RouteList(link, netlink.FAMILY_V4)
	if err != nil {
		return rawState{}, err
	}
	for _, r := range routes {
		if r.Protocol != unix.RTPROT_KERNEL {
			s.routes = append(s.routes, r)
		}
	}
	neighs, err := netlink.NeighList(idx, netlink.FAMILY_V4)
	if err != nil {
		return rawState{}, err
	}
	for _, n := range neighs {
		if n.State&netlink.NUD_PERMANENT != 0 {
			s.neighs = append(s.neighs, n)
		}
	}
	fdb, err := netlink.NeighList(idx, unix.AF_BRIDGE)
	if err != nil {
		return rawState{}, err
	}
	for _, n := range fdb {
		if n.Flags&netlink.NTF_SELF != 0 {
			s.fdb = append(s.fdb, n)
		}
	}
	return s, nil
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// nsNetNS is ns.NetNS under a name that does not clash with variables
// called ns in tests.
type nsNetNS = ns.NetNS

// addDirectRouteOnce writes one direct route of ours, as a pass would.
func addDirectRouteOnce(dev device, r Route, replace bool) error {
	h, err := netlink.NewHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	return addDirectRoute(h, dev, r, replace)
}
