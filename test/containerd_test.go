package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	// criNamespace is the containerd namespace of everything the CRI
	// plugin makes, the sandbox image included.
	criNamespace = "k8s.io"
	// sandboxImage is the CRI's sandbox ("pause") image: a hand-made
	// docker-archive of static busybox running `sleep infinity`, imported
	// into each containerd (there is no registry).
	sandboxImage = "overlay.test/sandbox:1"
	// ctrCNIConfDir and ctrCNIBinDir are where ctr 1.6 looks, hard-coded
	// (go-cni's defaults; no flag, env var or config moves them).
	ctrCNIConfDir = "/etc/cni/net.d"
	ctrCNIBinDir  = "/opt/cni/bin"
	// shimSocketDir holds every containerd 1.6 shim's socket, whatever the
	// daemon's state dir: /run/containerd/s/sha256(ADDRESS/NAMESPACE/ID).
	shimSocketDir = "/run/containerd/s"
)

// TestContainerd runs the plugins under containerd 1.6 (Debian 12), one
// daemon per simulated host with its own root, state and socket in temp
// dirs, driven two ways: `ctr run --cni` (ctr runs CNI itself) and the CRI
// plugin through crictl (the Kubernetes path: runp is ADD, stopp is DEL,
// rmp a second DEL without netns or prevResult). Both share the daemons:
// one cluster and two daemons instead of two of each, and one owner for
// /run/containerd/s.
func TestContainerd(t *testing.T) {
	t.Parallel()
	requireTools(t, "containerd", "ctr", "containerd-shim-runc-v2", "runc", "crictl", "nsenter")
	c := newCluster(t, 2)
	requireBin(t, c.Bin, "portmap", "loopback")
	c.SetNetwork()
	c.startAll()
	// ctr's fixed CNI dirs and the shims' fixed socket dir are shared with
	// every other containerd test on the machine (another checkout's make
	// test): one at a time.
	machineLock(t, "overlay-e2e-containerd", 5*time.Minute)
	shimSocketDirTeardown(t)
	image := writeSandboxImage(t, filepath.Join(c.Dir, "sandbox.tar"))
	rootfs := busyboxRootfs(t, filepath.Join(c.Dir, "rootfs"))
	var ds []*containerd
	for _, h := range c.Hosts {
		ds = append(ds, startContainerd(t, h, image))
	}
	t.Run("ctr run --cni", func(t *testing.T) { testCtrRun(t, ds, rootfs) })
	t.Run("CRI via crictl", func(t *testing.T) { testCRI(t, ds) })
}

// --- one containerd per host ----------------------------------------------------

// containerd is one host's daemon.
type containerd struct {
	h    *Host
	dir  string
	sock string
	proc *Proc
	// ctrNS is the namespace of ctr's containers; ctr's CNI containerID is
	// NAMESPACE-NAME, unique on the machine (libcni's cache is shared).
	ctrNS string
	// cgroup prefixes every container's parent cgroup, so teardown finds
	// them (runc removes a container's cgroup, not the parents it made).
	cgroup string
	// cniCalls is the log of the CRI plugin's CNI calls (see criWrapper).
	cniCalls string
	// shims are the NAMESPACE/ID of every task, for their socket files.
	shims []string
	// cniIDs are every CNI containerID used, for libcni cache teardown.
	cniIDs []string
}

