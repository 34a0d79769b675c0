package datapath

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

type bridgeState struct {
	isBridge bool
	index    int
	mtu      int
	up       bool
	mac      string
	addrs    []string
}

func readBridge(name string) (bridgeState, error) {
	link, err := netlinksafe.LinkByName(name)
	if err != nil {
		return bridgeState{}, err
	}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return bridgeState{}, err
	}
	a := link.Attrs()
	s := bridgeState{index: a.Index, mtu: a.MTU, up: a.Flags&net.FlagUp != 0, mac: a.HardwareAddr.String()}
	_, s.isBridge = link.(*netlink.Bridge)
	for _, ad := range addrs {
		s.addrs = append(s.addrs, ad.IPNet.String())
	}
	return s, nil
}

func TestEnsureBridge(t *testing.T) {
	host := newNS(t)
	old := BridgeSpec{Name: "overlay0", Gateway: mustPrefix("10.244.3.1/24"), MTU: 1450}
	renewed := BridgeSpec{Name: "overlay0", Gateway: mustPrefix("10.244.7.1/24"), MTU: 1400}
	var first, again, moved bridgeState
	do(t, host, func() (err error) {
		if err = EnsureBridge(old); err != nil {
			return err
		}
		if first, err = readBridge("overlay0"); err != nil {
			return err
		}
		if err = EnsureBridge(old); err != nil {
			return err
		}
		if again, err = readBridge("overlay0"); err != nil {
			return err
		}
		if err = EnsureBridge(renewed); err != nil {
			return err
		}
		moved, err = readBridge("overlay0")
		return err
	})
	if !first.isBridge || !first.up || first.mtu != 1450 || strings.Join(first.addrs, ",") != "10.244.3.1/24" {
		t.Errorf("after first EnsureBridge: %+v", first)
	}
	if again.index != first.index || again.mac != first.mac || strings.Join(again.addrs, ",") != "10.244.3.1/24" {
		t.Errorf("second EnsureBridge changed the bridge: %+v -> %+v", first, again)
	}
	if moved.index != first.index || moved.mtu != 1400 || strings.Join(moved.addrs, ",") != "10.244.7.1/24" {
		t.Errorf("after a new subnet: %+v, want only 10.244.7.1/24 and MTU 1400 on the same bridge", moved)
	}
}

// Once ports (container veths, created with the overlay MTU) hang off the
// bridge, the kernel keeps its MTU at theirs; EnsureBridge leaves it.
func TestEnsureBridgeKeepsMTUWithPorts(t *testing.T) {
	host := newNS(t)
	spec := BridgeSpec{Name: "overlay0", Gateway: mustPrefix("10.244.3.1/24"), MTU: 1450}
	var st bridgeState
	do(t, host, func() (err error) {
		if err = EnsureBridge(spec); err != nil {
			return err
		}
		port, err := addUnderlay("port0", "198.18.5.1/24")
		if err != nil {
			return err
		}
		if err = netlink.LinkSetMTU(port, 1450); err != nil {
			return err
		}
		br, err := netlinksafe.LinkByName("overlay0")
		if err != nil {
			return err
		}
		if err = netlink.LinkSetMaster(port, br); err != nil {
			return err
		}
		spec.MTU = 1300
		if err = EnsureBridge(spec); err != nil {
			return err
		}
		st, err = readBridge("overlay0")
		return err
	})
	if st.mtu != 1450 {
		t.Errorf("bridge MTU %d after EnsureBridge with a port attached, want 1450 kept", st.mtu)
	}
}

