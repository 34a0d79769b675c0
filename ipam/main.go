// Command overlay-ipam is the CNI IPAM plugin of overlay, for main plugins
// other than overlay's (bridge, macvlan, ...): it hands out container
// addresses from the subnet overlayd leased for this host. The overlay
// plugin does the same work in-process (ipam/ipamplugin) and does not exec
// this binary when its conflist names overlay-ipam.
package main

import (
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/overlaynet/overlay/ipam/ipamplugin"
	"github.com/overlaynet/overlay/pkg/cnierr"
)

func main() {
	p := ipamplugin.Plugin{Stdout: os.Stdout}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cnierr.CodedVerb(p.Add),
		Del:    cnierr.CodedVerb(p.Del),
		Check:  cnierr.CodedVerb(p.Check),
		Status: cnierr.CodedVerb(p.Status),
		GC:     cnierr.CodedVerb(p.GC),
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"),
		"overlay-ipam: addresses from this host's overlay subnet")
}
