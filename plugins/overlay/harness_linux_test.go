package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"

	"github.com/overlaynet/overlay/ipam/store"
	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

// The namespace tests simulate one host: a "host" network namespace in which
// the plugins run (they inherit it from the test thread that execs them),
// holding the bridge and host veths, plus one namespace per container. All
// are created per test and removed when it ends; nothing touches the
// machine's own namespace.

var testHostFile = hostfile.HostFile{
	Network: netip.MustParsePrefix("10.244.0.0/16"),
	Subnet:  netip.MustParsePrefix("10.244.7.0/24"),
	Gateway: netip.MustParseAddr("10.244.7.1"),
	MTU:     1450,
	Bridge:  "overlay0",
	VNI:     1,
}

type testHost struct {
	t        *testing.T
	ns       ns.NetNS
	runDir   string
	dataDir  string
	cacheDir string
	cni      *libcni.CNIConfig
}

// newTestHost builds a host namespace and dirs, and does what overlayd
// would: creates the bridge and writes the host file.
func newTestHost(t *testing.T) *testHost {
	t.Helper()
	requireRoot(t)
	h := &testHost{
		t:        t,
		ns:       newNS(t).ns,
		runDir:   t.TempDir(),
		dataDir:  t.TempDir(),
		cacheDir: t.TempDir(),
	}
	h.cni = newCNIConfig(h.cacheDir)
	h.publish(testHostFile)
	return h
}

// publish does what overlayd does for a (new) subnet, in its order: makes
// the bridge carry the gateway (the plugin only looks the bridge up), then
// writes the host file.
func (h *testHost) publish(hf hostfile.HostFile) {
	h.t.Helper()
	h.ensureBridge(hf)
	if err := hostfile.Write(hostfile.Path(h.runDir, "default"), hf); err != nil {
		h.t.Fatal(err)
	}
}

// writeReady writes overlayd's ready stamp.
func (h *testHost) writeReady(r hostfile.Ready) {
	h.t.Helper()
	if err := hostfile.WriteReady(hostfile.ReadyPath(h.runDir, "default"), r); err != nil {
		h.t.Fatal(err)
	}
}

// writeFreshReady writes the stamp a running overlayd keeps renewed.
func (h *testHost) writeFreshReady() {
	h.t.Helper()
	now := time.Now()
	h.writeReady(hostfile.Ready{PID: os.Getpid(), Written: now, Until: now.Add(time.Minute)})
}

// ensureBridge runs overlayd's datapath.EnsureBridge for hf in the host namespace.
func (h *testHost) ensureBridge(hf hostfile.HostFile) {
	h.t.Helper()
	spec := datapath.BridgeSpec{Name: hf.Bridge, Gateway: netip.PrefixFrom(hf.Gateway, hf.Subnet.Bits()), MTU: hf.MTU}
	if err := h.ns.Do(func(ns.NetNS) error { return datapath.EnsureBridge(spec) }); err != nil {
		h.t.Fatalf("create bridge %s as overlayd would: %v", hf.Bridge, err)
	}
}

// newCNIConfig builds the runtime side: libcni with its own cache dir. The
// exec is given explicitly because libcni creates a missing one lazily on
// each call, a data race when tests call it from several goroutines.
func newCNIConfig(cacheDir string) *libcni.CNIConfig {
	ex := &invoke.DefaultExec{RawExec: &invoke.RawExec{Stderr: os.Stderr}, PluginDecoder: version.PluginDecoder{}}
	return libcni.NewCNIConfigWithCacheDir([]string{binDir}, cacheDir, ex)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("namespace tests need root: run make test as root")
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; the namespace tests need it (apt-get install -y iproute2 iputils-ping)", tool)
		}
	}
}

// testNS is a network namespace that is removed when the test ends, or
// earlier by remove.
type testNS struct {
	ns   ns.NetNS
	name string // for ip -n / ip netns exec
	once sync.Once
}

