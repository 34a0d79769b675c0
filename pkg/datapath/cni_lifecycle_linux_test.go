package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// attachAs runs AttachContainer for owner from inside host.
func attachAs(t *testing.T, host, ctr nsNetNS, owner VethOwner) ContainerLink {
	t.Helper()
	var cl ContainerLink
	do(t, host, func() (err error) {
		cl, err = AttachContainer(ContainerSpec{Netns: ctr.Path(), IfName: owner.IfName, Bridge: "overlay0", MTU: 1450,
			Addr: ctrAddr, Gateway: ctrGW, Owner: owner})
		return err
	})
	return cl
}

// A reused address must not meet the previous container's MAC in the
// host's neighbour cache: the new container announces itself as it comes
// up (arp_notify), and the host's entry follows at once.
func TestAttachAnnouncesAddress(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	stale := net.HardwareAddr{0x02, 0, 0, 0, 0, 0x99}
	do(t, host, func() error {
		// Only this test's namespace: let the announcement replace an entry
		// updated a moment ago (the default locktime is 1 s).
		if err := os.WriteFile("/proc/sys/net/ipv4/neigh/overlay0/locktime", []byte("0"), 0o644); err != nil {
			return err
		}
		br, err := netlinksafe.LinkByName("overlay0")
		if err != nil {
			return err
		}
		return netlink.NeighSet(&netlink.Neigh{LinkIndex: br.Attrs().Index, Family: netlink.FAMILY_V4,
			State: netlink.NUD_STALE, IP: toIP(ctrAddr.Addr()), HardwareAddr: stale})
	})
	cl := attachAs(t, host, ctr, VethOwner{Network: "default", ContainerID: "new", IfName: "eth0"})
	deadline := time.Now().Add(2 * time.Second)
	var got net.HardwareAddr
	for {
		do(t, host, func() error {
			neighs, err := netlink.NeighList(0, netlink.FAMILY_V4)
			for _, n := range neighs {
				if n.IP.Equal(toIP(ctrAddr.Addr())) {
					got = n.HardwareAddr
				}
			}
			return err
		})
		if bytes.Equal(got, cl.ContainerMAC) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !bytes.Equal(got, cl.ContainerMAC) {
		t.Errorf("host neighbour entry for %s is %s after ADD, want the new container's MAC %s", ctrAddr.Addr(), got, cl.ContainerMAC)
	}
}

// The bridge keeps the MAC EnsureBridge gave it while ports with lower
// MACs come and go (a kernel-chosen bridge MAC follows its lowest port).
func TestBridgeMACStaysAsPortsChange(t *testing.T) {
	host := hostWithBridge(t)
	var before bridgeState
	do(t, host, func() (err error) { before, err = readBridge("overlay0"); return err })
	for i, mac := range []string{"02:00:00:00:00:01", "00:00:00:00:00:02"} {
		ctr := newNS(t)
		do(t, host, func() error {
			br, err := netlinksafe.LinkByName("overlay0")
			if err != nil {
				return err
			}
			attrs := netlink.NewLinkAttrs()
			attrs.Name = "low" + string(rune('0'+i))
			attrs.HardwareAddr, _ = net.ParseMAC(mac)
			attrs.MasterIndex = br.Attrs().Index
			attrs.Flags = net.FlagUp
			return netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ctr.Fd()))})
		})
		var now bridgeState
		do(t, host, func() (err error) { now, err = readBridge("overlay0"); return err })
		if now.mac != before.mac {
			t.Fatalf("bridge MAC %s became %s when a port with MAC %s joined", before.mac, now.mac, mac)
		}
		do(t, host, func() error { return deleteLink(attrsName(i), "veth") })
		do(t, host, func() (err error) { now, err = readBridge("overlay0"); return err })
		if now.mac != before.mac {
			t.Fatalf("bridge MAC %s became %s when a port left", before.mac, now.mac)
		}
	}
}

