package datapath

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// readVXLAN returns the device and its IPv4 addresses as the kernel has them.
func readVXLAN(name string) (*netlink.Vxlan, []string, error) {
	link, err := netlinksafe.LinkByName(name)
	if err != nil {
		return nil, nil, err
	}
	addrs, err := netlinksafe.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, nil, err
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	v, _ := link.(*netlink.Vxlan)
	return v, out, nil
}

// checkVXLAN compares the device with spec.
func checkVXLAN(t *testing.T, v *netlink.Vxlan, addrs []string, spec VXLANSpec) {
	t.Helper()
	if v == nil {
		t.Fatalf("%s is not a vxlan device", spec.Name)
	}
	if v.VxlanId != int(spec.VNI) || v.Port != int(spec.Port) || fromIP(v.SrcAddr) != spec.LocalIP || v.Learning {
		t.Errorf("vxlan id=%d port=%d local=%s learning=%v, want id=%d port=%d local=%s learning=false",
			v.VxlanId, v.Port, v.SrcAddr, v.Learning, spec.VNI, spec.Port, spec.LocalIP)
	}
	if spec.UnderlayIndex != 0 && v.VtepDevIndex != spec.UnderlayIndex {
		t.Errorf("parent index %d, want %d", v.VtepDevIndex, spec.UnderlayIndex)
	}
	if !bytes.Equal(v.HardwareAddr, spec.MAC) || v.MTU != spec.MTU || v.Flags&net.FlagUp == 0 {
		t.Errorf("mac=%s mtu=%d flags=%v, want mac=%s mtu=%d up", v.HardwareAddr, v.MTU, v.Flags, spec.MAC, spec.MTU)
	}
	if len(addrs) != 1 || addrs[0] != spec.Address.String() {
		t.Errorf("addresses %v, want only %s", addrs, spec.Address)
	}
	if g := fromIP(v.Group); g.IsValid() && !g.IsUnspecified() {
		t.Errorf("remote/group %s set, want none", g)
	}
}

func TestEnsureVXLANIsIdempotent(t *testing.T) {
	host, spec := hostWithVXLAN(t) // first EnsureVXLAN ran here
	var first, second VXLANResult
	var v *netlink.Vxlan
	var addrs []string
	do(t, host, func() (err error) {
		if first, err = ReconcileVXLAN(spec); err != nil {
			return err
		}
		if second, err = ReconcileVXLAN(spec); err != nil {
			return err
		}
		v, addrs, err = readVXLAN(spec.Name)
		return err
	})
	if first.Index != second.Index || first.Created || second.Created || first.Replaced != "" {
		t.Errorf("repeat EnsureVXLAN changed the device: %+v then %+v", first, second)
	}
	checkVXLAN(t, v, addrs, spec)
}

func TestEnsureVXLANRecreatesIncompatibleDevice(t *testing.T) {
	tests := []struct {
		name   string
		change func(*VXLANSpec)
		reason string
	}{
		{"VNI", func(s *VXLANSpec) { s.VNI = 2 }, "VNI 1, want 2"},
		{"port", func(s *VXLANSpec) { s.Port = 4789 }, "port 8472, want 4789"},
		{"local IP", func(s *VXLANSpec) { s.LocalIP = s.LocalIP.Next() }, "local IP 198.18.0.1, want 198.18.0.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, spec := hostWithVXLAN(t)
			var before, after VXLANResult
			var v *netlink.Vxlan
			var addrs []string
			changed := spec
			tt.change(&changed)
			do(t, host, func() (err error) {
				if before, err = ReconcileVXLAN(spec); err != nil {
					return err
				}
				if after, err = ReconcileVXLAN(changed); err != nil {
					return err
				}
				v, addrs, err = readVXLAN(spec.Name)
				return err
			})
			if after.Index == before.Index || !after.Created || !strings.Contains(after.Replaced, tt.reason) {
				t.Errorf("changed %s: result %+v (before %+v), want a new device and reason %q", tt.name, after, before, tt.reason)
			}
			checkVXLAN(t, v, addrs, changed)
		})
	}
}

