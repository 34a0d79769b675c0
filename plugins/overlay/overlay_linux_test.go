package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

var allVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

func TestAddWiresContainer(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", `,"dns":{"nameservers":["10.96.0.10"]}`)
	res, addr := h.mustAdd(list, rt("c1", c))

	wantContainerAddr(t, addr)
	if len(res.Interfaces) != 2 || res.Interfaces[1].Name != "eth0" || res.Interfaces[1].Sandbox != c.path() ||
		res.Interfaces[0].Sandbox != "" || *res.IPs[0].Interface != 1 {
		t.Errorf("result interfaces %v / IP interface %d: want [host veth, eth0 in %s] and index 1",
			res.Interfaces, *res.IPs[0].Interface, c.path())
	}
	if res.IPs[0].Gateway.String() != "10.244.7.1" || len(res.Routes) != 1 || res.Routes[0].Dst.String() != "0.0.0.0/0" {
		t.Errorf("result gateway %v routes %v, want 10.244.7.1 and a default route", res.IPs[0].Gateway, res.Routes)
	}
	if !slices.Equal(res.DNS.Nameservers, []string{"10.96.0.10"}) {
		t.Errorf("result DNS %v, want the config's nameservers", res.DNS)
	}

	eth0 := addrsOf(t, c.name, "eth0")
	if len(eth0) != 1 || !hasAddr(eth0[0], addr) {
		t.Errorf("container eth0 = %+v, want address %s", eth0, addr)
	}
	var routes []ipRoute
	if err := ipJSON(t, c.name, &routes, "route", "show", "default"); err != nil {
		t.Fatal(err)
	}
	if len(routes) != 1 || routes[0].Gateway != "10.244.7.1" || routes[0].Dev != "eth0" {
		t.Errorf("container default routes = %+v, want one via 10.244.7.1 dev eth0", routes)
	}
	if ports := linkNames(links(t, h.name(), "master", "overlay0")); !slices.Equal(ports, []string{res.Interfaces[0].Name}) {
		t.Errorf("ports of overlay0 = %v, want [%s]", ports, res.Interfaces[0].Name)
	}
	if err := h.check(list, rt("c1", c)); err != nil {
		t.Errorf("CHECK after ADD: %v", err)
	}
}

func TestDel(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	res, _ := h.mustAdd(list, rt("c1", c))

	if err := h.del(list, rt("c1", c)); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	waitNoLink(t, h.name(), res.Interfaces[0].Name)
	if got := linkNames(links(t, c.name)); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("container links after DEL = %v, want only lo", got)
	}
	h.wantReleased("c1")
	if err := h.del(list, rt("c1", c)); err != nil {
		t.Errorf("second DEL: %v", err)
	}
}

func TestDelAfterNetnsRemoved(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	res, _ := h.mustAdd(list, rt("c1", c))
	if err := c.remove(); err != nil {
		t.Fatal(err)
	}
	if err := h.del(list, rt("c1", c)); err != nil {
		t.Fatalf("DEL after the netns is gone: %v", err)
	}
	h.wantReleased("c1")
	waitNoLink(t, h.name(), res.Interfaces[0].Name)
}

// TestDelWithoutNetns is a runtime's DEL with CNI_NETNS unset: the address
// must still be released.
func TestDelWithoutNetns(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	h.mustAdd(list, rt("c1", c))
	if err := h.del(list, &libcni.RuntimeConf{ContainerID: "c1", IfName: "eth0"}); err != nil {
		t.Fatalf("DEL without netns: %v", err)
	}
	h.wantReleased("c1")
}

func TestDelWithoutHostFile(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	res, _ := h.mustAdd(list, rt("c1", c))
	if err := os.Remove(hostfile.Path(h.runDir, "default")); err != nil {
		t.Fatal(err)
	}
	if err := h.del(list, rt("c1", c)); err != nil {
		t.Fatalf("DEL without host file: %v", err)
	}
	h.wantReleased("c1")
	waitNoLink(t, h.name(), res.Interfaces[0].Name)
}

