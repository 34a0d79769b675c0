package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPodman runs the plugins under podman 4.3 (Debian 12) with its CNI
// backend, one podman per simulated host, the shipped conflist (overlay +
// portmap): each container gets an address of its host's subnet and reaches
// the container on the other host; `podman rm -f` and a container's own exit
// (conmon's `podman container cleanup`) run CNI DEL, which must remove the
// host veth (the netns is held open, see holdNetns), the reservation and
// libcni's cache entry.
func TestPodman(t *testing.T) {
	t.Parallel()
	requireTools(t, "podman", "conmon", "runc", "nsenter")
	c := newCluster(t, 2)
	c.SetNetwork()
	c.startAll()
	rootfs := busyboxRootfs(t, filepath.Join(c.Dir, "rootfs"))
	h1, h2 := c.Hosts[0], c.Hosts[1]
	p1, p2 := newPodman(t, h1, rootfs), newPodman(t, h2, rootfs)

	a := p1.run(t, "a", nil, "sleep", "300")
	b := p2.run(t, "b", nil, "sleep", "300")
	mustReachFrom(t, a.netns, b.ip)
	mustReachFrom(t, b.netns, a.ip)

	t.Run("rm -f runs DEL", func(t *testing.T) {
		p1.rm(t, a)
		if err := h1.released(a.id, a.ip, a.veth); err != nil {
			t.Fatalf("after podman rm -f %s: %v", a.name, err)
		}
	})
	t.Run("a container's own exit runs DEL", func(t *testing.T) {
		e := p1.run(t, "e", nil, "sleep", "2")
		var last error
		waitFor(t, 30*time.Second, "conmon's cleanup of the exited container to run DEL", func() bool {
			last = h1.released(e.id, e.ip, e.veth)
			return last == nil
		})
		if state := p1.inspect(t, e.name, "{{.State.Status}}"); state != "exited" {
			t.Fatalf("%s is %s, want exited", e.name, state)
		}
		p1.rm(t, e)
	})
	t.Run("published port through the chained portmap", func(t *testing.T) {
		// podman passes -p as the portMappings capability to the chain.
		const page = "hello-from-w"
		w := p1.run(t, "w", []string{"-p", "18080:8080"}, "sh", "-c",
			"mkdir -p /www && echo "+page+" >/www/index.html && exec httpd -f -p 8080 -h /www")
		url := fmt.Sprintf("http://%s:18080/", h1.IP)
		for _, from := range []struct{ name, netns, url string }{
			{"h2 itself", "/var/run/netns/" + h2.NS, url},
			{"the container on h2", b.netns, url},
			{"h1 itself, through localhost", "/var/run/netns/" + h1.NS, "http://127.0.0.1:18080/"},
			// The DNATed packet leaves the bridge by the port it came in
			// on: the host veth needs hairpin mode.
			{"the publishing container (hairpin)", w.netns, url},
		} {
			// The first GET may come before httpd listens.
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(200 * time.Millisecond) {
				out, err := exec.Command("nsenter", "--net="+from.netns, "--", "curl", "-sS", "-m", "2", from.url).CombinedOutput()
				if err == nil && strings.TrimSpace(string(out)) == page {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("GET %s from %s: %v: %q, want %q", from.url, from.name, err, out, page)
				}
			}
		}
		if rules := inNS(t, h1.NS, "iptables", "-t", "nat", "-S"); !strings.Contains(rules, w.id) {
			t.Fatalf("no nat rule names %s: the check after rm would prove nothing:\n%s", w.id, rules)
		}
		p1.rm(t, w)
		if err := h1.released(w.id, w.ip, w.veth); err != nil {
			t.Fatalf("after podman rm -f %s: %v", w.name, err)
		}
		if rules := inNS(t, h1.NS, "iptables", "-t", "nat", "-S"); strings.Contains(rules, w.id) {
			t.Fatalf("portmap's DEL left nat rules for %s:\n%s", w.id, rules)
		}
	})
	t.Run("rm -f on the other host", func(t *testing.T) {
		p2.rm(t, b)
		if err := h2.released(b.id, b.ip, b.veth); err != nil {
			t.Fatalf("after podman rm -f %s: %v", b.name, err)
		}
	})
}

// podman is one host's podman: the host's network namespace, all of its
// state in the test's temp dir, the plugins from OVERLAY_BIN_DIR.
type podman struct {
	h      *Host
	dir    string
	rootfs string
	// cgroup is the parent cgroup of every container (and conmon), named
	// after the cluster's prefix so teardown finds it.
	cgroup string
	ids    []string // every container ID, for teardown
	netns  []string // every container's netns file, for teardown
}

// podmanContainer is a running container and what its ADD made.
type podmanContainer struct {
	name, id string
	netns    string // podman's /run/netns/netns-UUID
	ip       netip.Addr
	veth     string // host side
}

