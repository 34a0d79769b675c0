package cniinstall

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const testConflist = `{"cniVersion":"1.0.0","name":"overlay","plugins":[
 {"type":"overlay","network":"default","runDir":"/run/overlay","ipam":{"type":"overlay-ipam","dataDir":"/var/lib/cni/overlay"}},
 {"type":"portmap","capabilities":{"portMappings":true},"snat":true}]}`

// host is a fake root for one install: source plugins and conflist, and
// the host's CNI dirs (not created: the install creates them).
type host struct {
	t    *testing.T
	root string
	o    Options
}

func newHost(t *testing.T) *host {
	t.Helper()
	root := t.TempDir()
	h := &host{t: t, root: root, o: Options{
		From: filepath.Join(root, "src", "bin"), Plugins: []string{"overlay", "overlay-ipam", "portmap"},
		Conflist: filepath.Join(root, "src", "10-overlay.conflist"),
		BinDir:   filepath.Join(root, "host", "opt", "cni", "bin"), NetDir: filepath.Join(root, "host", "etc", "cni", "net.d"),
		Ledger: filepath.Join(root, "host", "var", "lib", "overlay", "cni-install.json"),
	}}
	for _, p := range h.o.Plugins {
		h.write(filepath.Join(h.o.From, p), "plugin "+p+" v1", 0o755)
	}
	h.write(h.o.Conflist, testConflist, 0o644)
	return h
}

func (h *host) write(path, data string, mode fs.FileMode) {
	h.t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		h.t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		h.t.Fatal(err)
	}
}

func (h *host) read(path string) string {
	h.t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		h.t.Fatal(err)
	}
	return string(data)
}

// snapshot is every path under the host dir with its type, mode and
// content digest.
func (h *host) snapshot() map[string]string {
	h.t.Helper()
	snap := map[string]string{}
	base := filepath.Join(h.root, "host")
	err := filepath.WalkDir(base, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if os.IsNotExist(err) && path == base {
				return filepath.SkipDir
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		v := info.Mode().String()
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			v += " " + hex.EncodeToString(sum[:])
		}
		snap[strings.TrimPrefix(path, base)] = v
		return nil
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return snap
}

func (h *host) mustInstall() Report {
	h.t.Helper()
	rep, err := Install(h.o)
	if err != nil {
		h.t.Fatalf("install: %v", err)
	}
	return rep
}

func (h *host) mustUninstall() Report {
	h.t.Helper()
	rep, err := Uninstall(h.o.Ledger)
	if err != nil {
		h.t.Fatalf("uninstall: %v", err)
	}
	return rep
}

func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if maps.Equal(got, want) {
		return
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if want[k] != got[k] {
			t.Errorf("%s: %s is %q, was %q", what, k, got[k], want[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if _, ok := got[k]; !ok {
			t.Errorf("%s: %s (%s) is gone", what, k, want[k])
		}
	}
}

func actionOf(rep Report, path string) string {
	for _, s := range rep.Steps {
		if s.Path == path {
			return s.Action
		}
	}
	return ""
}

func TestInstallThenUninstallLeavesNothing(t *testing.T) {
	h := newHost(t)
	before := h.snapshot()
	rep := h.mustInstall()
	for _, p := range h.o.Plugins {
		dst := filepath.Join(h.o.BinDir, p)
		if got := h.read(dst); got != "plugin "+p+" v1" {
			t.Errorf("%s holds %q", dst, got)
		}
		if info, _ := os.Stat(dst); info.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v, want 0755", dst, info.Mode())
		}
		if a := actionOf(rep, dst); a != "wrote" {
			t.Errorf("%s: action %q, want wrote", dst, a)
		}
	}
	if got := h.read(filepath.Join(h.o.NetDir, "10-overlay.conflist")); got != testConflist {
		t.Errorf("conflist holds %q", got)
	}
	// A second run changes nothing and says so.
	rep = h.mustInstall()
	if a := actionOf(rep, filepath.Join(h.o.BinDir, "overlay")); a != "unchanged" {
		t.Errorf("second install: overlay %q, want unchanged", a)
	}
	h.mustUninstall()
	sameTree(t, "after uninstall", h.snapshot(), before)
	// Nothing to undo is not an error.
	if rep := h.mustUninstall(); len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "nothing to undo") {
		t.Errorf("second uninstall: %+v", rep)
	}
}

func TestForeignReferencePluginIsKept(t *testing.T) {
	h := newHost(t)
	hostPortmap := filepath.Join(h.o.BinDir, "portmap")
	h.write(hostPortmap, "the host's portmap", 0o755)
	before := h.snapshot()
	rep := h.mustInstall()
	if got := h.read(hostPortmap); got != "the host's portmap" {
		t.Fatalf("portmap was replaced: %q", got)
	}
	if a := actionOf(rep, hostPortmap); a != "kept" {
		t.Errorf("portmap: %q, want kept", a)
	}
	h.mustUninstall()
	sameTree(t, "after uninstall", h.snapshot(), before)
}

func TestForeignConflistIsRefusedWithoutForce(t *testing.T) {
	h := newHost(t)
	theirs := filepath.Join(h.o.NetDir, "10-overlay.conflist")
	const foreign = `{"cniVersion":"1.0.0","name":"theirs","plugins":[{"type":"bridge"}]}`
	h.write(theirs, foreign, 0o600)
	before := h.snapshot()
	_, err := Install(h.o)
	if err == nil || !strings.Contains(err.Error(), theirs) || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("install over a foreign conflist: %v; want a refusal naming it and --force", err)
	}
	sameTree(t, "after the refusal", h.snapshot(), before)

	h.o.Force = true
	rep := h.mustInstall()
	if a := actionOf(rep, theirs); a != "replaced" {
		t.Errorf("conflist: %q, want replaced", a)
	}
	if got := h.read(theirs); got != testConflist {
		t.Fatalf("forced install left %q", got)
	}
	h.mustUninstall()
	sameTree(t, "after uninstall", h.snapshot(), before)
}

