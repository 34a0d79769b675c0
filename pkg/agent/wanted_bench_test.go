package agent

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/netconf"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// BenchmarkBuildWanted is the agent's work on every lease change before the
// datapath diff: the whole wanted state from the full lease set, as the
// watch hands it over (sorted by subnet, created in random order), on a
// container host with masquerade in 10.0.0.0/8 with /24 subnets.
func BenchmarkBuildWanted(b *testing.B) {
	cfg := netconf.Config{Network: netip.MustParsePrefix("10.0.0.0/8"), SubnetLen: 24, VNI: 1, Port: 8472, IPMasq: true}
	pool := cfg.HostPool()
	l := local{
		Network: "default", Config: cfg, Kind: subnet.KindHost, HostID: "me", Bridge: "overlay0", CanMasq: true,
		Underlay: datapath.Underlay{Name: "eth0", Index: 2, IP: netip.MustParseAddr("198.19.255.254"), MTU: 1500,
			Segments: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/15")}},
		PublicIP: netip.MustParseAddr("198.19.255.254"), VTEPMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		Subnet: pool.At(0), Held: true,
	}
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("leases=%d", n), func(b *testing.B) {
			leases := make([]subnet.Lease, n)
			created := rand.New(rand.NewPCG(1, 2)).Perm(n)
			for i := range leases {
				leases[i] = subnet.Lease{
					Subnet: pool.At(i + 1),
					Record: subnet.Record{
						Version: subnet.RecordVersion, Kind: subnet.KindHost,
						HostID:      fmt.Sprintf("%032x", i),
						Hostname:    fmt.Sprintf("node-%05d", i),
						PublicIP:    netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}),
						VTEPMAC:     net.HardwareAddr{2, 0x42, 0, 0, byte(i >> 8), byte(i)}.String(),
						UnderlayMTU: 1500,
					},
					CreateRevision: int64(created[i] + 1), ModRevision: int64(created[i] + 1),
				}
			}
			b.ReportAllocs()
			for b.Loop() {
				w, rejected := buildWanted(l, leases)
				if len(w.Peers) != n || len(rejected) != 0 {
					b.Fatalf("buildWanted: %d peers, %d rejected; want %d, 0", len(w.Peers), len(rejected), n)
				}
			}
		})
	}
}
