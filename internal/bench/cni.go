package bench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/libcni"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

// CNIConfig says what the CNI row runs.
type CNIConfig struct {
	// Prefix makes namespace names unique to this run.
	Prefix string
	// Containers is how many containers each round attaches, then detaches.
	Containers int
	// Rounds alternate between the plugins compared, ABAB…
	Rounds int
	// Chains are the plugin chains compared, in the order each round runs them.
	Chains []Chain
	// WorkDir holds run dirs, data dirs and libcni caches.
	WorkDir string
}

// Chain is one conflist measured: a name for the table, the bin dirs its
// plugins are in, and the conflist.
type Chain struct {
	Name    string
	BinDirs []string
	List    *libcni.NetworkConfigList
}

// CNIResult is the CNI row: ADD and DEL latency of each chain as a runtime
// sees it (libcni executing the plugins from the host namespace).
type CNIResult struct {
	Chain string  `json:"chain"`
	Add   Summary `json:"add"`
	Del   Summary `json:"del"`
}

// cniOpTimeout bounds one ADD or DEL so a hung plugin fails the run.
const cniOpTimeout = 30 * time.Second

// RunCNI attaches and detaches cfg.Containers containers with every chain,
// round after round, in the host namespace host, and returns each chain's
// latencies. The containers' namespaces exist before the first round and
// are reused, so only the plugins' work is timed.
func RunCNI(ctx context.Context, cfg CNIConfig, host string) ([]CNIResult, error) {
	names := make([]string, cfg.Containers)
	for i := range names {
		names[i] = fmt.Sprintf("%s-c%d", cfg.Prefix, i)
		if err := addNetns(names[i]); err != nil {
			return nil, err
		}
		defer delNetns(names[i])
	}
	adds := make([][]time.Duration, len(cfg.Chains))
	dels := make([][]time.Duration, len(cfg.Chains))
	for round := range cfg.Rounds {
		for i, ch := range cfg.Chains {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			a, d, err := cniRound(ctx, cfg, host, ch, names, round)
			if err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", ch.Name, round+1, err)
			}
			adds[i] = append(adds[i], a...)
			dels[i] = append(dels[i], d...)
		}
	}
	out := make([]CNIResult, len(cfg.Chains))
	for i, ch := range cfg.Chains {
		out[i] = CNIResult{Chain: ch.Name, Add: Summarize(adds[i]), Del: Summarize(dels[i])}
	}
	return out, nil
}

// cniRound ADDs every container, then DELs every container, timing each.
func cniRound(ctx context.Context, cfg CNIConfig, host string, ch Chain, names []string, round int) (adds, dels []time.Duration, err error) {
	cni := libcni.NewCNIConfigWithCacheDir(ch.BinDirs, filepath.Join(cfg.WorkDir, "cache"), nil)
	rts := make([]*libcni.RuntimeConf, len(names))
	for i, n := range names {
		rts[i] = &libcni.RuntimeConf{ContainerID: fmt.Sprintf("%s-r%d", n, round), NetNS: netnsDir + n, IfName: "eth0"}
	}
	err = inNetns(host, func() error {
		for _, rt := range rts {
			d, err := timed(ctx, func(ctx context.Context) error { _, err := cni.AddNetworkList(ctx, ch.List, rt); return err })
			if err != nil {
				return fmt.Errorf("ADD %s: %w", rt.ContainerID, err)
			}
			adds = append(adds, d)
		}
		for _, rt := range rts {
			d, err := timed(context.WithoutCancel(ctx), func(ctx context.Context) error { return cni.DelNetworkList(ctx, ch.List, rt) })
			if err != nil {
				return fmt.Errorf("DEL %s: %w", rt.ContainerID, err)
			}
			dels = append(dels, d)
		}
		return nil
	})
	return adds, dels, err
}

func timed(parent context.Context, op func(ctx context.Context) error) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(parent, cniOpTimeout)
	defer cancel()
	start := time.Now()
	err := op(ctx)
	return time.Since(start), err
}

// OverlayHost prepares namespace host as overlayd leaves a container host
// for the plugins: the bridge with its gateway, and the host file under
// runDir. It runs overlayd's own code for both, without a lease.
func OverlayHost(host, runDir string, subnet netip.Prefix, mtu int) error {
	gw := subnet.Addr().Next() // as overlayd: .0 is the VTEP, .1 the bridge
	hf := hostfile.HostFile{
		Network: netip.PrefixFrom(subnet.Addr(), 16).Masked(),
		Subnet:  subnet, Gateway: gw, MTU: mtu, Bridge: "ovl0", VNI: 1,
	}
	err := inNetns(host, func() error {
		return datapath.EnsureBridge(datapath.BridgeSpec{Name: hf.Bridge, Gateway: netip.PrefixFrom(gw, subnet.Bits()), MTU: mtu})
	})
	if err != nil {
		return fmt.Errorf("bridge in %s: %w", host, err)
	}
	return hostfile.Write(hostfile.Path(runDir, "default"), hf)
}

// FlannelHost writes the subnet.env flanneld would write for subnet.
func FlannelHost(path string, subnet netip.Prefix, mtu int) error {
	gw := subnet.Addr().Next()
	env := fmt.Sprintf("FLANNEL_NETWORK=%s\nFLANNEL_SUBNET=%s\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=true\n",
		netip.PrefixFrom(subnet.Addr(), 16).Masked(), netip.PrefixFrom(gw, subnet.Bits()), mtu)
	return os.WriteFile(path, []byte(env), 0o644)
}

// ExecFloor times count runs of argv in namespace host: the cost of
// starting a process there, the floor under any exec'd plugin.
func ExecFloor(host string, count int, env []string, argv ...string) (Summary, error) {
	var ds []time.Duration
	err := inNetns(host, func() error {
		for range count {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = env
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%v: %v: %s", argv, err, out)
			}
			ds = append(ds, time.Since(start))
		}
		return nil
	})
	return Summarize(ds), err
}

// CNIVerdicts checks ours against theirs (chains named so in results) on
// the CNI targets: ADD and DEL p50 at most half of theirs, p99 at most
// twice p50, DEL no slower than ADD.
func CNIVerdicts(results []CNIResult, ours, theirs string) []string {
	var o, t *CNIResult
	for i := range results {
		switch results[i].Chain {
		case ours:
			o = &results[i]
		case theirs:
			t = &results[i]
		}
	}
	if o == nil || t == nil {
		return nil
	}
	mark := func(ok bool) string {
		if ok {
			return "met"
		}
		return "NOT met"
	}
	addRatio, delRatio := o.Add.P50/t.Add.P50, o.Del.P50/t.Del.P50
	return []string{
		fmt.Sprintf("%s ADD p50 = %.2f× %s's, DEL p50 = %.2f× (target ≤ 0.5×: %s)", ours, addRatio, theirs, delRatio, mark(addRatio <= 0.5 && delRatio <= 0.5)),
		fmt.Sprintf("%s p99 ÷ p50: ADD %.2f, DEL %.2f (target ≤ 2: %s)", ours, o.Add.P99/o.Add.P50, o.Del.P99/o.Del.P50, mark(o.Add.P99 <= 2*o.Add.P50 && o.Del.P99 <= 2*o.Del.P50)),
		fmt.Sprintf("%s DEL p50 %.1f ms vs ADD p50 %.1f ms (target DEL ≤ ADD: %s)", ours, o.Del.P50, o.Add.P50, mark(o.Del.P50 <= o.Add.P50)),
	}
}
