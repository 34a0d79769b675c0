// Package state keeps what overlayd must remember across restarts in its
// state dir: the host's stable ID and, per network, the subnet it held and
// its VTEP MAC. Remembering these is what lets a restarted host reclaim its
// subnet (so running containers keep their addresses) and keep its VTEP MAC
// (so peers' FDB and neighbour entries stay valid).
package state

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/overlaynet/overlay/pkg/atomicfile"
)

// DefaultDir is overlayd's default state dir.
const DefaultDir = "/var/lib/overlay"

// Dir is a state directory.
type Dir struct {
	Path string
}

// Network is what a host remembers about one network.
type Network struct {
	Subnet  netip.Prefix `json:"subnet,omitzero"`
	VTEPMAC string       `json:"vtepMAC"`
	// Lease is the etcd lease the subnet's key was bound to: a restarted
	// host adopts its own key only when it is still bound to this lease.
	Lease int64 `json:"lease,omitempty"`
}

// Init creates what a first start writes into the state dir: its layout
// (where Lock puts its locks) and the host ID. Lock and HostID create
// them too when missing; Init exists so that overlayd can do these disk
// writes while it dials etcd instead of after.
func (d Dir) Init() error {
	if err := os.MkdirAll(filepath.Join(d.Path, "networks"), 0o755); err != nil {
		return fmt.Errorf("create state dir %s: %w", d.Path, err)
	}
	_, err := d.HostID()
	return err
}

// HostID returns the host's stable ID, creating it on first use.
func (d Dir) HostID() (string, error) {
	p := filepath.Join(d.Path, "host-id")
	data, err := os.ReadFile(p)
	if err == nil && len(strings.TrimSpace(string(data))) > 0 {
		return strings.TrimSpace(string(data)), nil
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read host ID %s: %w", p, err)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate host ID: %w", err)
	}
	id := hex.EncodeToString(b[:])
	if err := atomicfile.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("save host ID: %w", err)
	}
	return id, nil
}

// LoadNetwork returns what was saved for a network; a missing file yields a
// fresh record with a newly generated VTEP MAC (not yet saved).
func (d Dir) LoadNetwork(name string) (Network, error) {
	p := d.networkPath(name)
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return Network{VTEPMAC: NewMAC().String()}, nil
	}
	if err != nil {
		return Network{}, fmt.Errorf("read state %s: %w", p, err)
	}
	var n Network
	if err := json.Unmarshal(data, &n); err != nil {
		return Network{}, fmt.Errorf("state file %s is corrupt (%v); remove it to start fresh (this host may get a new subnet)", p, err)
	}
	if mac, err := net.ParseMAC(n.VTEPMAC); err != nil || len(mac) != 6 {
		n.VTEPMAC = NewMAC().String()
	}
	return n, nil
}

// SaveNetwork stores a network's record atomically.
func (d Dir) SaveNetwork(name string, n Network) error {
	data, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode state for %s: %w", name, err)
	}
	if err := atomicfile.WriteFile(d.networkPath(name), append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save state for network %s: %w", name, err)
	}
	return nil
}

func (d Dir) networkPath(name string) string {
	return filepath.Join(d.Path, "networks", name+".json")
}

// NewMAC returns a random locally administered unicast MAC address.
func NewMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&0xfe | 0x02
	return mac
}
