package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"net"
)

// ValidatePeer reports why a peer cannot be programmed, or nil. The
// datapath is IPv4 only: subnet, VTEP IP and public IP must all be IPv4,
// and the VTEP MAC an Ethernet address. A direct peer needs nothing more:
// its route goes via its (IPv4) public IP.
func ValidatePeer(p Peer) error {
	var errs []error
	if !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() {
		errs = append(errs, fmt.Errorf("subnet %q is not an IPv4 prefix", p.Subnet))
	}
	if !p.VTEPIP.Is4() {
		errs = append(errs, fmt.Errorf("VTEP IP %q is not an IPv4 address", p.VTEPIP))
	}
	if err := validateVTEPMAC(p.VTEPMAC); err != nil {
		errs = append(errs, err)
	}
	if !p.PublicIP.Is4() {
		errs = append(errs, fmt.Errorf("public IP %q is not an IPv4 address", p.PublicIP))
	}
	if p.Mode != ModeVXLAN && p.Mode != ModeDirect {
		errs = append(errs, fmt.Errorf("mode %d is unknown", p.Mode))
	}
	for _, r := range p.Routes {
		if !r.IsValid() || !r.Addr().Is4() || r.Bits() == 0 {
			errs = append(errs, fmt.Errorf("route %q is not an IPv4 prefix other than the default route", r))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("peer %s: %w", p.Subnet, err)
	}
	return nil
}

// validateVTEPMAC rejects what the VXLAN FDB would treat specially: the
// all-zeros MAC is the flooding default and a multicast MAC is never a
// single remote.
func validateVTEPMAC(mac net.HardwareAddr) error {
	switch {
	case len(mac) != 6:
		return fmt.Errorf("VTEP MAC %q is not a 6-byte Ethernet address", mac)
	case bytes.Equal(mac, make(net.HardwareAddr, 6)):
		return errors.New("VTEP MAC is all zeros (the VXLAN flooding entry)")
	case mac[0]&1 != 0:
		return fmt.Errorf("VTEP MAC %s is a multicast address", mac)
	}
	return nil
}
