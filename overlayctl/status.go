package main

import (
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlaynet/overlay/pkg/agent"
	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/ingress"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/statusfile"
	"github.com/overlaynet/overlay/pkg/subnet"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show this host's lease, VTEP, MTU, peers wanted vs programmed, the last reconcile and each peer's probes",
		Long: `Compares what etcd says this host should have with what the kernel holds,
peer by peer, building the peers with overlayd's own code, and adds what
overlayd's status file tells: the last reconcile pass and what it repaired,
and what the probes found per peer (through the overlay and on the underlay).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v, err := g.loadHost(cmd)
			if err != nil {
				return err
			}
			sv := v.statusView(time.Now())
			return g.print(cmd, sv, func(w io.Writer) error { return printStatus(w, sv) })
		},
	}
}

// statusView is status's output (also its JSON form).
type statusView struct {
	Network  string      `json:"network"`
	HostFile string      `json:"hostFile"`
	Overlayd overlaydRun `json:"overlayd"`
	Kind     string      `json:"kind"`
	// Subnet is a container host's subnet; Address an edge host's.
	Subnet     string `json:"subnet,omitempty"`
	Address    string `json:"address,omitempty"`
	Gateway    string `json:"gateway,omitempty"`
	Bridge     string `json:"bridge,omitempty"`
	VNI        uint32 `json:"vni"`
	MTU        int    `json:"mtu"`
	Masquerade bool   `json:"masquerade"`
	VTEP       struct {
		Device        string `json:"device"`
		IP            string `json:"ip"`
		MAC           string `json:"mac"`
		TxChecksumOff bool   `json:"txChecksumOff"`
	} `json:"vtep"`
	Lease           *leaseHeld        `json:"lease"`
	Etcd            string            `json:"etcdError,omitempty"`
	Kernel          string            `json:"kernelError,omitempty"`
	PeersWanted     int               `json:"peersWanted"`
	PeersProgrammed int               `json:"peersProgrammed"`
	LastPass        *statusfile.Pass  `json:"lastPass,omitempty"`
	LastRepair      *statusfile.Pass  `json:"lastRepair,omitempty"`
	Probe           *statusfile.Probe `json:"probe,omitempty"`
	IngressDropped  *uint64           `json:"ingressDropped,omitempty"`
	Notes           []string          `json:"notes,omitempty"`
	Peers           []peerStatus      `json:"peers"`
	Rejected        []agent.Rejection `json:"rejected,omitempty"`
	Stale           []datapath.Route  `json:"stale,omitempty"`
	etcdOK          bool
}

type overlaydRun struct {
	Running bool   `json:"running"`
	Note    string `json:"note"`
}

// leaseHeld is this host's lease as etcd has it.
type leaseHeld struct {
	Found     bool     `json:"found"`
	Hostname  string   `json:"hostname,omitempty"`
	PublicIP  string   `json:"publicIP,omitempty"`
	VTEPMAC   string   `json:"vtepMAC,omitempty"`
	EtcdLease string   `json:"etcdLease,omitempty"`
	Expires   string   `json:"expires,omitempty"` // as overlayd last saw it renewed
	Advertise []string `json:"advertise,omitempty"`
}

// peerStatus is one peer: how it is reached, whether the kernel has it,
// and what the probes found.
type peerStatus struct {
	Subnet   string `json:"subnet"`
	Host     string `json:"host"`
	Mode     string `json:"mode"`
	Via      string `json:"via"`
	VTEPMAC  string `json:"vtepMAC"`
	PublicIP string `json:"publicIP"`
	// Kernel is "ok", or what is missing (route, neigh, fdb).
	Kernel  string   `json:"kernel"`
	Missing []string `json:"missing,omitempty"`
	// Probe is overlayd's probe state (unknown, ok, overlay_broken,
	// unreachable; "" without probes).
	Probe        string  `json:"probe,omitempty"`
	OverlayRTT   float64 `json:"overlayRTTSeconds,omitempty"`
	UnderlayRTT  float64 `json:"underlayRTTSeconds,omitempty"`
	OverlayLoss  float64 `json:"overlayLoss"`
	UnderlayLoss float64 `json:"underlayLoss"`
	Note         string  `json:"note,omitempty"`
	// LANs are a gateway's advertised LANs routed here.
	LANs []string `json:"lans,omitempty"`
}

func (v *hostView) statusView(now time.Time) statusView {
	hf := v.hf
	sv := statusView{Network: v.network, HostFile: v.hfPath, Kind: string(hf.Kind), VNI: hf.VNI, MTU: hf.MTU,
		Masquerade: hf.IPMasq, etcdOK: v.etcdErr == nil}
	if sv.Kind == "" {
		sv.Kind = string(subnet.KindHost)
	}
	sv.Overlayd.Running, sv.Overlayd.Note = v.overlaydNote(now)
	if hf.Kind == hostfile.KindEdge {
		sv.Address = hf.Address.String()
	} else {
		sv.Subnet, sv.Gateway, sv.Bridge = hf.Subnet.String(), hf.Gateway.String(), hf.Bridge
		sv.Notes = append(sv.Notes, staleMTUNotes(hf)...)
	}
	sv.VTEP.Device, sv.VTEP.IP = v.target.Device, v.own.Addr().String()
	if st := v.status; st != nil {
		sv.VTEP.MAC, sv.VTEP.TxChecksumOff = st.VTEP.MAC, st.VTEP.TxChecksumOff
		sv.LastPass, sv.Probe = &st.LastPass, &st.Probe
		if !st.LastRepair.At.IsZero() {
			sv.LastRepair = &st.LastRepair
		}
	}
	if n, err := ingress.New(v.network).Dropped(); err == nil {
		sv.IngressDropped = &n
	}
	if v.kernelErr != nil {
		sv.Kernel = v.kernelErr.Error()
	}
	if v.etcdErr != nil {
		sv.Etcd = v.etcdErr.Error()
		return sv
	}
	sv.Lease = v.leaseHeld()
	if sv.VTEP.MAC == "" {
		sv.VTEP.MAC = sv.Lease.VTEPMAC
	}
	sv.Rejected = v.rejected
	sv.Peers, sv.Stale = v.peerStatuses()
	sv.PeersWanted = len(v.wanted)
	for _, p := range sv.Peers {
		if p.Kernel == "ok" {
			sv.PeersProgrammed++
		}
	}
	return sv
}

func (v *hostView) leaseHeld() *leaseHeld {
	i := slices.IndexFunc(v.leases, func(l subnet.Lease) bool { return l.Subnet == v.own })
	if i < 0 {
		return &leaseHeld{}
	}
	l := v.leases[i]
	h := &leaseHeld{Found: true, Hostname: l.Hostname, PublicIP: l.PublicIP.String(), VTEPMAC: l.VTEPMAC, EtcdLease: fmt.Sprintf("%x", l.EtcdLease)}
	for _, p := range l.Advertise {
		h.Advertise = append(h.Advertise, p.String())
	}
	if st := v.status; st != nil && !st.Lease.Expires.IsZero() {
		h.Expires = st.Lease.Expires.UTC().Format(time.RFC3339)
	}
	return h
}

// peerStatuses judges each wanted peer as overlayd would (datapath.Gaps)
// and lists the routes of ours nobody wants any more.
func (v *hostView) peerStatuses() ([]peerStatus, []datapath.Route) {
	gaps := map[netip.Prefix]datapath.Gap{}
	var plan datapath.Plan
	if v.kernelErr == nil {
		plan = datapath.DiffTarget(v.target, v.wanted, v.installed)
		for _, g := range datapath.GapsIn(plan, v.wanted) {
			gaps[g.Peer] = g
		}
	}
	names := map[netip.Prefix]string{}
	for _, l := range v.leases {
		names[l.Subnet] = l.Hostname
	}
	out := make([]peerStatus, 0, len(v.wanted))
	for _, p := range v.wanted {
		ps := peerStatus{Subnet: p.Subnet.String(), Host: names[p.Subnet], Mode: p.Mode.String(), Via: p.VTEPIP.String(),
			VTEPMAC: p.VTEPMAC.String(), PublicIP: p.PublicIP.String(), Kernel: "ok"}
		if p.Mode == datapath.ModeDirect {
			ps.Via = p.PublicIP.String()
		}
		for _, lan := range p.Routes {
			ps.LANs = append(ps.LANs, lan.String())
		}
		switch g, gap := gaps[p.Subnet]; {
		case v.kernelErr != nil:
			ps.Kernel = "unknown"
		case gap:
			ps.Missing = g.Missing()
			ps.Kernel = "MISSING " + strings.Join(ps.Missing, ",")
		}
		if pr := v.probeOf(p.Subnet); pr != nil {
			ps.Probe, ps.OverlayRTT, ps.UnderlayRTT = pr.State, pr.OverlayRTT.Seconds(), pr.UnderlayRTT.Seconds()
			ps.OverlayLoss, ps.UnderlayLoss = pr.OverlayLoss, pr.UnderlayLoss
			ps.Note = probeNote(pr.State, p.Mode == datapath.ModeDirect, v.cfg.Port, v.target.Device)
		}
		out = append(out, ps)
	}
	return out, slices.Concat(plan.DelRoutes, plan.DelDirect)
}

// probeNote says what a probe state means and what to do.
func probeNote(state string, direct bool, port uint16, device string) string {
	switch {
	case state == "overlay_broken" && direct:
		return "answers on its public IP but not at its VTEP address over the direct route (no VXLAN involved): its firewall, rp_filter or routing drops traffic from this host's overlay address"
	case state == "overlay_broken":
		return fmt.Sprintf("answers on the underlay but not through the overlay: UDP port %d (VXLAN) is blocked on the path, or checksum offload corrupts encapsulated packets; open the port between the hosts, or try overlayd --fix-checksum-offload (ethtool -K %s tx off)", port, device)
	case state == "unreachable":
		return "answers neither through the overlay nor on the underlay: the host is down, its underlay address unreachable, or ICMP filtered"
	}
	return ""
}

func printStatus(w io.Writer, sv statusView) error {
	fmt.Fprintf(w, "network %s (host file %s)\n", sv.Network, sv.HostFile)
	fmt.Fprintf(w, "  overlayd: %s\n", sv.Overlayd.Note)
	if sv.Kind == hostfile.KindEdge {
		fmt.Fprintf(w, "  edge host (no containers)  address %s  mtu %d  vni %d  device %s\n", sv.Address, sv.MTU, sv.VNI, sv.VTEP.Device)
	} else {
		fmt.Fprintf(w, "  subnet %s  gateway %s  mtu %d  bridge %s  vni %d  masquerade %s\n", sv.Subnet, sv.Gateway, sv.MTU, sv.Bridge, sv.VNI, onOff(sv.Masquerade))
	}
	fmt.Fprintf(w, "  vtep %s  %s  mac %s", sv.VTEP.Device, sv.VTEP.IP, sv.VTEP.MAC)
	if sv.VTEP.TxChecksumOff {
		fmt.Fprint(w, "  (tx checksum offload turned off by overlayd)")
	}
	fmt.Fprintln(w)
	for _, n := range sv.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	if sv.IngressDropped != nil {
		fmt.Fprintf(w, "  vxlan ingress filter: %d packets from non-members dropped\n", *sv.IngressDropped)
	}
	printPasses(w, sv)
	if sv.Kernel != "" {
		fmt.Fprintf(w, "  kernel: %s\n", sv.Kernel)
	}
	if !sv.etcdOK {
		fmt.Fprintf(w, "  etcd: %s (no lease or peers shown)\n", sv.Etcd)
		return nil
	}
	printLeaseHeld(w, sv)
	fmt.Fprintf(w, "  peers: %d wanted, %d programmed\n", sv.PeersWanted, sv.PeersProgrammed)
	for _, r := range sv.Rejected {
		fmt.Fprintf(w, "  rejected lease %s (%s): %s\n", r.Subnet, r.Kind, r.Detail)
	}
	return printPeerTable(w, sv)
}

func printPasses(w io.Writer, sv statusView) {
	if p := sv.LastPass; p != nil && !p.At.IsZero() {
		res := "ok"
		if p.Error != "" {
			res = "FAILED: " + p.Error
		}
		fmt.Fprintf(w, "  last reconcile: %s ago, took %s, %s", time.Since(p.At).Round(time.Second), p.Duration.Round(time.Microsecond), res)
		if len(p.Programmed) > 0 {
			fmt.Fprintf(w, " (for peers that changed: %s)", repairedText(p.Programmed))
		}
		fmt.Fprintln(w)
	}
	if p := sv.LastRepair; p != nil {
		fmt.Fprintf(w, "  last repair of drift: %s ago: %s\n", time.Since(p.At).Round(time.Second), repairedText(p.Repaired))
	}
	if pr := sv.Probe; pr != nil {
		switch {
		case !pr.Enabled:
			fmt.Fprintln(w, "  probes: off (overlayd --probe-interval 0)")
		case pr.Error != "":
			fmt.Fprintf(w, "  probes: FAILED: %s\n", pr.Error)
		default:
			fmt.Fprintf(w, "  probes: each peer every %s (interval %s, at most %g/s)\n", pr.PeerInterval, pr.Interval, pr.Rate)
		}
	}
}

func repairedText(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func printLeaseHeld(w io.Writer, sv statusView) {
	l := sv.Lease
	if !l.Found {
		fmt.Fprintf(w, "  lease: MISSING: etcd has no lease for %s%s; peers cannot reach this host's containers\n", sv.Subnet, sv.Address)
		return
	}
	fmt.Fprintf(w, "  lease: held by %s (public IP %s, etcd lease %s", l.Hostname, l.PublicIP, l.EtcdLease)
	if l.Expires != "" {
		fmt.Fprintf(w, ", expires %s unless renewed", l.Expires)
	}
	fmt.Fprintln(w, ")")
	if len(l.Advertise) > 0 {
		fmt.Fprintf(w, "  advertises %s (a gateway: members route these LANs to this host)\n", strings.Join(l.Advertise, ","))
	}
}

func printPeerTable(w io.Writer, sv statusView) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER SUBNET\tHOST\tMODE\tVIA\tVTEP MAC\tPUBLIC IP\tKERNEL\tPROBE\tRTT OVERLAY/UNDERLAY")
	for _, p := range sv.Peers {
		probe, rtt := "-", "-"
		if p.Probe != "" {
			probe = strings.ToUpper(p.Probe)
			if p.Probe == "ok" || p.Probe == "unknown" {
				probe = p.Probe
			}
			rtt = fmt.Sprintf("%s/%s", rttText(p.OverlayRTT), rttText(p.UnderlayRTT))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Subnet, p.Host, p.Mode, p.Via, p.VTEPMAC, p.PublicIP, p.Kernel, probe, rtt)
		for _, lan := range p.LANs {
			fmt.Fprintf(tw, "%s\t(LAN)\tvxlan\t%s\n", lan, p.Via)
		}
	}
	for _, r := range sv.Stale {
		fmt.Fprintf(tw, "%s\t\t\t%s\t\t\tstale (no lease, or another mode; overlayd removes it on its next pass)\t\t\n", r.Dst, r.Via)
	}
	if len(sv.Peers)+len(sv.Stale) == 0 {
		fmt.Fprintln(tw, "(no peers)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range sv.Peers {
		if p.Note != "" {
			fmt.Fprintf(w, "  %s (%s): %s\n", p.Subnet, p.Host, p.Note)
		}
	}
	return nil
}

func rttText(sec float64) string {
	if sec == 0 {
		return "-"
	}
	return time.Duration(sec * float64(time.Second)).Round(10 * time.Microsecond).String()
}

// staleMTUNotes names the containers started before the overlay MTU
// dropped: their veths keep the old, larger MTU.
func staleMTUNotes(hf hostfile.HostFile) []string {
	ports, err := datapath.PortMTUs(hf.Bridge)
	if err != nil {
		return nil // no bridge yet: no containers either
	}
	stale := map[int]int{}
	for _, mtu := range ports {
		if mtu > hf.MTU {
			stale[mtu]++
		}
	}
	var out []string
	for _, mtu := range slices.Sorted(maps.Keys(stale)) {
		out = append(out, fmt.Sprintf("%d running container(s) keep MTU %d from before the overlay MTU dropped to %d: restart them to get %d (until then their large packets to the member that lowered it are lost)",
			stale[mtu], mtu, hf.MTU, hf.MTU))
	}
	return out
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// leases reads the network's leases that overlayd programs (those inside
// their kind's range) and its config.
func (g *globals) leases(cmd *cobra.Command) ([]subnet.Lease, netconf.Config, error) {
	c, err := g.connect(cmd.Context())
	if err != nil {
		return nil, netconf.Config{}, err
	}
	defer c.Close()
	ls, _, err := c.Leases(cmd.Context(), g.network)
	if err != nil {
		return nil, netconf.Config{}, err
	}
	cfg, err := c.NetworkConfig(cmd.Context(), g.network)
	if err != nil {
		return nil, netconf.Config{}, err
	}
	// Leases outside their kind's range (left from an earlier config) are
	// not programmed by overlayd; don't report them as missing.
	return slices.DeleteFunc(ls, func(l subnet.Lease) bool { return !l.Kind.Pool(cfg).Contains(l.Subnet) }), cfg, nil
}
