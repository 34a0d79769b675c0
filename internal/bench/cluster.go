package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Cluster is a simulated overlay cluster on this machine, every machine a
// network namespace: a fabric (bridge fabric0, 198.18.0.1/24, running
// devetcd) and hosts wired to it (eth0 198.18.0.(10+N)/24) that run
// overlayd. Close removes all of it.
type Cluster struct {
	Prefix  string
	Bin     string
	Dir     string
	Network string
	Fabric  string
	EtcdURL string

	etcd  *Proc
	hosts []*ClusterHost
	// runBase holds the hosts' run dirs: on tmpfs where there is one, as
	// /run is on a real host, so writing the host file costs what it
	// costs there (no disk flush).
	runBase string
}

// ClusterHost is one simulated host of a Cluster.
type ClusterHost struct {
	N        int
	NS       string
	IP       netip.Addr
	Dir      string
	RunDir   string
	StateDir string
	CNIDir   string

	c      *Cluster
	daemon *Proc
}

const (
	fabricIP     = "198.18.0.1"
	etcdReadyMsg = "devetcd: ready on"
)

// NewCluster creates the fabric and starts etcd in it. prefix must be
// unique on the machine (it names the namespaces); bin holds overlay's
// binaries; dir is a private work directory.
func NewCluster(ctx context.Context, prefix, bin, dir, network string) (*Cluster, error) {
	c := &Cluster{Prefix: prefix, Bin: bin, Dir: dir, Network: network, Fabric: prefix + "-fab", EtcdURL: "http://" + fabricIP + ":2379", runBase: dir}
	if onTmpfs(shmDir) {
		base, err := os.MkdirTemp(shmDir, prefix+"-run-")
		if err != nil {
			return nil, err
		}
		c.runBase = base
	}
	if err := c.up(ctx); err != nil {
		return nil, errors.Join(err, c.Close())
	}
	return c, nil
}

func (c *Cluster) up(ctx context.Context) error {
	if err := addNetns(c.Fabric); err != nil {
		return err
	}
	if err := ipIn(c.Fabric, "link add fabric0 type bridge", "addr add "+fabricIP+"/24 dev fabric0", "link set fabric0 up"); err != nil {
		return err
	}
	etcdDir := filepath.Join(c.Dir, "etcd")
	if err := os.MkdirAll(etcdDir, 0o755); err != nil {
		return err
	}
	var err error
	c.etcd, err = StartProc(c.Fabric, filepath.Join(c.Dir, "devetcd.log"), filepath.Join(c.Bin, "devetcd"),
		"--data-dir", etcdDir, "--listen-client", c.EtcdURL, "--listen-peer", "http://"+fabricIP+":2380")
	if err != nil {
		return err
	}
	return c.etcd.WaitLog(ctx, etcdReadyMsg, 30*time.Second)
}

// Ctl runs overlayctl against the cluster's etcd, inside the fabric.
func (c *Cluster) Ctl(args ...string) (string, error) {
	argv := append([]string{"netns", "exec", c.Fabric, filepath.Join(c.Bin, "overlayctl"), "--etcd-endpoints", c.EtcdURL}, args...)
	out, err := exec.Command("ip", argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("overlayctl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// AddHost creates host n: its namespace, eth0 on the fabric with a default
// route, and its directories.
func (c *Cluster) AddHost(n int) (*ClusterHost, error) {
	h := &ClusterHost{N: n, NS: fmt.Sprintf("%s-h%d", c.Prefix, n), IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + n)}),
		Dir: filepath.Join(c.Dir, fmt.Sprintf("h%d", n)), c: c}
	h.RunDir, h.StateDir, h.CNIDir = filepath.Join(c.runBase, fmt.Sprintf("h%d", n), "run"), filepath.Join(h.Dir, "state"), filepath.Join(h.Dir, "cni")
	for _, d := range []string{h.RunDir, h.StateDir, h.CNIDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := addNetns(h.NS); err != nil {
		return nil, err
	}
	c.hosts = append(c.hosts, h)
	veth := fmt.Sprintf("vh%d", n)
	if err := ipIn(c.Fabric, fmt.Sprintf("link add %s type veth peer name eth0 netns %s", veth, h.NS), "link set "+veth+" master fabric0 up"); err != nil {
		return nil, err
	}
	if err := ipIn(h.NS, "addr add "+h.IP.String()+"/24 dev eth0", "link set eth0 up", "route add default via "+fabricIP); err != nil {
		return nil, err
	}
	// Until the kernel's link watcher has seen the carrier (it batches
	// such events up to a second), eth0 drops what it sends: a daemon
	// started at once would lose its first SYN to etcd and wait a second
	// for TCP to send it again. A real machine's NIC is up long before.
	if err := waitOperUp(context.Background(), h.NS, "eth0"); err != nil {
		return nil, err
	}
	if err := waitOperUp(context.Background(), c.Fabric, veth); err != nil {
		return nil, err
	}
	return h, nil
}

// waitOperUp waits until link's operational state in netns is up.
func waitOperUp(ctx context.Context, netns, link string) error {
	nsh, err := vnetns.GetFromPath(netnsDir + netns)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", netns, err)
	}
	defer nsh.Close()
	nl, err := netlink.NewHandleAt(nsh)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", netns, err)
	}
	defer nl.Close()
	return waitUntil(ctx, 10*time.Second, link+" up in "+netns, func() (bool, error) {
		l, err := nl.LinkByName(link)
		if err != nil {
			return false, fmt.Errorf("%s in %s: %w", link, netns, err)
		}
		return l.Attrs().OperState == netlink.OperUp, nil
	})
}

