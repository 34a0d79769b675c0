package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/probe"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// Exit statuses of `overlayctl why`, one per first broken step, so a
// script can tell them apart (1 stays "overlayctl could not run").
const (
	whyOK           = 0
	whyNotInNetwork = 3  // the address is in no range this network routes
	whyNoLease      = 4  // no lease holds the address
	whyRejected     = 5  // a lease holds it, but this host does not program it
	whyOwnLease     = 6  // this host's own lease is missing: no way back
	whyRoute        = 7  // the route to the peer's subnet is missing or wrong
	whyNeigh        = 8  // the neighbour entry of the peer's VTEP is missing or wrong
	whyFDB          = 9  // the FDB entry of the peer's VTEP is missing or wrong
	whyBlocked      = 10 // underlay answers, overlay does not: VXLAN port blocked or checksum offload
	whyUnreachable  = 11 // neither path answers: peer down or underlay broken
	whyMTU          = 12 // full-size packets do not cross the path
	whyEndpoint     = 13 // nothing answers at the address itself
	whyDevice       = 14 // this host's VXLAN device is missing
	whyChecksum     = 15 // ICMP crosses the overlay, UDP does not: checksum offload
)

// liveTimeout bounds the probes of one why: they are sent after the etcd
// reads, whose --etcd-timeout must not cut them short.
const liveTimeout = 20 * time.Second

// whyStep is one check on the path to an address.
type whyStep struct {
	Step   string `json:"step"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
	code   int
}

// whyView is why's output (also its JSON form).
type whyView struct {
	IP      string    `json:"ip"`
	Network string    `json:"network"`
	Notes   []string  `json:"notes,omitempty"`
	Steps   []whyStep `json:"steps"`
	// Broken is the first broken step ("" when the path is complete);
	// ExitStatus is what overlayctl exits with.
	Broken     string `json:"broken,omitempty"`
	Verdict    string `json:"verdict"`
	ExitStatus int    `json:"exitStatus"`
}

// whyExit carries a diagnosis's exit status out of cobra; the output
// already said everything.
type whyExit struct{ code int }

func (e whyExit) Error() string { return fmt.Sprintf("path broken (exit status %d)", e.code) }

func newWhyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "why IP",
		Short: "Walk the path from this host to an overlay IP and say where it breaks",
		Long: `Checks, in order: which lease owns IP; whether this host has the route,
neighbour and FDB entry for it and whether they match etcd; whether the peer
answers probes through the overlay and on the underlay (sent now); whether
full-size packets cross the path (the MTU); and whether something answers at
IP itself. For an address of this host's own subnet, it looks for the
container: what answers at IP behind the bridge, and through which veth.

Run it on the host that cannot reach IP, as root (it reads the kernel and
sends ICMP). Exit status: 0 the path is complete; 1 overlayctl could not
run; otherwise the first broken step:
  3 not an address of the network    4 no lease holds it
  5 its lease is not programmed here 6 this host's own lease is missing
  7 route   8 neighbour   9 FDB entry (missing or wrong in the kernel)
  10 the peer answers on the underlay but not through the overlay
     (VXLAN port blocked, or checksum offload)
  11 the peer answers on neither path   12 full-size packets do not cross
  13 nothing answers at IP itself        14 this host's VXLAN device is missing
  15 ICMP crosses the overlay but UDP does not (checksum offload)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ip, err := netip.ParseAddr(args[0])
			if err != nil || !ip.Is4() {
				return fmt.Errorf("%q is not an IPv4 address such as 10.244.3.7", args[0])
			}
			v, err := g.loadHost(cmd)
			if err != nil {
				return err
			}
			if v.etcdErr != nil {
				return fmt.Errorf("cannot read the leases: %w", v.etcdErr)
			}
			ctx, cancel := context.WithTimeout(context.WithoutCancel(cmd.Context()), liveTimeout)
			defer cancel()
			wv, err := v.why(ctx, ip)
			if err != nil {
				return err
			}
			if err := g.print(cmd, wv, func(w io.Writer) error { return printWhy(w, wv) }); err != nil {
				return err
			}
			if wv.ExitStatus != whyOK {
				return whyExit{wv.ExitStatus}
			}
			return nil
		},
	}
}

