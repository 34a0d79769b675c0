package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/overlaynet/overlay/pkg/cnierr"
	"github.com/overlaynet/overlay/pkg/datapath"
)

// withBinDir is h with libcni looking for plugins in dir only.
func (h *testHost) withBinDir(dir string) *testHost {
	c := *h
	c.cni = libcni.NewCNIConfigWithCacheDir([]string{dir}, h.cacheDir, nil)
	return &c
}

// binDirWith makes a bin dir holding the built overlay plugin and files.
func binDirWith(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(binDir, "overlay"), filepath.Join(dir, "overlay")); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// With ipam.type overlay-ipam the plugin does IPAM itself: ADD, CHECK and
// DEL work from a bin dir that has no overlay-ipam binary.
func TestOwnIPAMRunsInProcess(t *testing.T) {
	h := newTestHost(t).withBinDir(binDirWith(t, nil))
	c := newNS(t)
	list := h.confList("1.0.0", "")
	_, addr := h.mustAdd(list, rt("c1", c))
	if got := h.reservations(); len(got) != 1 || got[0].IP != addr.Addr() {
		t.Errorf("reservations = %v, want %s", got, addr)
	}
	if err := h.check(list, rt("c1", c)); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := h.del(list, rt("c1", c)); err != nil {
		t.Errorf("DEL: %v", err)
	}
	h.wantReleased("c1")
}

// Any other ipam.type is exec'd from CNI_PATH as the spec says, for every
// verb.
func TestForeignIPAMIsExeced(t *testing.T) {
	log := filepath.Join(t.TempDir(), "calls")
	wrapper := fmt.Sprintf("#!/bin/sh\necho \"$CNI_COMMAND\" >>%s\nexec %s\n", log, filepath.Join(binDir, "overlay-ipam"))
	h := newTestHost(t).withBinDir(binDirWith(t, map[string]string{"other-ipam": wrapper}))
	c := newNS(t)
	list := h.confList("1.0.0", "")
	var conf map[string]any
	if err := json.Unmarshal(list.Plugins[0].Bytes, &conf); err != nil {
		t.Fatal(err)
	}
	conf["ipam"].(map[string]any)["type"] = "other-ipam"
	raw, _ := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "overlay-test", "plugins": []any{conf}})
	list, err := libcni.ConfListFromBytes(raw)
	if err != nil {
		t.Fatal(err)
	}
	h.mustAdd(list, rt("c1", c))
	if err := h.check(list, rt("c1", c)); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := h.del(list, rt("c1", c)); err != nil {
		t.Errorf("DEL: %v", err)
	}
	calls, _ := os.ReadFile(log)
	if got := strings.Fields(string(calls)); !slices.Equal(got, []string{"ADD", "CHECK", "DEL"}) {
		t.Errorf("the foreign IPAM plugin was run for %v, want ADD CHECK DEL", got)
	}
	h.wantReleased("c1")
}

// DEL answers once the address is off the interface and released: the
// interface name is free at once (another ADD with it works right away),
// the host end is off the bridge, and the pair itself is gone shortly
// after (a detached reaper deletes it).
func TestDelFreesInterfaceAtOnce(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	res, _ := h.mustAdd(list, rt("c1", c))
	hostVeth := res.Interfaces[0].Name
	if err := h.del(list, rt("c1", c)); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if names := linkNames(links(t, c.name)); slices.Contains(names, "eth0") {
		t.Errorf("container links right after DEL = %v, want eth0 gone", names)
	}
	if ports := links(t, h.name(), "master", "overlay0"); len(ports) != 0 {
		t.Errorf("bridge ports right after DEL = %v, want none", linkNames(ports))
	}
	h.wantReleased("c1")
	h.mustAdd(list, rt("c2", c)) // same netns, same CNI_IFNAME
	waitNoLink(t, h.name(), hostVeth)
}