// TestReleasedAddressIsReused fills a /29 (five container addresses) and
// checks a deleted container's address is handed out again.
func TestReleasedAddressIsReused(t *testing.T) {
	h := newTestHost(t)
	small := testHostFile
	small.Subnet = netip.MustParsePrefix("10.244.7.0/29")
	h.publish(small)
	list := h.confList("1.0.0", "")
	var first netip.Prefix
	var firstNS *testNS
	for i := range 5 {
		c := newNS(t)
		_, addr := h.mustAdd(list, rt(fmt.Sprint("c", i), c))
		if i == 0 {
			first, firstNS = addr, c
		}
	}
	full := newNS(t)
	_, err := h.add(list, rt("full", full))
	if e := wantCNICode(t, err, types.ErrTryAgainLater); !strings.Contains(e.Msg, "exhausted") {
		t.Errorf("ADD on a full subnet: %q, want it to say the subnet is exhausted", e.Msg)
	}
	if err := h.del(list, rt("c0", firstNS)); err != nil {
		t.Fatalf("DEL c0: %v", err)
	}
	if _, addr := h.mustAdd(list, rt("again", full)); addr != first {
		t.Errorf("ADD after DEL got %s, want the released %s", addr, first)
	}
}

func TestPingBetweenContainers(t *testing.T) {
	h := newTestHost(t)
	list := h.confList("1.0.0", "")
	c1, c2 := newNS(t), newNS(t)
	_, a1 := h.mustAdd(list, rt("c1", c1))
	_, a2 := h.mustAdd(list, rt("c2", c2))
	ping(t, c1, a2.Addr())
	ping(t, c2, a1.Addr())
	ping(t, c1, testHostFile.Gateway)
}

func TestAddWithoutHostFile(t *testing.T) {
	h := newTestHost(t)
	path := hostfile.Path(h.runDir, "default")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	c := newNS(t)
	_, err := h.add(h.confList("1.0.0", ""), rt("c1", c))
	e := wantCNICode(t, err, types.ErrTryAgainLater)
	if e.Msg != "host file "+path+" not found" || !strings.Contains(e.Details, "is overlayd running?") {
		t.Errorf("error = %q / %q", e.Msg, e.Details)
	}
	if got := h.reservations(); len(got) != 0 {
		t.Errorf("reservations after failed ADD: %v", got)
	}
	if got := links(t, h.name(), "type", "veth"); len(got) != 0 {
		t.Errorf("veths left in the host: %v", linkNames(got))
	}
	if got := linkNames(links(t, c.name)); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("container links after failed ADD = %v, want only lo", got)
	}
}

// Without the bridge (overlayd not running yet, or torn down) ADD says to
// try again later, creates nothing, not even the bridge, and leaves no
// address reserved.
func TestAddWithoutBridge(t *testing.T) {
	h := newTestHost(t)
	if out, err := exec.Command("ip", "-n", h.name(), "link", "del", "overlay0").CombinedOutput(); err != nil {
		t.Fatalf("delete bridge: %v: %s", err, out)
	}
	c := newNS(t)
	_, err := h.add(h.confList("1.0.0", ""), rt("c1", c))
	e := wantCNICode(t, err, types.ErrTryAgainLater)
	if e.Msg != `bridge "overlay0" not found` || !strings.Contains(e.Details, "overlayd") {
		t.Errorf("error = %q / %q, want the bridge named and overlayd as the fix", e.Msg, e.Details)
	}
	if got := h.reservations(); len(got) != 0 {
		t.Errorf("reservations after ADD without bridge: %v", got)
	}
	if got := linkNames(links(t, h.name())); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("host links after ADD without bridge = %v, want only lo (the plugin must not create the bridge)", got)
	}
	if got := linkNames(links(t, c.name)); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("container links after failed ADD = %v, want only lo", got)
	}
}

