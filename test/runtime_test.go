package e2e

// What the real-runtime tests (podman_test.go, containerd_test.go) share:
// finding the runtimes, a busybox root filesystem, netns holders, the checks
// that a runtime's DEL left nothing behind, and the teardown of what a
// runtime can leave outside the test's temp dir (mounts, cgroups, processes,
// libcni cache entries).

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// cniResultsDir is libcni's result cache. podman 4.3, ctr 1.6 and
	// containerd 1.6's CRI plugin all use the default and cannot move it.
	cniResultsDir = "/var/lib/cni/results"
	// busyboxPath must be a static busybox (Debian's busybox-static): it is
	// copied into root filesystems that hold nothing else.
	busyboxPath = "/bin/busybox"
	// runtimeCmdTimeout bounds one runtime CLI call (podman, ctr, crictl),
	// so a hung runtime fails the test instead of reaching go test's
	// global timeout, which skips every cleanup.
	runtimeCmdTimeout = 2 * time.Minute
)

// requireTools fails (it never skips: a missing runtime is a broken test
// machine, not a reason to pass) unless every command is on PATH and
// /bin/busybox is static.
func requireTools(t *testing.T, cmds ...string) {
	t.Helper()
	requireRoot(t)
	var missing []string
	for _, c := range cmds {
		if _, err := exec.LookPath(c); err != nil {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%s not found on PATH: run `make deps` (it installs podman, containerd, runc and busybox-static and builds crictl)",
			strings.Join(missing, ", "))
	}
	f, err := elf.Open(busyboxPath)
	if err != nil {
		t.Fatalf("%v: run `make deps` (busybox-static)", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s is dynamically linked; the containers need the static one: run `make deps` (busybox-static)", busyboxPath)
		}
	}
}

// requireBin fails unless the extra binaries a runtime test needs (beyond
// the harness's) were built into OVERLAY_BIN_DIR.
func requireBin(t *testing.T, bin string, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := os.Stat(filepath.Join(bin, n)); err != nil {
			t.Fatalf("%s is missing in %s: run `make build`", n, bin)
		}
	}
}

// runTimeout runs cmd with runtimeCmdTimeout and returns its combined
// output.
func runTimeout(name string, args ...string) (string, error) {
	return runTimeoutEnv(nil, name, args...)
}

func runTimeoutEnv(env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), runtimeCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("killed after %s: %w", runtimeCmdTimeout, err)
	}
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// inHost returns argv prefixed so it runs in h's network namespace and the
// machine's mount namespace. Runtimes must be entered this way, not with
// `ip netns exec`: that one mounts a fresh /sys (hiding the cgroup mounts
// runc needs) in a private mount namespace (hiding the netns files a runtime
// bind-mounts from its next command).
func (h *Host) inHost(argv ...string) []string {
	return append([]string{"nsenter", "--net=/var/run/netns/" + h.NS, "--"}, argv...)
}

// hostCmd builds (without running) argv in h's network namespace, entered
// as inHost does.
func (h *Host) hostCmd(argv ...string) *exec.Cmd {
	argv = h.inHost(argv...)
	return exec.Command(argv[0], argv[1:]...)
}

