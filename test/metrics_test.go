package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/subnet"
)

// scrape reads overlayd's /metrics on h as name{labels} -> value.
func (h *Host) scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	out, err := nsCmd(h.NS, "curl", "-sf", "http://"+addr+"/metrics").Output()
	if err != nil {
		t.Fatalf("scrape h%d: %v", h.N, err)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(line, "#") {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				m[f[0]] = v
			}
		}
	}
	return m
}

// httpCode is the status of GET path on overlayd's metrics address.
func (h *Host) httpCode(addr, path string) string {
	out, _ := nsCmd(h.NS, "curl", "-s", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", "http://"+addr+path).Output()
	return string(out)
}

// kernelCounts counts what h's kernel holds on overlay.1: routes (not the
// kernel's own), permanent neighbours, FDB entries with a remote.
func (h *Host) kernelCounts(t *testing.T) (routes, neighs, fdb int) {
	t.Helper()
	var rs, ns, fs []map[string]any
	for _, q := range []struct {
		out *[]map[string]any
		cmd []string
	}{
		{&rs, []string{"ip", "-j", "route", "show", "dev", "overlay.1", "proto", "86"}},
		{&ns, []string{"ip", "-j", "neigh", "show", "dev", "overlay.1", "nud", "permanent"}},
		{&fs, []string{"bridge", "-j", "fdb", "show", "dev", "overlay.1"}},
	} {
		if err := json.Unmarshal([]byte(inNS(t, h.NS, q.cmd...)), q.out); err != nil {
			t.Fatalf("%v: %v", q.cmd, err)
		}
	}
	for _, f := range fs {
		if _, ok := f["dst"]; ok {
			fdb++
		}
	}
	return len(rs), len(ns), fdb
}

// TestMetricsMatchKernelAndEtcd scrapes overlayd and checks the series
// against the kernel and etcd: peers, entries, the lease, drift repaired
// after an entry is deleted by hand, and readiness going false while the
// lease is lost and true again.
func TestMetricsMatchKernelAndEtcd(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	c.SetNetwork()
	h1 := c.Hosts[0]
	const addr = "127.0.0.1:9472"
	h1.Start("--metrics-addr", addr, "--lease-ttl", "3s", "--probe-interval", "300ms")
	c.Hosts[1].Start()
	c.Hosts[2].Start()
	for _, h := range c.Hosts {
		h.WaitReady()
	}
	own := h1.HostFile().Subnet
	net := `{network="default"}`
	var m map[string]float64
	waitFor(t, 10*time.Second, "two peers programmed", func() bool {
		m = h1.scrape(t, addr)
		return m["overlay_peers_programmed"+net] == 2
	})
	routes, neighs, fdb := h1.kernelCounts(t)
	for series, want := range map[string]float64{
		"overlay_peers_wanted" + net:                                      2,
		`overlay_datapath_entries{kind="route",network="default"}`:        float64(routes),
		`overlay_datapath_entries{kind="neigh",network="default"}`:        float64(neighs),
		`overlay_datapath_entries{kind="fdb",network="default"}`:          float64(fdb),
		`overlay_datapath_entries{kind="direct_route",network="default"}`: 0,
		"overlay_lease_held" + net:                                        1,
		"overlay_ready" + net:                                             1,
	} {
		if m[series] != want {
			t.Errorf("%s = %v, want %v", series, m[series], want)
		}
	}
	if routes != 2 || neighs != 2 || fdb != 2 {
		t.Errorf("kernel holds %d routes, %d neighbours, %d fdb entries; want 2 each", routes, neighs, fdb)
	}
	info := fmt.Sprintf(`overlay_lease_info{kind="host",network="default",public_ip=%q,subnet=%q,vtep_ip=%q,vtep_mac=%q}`,
		h1.IP, own.String(), own.Addr().String(), h1.vtepMAC(t))
	if m[info] != 1 {
		t.Errorf("%s missing; lease series: %v", info, filter(m, "overlay_lease_info"))
	}
	if left := m["overlay_lease_expiry_seconds"+net]; left <= 0 || left > 3 {
		t.Errorf("lease expiry %vs, want within the 3s TTL", left)
	}
	etcdLeases := c.leases()
	if len(etcdLeases) != 3 {
		t.Errorf("etcd holds %d leases, want 3", len(etcdLeases))
	}

	// Drift: an FDB entry deleted by hand is put back and counted.
	before := m[`overlay_drift_repaired_total{kind="fdb_added",network="default"}`]
	if before != 0 || m[`overlay_peer_entries_programmed_total{kind="fdb_added",network="default"}`] != 2 {
		t.Errorf("peers joining counted as drift (%v fdb entries), or not as programmed (%v)", before,
			m[`overlay_peer_entries_programmed_total{kind="fdb_added",network="default"}`])
	}
	peerMAC := c.Hosts[1].vtepMAC(t)
	inNS(t, h1.NS, "bridge", "fdb", "del", peerMAC, "dev", "overlay.1", "dst", c.Hosts[1].IP)
	waitFor(t, 5*time.Second, "the fdb repair counted", func() bool {
		m = h1.scrape(t, addr)
		return m[`overlay_drift_repaired_total{kind="fdb_added",network="default"}`] == before+1
	})
	if _, _, fdb := h1.kernelCounts(t); fdb != 2 || m[`overlay_datapath_entries{kind="fdb",network="default"}`] != 2 {
		t.Errorf("after the repair: kernel %d fdb entries, metric %v", fdb, m[`overlay_datapath_entries{kind="fdb",network="default"}`])
	}
	if m["overlay_last_repair_timestamp_seconds"+net] < float64(time.Now().Add(-10*time.Second).Unix()) {
		t.Errorf("last repair at %v, not just now", m["overlay_last_repair_timestamp_seconds"+net])
	}

	// Readiness follows the lease: false once it is lost with etcd gone,
	// true again when etcd is back; liveness stays true.
	if got := h1.httpCode(addr, "/readyz"); got != "200" {
		t.Fatalf("/readyz = %s while healthy", got)
	}
	c.Etcd.Kill()
	waitFor(t, 15*time.Second, "/readyz 503 after the lease expired", func() bool { return h1.httpCode(addr, "/readyz") == "503" })
	if m := h1.scrape(t, addr); m["overlay_lease_held"+net] != 0 || m["overlay_lease_losses_total"+net] != 1 {
		t.Errorf("lease held %v, losses %v while etcd is down", m["overlay_lease_held"+net], m["overlay_lease_losses_total"+net])
	}
	if got := h1.httpCode(addr, "/healthz"); got != "200" {
		t.Errorf("/healthz = %s while etcd is down: the daemon itself is alive", got)
	}
	c.startEtcd()
	waitFor(t, 30*time.Second, "/readyz 200 with the lease back", func() bool { return h1.httpCode(addr, "/readyz") == "200" })
	peer := c.Hosts[1].HostFile().Subnet.String()
	rtt := fmt.Sprintf(`overlay_peer_probe_rtt_seconds{network="default",path="overlay",peer=%q}`, peer)
	loss := fmt.Sprintf(`overlay_peer_probe_loss_ratio{network="default",path="underlay",peer=%q}`, peer)
	waitFor(t, 5*time.Second, "both peers probed ok", func() bool {
		m = h1.scrape(t, addr)
		return m[`overlay_peers_by_probe_state{network="default",state="ok"}`] == 2
	})
	requireServed(t, m, "../conf/grafana-dashboard.json", "../conf/prometheus-rules.yml")
	if m[rtt] <= 0 || m[rtt] > 1 || m[loss] != 0 {
		t.Errorf("probe series: %s = %v, %s = %v, peers ok %v", rtt, m[rtt], loss, m[loss], m[`overlay_peers_by_probe_state{network="default",state="ok"}`])
	}

	// Failures are counted from 0 (pkg/subnet's tests provoke them); the
	// series exist before the first, so rate() works from the start.
	m = h1.scrape(t, addr)
	for _, series := range []string{`overlay_etcd_request_errors_total{op="txn"}`, `overlay_etcd_watch_relists_total{network="default"}`,
		"overlay_udp_checksum_errors_total"} {
		if _, ok := m[series]; !ok {
			t.Errorf("%s is not served: %v", series, filter(m, "overlay_etcd"))
		}
	}
}

// requireServed checks that every overlay_* series the shipped dashboard
// and alerts query is one overlayd serves (scraped: m), so they never
// show "no data" for a name that does not exist.
func requireServed(t *testing.T, m map[string]float64, files ...string) {
	t.Helper()
	served := map[string]bool{}
	for series := range m {
		name, _, _ := strings.Cut(series, "{")
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			name = strings.TrimSuffix(name, suffix)
		}
		served[name] = true
	}
	// Series that exist only once something happened, or only with a
	// filter in place (ingress drops are served: the filter is on).
	for _, name := range []string{"overlay_lease_records_rejected_total"} {
		served[name] = true
	}
	names := regexp.MustCompile(`overlay_[a-z_]+`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range names.FindAllString(string(data), -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				name = strings.TrimSuffix(name, suffix)
			}
			if !served[name] {
				t.Errorf("%s queries %s, which overlayd does not serve (served: %v)", f, name, filter(m, "overlay_peer"))
			}
		}
	}
}

