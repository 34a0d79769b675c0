package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// leaseView is one lease as overlayctl prints it (also its JSON form).
type leaseView struct {
	// Kind is host (a container subnet) or edge (one address, no containers).
	Kind        string `json:"kind"`
	Subnet      string `json:"subnet"`
	Hostname    string `json:"hostname"`
	HostID      string `json:"hostID"`
	PublicIP    string `json:"publicIP"`
	VTEP        string `json:"vtep"`
	VTEPMAC     string `json:"vtepMAC"`
	UnderlayMTU int    `json:"underlayMTU,omitempty"`
	EtcdLease   string `json:"etcdLease"`
	// Advertise lists the LANs a gateway edge host routes for.
	Advertise []string `json:"advertise,omitempty"`
}

func newLeasesCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "leases",
		Short: "List every member's lease in the network (container hosts and edge hosts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			leases, _, err := c.Leases(cmd.Context(), g.network)
			if err != nil {
				return err
			}
			var vni uint32
			if cfg, err := c.NetworkConfig(cmd.Context(), g.network); err == nil {
				vni = cfg.VNI
			}
			// Container hosts first, then edge hosts, each in address order
			// (etcd lists keys as strings: 10.244.39.0 after 10.244.255.7).
			slices.SortFunc(leases, func(a, b subnet.Lease) int {
				return cmp.Or(cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind)), a.Subnet.Addr().Compare(b.Subnet.Addr()))
			})
			views := make([]leaseView, 0, len(leases))
			for _, l := range leases {
				views = append(views, viewLease(l, vni))
			}
			return printLeases(cmd, views, output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(newLeasesDeleteCmd(g))
	return cmd
}

func kindOrder(k subnet.Kind) int {
	if k == subnet.KindEdge {
		return 1
	}
	return 0
}

func viewLease(l subnet.Lease, vni uint32) leaseView {
	v := leaseView{
		Kind: string(l.Kind), Subnet: l.Subnet.String(), Hostname: l.Hostname, HostID: l.HostID, PublicIP: l.PublicIP.String(),
		VTEPMAC: l.VTEPMAC, UnderlayMTU: l.UnderlayMTU, EtcdLease: fmt.Sprintf("%x", l.EtcdLease),
	}
	for _, p := range l.Advertise {
		v.Advertise = append(v.Advertise, p.String())
	}
	if vni != 0 {
		v.VTEP = datapath.DeviceName(vni) + " " + l.Subnet.Addr().String()
	}
	return v
}

func printLeases(cmd *cobra.Command, views []leaseView, output string) error {
	out := cmd.OutOrStdout()
	switch output {
	case "json":
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(views)
	case "table":
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "KIND\tSUBNET\tHOSTNAME\tPUBLIC IP\tVTEP MAC\tETCD LEASE\tADVERTISES")
		for _, v := range views {
			adv := strings.Join(v.Advertise, ",")
			if adv == "" {
				adv = "-"
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Kind, v.Subnet, v.Hostname, v.PublicIP, v.VTEPMAC, v.EtcdLease, adv)
		}
		return w.Flush()
	default:
		return fmt.Errorf("--output %q: use table or json", output)
	}
}

func newLeasesDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete SUBNET",
		Short: "Delete a member's lease key (evict it; a running overlayd puts its key back); an edge host's is ADDRESS/32",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := netip.ParsePrefix(args[0])
			if err != nil || s.Masked() != s {
				return fmt.Errorf("%q is not a subnet such as 10.244.3.0/24", args[0])
			}
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			ok, err := c.DeleteLease(cmd.Context(), g.network, s)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("network %s has no lease for %s", g.network, s)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted lease %s of network %s\n", s, g.network)
			return nil
		},
	}
}
