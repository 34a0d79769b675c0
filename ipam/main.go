// Command overlay-ipam is the CNI IPAM plugin of overlay. It hands out
// container addresses from the subnet overlayd leased for this host, which it
// reads from the host file (pkg/hostfile), and keeps its reservations in an
// on-disk store (ipam/store) shared by all its invocations on the host.
//
// It reads `network` and `runDir` from the top level of the network config it
// is given and `dataDir` from its `ipam` section, so one conflist entry
// configures both the overlay plugin and this one.
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"
)

func main() {
	p := plugin{stdout: os.Stdout}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    p.add,
		Del:    p.del,
		Check:  p.check,
		Status: p.status,
		GC:     p.gc,
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"),
		"overlay-ipam: addresses from this host's overlay subnet")
}