// After a subnet change overlayd moves the bridge to the new gateway before
// it rewrites the host file. An ADD reading the old host file in between
// must neither put the old gateway back on the bridge nor attach the
// container to the old subnet: it answers 11 and changes nothing.
func TestAddBridgeWithoutGateway(t *testing.T) {
	h := newTestHost(t)
	moved := testHostFile
	moved.Subnet = netip.MustParsePrefix("10.244.9.0/24")
	moved.Gateway = netip.MustParseAddr("10.244.9.1")
	h.ensureBridge(moved) // the host file still says 10.244.7.0/24
	c := newNS(t)
	_, err := h.add(h.confList("1.0.0", ""), rt("c1", c))
	e := wantCNICode(t, err, types.ErrTryAgainLater)
	if !strings.Contains(e.Msg, "10.244.7.1/24") || !strings.Contains(e.Details, "subnet change") {
		t.Errorf("error = %q / %q, want the missing gateway and a subnet change named", e.Msg, e.Details)
	}
	br := addrsOf(t, h.name(), "overlay0")
	if len(br) != 1 || !hasAddr(br[0], netip.MustParsePrefix("10.244.9.1/24")) || hasAddr(br[0], netip.MustParsePrefix("10.244.7.1/24")) {
		t.Errorf("bridge after ADD = %+v, want only overlayd's 10.244.9.1/24", br)
	}
	if got := h.reservations(); len(got) != 0 {
		t.Errorf("reservations after ADD against a moved bridge: %v", got)
	}
	if got := linkNames(links(t, c.name)); !slices.Equal(got, []string{"lo"}) {
		t.Errorf("container links after failed ADD = %v, want only lo", got)
	}
}

func TestAddUnusableHostFile(t *testing.T) {
	h := newTestHost(t)
	path := hostfile.Path(h.runDir, "default")
	if err := os.WriteFile(path, []byte(`{"subnet":"10.244.7.0/24"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := h.add(h.confList("1.0.0", ""), rt("c1", newNS(t)))
	e := wantCNICode(t, err, types.ErrTryAgainLater)
	if !strings.Contains(e.Msg, path) || !strings.Contains(e.Details, "restart overlayd") {
		t.Errorf("error = %q / %q, want the file and a hint to restart overlayd", e.Msg, e.Details)
	}
}

func TestBadConfig(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	tests := []struct {
		name, list, field string
	}{
		{"bad network name", `{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"overlay","network":"no/slash","ipam":{"type":"overlay-ipam"}}]}`, `"network"`},
		{"missing ipam.type", `{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"overlay","runDir":"/run/overlay"}]}`, `"ipam.type"`},
		{"relative runDir", `{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"overlay","runDir":"run","ipam":{"type":"overlay-ipam"}}]}`, `"runDir"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := libcni.ConfListFromBytes([]byte(tt.list))
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.add(list, rt("c1", c))
			e := wantCNICode(t, err, types.ErrInvalidNetworkConfig)
			if !strings.Contains(e.Msg, tt.field) {
				t.Errorf("error %q does not name %s", e.Msg, tt.field)
			}
		})
	}
	if got := h.reservations(); len(got) != 0 {
		t.Errorf("reservations after bad configs: %v", got)
	}
}

// TestAddExistingIfNameReleasesAddress: a second attachment asking for an
// interface name the container already has fails with code 4, its address
// goes back, and the first attachment is untouched.
func TestAddExistingIfNameReleasesAddress(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	res, addr := h.mustAdd(list, rt("c1", c))

	_, err := h.add(list, rt("c2", c))
	if e := wantCNICode(t, err, types.ErrInvalidEnvironmentVariables); !strings.Contains(e.Details, "another attachment's") {
		t.Errorf("ADD of c2 as c1's eth0: %q / %q, want it to say the interface is another attachment's", e.Msg, e.Details)
	}
	h.wantReleased("c2")
	if got := h.reservations(); len(got) != 1 || got[0].Attachment.ContainerID != "c1" {
		t.Errorf("reservations = %v, want only c1's", got)
	}
	eth0 := addrsOf(t, c.name, "eth0")
	if len(eth0) != 1 || !hasAddr(eth0[0], addr) {
		t.Errorf("c1's eth0 = %+v, want it still holding %s", eth0, addr)
	}
	if ports := linkNames(links(t, h.name(), "master", "overlay0")); !slices.Equal(ports, []string{res.Interfaces[0].Name}) {
		t.Errorf("ports of overlay0 = %v, want only c1's %s", ports, res.Interfaces[0].Name)
	}
}

