package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// TestShippedConflists runs every conf/*.conflist (as a runtime would load
// it) through the real plugins: ADD with the capability arguments its
// plugins declare, what each chained plugin did checked in the host, CHECK,
// DEL (nothing of the container left: address, rules, ifb) and DEL again;
// for a cniVersion 1.1.0 one also STATUS and GC. The chained reference
// plugins are built into bin/ by make build from the pinned plugins module.
// A new conflist is run too, and fails here if it does not work or chains a
// plugin this test cannot check.
func TestShippedConflists(t *testing.T) {
	t.Parallel()
	paths, err := filepath.Glob(filepath.Join("..", "conf", "*.conflist"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no conflist in conf/ (%v)", err)
	}
	c := newCluster(t, 1)
	c.SetNetwork()
	c.startAll()
	h := c.Hosts[0]

	var v11 []*libcni.NetworkConfigList
	for i, path := range paths {
		file := filepath.Base(path)
		list := h.shippedConfList(file)
		t.Logf("%s: cniVersion %s, network %q, plugins %v", file, list.CNIVersion, list.Name, pluginTypes(list))
		runShipped(t, h, file, list, i)
		newer, err := version.GreaterThanOrEqualTo(list.CNIVersion, "1.1.0")
		if err != nil {
			t.Errorf("%s: cniVersion %q: %v", file, list.CNIVersion, err)
		}
		if newer {
			statusAndGC(t, c, h, file, list, i)
			v11 = append(v11, list)
		}
	}
	if len(v11) == 0 {
		t.Fatalf("no conflist in conf/ has cniVersion 1.1.0 (containerd 2 wants one for STATUS)")
	}

	// Without the host file the plugin cannot serve ADD: STATUS must say so.
	h.Daemon.Stop(10 * time.Second)
	if err := os.Rename(h.HostFilePath(), h.HostFilePath()+".moved"); err != nil {
		t.Fatal(err)
	}
	for _, list := range v11 {
		if err := h.status(list); err == nil {
			t.Errorf("%s: STATUS succeeded with no host file in %s", list.Name, h.RunDir)
		} else {
			t.Logf("STATUS without host file: %v", err)
		}
	}
}

func pluginTypes(list *libcni.NetworkConfigList) []string {
	var ts []string
	for _, p := range list.Plugins {
		ts = append(ts, p.Network.Type)
	}
	return ts
}

// runShipped attaches one container with list and checks every plugin's
// effect, CHECK and DEL. i keeps names and ports apart between files.
func runShipped(t *testing.T, h *Host, file string, list *libcni.NetworkConfigList, i int) {
	t.Helper()
	if len(list.Plugins) == 0 || list.Plugins[0].Network.Type != "overlay" {
		t.Errorf("%s: the first plugin must be overlay, got %v", file, pluginTypes(list))
		return
	}
	hostPort := 18100 + i
	caps := map[string]any{}
	for _, p := range list.Plugins {
		if p.Network.Capabilities["portMappings"] {
			caps["portMappings"] = []map[string]any{{"hostPort": hostPort, "containerPort": iperfPort, "protocol": "tcp"}}
		}
		if p.Network.Capabilities["bandwidth"] {
			caps["bandwidth"] = bandwidthCaps()
		}
	}
	ct, err := h.AttachWithCaps(fmt.Sprintf("conf%d", i), list, caps)
	if err != nil {
		t.Errorf("%s: %v", file, err)
		return
	}
	for _, p := range list.Plugins {
		switch p.Network.Type {
		case "overlay":
			// Its address and veth are checked by CHECK and after DEL.
		case "portmap":
			h.wantDNAT(t, ct, hostPort, iperfPort)
		case "bandwidth":
			h.wantTBF(t, hostVeth(t, ct), ingressRate)
			h.wantTBF(t, ifbOf(t, ct), egressRate)
		case "firewall":
			h.wantFirewallRules(t, ct)
		case "tuning":
			// Without settings in the file it changes nothing by itself;
			// it applies what the runtime passes (podman: MAC in CNI_ARGS).
		default:
			t.Errorf("%s: chains plugin %q, which this test does not check: add its check", file, p.Network.Type)
		}
	}
	if err := ct.Check(); err != nil {
		t.Errorf("%s: CHECK: %v", file, err)
	}
	veth := hostVeth(t, ct)
	if err := ct.Del(); err != nil {
		t.Errorf("%s: DEL: %v", file, err)
	}
	if files := h.ipamFiles(ct.IP); len(files) != 0 {
		t.Errorf("%s: reservation of %s left after DEL: %v", file, ct.IP, files)
	}
	if !hostVethGone(h.NS, veth) {
		t.Errorf("%s: host veth %s left after DEL", file, veth)
	}
	h.wantNoRuleFor(t, ct)
	for _, iface := range ct.Result.Interfaces {
		if iface.Sandbox == "" && !hostVethGone(h.NS, iface.Name) {
			t.Errorf("%s: %s (from the ADD result) left after DEL", file, iface.Name)
		}
	}
	if err := ct.Del(); err != nil {
		t.Errorf("%s: second DEL: %v", file, err)
	}
}

// statusAndGC checks STATUS with overlayd ready, and that GC releases the
// address of an attachment the runtime no longer lists and keeps the other.
func statusAndGC(t *testing.T, c *Cluster, h *Host, file string, list *libcni.NetworkConfigList, i int) {
	t.Helper()
	if err := h.status(list); err != nil {
		t.Errorf("%s: STATUS with overlayd ready: %v", file, err)
	}
	// GC through a libcni with an empty result cache, so that libcni issues
	// no DELs of its own and only the plugins' GC can release anything.
	gcCache := filepath.Join(c.Dir, fmt.Sprintf("gc-cache-%d", i))
	gc := func(valid ...*Container) error {
		var args libcni.GCArgs
		for _, ct := range valid {
			args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: ct.rt.ContainerID, IfName: ct.rt.IfName})
		}
		ctx, cancel := cniCtx()
		defer cancel()
		return h.cniIn(gcCache, func(cni *libcni.CNIConfig) error { return cni.GCNetworkList(ctx, list, &args) })
	}
	keep, err := h.AttachWith(fmt.Sprintf("keep%d", i), list)
	if err != nil {
		t.Errorf("%s: %v", file, err)
		return
	}
	stale, err := h.AttachWith(fmt.Sprintf("stale%d", i), list)
	if err != nil {
		t.Errorf("%s: %v", file, err)
		return
	}
	if err := gc(keep); err != nil {
		t.Errorf("%s: GC: %v", file, err)
		return
	}
	if len(h.ipamFiles(keep.IP)) == 0 {
		t.Errorf("%s: GC released %s although its attachment was listed as valid", file, keep.IP)
	}
	if files := h.ipamFiles(stale.IP); len(files) != 0 {
		t.Errorf("%s: GC kept the reservation of %s, whose attachment was not valid: %v", file, stale.IP, files)
	}
	if err := keep.Check(); err != nil {
		t.Errorf("%s: CHECK of the kept container after GC: %v", file, err)
	}
}

// status runs CNI STATUS for list on h.
func (h *Host) status(list *libcni.NetworkConfigList) error {
	ctx, cancel := context.WithTimeout(context.Background(), cniTimeout)
	defer cancel()
	return h.cniIn(h.cacheDir, func(cni *libcni.CNIConfig) error { return cni.GetStatusNetworkList(ctx, list) })
}