func newNS(t *testing.T) *testNS {
	t.Helper()
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	tn := &testNS{ns: n, name: filepath.Base(n.Path())}
	t.Cleanup(func() {
		if err := tn.remove(); err != nil {
			t.Errorf("remove netns %s: %v", tn.name, err)
		}
	})
	return tn
}

func (n *testNS) remove() error {
	var err error
	n.once.Do(func() {
		err = errors.Join(n.ns.Close(), testutils.UnmountNS(n.ns))
	})
	return err
}

func (n *testNS) path() string { return n.ns.Path() }

// confList is the network config under test; extra plugin fields and
// chained plugins are appended as raw JSON.
func (h *testHost) confList(cniVersion string, overlayFields string, chained ...string) *libcni.NetworkConfigList {
	h.t.Helper()
	plugin := fmt.Sprintf(`{"type":"overlay","network":"default","runDir":%q,`+
		`"ipam":{"type":"overlay-ipam","dataDir":%q}%s}`, h.runDir, h.dataDir, overlayFields)
	plugins := append([]string{plugin}, chained...)
	js := fmt.Sprintf(`{"cniVersion":%q,"name":"overlay-test","plugins":[%s]}`, cniVersion, strings.Join(plugins, ","))
	list, err := libcni.ConfListFromBytes([]byte(js))
	if err != nil {
		h.t.Fatalf("parse conflist %s: %v", js, err)
	}
	return list
}

func rt(id string, netns *testNS) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: netns.path(), IfName: "eth0"}
}

// inHost runs f on a thread inside the host namespace, so plugins exec'd by
// f run there too.
func (h *testHost) inHost(f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return h.ns.Do(func(ns.NetNS) error { return f(ctx) })
}

func (h *testHost) add(list *libcni.NetworkConfigList, r *libcni.RuntimeConf) (*current.Result, error) {
	var res types.Result
	err := h.inHost(func(ctx context.Context) error {
		var err error
		res, err = h.cni.AddNetworkList(ctx, list, r)
		return err
	})
	if err != nil {
		return nil, err
	}
	return current.NewResultFromResult(res)
}

func (h *testHost) mustAdd(list *libcni.NetworkConfigList, r *libcni.RuntimeConf) (*current.Result, netip.Prefix) {
	h.t.Helper()
	res, err := h.add(list, r)
	if err != nil {
		h.t.Fatalf("ADD %s: %v", r.ContainerID, err)
	}
	if len(res.IPs) != 1 {
		h.t.Fatalf("ADD %s: result has IPs %v, want one", r.ContainerID, res.IPs)
	}
	addr, ok := toPrefix(res.IPs[0].Address)
	if !ok {
		h.t.Fatalf("ADD %s: bad address %v", r.ContainerID, res.IPs[0].Address)
	}
	return res, addr
}

func (h *testHost) del(list *libcni.NetworkConfigList, r *libcni.RuntimeConf) error {
	return h.inHost(func(ctx context.Context) error { return h.cni.DelNetworkList(ctx, list, r) })
}

func (h *testHost) check(list *libcni.NetworkConfigList, r *libcni.RuntimeConf) error {
	return h.inHost(func(ctx context.Context) error { return h.cni.CheckNetworkList(ctx, list, r) })
}

// store opens the IPAM store the plugins use, to see what is reserved.
func (h *testHost) store() *store.Store {
	h.t.Helper()
	s, err := store.New(h.dataDir, "default")
	if err != nil {
		h.t.Fatal(err)
	}
	return s
}

func (h *testHost) reservations() []store.Allocation {
	h.t.Helper()
	allocs, err := h.store().List()
	if err != nil {
		h.t.Fatal(err)
	}
	return allocs
}

func (h *testHost) wantReleased(id string) {
	h.t.Helper()
	ip, err := h.store().Lookup(store.Attachment{ContainerID: id, IfName: "eth0"})
	if !errors.Is(err, store.ErrNotFound) {
		h.t.Errorf("%s still holds %s in the ipam store (err %v)", id, ip, err)
	}
}

