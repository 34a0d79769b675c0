package subnet

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/overlaynet/overlay/pkg/netconf"
)

// benchRecord is a lease record as a host of a large cluster publishes it.
func benchRecord(i int) Record {
	return Record{
		Version: RecordVersion, Kind: KindHost,
		HostID:      fmt.Sprintf("%032x", uint64(i)*0x9e3779b97f4a7c15),
		Hostname:    fmt.Sprintf("node-%05d.rack%02d.example.internal", i, i%40),
		PublicIP:    netip.AddrFrom4([4]byte{198, 18 + byte(i>>16&1), byte(i >> 8), byte(i)}),
		VTEPMAC:     fmt.Sprintf("02:42:%02x:%02x:%02x:%02x", byte(i>>24), byte(i>>16), byte(i>>8), byte(i)),
		UnderlayMTU: 1500,
	}
}

// benchSnapshot is a subnet map with leases hosts in random slots of cfg,
// each with its quarantine reservation (overlayd's default), plus gone
// reservations of hosts whose lease ended within the quarantine time.
func benchSnapshot(cfg netconf.Config, leases, gone int) mapSnapshot {
	pool := cfg.HostPool()
	rnd := rand.New(rand.NewPCG(1, 2))
	snap := mapSnapshot{subnets: map[netip.Prefix]occupiedLease{}, reservations: map[netip.Prefix]reservation{}}
	for i, slot := range rnd.Perm(pool.Count())[:leases+gone] {
		s := pool.At(slot)
		rec := benchRecord(i)
		snap.reservations[s] = reservation{HostID: rec.HostID, ModRevision: int64(2 * i), Lease: int64(2 * i)}
		if i < leases {
			snap.subnets[s] = occupiedLease{Subnet: s, Record: rec, ModRevision: int64(2*i + 1), Lease: int64(2*i + 1)}
		}
	}
	return snap
}

// BenchmarkPickFree is a new host choosing its subnet from a snapshot of
// the map (the etcd round trips around it are not included):
//
//   - slash8: 10.0.0.0/8 in /24s (65 536 slots) with 1 000 or 10 000
//     hosts; "+gone" adds reservations of 1% more hosts that went away,
//     which makes pickFree count the free slots in a walk over all of them;
//   - slash16: 10.244.0.0/16 in /24s, 90% leased.
func BenchmarkPickFree(b *testing.B) {
	net8 := netconf.Config{Network: netip.MustParsePrefix("10.0.0.0/8"), SubnetLen: 24, VNI: 1, Port: 8472}
	net16 := netconf.Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, VNI: 1, Port: 8472}
	for _, c := range []struct {
		name         string
		cfg          netconf.Config
		leases, gone int
	}{
		{"slash8/leases=1000", net8, 1000, 0},
		{"slash8/leases=10000", net8, 10000, 0},
		{"slash8/leases=10000+gone", net8, 10000, 100},
		{"slash16/leases=230", net16, 230, 0},
	} {
		b.Run(c.name, func(b *testing.B) {
			snap := benchSnapshot(c.cfg, c.leases, c.gone)
			req := AcquireRequest{Network: "default", Config: c.cfg, Record: Record{HostID: "new-host"}}
			b.ReportAllocs()
			for b.Loop() {
				s, err := pickFree(req, snap)
				if err != nil {
					b.Fatal(err)
				}
				if _, taken := snap.subnets[s]; taken {
					b.Fatalf("pickFree handed out %s, which is leased", s)
				}
			}
		})
	}
}

// BenchmarkDecodeRecord is a lease value from etcd to a validated Record.
func BenchmarkDecodeRecord(b *testing.B) {
	value := mustEncode(b, benchRecord(4711))
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	for b.Loop() {
		if _, err := decodeRecord(value); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseLease is what every lease of a list, and every put event
// of the watch, costs: key and value bytes to a Lease.
func BenchmarkParseLease(b *testing.B) {
	c := &Client{keys: Keys{Prefix: DefaultPrefix}}
	s := netip.MustParsePrefix("10.18.103.0/24")
	key := []byte(c.keys.Subnet("default", s))
	value := mustEncode(b, benchRecord(4711))
	b.ReportAllocs()
	for b.Loop() {
		l, err := c.parseLease("default", key, value)
		if err != nil || l.Subnet != s {
			b.Fatalf("parseLease = %v, %v", l.Subnet, err)
		}
	}
}

func mustEncode(b *testing.B, r Record) []byte {
	v, err := EncodeRecord(r)
	if err != nil {
		b.Fatal(err)
	}
	return []byte(v)
}