// A runtime that retries an ADD (say after a timeout) for an attachment
// that exists gets the first ADD's result again, and the container keeps
// its address: the retry must not take the existing interface for a
// failure of its own and release the address while eth0 holds it.
func TestRetriedAddReturnsSameResult(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	first, addr := h.mustAdd(list, rt("c1", c))

	again, err := h.add(list, rt("c1", c))
	h.wantAttached("c1", c, addr, first.Interfaces[0].Name)
	if err != nil {
		t.Fatalf("retried ADD: %v", err)
	}
	if again.IPs[0].Address.String() != addr.String() || len(again.Interfaces) != 2 ||
		again.Interfaces[0].Name != first.Interfaces[0].Name || again.Interfaces[0].Mac != first.Interfaces[0].Mac ||
		again.Interfaces[1].Mac != first.Interfaces[1].Mac || again.Interfaces[1].Mtu != testHostFile.MTU {
		t.Errorf("retried ADD result %v / %v, want the first's %v / %v", again.Interfaces, again.IPs, first.Interfaces, first.IPs)
	}
	if err := h.check(list, rt("c1", c)); err != nil {
		t.Errorf("CHECK after the retried ADD: %v", err)
	}
	if err := h.del(list, rt("c1", c)); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	h.wantReleased("c1")
}

// The same ADD sent several times at once: one wires the container, the
// others wait for it and answer with its result; nobody frees the address
// the winner's eth0 holds.
func TestConcurrentIdenticalAdds(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	const n = 6
	results := make([]*current.Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		// Each caller its own libcni cache, like separate runtime attempts.
		caller := h.withCache(t.TempDir())
		wg.Go(func() { results[i], errs[i] = caller.add(list, rt("c1", c)) })
	}
	wg.Wait()
	var addr netip.Prefix
	var hostVeth string
	for i := range n {
		if errs[i] != nil {
			t.Errorf("ADD %d: %v", i, errs[i])
			continue
		}
		a, _ := toPrefix(results[i].IPs[0].Address)
		if !addr.IsValid() {
			addr, hostVeth = a, results[i].Interfaces[0].Name
		}
		if a != addr || results[i].Interfaces[0].Name != hostVeth {
			t.Errorf("ADD %d got %s on %s, another got %s on %s", i, a, results[i].Interfaces[0].Name, addr, hostVeth)
		}
	}
	if !addr.IsValid() {
		t.Fatal("no ADD succeeded")
	}
	h.wantAttached("c1", c, addr, hostVeth)
}

// An eth0 the plugin did not make (here a veth whose peer stays in the
// container) is code 4: ADD touches nothing and reserves nothing.
func TestAddIfNameTakenByForeignLink(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	if out, err := exec.Command("ip", "-n", c.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p").CombinedOutput(); err != nil {
		t.Fatalf("create a foreign eth0: %v: %s", err, out)
	}
	_, err := h.add(h.confList("1.0.0", ""), rt("c1", c))
	e := wantCNICode(t, err, types.ErrInvalidEnvironmentVariables)
	if e.Msg != "invalid CNI_IFNAME" || !strings.Contains(e.Details, `interface "eth0" already exists`) ||
		!strings.Contains(e.Details, "not in the host's network namespace") || !strings.Contains(e.Details, "free CNI_IFNAME") {
		t.Errorf("error = %q / %q, want the interface, why it is not ours and what to do", e.Msg, e.Details)
	}
	if got := h.reservations(); len(got) != 0 {
		t.Errorf("reservations after ADD over a foreign eth0: %v", got)
	}
	if got := linkNames(links(t, c.name)); !slices.Equal(got, []string{"lo", "eth0p", "eth0"}) && !slices.Equal(got, []string{"lo", "eth0", "eth0p"}) {
		t.Errorf("container links = %v, want lo and the foreign pair untouched", got)
	}
	if got := links(t, h.name(), "type", "veth"); len(got) != 0 {
		t.Errorf("veths left in the host: %v", linkNames(got))
	}
}