// startContainerd writes h's config (CRI plugin with its CNI dirs in the
// temp dir, holding a wrapper that records each call), starts containerd in
// h's network namespace, imports the sandbox image and registers teardown.
func startContainerd(t *testing.T, h *Host, image string) *containerd {
	t.Helper()
	d := &containerd{h: h, dir: filepath.Join(h.c.Dir, fmt.Sprintf("h%d", h.N), "containerd"),
		ctrNS: h.c.Prefix, cgroup: fmt.Sprintf("%s-h%d-", h.c.Prefix, h.N)}
	d.sock = filepath.Join(d.dir, "containerd.sock")
	d.cniCalls = filepath.Join(d.dir, "cni-calls.log")
	for _, sub := range []string{"root", "state", "opt", "runc", "ctr-runc", "fifo", "cni-bin", "cni-conf", "pod-logs"} {
		if err := os.MkdirAll(filepath.Join(d.dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The CRI passes CNI_PATH = bin_dir only: every plugin the chain and
	// the CRI itself (loopback, for lo) run must be there.
	for _, p := range []string{"overlay-ipam", "portmap", "loopback"} {
		if err := os.Symlink(filepath.Join(h.c.Bin, p), filepath.Join(d.dir, "cni-bin", p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(d.dir, "cni-bin", "overlay"), criWrapper(filepath.Join(h.c.Bin, "overlay"), d.cniCalls), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.dir, "cni-conf", "10-overlay.conflist"), h.shippedConf("10-overlay.conflist"), 0o644); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(d.dir, "config.toml")
	if err := os.WriteFile(config, []byte(d.config()), 0o644); err != nil {
		t.Fatal(err)
	}
	d.proc = startCmd(t, fmt.Sprintf("containerd h%d", h.N), filepath.Join(h.c.Dir, fmt.Sprintf("containerd-h%d.log", h.N)),
		h.hostCmd("containerd", "--config", config))
	t.Cleanup(func() { d.teardown(t) })
	waitFor(t, 30*time.Second, fmt.Sprintf("containerd on h%d to serve (log %s)", h.N, d.proc.Log), func() bool {
		if d.proc.Exited() {
			t.Fatalf("containerd on h%d exited:\n%s", h.N, d.proc.Output())
		}
		_, err := d.ctr("", "version")
		return err == nil
	})
	if _, err := d.ctr(criNamespace, "images", "import", image); err != nil {
		t.Fatal(err)
	}
	return d
}

// config is the daemon's config (version 2, containerd 1.6).
func (d *containerd) config() string {
	p := func(sub string) string { return strconv.Quote(filepath.Join(d.dir, sub)) }
	return fmt.Sprintf(`version = 2
root = %s
state = %s

[grpc]
  address = %q

[ttrpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %s

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # root here may lack CAP_SYS_RESOURCE: the sandbox's oom_score_adj of
  # -998 cannot be set, so clamp it to containerd's own.
  restrict_oom_score_adj = true
  disable_apparmor = true
  # Pod netns files in the state dir, not in /run/netns.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %s
    conf_dir = %s
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
      Root = %s
`, p("root"), p("state"), d.sock, d.sock+".ttrpc", p("opt"), sandboxImage, p("cni-bin"), p("cni-conf"), p("runc"))
}

// criWrapper is the CRI's `overlay` plugin: a script that runs the real one
// and appends "COMMAND ID NETNS PREV RC" (tab-separated; PREV is prevResult
// or none) to log, so the test sees what containerd sent and what it got.
func criWrapper(real, log string) []byte {
	return []byte(fmt.Sprintf(`#!/bin/sh
in=$(cat)
case $in in *'"prevResult"'*) prev=prevResult ;; *) prev=none ;; esac
printf '%%s' "$in" | %q
rc=$?
printf '%%s\t%%s\t%%s\t%%s\t%%s\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$prev" "$rc" >>%q
exit $rc
`, real, log))
}

// ctr runs ctr against this daemon (in namespace ns unless empty), in h's
// network namespace: ctr run --cni runs the plugins itself.
func (d *containerd) ctr(ns string, args ...string) (string, error) {
	argv := []string{"ctr", "-a", d.sock}
	if ns != "" {
		argv = append(argv, "-n", ns)
	}
	argv = d.h.inHost(append(argv, args...)...)
	return runTimeout(argv[0], argv[1:]...)
}

// crictl runs crictl against this daemon's CRI with an empty config file
// (a machine's /etc/crictl.yaml must not apply).
func (d *containerd) crictl(args ...string) (string, error) {
	cfg := filepath.Join(d.dir, "crictl.yaml")
	if _, err := os.Stat(cfg); err != nil {
		if err := os.WriteFile(cfg, nil, 0o644); err != nil {
			return "", err
		}
	}
	argv := append([]string{"--config", cfg, "--runtime-endpoint", "unix://" + d.sock, "--image-endpoint", "unix://" + d.sock, "--timeout", "60s"}, args...)
	return runTimeout("crictl", argv...)
}

// teardown removes what the daemon may have left when a test failed:
// pods, tasks, the daemon, shims, processes in its cgroups, mounts under its
// dirs, its shim sockets, libcni cache entries.
func (d *containerd) teardown(t *testing.T) {
	if out, err := d.crictl("pods", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = d.crictl("stopp", id)
			_, _ = d.crictl("rmp", "-f", id)
		}
	}
	if out, err := d.ctr(d.ctrNS, "task", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = d.ctr(d.ctrNS, "task", "kill", "-s", "SIGKILL", id)
			_, _ = d.ctr(d.ctrNS, "task", "rm", "-f", id)
		}
	}
	if out, err := d.ctr(d.ctrNS, "container", "ls", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			_, _ = d.ctr(d.ctrNS, "container", "rm", id)
		}
	}
	d.proc.Stop(10 * time.Second)
	killProcsMentioning(t, d.dir+"/")
	removeCgroups(t, d.cgroup)
	unmountUnder(t, d.dir)
	for _, s := range d.shims {
		sum := sha256.Sum256([]byte(d.sock + "/" + s))
		p := filepath.Join(shimSocketDir, hex.EncodeToString(sum[:]))
		if err := os.Remove(p); err == nil {
			t.Logf("cleanup: removed shim socket %s (%s) its shim left", p, s)
		}
	}
	removeCacheEntries(t, d.cniIDs)
}

// shimSocketDirTeardown removes /run/containerd/s and /run/containerd at
// the end of the test if they did not exist before it (shims make them).
func shimSocketDirTeardown(t *testing.T) {
	var made []string
	for _, dir := range []string{filepath.Dir(shimSocketDir), shimSocketDir} {
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			made = append(made, dir)
		}
	}
	t.Cleanup(func() {
		for _, dir := range slices.Backward(made) {
			if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
				entries, _ := os.ReadDir(dir)
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				t.Errorf("cleanup: %s, made by this test's shims, is not empty: %v", dir, names)
			}
		}
	})
}

