package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
)

// benchPeer n spreads hosts over 10.0.0.0/8 with /24 subnets.
func benchPeer(n int) Peer {
	a, b := byte(n>>8), byte(n)
	return Peer{
		Subnet:   netip.PrefixFrom(netip.AddrFrom4([4]byte{10, a, b, 0}), 24),
		VTEPIP:   netip.AddrFrom4([4]byte{10, a, b, 0}),
		VTEPMAC:  net.HardwareAddr{2, 0, 0, 0, a, b},
		PublicIP: netip.AddrFrom4([4]byte{198, 18, a, b}),
	}
}

// BenchmarkDiff measures a periodic reconcile: everything installed, 1% of
// peers changed their public IP, 1% gone, 1% new.
func BenchmarkDiff(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			var wanted, have []Peer
			for i := range n {
				p := benchPeer(i)
				have = append(have, p)
				switch i % 100 {
				case 0:
					p.PublicIP = netip.AddrFrom4([4]byte{198, 19, 0, 1})
				case 1:
					continue
				}
				wanted = append(wanted, p)
			}
			for i := range n / 100 {
				wanted = append(wanted, benchPeer(n+i))
			}
			installed := installedFor(have...)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if Diff(wanted, installed).Empty() {
					b.Fatal("empty plan")
				}
			}
		})
	}
}
