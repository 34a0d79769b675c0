package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// globals are the flags every subcommand shares.
type globals struct {
	endpoints string
	prefix    string
	caFile    string
	certFile  string
	keyFile   string
	timeout   time.Duration
	network   string
	runDir    string
	output    outputFormat

	cancel context.CancelFunc // ends the command's etcd deadline
}

// newRootCmd returns the command tree and the function to call once it has
// run.
func newRootCmd() (*cobra.Command, func()) {
	g := &globals{output: outputTable}
	root := &cobra.Command{
		Use:           "overlayctl",
		Short:         "Operate an overlay network: config, leases, host status",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Bound the whole command, so a script is never left hanging when
		// etcd goes away after the first contact.
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			if g.timeout > 0 {
				var ctx context.Context
				ctx, g.cancel = context.WithTimeout(cmd.Context(), g.timeout)
				cmd.SetContext(ctx)
			}
		},
	}
	f := root.PersistentFlags()
	// The etcd flags default to overlayd's environment (the DaemonSet and
	// /etc/default/overlayd set it), so `kubectl exec ds/overlayd --
	// overlayctl status` needs no flags.
	f.StringVar(&g.endpoints, "etcd-endpoints", envOr("OVERLAY_ETCD_ENDPOINTS", subnet.DefaultEndpoints), "comma-separated etcd client URLs (env OVERLAY_ETCD_ENDPOINTS)")
	f.StringVar(&g.prefix, "etcd-prefix", envOr("OVERLAY_ETCD_PREFIX", subnet.DefaultPrefix), "etcd key prefix (env OVERLAY_ETCD_PREFIX)")
	f.StringVar(&g.caFile, "etcd-cafile", os.Getenv("OVERLAY_ETCD_CAFILE"), "CA bundle to verify etcd's certificate (enables TLS; env OVERLAY_ETCD_CAFILE)")
	f.StringVar(&g.certFile, "etcd-certfile", os.Getenv("OVERLAY_ETCD_CERTFILE"), "client certificate for etcd (env OVERLAY_ETCD_CERTFILE)")
	f.StringVar(&g.keyFile, "etcd-keyfile", os.Getenv("OVERLAY_ETCD_KEYFILE"), "client key for etcd (env OVERLAY_ETCD_KEYFILE)")
	f.DurationVar(&g.timeout, "etcd-timeout", 5*time.Second, "timeout for the etcd requests of one command")
	f.StringVar(&g.network, "network", "default", "network name")
	f.StringVar(&g.runDir, "run-dir", hostfile.DefaultRunDir, "overlayd's run dir (where the host file is)")
	f.VarP(&g.output, "output", "o", "output format: table (for people) or json (one document, for scripts)")
	root.AddCommand(newNetworkCmd(g), newLeasesCmd(g), newLeaseCmd(g), newStatusCmd(g), newWhyCmd(g), newTeardownCmd(g), newCNICmd(g))
	return root, func() {
		if g.cancel != nil {
			g.cancel()
		}
	}
}

// envOr is the environment variable name, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// connect opens the subnet map with the shared flags.
func (g *globals) connect(ctx context.Context) (*subnet.Client, error) {
	c, err := subnet.Connect(ctx, subnet.ClientConfig{
		Endpoints: subnet.ParseEndpoints(g.endpoints), Prefix: g.prefix, DialTimeout: g.timeout,
		CAFile: g.caFile, CertFile: g.certFile, KeyFile: g.keyFile,
	})
	if errors.Is(err, subnet.ErrTLS) {
		return nil, err // it already names the file or endpoint and what to change
	}
	if err != nil {
		return nil, fmt.Errorf("%w; check --etcd-endpoints and that etcd is running", err)
	}
	return c, nil
}