func filter(m map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// TestStatusIgnoresOwnStaleLease: a second lease under this host's own ID
// (left when it took another subnet) is not a peer, in overlayd and in
// overlayctl status alike.
func TestStatusIgnoresOwnStaleLease(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2)
	c.SetNetwork()
	c.startAll()
	h1 := c.Hosts[0]
	out, err := c.Ctl("leases", "--network", networkName, "-o", "json")
	if err != nil {
		t.Fatalf("overlayctl leases: %v\n%s", err, out)
	}
	var views []struct {
		HostID   string `json:"hostID"`
		Hostname string `json:"hostname"`
		PublicIP string `json:"publicIP"`
		VTEPMAC  string `json:"vtepMAC"`
	}
	if err := json.Unmarshal([]byte(out), &views); err != nil {
		t.Fatal(err)
	}
	var rec subnet.Record
	for _, v := range views {
		if v.PublicIP == h1.IP {
			rec = subnet.Record{Version: 1, Kind: subnet.KindHost, HostID: v.HostID, Hostname: v.Hostname,
				PublicIP: netip.MustParseAddr(v.PublicIP), VTEPMAC: v.VTEPMAC}
		}
	}
	stale := netip.MustParsePrefix("10.244.250.0/24")
	value, _ := json.Marshal(rec)
	c.EtcdPut(subnet.Keys{Prefix: subnet.DefaultPrefix}.Subnet(networkName, stale), string(value))
	waitFor(t, 5*time.Second, "the stale lease listed", func() bool {
		out, _ := c.Ctl("leases", "--network", networkName)
		return strings.Contains(out, stale.String())
	})
	s := h1.ctlStatus(t)
	if s.PeersWanted != 1 || s.PeersProgrammed != 1 || len(s.Peers) != 1 || s.Peers[0].Subnet == stale.String() {
		t.Fatalf("status counts this host's own stale lease as a peer: %+v", s)
	}
	if !s.Lease.Found || !s.Overlayd.Running || s.LastPass == nil {
		t.Fatalf("status: %+v", s)
	}
}

// TestHealthWhileWaitingForConfig: overlayd serves its health endpoints
// from the start, so a liveness probe (the Kubernetes DaemonSet's) does not
// kill it while it waits for the network config: /healthz 200, /readyz and
// /metrics 503 until it has started, then /readyz 200 and metrics.
func TestHealthWhileWaitingForConfig(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1)
	h := c.Hosts[0]
	addr := h.IP + ":9472"
	h.Start("--metrics-addr", addr)
	waitFor(t, 10*time.Second, "overlayd to log that it waits for the network config", func() bool {
		return strings.Contains(h.Daemon.Output(), "waiting for the network config")
	})
	for path, want := range map[string]string{"/healthz": "200", "/readyz": "503", "/metrics": "503"} {
		if got := h.httpCode(addr, path); got != want {
			t.Errorf("%s = %s while waiting for the network config, want %s", path, got, want)
		}
	}
	c.SetNetwork()
	h.WaitReady()
	waitFor(t, 10*time.Second, "/readyz 200 once started", func() bool { return h.httpCode(addr, "/readyz") == "200" })
	if got := h.httpCode(addr, "/metrics"); got != "200" {
		t.Errorf("/metrics = %s once started", got)
	}
}
