package e2e

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestInstall runs `make install` and `make uninstall` (hack/install.sh)
// against a staging root (DESTDIR) that looks like a host with CNI files,
// binaries and configuration of its own, and checks that install then
// uninstall leaves the tree exactly as it was: every path, type, mode,
// symlink target and content. It needs no root and no namespaces.
func TestInstall(t *testing.T) {
	t.Parallel()
	in := newInstaller(t)

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		root := foreignHost(t)
		before := snapshotTree(t, root)
		in.mustMake(t, "install", "DESTDIR="+root)
		in.checkInstalled(t, root, "/usr/local", in.bin, before)
		first := snapshotTree(t, root)

		// A second run updates in place: nothing changes, the manifest
		// included.
		in.mustMake(t, "install", "DESTDIR="+root)
		sameTree(t, "after the second install", snapshotTree(t, root), first)
		// A new release updates what changed; the manifest stays exact.
		newBin := in.newRelease(t)
		out := in.mustMake(t, "install", "DESTDIR="+root, "BIN="+newBin)
		in.checkInstalled(t, root, "/usr/local", newBin, before)
		if !strings.Contains(out, "updated "+filepath.Join(root, "usr/local/bin/overlayd")) {
			t.Errorf("the new release's install does not say it updated overlayd:\n%s", out)
		}

		out = in.mustMake(t, "uninstall", "DESTDIR="+root)
		sameTree(t, "after uninstall", snapshotTree(t, root), before)
		if !strings.Contains(out, "removed "+filepath.Join(root, "etc/default/overlayd")) {
			t.Errorf("uninstall does not say it removed the env file it wrote:\n%s", out)
		}
		out = in.mustMake(t, "uninstall", "DESTDIR="+root)
		if !strings.Contains(out, "nothing to uninstall") {
			t.Errorf("second uninstall does not say there is nothing to do:\n%s", out)
		}
		sameTree(t, "after the second uninstall", snapshotTree(t, root), before)
	})

	// An empty root: the CNI step creates etc/ (for etc/cni/net.d) and the
	// host part creates etc/systemd and etc/default inside it, so
	// uninstall must remove directories across both parts' records.
	t.Run("EmptyRoot", func(t *testing.T) {
		t.Parallel()
		root := t.TempDir()
		before := snapshotTree(t, root)
		in.mustMake(t, "install", "DESTDIR="+root)
		in.checkInstalled(t, root, "/usr/local", in.bin, before)
		in.mustMake(t, "uninstall", "DESTDIR="+root)
		sameTree(t, "after uninstall", snapshotTree(t, root), before)
	})

	t.Run("EditedEnvFileIsKept", func(t *testing.T) {
		t.Parallel()
		root := foreignHost(t)
		before := snapshotTree(t, root)
		in.mustMake(t, "install", "DESTDIR="+root)
		env := filepath.Join(root, "etc/default/overlayd")
		edited := append(readFile(t, env), []byte("OVERLAY_ARGS=\"--iface eth1\"\n")...)
		writeFile(t, env, edited, 0o644)

		// A second install leaves the admin's file alone and says so.
		out := in.mustMake(t, "install", "DESTDIR="+root)
		if !strings.Contains(out, "kept "+env) {
			t.Errorf("second install does not say it kept %s:\n%s", env, out)
		}
		out = in.mustMake(t, "uninstall", "DESTDIR="+root)
		if got := readFile(t, env); string(got) != string(edited) {
			t.Fatalf("uninstall changed the edited %s:\n%s", env, got)
		}
		if !strings.Contains(out, env) || !strings.Contains(out, "rm "+env) {
			t.Errorf("uninstall does not name the kept %s with the command to remove it:\n%s", env, out)
		}
		after := snapshotTree(t, root)
		delete(after, "etc/default/overlayd")
		sameTree(t, "after uninstall (but the edited env file)", after, before)
	})

	t.Run("ForeignConflist", func(t *testing.T) {
		t.Parallel()
		root := foreignHost(t)
		conflist := filepath.Join(root, "etc/cni/net.d/10-overlay.conflist")
		writeFile(t, conflist, []byte(`{"cniVersion":"1.0.0","name":"theirs","plugins":[{"type":"bridge","bridge":"cni0"}]}`), 0o600)
		before := snapshotTree(t, root)

		in.mustRefuse(t, root, conflist, before)

		in.mustMake(t, "install", "DESTDIR="+root, "FORCE=1")
		if got, want := readFile(t, conflist), readFile(t, filepath.Join(in.repo, "conf/10-overlay.conflist")); string(got) != string(want) {
			t.Errorf("FORCE=1 did not install our conflist:\n%s", got)
		}
		in.mustMake(t, "uninstall", "DESTDIR="+root)
		sameTree(t, "after uninstall", snapshotTree(t, root), before)
	})

	t.Run("Prefix", func(t *testing.T) {
		t.Parallel()
		root := foreignHost(t)
		before := snapshotTree(t, root)
		in.mustMake(t, "install", "DESTDIR="+root, "PREFIX=/opt/overlay")
		in.checkInstalled(t, root, "/opt/overlay", in.bin, before)
		if _, err := os.Lstat(filepath.Join(root, "usr/local/bin/overlayd")); err == nil {
			t.Error("PREFIX=/opt/overlay installed usr/local/bin/overlayd")
		}
		// Another PREFIX has nothing installed: uninstall says where it
		// looked and leaves the install alone.
		installed := snapshotTree(t, root)
		out := in.mustMake(t, "uninstall", "DESTDIR="+root)
		if !strings.Contains(out, "nothing to uninstall") || !strings.Contains(out, "make uninstall PREFIX=") {
			t.Errorf("uninstall with the default PREFIX does not point at PREFIX:\n%s", out)
		}
		sameTree(t, "after uninstall with another PREFIX", snapshotTree(t, root), installed)
		in.mustMake(t, "uninstall", "DESTDIR="+root, "PREFIX=/opt/overlay")
		sameTree(t, "after uninstall", snapshotTree(t, root), before)
	})

	// The unit is make install's: a changed one is not overwritten without
	// FORCE=1, which overwrites it (it stays the install's, so uninstall
	// removes it).
	t.Run("ChangedUnit", func(t *testing.T) {
		t.Parallel()
		root := foreignHost(t)
		before := snapshotTree(t, root)
		in.mustMake(t, "install", "DESTDIR="+root)
		unit := filepath.Join(root, "etc/systemd/system/overlayd.service")
		installed := readFile(t, unit)
		writeFile(t, unit, append(slices.Clip(installed), "# a local change\n"...), 0o644)
		changed := snapshotTree(t, root)

		in.mustRefuse(t, root, unit, changed)

		in.mustMake(t, "install", "DESTDIR="+root, "FORCE=1")
		if got := readFile(t, unit); string(got) != string(installed) {
			t.Errorf("FORCE=1 left the unit:\n%s", got)
		}
		in.mustMake(t, "uninstall", "DESTDIR="+root)
		sameTree(t, "after uninstall", snapshotTree(t, root), before)
	})

	// A host with overlay installed by hand (the old instructions): the
	// foreign overlayd and overlay plugin are refused, replaced with
	// FORCE=1 and put back by uninstall.
	t.Run("HandInstalled", func(t *testing.T) {
		t.Parallel()
		root := foreignHost(t)
		writeFile(t, filepath.Join(root, "usr/local/bin/overlayd"), []byte("overlayd 0.0.9, installed by hand\n"), 0o700)
		writeFile(t, filepath.Join(root, "opt/cni/bin/overlay"), []byte("overlay 0.0.9, installed by hand\n"), 0o755)
		before := snapshotTree(t, root)
		in.mustRefuse(t, root, filepath.Join(root, "usr/local/bin/overlayd"), before)

		in.mustMake(t, "install", "DESTDIR="+root, "FORCE=1")
		in.sameFile(t, filepath.Join(root, "usr/local/bin/overlayd"), filepath.Join(in.bin, "overlayd"))
		in.sameFile(t, filepath.Join(root, "opt/cni/bin/overlay"), filepath.Join(in.bin, "overlay"))
		in.mustMake(t, "install", "DESTDIR="+root, "FORCE=1")
		in.mustMake(t, "uninstall", "DESTDIR="+root)
		sameTree(t, "after uninstall", snapshotTree(t, root), before)
	})

	// A failure after the CNI step undoes what the run did: all of it on a
	// first install, back to the previous install on a second.
	t.Run("FailurePartWay", func(t *testing.T) {
		t.Parallel()
		root := foreignHost(t)
		// etc/systemd is a file: the unit's directory cannot be made.
		writeFile(t, filepath.Join(root, "etc/systemd"), []byte("not a directory\n"), 0o644)
		before := snapshotTree(t, root)
		out, err := in.make(t, "install", "DESTDIR="+root)
		if err == nil {
			t.Fatalf("install with etc/systemd a file succeeded:\n%s", out)
		}
		if !strings.Contains(out, "undid") {
			t.Errorf("the failed install does not say it undid its changes:\n%s", out)
		}
		sameTree(t, "after the failed install", snapshotTree(t, root), before)

		if err := os.Remove(filepath.Join(root, "etc/systemd")); err != nil {
			t.Fatal(err)
		}
		before = snapshotTree(t, root)
		in.mustMake(t, "install", "DESTDIR="+root)
		installed := snapshotTree(t, root)
		// A new release (another overlayd and overlay plugin) whose
		// install fails at the unit: the previous install is back.
		newBin := in.newRelease(t)
		out, err = in.make(t, "install", "DESTDIR="+root, "BIN="+newBin, "SYSTEMD_UNIT_DIR=/etc/default/overlayd/system")
		if err == nil {
			t.Fatalf("install with the unit dir under a file succeeded:\n%s", out)
		}
		sameTree(t, "after the failed second install", snapshotTree(t, root), installed)
		in.mustMake(t, "uninstall", "DESTDIR="+root)
		sameTree(t, "after uninstall", snapshotTree(t, root), before)
	})

	// install builds first; uninstall must work without a toolchain.
	t.Run("Dependencies", func(t *testing.T) {
		t.Parallel()
		for target, wantBuild := range map[string]bool{"install": true, "uninstall": false} {
			cmd := exec.Command("make", "-n", "-C", in.repo, target, "DESTDIR="+t.TempDir())
			cmd.Env = makeEnv()
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("make -n %s: %v\n%s", target, err, out)
			}
			if got := strings.Contains(string(out), "go build"); got != wantBuild {
				t.Errorf("make -n %s runs go build: %v, want %v\n%s", target, got, wantBuild, out)
			}
		}
	})
}