// newPodman writes host h's podman config and registers its teardown.
func newPodman(t *testing.T, h *Host, rootfs string) *podman {
	t.Helper()
	p := &podman{h: h, dir: filepath.Join(h.c.Dir, fmt.Sprintf("h%d", h.N), "podman"), rootfs: rootfs,
		cgroup: fmt.Sprintf("/%s-h%d", h.c.Prefix, h.N)}
	for _, d := range []string{"root", "runroot", "tmp", "net.d", "volumes", "runc"} {
		if err := os.MkdirAll(filepath.Join(p.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(p.dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("net.d/10-overlay.conflist", h.shippedConf("10-overlay.conflist"))
	// podman 4.3 asks for nofile=1048576 and nproc=4194304 for root
	// containers; without CAP_SYS_RESOURCE (a sandboxed machine) runc's
	// setrlimit then fails, so ask for what this process may have (nproc
	// at most 32768, what podman lowers its own to first).
	var nofile, nproc unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
	_ = unix.Getrlimit(unix.RLIMIT_NPROC, &nproc)
	nproc.Max = min(nproc.Max, 32768)
	write("containers.conf", []byte(fmt.Sprintf(`[network]
network_backend = "cni"
cni_plugin_dirs = [%q]
network_config_dir = %q
default_network = "overlay"

[containers]
default_ulimits = ["nofile=%d:%d", "nproc=%d:%d"]
apparmor_profile = "unconfined"

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
events_logfile_path = %q
tmp_dir = %q
volume_path = %q
static_dir = %q
# file locks live in tmp_dir; the default (shm) leaves /dev/shm/libpod_lock.
lock_type = "file"
`, h.c.Bin, filepath.Join(p.dir, "net.d"), nofile.Max, nofile.Max, nproc.Max, nproc.Max,
		filepath.Join(p.dir, "events.log"), filepath.Join(p.dir, "tmp"), filepath.Join(p.dir, "volumes"),
		filepath.Join(p.dir, "root", "libpod"))))
	write("storage.conf", []byte(fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(p.dir, "root"), filepath.Join(p.dir, "runroot"))))
	t.Cleanup(func() { p.teardown(t) })
	return p
}

// cmd runs podman with this host's config in the host's network namespace.
func (p *podman) cmd(args ...string) (string, error) {
	argv := p.h.inHost("podman",
		"--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "runroot"),
		"--tmpdir", filepath.Join(p.dir, "tmp"), "--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs", "--events-backend", "file", "--runtime", "runc",
		// runc's state; its default, /run/runc, is outside the temp dir.
		"--runtime-flag", "root="+filepath.Join(p.dir, "runc"))
	argv = append(argv, args...)
	return runTimeoutEnv([]string{
		"CONTAINERS_CONF=" + filepath.Join(p.dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(p.dir, "storage.conf"),
	}, argv[0], argv[1:]...)
}

func (p *podman) inspect(t *testing.T, name, format string) string {
	t.Helper()
	out, err := p.cmd("inspect", "-f", format, name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// run starts container name running argv (a busybox applet) on the overlay
// network, with extra podman run options opts, and checks what its ADD
// made.
func (p *podman) run(t *testing.T, name string, opts []string, argv ...string) *podmanContainer {
	t.Helper()
	args := append([]string{"run", "-d", "--name", name, "--network", "overlay", "--cgroup-parent", p.cgroup}, opts...)
	args = append(args, "--rootfs", p.rootfs, "/bin/busybox")
	out, err := p.cmd(append(args, argv...)...)
	if err != nil {
		t.Fatalf("podman run %s on h%d: %v", name, p.h.N, err)
	}
	id := strings.TrimSpace(lastLine(out))
	p.ids = append(p.ids, id)
	ct := &podmanContainer{name: name, id: id}
	ct.netns = p.inspect(t, name, "{{.NetworkSettings.SandboxKey}}")
	p.netns = append(p.netns, ct.netns)
	holdNetns(t, ct.netns)
	ct.veth, ct.ip = cachedAttachment(t, "overlay", id)
	if ip := p.inspect(t, name, `{{(index .NetworkSettings.Networks "overlay").IPAddress}}`); ip != ct.ip.String() {
		t.Fatalf("podman inspect %s says %s, libcni's cached result %s", name, ip, ct.ip)
	}
	if inside := netnsAddr(t, ct.netns); inside != ct.ip {
		t.Fatalf("%s's eth0 has %s, the ADD result says %s", name, inside, ct.ip)
	}
	p.h.attached(t, id, ct.ip, ct.veth)
	t.Logf("podman run %s on h%d: id %.12s, %s, host veth %s, netns %s", name, p.h.N, id, ct.ip, ct.veth, ct.netns)
	return ct
}

// rm removes a container with `podman rm -f`, which runs CNI DEL.
func (p *podman) rm(t *testing.T, ct *podmanContainer) {
	t.Helper()
	if _, err := p.cmd("rm", "-f", "-t", "0", ct.name); err != nil {
		t.Fatal(err)
	}
}

// teardown removes what podman may have left when a test failed: its
// containers (podman rm runs DEL), conmon processes, mounts under its dirs,
// its netns files, cgroups, libcni cache entries.
func (p *podman) teardown(t *testing.T) {
	if _, err := p.cmd("rm", "-a", "-f", "-t", "0"); err != nil {
		t.Logf("cleanup: %v", err)
	}
	killProcsMentioning(t, p.dir+"/")
	for _, ns := range p.netns {
		if _, err := os.Stat(ns); err == nil {
			if out, err := exec.Command("ip", "netns", "del", filepath.Base(ns)).CombinedOutput(); err != nil {
				t.Errorf("cleanup: podman left netns %s: ip netns del: %v %s", ns, err, out)
			} else {
				t.Logf("cleanup: removed netns %s podman left", ns)
			}
		}
	}
	unmountUnder(t, p.dir)
	removeCgroups(t, strings.TrimPrefix(p.cgroup, "/"))
	removeCacheEntries(t, p.ids)
}