func TestForeignOwnPluginIsRefused(t *testing.T) {
	h := newHost(t)
	h.write(filepath.Join(h.o.BinDir, "overlay"), "somebody's overlay", 0o755)
	before := h.snapshot()
	if _, err := Install(h.o); err == nil || !strings.Contains(err.Error(), filepath.Join(h.o.BinDir, "overlay")) {
		t.Fatalf("install over a foreign overlay plugin: %v", err)
	}
	sameTree(t, "after the refusal", h.snapshot(), before)
}

func TestForeignConfigThatSortsFirst(t *testing.T) {
	h := newHost(t)
	first := filepath.Join(h.o.NetDir, "05-calico.conflist")
	h.write(first, `{"cniVersion":"1.0.0","name":"k8s-pod-network","plugins":[{"type":"calico"}]}`, 0o644)
	before := h.snapshot()
	_, err := Install(h.o)
	if err == nil || !strings.Contains(err.Error(), first) || !strings.Contains(err.Error(), "sorts before") {
		t.Fatalf("install behind a foreign config: %v", err)
	}
	sameTree(t, "after the refusal", h.snapshot(), before)
	h.o.Force = true
	rep := h.mustInstall()
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], first) {
		t.Errorf("forced install: warnings %q, want one naming %s", rep.Warnings, first)
	}
	if got := h.read(first); !strings.Contains(got, "calico") {
		t.Errorf("the foreign config was touched: %q", got)
	}
	h.mustUninstall()
	sameTree(t, "after uninstall", h.snapshot(), before)
}

func TestForeignConfigThatSortsAfterIsAWarning(t *testing.T) {
	h := newHost(t)
	after := filepath.Join(h.o.NetDir, "87-podman-bridge.conflist")
	h.write(after, `{"cniVersion":"0.4.0","name":"podman","plugins":[{"type":"bridge"}]}`, 0o644)
	rep := h.mustInstall()
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "sorts after") {
		t.Errorf("warnings %q, want one saying %s sorts after ours", rep.Warnings, after)
	}
}

func TestUpgradeAndChangedFiles(t *testing.T) {
	h := newHost(t)
	before := h.snapshot()
	h.mustInstall()
	// A new release: install again updates what it wrote.
	h.write(filepath.Join(h.o.From, "overlay"), "plugin overlay v2", 0o755)
	rep := h.mustInstall()
	dst := filepath.Join(h.o.BinDir, "overlay")
	if a := actionOf(rep, dst); a != "updated" || h.read(dst) != "plugin overlay v2" {
		t.Fatalf("upgrade: %q, file %q", a, h.read(dst))
	}
	// An operator edits the installed conflist: uninstall keeps it.
	conf := filepath.Join(h.o.NetDir, "10-overlay.conflist")
	h.write(conf, strings.Replace(testConflist, `"snat":true`, `"snat":false`, 1), 0o644)
	rep = h.mustUninstall()
	if a := actionOf(rep, conf); a != "kept" {
		t.Errorf("edited conflist: %q, want kept", a)
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("edited conflist removed: %v", err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Errorf("%s still there after uninstall: %v", dst, err)
	}
	// Its directory stays (not empty); everything else is as before.
	if err := os.Remove(conf); err != nil {
		t.Fatal(err)
	}
	after := h.snapshot()
	for _, d := range []string{"/etc/cni/net.d", "/etc/cni", "/etc", ""} {
		delete(after, d)
	}
	sameTree(t, "after uninstall", after, before)
}

func TestBadInputIsRefusedBeforeWriting(t *testing.T) {
	for name, mutate := range map[string]func(h *host){
		"conflist not JSON":   func(h *host) { h.write(h.o.Conflist, "{", 0o644) },
		"conflist wrong name": func(h *host) { h.o.Conflist = strings.TrimSuffix(h.o.Conflist, ".conflist") + ".json" },
		"no overlay plugin": func(h *host) {
			h.write(h.o.Conflist, `{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"portmap"}]}`, 0o644)
		},
		"plugin missing from --from": func(h *host) { h.o.Plugins = append(h.o.Plugins, "bandwidth") },
		"conflist needs a plugin nobody has": func(h *host) {
			h.write(h.o.Conflist, strings.Replace(testConflist, `"portmap"`, `"bandwidth"`, 1), 0o644)
		},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHost(t)
			mutate(h)
			before := h.snapshot()
			if _, err := Install(h.o); err == nil {
				t.Fatal("install succeeded")
			} else {
				t.Log(err)
			}
			sameTree(t, "after the refusal", h.snapshot(), before)
		})
	}
}