// --- sandbox image -----------------------------------------------------------------

// writeSandboxImage writes a docker-archive (what `docker save` makes) of
// one layer, static busybox, whose entrypoint sleeps forever: the pod
// sandbox's only process.
func writeSandboxImage(t *testing.T, path string) string {
	t.Helper()
	busybox, err := os.ReadFile(busyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(lw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}))
	must(lw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(busybox))}))
	_, err = lw.Write(busybox)
	must(err)
	must(lw.Close())
	layerSum := sha256.Sum256(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": []string{"/bin/busybox", "sleep", "infinity"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(layerSum[:])}},
	})
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, _ := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{sandboxImage}, "Layers": []string{"layer/layer.tar"}}})

	f, err := os.Create(path)
	must(err)
	defer f.Close()
	w := tar.NewWriter(f)
	for _, e := range []struct {
		name string
		data []byte
	}{{configName, config}, {"layer/layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		must(w.WriteHeader(&tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data))}))
		_, err := w.Write(e.data)
		must(err)
	}
	must(w.Close())
	return path
}

// --- ctr run --cni ---------------------------------------------------------------

// ctrContainer is a task started by a foreground `ctr run --cni`.
type ctrContainer struct {
	d    *containerd
	name string
	id   string // CNI containerID: NAMESPACE-NAME
	run  *Proc  // the foreground ctr run
	ip   netip.Addr
	veth string
}

// testCtrRun: ctr 1.6 runs CNI in the client. ADD comes after the task is
// created; only a FOREGROUND ctr run sends DEL, after its task has exited,
// with CNI_NETNS empty (the task's netns is gone by then, and its veth with
// it: holding the netns would keep a veth that no runtime could ask the
// plugin to remove). So each container is a foreground ctr run in the
// background of the test, ended by `ctr task kill`.
func testCtrRun(t *testing.T, ds []*containerd, rootfs string) {
	conf := installCtrCNI(t, ds[0].h.c)
	a := ds[0].ctrRun(t, conf, rootfs, "a")
	b := ds[1].ctrRun(t, conf, rootfs, "b")
	mustReachFrom(t, a.netns(t), b.ip)
	mustReachFrom(t, b.netns(t), a.ip)
	for _, ct := range []*ctrContainer{a, b} {
		ct.kill(t)
		if err := ct.d.h.released(ct.id, ct.ip, ct.veth); err != nil {
			t.Errorf("after ctr task kill %s on h%d (ctr's DEL): %v", ct.name, ct.d.h.N, err)
		}
	}
}

