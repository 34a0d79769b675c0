package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/overlaynet/overlay/pkg/subnet"
)

// checkMembership refuses, before anything is leased or built, a machine
// that cannot join as asked: an edge host in a network without an edge
// range, or on a machine still wired as a container host; a member whose
// underlay lies inside an older gateway's LAN; a gateway whose LANs the
// overlay, another gateway or a member's underlay already covers, or that
// has no route to them itself. Members check advertisements again when
// they program them (acceptedPeers): two gateways starting at once both
// pass this check, and the one whose key came first keeps the LAN.
func (a *Agent) checkMembership(ctx context.Context) error {
	l := a.local
	if l.Kind == subnet.KindEdge {
		if err := a.checkEdgeHost(); err != nil {
			return err
		}
	}
	leases, _, err := a.deps.Etcd.Leases(ctx, a.cfg.Network)
	if err != nil {
		return fmt.Errorf("list leases to check this machine's membership: %w", err)
	}
	self := subnet.Record{Kind: l.Kind, HostID: l.HostID, PublicIP: l.PublicIP, Advertise: l.Advertise}
	if err := subnet.UnderlayInLAN(self, leases); err != nil {
		return err
	}
	if len(l.Advertise) == 0 {
		return nil
	}
	if err := subnet.AdvertiseConflict(l.Config, self, leases); err != nil {
		return fmt.Errorf("--advertise: %w", err)
	}
	return a.checkGatewayRoutes()
}

func (a *Agent) checkEdgeHost() error {
	l := a.local
	if !l.Config.EdgeCIDR.IsValid() {
		return fmt.Errorf("network %s has no edge range, so an edge host cannot join it; reserve one with: overlayctl network set %s --cidr %s --edge-cidr CIDR (whole subnets inside the network, e.g. its last /%d)",
			a.cfg.Network, a.cfg.Network, l.Config.Network, l.Config.SubnetLen)
	}
	owned, err := a.deps.Datapath.OwnedLinks(a.cfg.Network)
	if err != nil {
		return fmt.Errorf("look for devices of network %s: %w", a.cfg.Network, err)
	}
	for _, o := range owned {
		if o.Type == "bridge" {
			return fmt.Errorf("bridge %s of network %s is still here: this machine was a container host, and its containers would lose the network; stop them, run `overlayctl --network %s teardown`, then start overlayd --mode edge",
				o.Name, a.cfg.Network, a.cfg.Network)
		}
	}
	return nil
}

// checkGatewayRoutes requires a route of this machine's own to each LAN
// it advertises: a gateway forwards to its LANs itself, and without such a
// route (a typo, the LAN interface down) it would send the members'
// traffic for the LAN out of its default route.
func (a *Agent) checkGatewayRoutes() error {
	if missing := a.unroutedLANs(); len(missing) > 0 {
		return fmt.Errorf("--advertise %s: this machine has no route to it (no interface on that LAN, or it is down); a gateway must reach the LANs it advertises itself",
			missing[0])
	}
	return nil
}

// unroutedLANs are the advertised LANs none of this host's own routes
// reaches (the default route does not count).
func (a *Agent) unroutedLANs() []netip.Prefix {
	var missing []netip.Prefix
	for _, lan := range a.local.Advertise {
		if !slices.ContainsFunc(a.local.Routes, lan.Overlaps) {
			missing = append(missing, lan)
		}
	}
	return missing
}
