package datapath

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

var (
	ctrAddr = mustPrefix("10.244.1.5/24")
	ctrGW   = netip.MustParseAddr("10.244.1.1")
)

// hostWithBridge is a host namespace with overlay0 holding 10.244.1.1/24.
func hostWithBridge(t *testing.T) nsNetNS {
	t.Helper()
	host := newNS(t)
	do(t, host, func() error {
		return EnsureBridge(BridgeSpec{Name: "overlay0", Gateway: mustPrefix("10.244.1.1/24"), MTU: 1450})
	})
	return host
}

// attach runs AttachContainer from inside host.
func attach(t *testing.T, host, ctr nsNetNS, ifName string) (ContainerLink, error) {
	t.Helper()
	var cl ContainerLink
	var err error
	do(t, host, func() error {
		cl, err = AttachContainer(ContainerSpec{Netns: ctr.Path(), IfName: ifName, Bridge: "overlay0", MTU: 1450, Addr: ctrAddr, Gateway: ctrGW,
			Owner: VethOwner{Network: "default", ContainerID: "ctr", IfName: ifName}})
		return nil
	})
	return cl, err
}

// vethNames lists the veth links in the current namespace.
func vethNames() ([]string, error) {
	links, err := netlinksafe.LinkList()
	var out []string
	for _, l := range links {
		if l.Type() == "veth" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, err
}

type ctrView struct {
	mtu    int
	up     bool
	mac    net.HardwareAddr
	addrs  []string
	routes []string
}

func viewContainer(ifName string) (ctrView, error) {
	link, err := netlinksafe.LinkByName(ifName)
	if err != nil {
		return ctrView{}, err
	}
	a := link.Attrs()
	v := ctrView{mtu: a.MTU, up: a.Flags&net.FlagUp != 0, mac: a.HardwareAddr}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return ctrView{}, err
	}
	for _, ad := range addrs {
		v.addrs = append(v.addrs, ad.IPNet.String())
	}
	routes, err := netlinksafe.RouteList(link, netlink.FAMILY_V4)
	for _, r := range routes {
		v.routes = append(v.routes, fromIPNet(r.Dst).String()+" via "+fromIP(r.Gw).String())
	}
	return v, err
}