// installer runs the repo's make targets with the binaries under test.
type installer struct {
	repo, bin string
}

func newInstaller(t *testing.T) *installer {
	t.Helper()
	return &installer{repo: repoRoot(t), bin: binDir(t)}
}

// make runs `make TARGET ARGS...` in the repo with BIN set to the binaries
// under test. -o build: they are built already (make test did), and
// parallel builds into one bin dir would race with installs reading it.
func (in *installer) make(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("make", append([]string{"-s", "-C", in.repo, "-o", "build", "BIN=" + in.bin}, args...)...)
	cmd.Env = makeEnv()
	out, err := cmd.CombinedOutput()
	t.Logf("make %s:\n%s", strings.Join(args, " "), out)
	return string(out), err
}

// makeEnv is the environment without an outer make's (make e2e) flags,
// variables and jobserver: each make here is a separate run.
func makeEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "MAKEFLAGS=") || strings.HasPrefix(kv, "MFLAGS=") || strings.HasPrefix(kv, "MAKELEVEL=")
	})
}

// mustRefuse runs make install into root and wants it refused, naming
// path and FORCE=1, with root left as it was.
func (in *installer) mustRefuse(t *testing.T, root, path string, was map[string]treeEntry) {
	t.Helper()
	out, err := in.make(t, "install", "DESTDIR="+root)
	if err == nil {
		t.Fatalf("install over %s succeeded:\n%s", path, out)
	}
	if !strings.Contains(out, path) || !strings.Contains(out, "FORCE=1") {
		t.Errorf("the refusal does not name %s and FORCE=1:\n%s", path, out)
	}
	sameTree(t, "after the refusal", snapshotTree(t, root), was)
}

