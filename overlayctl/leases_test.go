package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/overlaynet/overlay/pkg/etcdtest"
	"github.com/overlaynet/overlay/pkg/hostfile"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// runSplit executes overlayctl's command tree in-process and returns its
// stdout and stderr apart.
func runSplit(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root, done := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(args)
	err = root.ExecuteContext(t.Context())
	done()
	return out.String(), errOut.String(), err
}

// ctlNet is a network in a fresh etcd: its config written by overlayctl,
// leases taken through pkg/subnet as overlayd takes them.
type ctlNet struct {
	t     *testing.T
	srv   *etcdtest.Server
	c     *subnet.Client
	flags []string
	cfg   netconf.Config
}

func newCtlNet(t *testing.T) *ctlNet {
	t.Helper()
	srv := etcdtest.New(t)
	n := &ctlNet{t: t, srv: srv, flags: []string{"--etcd-endpoints", srv.ClientURL(), "--etcd-timeout", "20s"},
		cfg: netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, VNI: 1, Port: 8472,
			EdgeCIDR: netip.MustParsePrefix("10.244.255.0/24"), IPMasq: true}}
	if out, _, err := n.run("network", "set", "default", "--cidr", "10.244.0.0/16", "--edge-cidr", "10.244.255.0/24"); err != nil {
		t.Fatalf("network set: %v\n%s", err, out)
	}
	c, err := subnet.Connect(t.Context(), subnet.ClientConfig{Endpoints: srv.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n.c = c
	return n
}

func (n *ctlNet) run(args ...string) (string, string, error) {
	n.t.Helper()
	return runSplit(n.t, append(append([]string{}, n.flags...), args...)...)
}

// record is host i's lease record (edge when advertise is given or edge).
func record(i int, kind subnet.Kind, advertise ...string) subnet.Record {
	r := subnet.Record{Kind: kind, HostID: fmt.Sprintf("host-%d", i), Hostname: fmt.Sprintf("h%d", i),
		PublicIP: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}), VTEPMAC: fmt.Sprintf("02:00:00:00:00:%02x", i), UnderlayMTU: 1500}
	for _, a := range advertise {
		r.Advertise = append(r.Advertise, netip.MustParsePrefix(a))
	}
	return r
}

// acquire leases for rec as overlayd does (with a quarantine reservation),
// renewed until the test ends or the caller stops it.
func (n *ctlNet) acquire(rec subnet.Record, ttl time.Duration) *subnet.HeldLease {
	n.t.Helper()
	h, err := n.c.Acquire(n.t.Context(), subnet.AcquireRequest{Network: "default", Config: n.cfg, Record: rec, TTL: ttl, Quarantine: time.Minute})
	if err != nil {
		n.t.Fatalf("acquire for %s: %v", rec.HostID, err)
	}
	n.t.Cleanup(h.Stop)
	return h
}

// putRaw writes rec as the key of s bound to no etcd lease, the way a
// release before the since field (or a tool) wrote it.
func (n *ctlNet) putRaw(s netip.Prefix, rec subnet.Record) {
	n.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: n.srv.Endpoints(), DialTimeout: 5 * time.Second})
	if err != nil {
		n.t.Fatal(err)
	}
	defer cli.Close()
	value, err := subnet.EncodeRecord(rec)
	if err != nil {
		n.t.Fatal(err)
	}
	if _, err := cli.Put(n.t.Context(), n.c.Keys().Subnet("default", s), value); err != nil {
		n.t.Fatal(err)
	}
}

func (n *ctlNet) leasesJSON() []leaseView {
	n.t.Helper()
	out, errOut, err := n.run("leases", "-o", "json")
	if err != nil || errOut != "" {
		n.t.Fatalf("leases -o json: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
	}
	var views []leaseView
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		n.t.Fatalf("leases -o json is no JSON: %v\n%s", err, out)
	}
	return views
}

