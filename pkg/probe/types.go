package probe

import (
	"log/slog"
	"net/netip"
	"time"
)

// Target is one peer to probe. A path whose address is not valid is not
// probed.
type Target struct {
	Peer     netip.Prefix // the peer's subnet (an edge host's /32): the key
	Name     string       // the peer's hostname, for logs
	Overlay  netip.Addr   // the peer's VTEP address, reached through the overlay
	Underlay netip.Addr   // the peer's public (underlay) IP
	// Direct: the peer is routed directly on the underlay (direct
	// routing), so its "overlay" path involves no VXLAN.
	Direct bool
}

// Config sets a Prober's pace and thresholds. Zero fields take the defaults.
type Config struct {
	Interval    time.Duration // each peer is probed at most this often (default 5s)
	Rate        float64       // probes per second across all peers; a probe is one echo on each path (default 50)
	Timeout     time.Duration // a reply later than this counts as lost (default 1s)
	Window      int           // probes per path the loss ratio is computed over (default 10)
	BrokenAfter int           // consecutive lost probes that change a peer's state (default 3)
	Port        uint16        // the network's VXLAN UDP port, named in the log when the overlay breaks
	Log         *slog.Logger  // nil: no logs
}

// Defaults.
const (
	DefaultInterval    = 5 * time.Second
	DefaultRate        = 50
	DefaultTimeout     = time.Second
	DefaultWindow      = 10
	DefaultBrokenAfter = 3
)

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Window <= 0 {
		c.Window = DefaultWindow
	}
	if c.BrokenAfter <= 0 {
		c.BrokenAfter = DefaultBrokenAfter
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return c
}

// State is what the probes say about one peer.
type State string

const (
	StateUnknown       State = "unknown"        // not enough probes yet
	StateOK            State = "ok"             // the overlay answers
	StateOverlayBroken State = "overlay_broken" // overlay lost BrokenAfter in a row while the underlay answers
	StateUnreachable   State = "unreachable"    // both paths lost BrokenAfter in a row (host down, underlay broken, or ICMP filtered)
)

// PathStats is what one path (overlay or underlay) of one peer did.
type PathStats struct {
	Sent, Received uint64        // totals since the target appeared
	Loss           float64       // over the last Window probes (0..1)
	RTT            time.Duration // of the last reply
	LastReply      time.Time
	LostInRow      int
	LastError      string // why the last send failed (no route, message too long); "" when it was sent
}

// Result is one peer's probe results.
type Result struct {
	Peer              netip.Prefix
	Name              string
	Overlay, Underlay netip.Addr
	Direct            bool
	OverlayPath       PathStats
	UnderlayPath      PathStats
	State             State
	Since             time.Time // when State last changed
}

// Transition is a peer whose State changed: its results now, and the
// State it had before.
type Transition struct {
	Result
	Was State
}