// busyboxRootfs builds a root filesystem of static busybox (applets as
// symlinks) in dir and returns dir.
func busyboxRootfs(t *testing.T, dir string) string {
	t.Helper()
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "run", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(busyboxPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	out := run(t, busyboxPath, "--list")
	for _, applet := range strings.Fields(out) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range map[string]string{"passwd": "root:x:0:0:root:/root:/bin/sh\n", "group": "root:x:0:\n"} {
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// holdNetns opens a container's network namespace and keeps it open until
// the test ends. Runtimes remove a container's netns right after its DEL,
// and the kernel deletes a veth pair with its netns: without a holder a DEL
// that left the veth behind would go unnoticed.
func holdNetns(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open the container's netns %s: %v", path, err)
	}
	var st syscall.Statfs_t
	if err := syscall.Fstatfs(int(f.Fd()), &st); err != nil || st.Type != 0x6e736673 { // NSFS_MAGIC
		f.Close()
		t.Fatalf("%s is not a network namespace (statfs type %#x, %v)", path, st.Type, err)
	}
	t.Cleanup(func() { f.Close() })
}

// netnsAddr returns the IPv4 address of eth0 in the netns at path.
func netnsAddr(t *testing.T, path string) netip.Addr {
	t.Helper()
	out, err := runTimeout("nsenter", "--net="+path, "--", "ip", "-j", "-4", "addr", "show", "dev", "eth0")
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		AddrInfo []struct {
			Local string `json:"local"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 || len(links[0].AddrInfo) == 0 {
		t.Fatalf("no IPv4 address on eth0 in %s: %s (%v)", path, out, err)
	}
	a, err := netip.ParseAddr(links[0].AddrInfo[0].Local)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// mustReachFrom waits until the netns at path reaches ip (peers are
// programmed asynchronously), then wants 3 of 3 pings through.
func mustReachFrom(t *testing.T, path string, ip netip.Addr) {
	t.Helper()
	ping := func(count int) error {
		out, err := exec.Command("nsenter", "--net="+path, "--", "ping", "-n", "-q", "-c", strconv.Itoa(count), "-i", "0.2", "-W", "1", ip.String()).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ping from %s to %s: %v: %s", path, ip, err, summary(out))
		}
		return nil
	}
	var last error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if last = ping(1); last == nil {
			break
		}
	}
	if last != nil {
		t.Fatalf("no connectivity within 30s: %v", last)
	}
	if err := ping(3); err != nil {
		t.Fatal(err)
	}
}

// --- what a runtime's ADD made and its DEL must remove ------------------------

// cacheEntries returns libcni's cache entries for containerID (one per
// network and interface: NETWORK-ID-IFNAME).
func cacheEntries(containerID string) []string {
	m, _ := filepath.Glob(filepath.Join(cniResultsDir, "*-"+containerID+"-*"))
	return m
}

// cachedAttachment reads libcni's cache entry that the runtime wrote for
// network/containerID/eth0 on ADD, and returns the host-side veth and the
// address from the cached result.
func cachedAttachment(t *testing.T, network, containerID string) (hostVeth string, ip netip.Addr) {
	t.Helper()
	path := filepath.Join(cniResultsDir, network+"-"+containerID+"-eth0")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the runtime's ADD left no libcni cache entry: %v (entries for the container: %v)", err, cacheEntries(containerID))
	}
	var entry struct {
		Result struct {
			Interfaces []struct {
				Name    string `json:"name"`
				Sandbox string `json:"sandbox"`
			} `json:"interfaces"`
			IPs []struct {
				Address string `json:"address"`
			} `json:"ips"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &entry); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	for _, i := range entry.Result.Interfaces {
		if i.Sandbox == "" {
			hostVeth = i.Name
		}
	}
	if hostVeth == "" || len(entry.Result.IPs) == 0 {
		t.Fatalf("%s: cached result names no host interface or no IP: %s", path, data)
	}
	p, err := netip.ParsePrefix(entry.Result.IPs[0].Address)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return hostVeth, p.Addr()
}

// attached checks what ADD must have made for containerID on h: ip in h's
// subnet, reserved in h's IPAM store, hostVeth on h's bridge.
func (h *Host) attached(t *testing.T, containerID string, ip netip.Addr, hostVeth string) {
	t.Helper()
	hf := h.HostFile()
	if !hf.Subnet.Contains(ip) {
		t.Fatalf("%s got %s, not in h%d's subnet %s", containerID, ip, h.N, hf.Subnet)
	}
	if holders := h.ipamHolding(containerID); len(holders) == 0 || len(h.ipamFiles(ip)) == 0 {
		t.Fatalf("h%d's IPAM store does not hold %s for %s (files naming it: %v)", h.N, ip, containerID, holders)
	}
	if !slices.Contains(h.bridgePorts(hf.Bridge), hostVeth) {
		t.Fatalf("host veth %s of %s is not on h%d's bridge %s (ports %v)", hostVeth, containerID, h.N, hf.Bridge, h.bridgePorts(hf.Bridge))
	}
}

// released checks what a runtime's DEL must have removed for containerID on
// h: the address in the IPAM store, the host veth, libcni's cache entries.
func (h *Host) released(containerID string, ip netip.Addr, hostVeth string) error {
	var errs []error
	if f := h.ipamFiles(ip); len(f) > 0 {
		errs = append(errs, fmt.Errorf("%s is still reserved in h%d's IPAM store: %v", ip, h.N, f))
	}
	if f := h.ipamHolding(containerID); len(f) > 0 {
		errs = append(errs, fmt.Errorf("h%d's IPAM store still names %s: %v", h.N, containerID, f))
	}
	if !hostVethGone(h.NS, hostVeth) {
		errs = append(errs, fmt.Errorf("host veth %s is still on h%d", hostVeth, h.N))
	}
	if e := cacheEntries(containerID); len(e) > 0 {
		errs = append(errs, fmt.Errorf("libcni cache entries left: %v", e))
	}
	return errors.Join(errs...)
}

// ipamHolding returns the files of h's IPAM store that name containerID.
func (h *Host) ipamHolding(containerID string) []string {
	var found []string
	_ = filepath.WalkDir(h.DataDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if b, err := os.ReadFile(p); err == nil && strings.Contains(string(b), `"`+containerID+`"`) {
			found = append(found, p)
		}
		return nil
	})
	return found
}

// --- teardown of what runtimes leave outside the temp dir ---------------------

// removeCacheEntries removes libcni cache entries of containerIDs that a
// DEL never removed (a failed test), so the machine keeps none.
func removeCacheEntries(t *testing.T, containerIDs []string) {
	for _, id := range containerIDs {
		for _, e := range cacheEntries(id) {
			if err := os.Remove(e); err == nil {
				t.Logf("cleanup: removed libcni cache entry %s (its DEL never ran)", e)
			}
		}
	}
}

// killProcsMentioning ends every process whose command line contains
// marker (a path inside this test's temp dir: a containerd shim or podman's
// conmon, which outlive the daemon that started them). Each gets a few
// seconds to exit by itself (a shim whose task was deleted is on its way
// out), then SIGKILL.
func killProcsMentioning(t *testing.T, marker string) {
	find := func() map[int]string {
		found := map[int]string{}
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err == nil && strings.Contains(string(cmdline), marker) {
				found[pid] = strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")
			}
		}
		return found
	}
	left := find()
	for deadline := time.Now().Add(3 * time.Second); len(left) > 0 && time.Now().Before(deadline); left = find() {
		time.Sleep(100 * time.Millisecond)
	}
	for pid, cmdline := range left {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			t.Logf("cleanup: killed %d (%s)", pid, cmdline)
		}
	}
}