// wantAttached checks that attachment id/eth0 is whole: the store holds
// addr for it and nothing else for it, the container's eth0 holds addr, and
// hostVeth is the bridge's only port.
func (h *testHost) wantAttached(id string, c *testNS, addr netip.Prefix, hostVeth string) {
	h.t.Helper()
	if got := h.reservations(); len(got) != 1 || got[0].Attachment.ContainerID != id || got[0].IP != addr.Addr() {
		h.t.Errorf("reservations = %v, want only %s's %s", got, id, addr.Addr())
	}
	if eth0 := addrsOf(h.t, c.name, "eth0"); len(eth0) != 1 || !hasAddr(eth0[0], addr) {
		h.t.Errorf("%s's eth0 = %+v, want it holding %s", id, eth0, addr)
	}
	if ports := linkNames(links(h.t, h.name(), "master", "overlay0")); !slices.Equal(ports, []string{hostVeth}) {
		h.t.Errorf("ports of overlay0 = %v, want only %s", ports, hostVeth)
	}
}

// withCache is the same host seen by a runtime with its own libcni cache.
func (h *testHost) withCache(cacheDir string) *testHost {
	c := *h
	c.cacheDir = cacheDir
	c.cni = newCNIConfig(cacheDir)
	return &c
}

func (h *testHost) name() string { return filepath.Base(h.ns.Path()) }

// ipLink is the part of `ip -j link/addr` output the tests read.
type ipLink struct {
	IfName   string       `json:"ifname"`
	Master   string       `json:"master"`
	AddrInfo []ipAddrInfo `json:"addr_info"`
}

type ipAddrInfo struct {
	Family    string `json:"family"`
	Local     string `json:"local"`
	PrefixLen int    `json:"prefixlen"`
}

type ipRoute struct {
	Dst     string `json:"dst"`
	Gateway string `json:"gateway"`
	Dev     string `json:"dev"`
}

// ipJSON runs `ip -j -n NETNS ARGS...` and decodes its output into v. It
// reads kernel state through iproute2 because only pkg/datapath may speak
// netlink.
func ipJSON(t *testing.T, netns string, v any, args ...string) error {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"-j", "-n", netns}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s in %s: %w: %s", strings.Join(args, " "), netns, err, out)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("decode ip %s output %q: %w", strings.Join(args, " "), out, err)
	}
	return nil
}

// links lists the links `ip link show ARGS` selects in netns.
func links(t *testing.T, netns string, args ...string) []ipLink {
	t.Helper()
	var ls []ipLink
	if err := ipJSON(t, netns, &ls, append([]string{"link", "show"}, args...)...); err != nil {
		t.Fatal(err)
	}
	return ls
}

// addrsOf returns the link dev in netns with its addresses.
func addrsOf(t *testing.T, netns, dev string) []ipLink {
	t.Helper()
	var ls []ipLink
	if err := ipJSON(t, netns, &ls, "addr", "show", "dev", dev); err != nil {
		t.Fatal(err)
	}
	return ls
}

func linkNames(ls []ipLink) []string {
	names := make([]string, 0, len(ls))
	for _, l := range ls {
		names = append(names, l.IfName)
	}
	return names
}

// waitNoLink waits for a link to vanish from netns: a veth whose peer's
// namespace is destroyed goes away asynchronously.
func waitNoLink(t *testing.T, netns, name string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ls []ipLink
		err := ipJSON(t, netns, &ls, "link", "show", "dev", name)
		if err != nil && strings.Contains(err.Error(), "does not exist") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("link %s still in %s (%v, %v)", name, netns, ls, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func wantCNICode(t *testing.T, err error, code uint) *types.Error {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("error = %v, want a CNI error with code %d", err, code)
	}
	if e.Code != code {
		t.Fatalf("CNI error code %d (%s), want %d", e.Code, e, code)
	}
	return e
}