// An attachment made in an earlier subnet: after overlayd moved to a new
// one, a retried ADD cannot return the old address as this host's. It
// fails with code 4 and leaves the interface and its reservation for DEL.
func TestRetriedAddAfterSubnetChange(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	res, addr := h.mustAdd(list, rt("c1", c))
	moved := testHostFile
	moved.Subnet = netip.MustParsePrefix("10.244.9.0/24")
	moved.Gateway = netip.MustParseAddr("10.244.9.1")
	h.publish(moved)

	_, err := h.add(list, rt("c1", c))
	if e := wantCNICode(t, err, types.ErrInvalidEnvironmentVariables); !strings.Contains(e.Details, "10.244.9.0/24") {
		t.Errorf("error = %q / %q, want the new subnet named", e.Msg, e.Details)
	}
	h.wantAttached("c1", c, addr, res.Interfaces[0].Name)
}

func TestConcurrentAdds(t *testing.T) {
	h := newTestHost(t)
	list := h.confList("1.0.0", "")
	const n = 20
	nss := make([]*testNS, n)
	for i := range nss {
		nss[i] = newNS(t)
	}
	addrs := make([]netip.Prefix, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			var res *current.Result
			res, errs[i] = h.add(list, rt(fmt.Sprint("c", i), nss[i]))
			if errs[i] == nil {
				addrs[i], _ = toPrefix(res.IPs[0].Address)
			}
		})
	}
	wg.Wait()
	seen := map[netip.Prefix]int{}
	for i, a := range addrs {
		if errs[i] != nil {
			t.Fatalf("ADD c%d: %v", i, errs[i])
		}
		wantContainerAddr(t, a)
		if j, dup := seen[a]; dup {
			t.Errorf("%s handed to c%d and c%d", a, j, i)
		}
		seen[a] = i
	}
	if ports := links(t, h.name(), "master", "overlay0"); len(ports) != n {
		t.Errorf("overlay0 has %d ports, want %d", len(ports), n)
	}
}

// TestVersions runs ADD, CHECK (where the version has it) and DEL with a
// conflist of each supported version.
func TestVersions(t *testing.T) {
	for _, v := range allVersions {
		t.Run(v, func(t *testing.T) {
			h := newTestHost(t)
			c := newNS(t)
			list := h.confList(v, "")
			_, addr := h.mustAdd(list, rt("c1", c))
			wantContainerAddr(t, addr)
			if withCheck, _ := version.GreaterThanOrEqualTo(v, "0.4.0"); withCheck {
				if err := h.check(list, rt("c1", c)); err != nil {
					t.Errorf("CHECK: %v", err)
				}
			}
			if err := h.del(list, rt("c1", c)); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			h.wantReleased("c1")
		})
	}
}

