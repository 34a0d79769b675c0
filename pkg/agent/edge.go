package agent

import (
	"context"
	"fmt"

	"github.com/overlaynet/overlay/pkg/subnet"
)

// checkEdge refuses to start an edge host the network has no room for, or
// a gateway whose LANs the overlay or another gateway already covers,
// before anything is leased or built. Members check advertisements again
// when they program them (acceptedPeers): two gateways starting at once
// both pass this check, and the one whose key came first keeps the LAN.
func (a *Agent) checkEdge(ctx context.Context) error {
	l := a.local
	if l.Kind != subnet.KindEdge {
		return nil
	}
	if !l.Config.EdgeCIDR.IsValid() {
		return fmt.Errorf("network %s has no edge range, so an edge host cannot join it; reserve one with: overlayctl network set %s --cidr %s --edge-cidr CIDR (whole subnets inside the network, e.g. its last /%d)",
			a.cfg.Network, a.cfg.Network, l.Config.Network, l.Config.SubnetLen)
	}
	if len(l.Advertise) == 0 {
		return nil
	}
	leases, _, err := a.deps.Etcd.Leases(ctx, a.cfg.Network)
	if err != nil {
		return fmt.Errorf("list leases to check --advertise: %w", err)
	}
	self := subnet.Record{HostID: l.HostID, PublicIP: l.PublicIP, Advertise: l.Advertise}
	if err := subnet.AdvertiseConflict(l.Config, self, leases); err != nil {
		return fmt.Errorf("--advertise: %w", err)
	}
	return nil
}