// why walks the path to ip; the first failed step decides the verdict.
// An error means a probe could not be sent at all (no CAP_NET_RAW, a
// local firewall): that is no diagnosis of the path.
func (v *hostView) why(ctx context.Context, ip netip.Addr) (whyView, error) {
	wv := whyView{IP: ip.String(), Network: v.network}
	if running, note := v.overlaydNote(time.Now()); !running {
		wv.Notes = append(wv.Notes, note)
	}
	live := &pinger{ctx: ctx}
	wv.Steps = v.whySteps(live, ip)
	if live.err != nil {
		return wv, fmt.Errorf("cannot probe: %w; run overlayctl why as root (it sends ICMP), with no OUTPUT rule dropping ICMP", live.err)
	}
	wv.Verdict = "path complete: " + ip.String() + " answers"
	for _, s := range wv.Steps {
		if !s.OK {
			wv.Broken, wv.Verdict, wv.ExitStatus = s.Step, s.Detail, s.code
			break
		}
	}
	return wv, nil
}

// pinger sends why's probes and keeps the first error that is not about
// the path (a route error is: the echo counts as lost).
type pinger struct {
	ctx context.Context
	mu  sync.Mutex
	err error
}

func (p *pinger) ping(e probe.Echo) probe.PathStats {
	st, err := probe.Ping(p.ctx, e)
	switch {
	case err == nil, errors.Is(err, unix.ENETUNREACH), errors.Is(err, unix.EHOSTUNREACH):
		if st.Sent == 0 {
			st.Sent = uint64(max(e.Count, 1))
		}
		return st
	case errors.Is(err, probe.ErrTooBig):
		return st
	}
	p.record(err)
	return st
}

// record keeps err as the first error that stops why.
func (p *pinger) record(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
}

func (v *hostView) whySteps(live *pinger, ip netip.Addr) []whyStep {
	if v.kernelErr != nil {
		if _, err := net.InterfaceByName(v.target.Device); err == nil {
			live.record(v.kernelErr) // the device is there: reading it failed
			return nil
		}
		return []whyStep{{Step: "device", code: whyDevice, Detail: fmt.Sprintf("this host has no VXLAN device %s: %v", v.target.Device, v.kernelErr),
			Fix: "start (or restart) overlayd on this host: it creates the VXLAN device and programs every peer"}}
	}
	if lan, ok := lanHolding(v.self.Advertise, ip); ok {
		// This gateway's own LAN: overlayd routes it here before any
		// other gateway's.
		return []whyStep{v.ownLANStep(live, lan, ip)}
	}
	if v.hf.Kind != hostfile.KindEdge && v.hf.Subnet.Contains(ip) {
		if own := v.ownLeaseStep(); !own.OK {
			return []whyStep{own}
		}
	}
	l, found := v.leaseOf(ip)
	switch {
	case !found && !v.hf.Network.Contains(ip):
		return []whyStep{{Step: "network", code: whyNotInNetwork,
			Detail: fmt.Sprintf("%s is outside network %s (%s) and every LAN its gateways advertise", ip, v.network, v.hf.Network),
			Fix:    "check the address; overlay routes only its range and advertised LANs"}}
	case !found:
		return []whyStep{{Step: "lease", code: whyNoLease,
			Detail: fmt.Sprintf("no lease of network %s holds %s: the host that had this subnet is gone (its lease expired or was released), or none ever had it", v.network, ip),
			Fix:    "start overlayd on the host that should hold it; a container there keeps an old address until restarted (overlayctl leases lists who holds what)"}}
	}
	owner := fmt.Sprintf("lease %s of %s (%s, public IP %s)", l.Subnet, l.Hostname, l.Kind, l.PublicIP)
	steps := []whyStep{{Step: "lease", OK: true, Detail: owner}}
	if l.Subnet == v.own {
		return append(steps, v.whyLocal(live, ip)...)
	}
	peer, ok := v.peerFor(l)
	if !ok {
		return append(steps, v.rejectedStep(l, netip.Prefix{}))
	}
	if lan, viaLAN := advertisedLAN(l, ip); viaLAN && !slices.Contains(peer.Routes, lan) {
		return append(steps, v.rejectedStep(l, lan))
	}
	steps = append(steps, v.ownLeaseStep())
	kernel := v.kernelSteps(peer, ip)
	steps = append(steps, kernel...)
	whole := !slices.ContainsFunc(kernel, func(s whyStep) bool { return !s.OK })
	return append(steps, v.liveSteps(live, peer, l, ip, whole)...)
}