func TestAttachContainer(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	cl, err := attach(t, host, ctr, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var inside ctrView
	do(t, ctr, func() (err error) { inside, err = viewContainer("eth0"); return err })
	var hostEnd netlink.Link
	var br netlink.Link
	do(t, host, func() (err error) {
		if hostEnd, err = netlinksafe.LinkByName(cl.HostVeth); err != nil {
			return err
		}
		br, err = netlinksafe.LinkByName("overlay0")
		return err
	})

	owner := VethOwner{Network: "default", ContainerID: "ctr", IfName: "eth0"}
	if !regexp.MustCompile(`^ovl[0-9a-f]{12}$`).MatchString(cl.HostVeth) || cl.HostVeth != owner.HostVethName(0) {
		t.Errorf("host veth name %q, want %q (ovl + 12 hex digits of the attachment)", cl.HostVeth, owner.HostVethName(0))
	}
	if hostEnd.Attrs().Alias != "overlay:default:ctr:eth0" {
		t.Errorf("host veth alias %q, want overlay:default:ctr:eth0", hostEnd.Attrs().Alias)
	}
	if !inside.up || inside.mtu != 1450 || !bytes.Equal(inside.mac, cl.ContainerMAC) {
		t.Errorf("container eth0: %+v, want up, MTU 1450, MAC %s", inside, cl.ContainerMAC)
	}
	if strings.Join(inside.addrs, ",") != "10.244.1.5/24" {
		t.Errorf("container addresses %v, want 10.244.1.5/24", inside.addrs)
	}
	if !strings.Contains(strings.Join(inside.routes, ","), "0.0.0.0/0 via 10.244.1.1") {
		t.Errorf("container routes %v, want a default route via 10.244.1.1", inside.routes)
	}
	ha := hostEnd.Attrs()
	if ha.MasterIndex != br.Attrs().Index || ha.Flags&net.FlagUp == 0 || ha.MTU != 1450 || !bytes.Equal(ha.HardwareAddr, cl.HostMAC) {
		t.Errorf("host end %s: master=%d up=%v mtu=%d mac=%s, want master=%d up, MTU 1450, MAC %s",
			cl.HostVeth, ha.MasterIndex, ha.Flags&net.FlagUp != 0, ha.MTU, ha.HardwareAddr, br.Attrs().Index, cl.HostMAC)
	}
	do(t, host, func() error {
		pi, err := netlink.LinkGetProtinfo(hostEnd)
		if err != nil {
			return err
		}
		if !pi.Hairpin {
			t.Errorf("host end %s: hairpin off; a container could not reach its own published port", cl.HostVeth)
		}
		return nil
	})
	do(t, host, func() error { return CheckContainer(ctr.Path(), "eth0", ctrAddr) })
}

func TestDetachContainer(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	if _, err := attach(t, host, ctr, "eth0"); err != nil {
		t.Fatal(err)
	}
	var hostVeths, ctrVeths []string
	do(t, host, func() (err error) {
		if err = DetachContainer(ctr.Path(), "eth0"); err != nil {
			return err
		}
		if err = DetachContainer(ctr.Path(), "eth0"); err != nil {
			return err
		}
		hostVeths, err = vethNames()
		return err
	})
	do(t, ctr, func() (err error) { ctrVeths, err = vethNames(); return err })
	if len(hostVeths)+len(ctrVeths) != 0 {
		t.Errorf("veths left after detach: host %v, container %v", hostVeths, ctrVeths)
	}
}

func TestDetachAfterNetnsGone(t *testing.T) {
	host := hostWithBridge(t)
	ctr := newNS(t)
	if _, err := attach(t, host, ctr, "eth0"); err != nil {
		t.Fatal(err)
	}
	path := ctr.Path()
	ctr.Close()
	if err := unmountNS(ctr); err != nil {
		t.Fatal(err)
	}
	do(t, host, func() error {
		if err := DetachContainer(path, "eth0"); err != nil {
			return err
		}
		return DetachContainer("", "eth0")
	})
}

func TestAttachExistingIfNameFails(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	if _, err := attach(t, host, ctr, "eth0"); err != nil {
		t.Fatal(err)
	}
	var before, after []string
	do(t, host, func() (err error) { before, err = vethNames(); return err })
	_, err := attach(t, host, ctr, "eth0")
	do(t, host, func() (err error) { after, err = vethNames(); return err })
	if err == nil || !strings.Contains(err.Error(), `interface "eth0" already exists`) {
		t.Errorf("second attach as eth0: err = %v, want 'already exists'", err)
	}
	if strings.Join(before, ",") != strings.Join(after, ",") {
		t.Errorf("host veths changed by the failed attach: %v -> %v", before, after)
	}
}

// A failure after the pair exists (here: the container already has a
// default route) removes the pair from both namespaces.
func TestAttachRollsBack(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	do(t, ctr, func() error {
		link, err := addUnderlay("ul0", "198.18.0.9/24")
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Dst: toIPNet(mustPrefix("0.0.0.0/0")), Gw: toIP(netip.MustParseAddr("198.18.0.254"))})
	})
	_, err := attach(t, host, ctr, "eth0")
	var hostVeths, ctrVeths []string
	do(t, host, func() (err error) { hostVeths, err = vethNames(); return err })
	do(t, ctr, func() (err error) { ctrVeths, err = vethNames(); return err })
	if err == nil || !strings.Contains(err.Error(), "already has an IPv4 default route") {
		t.Errorf("attach into a netns with a default route: err = %v", err)
	}
	slices.Sort(ctrVeths)
	if len(hostVeths) != 0 || strings.Join(ctrVeths, ",") != "ul0,ul0p" {
		t.Errorf("left behind: host veths %v, container veths %v (want only ul0, ul0p)", hostVeths, ctrVeths)
	}
}

func TestAttachMissingBridge(t *testing.T) {
	host, ctr := newNS(t), newNS(t)
	_, err := attach(t, host, ctr, "eth0")
	if err == nil || !strings.Contains(err.Error(), `bridge "overlay0" not found`) {
		t.Errorf("attach without bridge: err = %v", err)
	}
}