func attrsName(i int) string { return "low" + string(rune('0'+i)) }

// DEL's two steps: DisarmContainer takes the address off at once, frees
// the interface name, takes the host end off the bridge and marks it;
// DeleteDoomedVeths removes every marked pair in one request (and only
// those), and is a no-op after.
func TestDisarmThenDeleteDoomedVeths(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	c1 := VethOwner{Network: "default", ContainerID: "c1", IfName: "eth0"}
	cl := attachAs(t, host, ctr, c1)
	var v HostVeth
	do(t, host, func() (err error) {
		// Another attachment's DEL leaves it alone.
		if v, err = DisarmContainer(ctr, "eth0", VethOwner{Network: "default", ContainerID: "c9", IfName: "eth0"}); err != nil || v != (HostVeth{}) {
			return fmt.Errorf("DisarmContainer for another attachment = %+v, %v; want nothing touched", v, err)
		}
		v, err = DisarmContainer(ctr, "eth0", c1)
		return err
	})
	if v.Name != cl.HostVeth || v.Index == 0 {
		t.Fatalf("DisarmContainer named %+v, want host veth %s", v, cl.HostVeth)
	}
	do(t, ctr, func() error {
		if _, err := netlinksafe.LinkByName("eth0"); !isLinkNotFound(err) {
			return fmt.Errorf("eth0 is still there after DisarmContainer (%v): the name must be free", err)
		}
		links, err := netlinksafe.LinkList()
		for _, l := range links {
			if l.Type() != "veth" {
				continue
			}
			addrs, aerr := netlinksafe.AddrList(l, netlink.FAMILY_V4)
			if !strings.HasPrefix(l.Attrs().Name, "ovd") || l.Attrs().Flags&net.FlagUp != 0 || len(addrs) != 0 || aerr != nil {
				return fmt.Errorf("container end after DisarmContainer: %s up=%v addrs=%v", l.Attrs().Name, l.Attrs().Flags&net.FlagUp != 0, addrs)
			}
		}
		return err
	})
	do(t, host, func() error {
		l, err := netlinksafe.LinkByName(cl.HostVeth)
		if err == nil && l.Attrs().MasterIndex != 0 {
			return fmt.Errorf("host veth %s is still a bridge port", cl.HostVeth)
		}
		return err
	})
	var held bool
	do(t, host, func() (err error) { held, err = ContainerHolds(ctr.Path(), ctrAddr.Addr()); return err })
	if held {
		t.Errorf("the container still holds %s after DisarmContainer", ctrAddr.Addr())
	}
	second, third := newNS(t), newNS(t)
	c2 := VethOwner{Network: "default", ContainerID: "c2", IfName: "eth0"}
	cl2 := attachAs(t, host, second, c2)
	cl3 := attachAs(t, host, third, VethOwner{Network: "default", ContainerID: "c3", IfName: "eth0"})
	do(t, host, func() (err error) { _, err = DisarmContainer(second, "eth0", c2); return err })
	var doomed bool
	do(t, host, func() (err error) { doomed, err = AnyDoomedVeth(); return err })
	if !doomed {
		t.Error("AnyDoomedVeth = false after two DisarmContainer")
	}
	do(t, host, DeleteDoomedVeths)
	do(t, host, func() error {
		for _, gone := range []string{cl.HostVeth, cl2.HostVeth} {
			if _, err := netlinksafe.LinkByName(gone); !isLinkNotFound(err) {
				return fmt.Errorf("host veth %s still exists after DeleteDoomedVeths", gone)
			}
		}
		if _, err := netlinksafe.LinkByName(cl3.HostVeth); err != nil {
			return fmt.Errorf("DeleteDoomedVeths took a live attachment's veth: %w", err)
		}
		if doomed, err := AnyDoomedVeth(); err != nil || doomed {
			return fmt.Errorf("AnyDoomedVeth after deleting = %v, %v", doomed, err)
		}
		return DeleteDoomedVeths()
	})
	do(t, host, func() (err error) { v, err = DisarmContainer(ctr, "eth0", c1); return err })
	if v != (HostVeth{}) {
		t.Errorf("DisarmContainer after the pair is gone = %+v, want nothing to delete", v)
	}
}

