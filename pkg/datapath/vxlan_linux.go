package datapath

import (
	"bytes"
	"fmt"
	"net"
	"strings"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
)

// EnsureVXLAN creates or repairs the VXLAN device and returns its index.
// See ReconcileVXLAN, which also says what it did.
func EnsureVXLAN(spec VXLANSpec) (int, error) {
	res, err := ReconcileVXLAN(spec)
	return res.Index, err
}

// ReconcileVXLAN makes the device match spec. A compatible existing device
// (same VNI, port, local IP, learning off, same parent when spec names one)
// is kept, so the peers programmed on it survive a daemon restart; anything
// else of that name is deleted and recreated, and res.Replaced says why.
// Then MAC, MTU and address are set and the device is brought up.
func ReconcileVXLAN(spec VXLANSpec) (VXLANResult, error) {
	if err := validateVXLANSpec(spec); err != nil {
		return VXLANResult{}, err
	}
	link, res, err := findOrCreateVXLAN(spec)
	if err != nil {
		return VXLANResult{}, err
	}
	res.Index = link.Attrs().Index
	if err := configureVXLAN(link, spec); err != nil {
		return VXLANResult{}, err
	}
	return res, nil
}

func validateVXLANSpec(s VXLANSpec) error {
	switch {
	case s.Name == "" || len(s.Name) > 15:
		return fmt.Errorf("vxlan device name %q must have 1 to 15 bytes", s.Name)
	case s.VNI < 1 || s.VNI > 1<<24-1:
		return fmt.Errorf("vxlan %q: VNI %d not in 1-16777215", s.Name, s.VNI)
	case s.Port == 0:
		return fmt.Errorf("vxlan %q: UDP port must not be 0", s.Name)
	case !s.LocalIP.Is4():
		return fmt.Errorf("vxlan %q: local IP %q is not an IPv4 address", s.Name, s.LocalIP)
	case len(s.MAC) != 6:
		return fmt.Errorf("vxlan %q: MAC %q is not a 6-byte Ethernet address", s.Name, s.MAC)
	case s.MTU < 68:
		return fmt.Errorf("vxlan %q: MTU %d is below the IPv4 minimum 68", s.Name, s.MTU)
	case !s.Address.IsValid() || !s.Address.Addr().Is4():
		return fmt.Errorf("vxlan %q: address %q is not an IPv4 prefix", s.Name, s.Address)
	}
	return nil
}

func findOrCreateVXLAN(spec VXLANSpec) (netlink.Link, VXLANResult, error) {
	link, err := netlinksafe.LinkByName(spec.Name)
	if err != nil && !isLinkNotFound(err) {
		return nil, VXLANResult{}, fmt.Errorf("look up vxlan %q: %w", spec.Name, err)
	}
	var res VXLANResult
	if err == nil {
		if res.Replaced = vxlanIncompat(link, spec); res.Replaced == "" {
			return link, res, nil
		}
		if err := netlink.LinkDel(link); err != nil && !isAbsent(err) {
			return nil, VXLANResult{}, fmt.Errorf("delete incompatible link %q (%s): %w", spec.Name, res.Replaced, err)
		}
	}
	res.Created = true
	link, err = createVXLAN(spec)
	return link, res, err
}

// vxlanIncompat says why an existing link cannot serve as the device of
// spec, or "" if it can. These are the attributes the kernel fixes at
// creation (or that we would otherwise have to patch one by one).
func vxlanIncompat(existing netlink.Link, spec VXLANSpec) string {
	v, ok := existing.(*netlink.Vxlan)
	if !ok {
		return fmt.Sprintf("link is of type %s, not vxlan", existing.Type())
	}
	var why []string
	add := func(format string, args ...any) { why = append(why, fmt.Sprintf(format, args...)) }
	if v.VxlanId != int(spec.VNI) {
		add("VNI %d, want %d", v.VxlanId, spec.VNI)
	}
	if v.Port != int(spec.Port) {
		add("port %d, want %d", v.Port, spec.Port)
	}
	if local := fromIP(v.SrcAddr); local != spec.LocalIP {
		add("local IP %s, want %s", local, spec.LocalIP)
	}
	if spec.UnderlayIndex != 0 && v.VtepDevIndex != spec.UnderlayIndex {
		add("parent link index %d, want %d", v.VtepDevIndex, spec.UnderlayIndex)
	}
	if v.Learning {
		add("learning on, want off")
	}
	if g := fromIP(v.Group); g.IsValid() && !g.IsUnspecified() {
		add("remote/group %s set, want none (no flooding)", g)
	}
	if v.FlowBased {
		add("external (flow-based) mode, want classic")
	}
	return strings.Join(why, "; ")
}

func createVXLAN(spec VXLANSpec) (netlink.Link, error) {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = spec.Name
	attrs.MTU = spec.MTU
	attrs.HardwareAddr = spec.MAC
	v := &netlink.Vxlan{
		LinkAttrs:    attrs,
		VxlanId:      int(spec.VNI),
		VtepDevIndex: spec.UnderlayIndex,
		SrcAddr:      toIP(spec.LocalIP),
		Port:         int(spec.Port),
		Learning:     false,
	}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("create vxlan %q (VNI %d, port %d, local %s): %w",
			spec.Name, spec.VNI, spec.Port, spec.LocalIP, err)
	}
	link, err := netlinksafe.LinkByName(spec.Name)
	if err != nil {
		return nil, fmt.Errorf("look up new vxlan %q: %w", spec.Name, err)
	}
	return link, nil
}

func configureVXLAN(link netlink.Link, spec VXLANSpec) error {
	if err := ensureMAC(link, spec.MAC); err != nil {
		return err
	}
	if err := ensureMTU(link, spec.MTU); err != nil {
		return err
	}
	if err := ensureOnlyIPv4Addr(link, spec.Address); err != nil {
		return err
	}
	if err := ensureAlias(link, ownerAlias(spec.Owner)); err != nil {
		return err
	}
	return ensureUp(link)
}

// ensureMAC sets the MAC and reads it back: udev's MACAddressPolicy or a
// driver may override an address given at creation, and a VTEP MAC that
// silently differs from the one published to peers black-holes traffic.
func ensureMAC(link netlink.Link, mac net.HardwareAddr) error {
	name := link.Attrs().Name
	if bytes.Equal(link.Attrs().HardwareAddr, mac) {
		return nil
	}
	if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
		return fmt.Errorf("set MAC %s on %q: %w", mac, name, err)
	}
	got, err := netlinksafe.LinkByName(name)
	if err != nil {
		return fmt.Errorf("look up %q to verify its MAC: %w", name, err)
	}
	if have := got.Attrs().HardwareAddr; !bytes.Equal(have, mac) {
		return fmt.Errorf("MAC of %q is %s after setting %s", name, have, mac)
	}
	return nil
}
