// Package statusfile is what overlayd tells overlayctl about one network
// on this host beyond what etcd and the kernel show: who this host is, its
// last reconcile passes, and what its probes found per peer. overlayd
// writes RUNDIR/NETWORK.status (one writer, an atomic rename) when
// any of it changes and at least once per resync interval, so its age
// also says whether overlayd is still running; overlayctl only reads it.
package statusfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/overlaynet/overlay/pkg/atomicfile"
)

// Version is the schema version written; readers ignore fields they do
// not know.
const Version = 1

// Status is one network's status on this host.
type Status struct {
	Version int    `json:"version"`
	Network string `json:"network"`
	PID     int    `json:"pid"`
	// PIDNamespace is overlayd's PID namespace (/proc/self/ns/pid): PID
	// means something to a reader in the same one only.
	PIDNamespace string    `json:"pidNamespace,omitempty"`
	Written      time.Time `json:"written"`
	// Every is how often the file is rewritten at the least: older than a
	// few of these, overlayd has stopped.
	Every time.Duration `json:"every"`

	Kind      string         `json:"kind"` // host or edge
	HostID    string         `json:"hostID"`
	Hostname  string         `json:"hostname"`
	PublicIP  netip.Addr     `json:"publicIP"`
	Underlay  string         `json:"underlay"`
	UnderMTU  int            `json:"underlayMTU"`
	Advertise []netip.Prefix `json:"advertise,omitempty"`

	Lease Lease `json:"lease"`
	VTEP  VTEP  `json:"vtep"`
	MTU   int   `json:"mtu"`

	PeersWanted int `json:"peersWanted"`
	// LastPass is the last reconcile pass; LastRepair the last one that
	// changed anything (zero when none has).
	LastPass   Pass `json:"lastPass"`
	LastRepair Pass `json:"lastRepair"`

	Probe Probe       `json:"probe"`
	Peers []PeerProbe `json:"peers"`
}

// Lease is this host's lease as overlayd holds it.
type Lease struct {
	Held      bool         `json:"held"`
	Subnet    netip.Prefix `json:"subnet"`
	EtcdLease int64        `json:"etcdLease"`
	// Expires is when etcd drops the lease unless renewed (zero: unknown).
	Expires time.Time `json:"expires"`
}

// VTEP is this host's VXLAN endpoint.
type VTEP struct {
	Device string     `json:"device"`
	IP     netip.Addr `json:"ip"`
	MAC    string     `json:"mac"`
	// TxChecksumOff is true once overlayd turned tx checksum offload off
	// on the device (--fix-checksum-offload).
	TxChecksumOff bool `json:"txChecksumOff,omitempty"`
}

// Pass is one reconcile pass.
type Pass struct {
	At       time.Time     `json:"at"`
	Duration time.Duration `json:"duration"`
	Error    string        `json:"error,omitempty"`
	// Repaired counts the drift the pass repaired, by kind (the label of
	// overlay_drift_repaired_total); Programmed what it wrote or removed
	// for peers that changed in etcd (overlay_peer_entries_programmed_total).
	Repaired   map[string]int `json:"repaired,omitempty"`
	Programmed map[string]int `json:"programmed,omitempty"`
}

// Probe says how peers are probed.
type Probe struct {
	Enabled bool `json:"enabled"`
	// Interval is the configured interval; PeerInterval how often each
	// peer is probed once the rate bound applies.
	Interval     time.Duration `json:"interval"`
	PeerInterval time.Duration `json:"peerInterval"`
	Rate         float64       `json:"rate"`
	Error        string        `json:"error,omitempty"`
}

// PeerProbe is what the probes found for one peer.
type PeerProbe struct {
	Peer     netip.Prefix `json:"peer"`
	Name     string       `json:"name"`
	Overlay  netip.Addr   `json:"overlay"`
	Underlay netip.Addr   `json:"underlay"`
	// State is unknown, ok, overlay_broken or unreachable (pkg/probe).
	State        string        `json:"state"`
	Since        time.Time     `json:"since"`
	OverlayRTT   time.Duration `json:"overlayRTT"`
	OverlayLoss  float64       `json:"overlayLoss"`
	UnderlayRTT  time.Duration `json:"underlayRTT"`
	UnderlayLoss float64       `json:"underlayLoss"`
	Sent         uint64        `json:"sent"`
}

// PIDNamespace names the calling process's PID namespace ("" when it
// cannot be read).
func PIDNamespace() string {
	ns, _ := os.Readlink("/proc/self/ns/pid")
	return ns
}

// ErrNotExist means overlayd has written no status for the network.
var ErrNotExist = errors.New("no status file")

// Path is where the status of network is written: NETWORK.status, a name
// no network's host file (NAME.json) or ready stamp (NAME.ready) can have,
// as network names may hold dots.
func Path(runDir, network string) string {
	return filepath.Join(runDir, network+".status")
}

// Write stores s at path atomically. It is encoded straight to the file:
// with 10 000 peers it is 3 MB, which need not be built in memory first.
func Write(path string, s Status) error {
	return atomicfile.ReplaceWith(path, 0o644, func(w io.Writer) error {
		if err := json.NewEncoder(w).Encode(s); err != nil {
			return fmt.Errorf("encode status %s: %w", path, err)
		}
		return nil
	})
}

// Read loads the status at path; a missing file wraps ErrNotExist.
func Read(path string) (Status, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Status{}, fmt.Errorf("%s: %w", path, ErrNotExist)
	}
	if err != nil {
		return Status{}, fmt.Errorf("read status %s: %w", path, err)
	}
	var s Status
	if err := json.Unmarshal(data, &s); err != nil {
		return Status{}, fmt.Errorf("decode status %s: %w", path, err)
	}
	return s, nil
}

// Stale reports whether the file is older than three of its rewrite
// intervals at now: its overlayd has stopped or hangs.
func (s Status) Stale(now time.Time) bool {
	every := s.Every
	if every <= 0 {
		every = 10 * time.Second
	}
	return now.Sub(s.Written) > 3*every
}