func TestEnsureVXLANReplacesNonVXLANLink(t *testing.T) {
	host := newNS(t)
	spec := vxlanSpec(1)
	var res VXLANResult
	var v *netlink.Vxlan
	var addrs []string
	do(t, host, func() (err error) {
		if _, err = addUnderlay("ul0", testUnderlay); err != nil {
			return err
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = spec.Name
		if err = netlink.LinkAdd(&netlink.Bridge{LinkAttrs: attrs}); err != nil {
			return err
		}
		if res, err = ReconcileVXLAN(spec); err != nil {
			return err
		}
		v, addrs, err = readVXLAN(spec.Name)
		return err
	})
	if !strings.Contains(res.Replaced, "not vxlan") {
		t.Errorf("Replaced = %q, want it to say the old link was not vxlan", res.Replaced)
	}
	checkVXLAN(t, v, addrs, spec)
}

// A compatible device keeps its index but gets the wanted MAC, MTU and
// address back, and loses a stray address, without being recreated.
func TestEnsureVXLANRepairsInPlace(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	var before, after VXLANResult
	var v *netlink.Vxlan
	var addrs []string
	do(t, host, func() (err error) {
		if before, err = ReconcileVXLAN(spec); err != nil {
			return err
		}
		link, err := netlinksafe.LinkByName(spec.Name)
		if err != nil {
			return err
		}
		if err = netlink.LinkSetHardwareAddr(link, net.HardwareAddr{2, 0xcc, 0, 0, 0, 7}); err != nil {
			return err
		}
		if err = netlink.LinkSetMTU(link, 1300); err != nil {
			return err
		}
		if err = netlink.AddrAdd(link, &netlink.Addr{IPNet: toIPNet(mustPrefix("10.244.77.0/32"))}); err != nil {
			return err
		}
		if err = netlink.LinkSetDown(link); err != nil {
			return err
		}
		if after, err = ReconcileVXLAN(spec); err != nil {
			return err
		}
		v, addrs, err = readVXLAN(spec.Name)
		return err
	})
	if after.Index != before.Index || after.Created {
		t.Errorf("repair recreated the device: %+v then %+v", before, after)
	}
	checkVXLAN(t, v, addrs, spec)
}

func TestEnsureVXLANRejectsBadSpec(t *testing.T) {
	bad := map[string]func(*VXLANSpec){
		"long name": func(s *VXLANSpec) { s.Name = "overlay.12345678" },
		"VNI 0":     func(s *VXLANSpec) { s.VNI = 0 },
		"port 0":    func(s *VXLANSpec) { s.Port = 0 },
		"no MAC":    func(s *VXLANSpec) { s.MAC = nil },
		"tiny MTU":  func(s *VXLANSpec) { s.MTU = 10 },
	}
	for name, change := range bad {
		spec := vxlanSpec(1)
		change(&spec)
		if err := validateVXLANSpec(spec); err == nil {
			t.Errorf("%s: spec accepted", name)
		}
	}
}

func TestVXLANIncompat(t *testing.T) {
	spec := vxlanSpec(1)
	spec.UnderlayIndex = 7
	good := func() *netlink.Vxlan {
		return &netlink.Vxlan{VxlanId: 1, Port: 8472, SrcAddr: toIP(spec.LocalIP), VtepDevIndex: 7}
	}
	if why := vxlanIncompat(good(), spec); why != "" {
		t.Errorf("matching device reported incompatible: %s", why)
	}
	tests := map[string]struct {
		change func(*netlink.Vxlan)
		reason string
	}{
		"parent":   {func(v *netlink.Vxlan) { v.VtepDevIndex = 3 }, "parent link index 3, want 7"},
		"learning": {func(v *netlink.Vxlan) { v.Learning = true }, "learning on"},
		"group":    {func(v *netlink.Vxlan) { v.Group = net.ParseIP("239.1.1.1") }, "remote/group 239.1.1.1"},
		"external": {func(v *netlink.Vxlan) { v.FlowBased = true }, "flow-based"},
		"two":      {func(v *netlink.Vxlan) { v.VxlanId, v.Port = 5, 4789 }, "VNI 5, want 1; port 4789, want 8472"},
	}
	for name, tt := range tests {
		v := good()
		tt.change(v)
		if why := vxlanIncompat(v, spec); !strings.Contains(why, tt.reason) {
			t.Errorf("%s: reason %q, want it to contain %q", name, why, tt.reason)
		}
	}
	spec.UnderlayIndex = 0
	v := good()
	v.VtepDevIndex = 3
	if why := vxlanIncompat(v, spec); why != "" {
		t.Errorf("spec without underlay index still compared the parent: %s", why)
	}
	if why := vxlanIncompat(&netlink.Bridge{}, spec); !strings.Contains(why, "type bridge, not vxlan") {
		t.Errorf("bridge: reason %q", why)
	}
}