// TestChained runs overlay as the first plugin of a chain with a reference
// plugin after it, which gets overlay's result as prevResult.
func TestChained(t *testing.T) {
	for _, v := range []string{"0.4.0", "1.0.0"} {
		t.Run(v, func(t *testing.T) {
			h := newTestHost(t)
			c := newNS(t)
			list := h.confList(v, "", `{"type":"tuning","sysctl":{"net.core.somaxconn":"777"}}`)
			res, addr := h.mustAdd(list, rt("c1", c))
			wantContainerAddr(t, addr)
			if len(res.Interfaces) != 2 {
				t.Errorf("chain result interfaces = %v, want overlay's two", res.Interfaces)
			}
			out, err := exec.Command("ip", "netns", "exec", c.name, "cat", "/proc/sys/net/core/somaxconn").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "777" {
				t.Errorf("somaxconn in container = %q (%v), want 777 set by tuning", out, err)
			}
			if err := h.check(list, rt("c1", c)); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := h.del(list, rt("c1", c)); err != nil {
				t.Fatalf("DEL: %v", err)
			}
			h.wantReleased("c1")
		})
	}
}

func TestCheckFindsMissingInterface(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	list := h.confList("1.0.0", "")
	h.mustAdd(list, rt("c1", c))
	if out, err := exec.Command("ip", "-n", c.name, "link", "del", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("delete eth0: %v: %s", err, out)
	}
	if err := h.check(list, rt("c1", c)); err == nil {
		t.Error("CHECK succeeded with the container's interface gone")
	}
}

func (h *testHost) status(list *libcni.NetworkConfigList) error {
	return h.inHost(func(ctx context.Context) error { return h.cni.GetStatusNetworkList(ctx, list) })
}

// TestStatusFreshness: STATUS says the network is not available (50) unless
// overlayd's ready stamp is there and fresh; ADD does not look at it.
func TestStatusFreshness(t *testing.T) {
	h := newTestHost(t)
	list := h.confList("1.1.0", "")
	stamp := hostfile.ReadyPath(h.runDir, "default")
	e := wantCNICode(t, h.status(list), types.ErrPluginNotAvailable)
	if !strings.Contains(e.Msg, stamp) || !strings.Contains(e.Msg, "not found") ||
		!strings.Contains(e.Details, "not running or not ready") || !strings.Contains(e.Details, "systemctl status overlayd") {
		t.Errorf("STATUS without a stamp: %q / %q, want the stamp named and what to check", e.Msg, e.Details)
	}
	now := time.Now()
	h.writeReady(hostfile.Ready{PID: 1, Written: now.Add(-time.Minute), Until: now.Add(-time.Second)})
	e = wantCNICode(t, h.status(list), types.ErrPluginNotAvailable)
	if !strings.Contains(e.Msg, stamp) || !strings.Contains(e.Msg, "stale") {
		t.Errorf("STATUS with a stale stamp: %q / %q", e.Msg, e.Details)
	}
	// overlayd restarting: the stamp is stale, containers still start.
	h.mustAdd(list, rt("c1", newNS(t)))
	h.writeFreshReady()
	if err := h.status(list); err != nil {
		t.Errorf("STATUS with a host file and a fresh stamp: %v", err)
	}
}

func TestStatusAndGC(t *testing.T) {
	h := newTestHost(t)
	list := h.confList("1.1.0", "")
	status := func() error { return h.status(list) }
	h.writeFreshReady()
	if err := status(); err != nil {
		t.Errorf("STATUS with a host file and a fresh ready stamp: %v", err)
	}

	kept := newNS(t)
	h.mustAdd(list, rt("kept", kept))
	// An attachment whose runtime lost its cache (e.g. over a reboot): only
	// the plugin's GC can find it.
	lost := h.withCache(t.TempDir())
	lost.mustAdd(list, rt("lost", newNS(t)))

	err := h.inHost(func(ctx context.Context) error {
		return h.cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "kept", IfName: "eth0"}}})
	})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	h.wantReleased("lost")
	if got := h.reservations(); len(got) != 1 || got[0].Attachment.ContainerID != "kept" {
		t.Errorf("reservations after GC = %v, want only kept's", got)
	}

	if err := os.Remove(hostfile.Path(h.runDir, "default")); err != nil {
		t.Fatal(err)
	}
	wantCNICode(t, status(), types.ErrPluginNotAvailable)
}

