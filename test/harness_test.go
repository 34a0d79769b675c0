// Package e2e holds the end-to-end tests of overlay: real binaries (from
// $OVERLAY_BIN_DIR, built by `make build`) run in network namespaces that the
// tests create and always remove:
//
//	PREFIX-fab     fabric: bridge fabric0 198.18.0.1/24, devetcd
//	PREFIX-hN      host N: eth0 198.18.0.(10+N)/24, overlayd
//	PREFIX-hN-X    container X on host N, attached through libcni
//
// PREFIX is random per test, so a leftover of a crashed run never collides
// with a new one. Nothing is configured in the root namespace.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/overlaynet/overlay/pkg/etcdtest"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

const (
	// nsPrefix starts every namespace name, followed by the test process's
	// PID, so TestMain can recognise leftovers of a run that was killed.
	nsPrefix    = "ovle2e-"
	etcdURL     = "http://198.18.0.1:2379"
	networkName = "default"
	overlayCIDR = "10.244.0.0/16"
	// readyTimeout bounds how long overlayd may take to write its host file.
	readyTimeout = 60 * time.Second
	// cniTimeout bounds one CNI operation; libcni kills a plugin past it.
	cniTimeout = 60 * time.Second
)

var binaries = []string{"overlayd", "overlayctl", "overlay", "overlay-ipam", "devetcd"}

// binDir returns the directory of the built binaries or fails the test.
func binDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("OVERLAY_BIN_DIR")
	if dir == "" {
		t.Fatal("OVERLAY_BIN_DIR is not set: run `make build` and then `make e2e` (or just `make test`)")
	}
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			t.Fatalf("%s is missing in OVERLAY_BIN_DIR=%s: run `make build`", b, dir)
		}
	}
	return dir
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("end-to-end tests create network namespaces and need root: run make test as root")
	}
}

// --- commands ----------------------------------------------------------------

// run runs a command and returns its combined output, failing the test on
// error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs a command in a named namespace.
func inNS(t *testing.T, netns string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", netns}, args...)...)
}

// nsCmd builds (without running) a command in a named namespace.
func nsCmd(netns string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", netns}, args...)...)
}

// addNetns creates a namespace with loopback up and removes it at cleanup.
func addNetns(t *testing.T, name string) {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if _, err := os.Stat("/var/run/netns/" + name); errors.Is(err, os.ErrNotExist) {
			return // the test removed it itself
		}
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip netns del %s: %v %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
}

// --- processes ---------------------------------------------------------------