// An ADD killed after it made the pair but before the port joined the
// bridge leaves a veth InspectContainer still knows as the attachment's,
// disarmed, so the next ADD can delete it.
func TestInspectKnowsOwnVethOffBridge(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	owner := VethOwner{Network: "default", ContainerID: "killed", IfName: "eth0"}
	do(t, host, func() error { return addBareVeth(ctr, owner.HostVethName(0), "eth0") })
	var ex ExistingAttachment
	do(t, host, func() (err error) { ex, err = InspectContainer(ctr.Path(), "eth0", "overlay0", owner); return err })
	if ex.HostVeth != owner.HostVethName(0) || !ex.Unfinished {
		t.Errorf("InspectContainer = %+v, want the attachment's own veth, unfinished", ex)
	}
	other := VethOwner{Network: "default", ContainerID: "someone-else", IfName: "eth0"}
	var err error
	do(t, host, func() error { _, err = InspectContainer(ctr.Path(), "eth0", "overlay0", other); return nil })
	var foreign *ForeignIfError
	if !errors.As(err, &foreign) {
		t.Errorf("InspectContainer for another attachment: %v, want a *ForeignIfError", err)
	}
}

// An ADD killed between the address and the default route leaves an
// interface that looks wired but is not: InspectContainer says unfinished.
func TestInspectKnowsAddressWithoutRoute(t *testing.T) {
	host, ctr := hostWithBridge(t), newNS(t)
	owner := VethOwner{Network: "default", ContainerID: "c1", IfName: "eth0"}
	attachAs(t, host, ctr, owner)
	inspect := func() (ex ExistingAttachment) {
		do(t, host, func() (err error) { ex, err = InspectContainer(ctr.Path(), "eth0", "overlay0", owner); return err })
		return ex
	}
	if ex := inspect(); ex.Unfinished || len(ex.Addrs) != 1 {
		t.Fatalf("a finished attachment: %+v", ex)
	}
	do(t, ctr, func() error {
		return netlink.RouteDel(&netlink.Route{Dst: toIPNet(mustPrefix("0.0.0.0/0")), Gw: toIP(ctrGW)})
	})
	if ex := inspect(); !ex.Unfinished {
		t.Errorf("without its default route: %+v, want unfinished", ex)
	}
}

// addBareVeth makes a pair the way a killed ADD leaves it: host end named
// name in the calling namespace, not aliased or enslaved, container end
// down without an address.
func addBareVeth(ctr nsNetNS, name, ifName string) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	return netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: ifName, PeerNamespace: netlink.NsFd(int(ctr.Fd()))})
}

// GC's part: host veths of the network whose attachment is not valid go,
// aliased or (an ADD killed before the alias) known by name; valid ones,
// other networks' and foreign veths stay.
func TestRemoveStrayVeths(t *testing.T) {
	host := hostWithBridge(t)
	own := func(id string) VethOwner { return VethOwner{Network: "default", ContainerID: id, IfName: "eth0"} }
	for _, o := range []VethOwner{own("keep"), own("gone1"), own("gone2"), {Network: "other", ContainerID: "x", IfName: "eth0"}} {
		attachAs(t, host, newNS(t), o)
	}
	killed, foreign := own("killed"), newNS(t)
	do(t, host, func() error { return addBareVeth(newNS(t), killed.HostVethName(0), "eth0") })
	do(t, host, func() error { return addBareVeth(foreign, "veth1234abcd", "eth0") })

	var failed []VethOwner
	do(t, host, func() (err error) { failed, err = RemoveStrayVeths("default", []VethOwner{own("keep")}); return err })
	if len(failed) != 0 {
		t.Errorf("failed = %v", failed)
	}
	var names []string
	do(t, host, func() (err error) { names, err = vethNames(); return err })
	slices.Sort(names)
	want := []string{own("keep").HostVethName(0), VethOwner{Network: "other", ContainerID: "x", IfName: "eth0"}.HostVethName(0), "veth1234abcd"}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("veths after RemoveStrayVeths: %v, want %v", names, want)
	}
}