// advertisedLAN is the LAN of l's that holds ip, when ip is not in l's
// own subnet.
func advertisedLAN(l subnet.Lease, ip netip.Addr) (netip.Prefix, bool) {
	if l.Subnet.Contains(ip) {
		return netip.Prefix{}, false
	}
	for _, lan := range l.Advertise {
		if lan.Contains(ip) {
			return lan, true
		}
	}
	return netip.Prefix{}, false
}

// peerFor is the wanted peer of lease l (false: this host rejects it).
func (v *hostView) peerFor(l subnet.Lease) (datapath.Peer, bool) {
	i := slices.IndexFunc(v.wanted, func(p datapath.Peer) bool { return p.Subnet == l.Subnet })
	if i < 0 {
		return datapath.Peer{}, false
	}
	return v.wanted[i], true
}

// rejectedStep says why this host does not program lease l, or (lan
// valid) the LAN l advertises.
func (v *hostView) rejectedStep(l subnet.Lease, lan netip.Prefix) whyStep {
	s := whyStep{Step: "lease", code: whyRejected,
		Detail: fmt.Sprintf("this host does not program lease %s: it is not a member of the network's current ranges", l.Subnet),
		Fix:    "overlayctl leases shows the record; a lease left from an earlier config expires with its host"}
	if lan.IsValid() {
		s.Detail = fmt.Sprintf("this host does not route %s, which %s advertises", lan, l.Hostname)
	}
	for _, r := range v.rejected {
		if r.Subnet == l.Subnet && (!lan.IsValid() || strings.Contains(r.Detail, lan.String())) {
			s.Detail = fmt.Sprintf("this host rejects lease %s (%s): %s", l.Subnet, r.Kind, r.Detail)
			s.Fix = "fix the member's address or advertised LANs (the overlayd log on either host names it)"
		}
	}
	return s
}

func (v *hostView) ownLeaseStep() whyStep {
	if slices.ContainsFunc(v.leases, func(l subnet.Lease) bool { return l.Subnet == v.own }) {
		return whyStep{Step: "own lease", OK: true, Detail: fmt.Sprintf("this host holds %s, so peers route replies back", v.own)}
	}
	return whyStep{Step: "own lease", code: whyOwnLease,
		Detail: fmt.Sprintf("etcd has no lease for this host's %s: peers have no route back to it", v.own),
		Fix:    "start (or restart) overlayd on this host; it leases again and peers program the way back"}
}

// kernelSteps checks the route, neighbour and FDB entry for peer against
// what etcd says, as a reconcile pass would (datapath.Gaps).
func (v *hostView) kernelSteps(peer datapath.Peer, ip netip.Addr) []whyStep {
	var gap datapath.Gap
	if gs := datapath.Gaps(v.target, []datapath.Peer{peer}, v.installed); len(gs) == 1 {
		gap = gs[0]
	}
	fix := "overlayd repairs this on its next pass; if it stays, overlayd is not running here (systemctl status overlayd) or its log says why it cannot"
	dst := peer.Subnet
	if lan := lanOf(peer, ip); lan.IsValid() {
		dst = lan
	}
	route := whyStep{Step: "route", OK: !slices.Contains(gap.Routes, dst), code: whyRoute, Fix: fix}
	route.Detail = fmt.Sprintf("route %s via %s dev %s %s", dst, via(peer), routeDevice(v.target, peer), installedRoute(v.installed, dst))
	neigh := whyStep{Step: "neighbour", OK: !gap.Neigh, code: whyNeigh, Fix: fix}
	neigh.Detail = fmt.Sprintf("neighbour %s lladdr %s dev %s %s", peer.VTEPIP, peer.VTEPMAC, v.target.Device, installedNeigh(v.installed, peer))
	fdb := whyStep{Step: "fdb", OK: !gap.FDB, code: whyFDB, Fix: fix}
	fdb.Detail = fmt.Sprintf("fdb %s dst %s dev %s %s", peer.VTEPMAC, peer.PublicIP, v.target.Device, installedFDB(v.installed, peer))
	return []whyStep{route, neigh, fdb}
}

