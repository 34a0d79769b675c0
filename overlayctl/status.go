package main

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/overlaynet/overlay/pkg/agent"
	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/ingress"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/subnet"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show this host's lease, VTEP and programmed peers (kernel compared with etcd)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			path := hostfile.Path(g.runDir, g.network)
			hf, err := hostfile.Read(path)
			if errors.Is(err, hostfile.ErrNotExist) {
				return fmt.Errorf("no host file at %s: overlayd has not joined network %s on this host; is it running with --run-dir %s?", path, g.network, g.runDir)
			}
			if err != nil {
				return err
			}
			dev := datapath.DeviceName(hf.VNI)
			fmt.Fprintf(out, "network %s (host file %s)\n", g.network, path)
			own, src := hf.Subnet, netip.Addr{}
			if hf.Kind == hostfile.KindEdge {
				own, src = netip.PrefixFrom(hf.Address, 32), hf.Address
				fmt.Fprintf(out, "  edge host (no containers)  address %s  mtu %d  vni %d  device %s\n", hf.Address, hf.MTU, hf.VNI, dev)
			} else {
				fmt.Fprintf(out, "  subnet %s  gateway %s  mtu %d  bridge %s  vni %d  device %s  masquerade %s\n", hf.Subnet, hf.Gateway, hf.MTU, hf.Bridge, hf.VNI, dev, onOff(hf.IPMasq))
				printStaleMTUs(out, hf)
			}
			printIngress(out, g.network)
			target := datapath.PeerTarget{Device: dev, Src: src, DirectSrc: own.Addr(), Range: hf.Network}
			underlay, err := datapath.UnderlayOf(dev)
			if err == nil {
				target.Underlay = underlay.Name
			}
			installed, err := datapath.ListInstalledTarget(target)
			if err != nil {
				return fmt.Errorf("read kernel state of %s: %w", dev, err)
			}
			leases, cfg, etcdErr := g.leases(cmd)
			if etcdErr != nil {
				fmt.Fprintf(out, "  etcd: %v (showing kernel state only)\n", etcdErr)
			}
			printSelf(out, own, leases, etcdErr == nil)
			wanted := wantedPeers(own, leases, cfg, underlay)
			printPeers(out, target, wanted, installed, etcdErr == nil)
			return nil
		},
	}
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// printStaleMTUs names the containers started before the overlay MTU
// dropped: their veths keep the old, larger MTU.
func printStaleMTUs(out io.Writer, hf hostfile.HostFile) {
	ports, err := datapath.PortMTUs(hf.Bridge)
	if err != nil {
		return // no bridge yet: no containers either
	}
	stale := map[int]int{}
	for _, mtu := range ports {
		if mtu > hf.MTU {
			stale[mtu]++
		}
	}
	for _, mtu := range slices.Sorted(maps.Keys(stale)) {
		fmt.Fprintf(out, "  mtu: %d running container(s) keep MTU %d from before the overlay MTU dropped to %d: restart them to get %d (until then their large packets to the member that lowered it are lost)\n",
			stale[mtu], mtu, hf.MTU, hf.MTU)
	}
}

