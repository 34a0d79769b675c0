package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// conn is a raw ICMP socket with its own echo ID and token: replies that
// do not carry both are someone else's.
type conn struct {
	c *net.IPConn
	identity
}

// listen opens a raw ICMP socket in the calling thread's network namespace.
// The kernel passes it only echo replies (ICMP_FILTER), which is most of
// the filtering a raw socket needs when others ping in the namespace too.
func listen(id identity, dontFragment bool) (*conn, error) {
	c, err := net.ListenIP("ip4:icmp", &net.IPAddr{IP: net.IPv4zero})
	if err != nil {
		return nil, fmt.Errorf("open raw ICMP socket: %w (ICMP probes need CAP_NET_RAW: run as root or grant the capability)", err)
	}
	var f ipv4.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv4.ICMPTypeEchoReply)
	if err := ipv4.NewPacketConn(c).SetICMPFilter(&f); err != nil {
		c.Close()
		return nil, fmt.Errorf("set ICMP filter on raw socket: %w", err)
	}
	if dontFragment {
		if err := setDontFragment(c); err != nil {
			c.Close()
			return nil, err
		}
	}
	return &conn{c: c, identity: id}, nil
}

// setDontFragment sets IP_PMTUDISC_DO: every packet goes out with DF, and
// one larger than the route's MTU fails to send with EMSGSIZE.
func setDontFragment(c *net.IPConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("raw ICMP socket: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	}); err != nil {
		return fmt.Errorf("raw ICMP socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("set IP_MTU_DISCOVER=IP_PMTUDISC_DO on raw ICMP socket: %w", serr)
	}
	return nil
}

func (c *conn) Close() error { return c.c.Close() }

// send sends an echo request with seq and a payload of size bytes to dst.
func (c *conn) send(dst netip.Addr, seq uint16, size int) error {
	b, err := c.echoRequest(seq, size)
	if err != nil {
		return fmt.Errorf("marshal ICMP echo: %w", err)
	}
	if _, err := c.c.WriteToIP(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		if errors.Is(err, syscall.EMSGSIZE) {
			return fmt.Errorf("send %d-byte echo to %s: %w", size, dst, ErrTooBig)
		}
		return fmt.Errorf("send echo to %s: %w", dst, err)
	}
	return nil
}

// readLoop passes every echo reply of ours to got until the socket is
// closed; everything else is dropped.
func (c *conn) readLoop(got func(reply)) {
	buf := make([]byte, 1<<16)
	for {
		n, from, err := c.c.ReadFromIP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient error on a raw socket (ENOBUFS): keep reading,
			// without spinning if it persists.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		at := time.Now()
		a, _ := netip.AddrFromSlice(from.IP)
		if r, ok := c.parse(buf[:n], a.Unmap()); ok {
			r.at = at
			got(r)
		}
	}
}
