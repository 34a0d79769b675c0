package ingress

// Does the rule count matter at 10 000 peers? This compares the filter's
// nftables set with the obvious alternative, an iptables chain of one
// ACCEPT rule per member and a DROP, loaded with one
// `iptables-restore --noflush`. Run (root; about a minute):
//
//	go test -run '^$' -bench . -benchtime 1s ./pkg/ingress/
//
// Results (median of 3 runs of 1 s), 2 vCPU Debian 12 VM (AMD EPYC),
// kernel 6.18, iptables 1.8.9 (nf_tables backend, Debian's default),
// others' jobs sharing the machine:
//
//	                                1 000 members        10 000 members
//	program all, nft Ensure           1.9 ms               17.5 ms
//	program all, iptables-restore    37   ms              382   ms
//	Ensure, nothing to change         2.0 ms               20.5 ms
//	change one, nft Ensure           14.1 ms               30.3 ms
//	change one, iptables -R          19.3 ms               71.1 ms
//	change one, iptables reload      51.3 ms              417   ms
//	per packet, nft set               3.7 µs  267k pkt/s    3.7 µs  268k pkt/s
//	per packet, iptables chain       20.8 µs   48k pkt/s  175   µs  5.5k pkt/s
//	per packet, no filter             3.6 µs  279k pkt/s
//
// So yes, the rule count matters: a packet pays about 17 ns for each rule
// it is tried against, so a member at the end of a 10 000-rule chain gets
// 5 500 packets/s through where the set passes 268 000, and every
// stranger's packet (and every other packet entering the chain) pays for
// all the rules. The set's lookup is within the noise of no filter at
// both sizes. Any batch that deletes something (a member leaving, an
// iptables -R) takes 11-24 ms of which 0.2 ms is CPU: the commit sleeps,
// presumably for an RCU grace period; that is most of "change one" at
// 1 000. The rest of nft's 30 ms at 10 000 is Ensure reading the set
// back, what "nothing to change" costs: 2 µs per element, about half in
// the kernel's dump (recvmsg) and half buffers and GC on our side.
//
// Per packet is the time of one sendmsg from the last member's address
// over a veth into the host namespace: on a veth the receive path, filter
// included, runs in the sender's softirq, so this is the stack's cost
// per packet. The host's socket is bound and never read: packets that
// pass the filter are counted by the kernel (Udp InDatagrams +
// RcvbufErrors) and then dropped at the full socket buffer, so the
// receiver's scheduling does not blur the filter's cost. "change one,
// nft" is a whole Ensure: reading the set back (a dump of every element)
// and writing one element in and one out. "iptables -R" replaces one rule
// in place, the cheapest iptables change; "reload" flushes and refills
// the chain in one iptables-restore, what a reconciler that rewrites the
// chain would do.

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
)

const benchChain = "OVERLAY-BENCH"

// benchMembers is n members: n-1 from 198.19.0.0/16, then the sender's
// member address last (last in the iptables chain: the worst case).
func benchMembers(n int) []netip.Addr {
	return append(fakeMembers(n-1, netip.MustParseAddr("198.19.0.0")), member)
}

func BenchmarkIngress(b *testing.B) {
	requireRoot(b)
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		b.Fatal("iptables-restore is not installed; run make deps")
	}
	b.Run("per-packet/no-filter", func(b *testing.B) {
		p := newPair(b)
		benchPackets(b, p)
	})
	for _, n := range []int{1000, 10000} {
		members := benchMembers(n)
		b.Run(fmt.Sprintf("program/nft/%d", n), func(b *testing.B) {
			p, f := newPair(b), New("bench")
			for b.Loop() {
				b.StopTimer()
				p.in(b, f.Remove)
				b.StartTimer()
				p.ensure(b, f, port, members...)
			}
		})
		b.Run(fmt.Sprintf("program/iptables/%d", n), func(b *testing.B) {
			p := newPair(b)
			for b.Loop() {
				b.StopTimer()
				p.in(b, iptablesClear)
				b.StartTimer()
				p.in(b, func() error { return iptablesRestore(members, true) })
			}
		})
		b.Run(fmt.Sprintf("unchanged/nft/%d", n), func(b *testing.B) {
			p, f := newPair(b), New("bench")
			p.ensure(b, f, port, members...)
			for b.Loop() {
				p.ensure(b, f, port, members...)
			}
		})
		b.Run(fmt.Sprintf("change-one/nft/%d", n), func(b *testing.B) {
			p, f := newPair(b), New("bench")
			p.ensure(b, f, port, members...)
			alt := append([]netip.Addr{netip.MustParseAddr("198.18.255.1")}, members[1:]...)
			i := 0
			for b.Loop() {
				ms := members
				if i%2 == 0 {
					ms = alt
				}
				i++
				p.ensure(b, f, port, ms...)
			}
		})
		b.Run(fmt.Sprintf("change-one/iptables-R/%d", n), func(b *testing.B) {
			p := newPair(b)
			p.in(b, func() error { return iptablesRestore(members, true) })
			i := 0
			for b.Loop() {
				ip := members[0]
				if i%2 == 0 {
					ip = netip.MustParseAddr("198.18.255.1")
				}
				i++
				p.in(b, func() error { return iptables(append([]string{"-R", benchChain, "1"}, memberSpec(ip)...)...) })
			}
		})
		b.Run(fmt.Sprintf("change-one/iptables-reload/%d", n), func(b *testing.B) {
			p := newPair(b)
			p.in(b, func() error { return iptablesRestore(members, true) })
			alt := append([]netip.Addr{netip.MustParseAddr("198.18.255.1")}, members[1:]...)
			i := 0
			for b.Loop() {
				ms := members
				if i%2 == 0 {
					ms = alt
				}
				i++
				p.in(b, func() error { return iptablesRestore(ms, false) })
			}
			var rules int
			p.in(b, func() (err error) { rules, err = iptablesRules(benchChain); return err })
			if rules != n+1 {
				b.Fatalf("the reload left %d rules in %s, want %d: it does not flush the chain", rules, benchChain, n+1)
			}
		})
		b.Run(fmt.Sprintf("per-packet/nft/%d", n), func(b *testing.B) {
			p, f := newPair(b), New("bench")
			p.ensure(b, f, port, members...)
			benchPackets(b, p)
			if d := p.dropped(b, f); d != 0 {
				b.Fatalf("the filter dropped %d of the member's packets", d)
			}
		})
		b.Run(fmt.Sprintf("per-packet/iptables/%d", n), func(b *testing.B) {
			p := newPair(b)
			p.in(b, func() error { return iptablesRestore(members, true) })
			benchPackets(b, p)
		})
	}
}