func lanOf(p datapath.Peer, ip netip.Addr) netip.Prefix {
	for _, lan := range p.Routes {
		if lan.Contains(ip) {
			return lan
		}
	}
	return netip.Prefix{}
}

func via(p datapath.Peer) netip.Addr {
	if p.Mode == datapath.ModeDirect {
		return p.PublicIP
	}
	return p.VTEPIP
}

func routeDevice(t datapath.PeerTarget, p datapath.Peer) string {
	if p.Mode == datapath.ModeDirect && t.Underlay != "" {
		return t.Underlay
	}
	return t.Device
}

func installedRoute(in datapath.Installed, dst netip.Prefix) string {
	for _, r := range slices.Concat(in.Routes, in.Direct, in.Stale, in.StaleDirect) {
		if r.Dst == dst {
			return fmt.Sprintf("(kernel: via %s)", r.Via)
		}
	}
	return "(kernel: MISSING)"
}

func installedNeigh(in datapath.Installed, p datapath.Peer) string {
	for _, n := range in.Neighs {
		if n.IP == p.VTEPIP {
			return fmt.Sprintf("(kernel: lladdr %s)", n.MAC)
		}
	}
	return "(kernel: MISSING)"
}

func installedFDB(in datapath.Installed, p datapath.Peer) string {
	var dsts []string
	for _, f := range in.FDB {
		if f.MAC.String() == p.VTEPMAC.String() {
			dsts = append(dsts, f.Dst.String())
		}
	}
	if len(dsts) == 0 {
		return "(kernel: MISSING)"
	}
	return "(kernel: dst " + strings.Join(dsts, ",") + ")"
}

// liveSteps probe the peer now: through the overlay and on the underlay,
// with a full-size packet, and the address itself.
// kernelWhole says whether the kernel steps passed: if not, the overlay
// cannot answer, and the probe says so rather than blame the path.
func (v *hostView) liveSteps(live *pinger, peer datapath.Peer, l subnet.Lease, ip netip.Addr, kernelWhole bool) []whyStep {
	var over, under probe.PathStats
	var wg sync.WaitGroup
	wg.Go(func() { over = live.ping(probe.Echo{Addr: peer.VTEPIP}) })
	wg.Go(func() { under = live.ping(probe.Echo{Addr: peer.PublicIP}) })
	wg.Wait()
	if live.err != nil {
		return nil
	}
	pr := whyStep{Step: "probe", OK: over.Received > 0,
		Detail: fmt.Sprintf("through the overlay (%s): %s; on the underlay (%s): %s", peer.VTEPIP, echoText(over), peer.PublicIP, echoText(under))}
	if known := v.probeOf(peer.Subnet); known != nil && v.overlaydRunning() {
		pr.Detail += fmt.Sprintf("; overlayd's probes say %s", known.State)
	}
	switch {
	case pr.OK:
	case !kernelWhole:
		pr.code = whyRoute // not reached: a kernel step failed first
		pr.Detail = "no answer through the overlay, as expected while the kernel lacks the entries above. " + pr.Detail
		pr.Fix = "fix the kernel entries first"
	case under.Received > 0 && peer.Mode == datapath.ModeDirect:
		pr.code = whyBlocked
		pr.Detail = fmt.Sprintf("%s (%s) answers on its public IP but not at its VTEP address over the direct route (no VXLAN involved): its firewall, rp_filter or routing drops traffic from this host's overlay address. %s",
			l.Hostname, l.PublicIP, pr.Detail) + v.peerRenewal(l)
		pr.Fix = fmt.Sprintf("on %s: allow traffic from %s (FORWARD and INPUT), and check that it routes %s back directly (overlayctl status there)", l.Hostname, v.hf.Network, v.own)
	case under.Received > 0:
		pr.code = whyBlocked
		pr.Detail = fmt.Sprintf("%s (%s) answers on the underlay but not through the overlay: UDP port %d (VXLAN) is blocked on the path, checksum offload corrupts encapsulated packets, or %s has not programmed this host. %s",
			l.Hostname, l.PublicIP, v.cfg.Port, l.Hostname, pr.Detail) + v.peerRenewal(l) + csumHint()
		pr.Fix = fmt.Sprintf("allow UDP %d between %s and %s in every firewall, security group and hypervisor filter on the way; if it is open, turn tx checksum offload off: overlayd --fix-checksum-offload (or ethtool -K %s tx off on both hosts)",
			v.cfg.Port, v.underlay.IP, l.PublicIP, v.target.Device)
	default:
		pr.code = whyUnreachable
		pr.Detail = fmt.Sprintf("%s (%s) answers neither through the overlay nor on the underlay. %s", l.Hostname, l.PublicIP, pr.Detail)
		pr.Fix = "the host is down or its underlay address unreachable from here (or ICMP is filtered): check it, and the underlay routing between the hosts"
	}
	if !pr.OK {
		return []whyStep{pr}
	}
	return []whyStep{pr, v.udpStep(live, peer, l), v.mtuStep(live, peer, l), endpointStep(live, peer, ip)}
}

