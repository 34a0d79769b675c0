package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/overlaynet/overlay/pkg/cniinstall"
	"github.com/overlaynet/overlay/pkg/state"
)

// defaultLedger is where installs record what they wrote: overlay's own
// state dir, which the DaemonSet mounts anyway.
const defaultLedger = state.DefaultDir + "/cni-install.json"

func newCNICmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "cni",
		Short: "Install or remove overlay's CNI plugins and conflist on this host",
	}
	cmd.AddCommand(newCNIInstallCmd(g), newCNIUninstallCmd(g))
	return cmd
}

func newCNIInstallCmd(g *globals) *cobra.Command {
	var o cniinstall.Options
	var plugins string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Copy the CNI plugins into the CNI bin dir and the conflist into the CNI net dir, recording what was written",
		Long: `Copies the plugins named by --plugins from --from into --bin-dir and the
conflist into --net-dir under its own file name, atomically, and records
every file it wrote (with its digest), every directory it created and every
file it replaced in --ledger, for "overlayctl cni uninstall".

Files it did not write are foreign. It refuses, before writing anything:
a foreign conflist of the same name, a foreign CNI config that sorts before
ours (containerd and CRI-O use the first config in the directory), and a
foreign file named like overlay's own plugins. A foreign reference plugin
(the host's own portmap, say) is kept. --force replaces foreign files,
keeping a backup that uninstall puts back, and installs even when a foreign
config sorts first. Running it again updates what it installed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Plugins = splitList(plugins)
			rep, err := cniinstall.Install(o)
			if perr := printCNIReport(g, cmd, rep); perr != nil && err == nil {
				err = perr
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.From, "from", "/opt/overlay/cni/bin", "directory holding the plugin binaries")
	f.StringVar(&plugins, "plugins", strings.Join(cniinstall.DefaultPlugins(), ","), "comma-separated plugins to install from --from")
	f.StringVar(&o.Conflist, "conflist", "/etc/overlay/cni/10-overlay.conflist", "conflist to install (its runDir must be overlayd's --run-dir)")
	f.StringVar(&o.BinDir, "bin-dir", "/opt/cni/bin", "the runtime's CNI plugin directory")
	f.StringVar(&o.NetDir, "net-dir", "/etc/cni/net.d", "the runtime's CNI config directory")
	f.StringVar(&o.Ledger, "ledger", defaultLedger, "file recording what was installed (backups go beside it)")
	f.BoolVar(&o.Force, "force", false, "replace foreign files of the same name (backed up, restored by uninstall) and install even when a foreign config sorts first")
	return cmd
}

func newCNIUninstallCmd(g *globals) *cobra.Command {
	var ledger string
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove exactly what cni install recorded in the ledger, and put back what it replaced",
		Long: `Removes each file the ledger lists if it is still as installed (a changed
one is kept and named), puts back the files --force replaced, removes the
directories the install created if they are empty, then the ledger. With no
ledger there is nothing to do. Stop overlayd and run "overlayctl teardown"
for the kernel state.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := cniinstall.Uninstall(ledger)
			if perr := printCNIReport(g, cmd, rep); perr != nil && err == nil {
				err = perr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&ledger, "ledger", defaultLedger, "the ledger cni install wrote")
	return cmd
}

// printCNIReport prints the steps (also those of a run that failed part
// way) and the warnings on stderr.
func printCNIReport(g *globals, cmd *cobra.Command, rep cniinstall.Report) error {
	for _, w := range rep.Warnings {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
	}
	if rep.Steps == nil {
		rep.Steps = []cniinstall.Step{}
	}
	return g.print(cmd, rep, func(w io.Writer) error {
		for _, s := range rep.Steps {
			fmt.Fprintf(w, "%s\t%s\t%s\n", s.Action, s.Path, s.Note)
		}
		return nil
	})
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
