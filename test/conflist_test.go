package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

// TestShippedConflists runs the conflists from conf/ (as a runtime would
// load them) through the real plugins: ADD, CHECK and DEL for both, and for
// the 1.1.0 one also STATUS and GC. The chained reference plugin (portmap)
// is built into bin/ by make build from the pinned plugins module.
func TestShippedConflists(t *testing.T) {
	c := newCluster(t, 1)
	c.SetNetwork()
	c.startAll()
	h := c.Hosts[0]
	ctx, cancel := context.WithTimeout(context.Background(), 5*cniTimeout)
	defer cancel()

	for i, file := range []string{"10-overlay.conflist", "10-overlay-1.1.conflist"} {
		list := h.shippedConfList(file)
		ct, err := h.AttachWith("conf"+string(rune('a'+i)), list)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if err := ct.Check(); err != nil {
			t.Errorf("%s: CHECK: %v", file, err)
		}
		if err := ct.Del(); err != nil {
			t.Errorf("%s: DEL: %v", file, err)
		}
		if files := h.ipamFiles(ct.IP); len(files) != 0 {
			t.Errorf("%s: reservation of %s left after DEL: %v", file, ct.IP, files)
		}
		if err := ct.Del(); err != nil {
			t.Errorf("%s: second DEL: %v", file, err)
		}
	}

	list := h.shippedConfList("10-overlay-1.1.conflist")
	if list.CNIVersion != "1.1.0" {
		t.Fatalf("10-overlay-1.1.conflist has cniVersion %s, want 1.1.0", list.CNIVersion)
	}
	status := func() error {
		return h.cniIn(h.cacheDir, func(cni *libcni.CNIConfig) error { return cni.GetStatusNetworkList(ctx, list) })
	}
	if err := status(); err != nil {
		t.Errorf("STATUS with overlayd ready: %v", err)
	}

	// GC through a libcni with an empty result cache, so that libcni issues
	// no DELs of its own and only the plugins' GC can release anything.
	gcCache := filepath.Join(c.Dir, "gc-cache")
	gc := func(valid ...*Container) error {
		var args libcni.GCArgs
		for _, ct := range valid {
			args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: ct.rt.ContainerID, IfName: ct.rt.IfName})
		}
		return h.cniIn(gcCache, func(cni *libcni.CNIConfig) error { return cni.GCNetworkList(ctx, list, &args) })
	}
	keep, err := h.AttachWith("keep", list)
	if err != nil {
		t.Fatal(err)
	}
	stale, err := h.AttachWith("stale", list)
	if err != nil {
		t.Fatal(err)
	}
	if err := gc(keep); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if len(h.ipamFiles(keep.IP)) == 0 {
		t.Errorf("GC released %s although its attachment was listed as valid", keep.IP)
	}
	if files := h.ipamFiles(stale.IP); len(files) != 0 {
		t.Errorf("GC kept the reservation of %s, whose attachment was not valid: %v", stale.IP, files)
	}
	if err := keep.Check(); err != nil {
		t.Errorf("CHECK of the kept container after GC: %v", err)
	}

	// Without the host file the plugin cannot serve ADD: STATUS must say so.
	h.Daemon.Stop(10 * time.Second)
	if err := os.Rename(h.HostFilePath(), h.HostFilePath()+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := status(); err == nil {
		t.Errorf("STATUS succeeded with no host file in %s", h.RunDir)
	} else {
		t.Logf("STATUS without host file: %v", err)
	}
}
