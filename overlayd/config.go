package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/overlaynet/overlay/pkg/agent"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/state"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// Config is everything overlayd is told on its command line, validated once.
type Config struct {
	EtcdEndpoints []string
	EtcdPrefix    string
	EtcdCAFile    string
	EtcdCertFile  string
	EtcdKeyFile   string
	EtcdTimeout   time.Duration

	// Networks are the overlay networks this overlayd serves, each with
	// its own agent, devices, bridge, host file and lease.
	Networks []Network
	Iface    string
	PublicIP netip.Addr
	Hostname string

	// Mode is what this machine is in the network: a container host or an
	// edge host (no containers, one overlay address); Advertise the LANs
	// an edge host forwards for (a gateway).
	Mode      subnet.Kind
	Advertise []netip.Prefix

	RunDir   string
	StateDir string

	LeaseTTL       time.Duration
	ResyncInterval time.Duration
	Quarantine     time.Duration

	ForwardRules bool
	// IngressFilter keeps each network's VXLAN port closed to all but the
	// network's members.
	IngressFilter bool

	// ProbeInterval is how often each peer is probed (0: no probes);
	// ProbeRate bounds the probes per second across all peers.
	ProbeInterval time.Duration
	ProbeRate     float64
	// FixChecksumOffload turns tx checksum offload off on a network's
	// VXLAN device once a peer answers on the underlay but not through it.
	FixChecksumOffload bool

	MetricsAddr string
	LogLevel    slog.Level
}

// Network is one network overlayd serves and the bridge its containers
// attach to.
type Network struct {
	Name   string
	Bridge string
}

// agentConfig is the part of c the agent of network n needs.
func (c Config) agentConfig(n Network) agent.Config {
	return agent.Config{
		Network: n.Name, Iface: c.Iface, PublicIP: c.PublicIP, Hostname: c.Hostname, Bridge: n.Bridge,
		Kind: c.Mode, Advertise: c.Advertise,
		RunDir: c.RunDir, StateDir: c.StateDir,
		LeaseTTL: c.LeaseTTL, ResyncInterval: c.ResyncInterval, Quarantine: c.Quarantine,
		FixChecksumOffload: c.FixChecksumOffload, ProbeInterval: c.ProbeInterval, ProbeRate: c.ProbeRate,
	}
}

// parseFlags reads the command line (DESIGN.md Contract 5).
func parseFlags(args []string, stderr io.Writer) (Config, error) {
	fs := flag.NewFlagSet("overlayd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		c                             Config
		endpoints, publicIP, logLevel string
		mode, advertise, bridge       string
		networks                      networkList
		defaultHost, _                = os.Hostname()
	)
	fs.StringVar(&endpoints, "etcd-endpoints", subnet.DefaultEndpoints, "comma-separated etcd client URLs")
	fs.StringVar(&c.EtcdPrefix, "etcd-prefix", subnet.DefaultPrefix, "etcd key prefix")
	fs.StringVar(&c.EtcdCAFile, "etcd-cafile", "", "CA bundle to verify etcd's certificate (enables TLS)")
	fs.StringVar(&c.EtcdCertFile, "etcd-certfile", "", "client certificate for etcd")
	fs.StringVar(&c.EtcdKeyFile, "etcd-keyfile", "", "client key for etcd")
	fs.DurationVar(&c.EtcdTimeout, "etcd-timeout", 10*time.Second, "how long to wait for etcd to answer at start")
	fs.Var(&networks, "network", "overlay network to join, NAME or NAME=BRIDGE; repeat it (or give a comma-separated list) to serve several isolated networks (default \"default\")")
	fs.StringVar(&c.Iface, "iface", "", "underlay interface name or IP (default: the interface of the default route)")
	fs.StringVar(&publicIP, "public-ip", "", "underlay IP to advertise to peers (default: the interface's IP)")
	fs.StringVar(&c.Hostname, "hostname", defaultHost, "name to publish in this host's lease")
	fs.StringVar(&bridge, "bridge", "overlay0", "bridge of the first --network (the others default to ovl-NAME)")
	fs.StringVar(&mode, "mode", string(subnet.KindHost), "host: run containers on a leased subnet; edge: a machine without containers that leases one address of the network's edgeCIDR and reaches containers directly")
	fs.StringVar(&advertise, "advertise", "", "edge mode: comma-separated LANs behind this machine to route to from the overlay (a gateway), e.g. 192.168.10.0/24")
	fs.StringVar(&c.RunDir, "run-dir", hostfile.DefaultRunDir, "directory for the host file read by the CNI plugins")
	fs.StringVar(&c.StateDir, "state-dir", state.DefaultDir, "directory for state kept across restarts")
	fs.DurationVar(&c.LeaseTTL, "lease-ttl", 30*time.Second, "TTL of this host's etcd lease; peers drop a dead host after this")
	fs.DurationVar(&c.Quarantine, "quarantine", 5*time.Minute, "how long a host's subnet stays reserved for it after its lease ended, so a host that was away briefly gets its subnet (and its containers' addresses) back; 0 disables")
	fs.DurationVar(&c.ResyncInterval, "resync-interval", 10*time.Second, "how often the kernel state is re-checked against etcd")
	fs.BoolVar(&c.ForwardRules, "forward-rules", true, "keep iptables FORWARD rules for the network: accept its traffic (needed where the FORWARD policy is DROP, e.g. Docker hosts) and drop traffic between networks")
	fs.BoolVar(&c.IngressFilter, "ingress-filter", true, "admit VXLAN packets only from the network's members (an nftables table overlay-NETWORK); false admits anyone who can reach the port")
	fs.DurationVar(&c.ProbeInterval, "probe-interval", 5*time.Second, "how often each peer is probed through the overlay and on the underlay (ICMP echo; 0 disables probes)")
	fs.Float64Var(&c.ProbeRate, "probe-rate", 50, "most probes per second across all peers of one network (each network probes on its own): with more peers than interval × rate, each is probed less often")
	fs.BoolVar(&c.FixChecksumOffload, "fix-checksum-offload", false, "turn tx checksum offload off on the VXLAN device once a peer answers on the underlay but not through the overlay")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", "", "address for /metrics, /healthz and /readyz (e.g. 127.0.0.1:9472; empty disables)")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected argument %q; overlayd takes only flags", fs.Arg(0))
	}
	c.EtcdEndpoints = subnet.ParseEndpoints(endpoints)
	if len(c.EtcdEndpoints) == 0 {
		return Config{}, fmt.Errorf("--etcd-endpoints is empty; give the etcd client URLs, e.g. http://10.0.0.5:2379")
	}
	var err error
	if c.Networks, err = networks.resolve(bridge); err != nil {
		return Config{}, err
	}
	if len(c.Networks) > 1 && !c.ForwardRules {
		return Config{}, fmt.Errorf("--forward-rules=false with several networks: their FORWARD rules are what keeps them apart; keep the rules, or run one network")
	}
	if publicIP != "" {
		ip, err := netip.ParseAddr(publicIP)
		if err != nil || !ip.Is4() {
			return Config{}, fmt.Errorf("--public-ip %q is not an IPv4 address", publicIP)
		}
		c.PublicIP = ip
	}
	if c.Mode, c.Advertise, err = parseMode(mode, advertise); err != nil {
		return Config{}, err
	}
	if c.LeaseTTL < 2*time.Second {
		return Config{}, fmt.Errorf("--lease-ttl %s is too short; use at least 2s", c.LeaseTTL)
	}
	if c.Quarantine < 0 {
		return Config{}, fmt.Errorf("--quarantine must not be negative")
	}
	if c.ResyncInterval <= 0 {
		return Config{}, fmt.Errorf("--resync-interval must be positive")
	}
	if c.ProbeInterval < 0 || (c.ProbeInterval > 0 && c.ProbeInterval < 100*time.Millisecond) {
		return Config{}, fmt.Errorf("--probe-interval %s: use 0 (no probes) or at least 100ms", c.ProbeInterval)
	}
	if !(c.ProbeRate >= 0.01) || math.IsInf(c.ProbeRate, 0) {
		return Config{}, fmt.Errorf("--probe-rate %g must be a number of at least 0.01 (probes per second across a network's peers)", c.ProbeRate)
	}
	if err := c.LogLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return Config{}, fmt.Errorf("--log-level %q: use debug, info, warn or error", logLevel)
	}
	return c, nil
}