// installCtrCNI puts the conflist (rewritten per host by useHost) and the
// plugins where ctr looks, creating only its own files (never replacing
// one) and removing exactly those, and the dirs it made, at cleanup. It
// returns the conflist's path.
func installCtrCNI(t *testing.T, c *Cluster) string {
	t.Helper()
	var made []string // files and dirs, in creation order
	t.Cleanup(func() {
		for _, p := range slices.Backward(made) {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	for _, dir := range []string{ctrCNIConfDir, ctrCNIBinDir} {
		var missing []string
		for d := dir; ; d = filepath.Dir(d) {
			if _, err := os.Stat(d); err == nil {
				break
			}
			missing = append(missing, d)
		}
		for _, d := range slices.Backward(missing) {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
			made = append(made, d)
		}
	}
	for _, p := range []string{"overlay", "overlay-ipam", "portmap"} {
		dst := filepath.Join(ctrCNIBinDir, p)
		if _, err := os.Lstat(dst); err == nil {
			if p == "portmap" {
				continue // any portmap does: ctr asks for no port mappings
			}
			t.Fatalf("%s exists and is not this test's: ctr would run it instead of %s; remove it or run the tests on another machine",
				dst, filepath.Join(c.Bin, p))
		}
		if err := os.Symlink(filepath.Join(c.Bin, p), dst); err != nil {
			t.Fatal(err)
		}
		made = append(made, dst)
	}
	// ctr loads the FIRST conflist of the dir (bytewise order).
	conf := filepath.Join(ctrCNIConfDir, "00-"+c.Prefix+".conflist")
	if _, err := os.Lstat(conf); err == nil {
		t.Fatalf("%s exists already", conf)
	}
	made = append(made, conf, conf+".tmp")
	if err := os.WriteFile(conf, []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(ctrCNIConfDir)
	for _, e := range entries {
		ext := filepath.Ext(e.Name())
		if (ext == ".conf" || ext == ".conflist" || ext == ".json") && e.Name() < filepath.Base(conf) {
			t.Fatalf("ctr would load %s, not this test's %s (it takes the first conflist of %s)", e.Name(), filepath.Base(conf), ctrCNIConfDir)
		}
	}
	return conf
}

// ctrRun starts container name with a foreground `ctr run --cni` on d's
// host, after pointing conf at that host, and checks what ADD made.
func (d *containerd) ctrRun(t *testing.T, conf, rootfs, name string) *ctrContainer {
	t.Helper()
	h := d.h
	// One conflist for both hosts: it names the host's run and data dirs,
	// and ctr reads it once, at start. The rename makes the switch atomic.
	if err := os.WriteFile(conf+".tmp", h.shippedConf("10-overlay.conflist"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(conf+".tmp", conf); err != nil {
		t.Fatal(err)
	}
	ct := &ctrContainer{d: d, name: name, id: d.ctrNS + "-" + name}
	d.shims = append(d.shims, d.ctrNS+"/"+name)
	d.cniIDs = append(d.cniIDs, ct.id)
	cmd := h.hostCmd("ctr", "-a", d.sock, "-n", d.ctrNS, "run", "--cni", "--null-io",
		"--fifo-dir", filepath.Join(d.dir, "fifo"), "--runc-root", filepath.Join(d.dir, "ctr-runc"),
		"--cgroup", "/"+d.cgroup+name, "--rootfs", rootfs, name, "/bin/busybox", "sleep", "600")
	ct.run = startCmd(t, "ctr run "+name, filepath.Join(h.c.Dir, fmt.Sprintf("ctr-run-h%d-%s.log", h.N, name)), cmd)
	// Before the Proc's own cleanup (LIFO): a killed task lets ctr run its
	// DEL and exit by itself.
	t.Cleanup(func() {
		if !ct.run.Exited() {
			_, _ = d.ctr(d.ctrNS, "task", "kill", "-s", "SIGKILL", name)
		}
	})
	waitFor(t, 30*time.Second, fmt.Sprintf("ctr run %s on h%d to start its task", name, h.N), func() bool {
		if ct.run.Exited() {
			t.Fatalf("ctr run %s on h%d exited:\n%s", name, h.N, ct.run.Output())
		}
		return ct.pid() > 0
	})
	ct.veth, ct.ip = cachedAttachment(t, "overlay", ct.id)
	if inside := netnsAddr(t, ct.netns(t)); inside != ct.ip {
		t.Fatalf("%s's eth0 has %s, the ADD result says %s", name, inside, ct.ip)
	}
	h.attached(t, ct.id, ct.ip, ct.veth)
	t.Logf("ctr run --cni %s on h%d: %s, host veth %s", name, h.N, ct.ip, ct.veth)
	return ct
}

// pid returns the task's PID once it runs, else 0.
func (ct *ctrContainer) pid() int {
	out, err := ct.d.ctr(ct.d.ctrNS, "task", "ls")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == ct.name && f[2] == "RUNNING" {
			pid, _ := strconv.Atoi(f[1])
			return pid
		}
	}
	return 0
}

func (ct *ctrContainer) netns(t *testing.T) string {
	t.Helper()
	pid := ct.pid()
	if pid == 0 {
		t.Fatalf("task %s is not running", ct.name)
	}
	return fmt.Sprintf("/proc/%d/ns/net", pid)
}

// kill ends the task; the foreground ctr run then deletes it, sends DEL
// and exits. ctr logs a failed DEL as "network review" and still exits.
func (ct *ctrContainer) kill(t *testing.T) {
	t.Helper()
	if _, err := ct.d.ctr(ct.d.ctrNS, "task", "kill", "-s", "SIGKILL", ct.name); err != nil {
		t.Fatal(err)
	}
	if _, ok := ct.run.WaitExit(30 * time.Second); !ok {
		t.Fatalf("ctr run %s still running 30s after its task was killed:\n%s", ct.name, ct.run.Output())
	}
	if out := ct.run.Output(); strings.Contains(out, "network review") || strings.Contains(out, "level=error") {
		t.Errorf("ctr run %s logged an error (its DEL failed?):\n%s", ct.name, out)
	}
	if _, err := ct.d.ctr(ct.d.ctrNS, "container", "rm", ct.name); err != nil {
		t.Error(err)
	}
}

// --- CRI ---------------------------------------------------------------------------

// criPod is a pod sandbox and what its ADD made.
type criPod struct {
	d     *containerd
	name  string
	id    string
	netns string
	ip    netip.Addr
	veth  string
}

// cniCall is one line of the wrapper's log.
type cniCall struct{ command, netns, prev, rc string }

func (c cniCall) String() string {
	return fmt.Sprintf("%s(CNI_NETNS=%q, %s) exit %s", c.command, c.netns, c.prev, c.rc)
}

// testCRI: the Kubernetes path. crictl runp makes the pod's netns and sends
// ADD; stopp sends DEL with the netns and the cached result, then removes
// the netns; rmp sends a second DEL, with CNI_NETNS empty and no prevResult
// (the first DEL removed libcni's cache entry), which must succeed. The
// pod's netns is held open through it all, so a DEL that left the veth
// would show.
func testCRI(t *testing.T, ds []*containerd) {
	p := ds[0].runPod(t, "p")
	q := ds[1].runPod(t, "q")
	mustReachFrom(t, p.netns, q.ip)
	mustReachFrom(t, q.netns, p.ip)
	for _, pod := range []*criPod{p, q} {
		h := pod.d.h
		if _, err := pod.d.crictl("stopp", pod.id); err != nil {
			t.Fatal(err)
		}
		if err := h.released(pod.id, pod.ip, pod.veth); err != nil {
			t.Errorf("after crictl stopp %s on h%d (the CRI's DEL): %v", pod.name, h.N, err)
		}
		if _, err := pod.d.crictl("rmp", pod.id); err != nil {
			t.Fatal(err)
		}
		if err := h.released(pod.id, pod.ip, pod.veth); err != nil {
			t.Errorf("after crictl rmp %s on h%d: %v", pod.name, h.N, err)
		}
		if out, err := pod.d.crictl("pods", "-q", "--id", pod.id); err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("crictl pods still lists %s after rmp: %q %v", pod.id, out, err)
		}
		want := []cniCall{
			{"ADD", pod.netns, "none", "0"},
			{"DEL", pod.netns, "prevResult", "0"},
			{"DEL", "", "none", "0"},
		}
		if got := pod.d.cniCallsFor(t, pod.id); !slices.Equal(got, want) {
			t.Errorf("the CRI's calls of the overlay plugin for pod %s on h%d:\n got %v\nwant %v (runp, stopp, rmp)", pod.name, h.N, got, want)
		}
	}
}

// runPod runs a pod sandbox named name on d's host and checks what ADD
// made; the pod's netns is held open until the test ends.
func (d *containerd) runPod(t *testing.T, name string) *criPod {
	t.Helper()
	h := d.h
	cfg := filepath.Join(d.dir, "pod-"+name+".json")
	podConfig, _ := json.Marshal(map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": h.c.Prefix + "-" + name, "attempt": 0},
		"log_directory": filepath.Join(d.dir, "pod-logs", name),
		"linux":         map[string]any{"cgroup_parent": "/" + d.cgroup + name},
	})
	if err := os.WriteFile(cfg, podConfig, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := d.crictl("runp", cfg)
	if err != nil {
		t.Fatalf("crictl runp %s on h%d: %v", name, h.N, err)
	}
	pod := &criPod{d: d, name: name, id: strings.TrimSpace(lastLine(out))}
	d.shims = append(d.shims, criNamespace+"/"+pod.id)
	d.cniIDs = append(d.cniIDs, pod.id)
	t.Cleanup(func() {
		_, _ = d.crictl("stopp", pod.id)
		_, _ = d.crictl("rmp", "-f", pod.id)
	})
	out, err = d.crictl("inspectp", pod.id)
	if err != nil {
		t.Fatal(err)
	}
	var inspect struct {
		Status struct {
			State   string `json:"state"`
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct {
						Type string `json:"type"`
						Path string `json:"path"`
					} `json:"namespaces"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &inspect); err != nil {
		t.Fatalf("crictl inspectp %s: %v\n%s", pod.id, err, out)
	}
	for _, n := range inspect.Info.RuntimeSpec.Linux.Namespaces {
		if n.Type == "network" {
			pod.netns = n.Path
		}
	}
	if inspect.Status.State != "SANDBOX_READY" || pod.netns == "" {
		t.Fatalf("pod %s: state %s, netns %q; want SANDBOX_READY and a netns", name, inspect.Status.State, pod.netns)
	}
	holdNetns(t, pod.netns)
	pod.veth, pod.ip = cachedAttachment(t, "overlay", pod.id)
	if inspect.Status.Network.IP != pod.ip.String() {
		t.Fatalf("crictl inspectp %s says IP %s, the ADD result %s", name, inspect.Status.Network.IP, pod.ip)
	}
	if inside := netnsAddr(t, pod.netns); inside != pod.ip {
		t.Fatalf("pod %s's eth0 has %s, the ADD result says %s", name, inside, pod.ip)
	}
	h.attached(t, pod.id, pod.ip, pod.veth)
	t.Logf("crictl runp %s on h%d: %s, host veth %s, netns %s", name, h.N, pod.ip, pod.veth, pod.netns)
	return pod
}

// cniCallsFor returns the wrapper's log lines for containerID.
func (d *containerd) cniCallsFor(t *testing.T, containerID string) []cniCall {
	t.Helper()
	data, err := os.ReadFile(d.cniCalls)
	if err != nil {
		t.Fatalf("the CRI never ran the overlay plugin: %v", err)
	}
	var calls []cniCall
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		f := strings.Split(line, "\t")
		if len(f) == 5 && f[1] == containerID {
			calls = append(calls, cniCall{command: f[0], netns: f[2], prev: f[3], rc: f[4]})
		}
	}
	return calls
}