// A node that runs overlay gets a foreign config sorting first later (a
// package upgrade drops one): the next install (a pod restart) warns
// instead of refusing, or overlayd would not start again.
func TestReinstallWarnsAboutAConfigThatAppearedLater(t *testing.T) {
	h := newHost(t)
	h.mustInstall()
	later := filepath.Join(h.o.NetDir, "05-containerd-net.conflist")
	h.write(later, `{"cniVersion":"1.0.0","name":"containerd-net","plugins":[{"type":"bridge"}]}`, 0o644)
	rep := h.mustInstall()
	if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], later) {
		t.Errorf("warnings %q, want one naming %s", rep.Warnings, later)
	}
}

// Installing another of our conflists (CONFLIST=10-overlay-bandwidth...)
// removes the one installed before: one overlay conflist at a time.
func TestOtherConflistOfOursReplacesTheFirst(t *testing.T) {
	h := newHost(t)
	before := h.snapshot()
	h.mustInstall()
	first := filepath.Join(h.o.NetDir, "10-overlay.conflist")
	h.o.Conflist = filepath.Join(h.root, "src", "10-overlay-bandwidth.conflist")
	h.write(h.o.Conflist, strings.Replace(testConflist, `"snat":true`, `"snat":false`, 1), 0o644)
	rep := h.mustInstall()
	if _, err := os.Stat(first); !os.IsNotExist(err) {
		t.Fatalf("%s is still there next to the new conflist (%v); steps %+v", first, err, rep.Steps)
	}
	h.mustUninstall()
	sameTree(t, "after uninstall", h.snapshot(), before)
}

// --force over an earlier overlay install's conflist (copied by hand)
// adopts it: uninstall removes it instead of putting an overlay config
// without overlayd back.
func TestForceAdoptsAnEarlierOverlayConflist(t *testing.T) {
	h := newHost(t)
	before := h.snapshot()
	old := filepath.Join(h.o.NetDir, "10-overlay.conflist")
	h.write(old, strings.Replace(testConflist, `"snat":true`, `"snat":false`, 1), 0o644)
	if _, err := Install(h.o); err == nil {
		t.Fatal("install over a changed overlay conflist without --force succeeded")
	}
	h.o.Force = true
	h.mustInstall()
	h.mustUninstall()
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("uninstall put the earlier overlay conflist back (%v)", err)
	}
	after := h.snapshot()
	for _, d := range []string{"/etc/cni/net.d", "/etc/cni", "/etc", ""} {
		delete(after, d)
		delete(before, d)
	}
	sameTree(t, "after uninstall", after, before)
}

// A host plugin too old for the conflist's cniVersion is not kept
// silently: every pod's ADD would fail.
func TestOldHostPluginIsRefused(t *testing.T) {
	h := newHost(t)
	hostPortmap := filepath.Join(h.o.BinDir, "portmap")
	const old = "#!/bin/sh\necho '{\"cniVersion\":\"0.4.0\",\"supportedVersions\":[\"0.3.0\",\"0.3.1\",\"0.4.0\"]}'\n"
	h.write(hostPortmap, old, 0o755)
	before := h.snapshot()
	_, err := Install(h.o)
	if err == nil || !strings.Contains(err.Error(), hostPortmap) || !strings.Contains(err.Error(), "1.0.0") {
		t.Fatalf("install beside a CNI 0.4.0 portmap: %v", err)
	}
	sameTree(t, "after the refusal", h.snapshot(), before)
	h.o.Force = true
	h.mustInstall()
	h.mustUninstall()
	if got := h.read(hostPortmap); got != old {
		t.Errorf("uninstall did not put the host's portmap back: %q", got)
	}
}

// The ledger read where its paths do not exist (a container install's
// ledger on the host) keeps its records instead of calling them gone.
func TestUninstallElsewhereKeepsTheLedger(t *testing.T) {
	h := newHost(t)
	h.mustInstall()
	moved := filepath.Join(h.root, "moved")
	if err := os.Rename(filepath.Join(h.root, "host", "opt"), moved); err != nil {
		t.Fatal(err)
	}
	if _, err := Uninstall(h.o.Ledger); err == nil || !strings.Contains(err.Error(), "directory is missing") {
		t.Fatalf("uninstall with the bin dir missing: %v", err)
	}
	if err := os.Rename(moved, filepath.Join(h.root, "host", "opt")); err != nil {
		t.Fatal(err)
	}
	h.mustUninstall()
	if _, err := os.Stat(filepath.Join(h.o.BinDir, "overlay")); !os.IsNotExist(err) {
		t.Errorf("the second uninstall left overlay (%v)", err)
	}
}