// InspectContainer recognises what AttachContainer made, and says why
// anything else under the name is not an attachment to the bridge.
func TestInspectContainer(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	cl, err := attach(t, host, ctr, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctr, func() error { _, err := addUnderlay("ul0", "198.18.0.9/24"); return err })
	do(t, host, func() error {
		return EnsureBridge(BridgeSpec{Name: "other0", Gateway: mustPrefix("10.244.2.1/24"), MTU: 1450})
	})
	inspect := func(ifName, bridge string) (ExistingAttachment, error) {
		var ex ExistingAttachment
		var err error
		do(t, host, func() error {
			ex, err = InspectContainer(ctr.Path(), ifName, bridge, VethOwner{Network: "default", ContainerID: "ctr", IfName: ifName})
			return nil
		})
		return ex, err
	}

	ex, err := inspect("eth0", "overlay0")
	if err != nil {
		t.Fatalf("InspectContainer of an attached eth0: %v", err)
	}
	if ex.HostVeth != cl.HostVeth || !bytes.Equal(ex.HostMAC, cl.HostMAC) || !bytes.Equal(ex.ContainerMAC, cl.ContainerMAC) ||
		ex.MTU != 1450 || !slices.Equal(ex.Addrs, []netip.Prefix{ctrAddr}) {
		t.Errorf("InspectContainer = %+v, want %+v with MTU 1450 and %s", ex, cl, ctrAddr)
	}
	if _, err := inspect("eth1", "overlay0"); !errors.Is(err, ErrNoContainerIf) {
		t.Errorf("InspectContainer of a missing eth1: %v, want ErrNoContainerIf", err)
	}
	for _, tt := range []struct{ ifName, bridge, reason string }{
		{"ul0", "overlay0", "not in the host's network namespace"}, // a veth whose peer stays in the container
		{"lo", "overlay0", "not a veth"},
		{"eth0", "other0", "not a port of the bridge"},
	} {
		_, err := inspect(tt.ifName, tt.bridge)
		var fe *ForeignIfError
		if !errors.As(err, &fe) || !strings.Contains(fe.Reason, tt.reason) {
			t.Errorf("InspectContainer(%s, %s): %v, want a *ForeignIfError saying %q", tt.ifName, tt.bridge, err, tt.reason)
		}
	}
	var bm *BridgeMissingError
	if _, err := inspect("eth0", "gone0"); !errors.As(err, &bm) {
		t.Errorf("InspectContainer with a missing bridge: %v, want a *BridgeMissingError", err)
	}
}

func TestContainerHolds(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	if _, err := attach(t, host, ctr, "eth0"); err != nil {
		t.Fatal(err)
	}
	holds := func(path string, a netip.Addr) bool {
		t.Helper()
		var held bool
		var err error
		do(t, host, func() error { held, err = ContainerHolds(path, a); return nil })
		if err != nil {
			t.Fatalf("ContainerHolds(%s, %s): %v", path, a, err)
		}
		return held
	}
	if !holds(ctr.Path(), ctrAddr.Addr()) {
		t.Errorf("ContainerHolds misses %s on eth0", ctrAddr.Addr())
	}
	if holds(ctr.Path(), netip.MustParseAddr("10.244.1.6")) {
		t.Error("ContainerHolds reports an address nobody has")
	}
	path := ctr.Path()
	ctr.Close()
	if err := unmountNS(ctr); err != nil {
		t.Fatal(err)
	}
	if holds(path, ctrAddr.Addr()) {
		t.Error("ContainerHolds reports an address in a namespace that is gone")
	}
}

func TestCheckContainerFailures(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	if _, err := attach(t, host, ctr, "eth0"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ifName string
		addr   netip.Prefix
		want   string
	}{
		{"eth1", ctrAddr, `interface "eth1" does not exist`},
		{"eth0", mustPrefix("10.244.1.6/24"), "lacks address 10.244.1.6/24"},
	}
	for _, tt := range tests {
		var err error
		do(t, host, func() error { err = CheckContainer(ctr.Path(), tt.ifName, tt.addr); return nil })
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("CheckContainer(%s, %s): err = %v, want %q", tt.ifName, tt.addr, err, tt.want)
		}
	}
	var err error
	do(t, ctr, func() error {
		link, e := netlinksafe.LinkByName("eth0")
		if e != nil {
			return e
		}
		return netlink.LinkSetDown(link)
	})
	do(t, host, func() error { err = CheckContainer(ctr.Path(), "eth0", ctrAddr); return nil })
	if err == nil || !strings.Contains(err.Error(), "is down") {
		t.Errorf("CheckContainer on a down link: err = %v", err)
	}
}

func TestAttachRejectsBadArguments(t *testing.T) {
	tests := map[string]struct {
		ifName string
		addr   netip.Prefix
		gw     netip.Addr
	}{
		"no name":           {"", ctrAddr, ctrGW},
		"gateway outside":   {"eth0", ctrAddr, netip.MustParseAddr("10.244.2.1")},
		"gateway is itself": {"eth0", ctrAddr, ctrAddr.Addr()},
		"IPv6 address":      {"eth0", mustPrefix("fd00::5/64"), ctrGW},
	}
	for name, tt := range tests {
		if err := validateAttach(tt.ifName, 1450, tt.addr, tt.gw); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