func TestVersionInfo(t *testing.T) {
	h := newTestHost(t)
	for _, plugin := range []string{"overlay", "overlay-ipam"} {
		info, err := h.cni.GetVersionInfo(context.Background(), plugin)
		if err != nil {
			t.Fatalf("VERSION %s: %v", plugin, err)
		}
		if got := info.SupportedVersions(); !slices.Equal(got, allVersions) {
			t.Errorf("%s supports %v, want %v", plugin, got, allVersions)
		}
	}
}

func wantContainerAddr(t *testing.T, addr netip.Prefix) {
	t.Helper()
	a := addr.Addr()
	if addr.Bits() != 24 || !testHostFile.Subnet.Contains(a) {
		t.Errorf("address %s is not in %s with its prefix length", addr, testHostFile.Subnet)
	}
	switch a.String() {
	case "10.244.7.0", "10.244.7.1", "10.244.7.255":
		t.Errorf("container got reserved address %s", a)
	}
}

func hasAddr(l ipLink, p netip.Prefix) bool {
	return slices.ContainsFunc(l.AddrInfo, func(ai ipAddrInfo) bool {
		return ai.Family == "inet" && ai.Local == p.Addr().String() && ai.PrefixLen == p.Bits()
	})
}

func ping(t *testing.T, from *testNS, to netip.Addr) {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", from.name, "ping", "-c1", "-W2", to.String()).CombinedOutput()
	if err != nil {
		t.Errorf("ping %s from %s: %v\n%s", to, from.name, err, out)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("stdout closed") }

// addLostResult runs ADD for c1 in-process with a stdout that fails, as
// when the runtime gave up and closed the pipe, and returns its error and
// what it logged.
func (h *testHost) addLostResult(c *testNS) (stderr string, err error) {
	h.t.Helper()
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"overlay-test","type":"overlay","network":"default","runDir":%q,`+
		`"ipam":{"type":"overlay-ipam","dataDir":%q}}`, h.runDir, h.dataDir)
	// The plugin runs in-process (to give it a broken stdout) and execs
	// overlay-ipam, which reads the CNI_* variables like any delegate.
	args := &skel.CmdArgs{ContainerID: "c1", Netns: c.path(), IfName: "eth0", Path: binDir, StdinData: []byte(conf)}
	for k, v := range map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": c.path(), "CNI_IFNAME": "eth0", "CNI_PATH": binDir} {
		h.t.Setenv(k, v)
	}
	var log strings.Builder
	err = h.inHost(func(context.Context) error {
		return plugin{stdout: failingWriter{}, stderr: &log}.add(args)
	})
	return log.String(), err
}

// A retried ADD whose result is lost too must leave the attachment the
// first ADD made alone: interface, address and reservation.
func TestRetriedAddKeepsAttachmentWhenResultIsLost(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	res, addr := h.mustAdd(h.confList("1.0.0", ""), rt("c1", c))
	if _, err := h.addLostResult(c); err == nil {
		t.Fatal("ADD with a broken stdout succeeded")
	}
	h.wantAttached("c1", c, addr, res.Interfaces[0].Name)
}

// An ADD that wired the container but could not deliver its result must
// undo both: the runtime never learns of the interface or the address.
func TestAddUndoesWiringWhenResultIsLost(t *testing.T) {
	h := newTestHost(t)
	c := newNS(t)
	stderr, err := h.addLostResult(c)
	if err == nil {
		t.Fatal("ADD with a broken stdout succeeded")
	}
	if stderr != "" {
		t.Errorf("rollback reported: %s", stderr)
	}
	h.wantReleased("c1")
	if got := linkNames(links(t, c.name)); slices.Contains(got, "eth0") {
		t.Errorf("container links after the failed ADD = %v, want no eth0", got)
	}
	if ports := linkNames(links(t, h.name(), "master", "overlay0")); len(ports) != 0 {
		t.Errorf("ports of overlay0 after the failed ADD = %v, want none", ports)
	}
}
