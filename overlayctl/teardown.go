package main

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/firewall"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/ingress"
	"github.com/overlaynet/overlay/pkg/statusfile"
)

func newTeardownCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "teardown",
		Short: "Remove this host's overlay kernel state for the network (devices, routes, forward and masquerade rules, ingress filter), host file, ready stamp and status file; stop overlayd first",
		Long: `Removes every device overlayd made for the network, found by its alias
"overlay:NETWORK" (so devices of an earlier VNI or port go too), the routes
overlayd installed (protocol 86) inside the network's range, the FORWARD
and masquerade rules, the VXLAN ingress filter (nftables table
overlay-NETWORK), the host file, the ready stamp and the status file. Devices named in the host file are
removed too, for devices made by releases that set no alias.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := hostfile.Path(g.runDir, g.network)
			var also []datapath.OwnedLink
			var cidr netip.Prefix
			if hf, err := hostfile.Read(path); err == nil {
				also = []datapath.OwnedLink{{Name: datapath.DeviceName(hf.VNI), Type: "vxlan"}}
				if hf.Bridge != "" { // an edge host has none
					also = append(also, datapath.OwnedLink{Name: hf.Bridge, Type: "bridge"})
				}
				cidr = hf.Network
			}
			removed, err := datapath.TeardownNetwork(g.network, cidr, also...)
			if err != nil {
				return err
			}
			rules, err := removeRules(g.network, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			removed = append(removed, rules...)
			for _, f := range []string{path, hostfile.ReadyPath(g.runDir, g.network), statusfile.Path(g.runDir, g.network)} {
				if err := os.Remove(f); err == nil {
					removed = append(removed, f)
				} else if !errors.Is(err, os.ErrNotExist) {
					return fmt.Errorf("remove %s: %w", f, err)
				}
			}
			v := teardownView{Network: g.network, Removed: append([]string{}, removed...)}
			return g.print(cmd, v, func(w io.Writer) error {
				if len(removed) == 0 {
					_, err := fmt.Fprintf(w, "nothing of network %s found on this host\n", g.network)
					return err
				}
				_, err := fmt.Fprintf(w, "removed %s\n", strings.Join(removed, ", "))
				return err
			})
		},
	}
}

// teardownView is what teardown removed (its JSON form).
type teardownView struct {
	Network string `json:"network"`
	// Removed names each thing removed (a device, routes, rules, a file);
	// empty when nothing of the network was found.
	Removed []string `json:"removed"`
}

// removeRules removes the network's FORWARD and masquerade rules and its
// VXLAN ingress filter; a missing iptables is reported, not fatal (then
// there are no rules to remove).
func removeRules(network string, stderr io.Writer) ([]string, error) {
	var removed []string
	if tables, err := firewall.NewTables(); err != nil {
		fmt.Fprintf(stderr, "overlayctl: forward and masquerade rules not checked: %v\n", err)
	} else {
		if err := tables.Forward(network).Remove(); err != nil {
			return removed, err
		}
		if err := tables.Masq(network).Remove(); err != nil {
			return removed, err
		}
		removed = append(removed, "forward and masquerade rules")
	}
	if err := ingress.New(network).Remove(); err != nil {
		return removed, err
	}
	return append(removed, "vxlan ingress filter"), nil
}