// unmountUnder detaches every mount below dir, deepest first (a runtime
// that was killed leaves rootfs, shm and netns mounts behind, and the temp
// dir cannot be removed over them).
func unmountUnder(t *testing.T, dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	slices.SortFunc(points, func(a, b string) int { return len(b) - len(a) })
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Errorf("cleanup: unmount %s: %v", p, err)
		} else {
			t.Logf("cleanup: unmounted %s", p)
		}
	}
}

// cgroupRoot is where the machine's cgroup hierarchies are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// removeCgroups removes the cgroups named prefix* at the top of every
// hierarchy (and the cgroups inside them), killing what still runs in them.
// The runtime tests give every container such a parent: runc removes a
// container's own cgroup but not the parents it created.
func removeCgroups(t *testing.T, prefix string) {
	var tops []string
	for _, pattern := range []string{cgroupRoot + "/*/" + prefix + "*", cgroupRoot + "/" + prefix + "*"} {
		m, _ := filepath.Glob(pattern)
		tops = append(tops, m...)
	}
	var dirs []string
	for _, top := range tops {
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	if len(dirs) == 0 {
		return
	}
	// A process is in one cgroup of every hierarchy: kill it once.
	pids := map[int]string{}
	for _, d := range dirs {
		procs, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(procs)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids[pid] = d
			}
		}
	}
	for pid, d := range pids {
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			t.Logf("cleanup: killed %d left in cgroup %s", pid, d)
		}
	}
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	// Cgroups below the top ones that a runtime did not remove (podman's
	// conmon cgroup, always; a container's, sometimes), by their path
	// inside the hierarchy, to log each once.
	var leftover []string
	defer func() {
		slices.Sort(leftover)
		for _, l := range slices.Compact(leftover) {
			t.Logf("cleanup: removed cgroup %s that the runtime left", l)
		}
	}()
	for _, d := range dirs {
		var err error
		// A killed process leaves its cgroup a moment after the signal.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if err = os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) || time.Now().After(deadline) {
				break
			}
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cleanup: cgroup %s left behind: %v", d, err)
		} else if err == nil && !slices.Contains(tops, d) {
			rel := strings.TrimPrefix(d, cgroupRoot+"/")
			if top := strings.Index(rel, prefix); top >= 0 {
				rel = rel[top:]
			}
			leftover = append(leftover, rel)
		}
	}
}

// machineLock takes an exclusive flock on /run/lock/NAME.lock, waiting up to
// wait, and releases it at cleanup. It serializes tests of concurrent `go
// test` processes (other checkouts on the machine) that use fixed paths
// outside their temp dirs. The lock file itself stays: removing it would
// let a waiter and a newcomer hold two different locks.
func machineLock(t *testing.T, name string, wait time.Duration) {
	t.Helper()
	path := filepath.Join("/run/lock", name+".lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("lock %s: %v", path, err)
	}
	deadline := time.Now().Add(wait)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			holder, _ := os.ReadFile(path)
			f.Close()
			t.Fatalf("lock %s not taken within %s (%v); held by %s", path, wait, err, strings.TrimSpace(string(holder)))
		}
		time.Sleep(500 * time.Millisecond)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprintf("pid %d (%s)\n", os.Getpid(), t.Name())), 0)
	t.Cleanup(func() {
		_ = f.Truncate(0)
		f.Close() // releases the flock
	})
}
