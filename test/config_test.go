package e2e

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// TestConfigChangeLiveAndTeardown: a VNI and MTU change in etcd reaches
// running hosts without a restart: the VXLAN device is recreated under its
// new name with every peer, the old one and its routes are removed, the host
// file follows. Then `overlayctl teardown` finds what overlayd made by what
// it owns, not by the host file's name for it.
func TestConfigChangeLiveAndTeardown(t *testing.T) {
	c, a, b := connectedPair(t, 1)
	h1 := c.Hosts[0]

	c.SetNetwork("--vni", "2", "--mtu", "1400")
	for _, h := range c.Hosts {
		waitFor(t, 5*time.Second, "overlay.2 with its peer and no overlay.1", func() bool {
			return linkExists(h.NS, "overlay.2") && !linkExists(h.NS, "overlay.1") && len(h.vxlanRoutes()) == 1
		})
		waitFor(t, 5*time.Second, "the host file to say VNI 2, MTU 1400", func() bool {
			hf, err := hostfile.Read(h.HostFilePath())
			return err == nil && hf.VNI == 2 && hf.MTU == 1400
		})
	}
	a.mustReach(t, b.IP)
	b.mustReach(t, a.IP)
	if out := inNS(t, h1.NS, "ip", "route", "show", "proto", "86"); strings.Count(out, "dev overlay.2") != 1 || strings.Contains(out, "overlay.1") {
		t.Fatalf("routes of protocol 86 after the VNI change:\n%s", out)
	}
	// New containers get the new MTU.
	d := h1.Attach("d")
	if out := inNS(t, d.NS, "ip", "link", "show", "eth0"); !strings.Contains(out, "mtu 1400") {
		t.Errorf("new container's eth0: %s, want mtu 1400", out)
	}

	// Teardown after the daemon stops: with the host file pointing at an
	// old device name, it still removes what overlayd owns.
	h1.Daemon.Stop(10 * time.Second)
	hf := h1.HostFile()
	hf.VNI = 7
	if err := hostfile.Write(h1.HostFilePath(), hf); err != nil {
		t.Fatal(err)
	}
	out, err := h1.Ctl("teardown")
	if err != nil {
		t.Fatalf("overlayctl teardown: %v\n%s", err, out)
	}
	t.Logf("teardown: %s", strings.TrimSpace(out))
	for _, dev := range []string{"overlay.2", "overlay0"} {
		if linkExists(h1.NS, dev) {
			t.Errorf("%s still exists after teardown", dev)
		}
	}
	if routes := inNS(t, h1.NS, "ip", "route", "show", "proto", "86"); strings.TrimSpace(routes) != "" {
		t.Errorf("routes of protocol 86 left after teardown:\n%s", routes)
	}
	for _, f := range []string{h1.HostFilePath(), hostfile.ReadyPath(h1.RunDir, networkName)} {
		if _, err := os.Stat(f); err == nil {
			t.Errorf("%s left after teardown", f)
		}
	}
	if !linkExists(h1.NS, "eth0") {
		t.Fatal("teardown removed the underlay")
	}
}