// udpStep sends UDP through the overlay, which unlike ICMP leaves its
// checksum to the device: lost while the echoes crossed, checksum offload
// corrupts what containers send (ping works, TCP stalls).
func (v *hostView) udpStep(live *pinger, peer datapath.Peer, l subnet.Lease) whyStep {
	var over, under probe.PathStats
	var overErr, underErr error
	var wg sync.WaitGroup
	wg.Go(func() { over, overErr = probe.UDPEcho(live.ctx, peer.VTEPIP, 3, time.Second) })
	wg.Go(func() { under, underErr = probe.UDPEcho(live.ctx, peer.PublicIP, 3, time.Second) })
	wg.Wait()
	if err := errors.Join(overErr, underErr); err != nil {
		live.record(err)
		return whyStep{Step: "udp", Detail: err.Error()}
	}
	s := whyStep{Step: "udp", OK: over.Received > 0, code: whyChecksum,
		Detail: fmt.Sprintf("UDP through the overlay to %s port %d: %s", peer.VTEPIP, probe.UDPPort, echoText(over))}
	if s.OK {
		return s
	}
	if under.Received == 0 {
		// The control: UDP to the peer's public IP gets no answer either,
		// so its firewall drops UDP to that port, whatever the overlay.
		s.OK = true
		s.Detail = fmt.Sprintf("not tested: %s answers no UDP to port %d on the underlay either (its firewall drops it), so offload cannot be told from here", l.Hostname, probe.UDPPort)
		return s
	}
	if peer.Mode == datapath.ModeDirect {
		s.Detail = fmt.Sprintf("ICMP reaches %s's VTEP address over the direct route but UDP does not (no answer to %d datagrams to port %d): its firewall drops UDP from this host's overlay address",
			l.Hostname, over.Sent, probe.UDPPort)
		s.Fix = fmt.Sprintf("on %s: let UDP from %s in (or REJECT it rather than DROP)", l.Hostname, v.hf.Network)
		return s
	}
	s.Detail = fmt.Sprintf("ICMP echoes cross the overlay to %s and UDP crosses the underlay, but UDP through the overlay does not (no answer to %d datagrams to port %d): checksum offload corrupts the TCP and UDP inside VXLAN packets (ping works, connections stall), or %s drops UDP to its VTEP address only",
		l.Hostname, over.Sent, probe.UDPPort, l.Hostname)
	s.Fix = fmt.Sprintf("turn tx checksum offload off on the sending hosts' VXLAN device (ethtool -K %s tx off, on this host and on %s); if that does not help, check %s's firewall for UDP to %s",
		v.target.Device, l.Hostname, l.Hostname, peer.VTEPIP)
	return s
}

// peerRenewal says when the peer's overlayd does not renew its lease (it
// is stopped or hangs): then it has not learned of changes since, such
// as this host's lease, and does not route back.
func (v *hostView) peerRenewal(l subnet.Lease) string {
	ttls, err := v.leaseTTLs([]int64{l.EtcdLease})
	t, ok := ttls[l.EtcdLease]
	if err != nil || !ok || t.Expired() || t.Left > t.Granted/2 {
		return ""
	}
	return fmt.Sprintf(" %s's lease has %s of %s left: its overlayd is not renewing it (stopped, or cut off from etcd), so it has not learned of changes since; start it (overlayctl status there).",
		l.Hostname, t.Left.Round(time.Second), t.Granted)
}