// Proc is a process the test started; cleanup always ends it.
type Proc struct {
	Name string
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProc starts argv in namespace netns with stdout and stderr in logPath.
// `ip netns exec` execs in place, so the PID is the program's own.
func startProc(t *testing.T, name, netns, logPath string, argv ...string) *Proc {
	t.Helper()
	return startCmd(t, name, logPath, nsCmd(netns, argv...))
}

// startCmd starts cmd (built, not started) with stdout and stderr in
// logPath; cleanup ends it.
func startCmd(t *testing.T, name, logPath string, cmd *exec.Cmd) *Proc {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	return p
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// WaitExit waits up to timeout for the process to end on its own and returns
// its exit code; ok is false if it was still running (it is then killed).
func (p *Proc) WaitExit(timeout time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-time.After(timeout):
		p.Kill()
		return -1, false
	}
}

// Output returns what the process has logged so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// --- cluster -----------------------------------------------------------------

// Cluster is a fabric with etcd and some hosts.
type Cluster struct {
	t      *testing.T
	Bin    string
	Prefix string
	Dir    string
	Fabric string
	Etcd   *Proc
	// Members are the etcd processes of a multi-member cluster (see
	// newClusterEtcd); Etcd is then the first of them.
	Members []*EtcdMember
	// Endpoints is what overlayd and overlayctl are given.
	Endpoints string
	// TLS, when set, are the certificates of an etcd that serves only TLS
	// with client certificates (newClusterTLS); every overlayd and
	// overlayctl of the harness is given them.
	TLS        *etcdtest.Certs
	Hosts      []*Host
	etcdStarts int
}

// EtcdMember is one devetcd process of a multi-member cluster.
type EtcdMember struct {
	Name string
	IP   string
	URL  string
	Proc *Proc
}

// Host is one simulated machine.
type Host struct {
	c        *Cluster
	N        int
	NS       string
	IP       string
	RunDir   string
	StateDir string
	DataDir  string // overlay-ipam's dataDir
	cacheDir string // libcni's result cache
	// CNIBin, when set, is where libcni finds the plugins on h (an install
	// put them there); c.Bin otherwise.
	CNIBin string
	Daemon *Proc
	starts int
}

// newCluster builds the fabric, starts etcd and adds n hosts; overlayd is not
// started (see Host.Start). The network config is not written (see SetNetwork).
func newCluster(t *testing.T, n int) *Cluster {
	t.Helper()
	return newClusterEtcd(t, n, 1)
}

// newClusterEtcd is newCluster with an etcd of members members (on
// 198.18.0.1, .2, ... of the fabric).
func newClusterEtcd(t *testing.T, n, members int) *Cluster {
	t.Helper()
	return newClusterWith(t, n, members, false)
}

// newClusterTLS is newCluster with an etcd that serves only TLS and
// requires client certificates (c.TLS), on https://198.18.0.1:2379.
func newClusterTLS(t *testing.T, n int) *Cluster {
	t.Helper()
	return newClusterWith(t, n, 1, true)
}

func newClusterWith(t *testing.T, n, members int, withTLS bool) *Cluster {
	t.Helper()
	requireRoot(t)
	c := &Cluster{t: t, Bin: binDir(t), Prefix: fmt.Sprintf("%s%d-%s", nsPrefix, os.Getpid(), randHex(3)), Dir: t.TempDir(), Endpoints: etcdURL}
	if withTLS {
		if members > 1 {
			t.Fatal("newClusterWith: TLS is for a single-member etcd")
		}
		c.TLS = etcdtest.NewCerts(t, "198.18.0.1")
		c.Endpoints = strings.Replace(etcdURL, "http://", "https://", 1)
	}
	c.Fabric = c.Prefix + "-fab"
	addNetns(t, c.Fabric)
	run(t, "ip", "-n", c.Fabric, "link", "add", "fabric0", "type", "bridge")
	run(t, "ip", "-n", c.Fabric, "addr", "add", "198.18.0.1/24", "dev", "fabric0")
	run(t, "ip", "-n", c.Fabric, "link", "set", "fabric0", "up")
	for i := 1; i <= n; i++ {
		c.addHost(i)
	}
	if members > 1 {
		c.startEtcdCluster(members)
	} else {
		c.startEtcd()
	}
	// Registered last, so it runs first: logs are still there to show.
	t.Cleanup(c.dumpLogsOnFailure)
	return c
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func (c *Cluster) addHost(n int) {
	t := c.t
	h := &Host{c: c, N: n, NS: fmt.Sprintf("%s-h%d", c.Prefix, n), IP: fmt.Sprintf("198.18.0.%d", 10+n)}
	dir := filepath.Join(c.Dir, fmt.Sprintf("h%d", n))
	h.RunDir, h.StateDir = filepath.Join(dir, "run"), filepath.Join(dir, "state")
	h.DataDir, h.cacheDir = filepath.Join(dir, "cni"), filepath.Join(dir, "cni-cache")
	for _, d := range []string{h.RunDir, h.StateDir, h.DataDir, h.cacheDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	addNetns(t, h.NS)
	// Made inside the fabric with the peer moved straight into the host:
	// the root namespace never holds either end.
	veth := fmt.Sprintf("vh%d", n)
	run(t, "ip", "-n", c.Fabric, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	run(t, "ip", "-n", c.Fabric, "link", "set", veth, "master", "fabric0", "up")
	run(t, "ip", "-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
	run(t, "ip", "-n", h.NS, "link", "set", "eth0", "up")
	run(t, "ip", "-n", h.NS, "route", "add", "default", "via", "198.18.0.1")
	// Like a Docker or Kubernetes host: forwarding is denied unless allowed,
	// so every test also proves overlayd's FORWARD rules.
	run(t, "ip", "netns", "exec", h.NS, "iptables", "-P", "FORWARD", "DROP")
	c.Hosts = append(c.Hosts, h)
}

// startEtcd starts (or restarts, on the same data dir) the single devetcd.
func (c *Cluster) startEtcd() {
	t := c.t
	t.Helper()
	c.etcdStarts++
	argv := []string{filepath.Join(c.Bin, "devetcd"), "--data-dir", filepath.Join(c.Dir, "etcd"),
		"--listen-client", c.Endpoints, "--listen-peer", "http://198.18.0.1:2380"}
	if c.TLS != nil {
		argv = append(argv, "--cert-file", c.TLS.ServerCertFile, "--key-file", c.TLS.ServerKeyFile,
			"--trusted-ca-file", c.TLS.CAFile, "--client-cert-auth")
	}
	c.Etcd = startProc(t, "devetcd", c.Fabric, filepath.Join(c.Dir, fmt.Sprintf("devetcd-%d.log", c.etcdStarts)), argv...)
	waitFor(t, 30*time.Second, "devetcd to serve (log "+c.Etcd.Log+")", func() bool {
		if c.Etcd.Exited() {
			t.Fatalf("devetcd exited:\n%s", c.Etcd.Output())
		}
		return strings.Contains(c.Etcd.Output(), "devetcd: ready on")
	})
}

// startEtcdCluster starts members devetcd processes forming one cluster,
// member i on 198.18.0.i of the fabric.
func (c *Cluster) startEtcdCluster(members int) {
	t := c.t
	t.Helper()
	var initial, endpoints []string
	for i := 1; i <= members; i++ {
		m := &EtcdMember{Name: fmt.Sprintf("m%d", i), IP: fmt.Sprintf("198.18.0.%d", i)}
		m.URL = "http://" + m.IP + ":2379"
		if i > 1 {
			run(t, "ip", "-n", c.Fabric, "addr", "add", m.IP+"/24", "dev", "fabric0")
		}
		initial = append(initial, m.Name+"=http://"+m.IP+":2380")
		endpoints = append(endpoints, m.URL)
		c.Members = append(c.Members, m)
	}
	for _, m := range c.Members {
		m.Proc = startProc(t, "devetcd "+m.Name, c.Fabric, filepath.Join(c.Dir, "devetcd-"+m.Name+".log"),
			filepath.Join(c.Bin, "devetcd"), "--name", m.Name, "--data-dir", filepath.Join(c.Dir, "etcd-"+m.Name),
			"--listen-client", m.URL, "--listen-peer", "http://"+m.IP+":2380", "--initial-cluster", strings.Join(initial, ","))
	}
	for _, m := range c.Members {
		waitFor(t, 30*time.Second, "devetcd "+m.Name+" to serve", func() bool {
			if m.Proc.Exited() {
				t.Fatalf("devetcd %s exited:\n%s", m.Name, m.Proc.Output())
			}
			return strings.Contains(m.Proc.Output(), "devetcd: ready on")
		})
	}
	c.Etcd = c.Members[0].Proc
	c.Endpoints = strings.Join(endpoints, ",")
}

// Leader returns the member every running member names as leader (from
// devetcd's "leader is NAME" lines), or nil while they disagree.
func (c *Cluster) Leader() *EtcdMember {
	var leader string
	for _, m := range c.Members {
		if m.Proc.Exited() {
			continue
		}
		out := m.Proc.Output()
		i := strings.LastIndex(out, "devetcd: leader is ")
		if i < 0 {
			return nil
		}
		name := strings.Fields(out[i+len("devetcd: leader is "):])[0]
		if leader != "" && name != leader {
			return nil
		}
		leader = name
	}
	for _, m := range c.Members {
		if m.Name == leader && !m.Proc.Exited() {
			return m
		}
	}
	return nil
}

// Ctl runs overlayctl in the fabric, where etcd is reachable.
func (c *Cluster) Ctl(args ...string) (string, error) {
	argv := append(append([]string{filepath.Join(c.Bin, "overlayctl")}, c.etcdArgs()...), args...)
	out, err := nsCmd(c.Fabric, argv...).CombinedOutput()
	return string(out), err
}

// Ctl runs overlayctl on host h (its namespace and run dir), as an
// operator on that machine would.
func (h *Host) Ctl(args ...string) (string, error) {
	argv := append(append([]string{filepath.Join(h.c.Bin, "overlayctl")}, h.c.etcdArgs()...),
		append([]string{"--network", networkName, "--run-dir", h.RunDir}, args...)...)
	out, err := nsCmd(h.NS, argv...).CombinedOutput()
	return string(out), err
}

// etcdArgs are the flags that point overlayd and overlayctl at c's etcd.
func (c *Cluster) etcdArgs() []string {
	args := []string{"--etcd-endpoints", c.Endpoints}
	if c.TLS != nil {
		args = append(args, "--etcd-cafile", c.TLS.CAFile, "--etcd-certfile", c.TLS.ClientCertFile, "--etcd-keyfile", c.TLS.ClientKeyFile)
	}
	return args
}

// SetNetwork writes the network config with overlayctl, e.g. SetNetwork()
// or SetNetwork("--subnet-len", "30").
func (c *Cluster) SetNetwork(extra ...string) {
	c.t.Helper()
	args := append([]string{"network", "set", networkName, "--cidr", overlayCIDR}, extra...)
	if out, err := c.Ctl(args...); err != nil {
		c.t.Fatalf("overlayctl network set: %v\n%s", err, out)
	}
}

// EtcdPut writes a raw key through etcd's v3 JSON gateway, bypassing
// overlayctl's validation (to store configs overlayctl would refuse).
func (c *Cluster) EtcdPut(key, value string) {
	t := c.t
	t.Helper()
	body, _ := json.Marshal(map[string][]byte{"key": []byte(key), "value": []byte(value)})
	inNS(t, c.Fabric, "curl", "-sSf", "-X", "POST", etcdURL+"/v3/kv/put", "-d", string(body))
}

// Start launches overlayd on h (again, if it ran before) with extra flags.
func (h *Host) Start(extra ...string) *Proc {
	h.c.t.Helper()
	return h.StartBinary(filepath.Join(h.c.Bin, "overlayd"), extra...)
}

// StartBinary is Start with another overlayd binary (an upgrade).
func (h *Host) StartBinary(bin string, extra ...string) *Proc {
	h.c.t.Helper()
	h.starts++
	argv := append([]string{bin}, h.c.etcdArgs()...)
	argv = append(argv, "--network", networkName, "--iface", "eth0",
		"--run-dir", h.RunDir, "--state-dir", h.StateDir, "--hostname", fmt.Sprintf("h%d", h.N))
	argv = append(argv, extra...)
	log := filepath.Join(h.c.Dir, fmt.Sprintf("overlayd-h%d-%d.log", h.N, h.starts))
	h.Daemon = startProc(h.c.t, fmt.Sprintf("overlayd h%d", h.N), h.NS, log, argv...)
	return h.Daemon
}

// HostFilePath is where overlayd on h writes its host file.
func (h *Host) HostFilePath() string { return hostfile.Path(h.RunDir, networkName) }

// WaitReady waits until the host file exists and returns it.
func (h *Host) WaitReady() hostfile.HostFile {
	t := h.c.t
	t.Helper()
	waitFor(t, readyTimeout, fmt.Sprintf("h%d's host file %s", h.N, h.HostFilePath()), func() bool {
		if h.Daemon != nil && h.Daemon.Exited() {
			t.Fatalf("overlayd on h%d exited before it was ready:\n%s", h.N, h.Daemon.Output())
		}
		_, err := os.Stat(h.HostFilePath())
		// Ready means the stamp too: STATUS answers 50 until it is written.
		return err == nil && hostfile.CheckReady(hostfile.ReadyPath(h.RunDir, networkName), time.Now()) == nil
	})
	return h.HostFile()
}

// WaitStampedBy waits until the ready stamp on h was written by p: that
// overlayd holds the lease and has programmed the datapath.
func (h *Host) WaitStampedBy(p *Proc) {
	t := h.c.t
	t.Helper()
	path := hostfile.ReadyPath(h.RunDir, networkName)
	waitFor(t, readyTimeout, fmt.Sprintf("%s to write its ready stamp %s", p.Name, path), func() bool {
		if p.Exited() {
			t.Fatalf("%s exited:\n%s", p.Name, p.Output())
		}
		r, err := hostfile.ReadReady(path)
		return err == nil && r.PID == p.cmd.Process.Pid
	})
}

// HostFile reads and validates h's host file.
func (h *Host) HostFile() hostfile.HostFile {
	h.c.t.Helper()
	hf, err := hostfile.Read(h.HostFilePath())
	if err != nil {
		h.c.t.Fatal(err)
	}
	return hf
}

// connectedPair builds a cluster of two running hosts (etcd of members
// members) with container a on h1 and b on h2 that reach each other.
func connectedPair(t *testing.T, members int) (c *Cluster, a, b *Container) {
	t.Helper()
	c = newClusterEtcd(t, 2, members)
	c.SetNetwork()
	c.startAll()
	a, b = c.Hosts[0].Attach("a"), c.Hosts[1].Attach("b")
	a.mustReach(t, b.IP)
	return c, a, b
}

// startAll starts overlayd on every host and waits until all are ready.
func (c *Cluster) startAll() {
	c.t.Helper()
	for _, h := range c.Hosts {
		h.Start()
	}
	for _, h := range c.Hosts {
		h.WaitReady()
	}
}

func (c *Cluster) dumpLogsOnFailure() {
	if !c.t.Failed() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(c.Dir, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 25 {
			lines = lines[len(lines)-25:]
		}
		c.t.Logf("--- tail of %s\n%s", filepath.Base(l), strings.Join(lines, "\n"))
	}
}

// waitFor polls cond every 100ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// --- containers (CNI through libcni, from inside the host namespace) ---------

// Container is a netns attached to the overlay through the CNI plugins.
type Container struct {
	Host *Host
	Name string
	NS   string
	IP   netip.Addr
	// Result is what ADD of the whole chain returned: the meta plugins add
	// to it (bandwidth's ifb device, tuning's MAC).
	Result *types100.Result
	// RawResult is the same result in the conflist's cniVersion.
	RawResult types.Result
	rt        *libcni.RuntimeConf
	list      *libcni.NetworkConfigList
}

// confList is the test's conflist for h: the overlay plugin alone, with the
// host's own run and data dirs.
func (h *Host) confList() *libcni.NetworkConfigList {
	h.c.t.Helper()
	return h.confListFor(networkName)
}

// confListFor is confList for another network of the same overlayd.
func (h *Host) confListFor(network string) *libcni.NetworkConfigList {
	h.c.t.Helper()
	return h.confListOf(network, "1.0.0")
}

// confListOf is confListFor with the conflist's cniVersion, which is also
// the version libcni speaks to the plugins.
func (h *Host) confListOf(network, cniVersion string) *libcni.NetworkConfigList {
	h.c.t.Helper()
	name := "overlay"
	if network != networkName {
		name += "-" + network
	}
	conf := fmt.Sprintf(`{"cniVersion":%q,"name":%q,"plugins":[
		{"type":"overlay","network":%q,"runDir":%q,"ipam":{"type":"overlay-ipam","dataDir":%q}}]}`,
		cniVersion, name, network, h.RunDir, h.DataDir)
	l, err := libcni.NetworkConfFromBytes([]byte(conf))
	if err != nil {
		h.c.t.Fatal(err)
	}
	return l
}

// TuningDir is where the tuning plugin of h's conflists keeps its backups
// (the settings to restore on DEL), one file per attachment.
func (h *Host) TuningDir() string {
	return filepath.Join(h.c.Dir, fmt.Sprintf("h%d", h.N), "tuning")
}

// shippedConfList loads conf/NAME (as a runtime would find it in its conf
// dir) and points its overlay plugin at h's dirs. Every plugin of the chain
// must be in the bin dir: make build puts the reference meta plugins
// (portmap, bandwidth, firewall, tuning) there too. Two settings that would
// reach outside the test's namespaces are pinned: a firewall plugin without
// a backend would use the machine's firewalld if one answers on D-Bus, so
// it gets "iptables" (rules in h's namespace); tuning keeps its backups of
// the interface settings in h's dir instead of /run/cni/tuning.
func (h *Host) shippedConfList(name string) *libcni.NetworkConfigList {
	t := h.c.t
	t.Helper()
	data := h.shippedConf(name)
	l, err := libcni.NetworkConfFromBytes(data)
	if err != nil {
		t.Fatalf("conf/%s: %v", name, err)
	}
	return l
}

// shippedConf is shippedConfList as JSON, for a runtime that reads the
// conflist from its own conf dir.
func (h *Host) shippedConf(name string) []byte {
	t := h.c.t
	t.Helper()
	path := filepath.Join("..", "conf", name)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal(data, &conf); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	plugins, _ := conf["plugins"].([]any)
	for _, p := range plugins {
		m, _ := p.(map[string]any)
		typ, _ := m["type"].(string)
		if _, err := os.Stat(filepath.Join(h.c.Bin, typ)); err != nil {
			t.Fatalf("%s: plugin %q is not in %s; run make build", path, typ, h.c.Bin)
		}
		switch typ {
		case "firewall":
			if b, _ := m["backend"].(string); b == "" {
				m["backend"] = "iptables"
			}
		case "tuning":
			m["dataDir"] = h.TuningDir()
		case "overlay":
			m["runDir"] = h.RunDir
			ipam, _ := m["ipam"].(map[string]any)
			if ipam == nil {
				t.Fatalf("%s: overlay plugin has no ipam section", path)
			}
			ipam["dataDir"] = h.DataDir
		}
	}
	data, _ = json.Marshal(conf)
	return data
}

// cniIn runs fn with h's network namespace as the current one, as a
// container runtime on that host would: the plugins libcni executes inherit
// it. cacheDir is libcni's result cache. It is safe to call from many
// goroutines at once: ns.Do runs fn on a fresh goroutine locked to its own
// OS thread, switches only that thread, and the plugins are forked from it.
func (h *Host) cniIn(cacheDir string, fn func(cni *libcni.CNIConfig) error) error {
	hostNS, err := ns.GetNS("/var/run/netns/" + h.NS)
	if err != nil {
		return err
	}
	defer hostNS.Close()
	bin := h.c.Bin
	if h.CNIBin != "" {
		bin = h.CNIBin
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{bin}, cacheDir, nil)
	return hostNS.Do(func(ns.NetNS) error { return fn(cni) })
}

// cniCtx bounds one CNI operation, so a hung plugin fails the test instead
// of hanging it until go test's global timeout (which skips cleanups).
func cniCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), cniTimeout)
}

// Attach creates container name on h and runs CNI ADD for it, failing the
// test if ADD fails.
func (h *Host) Attach(name string) *Container {
	h.c.t.Helper()
	ct, err := h.TryAttach(name)
	if err != nil {
		h.c.t.Fatal(err)
	}
	return ct
}

// TryAttach creates container name on h and runs CNI ADD for it with the
// test's conflist.
func (h *Host) TryAttach(name string) (*Container, error) {
	h.c.t.Helper()
	return h.AttachWith(name, h.confList())
}

// AttachWith creates container name on h and runs CNI ADD with list.
// Cleanup runs DEL (best-effort) and removes the namespace, also when ADD
// failed.
func (h *Host) AttachWith(name string, list *libcni.NetworkConfigList) (*Container, error) {
	h.c.t.Helper()
	return h.AttachWithCaps(name, list, nil)
}

// AttachWithCaps is AttachWith with capability arguments for the chain,
// e.g. "portMappings" for portmap, as a runtime passes them.
func (h *Host) AttachWithCaps(name string, list *libcni.NetworkConfigList, caps map[string]any) (*Container, error) {
	h.c.t.Helper()
	return h.AttachWithArgs(name, list, caps, nil)
}

// AttachWithArgs is AttachWithCaps with CNI_ARGS too (e.g. podman passes
// MAC=... for --mac-address, which the tuning plugin applies).
func (h *Host) AttachWithArgs(name string, list *libcni.NetworkConfigList, caps map[string]any, args [][2]string) (*Container, error) {
	h.c.t.Helper()
	ct := h.newContainer(name, list, caps, args)
	ctx, cancel := cniCtx()
	defer cancel()
	return ct, ct.add(ctx)
}

// newContainer creates container name's netns on h, without attaching it.
// Cleanup runs DEL (best-effort) and removes the namespace.
func (h *Host) newContainer(name string, list *libcni.NetworkConfigList, caps map[string]any, args [][2]string) *Container {
	t := h.c.t
	t.Helper()
	ct := &Container{Host: h, Name: name, NS: fmt.Sprintf("%s-h%d-%s", h.c.Prefix, h.N, name), list: list}
	addNetns(t, ct.NS)
	ct.rt = &libcni.RuntimeConf{ContainerID: ct.NS, NetNS: "/var/run/netns/" + ct.NS, IfName: "eth0", CapabilityArgs: caps, Args: args}
	t.Cleanup(func() { _ = ct.Del() })
	return ct
}

// add runs CNI ADD for ct within ctx and records its address. It does not
// touch the testing.T, so goroutines may call it.
func (ct *Container) add(ctx context.Context) error {
	h := ct.Host
	var res *types100.Result
	err := h.cniIn(h.cacheDir, func(cni *libcni.CNIConfig) error {
		r, err := cni.AddNetworkList(ctx, ct.list, ct.rt)
		if err != nil {
			return err
		}
		ct.RawResult = r
		res, err = types100.NewResultFromResult(r)
		return err
	})
	if err != nil {
		return fmt.Errorf("CNI ADD %s on h%d: %w", ct.Name, h.N, err)
	}
	if len(res.IPs) == 0 {
		return fmt.Errorf("CNI ADD %s on h%d: result has no IP: %+v", ct.Name, h.N, res)
	}
	ct.IP, _ = netip.AddrFromSlice(res.IPs[0].Address.IP.To4())
	ct.Result = res
	return nil
}

// Del runs CNI DEL for the container.
func (ct *Container) Del() error {
	return ct.Host.cniIn(ct.Host.cacheDir, func(cni *libcni.CNIConfig) error {
		ctx, cancel := cniCtx()
		defer cancel()
		return cni.DelNetworkList(ctx, ct.list, ct.rt)
	})
}

// Check runs CNI CHECK for the container.
func (ct *Container) Check() error {
	return ct.Host.cniIn(ct.Host.cacheDir, func(cni *libcni.CNIConfig) error {
		ctx, cancel := cniCtx()
		defer cancel()
		return cni.CheckNetworkList(ctx, ct.list, ct.rt)
	})
}

// Ping sends count pings to ip and returns an error with ping's summary if
// any was lost.
func (ct *Container) Ping(ip netip.Addr, count int) error {
	out, err := nsCmd(ct.NS, "ping", "-n", "-q", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "1", ip.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ping %s -> %s: %v: %s", ct.Name, ip, err, summary(out))
	}
	return nil
}

func summary(out []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if strings.Contains(sc.Text(), "packet loss") {
			return sc.Text()
		}
	}
	return strings.TrimSpace(string(out))
}

// mustReach waits (peers are programmed from etcd's watch, asynchronously)
// until ct reaches ip, then requires 3 of 3 pings to get through.
func (ct *Container) mustReach(t *testing.T, ip netip.Addr) {
	t.Helper()
	if err := ct.reach(ip, 30*time.Second); err != nil {
		t.Fatal(err)
	}
}

// reach is mustReach returning an error instead of failing the test, for
// use from goroutines.
func (ct *Container) reach(ip netip.Addr, within time.Duration) error {
	var last error
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if last = ct.Ping(ip, 1); last == nil {
			break
		}
	}
	if last != nil {
		return fmt.Errorf("no connectivity within %s: %w", within, last)
	}
	return ct.Ping(ip, 3)
}