func TestLeasesTableAndJSON(t *testing.T) {
	t.Parallel()
	n := newCtlNet(t)
	before := time.Now().Truncate(time.Second)
	host := n.acquire(record(1, subnet.KindHost), 30*time.Second)
	gw := n.acquire(record(2, subnet.KindEdge, "192.168.10.0/24"), 30*time.Second)
	legacy := netip.MustParsePrefix("10.244.77.0/24")
	if host.Subnet == legacy { // the host's random pick: don't overwrite it
		legacy = netip.MustParsePrefix("10.244.78.0/24")
	}
	n.putRaw(legacy, record(3, subnet.KindHost))

	views := n.leasesJSON()
	if len(views) != 3 {
		t.Fatalf("leases: %+v, want 3", views)
	}
	byHost := map[string]leaseView{}
	for _, v := range views {
		byHost[v.Hostname] = v
	}
	// Container hosts in address order, then edge hosts.
	if views[2].Kind != "edge" || views[0].Kind != "host" {
		t.Fatalf("order: %+v, want host leases before the edge lease", views)
	}
	for i, l := range map[int]*subnet.HeldLease{1: host, 2: gw} {
		rec := record(i, "")
		name := rec.Hostname
		v := byHost[name]
		if v.Subnet != l.Subnet.String() || v.HostID != rec.HostID || v.PublicIP != rec.PublicIP.String() || v.VTEPMAC != rec.VTEPMAC ||
			v.VTEP != "overlay.1 "+l.Subnet.Addr().String() || v.UnderlayMTU != 1500 || v.EtcdLease != fmt.Sprintf("%x", l.EtcdLease()) {
			t.Errorf("%s: %+v, want the fields of its record (subnet %s)", name, v, l.Subnet)
		}
		if v.Since == nil || v.Since.Before(before) || v.Since.After(time.Now()) {
			t.Errorf("%s: since %v, want the time of its acquire (after %v)", name, v.Since, before)
		}
		if v.AgeSeconds == nil || *v.AgeSeconds < 0 || *v.AgeSeconds > int64(time.Since(before)/time.Second)+1 {
			t.Errorf("%s: age %v s, want the seconds since its acquire", name, v.AgeSeconds)
		}
		if v.TTLLeftSeconds == nil || *v.TTLLeftSeconds < 20 || *v.TTLLeftSeconds > 30 || v.Expired {
			t.Errorf("%s: TTL left %v s (expired %v), want 20-30 of a renewed 30s lease", name, v.TTLLeftSeconds, v.Expired)
		}
	}
	if v := byHost["h2"]; v.Kind != "edge" || len(v.Advertise) != 1 || v.Advertise[0] != "192.168.10.0/24" {
		t.Errorf("gateway: %+v, want an edge lease advertising 192.168.10.0/24", v)
	}
	if v := byHost["h3"]; v.Subnet != legacy.String() || v.Since != nil || v.AgeSeconds != nil || v.TTLLeftSeconds != nil || v.EtcdLease != "0" {
		t.Errorf("record without since, bound to no etcd lease: %+v, want since, age and TTL unknown", v)
	}
	// null, not left out: a script can tell "unknown" from a missing field.
	out, _, _ := n.run("leases", "-o", "json")
	for _, field := range []string{`"since": null`, `"ageSeconds": null`, `"ttlLeftSeconds": null`, `"expired": false`} {
		if !strings.Contains(out, field) {
			t.Errorf("leases -o json lacks %s:\n%s", field, out)
		}
	}

	out, errOut, err := n.run("leases")
	if err != nil || errOut != "" {
		t.Fatalf("leases: %v\n%s%s", err, out, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "KIND SUBNET HOST PUBLIC IP VTEP MAC AGE TTL LEFT ADVERTISES" {
		t.Fatalf("leases table:\n%s", out)
	}
	for _, want := range [][]string{
		{"host", host.Subnet.String(), "h1", "198.18.0.11", "02:00:00:00:00:01"},
		{"host", legacy.String(), "h3", "198.18.0.13", "02:00:00:00:00:03", "-", "-", "-"},
		{"edge", gw.Subnet.String(), "h2", "198.18.0.12", "02:00:00:00:00:02"},
	} {
		if !slicesHasRow(lines[1:], want) {
			t.Errorf("leases table has no row starting %v:\n%s", want, out)
		}
	}
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if f[2] == "h3" {
			continue
		}
		age, errAge := strconv.Atoi(strings.TrimSuffix(f[5], "s"))
		ttl, errTTL := strconv.Atoi(strings.TrimSuffix(f[6], "s"))
		if errAge != nil || errTTL != nil || age < 0 || age > 60 || ttl < 20 || ttl > 30 {
			t.Errorf("row %q: age %q, TTL left %q, want seconds since the acquire and 20s-30s", l, f[5], f[6])
		}
	}
	if f := strings.Fields(lines[3]); f[len(f)-1] != "192.168.10.0/24" {
		t.Errorf("gateway row %q does not end with its advertised LAN", lines[3])
	}
}

// slicesHasRow reports whether a table line starts with the cells want.
func slicesHasRow(lines []string, want []string) bool {
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) >= len(want) && strings.Join(f[:len(want)], " ") == strings.Join(want, " ") {
			return true
		}
	}
	return false
}

