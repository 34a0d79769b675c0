package main

import (
	"context"
	"strings"
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
}

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "overlayctl",
		Short:         "Operate an overlay network: config, leases, host status",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	f.StringVar(&g.endpoints, "etcd-endpoints", "http://127.0.0.1:2379", "comma-separated etcd client URLs")
	f.StringVar(&g.prefix, "etcd-prefix", subnet.DefaultPrefix, "etcd key prefix")
	f.StringVar(&g.caFile, "etcd-cafile", "", "CA bundle to verify etcd's certificate (enables TLS)")
	f.StringVar(&g.certFile, "etcd-certfile", "", "client certificate for etcd")
	f.StringVar(&g.keyFile, "etcd-keyfile", "", "client key for etcd")
	f.DurationVar(&g.timeout, "etcd-timeout", 5*time.Second, "timeout for etcd requests")
	f.StringVar(&g.network, "network", "default", "network name")
	f.StringVar(&g.runDir, "run-dir", hostfile.DefaultRunDir, "overlayd's run dir (where the host file is)")
	root.AddCommand(newNetworkCmd(g), newLeasesCmd(g), newStatusCmd(g), newTeardownCmd(g))
	return root
}

// connect opens the subnet map with the shared flags.
func (g *globals) connect(ctx context.Context) (*subnet.Client, error) {
	var eps []string
	for _, e := range strings.Split(g.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	return subnet.Connect(ctx, subnet.ClientConfig{
		Endpoints: eps, Prefix: g.prefix, DialTimeout: g.timeout,
		CAFile: g.caFile, CertFile: g.certFile, KeyFile: g.keyFile,
	})
}