func echoText(s probe.PathStats) string {
	if s.Received == 0 {
		return fmt.Sprintf("no answer to %d echoes", s.Sent)
	}
	return fmt.Sprintf("%d/%d answered, rtt %s", s.Received, s.Sent, s.RTT.Round(10*time.Microsecond))
}

// csumHint reports UDP checksum errors on this host, which point at
// checksum offload rather than a blocked port.
func csumHint() string {
	n, err := probe.UDPChecksumErrors()
	if err != nil || n == 0 {
		return ""
	}
	return fmt.Sprintf(" This host has counted %d UDP packets with bad checksums (InCsumErrors): checksum offload is the likely cause.", n)
}

// mtuStep checks that the overlay MTU fits both underlays and sends a
// full-size packet, which must cross unfragmented.
func (v *hostView) mtuStep(live *pinger, peer datapath.Peer, l subnet.Lease) whyStep {
	mtu := v.hf.MTU
	s := whyStep{Step: "mtu", code: whyMTU,
		Fix: "lower the network's MTU to what every path carries minus 50 (overlayctl network set NAME --mtu N, then restart containers), or raise the underlay MTU on the way"}
	need := mtu + datapath.VXLANOverhead
	switch {
	case v.underlay.MTU > 0 && need > v.underlay.MTU:
		s.Detail = fmt.Sprintf("overlay MTU %d needs %d bytes on the underlay, but this host's %s carries %d", mtu, need, v.underlay.Name, v.underlay.MTU)
		return s
	case l.UnderlayMTU > 0 && need > l.UnderlayMTU:
		s.Detail = fmt.Sprintf("overlay MTU %d needs %d bytes on the underlay, but %s's carries %d", mtu, need, l.Hostname, l.UnderlayMTU)
		return s
	}
	// 20 bytes of IP and 8 of ICMP header: the packet is exactly mtu.
	full, err := probe.Ping(live.ctx, probe.Echo{Addr: peer.VTEPIP, Size: mtu - 28, DontFragment: true, Count: 2})
	switch {
	case errors.Is(err, probe.ErrTooBig):
		s.Detail = fmt.Sprintf("this host cannot send a %d-byte packet to %s unfragmented: %v", mtu, peer.VTEPIP, err)
	case errors.Is(err, unix.ENETUNREACH) || errors.Is(err, unix.EHOSTUNREACH):
		s.Detail = fmt.Sprintf("a %d-byte packet to %s cannot be routed: %v", mtu, peer.VTEPIP, err)
	case err != nil:
		live.record(err)
		s.Detail = err.Error()
		return s
	case full.Received == 0:
		s.Detail = fmt.Sprintf("%d-byte packets to %s are lost while small ones cross: the path between %s and %s carries less than %d bytes",
			mtu, peer.VTEPIP, v.underlay.IP, l.PublicIP, need)
	default:
		s.OK, s.Detail = true, fmt.Sprintf("%d-byte packets cross unfragmented (%d on the underlay)", mtu, need)
	}
	return s
}

// endpointStep pings the address itself (beyond the peer's VTEP).
func endpointStep(live *pinger, peer datapath.Peer, ip netip.Addr) whyStep {
	if ip == peer.VTEPIP {
		return whyStep{Step: "endpoint", OK: true, Detail: fmt.Sprintf("%s is the peer's VTEP address, which answered", ip)}
	}
	if got := live.ping(probe.Echo{Addr: ip}); got.Received > 0 {
		return whyStep{Step: "endpoint", OK: true, Detail: fmt.Sprintf("%s answers (%s)", ip, echoText(got))}
	}
	if lan := lanOf(peer, ip); lan.IsValid() {
		return whyStep{Step: "endpoint", code: whyEndpoint,
			Detail: fmt.Sprintf("the gateway answers, but nothing answers at %s on its LAN %s: the machine is down, drops ICMP, or has no route back to the overlay", ip, lan),
			Fix:    fmt.Sprintf("on the machine: a route to the overlay via the gateway; on the gateway: overlayctl why %s", ip)}
	}
	return whyStep{Step: "endpoint", code: whyEndpoint,
		Detail: fmt.Sprintf("the peer host answers, but nothing answers at %s: the container is gone, stopped, or drops ICMP", ip),
		Fix:    fmt.Sprintf("on the host of %s, run overlayctl why %s (it finds the container behind its bridge) and check the container runtime", peer.Subnet, ip)}
}