// A lease whose etcd lease ran out between the list and the TTL query is
// shown as expired, not as an error.
func TestLeasesExpiredBetweenListAndQuery(t *testing.T) {
	t.Parallel()
	n := newCtlNet(t)
	live := n.acquire(record(1, subnet.KindHost), 30*time.Second)
	gone := n.acquire(record(2, subnet.KindHost), 30*time.Second)
	leases, _, err := n.c.Leases(t.Context(), "default")
	if err != nil || len(leases) != 2 {
		t.Fatalf("leases: %v %v", leases, err)
	}
	if err := gone.Release(t.Context()); err != nil {
		t.Fatal(err)
	}
	ttls, err := n.c.LeaseTTLs(t.Context(), []int64{leases[0].EtcdLease, leases[1].EtcdLease})
	if err != nil {
		t.Fatalf("TTLs of a listed lease that expired since: %v", err)
	}
	views := viewLeases(leases, 1, ttls, time.Now())
	for _, v := range views {
		expired := v.Subnet == gone.Subnet.String()
		if v.Expired != expired || v.TTLLeftSeconds == nil || (expired && *v.TTLLeftSeconds != 0) {
			t.Errorf("%s: expired %v, TTL left %v; want expired %v", v.Subnet, v.Expired, v.TTLLeftSeconds, expired)
		}
	}
	var buf bytes.Buffer
	if err := leasesTable(&buf, "default", views); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n")[1:] {
		f := strings.Fields(l)
		switch {
		case f[1] == gone.Subnet.String() && f[6] != "expired":
			t.Errorf("%s is not shown as expired: %q", gone.Subnet, l)
		case f[1] == live.Subnet.String() && !strings.HasSuffix(f[6], "s"):
			t.Errorf("%s does not show its TTL left: %q", live.Subnet, l)
		}
	}
}

func TestLeaseRelease(t *testing.T) {
	t.Parallel()
	n := newCtlNet(t)
	// Stopped hosts (as after a crash): their keys stay until the TTL runs
	// out. Their etcd leases still have most of a long TTL, so each
	// release also warns; TestLeaseReleaseWarnsOnlyWhenAlive checks both
	// sides of that.
	h1 := n.acquire(record(1, subnet.KindHost), 30*time.Second)
	h2 := n.acquire(record(2, subnet.KindHost), 30*time.Second)
	h3 := n.acquire(record(3, subnet.KindHost), 30*time.Second)
	e4 := n.acquire(record(4, subnet.KindEdge), 30*time.Second)
	e5 := n.acquire(record(5, subnet.KindEdge), 30*time.Second)
	for _, h := range []*subnet.HeldLease{h1, h2, h3, e4, e5} {
		h.Stop()
	}
	for _, tc := range []struct {
		what, arg string
		lease     *subnet.HeldLease
		host      string
	}{
		{"hostname", "h1", h1, "host-1"},
		{"host ID", "host-2", h2, "host-2"},
		{"subnet", h3.Subnet.String(), h3, "host-3"},
		{"edge address", e4.Subnet.Addr().String(), e4, "host-4"},
		{"edge address/32", e5.Subnet.String(), e5, "host-5"},
	} {
		out, _, err := n.run("lease", "release", tc.arg, "-o", "json")
		if err != nil {
			t.Fatalf("lease release %s (%s): %v\n%s", tc.arg, tc.what, err, out)
		}
		var v releaseView
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatalf("lease release -o json is no JSON: %v\n%s", err, out)
		}
		if v.Subnet != tc.lease.Subnet.String() || v.HostID != tc.host || !v.Lease || v.Network != "default" {
			t.Errorf("lease release %s (%s): %+v, want %s of %s", tc.arg, tc.what, v, tc.lease.Subnet, tc.host)
		}
		for _, l := range n.leasesJSON() {
			if l.Subnet == tc.lease.Subnet.String() {
				t.Errorf("lease release %s (%s): %s is still listed", tc.arg, tc.what, l.Subnet)
			}
		}
		// The reservation went with it: nothing is left to release.
		if _, _, err := n.run("lease", "release", tc.lease.Subnet.String()); err == nil || !strings.Contains(err.Error(), "no lease or quarantine reservation") {
			t.Errorf("second release of %s: %v, want nothing left", tc.lease.Subnet, err)
		}
	}
	if left := n.leasesJSON(); len(left) != 0 {
		t.Errorf("leases left after releasing all: %+v", left)
	}
}