// parseMode reads --mode and --advertise.
func parseMode(mode, advertise string) (subnet.Kind, []netip.Prefix, error) {
	k := subnet.Kind(mode)
	if k != subnet.KindHost && k != subnet.KindEdge {
		return "", nil, fmt.Errorf("--mode %q: use host (runs containers) or edge (a machine without containers)", mode)
	}
	var lans []netip.Prefix
	for _, f := range strings.Split(advertise, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return "", nil, fmt.Errorf("--advertise %q is not a CIDR such as 192.168.10.0/24", f)
		}
		if err := subnet.ValidateAdvertised(p); err != nil {
			return "", nil, fmt.Errorf("--advertise: %w", err)
		}
		lans = append(lans, p)
	}
	if len(lans) > 0 && k != subnet.KindEdge {
		return "", nil, fmt.Errorf("--advertise needs --mode edge: a gateway for a legacy LAN is an edge host")
	}
	return k, lans, nil
}

// networkList is the repeatable --network flag.
type networkList []Network

func (l *networkList) String() string {
	names := make([]string, len(*l))
	for i, n := range *l {
		names[i] = n.Name
	}
	return strings.Join(names, ",")
}

func (l *networkList) Set(v string) error {
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		name, bridge, _ := strings.Cut(f, "=")
		*l = append(*l, Network{Name: name, Bridge: bridge})
	}
	return nil
}

// resolve checks the networks and names their bridges: the first one's is
// --bridge (so adding a network leaves the existing one's bridge as it
// was), the others' ovl-NAME unless given as NAME=BRIDGE.
func (l networkList) resolve(first string) ([]Network, error) {
	if len(l) == 0 {
		l = networkList{{Name: "default"}}
	}
	out := make([]Network, 0, len(l))
	names, bridges := map[string]bool{}, map[string]string{}
	for i, n := range l {
		if err := netconf.ValidateName(n.Name); err != nil {
			return nil, fmt.Errorf("--network: %w", err)
		}
		if names[n.Name] {
			return nil, fmt.Errorf("--network %s is given twice", n.Name)
		}
		names[n.Name] = true
		switch {
		case n.Bridge != "":
		case i == 0:
			n.Bridge = first
		default:
			n.Bridge = "ovl-" + n.Name
		}
		if n.Bridge == "" || len(n.Bridge) > 15 {
			return nil, fmt.Errorf("--network %s: bridge %q must be an interface name of 1-15 bytes; name one with --network %s=BRIDGE (or --bridge for the first network)", n.Name, n.Bridge, n.Name)
		}
		if other, taken := bridges[n.Bridge]; taken {
			return nil, fmt.Errorf("--network %s: bridge %s is already network %s's; give each network its own with --network NAME=BRIDGE", n.Name, n.Bridge, other)
		}
		bridges[n.Bridge] = n.Name
		out = append(out, n)
	}
	return out, nil
}
