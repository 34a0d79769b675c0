package agent

import (
	"context"
	"net/netip"
	"time"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/probe"
)

// Datapath is what the agent asks of the kernel. pkg/datapath's Kernel
// implements it on the process's network namespace; tests use a recording
// fake, so the agent's concurrent logic is tested without root.
type Datapath interface {
	FindUnderlay(ifaceOrIP string) (datapath.Underlay, error)
	EnsureVXLAN(spec datapath.VXLANSpec) (datapath.VXLANResult, error)
	EnsureBridge(spec datapath.BridgeSpec) error
	// SyncPeers programs the peers: VXLAN routes, neighbours and FDB
	// entries on t.Device, direct routes on t.Underlay.
	SyncPeers(t datapath.PeerTarget, peers []datapath.Peer) (datapath.Plan, error)
	// RemoveOrphans removes the network's devices other than t.Device and
	// our routes inside t.Range on devices other than t.Device and
	// t.Underlay; it says what it removed.
	RemoveOrphans(network string, t datapath.PeerTarget) ([]string, error)
	// OtherRoutes lists this host's own routes (all but those on device
	// exclude, ours and the default route): advertised LANs must not
	// shadow them.
	OtherRoutes(exclude string) ([]netip.Prefix, error)
	// OwnedLinks lists the links carrying network's owner alias.
	OwnedLinks(network string) ([]datapath.OwnedLink, error)
	EnableIPv4Forwarding() error
	IPv4Forwarding() (bool, error)
	// Watch calls changed for kernel events about the watched devices
	// until ctx ends.
	Watch(ctx context.Context, watched func() []string, changed func(reason string))
	// Census counts what the kernel holds for t's peers against the
	// wanted ones, read from the kernel (the metrics).
	Census(t datapath.PeerTarget, peers []datapath.Peer) (datapath.Census, error)
	// TxChecksumOffload and SetTxChecksumOffload read and switch tx
	// checksum offload on a device (--fix-checksum-offload).
	TxChecksumOffload(device string) (bool, error)
	SetTxChecksumOffload(device string, on bool) error
}

// Prober probes every peer through the overlay and on the underlay at a
// bounded rate (pkg/probe.Prober). Tests give a fake: a real one sends
// ICMP in the process's namespace.
type Prober interface {
	SetTargets([]probe.Target)
	Results() []probe.Result
	// Changes signals that some peer's state changed; Transitions says
	// which (each change once).
	Changes() <-chan struct{}
	Transitions() []probe.Transition
	PeerInterval() time.Duration
	Run(ctx context.Context) error
}

// Firewall keeps the FORWARD rules of one network: accept its traffic,
// and drop what it sends to the other networks this host serves
// (isolate), so networks are isolated from each other.
type Firewall interface {
	Ensure(network netip.Prefix, isolate []netip.Prefix) error
}

// Masquerade keeps one network's egress masquerade: traffic from subnet
// leaves with the host's address unless bound for keep. An invalid subnet
// removes the network's rules.
type Masquerade interface {
	Ensure(subnet netip.Prefix, keep []netip.Prefix) error
}

// IngressFilter keeps one network's VXLAN ingress filter: port admits
// packets only from members.
type IngressFilter interface {
	Ensure(port uint16, members []netip.Addr) error
	// Dropped is how many packets the filter has dropped.
	Dropped() (uint64, error)
}