// StartDaemon starts overlayd on h with extra flags; a running one is an
// error.
func (h *ClusterHost) StartDaemon(extra ...string) (*Proc, error) {
	return h.StartDaemonFrom(h.c.Bin, extra...)
}

// StartDaemonFrom is StartDaemon with the overlayd in binDir.
func (h *ClusterHost) StartDaemonFrom(binDir string, extra ...string) (*Proc, error) {
	if h.daemon != nil && !h.daemon.Exited() {
		return nil, fmt.Errorf("overlayd on %s runs already", h.NS)
	}
	args := append([]string{"--etcd-endpoints", h.c.EtcdURL, "--network", h.c.Network, "--iface", "eth0",
		"--run-dir", h.RunDir, "--state-dir", h.StateDir, "--hostname", fmt.Sprintf("h%d", h.N), "--log-level", "info"}, extra...)
	p, err := startProc(h.NS, filepath.Join(h.Dir, "overlayd.log"), true, filepath.Join(binDir, "overlayd"), args...)
	if err != nil {
		return nil, err
	}
	h.daemon = p
	return p, nil
}

// Daemon is the overlayd last started on h (nil before).
func (h *ClusterHost) Daemon() *Proc { return h.daemon }

// HostFile is the path of h's host file.
func (h *ClusterHost) HostFile() string { return filepath.Join(h.RunDir, h.c.Network+".json") }

// WaitHostFile waits until h's overlayd wrote its host file.
func (h *ClusterHost) WaitHostFile(ctx context.Context, timeout time.Duration) error {
	return waitUntil(ctx, timeout, "host file of "+h.NS, func() (bool, error) {
		if h.daemon != nil && h.daemon.Exited() {
			return false, fmt.Errorf("overlayd on %s exited: %s", h.NS, h.daemon.LastLog())
		}
		st, err := os.Stat(h.HostFile())
		return err == nil && st.Size() > 0, nil
	})
}

// Remove stops h's overlayd and removes its namespace (with everything the
// daemon built in it); its directories stay until the cluster is closed.
func (h *ClusterHost) Remove() error {
	if h.daemon != nil {
		h.daemon.Stop(5 * time.Second)
	}
	// The namespace goes in the background: delete the veth from the
	// fabric's end first, so host N can be added again at once.
	if err := ipIn(h.c.Fabric, fmt.Sprintf("link del vh%d", h.N)); err != nil {
		return err
	}
	return delNetns(h.NS)
}

// Close stops every process the cluster started and removes its
// namespaces, whatever state they are in.
func (c *Cluster) Close() error {
	var errs []error
	for _, h := range c.hosts {
		if h.daemon != nil {
			h.daemon.Stop(5 * time.Second)
		}
	}
	if c.etcd != nil {
		c.etcd.Stop(5 * time.Second)
	}
	for _, h := range c.hosts {
		errs = append(errs, delNetns(h.NS))
	}
	errs = append(errs, delNetns(c.Fabric))
	if c.runBase != c.Dir {
		errs = append(errs, os.RemoveAll(c.runBase))
	}
	return errors.Join(errs...)
}