// An ADD killed after it made the pair but before the container got its
// address leaves a veth without an address; the retried ADD removes it and
// wires the container.
func TestAddReplacesHalfMadeAttachment(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	owner := datapath.VethOwner{Network: "default", ContainerID: "c1", IfName: "eth0"}
	ipRun(t, h.name(), "link", "add", owner.HostVethName(0), "type", "veth", "peer", "name", "eth0", "netns", c.name)
	list := h.confList("1.0.0", "")
	res, addr := h.mustAdd(list, rt("c1", c))
	h.wantAttached("c1", c, addr, res.Interfaces[0].Name)

	// Killed between the address and the default route: the same.
	ipRun(t, c.name, "route", "del", "default")
	res, again := h.mustAdd(list, rt("c1", c))
	if again != addr {
		t.Errorf("the retried ADD gave %s, want the attachment's %s", again, addr)
	}
	h.wantAttached("c1", c, addr, res.Interfaces[0].Name)
	var routes []ipRoute
	if err := ipJSON(t, c.name, &routes, "route", "show", "default"); err != nil || len(routes) != 1 {
		t.Errorf("default routes after the retried ADD: %v, %v", routes, err)
	}
}

// GC removes the veth of an attachment the runtime no longer lists even
// while its netns is held open, and releases its address; what is listed
// stays.
func TestGCRemovesStrayVeth(t *testing.T) {
	h := newTestHost(t)
	list := h.confList("1.1.0", "")
	kept, stray := newNS(t), newNS(t)
	keptRes, keptAddr := h.mustAdd(list, rt("kept", kept))
	strayRes, _ := h.mustAdd(list, rt("stray", stray))
	err := h.inHost(func(ctx context.Context) error {
		return h.cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "kept", IfName: "eth0"}}})
	})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	waitNoLink(t, h.name(), strayRes.Interfaces[0].Name)
	if names := linkNames(links(t, stray.name)); slices.Contains(names, "eth0") {
		t.Errorf("stray container still has eth0 after GC: %v", names)
	}
	h.wantReleased("stray")
	h.wantAttached("kept", kept, keptAddr, keptRes.Interfaces[0].Name)
}

// CHECK's failures carry codes a runtime can tell apart: 100 for an
// interface that is not as ADD left it, 4 for a netns that is not one.
func TestCheckCodes(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	h.mustAdd(list, rt("c1", c))
	ipRun(t, c.name, "link", "set", "eth0", "down")
	e := wantCNICode(t, h.check(list, rt("c1", c)), cnierr.CodeAttachmentChanged)
	if !strings.Contains(e.Details, "is down") || !strings.Contains(e.Details, "DEL the attachment and ADD it again") {
		t.Errorf("CHECK of a downed interface: %q / %q", e.Msg, e.Details)
	}
	bad := &libcni.RuntimeConf{ContainerID: "c1", NetNS: filepath.Join(t.TempDir(), "not-a-netns"), IfName: "eth0"}
	wantCNICode(t, h.check(list, bad), types.ErrInvalidEnvironmentVariables)
}

func ipRun(t *testing.T, netns string, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", append([]string{"-n", netns}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v in %s: %v: %s", args, netns, err, out)
	}
}

// A DEL without CNI_NETNS (CRI's second DEL) still removes the pair when
// something keeps the netns, and so the veth, alive.
func TestDelWithoutNetnsRemovesLiveVeth(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t) // stays open: the "something" holding it
	list := h.confList("1.0.0", "")
	res, _ := h.mustAdd(list, rt("c1", c))
	if err := h.del(list, &libcni.RuntimeConf{ContainerID: "c1", IfName: "eth0"}); err != nil {
		t.Fatalf("DEL without netns: %v", err)
	}
	if names := linkNames(links(t, h.name())); slices.Contains(names, res.Interfaces[0].Name) {
		t.Errorf("host veth %s still there after DEL without netns", res.Interfaces[0].Name)
	}
	if names := linkNames(links(t, c.name)); slices.Contains(names, "eth0") {
		t.Errorf("container still has eth0 after DEL without netns: %v", names)
	}
	h.wantReleased("c1")
}