func (in *installer) mustMake(t *testing.T, args ...string) string {
	t.Helper()
	out, err := in.make(t, args...)
	if err != nil {
		t.Fatalf("make %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// newRelease is a bin dir like the one under test with another overlayd
// and overlay plugin (the installer copies them, it does not run them).
func (in *installer) newRelease(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"overlayd", "overlayctl", "overlay", "overlay-ipam", "portmap", "bandwidth", "firewall", "tuning", "loopback"} {
		data := readFile(t, filepath.Join(in.bin, name))
		if name == "overlayd" || name == "overlay" {
			data = append(slices.Clip(data), "next release"...)
		}
		writeFile(t, filepath.Join(dir, name), data, 0o755)
	}
	return dir
}

// checkInstalled checks what make install put under root for prefix,
// and that the manifest lists exactly the files and directories the host
// part added (the rest is the CNI ledger's).
func (in *installer) checkInstalled(t *testing.T, root, prefix, bin string, before map[string]treeEntry) {
	t.Helper()
	rel := func(p string) string { return strings.TrimPrefix(p, "/") }
	for _, b := range []string{"overlayd", "overlayctl"} {
		path := filepath.Join(root, prefix, "bin", b)
		in.sameFile(t, path, filepath.Join(bin, b))
		if info, err := os.Stat(path); err != nil || info.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v, want mode 0755", path, info)
		}
	}
	unit := string(readFile(t, filepath.Join(root, "etc/systemd/system/overlayd.service")))
	for _, want := range []string{"\nExecStart=" + prefix + "/bin/overlayd \\\n", "\nEnvironmentFile=/etc/default/overlayd\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("the installed unit lacks %q:\n%s", want, unit)
		}
	}
	in.sameFile(t, filepath.Join(root, "etc/default/overlayd"), filepath.Join(in.repo, "conf/overlayd.env"))
	in.sameFile(t, filepath.Join(root, "etc/cni/net.d/10-overlay.conflist"), filepath.Join(in.repo, "conf/10-overlay.conflist"))
	for _, p := range []string{"overlay", "overlay-ipam"} {
		in.sameFile(t, filepath.Join(root, "opt/cni/bin", p), filepath.Join(bin, p))
	}
	now := snapshotTree(t, root)
	if e, ok := before["opt/cni/bin/portmap"]; ok && now["opt/cni/bin/portmap"] != e {
		t.Errorf("the host's own portmap changed: %+v, was %+v", now["opt/cni/bin/portmap"], e)
	}

	manifest := filepath.Join(rel(prefix), "share/overlay/install-manifest")
	listed := map[string]bool{manifest: true}
	f, err := os.Open(filepath.Join(root, manifest))
	if err != nil {
		t.Fatalf("no manifest: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	list := func(p string) {
		if listed[rel(p)] {
			t.Errorf("the manifest lists %s twice", p)
		}
		listed[rel(p)] = true
	}
	for sc.Scan() {
		fields := strings.Split(sc.Text(), "\t")
		switch fields[0] {
		case "dir":
			list(fields[1])
		case "file", "replaced":
			list(fields[2])
			if got := now[rel(fields[2])].sha; got != fields[1] {
				t.Errorf("manifest: %s has sha256 %s, the file %s", fields[2], fields[1], got)
			}
		}
	}
	for p, e := range now {
		_, old := before[p]
		// The CNI step's files are in its ledger; its directories are in
		// the manifest too (uninstall removes them across both parts).
		cni := strings.HasPrefix(p, "opt/cni/bin/") || strings.HasPrefix(p, "etc/cni/net.d/") || strings.HasPrefix(p, "var/lib/overlay/")
		switch {
		case !old && !listed[p] && (e.typ == "dir" || !cni):
			t.Errorf("%s was added by make install but is not in the manifest", p)
		case old && listed[p]:
			t.Errorf("the manifest lists %s, which was there before", p)
		}
	}
	for p := range listed {
		if _, ok := now[p]; !ok {
			t.Errorf("the manifest lists %s, which does not exist", p)
		}
	}
}

func (in *installer) sameFile(t *testing.T, got, want string) {
	t.Helper()
	g, err := os.ReadFile(got)
	if err != nil {
		t.Errorf("not installed: %v", err)
		return
	}
	if string(g) != string(readFile(t, want)) {
		t.Errorf("%s differs from %s", got, want)
	}
}

// foreignHost is a staging root with things of the host's own: another
// network's conflist (sorting after ours), the host's own portmap,
// another file in etc/default and another binary (and a symlink to it)
// in usr/local/bin.
func foreignHost(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "etc/cni/net.d/99-other.conflist"),
		[]byte(`{"cniVersion":"1.0.0","name":"other","plugins":[{"type":"bridge","bridge":"br-other"}]}`), 0o644)
	writeFile(t, filepath.Join(root, "opt/cni/bin/portmap"), []byte("#!/bin/sh\n# the host's own portmap\n"), 0o755)
	writeFile(t, filepath.Join(root, "etc/default/keyboard"), []byte("XKBLAYOUT=\"us\"\n"), 0o644)
	writeFile(t, filepath.Join(root, "usr/local/bin/etcdctl"), []byte("#!/bin/sh\n# another binary\n"), 0o755)
	if err := os.Symlink("etcdctl", filepath.Join(root, "usr/local/bin/ectl")); err != nil {
		t.Fatal(err)
	}
	return root
}

