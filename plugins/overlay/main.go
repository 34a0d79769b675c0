// Command overlay is the CNI plugin of overlay: it connects a container to
// this host's overlay bridge with a veth pair and gives it an address from
// IPAM (overlay-ipam in this process, or the IPAM plugin the conflist
// names) with a default route via the bridge. It learns the bridge, gateway
// and MTU from the host file overlayd writes (pkg/hostfile) and never talks
// to etcd or to the daemon, so containers start and stop while overlayd
// restarts. Kernel work is done by pkg/datapath.
package main

import (
	"os"
	"runtime"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/overlaynet/overlay/pkg/cnierr"
)

func init() {
	// Namespace switches apply to one OS thread; keep main on the thread
	// that stays in the host namespace (CNI pkg/ns README).
	runtime.LockOSThread()
}

func main() {
	if lockPath, ok := os.LookupEnv(reapEnv); ok {
		os.Exit(reapVeths(lockPath))
	}
	p := plugin{stdout: os.Stdout, stderr: os.Stderr}
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cnierr.CodedVerb(p.add),
		Del:    cnierr.CodedVerb(p.del),
		Check:  cnierr.CodedVerb(p.check),
		Status: cnierr.CodedVerb(p.status),
		GC:     cnierr.CodedVerb(p.gc),
	}, version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"),
		"overlay: veth to this host's overlay bridge")
}