// iptables runs iptables -w in the calling thread's namespace (the child
// inherits it from the locked thread).
func iptables(args ...string) error {
	if out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
		return fmt.Errorf("iptables %v: %w: %s", args, err, out)
	}
	return nil
}

// iptablesClear empties INPUT and deletes the bench chain.
func iptablesClear() error {
	if err := iptables("-F", "INPUT"); err != nil {
		return err
	}
	if iptables("-S", benchChain) != nil {
		return nil // no chain
	}
	if err := iptables("-F", benchChain); err != nil {
		return err
	}
	return iptables("-X", benchChain)
}

// memberSpec is one member's rule.
func memberSpec(ip netip.Addr) []string {
	return []string{"-p", "udp", "--dport", strconv.Itoa(port), "-s", ip.String(), "-j", "ACCEPT"}
}

// iptablesRestore loads the bench chain with one ACCEPT per member and a
// DROP in one iptables-restore --noflush call; withJump also adds INPUT's
// jump to it. Declaring the chain flushes it.
func iptablesRestore(members []netip.Addr, withJump bool) error {
	var sb strings.Builder
	fmt.Fprintf(&sb, "*filter\n:%s - [0:0]\n", benchChain)
	if withJump {
		fmt.Fprintf(&sb, "-A INPUT -j %s\n", benchChain)
	}
	for _, m := range members {
		fmt.Fprintf(&sb, "-A %s %s\n", benchChain, strings.Join(memberSpec(m), " "))
	}
	fmt.Fprintf(&sb, "-A %s -p udp --dport %d -j DROP\nCOMMIT\n", benchChain, port)
	cmd := exec.Command("iptables-restore", "-w", "--noflush")
	cmd.Stdin = strings.NewReader(sb.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("iptables-restore: %w: %s", err, out)
	}
	return nil
}

// iptablesRules counts the rules of chain.
func iptablesRules(chain string) (int, error) {
	out, err := exec.Command("iptables", "-w", "-S", chain).Output()
	if err != nil {
		return 0, err
	}
	return strings.Count(string(out), "-A "+chain+" "), nil
}

// benchPackets times b.N datagrams from the member (the last in the
// chain) to the filtered port and reports how many passed the filter.
func benchPackets(b *testing.B, p pair) {
	var rx net.PacketConn
	p.in(b, func() (err error) {
		rx, err = net.ListenPacket("udp4", netip.AddrPortFrom(hostIP, port).String())
		return err
	})
	defer rx.Close()
	var tx net.Conn
	// A socket stays in the namespace it was made in.
	if err := p.sender.Do(func(ns.NetNS) (err error) {
		d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(member, 0))}
		tx, err = d.Dial("udp4", netip.AddrPortFrom(hostIP, port).String())
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer tx.Close()
	if !p.arrives(b, member, port+1) { // warm: the neighbour is resolved
		b.Fatal("the member cannot reach the host")
	}
	before := p.udpPassed(b)
	payload := make([]byte, 64)
	for b.Loop() {
		if _, err := tx.Write(payload); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	passed := p.udpPassed(b) - before
	// Passed per second, not sent: were the receive path deferred to
	// ksoftirqd, the sender could outrun it and lose packets in the
	// backlog, and ns/op would flatter the filter.
	b.ReportMetric(float64(passed)/b.Elapsed().Seconds(), "passed/s")
	b.ReportMetric(float64(passed)/float64(b.N), "passed/sent")
}

// udpPassed reads the host namespace's UDP InDatagrams + RcvbufErrors:
// the datagrams the filter let through to a socket.
func (p pair) udpPassed(b *testing.B) uint64 {
	b.Helper()
	var n uint64
	p.in(b, func() error {
		f, err := os.Open("/proc/thread-self/net/snmp")
		if err != nil {
			return err
		}
		defer f.Close()
		var head []string
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) == 0 || fields[0] != "Udp:" {
				continue
			}
			if head == nil {
				head = fields
				continue
			}
			for i, h := range head {
				if h == "InDatagrams" || h == "RcvbufErrors" {
					v, err := strconv.ParseUint(fields[i], 10, 64)
					if err != nil {
						return err
					}
					n += v
				}
			}
			return nil
		}
		return fmt.Errorf("no Udp line in snmp: %v", sc.Err())
	})
	return n
}