// Several CNI plugin processes create the bridge at once: all succeed.
// Callers start together, over several rounds, so some lose the creation race.
func TestEnsureBridgeConcurrent(t *testing.T) {
	host := newNS(t)
	spec := BridgeSpec{Name: "overlay0", Gateway: mustPrefix("10.244.3.1/24"), MTU: 1450}
	for round := range 20 {
		errs := make([]error, 6)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range errs {
			wg.Go(func() {
				errs[i] = host.Do(func(nsNetNS) error {
					<-start
					return EnsureBridge(spec)
				})
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d caller %d: %v", round, i, err)
			}
		}
		do(t, host, func() error { return deleteLink("overlay0", "bridge") })
	}
}

func TestEnsureBridgeRefusesNonBridge(t *testing.T) {
	host := newNS(t)
	var err error
	do(t, host, func() error {
		if _, e := addUnderlay("overlay0", "198.18.5.1/24"); e != nil {
			return e
		}
		err = EnsureBridge(BridgeSpec{Name: "overlay0", Gateway: mustPrefix("10.244.3.1/24"), MTU: 1450})
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "not a bridge") {
		t.Errorf("EnsureBridge over a veth: err = %v, want 'not a bridge'", err)
	}
}

// CheckBridge only looks: it reports a missing bridge and a bridge without
// the wanted gateway (prefix length included) as the typed errors the CNI
// plugin turns into "try again later", and leaves the bridge as it was.
func TestCheckBridge(t *testing.T) {
	host := newNS(t)
	gw := mustPrefix("10.244.3.1/24")
	var missing, ok, otherGW, otherLen error
	var before, after bridgeState
	do(t, host, func() (err error) {
		missing = CheckBridge("overlay0", gw)
		if err = EnsureBridge(BridgeSpec{Name: "overlay0", Gateway: gw, MTU: 1450}); err != nil {
			return err
		}
		if before, err = readBridge("overlay0"); err != nil {
			return err
		}
		ok = CheckBridge("overlay0", gw)
		otherGW = CheckBridge("overlay0", mustPrefix("10.244.7.1/24"))
		otherLen = CheckBridge("overlay0", mustPrefix("10.244.3.1/25"))
		after, err = readBridge("overlay0")
		return err
	})
	var bm *BridgeMissingError
	if !errors.As(missing, &bm) || bm.Name != "overlay0" {
		t.Errorf("CheckBridge without a bridge: %v, want a *BridgeMissingError", missing)
	}
	if ok != nil {
		t.Errorf("CheckBridge with the gateway in place: %v", ok)
	}
	for _, err := range []error{otherGW, otherLen} {
		var bg *BridgeGatewayError
		if !errors.As(err, &bg) || len(bg.Have) != 1 || bg.Have[0] != gw {
			t.Errorf("CheckBridge for another gateway: %v, want a *BridgeGatewayError listing %s", err, gw)
		}
	}
	if !slices.Equal(before.addrs, after.addrs) || before.mtu != after.mtu {
		t.Errorf("CheckBridge changed the bridge: %+v -> %+v", before, after)
	}
}

func TestEnableIPv4Forwarding(t *testing.T) {
	host := newNS(t)
	var before, after, again []byte
	do(t, host, func() (err error) {
		if before, err = os.ReadFile(ipForwardPath); err != nil {
			return err
		}
		if err = EnableIPv4Forwarding(); err != nil {
			return err
		}
		if after, err = os.ReadFile(ipForwardPath); err != nil {
			return err
		}
		if err = EnableIPv4Forwarding(); err != nil {
			return err
		}
		again, err = os.ReadFile(ipForwardPath)
		return err
	})
	if string(before) != "0\n" {
		t.Errorf("fresh namespace has ip_forward=%q, test assumes 0", before)
	}
	if string(after) != "1\n" || string(again) != "1\n" {
		t.Errorf("ip_forward after enabling: %q then %q, want 1", after, again)
	}
}

// TeardownNetwork by name (devices of releases that set no alias): removes
// them, is idempotent, and refuses a link of another type.
func TestTeardownNetworkByName(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	var errAgain, errWrongType error
	var left []string
	do(t, host, func() (err error) {
		if err = EnsureBridge(BridgeSpec{Name: "overlay0", Gateway: mustPrefix("10.244.1.1/24"), MTU: 1450}); err != nil {
			return err
		}
		named := []OwnedLink{{Name: spec.Name, Type: "vxlan"}, {Name: "overlay0", Type: "bridge"}}
		if _, err = TeardownNetwork("default", netip.Prefix{}, named...); err != nil {
			return err
		}
		_, errAgain = TeardownNetwork("default", netip.Prefix{}, named...)
		_, errWrongType = TeardownNetwork("default", netip.Prefix{}, OwnedLink{Name: "ul0", Type: "vxlan"})
		links, err := netlinksafe.LinkList()
		for _, l := range links {
			left = append(left, l.Attrs().Name)
		}
		return err
	})
	if errAgain != nil {
		t.Errorf("second RemoveNetwork: %v", errAgain)
	}
	if errWrongType == nil || !strings.Contains(errWrongType.Error(), "not vxlan") {
		t.Errorf("RemoveNetwork on the underlay veth: err = %v, want a refusal", errWrongType)
	}
	if got := strings.Join(left, ","); strings.Contains(got, spec.Name) || strings.Contains(got, "overlay0") || !strings.Contains(got, "ul0") {
		t.Errorf("links after RemoveNetwork: %s", got)
	}
}
