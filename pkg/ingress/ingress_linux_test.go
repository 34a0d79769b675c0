package ingress

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// pair is two namespaces on one veth: the host (198.18.0.1) with the
// filter, and a sender holding a member's and a stranger's address.
type pair struct {
	host, sender ns.NetNS
}

var (
	hostIP   = netip.MustParseAddr("198.18.0.1")
	member   = netip.MustParseAddr("198.18.0.2")
	stranger = netip.MustParseAddr("198.18.0.3")
)

func newNS(t testing.TB) ns.NetNS {
	t.Helper()
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(); testutils.UnmountNS(n) })
	return n
}

func newPair(t testing.TB) pair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("needs root to create network namespaces: run make test as root")
	}
	p := pair{host: newNS(t), sender: newNS(t)}
	err := p.host.Do(func(ns.NetNS) error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0p", PeerNamespace: netlink.NsFd(int(p.sender.Fd()))}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		return addrUp("eth0", hostIP)
	})
	if err == nil {
		err = p.sender.Do(func(ns.NetNS) error {
			if err := addrUp("eth0p", member); err != nil {
				return err
			}
			l, _ := netlink.LinkByName("eth0p")
			return netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: stranger.AsSlice(), Mask: net.CIDRMask(24, 32)}})
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func addrUp(name string, ip netip.Addr) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

// in runs fn in the host namespace.
func (p pair) in(t testing.TB, fn func() error) {
	t.Helper()
	if err := p.host.Do(func(ns.NetNS) error { return fn() }); err != nil {
		t.Fatal(err)
	}
}

// arrives sends one datagram from src to the host's port and reports
// whether it arrived.
func (p pair) arrives(t *testing.T, src netip.Addr, port uint16) bool {
	t.Helper()
	var conn net.PacketConn
	p.in(t, func() (err error) {
		conn, err = net.ListenPacket("udp4", netip.AddrPortFrom(hostIP, port).String())
		return err
	})
	defer conn.Close()
	err := p.sender.Do(func(ns.NetNS) error {
		d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("udp4", netip.AddrPortFrom(hostIP, port).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("vxlan?"))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	_, _, err = conn.ReadFrom(make([]byte, 16))
	return err == nil
}

func (p pair) dropped(t *testing.T, f *Filter) uint64 {
	t.Helper()
	var n uint64
	p.in(t, func() (err error) { n, err = f.Dropped(); return err })
	return n
}

func (p pair) ensure(t *testing.T, f *Filter, port uint16, members ...netip.Addr) {
	t.Helper()
	p.in(t, func() error { return f.Ensure(port, members) })
}

// Finding: any machine that reaches the VXLAN port could inject frames.
// The filter admits the port only from members, counts what it drops,
// and leaves other ports alone.
func TestFilterDropsNonMembers(t *testing.T) {
	p := newPair(t)
	f := New("default")
	if !p.arrives(t, stranger, 8472) {
		t.Fatal("without the filter a stranger's datagram does not arrive: the test setup is broken")
	}
	p.ensure(t, f, 8472, member)
	if !p.arrives(t, member, 8472) {
		t.Error("a member's datagram was dropped")
	}
	if p.arrives(t, stranger, 8472) {
		t.Error("a stranger's datagram to the VXLAN port arrived")
	}
	if n := p.dropped(t, f); n != 1 {
		t.Errorf("drop counter = %d, want 1", n)
	}
	if !p.arrives(t, stranger, 8080) {
		t.Error("a stranger's datagram to another port was dropped")
	}
}

// Ensure follows the members and the port, changes nothing when all is
// in place, and repairs a deleted table and an edited set.
func TestFilterFollowsAndRepairs(t *testing.T) {
	p := newPair(t)
	f := New("default")
	p.ensure(t, f, 8472, member)
	p.ensure(t, f, 8472, stranger) // membership moves
	if p.arrives(t, member, 8472) || !p.arrives(t, stranger, 8472) {
		t.Error("membership change not applied")
	}
	p.ensure(t, f, 4789, stranger) // port moves
	if p.arrives(t, member, 4789) || !p.arrives(t, member, 8472) {
		t.Error("port change not applied")
	}
	before := p.dropped(t, f)
	p.ensure(t, f, 4789, stranger) // unchanged: the counter survives, nothing rebuilt
	if got := p.dropped(t, f); got != before || before == 0 {
		t.Errorf("an unchanged Ensure reset the counter: %d, was %d", got, before)
	}

	// Someone deletes the table, then edits the set.
	p.in(t, func() error {
		c, _ := nftables.New()
		c.DelTable(f.tableRef())
		return c.Flush()
	})
	p.ensure(t, f, 4789, stranger)
	if p.arrives(t, member, 4789) {
		t.Error("deleted table not repaired")
	}
	p.in(t, func() error {
		c, _ := nftables.New()
		set, err := c.GetSetByName(f.tableRef(), setName)
		if err != nil {
			return err
		}
		if err := c.SetAddElements(set, []nftables.SetElement{{Key: member.AsSlice()}}); err != nil {
			return err
		}
		return c.Flush()
	})
	p.ensure(t, f, 4789, stranger)
	if p.arrives(t, member, 4789) {
		t.Error("an element added by hand was not removed")
	}
	p.in(t, func() error {
		c, _ := nftables.New()
		set, _ := c.GetSetByName(f.tableRef(), setName)
		els, err := c.GetSetElements(set)
		if err != nil || len(els) != 1 || !slices.Equal(els[0].Key, stranger.AsSlice()) {
			return fmt.Errorf("set = %v, %v; want just %s", els, err, stranger)
		}
		return nil
	})
}

// Two networks' filters do not touch each other; Remove takes only its
// own table and is fine when there is none.
func TestFilterPerNetworkAndRemove(t *testing.T) {
	p := newPair(t)
	a, b := New("a"), New("b")
	p.ensure(t, a, 8472, member)
	p.ensure(t, b, 8473, stranger)
	if p.arrives(t, stranger, 8472) || !p.arrives(t, stranger, 8473) || p.arrives(t, member, 8473) {
		t.Fatal("the two networks' filters mix")
	}
	p.in(t, a.Remove)
	if !p.arrives(t, stranger, 8472) || p.arrives(t, member, 8473) {
		t.Error("Remove of a took the wrong filter")
	}
	p.in(t, a.Remove) // absent: success
	if n := p.dropped(t, a); n != 0 {
		t.Errorf("Dropped of a removed filter = %d", n)
	}
}