// treeEntry is what snapshotTree keeps of one path.
type treeEntry struct {
	typ    string // dir, file, symlink or other
	mode   fs.FileMode
	target string // symlink target
	sha    string // file content
}

// snapshotTree records every path under root (relative, root itself as
// ".").
func snapshotTree(t *testing.T, root string) map[string]treeEntry {
	t.Helper()
	snap := map[string]treeEntry{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := os.Lstat(path)
		if err != nil {
			return err
		}
		e := treeEntry{mode: info.Mode()}
		switch {
		case info.IsDir():
			e.typ = "dir"
		case info.Mode()&fs.ModeSymlink != 0:
			e.typ = "symlink"
			if e.target, err = os.Readlink(path); err != nil {
				return err
			}
		case info.Mode().IsRegular():
			e.typ = "file"
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(data)
			e.sha = hex.EncodeToString(sum[:])
		default:
			e.typ = "other"
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		snap[rel] = e
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return snap
}

// sameTree reports every path added, removed or changed.
func sameTree(t *testing.T, when string, got, want map[string]treeEntry) {
	t.Helper()
	var diffs []string
	for p, w := range want {
		g, ok := got[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("removed %s (%s %v)", p, w.typ, w.mode))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("changed %s: %+v, was %+v", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			diffs = append(diffs, fmt.Sprintf("added %s (%s %v)", p, g.typ, g.mode))
		}
	}
	slices.Sort(diffs)
	for _, d := range diffs {
		t.Errorf("%s: %s", when, d)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t *testing.T, path string, data []byte, mode fs.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is masked by the umask; the tests compare modes.
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