// A subnet whose host left recently holds only its quarantine reservation:
// releasing it frees the subnet.
func TestLeaseReleaseReservation(t *testing.T) {
	t.Parallel()
	n := newCtlNet(t)
	h := n.acquire(record(1, subnet.KindHost), 30*time.Second)
	if err := h.Withdraw(t.Context()); err != nil { // key gone, reservation kept
		t.Fatal(err)
	}
	out, errOut, err := n.run("lease", "release", h.Subnet.String())
	if err != nil || errOut != "" || !strings.Contains(out, "released the quarantine reservation of "+h.Subnet.String()) {
		t.Fatalf("release of a reserved subnet: %v\nstdout: %s\nstderr: %s", err, out, errOut)
	}
	// Free: another host may lease exactly that subnet now.
	other, err := n.c.Acquire(t.Context(), subnet.AcquireRequest{Network: "default", Config: n.cfg, Record: record(2, subnet.KindHost),
		Previous: h.Subnet, TTL: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Stop()
	if other.Subnet != h.Subnet {
		t.Fatalf("another host got %s, want the released %s", other.Subnet, h.Subnet)
	}
}

func TestLeaseReleaseRefuses(t *testing.T) {
	t.Parallel()
	n := newCtlNet(t)
	twin1 := record(1, subnet.KindHost)
	twin2 := record(2, subnet.KindHost)
	twin1.Hostname, twin2.Hostname = "twin", "twin"
	a := n.acquire(twin1, 30*time.Second)
	b := n.acquire(twin2, 30*time.Second)

	for _, tc := range []struct {
		arg  string
		want []string
	}{
		{"twin", []string{`"twin" matches 2 leases`, a.Subnet.String(), b.Subnet.String(), "host-1", "host-2", "release one by its subnet"}},
		{"nosuch", []string{`no lease of a host named "nosuch"`, "its leases are", a.Subnet.String() + " twin (host ID host-1)", b.Subnet.String()}},
		{"10.244.99.0/24", []string{"no lease or quarantine reservation for 10.244.99.0/24", a.Subnet.String()}},
		{"10.244.99.5/24", []string{"did you mean 10.244.99.0/24"}},
		{a.Subnet.Addr().Next().Next().String(), []string{"is an address in twin's subnet " + a.Subnet.String(), "overlayctl lease release " + a.Subnet.String()}},
	} {
		out, _, err := n.run("lease", "release", tc.arg)
		if err == nil {
			t.Errorf("lease release %s: no error\n%s", tc.arg, out)
			continue
		}
		if out != "" {
			t.Errorf("lease release %s failed but wrote to stdout: %q", tc.arg, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("lease release %s: %q lacks %q", tc.arg, err, w)
			}
		}
	}
	if got := n.leasesJSON(); len(got) != 2 {
		t.Fatalf("refused releases removed leases: %+v", got)
	}
	// Another network: the error names the networks there are.
	_, _, err := n.run("--network", "blue", "lease", "release", "10.244.1.0/24")
	if err == nil || !strings.Contains(err.Error(), "it has no leases at all (is --network blue right?)") || !strings.Contains(err.Error(), "networks in etcd: default") {
		t.Fatalf("release in a network without leases: %v", err)
	}
}

// The warning on stderr says a running overlayd puts the lease back; a
// lease whose host stopped renewing it half a TTL ago gets none.
func TestLeaseReleaseWarnsOnlyWhenAlive(t *testing.T) {
	t.Parallel()
	n := newCtlNet(t)
	alive := n.acquire(record(1, subnet.KindHost), 30*time.Second)
	dead := n.acquire(record(2, subnet.KindHost), 4*time.Second)
	dead.Stop()

	out, errOut, err := n.run("lease", "release", "h1")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"warning: the lease of h1 (" + alive.Subnet.String() + ") looks alive", "stop overlayd on h1 (public IP 198.18.0.11) first"} {
		if !strings.Contains(errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, errOut)
		}
	}
	if !strings.Contains(out, "released "+alive.Subnet.String()+" (host h1, host ID host-1) in network default") || !strings.Contains(out, "looks alive") {
		t.Errorf("stdout: %q", out)
	}

	waitUntil(t, 10*time.Second, "h2's lease to be past half its TTL", func() bool {
		ttls, err := n.c.LeaseTTLs(t.Context(), []int64{dead.EtcdLease()})
		l := ttls[dead.EtcdLease()]
		return err == nil && !l.Expired() && l.Left <= l.Granted/2
	})
	out, errOut, err = n.run("lease", "release", "h2", "-o", "json")
	if err != nil || errOut != "" {
		t.Fatalf("release of a dead host's lease: %v\nstderr: %s", err, errOut)
	}
	var v releaseView
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Alive || v.Subnet != dead.Subnet.String() {
		t.Fatalf("release -o json: %+v %v\n%s", v, err, out)
	}
}