func TestVethAlias(t *testing.T) {
	o := VethOwner{Network: "blue.2", ContainerID: "k8s_pod-1.a", IfName: "net1"}
	if got := o.Alias(); got != "overlay:blue.2:k8s_pod-1.a:net1" {
		t.Errorf("Alias = %q", got)
	}
	if back, ok := ParseVethAlias(o.Alias()); !ok || back != o {
		t.Errorf("ParseVethAlias(%q) = %+v, %v", o.Alias(), back, ok)
	}
	long := VethOwner{Network: "default", ContainerID: string(bytes.Repeat([]byte("a"), 300)), IfName: "eth0"}
	if a := long.Alias(); len(a) > maxAlias || !ownedBy(a, "default") {
		t.Errorf("long alias %q (%d bytes)", a, len(a))
	}
	if _, ok := ParseVethAlias(long.Alias()); ok {
		t.Error("a hashed alias parsed as an attachment")
	}
	if n := o.HostVethName(0); len(n) != 15 || !isHostVethName(n) || n == o.HostVethName(1) {
		t.Errorf("HostVethName = %q, %q", n, o.HostVethName(1))
	}
	for _, n := range []string{"veth1234abcd", "ovl0123", "ovl0123456789AB", "ovl0123456789abx"} {
		if isHostVethName(n) {
			t.Errorf("isHostVethName(%q) = true", n)
		}
	}
}

// A veth made before host veths had names and aliases of their attachment
// (an upgrade with containers running) is still DEL's when it is a port of
// the network's own bridge (overlayd's alias on it), and never otherwise.
func TestDisarmLegacyVeth(t *testing.T) {
	for _, tt := range []struct {
		name        string
		bridgeOwner string
		want        bool
	}{
		{"on the network's bridge", "default", true},
		{"on another bridge", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			host, ctr := newNS(t), newNS(t)
			do(t, host, func() error {
				if err := EnsureBridge(BridgeSpec{Name: "overlay0", Gateway: mustPrefix("10.244.1.1/24"), MTU: 1450, Owner: tt.bridgeOwner}); err != nil {
					return err
				}
				if err := addBareVeth(ctr, "veth0123abcd", "eth0"); err != nil {
					return err
				}
				br, err := netlinksafe.LinkByName("overlay0")
				if err != nil {
					return err
				}
				l, err := netlinksafe.LinkByName("veth0123abcd")
				if err != nil {
					return err
				}
				return netlink.LinkSetMaster(l, br)
			})
			do(t, ctr, func() error {
				l, err := netlinksafe.LinkByName("eth0")
				if err != nil {
					return err
				}
				return netlink.AddrAdd(l, &netlink.Addr{IPNet: toIPNet(ctrAddr)})
			})
			var v HostVeth
			do(t, host, func() (err error) {
				v, err = DisarmContainer(ctr, "eth0", VethOwner{Network: "default", ContainerID: "old", IfName: "eth0"})
				return err
			})
			if got := v.Name == "veth0123abcd"; got != tt.want {
				t.Errorf("DisarmContainer = %+v, want disarmed: %v", v, tt.want)
			}
			var held bool
			do(t, host, func() (err error) { held, err = ContainerHolds(ctr.Path(), ctrAddr.Addr()); return err })
			if held == tt.want {
				t.Errorf("container still holds its address: %v, want %v", held, !tt.want)
			}
		})
	}
}
