// Package hostfile reads and writes the host file (DESIGN.md Contract 2):
// RUNDIR/NAME.json, which overlayd writes once it holds a lease and the
// datapath is ready, and which the CNI plugins read instead of talking to
// etcd or to the daemon. Writes are atomic (temp file, fsync, rename) so a
// plugin never reads half a file.
package hostfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/overlaynet/overlay/pkg/atomicfile"
	"github.com/overlaynet/overlay/pkg/netconf"
)

// DefaultRunDir is where overlayd writes host files unless told otherwise.
const DefaultRunDir = "/run/overlay"

// KindEdge marks the host file of an edge host (overlayd --mode edge): a
// machine with an overlay address but no container subnet. Its file has
// Kind, Network, Address, MTU and VNI; the container fields stay empty.
const KindEdge = "edge"

// HostFile is this host's view of one network, as the CNI plugins need it.
type HostFile struct {
	// Kind is "" on a container host, KindEdge on an edge host.
	Kind string `json:"kind,omitempty"`
	// Address is an edge host's overlay address (edge hosts only).
	Address netip.Addr `json:"address,omitzero"`
	// Network is the whole overlay range (all hosts).
	Network netip.Prefix `json:"network"`
	// Subnet is the range leased to this host; containers get addresses from it.
	Subnet netip.Prefix `json:"subnet,omitzero"`
	// Gateway is the bridge's address inside Subnet and the containers' default gateway.
	Gateway netip.Addr `json:"gateway,omitzero"`
	// MTU is the MTU containers must use so encapsulated packets fit the underlay.
	MTU int `json:"mtu"`
	// Bridge is the name of the per-host bridge containers attach to.
	Bridge string `json:"bridge,omitempty"`
	// VNI is the network's VXLAN identifier.
	VNI uint32 `json:"vni"`
	// IPMasq says whether overlayd masquerades traffic leaving the network.
	IPMasq bool `json:"ipMasq"`
}

// ErrEdgeHost is returned by ReadContainerHost for an edge host's file:
// the machine is on the overlay but has no subnet for containers.
var ErrEdgeHost = errors.New("this machine is an edge host of the network: it has an overlay address but no container subnet")

// ErrNotExist is returned by Read when no host file exists yet, which means
// overlayd has not (yet) leased a subnet for the network on this host.
var ErrNotExist = errors.New("host file does not exist")

// Path returns the host file path for a network.
func Path(runDir, network string) string {
	return filepath.Join(runDir, network+".json")
}

// ValidateLocation checks the two CNI network config fields that locate a
// host file: network, a network name, and runDir, an absolute path. On
// failure it returns the JSON name of the offending field with the problem,
// so each plugin reports it the same way.
func ValidateLocation(network, runDir string) (field string, err error) {
	if err := netconf.ValidateName(network); err != nil {
		return "network", err
	}
	if !filepath.IsAbs(runDir) {
		return "runDir", fmt.Errorf("runDir %q must be an absolute path, e.g. %s", runDir, DefaultRunDir)
	}
	return "", nil
}

// Validate checks the fields a plugin relies on.
func (h HostFile) Validate() error {
	switch h.Kind {
	case "":
	case KindEdge:
		return h.validateEdge()
	default:
		return fmt.Errorf(`field "kind" %q is unknown; this release knows "" (container host) and %q`, h.Kind, KindEdge)
	}
	switch {
	case !h.Network.IsValid() || !h.Network.Addr().Is4():
		return fmt.Errorf(`field "network" is missing or not an IPv4 CIDR`)
	case !h.Subnet.IsValid() || !h.Network.Contains(h.Subnet.Addr()) || h.Subnet.Bits() < h.Network.Bits():
		return fmt.Errorf(`field "subnet" %s is missing or outside network %s`, h.Subnet, h.Network)
	case !h.Gateway.IsValid() || !h.Subnet.Contains(h.Gateway):
		return fmt.Errorf(`field "gateway" %s is missing or outside subnet %s`, h.Gateway, h.Subnet)
	case h.MTU < 576 || h.MTU > 65535:
		return fmt.Errorf(`field "mtu" %d is out of range 576-65535`, h.MTU)
	case h.Bridge == "" || len(h.Bridge) > 15:
		return fmt.Errorf(`field "bridge" %q must be an interface name of 1-15 bytes`, h.Bridge)
	}
	return nil
}

func (h HostFile) validateEdge() error {
	switch {
	case !h.Network.IsValid() || !h.Network.Addr().Is4():
		return fmt.Errorf(`field "network" is missing or not an IPv4 CIDR`)
	case !h.Network.Contains(h.Address):
		return fmt.Errorf(`field "address" %s is missing or outside network %s`, h.Address, h.Network)
	case h.MTU < 576 || h.MTU > 65535:
		return fmt.Errorf(`field "mtu" %d is out of range 576-65535`, h.MTU)
	case h.Subnet.IsValid() || h.Gateway.IsValid() || h.Bridge != "":
		return fmt.Errorf(`an edge host's file must not have "subnet", "gateway" or "bridge"`)
	}
	return nil
}

// ReadContainerHost is Read for the CNI plugins: an edge host's file is an
// error wrapping ErrEdgeHost that names its address, since no container
// can be wired on that machine.
func ReadContainerHost(path string) (HostFile, error) {
	h, err := Read(path)
	if err == nil && h.Kind == KindEdge {
		return HostFile{}, fmt.Errorf("host file %s: %w (address %s)", path, ErrEdgeHost, h.Address)
	}
	return h, err
}

// Read loads and validates the host file at path. A missing file yields an
// error wrapping ErrNotExist.
func Read(path string) (HostFile, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return HostFile{}, fmt.Errorf("read host file %s: %w", path, ErrNotExist)
	}
	if err != nil {
		return HostFile{}, fmt.Errorf("read host file %s: %w", path, err)
	}
	var h HostFile
	if err := json.Unmarshal(data, &h); err != nil {
		return HostFile{}, fmt.Errorf("parse host file %s: %w", path, err)
	}
	if err := h.Validate(); err != nil {
		return HostFile{}, fmt.Errorf("host file %s: %w", path, err)
	}
	return h, nil
}

// Write stores h at path atomically: readers see the old file or the new one,
// never a mix, even if the machine crashes mid-write.
func Write(path string, h HostFile) error {
	if err := h.Validate(); err != nil {
		return fmt.Errorf("write host file %s: %w", path, err)
	}
	data, err := json.Marshal(h)
	if err != nil {
		return fmt.Errorf("encode host file %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, append(data, '\n'), 0o644)
}
