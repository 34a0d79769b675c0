package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
)

// Helpers that read back what the CNI plugins left on a host: the IPAM
// store, the veths, the container interfaces and libcni's cache. The stress
// and spec-version tests compare these against what the runtime believes.

// storeDir is overlay-ipam's store of the test network on h
// (DATADIR/NETWORK, see ipam/store).
func (h *Host) storeDir() string { return filepath.Join(h.DataDir, networkName) }

// storeIPs returns the reservations in h's IPAM store: each IP file's
// address and the container ID it names. Dot files (temp files of atomic
// writes, which a killed plugin may leave until GC sweeps them) are not
// reservations; any other name that is not an address fails the test.
func (h *Host) storeIPs() map[netip.Addr]string {
	t := h.c.t
	t.Helper()
	held := map[netip.Addr]string{}
	for _, name := range h.storeFiles("ips") {
		if strings.HasPrefix(name, ".") {
			continue
		}
		ip, err := netip.ParseAddr(name)
		if err != nil {
			t.Errorf("IPAM store %s/ips holds %q, which is not an address", h.storeDir(), name)
			continue
		}
		var holder struct {
			ContainerID string `json:"containerID"`
		}
		data, err := os.ReadFile(filepath.Join(h.storeDir(), "ips", name))
		if err == nil {
			err = json.Unmarshal(data, &holder)
		}
		if err != nil {
			t.Errorf("IPAM store: IP file %s: %v", name, err)
		}
		held[ip] = holder.ContainerID
	}
	return held
}

// storeFiles returns the names of every file, dot files included, in
// subdirectory sub ("ips" or "attachments") of h's IPAM store.
func (h *Host) storeFiles(sub string) []string {
	t := h.c.t
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(h.storeDir(), sub))
	if err != nil {
		t.Fatalf("IPAM store: %v", err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// cachedAttachments returns libcni's cached attachments in cacheDir, as
// "containerID/ifName".
func cachedAttachments(t *testing.T, cacheDir string) []string {
	t.Helper()
	atts, err := libcni.NewCNIConfigWithCacheDir(nil, cacheDir, nil).GetCachedAttachments("")
	if err != nil {
		t.Fatalf("libcni cache %s: %v", cacheDir, err)
	}
	var out []string
	for _, a := range atts {
		out = append(out, a.ContainerID+"/"+a.IfName)
	}
	return out
}

// ipLink is the part of `ip -j link` / `ip -j addr` the tests read. For a
// veth, Peer is the other end's ifindex (in the namespace of LinkNetnsID
// when that is set).
type ipLink struct {
	Index    int    `json:"ifindex"`
	Name     string `json:"ifname"`
	Peer     int    `json:"link_index"`
	Master   string `json:"master"`
	AddrInfo []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// v4 returns the link's IPv4 addresses (from `ip -j addr`).
func (l ipLink) v4() []netip.Prefix {
	var out []netip.Prefix
	for _, a := range l.AddrInfo {
		if a.Family != "inet" {
			continue
		}
		if ip, err := netip.ParseAddr(a.Local); err == nil {
			out = append(out, netip.PrefixFrom(ip, a.PrefixLen))
		}
	}
	return out
}

// ipLinks runs `ip -n netns -j ARGS...` and decodes the links it lists.
func ipLinks(netns string, args ...string) ([]ipLink, error) {
	out, err := exec.Command("ip", append([]string{"-n", netns, "-j"}, args...)...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip -n %s -j %s: %v: %s", netns, strings.Join(args, " "), err, out)
	}
	var links []ipLink
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("parse ip -j %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return links, nil
}

// hostVeths returns the veths in h's namespace by ifindex, except eth0
// (h's underlay link to the fabric): the host ends of container veths,
// enslaved to the bridge or not.
func (h *Host) hostVeths() map[int]ipLink {
	t := h.c.t
	t.Helper()
	links, err := ipLinks(h.NS, "link", "show", "type", "veth")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]ipLink{}
	for _, l := range links {
		if l.Name != "eth0" {
			out[l.Index] = l
		}
	}
	return out
}

// containerIf returns eth0 of the container namespace netns with its
// addresses; ok is false when netns has no eth0.
func containerIf(netns string) (l ipLink, ok bool, err error) {
	links, err := ipLinks(netns, "addr", "show")
	if err != nil {
		return ipLink{}, false, err
	}
	for _, l := range links {
		if l.Name == "eth0" {
			return l, true, nil
		}
	}
	return ipLink{}, false, nil
}

// parallel runs fn(0..n-1) with at most limit calls at once and returns
// the errors of the calls that failed, in index order.
func parallel(n, limit int, fn func(i int) error) []error {
	errs := make([]error, n)
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs[i] = fn(i)
		})
	}
	wg.Wait()
	var failed []error
	for _, err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	return failed
}

// waitPluginsGone waits until no process runs a plugin binary of bin.
// libcni's context kills only the plugin's own PID, so the IPAM plugin it
// had started runs on: its reservation must land before the test looks at
// the store or runs GC, or GC would race with it.
func waitPluginsGone(t *testing.T, bin string) {
	t.Helper()
	plugins := map[string]bool{filepath.Join(bin, "overlay"): true, filepath.Join(bin, "overlay-ipam"): true}
	waitFor(t, 30*time.Second, "plugin processes of killed ADDs to end", func() bool {
		procs, _ := filepath.Glob("/proc/[0-9]*/exe")
		for _, p := range procs {
			if exe, err := os.Readlink(p); err == nil && plugins[exe] {
				return false
			}
		}
		return true
	})
}

// sortedKeys returns m's keys in order, for stable messages.
func sortedKeys[V any](m map[netip.Addr]V) []netip.Addr {
	keys := make([]netip.Addr, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	return keys
}