// printIngress shows the VXLAN ingress filter's drop counter.
func printIngress(out io.Writer, network string) {
	n, err := ingress.New(network).Dropped()
	if err != nil {
		fmt.Fprintf(out, "  vxlan ingress filter: cannot read it: %v\n", err)
		return
	}
	fmt.Fprintf(out, "  vxlan ingress filter: %d packets from non-members dropped\n", n)
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

// wantedPeers are the peers etcd says this host should have, each in the
// mode overlayd picks for it (agent.PeerMode).
func wantedPeers(own netip.Prefix, leases []subnet.Lease, cfg netconf.Config, u datapath.Underlay) []datapath.Peer {
	var wanted []datapath.Peer
	gateway := slices.ContainsFunc(leases, func(l subnet.Lease) bool { return l.Subnet == own && len(l.Advertise) > 0 })
	for _, l := range leases {
		mac, err := l.MAC()
		if l.Subnet == own || err != nil {
			continue
		}
		wanted = append(wanted, datapath.Peer{Subnet: l.Subnet, VTEPIP: l.Subnet.Addr(), VTEPMAC: mac, PublicIP: l.PublicIP,
			Routes: l.Advertise, Mode: agent.PeerMode(cfg, u, gateway, l)})
	}
	return wanted
}

func printSelf(out io.Writer, own netip.Prefix, leases []subnet.Lease, haveEtcd bool) {
	if !haveEtcd {
		return
	}
	for _, l := range leases {
		if l.Subnet == own {
			fmt.Fprintf(out, "  lease  %s %s held by %s (public IP %s, VTEP MAC %s, etcd lease %x)\n", l.Kind, own, l.Hostname, l.PublicIP, l.VTEPMAC, l.EtcdLease)
			if len(l.Advertise) > 0 {
				fmt.Fprintf(out, "  advertises %v (a gateway: members route these LANs to this host)\n", l.Advertise)
			}
			return
		}
	}
	fmt.Fprintf(out, "  lease  MISSING: etcd has no lease for %s; peers cannot reach this host's containers\n", own)
}

// printPeers lists peers wanted by etcd, how they are reached (vxlan or
// direct) and whether the kernel has them. An edge host's routes carry
// src, its overlay address. A gateway's advertised LANs are listed as their
// own rows, via the gateway.
func printPeers(out io.Writer, t datapath.PeerTarget, wanted []datapath.Peer, installed datapath.Installed, haveEtcd bool) {
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintln(w, "PEER SUBNET\tMODE\tVIA\tVTEP MAC\tPUBLIC IP\tSTATE")
	if !haveEtcd {
		for _, r := range installed.Routes {
			fmt.Fprintf(w, "%s\tvxlan\t%s\t\t\tinstalled\n", r.Dst, r.Via)
		}
		for _, r := range installed.Direct {
			fmt.Fprintf(w, "%s\tdirect\t%s\t\t\tinstalled\n", r.Dst, r.Via)
		}
		return
	}
	plan := datapath.DiffTarget(t, wanted, installed)
	for _, p := range wanted {
		via := p.VTEPIP
		if p.Mode == datapath.ModeDirect {
			via = p.PublicIP
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", p.Subnet, p.Mode, via, p.VTEPMAC, p.PublicIP, peerState(p, p.Subnet, plan))
		for _, lan := range p.Routes {
			fmt.Fprintf(w, "%s\tvxlan\t%s\t\t\t%s\n", lan, p.VTEPIP, lanState(p, lan, plan))
		}
	}
	for _, r := range append(slices.Clone(plan.DelRoutes), plan.DelDirect...) {
		fmt.Fprintf(w, "%s\t\t%s\t\t\tstale (no lease, or another mode; overlayd fixes it on its next pass)\n", r.Dst, r.Via)
	}
	if len(wanted) == 0 && len(plan.DelRoutes)+len(plan.DelDirect) == 0 {
		fmt.Fprintln(w, "(no peers)")
	}
}

// lanState is peerState for a gateway's advertised LAN: a member may drop
// one on purpose (it overlaps the host's own routes, the overlay, an older
// gateway's LAN or an underlay address), which overlayd logs.
func lanState(p datapath.Peer, lan netip.Prefix, plan datapath.Plan) string {
	if slices.ContainsFunc(plan.AddRoutes, func(r datapath.Route) bool { return r.Dst == lan }) {
		return "not routed here (dropped on purpose or not yet programmed: the overlayd log says which, reason advertise_*)"
	}
	return peerState(p, lan, plan)
}

// peerState says what the kernel lacks for the route to dst through p.
func peerState(p datapath.Peer, dst netip.Prefix, plan datapath.Plan) string {
	var missing []string
	routeTo := func(r datapath.Route) bool { return r.Dst == dst }
	if slices.ContainsFunc(plan.AddRoutes, routeTo) || slices.ContainsFunc(plan.AddDirect, routeTo) {
		missing = append(missing, "route")
	}
	if slices.ContainsFunc(plan.AddNeighs, func(n datapath.Neigh) bool { return n.IP == p.VTEPIP }) {
		missing = append(missing, "neigh")
	}
	if slices.ContainsFunc(plan.AddFDB, func(f datapath.FDBEntry) bool { return f.MAC.String() == p.VTEPMAC.String() }) {
		missing = append(missing, "fdb")
	}
	if len(missing) == 0 {
		return "ok"
	}
	return fmt.Sprintf("MISSING %v in kernel", missing)
}
