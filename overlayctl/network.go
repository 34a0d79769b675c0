package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"

	"github.com/spf13/cobra"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/netconf"
)

func newNetworkCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Read or write a network's config in etcd"}
	cmd.AddCommand(newNetworkSetCmd(g), newNetworkGetCmd(g))
	return cmd
}

func newNetworkSetCmd(g *globals) *cobra.Command {
	var (
		cidr      string
		subnetLen int
		vni       uint32
		port      uint16
		mtu       int
		edgeCIDR  string
		ipMasq    bool
		direct    bool
	)
	cmd := &cobra.Command{
		Use:   "set NAME --cidr CIDR [--subnet-len N] [--vni N] [--port N] [--mtu N] [--edge-cidr CIDR] [--ip-masq=false] [--direct-routing]",
		Short: "Write (create or replace) a network's config",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := netconf.ValidateName(name); err != nil {
				return err
			}
			prefix, err := netip.ParsePrefix(cidr)
			if err != nil {
				return fmt.Errorf("--cidr %q is not a CIDR such as 10.244.0.0/16", cidr)
			}
			cfg := netconf.Config{Network: prefix, SubnetLen: subnetLen, VNI: vni, Port: port, MTU: mtu, IPMasq: ipMasq, DirectRouting: direct}
			if edgeCIDR != "" {
				if cfg.EdgeCIDR, err = netip.ParsePrefix(edgeCIDR); err != nil {
					return fmt.Errorf("--edge-cidr %q is not a CIDR such as 10.244.255.0/24", edgeCIDR)
				}
			}
			if err := cfg.Validate(); err != nil {
				return err
			}
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			old, _ := c.NetworkConfig(cmd.Context(), name)
			if err := c.SetNetworkConfig(cmd.Context(), name, cfg); err != nil {
				return err
			}
			// set replaces the whole config: say so when that dropped an
			// edge range the operator may just have forgotten to repeat.
			if old.EdgeCIDR.IsValid() && !cfg.EdgeCIDR.IsValid() {
				fmt.Fprintf(cmd.ErrOrStderr(), "overlayctl: note: edgeCIDR %s is removed (set replaces the whole config; pass --edge-cidr %s to keep it)\n", old.EdgeCIDR, old.EdgeCIDR)
			}
			return printConfig(g, cmd, "wrote network "+name, name, cfg)
		},
	}
	cmd.Flags().StringVar(&cidr, "cidr", "", "IPv4 range of the whole network, e.g. 10.244.0.0/16 (required)")
	cmd.Flags().IntVar(&subnetLen, "subnet-len", netconf.DefaultSubnetLen, "prefix length of each host's subnet")
	cmd.Flags().Uint32Var(&vni, "vni", netconf.DefaultVNI, "VXLAN network identifier (1-16777215)")
	cmd.Flags().Uint16Var(&port, "port", netconf.DefaultPort, "VXLAN UDP port")
	cmd.Flags().IntVar(&mtu, "mtu", 0, "overlay MTU for every host (0: each host derives it from its underlay MTU minus 50)")
	cmd.Flags().StringVar(&edgeCIDR, "edge-cidr", "", "range inside --cidr, whole subnets of --subnet-len, that edge hosts (overlayd --mode edge, machines without containers) take one address each from; containers get the rest (e.g. 10.244.255.0/24)")
	cmd.Flags().BoolVar(&ipMasq, "ip-masq", true, "masquerade what containers send outside the network (and outside the LANs gateways advertise) behind their host's address; --ip-masq=false leaves it to routing you build")
	cmd.Flags().BoolVar(&direct, "direct-routing", false, "route peers on a host's own L2 segment directly via their public IP, without VXLAN; peers elsewhere stay on VXLAN")
	cmd.MarkFlagRequired("cidr")
	return cmd
}

func newNetworkGetCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Print a network's config",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			cfg, err := c.NetworkConfig(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printConfig(g, cmd, "", args[0], cfg)
		},
	}
}

// printConfig prints a network's config: with -o json the document as it
// is stored in etcd (what overlayd reads), else one field per row, after
// heading when it is not empty.
func printConfig(g *globals, cmd *cobra.Command, heading, name string, cfg netconf.Config) error {
	data, err := cfg.Marshal()
	if err != nil {
		return fmt.Errorf("encode network config: %w", err)
	}
	return g.print(cmd, json.RawMessage(data), func(w io.Writer) error {
		if heading != "" {
			fmt.Fprintln(w, heading)
		}
		mtu := "derived: the smallest underlay MTU of all members - 50"
		if cfg.MTU != 0 {
			mtu = fmt.Sprint(cfg.MTU)
		}
		edge := "none (no edge host can join)"
		if cfg.EdgeCIDR.IsValid() {
			edge = cfg.EdgeCIDR.String()
		}
		rows := [][2]string{
			{"NETWORK", name},
			{"CIDR", cfg.Network.String()},
			{"SUBNET LEN", fmt.Sprintf("/%d", cfg.SubnetLen)},
			{"VNI", fmt.Sprintf("%d (device %s)", cfg.VNI, datapath.DeviceName(cfg.VNI))},
			{"PORT", fmt.Sprintf("%d/udp", cfg.Port)},
			{"MTU", mtu},
			{"EDGE CIDR", edge},
			{"IP MASQ", onIfTrue(cfg.IPMasq)},
			{"DIRECT ROUTING", onIfTrue(cfg.DirectRouting)},
		}
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\n", r[0], r[1])
		}
		return nil
	})
}

// onIfTrue is a switch's table cell.
func onIfTrue(b bool) string {
	if b {
		return "on"
	}
	return "off"
}
