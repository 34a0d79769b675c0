package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/overlaynet/overlay/pkg/agent"
	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/statusfile"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// hostView is what overlayctl knows about this host in a network: the host
// file, overlayd's status file, etcd's leases and config, the peers
// overlayd would program (built by its own code) and what the kernel holds.
type hostView struct {
	network string
	hfPath  string
	hf      hostfile.HostFile
	// status is overlayd's status file (nil when there is none: overlayd
	// is older, or has not written it yet).
	status *statusfile.Status
	// own is this host's lease key: its subnet, or an edge host's /32.
	own      netip.Prefix
	target   datapath.PeerTarget
	underlay datapath.Underlay // zero when the VXLAN device is missing

	leases   []subnet.Lease
	cfg      netconf.Config
	etcdErr  error
	self     agent.Self
	wanted   []datapath.Peer
	rejected []agent.Rejection

	installed datapath.Installed
	kernelErr error

	g   *globals
	cmd *cobra.Command
}

// leaseTTLs asks etcd how long the given etcd leases have left.
// It has --etcd-timeout of its own: the command's may be spent on the
// probes sent before.
func (v *hostView) leaseTTLs(ids []int64) (map[int64]subnet.LeaseTTL, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(v.cmd.Context()), v.g.timeout)
	defer cancel()
	c, err := v.g.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.LeaseTTLs(ctx, ids)
}

// loadHost reads everything about this host in g.network. Only a missing
// host file is an error: without etcd or the kernel's state, it shows what
// it has and says what is missing.
func (g *globals) loadHost(cmd *cobra.Command) (*hostView, error) {
	v := &hostView{network: g.network, hfPath: hostfile.Path(g.runDir, g.network), g: g, cmd: cmd}
	hf, err := hostfile.Read(v.hfPath)
	if errors.Is(err, hostfile.ErrNotExist) {
		return nil, fmt.Errorf("no host file at %s: overlayd has not joined network %s on this host; is it running with --run-dir %s?", v.hfPath, g.network, g.runDir)
	}
	if err != nil {
		return nil, err
	}
	v.hf = hf
	if st, err := statusfile.Read(statusfile.Path(g.runDir, g.network)); err == nil {
		v.status = &st
	}
	dev := datapath.DeviceName(hf.VNI)
	v.own = hf.Subnet
	var src netip.Addr
	if hf.Kind == hostfile.KindEdge {
		v.own, src = netip.PrefixFrom(hf.Address, 32), hf.Address
	}
	v.target = datapath.PeerTarget{Device: dev, Src: src, DirectSrc: v.own.Addr(), Range: hf.Network}
	if u, err := datapath.UnderlayOf(dev); err == nil {
		v.underlay, v.target.Underlay = u, u.Name
	}
	v.installed, v.kernelErr = datapath.ListInstalledTarget(v.target)
	if v.kernelErr != nil {
		v.kernelErr = fmt.Errorf("read kernel state of %s: %w", dev, v.kernelErr)
	}
	v.leases, v.cfg, v.etcdErr = g.leases(cmd)
	if v.etcdErr == nil {
		v.self = v.selfFromSources()
		v.wanted, v.rejected = agent.PeersFor(v.self, v.cfg, v.leases)
	}
	return v, nil
}

// selfFromSources is who this host is: from overlayd's status file when
// it has one, else from the host file and this host's lease in etcd.
func (v *hostView) selfFromSources() agent.Self {
	self := agent.Self{Kind: subnet.KindHost, Subnet: v.own, Underlay: v.underlay}
	if v.hf.Kind == hostfile.KindEdge {
		self.Kind = subnet.KindEdge
	}
	if i := slices.IndexFunc(v.leases, func(l subnet.Lease) bool { return l.Subnet == v.own }); i >= 0 {
		l := v.leases[i]
		self.HostID, self.PublicIP, self.Advertise = l.HostID, l.PublicIP, l.Advertise
		self.VTEPMAC, _ = net.ParseMAC(l.VTEPMAC)
	}
	if st := v.status; st != nil && st.Lease.Subnet == v.own {
		self.HostID, self.PublicIP, self.Advertise = st.HostID, st.PublicIP, st.Advertise
		self.VTEPMAC, _ = net.ParseMAC(st.VTEP.MAC)
	}
	// This host's own routes as the kernel has them now (overlayd reads
	// the same): a gateway's LANs must not shadow them.
	if routes, err := datapath.OtherRoutes(v.target.Device); err == nil {
		slices.SortFunc(routes, netip.Prefix.Compare)
		self.Routes = slices.Compact(routes)
	}
	if !self.PublicIP.IsValid() {
		self.PublicIP = v.underlay.IP
	}
	return self
}

// overlaydNote says whether overlayd runs, as its status file tells: a
// file older than three of its intervals means it stopped (or hangs), and
// nothing repairs drift.
func (v *hostView) overlaydNote(now time.Time) (running bool, note string) {
	switch st := v.status; {
	case st == nil:
		return false, "no status file: overlayd is not running, or older than this overlayctl"
	case st.PIDNamespace == statusfile.PIDNamespace() && errors.Is(unix.Kill(st.PID, 0), unix.ESRCH):
		return false, fmt.Sprintf("overlayd (pid %d) is not running: nothing repairs drift until it runs", st.PID)
	case st.Stale(now):
		return false, fmt.Sprintf("overlayd (pid %d) last wrote its status %s ago: it is not running or hangs; nothing repairs drift until it runs", st.PID, now.Sub(st.Written).Round(time.Second))
	}
	return true, fmt.Sprintf("overlayd pid %d, status written %s ago", v.status.PID, now.Sub(v.status.Written).Round(time.Second))
}

// overlaydRunning says whether overlayd runs now (overlaydNote).
func (v *hostView) overlaydRunning() bool {
	running, _ := v.overlaydNote(time.Now())
	return running
}

// probeOf is overlayd's probe result for peer (nil without one).
func (v *hostView) probeOf(peer netip.Prefix) *statusfile.PeerProbe {
	if v.status == nil {
		return nil
	}
	for i := range v.status.Peers {
		if v.status.Peers[i].Peer == peer {
			return &v.status.Peers[i]
		}
	}
	return nil
}

// leaseOf is the lease whose subnet (or a gateway's LAN) holds ip.
func (v *hostView) leaseOf(ip netip.Addr) (subnet.Lease, bool) {
	for _, l := range v.leases {
		if l.Subnet.Contains(ip) {
			return l, true
		}
	}
	// The gateway whose LAN holding ip this host routes (the longest, if
	// LANs nest); else, to explain why not, the oldest that advertises it.
	var routed netip.Prefix
	var found subnet.Lease
	ok := false
	for _, p := range v.wanted {
		for _, lan := range p.Routes {
			if lan.Contains(ip) && lan.Bits() > routed.Bits() {
				if l, has := v.leaseBySubnet(p.Subnet); has {
					routed, found, ok = lan, l, true
				}
			}
		}
	}
	if ok {
		return found, true
	}
	for _, l := range v.leases {
		if slices.ContainsFunc(l.Advertise, func(p netip.Prefix) bool { return p.Contains(ip) }) &&
			(!ok || l.CreateRevision < found.CreateRevision) {
			found, ok = l, true
		}
	}
	return found, ok
}

func (v *hostView) leaseBySubnet(s netip.Prefix) (subnet.Lease, bool) {
	i := slices.IndexFunc(v.leases, func(l subnet.Lease) bool { return l.Subnet == s })
	if i < 0 {
		return subnet.Lease{}, false
	}
	return v.leases[i], true
}
