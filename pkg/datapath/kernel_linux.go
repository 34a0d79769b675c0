package datapath

import (
	"context"
	"net/netip"
)

// Kernel is the datapath of the calling process's network namespace, as
// the agent uses it (pkg/agent.Datapath).
type Kernel struct{}

func (Kernel) FindUnderlay(ifaceOrIP string) (Underlay, error) { return FindUnderlay(ifaceOrIP) }

func (Kernel) EnsureVXLAN(spec VXLANSpec) (VXLANResult, error) { return ReconcileVXLAN(spec) }

func (Kernel) EnsureBridge(spec BridgeSpec) error { return EnsureBridge(spec) }

func (Kernel) SyncPeers(t PeerTarget, peers []Peer) (Plan, error) {
	return SyncPeersTarget(t, peers)
}

func (Kernel) RemoveOrphans(network string, t PeerTarget) ([]string, error) {
	return RemoveOrphans(network, t)
}

func (Kernel) OtherRoutes(exclude string) ([]netip.Prefix, error) { return OtherRoutes(exclude) }

func (Kernel) OwnedLinks(network string) ([]OwnedLink, error) { return OwnedLinks(network) }

func (Kernel) EnableIPv4Forwarding() error { return EnableIPv4Forwarding() }

func (Kernel) IPv4Forwarding() (bool, error) { return IPv4Forwarding() }

func (Kernel) Watch(ctx context.Context, watched func() []string, changed func(string)) {
	Watch(ctx, watched, changed)
}