// bridgePorts returns the names of h's links enslaved to bridge.
func (h *Host) bridgePorts(bridge string) []string {
	return h.linkNames(h.c.t, "master", bridge)
}

// linkNames returns the names of h's links that `ip link show FILTER…`
// lists.
func (h *Host) linkNames(t *testing.T, filter ...string) []string {
	t.Helper()
	var links []struct {
		IfName string `json:"ifname"`
	}
	out := run(t, "ip", append([]string{"-n", h.NS, "-j", "link", "show"}, filter...)...)
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("parse ip -j link: %v\n%s", err, out)
	}
	var names []string
	for _, l := range links {
		names = append(names, l.IfName)
	}
	return names
}

// vxlanRoutes returns the destinations of the routes on h's VXLAN device.
func (h *Host) vxlanRoutes() []string {
	t := h.c.t
	t.Helper()
	var links []struct {
		IfName string `json:"ifname"`
	}
	out := run(t, "ip", "-n", h.NS, "-j", "-d", "link", "show", "type", "vxlan")
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) > 1 {
		t.Fatalf("want at most one VXLAN device on h%d, got %s (%v)", h.N, out, err)
	}
	if len(links) == 0 {
		return nil // no device, so no routes (e.g. deleted, not yet restored)
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	out = run(t, "ip", "-n", h.NS, "-j", "route", "show", "dev", links[0].IfName)
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		t.Fatalf("parse ip -j route: %v\n%s", err, out)
	}
	var dsts []string
	for _, r := range routes {
		dsts = append(dsts, r.Dst)
	}
	return dsts
}

// linkExists reports whether netns has a link named name.
func linkExists(netns, name string) bool {
	return exec.Command("ip", "-n", netns, "link", "show", name).Run() == nil
}

// hostVethGone reports whether the host veth name is gone from netns, or
// goes within a few seconds: DEL takes it off the bridge before it answers,
// and a detached reaper deletes the pair just after (the kernel takes
// 15-25 ms per pair).
func hostVethGone(netns, name string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for linkExists(netns, name) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// ipamFiles returns every file under h's IPAM data dir whose name is ip.
func (h *Host) ipamFiles(ip netip.Addr) []string {
	var found []string
	_ = filepath.WalkDir(h.DataDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == ip.String() {
			found = append(found, p)
		}
		return nil
	})
	return found
}