func waitUntil(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Every command's -o json is one JSON document; a bad -o is refused
// before the command runs.
func TestOutputJSONAndRefusedFormat(t *testing.T) {
	t.Parallel()
	n := newCtlNet(t)
	h := n.acquire(record(1, subnet.KindHost), 30*time.Second)

	get, _, err := n.run("network", "get", "default", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(get), &got); err != nil || got["network"] != "10.244.0.0/16" || got["edgeCIDR"] != "10.244.255.0/24" {
		t.Fatalf("network get -o json: %v %v\n%s", got, err, get)
	}
	cfg, err := netconf.Parse([]byte(get))
	if err != nil || cfg != n.cfg {
		t.Fatalf("network get -o json does not parse as the config: %+v %v", cfg, err)
	}
	table, _, err := n.run("network", "get", "default")
	if err != nil || !strings.Contains(table, "EDGE CIDR") || !strings.Contains(table, "10.244.255.0/24") || !strings.Contains(table, "overlay.1") {
		t.Fatalf("network get: %v\n%s", err, table)
	}

	set, _, err := n.run("network", "set", "default", "--cidr", "10.244.0.0/16", "--edge-cidr", "10.244.255.0/24", "--mtu", "1400", "-o", "json")
	if err != nil {
		t.Fatalf("network set -o json: %v\n%s", err, set)
	}
	after, _, _ := n.run("network", "get", "default", "-o", "json")
	if set != after || !strings.Contains(set, `"mtu": 1400`) {
		t.Fatalf("network set -o json reports\n%s\nbut network get -o json reads\n%s", set, after)
	}
	set, _, err = n.run("network", "set", "default", "--cidr", "10.244.0.0/16", "--edge-cidr", "10.244.255.0/24", "--mtu", "1450")
	if err != nil || !strings.HasPrefix(set, "wrote network default\n") || !strings.Contains(set, "1450") {
		t.Fatalf("network set: %v\n%s", err, set)
	}

	// A bad format is refused before anything runs: the config stays.
	out, _, err := n.run("-o", "yaml", "network", "set", "default", "--cidr", "10.244.0.0/16", "--mtu", "1300")
	if err == nil || !strings.Contains(err.Error(), `invalid argument "yaml" for "-o, --output" flag: use table or json`) || out != "" {
		t.Fatalf("-o yaml: %v\n%s", err, out)
	}
	if now, _, _ := n.run("network", "get", "default", "-o", "json"); !strings.Contains(now, `"mtu": 1450`) {
		t.Fatalf("network set ran with -o yaml:\n%s", now)
	}
	if _, _, err := n.run("leases", "--output", "yaml"); err == nil {
		t.Fatal("leases --output yaml: no error")
	}

	// A failing command writes nothing to stdout in JSON mode either.
	out, _, err = runSplit(t, "--etcd-endpoints", "http://127.0.0.1:1", "--etcd-timeout", "500ms", "leases", "-o", "json")
	if err == nil || out != "" {
		t.Fatalf("leases against no etcd: %v, stdout %q", err, out)
	}

	out, _, err = n.run("lease", "release", h.Subnet.String(), "-o", "json")
	var rel map[string]any
	if err != nil || json.Unmarshal([]byte(out), &rel) != nil || rel["subnet"] != h.Subnet.String() {
		t.Fatalf("lease release -o json: %v\n%s", err, out)
	}
	out, _, err = n.run("leases", "-o", "json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("leases -o json of an empty network: %v %q, want []", err, out)
	}
}

// teardown -o json lists what it removed; it runs in a namespace of its own
// (it removes devices, routes and rules of the namespace it runs in).
func TestTeardownJSON(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create a network namespace: run make test as root")
	}
	netns, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netns.Close(); testutils.UnmountNS(netns) })
	runDir := t.TempDir()
	const network = "ctltest"
	stamp := hostfile.ReadyPath(runDir, network)
	if err := os.WriteFile(stamp, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var out string
	err = netns.Do(func(ns.NetNS) error {
		var err error
		out, _, err = runSplit(t, "--network", network, "--run-dir", runDir, "teardown", "-o", "json")
		return err
	})
	if err != nil {
		t.Fatalf("teardown -o json: %v\n%s", err, out)
	}
	var v teardownView
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("teardown -o json is no JSON: %v\n%s", err, out)
	}
	if v.Network != network || !strings.Contains(strings.Join(v.Removed, "\n"), stamp) {
		t.Fatalf("teardown -o json: %+v, want network %s and the ready stamp %s removed", v, network, stamp)
	}
	if _, err := os.Stat(stamp); !os.IsNotExist(err) {
		t.Fatalf("ready stamp %s still there: %v", stamp, err)
	}
}
