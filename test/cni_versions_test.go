package e2e

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// specVersions are the cniVersions both plugins declare (their main.go).
var specVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// atLeast reports whether cniVersion v has what version min brought.
func atLeast(t *testing.T, v, min string) bool {
	t.Helper()
	ok, err := version.GreaterThanOrEqualTo(v, min)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestCNISpecVersions runs each verb through libcni with a conflist of
// every spec version the plugins support: ADD answers in that version;
// CHECK (0.4.0+) passes, fails once the address is gone from the
// interface and passes again when it is back, while libcni refuses it
// before 0.4.0; GC (1.1.0) keeps a valid attachment and releases one no
// longer listed; DEL removes all and is idempotent. Then STATUS (1.1.0):
// OK while overlayd runs, code 50 once its ready stamp is stale after it
// stopped, and when the stamp is gone, while ADD still works.
func TestCNISpecVersions(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	c.SetNetwork()
	h := c.Hosts[0]
	// A 1s resync makes the ready stamp stale 3s (stampLife intervals)
	// after overlayd stops renewing it, instead of 30s.
	const resync = time.Second
	h.Start("--resync-interval", resync.String())
	hf := h.WaitReady()
	ctx, cancel := context.WithTimeout(context.Background(), 5*cniTimeout)
	defer cancel()
	// GC through a libcni with an empty cache: it issues no DEL of its
	// own, so only the plugins' GC can release anything.
	gcCache := filepath.Join(c.Dir, "gc-cache")
	gc := func(list *libcni.NetworkConfigList, valid ...*Container) error {
		// Non-nil: libcni sends a nil list as null, which the plugins
		// refuse rather than take as "release everything".
		args := libcni.GCArgs{ValidAttachments: []types.GCAttachment{}}
		for _, ct := range valid {
			args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: ct.rt.ContainerID, IfName: ct.rt.IfName})
		}
		return h.cniIn(gcCache, func(cni *libcni.CNIConfig) error { return cni.GCNetworkList(ctx, list, &args) })
	}

	for _, v := range specVersions {
		list := h.confListOf(networkName, v)
		ct, err := h.AttachWith("v"+strings.ReplaceAll(v, ".", ""), list)
		if err != nil {
			t.Fatalf("cniVersion %s: %v", v, err)
		}
		if got := ct.RawResult.Version(); got != v {
			t.Errorf("cniVersion %s: ADD answered with a %s result", v, got)
		}
		if !hf.Subnet.Contains(ct.IP) {
			t.Errorf("cniVersion %s: ADD gave %s, outside h1's subnet %s", v, ct.IP, hf.Subnet)
		}
		if l, ok, err := containerIf(ct.NS); err != nil || !ok || len(l.v4()) != 1 || l.v4()[0].Addr() != ct.IP {
			t.Errorf("cniVersion %s: eth0 = %+v (found %v, %v), want it holding %s", v, l, ok, err, ct.IP)
		}
		if len(h.ipamFiles(ct.IP)) == 0 {
			t.Errorf("cniVersion %s: no reservation of %s after ADD", v, ct.IP)
		}

		if !atLeast(t, v, "0.4.0") {
			if err := ct.Check(); !errors.Is(err, libcni.ErrorCheckNotSupp) {
				t.Errorf("cniVersion %s: CHECK = %v, want libcni's refusal (%v)", v, err, libcni.ErrorCheckNotSupp)
			}
		} else {
			if err := ct.Check(); err != nil {
				t.Errorf("cniVersion %s: CHECK: %v", v, err)
			}
			// The plugin reads the cached result (prevResult, in v's
			// format): without that address on eth0 CHECK must fail.
			addr := fmt.Sprintf("%s/%d", ct.IP, hf.Subnet.Bits())
			inNS(t, ct.NS, "ip", "addr", "del", addr, "dev", "eth0")
			err := ct.Check()
			if err == nil || cniCode(err) == 0 {
				t.Errorf("cniVersion %s: CHECK with %s gone from eth0 = %v, want a CNI error", v, addr, err)
			} else {
				t.Logf("cniVersion %s: CHECK with the address gone: code %d: %v", v, cniCode(err), err)
			}
			inNS(t, ct.NS, "ip", "addr", "add", addr, "dev", "eth0")
			if err := ct.Check(); err != nil {
				t.Errorf("cniVersion %s: CHECK with the address back: %v", v, err)
			}
		}

		if atLeast(t, v, "1.1.0") {
			if err := gc(list, ct); err != nil {
				t.Errorf("cniVersion %s: GC: %v", v, err)
			}
			if len(h.ipamFiles(ct.IP)) == 0 {
				t.Errorf("cniVersion %s: GC released %s although its attachment was valid", v, ct.IP)
			}
			if err := ct.Check(); err != nil {
				t.Errorf("cniVersion %s: CHECK after a GC that kept it: %v", v, err)
			}
			if err := gc(list); err != nil {
				t.Errorf("cniVersion %s: GC with no valid attachment: %v", v, err)
			}
			if files := h.ipamFiles(ct.IP); len(files) != 0 {
				t.Errorf("cniVersion %s: GC kept %s although its attachment was not valid: %v", v, ct.IP, files)
			}
			if err := ct.Check(); err == nil || cniCode(err) == 0 {
				t.Errorf("cniVersion %s: CHECK after GC released the address = %v, want a CNI error", v, err)
			} else {
				t.Logf("cniVersion %s: CHECK after GC released the address: code %d: %v", v, cniCode(err), err)
			}
		}

		if err := ct.Del(); err != nil {
			t.Errorf("cniVersion %s: DEL: %v", v, err)
		}
		if linkExists(ct.NS, "eth0") {
			t.Errorf("cniVersion %s: eth0 still exists after DEL", v)
		}
		if files := h.ipamFiles(ct.IP); len(files) != 0 {
			t.Errorf("cniVersion %s: reservation of %s left after DEL: %v", v, ct.IP, files)
		}
		if err := ct.Del(); err != nil {
			t.Errorf("cniVersion %s: second DEL: %v", v, err)
		}
	}
	if ports := h.bridgePorts(hf.Bridge); len(ports) != 0 {
		t.Errorf("bridge %s has ports %v after every DEL", hf.Bridge, ports)
	}

	// STATUS, 1.1.0 only (libcni answers nil for older lists without
	// running a plugin).
	list := h.confListOf(networkName, "1.1.0")
	status := func() error {
		return h.cniIn(h.cacheDir, func(cni *libcni.CNIConfig) error { return cni.GetStatusNetworkList(ctx, list) })
	}
	if err := status(); err != nil {
		t.Fatalf("STATUS with overlayd running: %v", err)
	}
	// SIGTERM leaves the stamp in place (and the lease, and the kernel
	// state): it goes stale when no one renews it.
	h.Daemon.Stop(10 * time.Second)
	stopped := time.Now()
	stamp := hostfile.ReadyPath(h.RunDir, networkName)
	var err error
	waitFor(t, 10*resync, "STATUS to answer 50 after overlayd stopped", func() bool {
		err = status()
		return err != nil
	})
	t.Logf("STATUS failed %s after overlayd stopped: %v", time.Since(stopped).Round(time.Millisecond), err)
	if code := cniCode(err); code != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), "stale") {
		t.Errorf("STATUS with a stale ready stamp: code %d, %v; want code %d naming the stale stamp", code, err, types.ErrPluginNotAvailable)
	}
	if cr := hostfile.CheckReady(stamp, time.Now()); !errors.Is(cr, hostfile.ErrStale) {
		t.Errorf("STATUS failed while the stamp is not stale: %v", cr)
	}
	// ADD never looks at the stamp: containers still start.
	if late, err := h.AttachWith("late", list); err != nil {
		t.Errorf("ADD with overlayd stopped: %v", err)
	} else if err := late.Del(); err != nil {
		t.Errorf("DEL with overlayd stopped: %v", err)
	}
	if err := hostfile.RemoveReady(stamp); err != nil {
		t.Fatal(err)
	}
	err = status()
	if code := cniCode(err); code != types.ErrPluginNotAvailable || !strings.Contains(err.Error(), "not found") {
		t.Errorf("STATUS with no ready stamp: code %d, %v; want code %d naming the missing stamp", code, err, types.ErrPluginNotAvailable)
	}
}
