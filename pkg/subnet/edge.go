package subnet

import (
	"fmt"
	"math"
	"net/netip"

	"github.com/overlaynet/overlay/pkg/netconf"
)

// Describe names a lease's holder for messages: hostname, address and
// public IP.
func (l Lease) Describe() string {
	name := l.Hostname
	if name == "" {
		name = "host " + l.HostID
	}
	kind, addr := KindHost, l.Subnet.String()
	if l.Kind == KindEdge {
		kind, addr = KindEdge, l.Subnet.Addr().String()
	}
	return fmt.Sprintf("%s %s (%s, public IP %s)", kind, name, addr, l.PublicIP)
}

// StrandedBy reports the first live lease that cfg would leave outside its
// kind's range because of the edge range: a container subnet inside the
// new edge range, or an edge address outside it. nil means cfg fits.
func StrandedBy(cfg netconf.Config, leases []Lease) error {
	for _, l := range leases {
		switch {
		case l.Kind == KindHost && cfg.EdgeCIDR.IsValid() && l.Subnet.Overlaps(cfg.EdgeCIDR):
			return fmt.Errorf(`edgeCIDR %s overlaps container subnet %s, leased by %s: pick an edge range no host holds (see overlayctl leases), or move that host off it first`,
				cfg.EdgeCIDR, l.Subnet, l.Describe())
		case l.Kind == KindEdge && !cfg.ContainsEdge(l.Subnet):
			return fmt.Errorf(`edge address %s of %s would lie outside the edge range %s: stop that edge host first (its lease then ends after its TTL), or keep an edge range that holds it`,
				l.Subnet.Addr(), l.Describe(), edgeRangeName(cfg))
		}
	}
	return nil
}

// strandedReservation is StrandedBy for members that went away recently:
// their slot is still reserved for them (quarantine) so they get it back,
// and an edge range moved over (or away from) it would break that promise.
func strandedReservation(cfg netconf.Config, reserved map[netip.Prefix]reservation, leases []Lease) error {
	live := make(map[netip.Prefix]bool, len(leases))
	for _, l := range leases {
		live[l.Subnet] = true
	}
	for s, r := range reserved {
		hostID := r.HostID
		if live[s] {
			continue // StrandedBy judged the lease itself
		}
		edge := s.Bits() == 32
		switch {
		case !edge && cfg.EdgeCIDR.IsValid() && s.Overlaps(cfg.EdgeCIDR):
			return fmt.Errorf("edgeCIDR %s overlaps container subnet %s, reserved for host %s, which went away recently and gets it back if it returns within its quarantine: pick another edge range, or release it with overlayctl lease release %s",
				cfg.EdgeCIDR, s, hostID, s)
		case edge && !cfg.ContainsEdge(s):
			return fmt.Errorf("edge address %s, reserved for edge host %s, which went away recently, would lie outside the edge range %s: keep a range that holds it, or release it with overlayctl lease release %s",
				s.Addr(), hostID, edgeRangeName(cfg), s)
		}
	}
	return nil
}

func edgeRangeName(cfg netconf.Config) string {
	if !cfg.EdgeCIDR.IsValid() {
		return "(none: edgeCIDR is unset)"
	}
	return cfg.EdgeCIDR.String()
}

// AdvertiseConflict checks the LANs a gateway wants to advertise against
// the network and the other gateways' live leases: a LAN overlapping the
// overlay, or one another gateway already advertises, would send traffic
// two ways. The error names both prefixes and the other gateway.
func AdvertiseConflict(cfg netconf.Config, self Record, leases []Lease) error {
	advertise := self.Advertise
	for i, p := range advertise {
		if err := ValidateAdvertised(p); err != nil {
			return err
		}
		if p.Overlaps(cfg.Network) {
			return fmt.Errorf("advertised %s overlaps the overlay network %s; advertise only the legacy LAN behind this gateway", p, cfg.Network)
		}
		for _, q := range advertise[:i] {
			if p.Overlaps(q) {
				return fmt.Errorf("advertised %s overlaps %s, advertised too; give each LAN once", p, q)
			}
		}
		if p.Contains(self.PublicIP) {
			return fmt.Errorf("advertised %s holds this machine's own underlay address %s; advertise the LAN behind this gateway, not the one its VXLAN packets leave by", p, self.PublicIP)
		}
		for _, l := range leases {
			if l.HostID == self.HostID {
				continue
			}
			if p.Contains(l.PublicIP) {
				return fmt.Errorf("advertised %s holds the underlay address %s of %s: VXLAN packets to it would be routed into the overlay", p, l.PublicIP, l.Describe())
			}
			for _, q := range l.Advertise {
				if p.Overlaps(q) {
					return fmt.Errorf("advertised %s overlaps %s, already advertised by gateway %s; each LAN must be advertised by one gateway",
						p, q, l.Describe())
				}
			}
		}
	}
	return nil
}

// UnderlayInLAN refuses a member whose underlay address lies inside a LAN
// a gateway advertises: members route that LAN through the gateway, so
// this member's VXLAN packets would go there. A gateway whose lease is
// younger than this member's own live key (a restart) does not count:
// members drop that gateway's LAN instead.
func UnderlayInLAN(self Record, leases []Lease) error {
	ownRev := int64(math.MaxInt64)
	for _, l := range leases {
		if l.HostID == self.HostID && l.Kind == self.Kind {
			ownRev = l.CreateRevision
		}
	}
	for _, l := range leases {
		if l.HostID == self.HostID || l.CreateRevision > ownRev {
			continue
		}
		for _, q := range l.Advertise {
			if q.Contains(self.PublicIP) {
				return fmt.Errorf("this machine's underlay address %s lies inside %s, which gateway %s advertises: members route that LAN through the gateway, so VXLAN packets to this machine would go there; use an underlay address outside it (--iface, --public-ip)",
					self.PublicIP, q, l.Describe())
			}
		}
	}
	return nil
}
