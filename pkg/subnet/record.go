package subnet

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/overlaynet/overlay/pkg/netconf"
)

// RecordVersion is the schema version of lease values written by this code.
// Readers accept any version ≥ 1 and ignore fields they don't know, so later
// versions can add fields without breaking older daemons.
const RecordVersion = 1

// Kind tells what a lease is for.
type Kind string

const (
	// KindHost is a container host: it leases a subnet for its containers.
	KindHost Kind = "host"
	// KindEdge is a machine without containers (overlayd --mode edge): it
	// leases one address from the network's edge range, and may advertise
	// a legacy LAN behind it (a gateway). Its key's subnet is that /32.
	KindEdge Kind = "edge"
)

// Record is the JSON value of a lease key.
type Record struct {
	Version int  `json:"version"`
	Kind    Kind `json:"kind"`
	// HostID is the stable identity of the host (kept in its state dir). It
	// lets a restarted host recognise and reclaim its own lease.
	HostID   string     `json:"hostID"`
	Hostname string     `json:"hostname"`
	PublicIP netip.Addr `json:"publicIP"`
	VTEPMAC  string     `json:"vtepMAC"`
	// UnderlayMTU is the MTU of the host's underlay interface.
	UnderlayMTU int `json:"underlayMTU,omitempty"`
	// Advertise lists the LANs an edge host forwards for (a gateway):
	// every other member routes them to its VTEP.
	Advertise []netip.Prefix `json:"advertise,omitempty"`
	// Since is when the holder took this subnet (UTC, whole seconds), for
	// the lease's age in overlayctl leases. Acquire sets it on a newly
	// written key; a key the host takes over as its own (a restart that
	// adopts its live key) and a put-back of a deleted key keep it. Records
	// from releases before it have none (zero: age unknown). Added without a
	// version bump: readers ignore fields they don't know.
	Since time.Time `json:"since,omitzero"`
}

// Lease is one host's claim on a subnet, as read from etcd.
type Lease struct {
	Subnet netip.Prefix
	Record
	// ModRevision is the etcd revision that last wrote the key.
	ModRevision int64
	// CreateRevision is the etcd revision that created the key; it stays
	// while its owner rewrites the key (restarts, put-backs).
	CreateRevision int64
	// EtcdLease is the ID of the etcd lease the key is bound to.
	EtcdLease int64
}

// Validate checks a record read from etcd; a bad record is skipped rather
// than programmed into the kernel.
func (r Record) Validate() error {
	if r.Version < 1 {
		return fmt.Errorf("version %d: want ≥ 1", r.Version)
	}
	if r.Kind != KindHost && r.Kind != KindEdge {
		return fmt.Errorf("kind %q: this overlayd knows only %q and %q (written by a newer release?)", r.Kind, KindHost, KindEdge)
	}
	if len(r.Advertise) > 0 && r.Kind != KindEdge {
		return fmt.Errorf("advertise is set on a %q lease; only edge hosts advertise", r.Kind)
	}
	for _, p := range r.Advertise {
		if err := ValidateAdvertised(p); err != nil {
			return err
		}
	}
	if r.HostID == "" {
		return fmt.Errorf("hostID is empty")
	}
	if !r.PublicIP.IsValid() || !r.PublicIP.Is4() {
		return fmt.Errorf("publicIP %v is not an IPv4 address", r.PublicIP)
	}
	if _, err := r.MAC(); err != nil {
		return err
	}
	return nil
}

// MinAdvertisedBits is the shortest prefix a gateway may advertise: a LAN,
// not a slice of the internet that would pull every member's traffic to
// unrelated destinations through one gateway.
const MinAdvertisedBits = 8

// specialUse are ranges no LAN behind a gateway can be, and that every
// member needs for itself: "this network", loopback, link-local (cloud
// metadata services live there), multicast and reserved.
var specialUse = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// ValidateAdvertised checks one prefix a gateway advertises, on its own:
// an IPv4 prefix without host bits, at least /MinAdvertisedBits long (a
// route to 0.0.0.0/0 or a /1 through a gateway would take over every
// member's default route), and outside the special-use ranges.
func ValidateAdvertised(p netip.Prefix) error {
	switch {
	case !p.IsValid() || !p.Addr().Is4():
		return fmt.Errorf("advertised %v is not an IPv4 prefix", p)
	case p.Masked() != p:
		return fmt.Errorf("advertised %s has host bits set; did you mean %s?", p, p.Masked())
	case p.Bits() < MinAdvertisedBits:
		return fmt.Errorf("advertised %s is shorter than /%d; a gateway advertises the LANs behind it, not a default or a slice of the internet", p, MinAdvertisedBits)
	}
	for _, s := range specialUse {
		if p.Overlaps(s) {
			return fmt.Errorf("advertised %s overlaps the special-use range %s, which every member needs for itself (loopback, link-local and cloud metadata, multicast, reserved)", p, s)
		}
	}
	return nil
}

// Pool is the part of the network config a lease of this kind is taken from.
func (k Kind) Pool(cfg netconf.Config) netconf.Pool {
	if k == KindEdge {
		return cfg.EdgePool()
	}
	return cfg.HostPool()
}

// MAC parses VTEPMAC. It must be a unicast Ethernet address other than
// all zeros: the VXLAN FDB treats the zero MAC as the flooding entry and a
// multicast MAC is never one remote, so a peer publishing either could not
// be programmed.
func (r Record) MAC() (net.HardwareAddr, error) {
	mac, err := net.ParseMAC(r.VTEPMAC)
	switch {
	case err != nil || len(mac) != 6:
		return nil, fmt.Errorf("vtepMAC %q is not an Ethernet MAC address", r.VTEPMAC)
	case mac[0]&1 != 0:
		return nil, fmt.Errorf("vtepMAC %s is a multicast address; a VTEP needs a unicast MAC", mac)
	case bytes.Equal(mac, make(net.HardwareAddr, 6)):
		return nil, fmt.Errorf("vtepMAC %s is all zeros; a VTEP needs a unicast MAC", mac)
	}
	return mac, nil
}

// EncodeRecord is r as a lease key's value, with the version and kind
// defaulted; tools that write records (the scale benchmark) use it so they
// write exactly what overlayd does.
func EncodeRecord(r Record) (string, error) {
	if r.Version == 0 {
		r.Version = RecordVersion
	}
	if r.Kind == "" {
		r.Kind = KindHost
	}
	b, err := json.Marshal(r)
	return string(b), err
}

func decodeRecord(value []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		return Record{}, fmt.Errorf("decode lease record: %w", err)
	}
	if err := r.Validate(); err != nil {
		return Record{}, fmt.Errorf("invalid lease record: %w", err)
	}
	return r, nil
}

// reservationRecord is the JSON value of a reservation key.
type reservationRecord struct {
	Version int    `json:"version"`
	HostID  string `json:"hostID"`
}

func encodeReservation(hostID string) string {
	b, _ := json.Marshal(reservationRecord{Version: 1, HostID: hostID})
	return string(b)
}

// decodeReservation returns the reserving host's ID, "" when unreadable (an
// unreadable reservation then blocks the subnet for every host until it
// expires, which is the safe side).
func decodeReservation(value []byte) string {
	var r reservationRecord
	if json.Unmarshal(value, &r) != nil || r.HostID == "" {
		return "\x00unreadable"
	}
	return r.HostID
}
