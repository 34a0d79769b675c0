package subnet

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/overlaynet/overlay/pkg/etcdtest"
	"github.com/overlaynet/overlay/pkg/netconf"
)

// failoverBudget is how long reads and writes may fail after the leader of
// a 3-member cluster dies: an election (1 s election timeout) plus the
// client moving off the dead endpoint.
const failoverBudget = 10 * time.Second

// retry runs op until it succeeds or failoverBudget has passed since start,
// each attempt bounded by 2 s, and returns when it succeeded.
func retry(t *testing.T, start time.Time, what string, op func(ctx context.Context) error) time.Duration {
	t.Helper()
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		err := op(ctx)
		cancel()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > failoverBudget {
			t.Fatalf("%s still fails %s after the leader died: %v", what, failoverBudget, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestClusterLeaderKillClientCarriesOn(t *testing.T) {
	cl := etcdtest.NewCluster(t, 3)
	c, err := Connect(t.Context(), ClientConfig{Endpoints: cl.Endpoints(), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetNetworkConfig(t.Context(), "default", testNet); err != nil {
		t.Fatal(err)
	}
	// A host's lease, renewed through the failover, with a TTL short enough
	// that a missed renewal would show.
	const ttl = 3 * time.Second
	h, err := c.Acquire(t.Context(), AcquireRequest{Network: "default", Config: testNet, Record: hostRecord(1), TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Stop)

	leader, err := cl.WaitLeader(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	leader.Kill()

	other := withCIDR(testNet, "10.245.0.0/16")
	other.VNI, other.Port = 2, 8473 // networks share neither
	took := retry(t, killed, "write", func(ctx context.Context) error {
		return c.SetNetworkConfig(ctx, "other", other)
	})
	t.Logf("killed leader %s; first write after %s", leader.Name(), took.Round(time.Millisecond))
	took = retry(t, killed, "read", func(ctx context.Context) error {
		got, err := c.NetworkConfig(ctx, "default")
		if err == nil && got != testNet {
			t.Fatalf("config read back after failover: %+v, want %+v", got, testNet)
		}
		return err
	})
	t.Logf("first read after %s", took.Round(time.Millisecond))
	next, err := cl.WaitLeader(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if next == leader {
		t.Fatal("the killed member still counts as leader")
	}

	// The lease outlives twice its TTL after the failover: its keep-alive
	// moved to a live member.
	time.Sleep(2 * ttl)
	select {
	case <-h.Done():
		t.Fatal("the lease stopped being renewed after the leader died")
	default:
	}
	leases, _, err := c.Leases(t.Context(), "default")
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 1 || leases[0].Subnet != h.Subnet {
		t.Fatalf("leases after failover: %+v, want %s", leases, h.Subnet)
	}
}

func withCIDR(base netconf.Config, cidr string) netconf.Config {
	base.Network = netip.MustParsePrefix(cidr)
	return base
}