// whyLocal finds what holds ip behind this host's bridge.
// This gateway's own LANs are checked before (ownLANStep).
func (v *hostView) whyLocal(live *pinger, ip netip.Addr) []whyStep {
	if v.hf.Kind == hostfile.KindEdge || ip == v.own.Addr() || ip == v.hf.Gateway {
		return []whyStep{{Step: "local", OK: true, Detail: fmt.Sprintf("%s is this host's own address", ip)}}
	}
	got := live.ping(probe.Echo{Addr: ip, Count: 2})
	ep, err := datapath.FindOnBridge(v.hf.Bridge, ip)
	s := whyStep{Step: "local", code: whyEndpoint}
	switch {
	case errors.Is(err, datapath.ErrNoEndpoint):
		s.Detail = fmt.Sprintf("%s is in this host's subnet, but nothing behind bridge %s answers ARP for it: no container holds it (gone, or never attached)", ip, v.hf.Bridge)
		s.Fix = "restart the container, or check the runtime's log for its CNI ADD"
	case err != nil:
		s.Detail = fmt.Sprintf("cannot look behind bridge %s: %v", v.hf.Bridge, err)
	case ep.Port == "" || !ep.PortUp:
		s.Detail = fmt.Sprintf("%s has MAC %s, but its veth %q is down or not on bridge %s", ip, ep.MAC, ep.Port, v.hf.Bridge)
		s.Fix = "restart the container; overlay's CNI plugin puts its veth on the bridge"
	case got.Received == 0:
		s.Detail = fmt.Sprintf("%s (MAC %s, veth %s on bridge %s) does not answer ICMP: it drops ICMP, or hangs", ip, ep.MAC, ep.Port, v.hf.Bridge)
		s.Fix = "check the container itself (its firewall, whether it runs)"
	default:
		s.OK, s.Detail = true, fmt.Sprintf("a container on this host holds %s: MAC %s behind veth %s on bridge %s, %s", ip, ep.MAC, ep.Port, v.hf.Bridge, echoText(got))
	}
	return []whyStep{s}
}

func lanHolding(lans []netip.Prefix, ip netip.Addr) (netip.Prefix, bool) {
	for _, lan := range lans {
		if lan.Contains(ip) {
			return lan, true
		}
	}
	return netip.Prefix{}, false
}

// ownLANStep checks an address of a LAN this gateway advertises: that
// this host still routes the LAN, and that the address answers.
func (v *hostView) ownLANStep(live *pinger, lan netip.Prefix, ip netip.Addr) whyStep {
	if !slices.ContainsFunc(v.self.Routes, func(r netip.Prefix) bool { return r.Overlaps(lan) }) {
		return whyStep{Step: "local", code: whyEndpoint,
			Detail: fmt.Sprintf("this gateway advertises %s but has no route to it any more (its LAN interface down?): members send its traffic here for nothing", lan),
			Fix:    "bring the LAN interface back up, or stop advertising the LAN (overlayd --advertise)"}
	}
	if got := live.ping(probe.Echo{Addr: ip, Count: 2}); got.Received > 0 {
		return whyStep{Step: "local", OK: true, Detail: fmt.Sprintf("%s on this gateway's LAN %s answers (%s)", ip, lan, echoText(got))}
	}
	return whyStep{Step: "local", code: whyEndpoint,
		Detail: fmt.Sprintf("%s on this gateway's LAN %s does not answer: the machine is down or drops ICMP", ip, lan),
		Fix:    "check the machine; it needs a route to the overlay via this gateway"}
}

func printWhy(w io.Writer, wv whyView) error {
	fmt.Fprintf(w, "why %s (network %s)\n", wv.IP, wv.Network)
	for _, n := range wv.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	for _, s := range wv.Steps {
		mark := "ok  "
		if !s.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s  %-10s %s\n", mark, s.Step, s.Detail)
		if !s.OK && s.Fix != "" {
			fmt.Fprintf(w, "        %-10s fix: %s\n", "", s.Fix)
		}
	}
	if wv.Broken == "" {
		fmt.Fprintf(w, "%s\n", wv.Verdict)
		return nil
	}
	fmt.Fprintf(w, "broken at %s (exit status %d)\n", wv.Broken, wv.ExitStatus)
	return nil
}