// ipIn runs each `ip` command line inside netns.
func ipIn(netns string, cmds ...string) error {
	for _, line := range cmds {
		argv := append([]string{"-n", netns}, strings.Fields(line)...)
		if out, err := exec.Command("ip", argv...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip -n %s %s: %v: %s", netns, line, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// waitUntil polls cond every 5ms (bench setup, not a measurement).
func waitUntil(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil || ok {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Proc is a process started in a namespace by the bench.
type Proc struct {
	Cmd *exec.Cmd
	// Started is taken just before the fork.
	Started time.Time
	name    string
	log     string
	lines   *lineStamper // nil unless the output is stamped
	done    chan struct{}
}

// StartProc starts argv in netns with output to logPath. `ip netns exec`
// execs in place, so the PID is the program's own.
func StartProc(netns, logPath, bin string, args ...string) (*Proc, error) {
	return startProc(netns, logPath, false, bin, args...)
}

// startProc is StartProc, or with daemon, a start as a daemon's is timed:
// the program is exec'd directly from a thread inside netns (an init
// system execs it, not `ip netns exec`, whose own work — a mount
// namespace, a fresh /sys — would count as the daemon's; overlayd reads
// nothing from /sys), and its output reaches logPath through a pipe whose
// lines are stamped as they arrive, for WaitLine.
func startProc(netns, logPath string, daemon bool, bin string, args ...string) (*Proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", netns, bin}, args...)...)
	if daemon {
		cmd = exec.Command(bin, args...)
	}
	p := &Proc{Cmd: cmd, name: filepath.Base(bin), log: logPath, done: make(chan struct{})}
	if daemon {
		p.lines = newLineStamper(f)
		cmd.Stdout, cmd.Stderr = p.lines, p.lines
		// The copy ends when the daemon's end closes the pipe; a child
		// holding it open must not keep Wait from returning.
		cmd.WaitDelay = time.Second
	} else {
		cmd.Stdout, cmd.Stderr = f, f
	}
	start := func() error {
		p.Started = time.Now()
		return cmd.Start()
	}
	if daemon {
		// The child inherits the namespace of the thread that forks it.
		err = inNetns(netns, start)
	} else {
		err = start()
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s in %s: %w", filepath.Base(bin), netns, err)
	}
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
	if !daemon {
		f.Close() // the child has its own copy
	}
	return p, nil
}

// PID is the process's ID.
func (p *Proc) PID() int { return p.Cmd.Process.Pid }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, and SIGKILL after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Cmd.Process.Kill()
		<-p.done
	}
}

// WaitLine waits until the process wrote a line holding substr (after its
// start) and returns when that line arrived. Only a daemon's output is
// stamped (StartDaemon).
func (p *Proc) WaitLine(ctx context.Context, substr string, timeout time.Duration) (time.Time, error) {
	if p.lines == nil {
		return time.Time{}, fmt.Errorf("output of %s is not stamped", p.name)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		at, ok, changed := p.lines.find(substr)
		if ok {
			return at, nil
		}
		select {
		case <-changed:
		case <-p.done:
			if at, ok, _ := p.lines.find(substr); ok {
				return at, nil
			}
			return time.Time{}, fmt.Errorf("%s exited before logging %q: %s", p.name, substr, p.LastLog())
		case <-t.C:
			return time.Time{}, fmt.Errorf("timed out after %s waiting for %q in %s", timeout, substr, p.log)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// Log is what the process wrote so far.
func (p *Proc) Log() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// LastLog is the last line the process wrote.
func (p *Proc) LastLog() string {
	lines := strings.Split(strings.TrimSpace(p.Log()), "\n")
	return lines[len(lines)-1]
}

// WaitLog waits until the process logged msg.
func (p *Proc) WaitLog(ctx context.Context, msg string, timeout time.Duration) error {
	return waitUntil(ctx, timeout, fmt.Sprintf("%q in %s", msg, p.log), func() (bool, error) {
		if strings.Contains(p.Log(), msg) {
			return true, nil
		}
		if p.Exited() {
			return false, fmt.Errorf("%s exited: %s", p.name, p.LastLog())
		}
		return false, nil
	})
}

// shmDir is the tmpfs every Linux system mounts.
const shmDir = "/dev/shm"

// onTmpfs reports whether dir is on a tmpfs.
func onTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}
