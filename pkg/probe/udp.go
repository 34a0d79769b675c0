package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// UDPPort is where UDPEcho sends: traceroute's first port, where nothing
// listens, so the peer's kernel answers ICMP port unreachable.
const UDPPort = 33434

// UDPEcho sends count small UDP datagrams to addr:UDPPort from an
// ordinary socket and counts those the peer's kernel answered with ICMP
// port unreachable. Unlike an ICMP echo, whose checksum is computed in
// software, the kernel leaves a UDP checksum to the device when it can
// (tx checksum offload), so a datagram through the VXLAN device crosses
// the same offload path as containers' TCP and UDP: when echoes cross and
// these do not, checksum offload corrupts what is inside, or the peer
// drops UDP to that port. An error means it could not send at all.
func UDPEcho(ctx context.Context, addr netip.Addr, count int, timeout time.Duration) (PathStats, error) {
	var st PathStats
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp4", netip.AddrPortFrom(addr, UDPPort).String())
	if err != nil {
		return st, fmt.Errorf("udp probe to %s: %w", addr, err)
	}
	defer c.Close()
	buf := make([]byte, 64)
	for range max(count, 1) {
		if ctx.Err() != nil {
			return st, ctx.Err()
		}
		sent := time.Now()
		_, err := c.Write([]byte("overlay udp probe"))
		if answered(err) {
			// A late answer to the previous datagram, reported on this
			// send instead: nothing was sent, send again.
			_, err = c.Write([]byte("overlay udp probe"))
		}
		if err != nil && !answered(err) {
			return st, fmt.Errorf("udp probe to %s: %w", addr, err)
		}
		st.Sent++
		c.SetReadDeadline(sent.Add(timeout))
		_, err = c.Read(buf)
		// Port unreachable comes back as ECONNREFUSED on a connected
		// socket, a firewall's reject as EHOSTUNREACH; a datagram back
		// (something listens) is an answer too.
		if err == nil || answered(err) {
			st.Received++
			st.RTT, st.LastReply = time.Since(sent), time.Now()
			st.LostInRow = 0
			continue
		}
		st.LostInRow++
	}
	st.Loss = float64(st.Sent-st.Received) / float64(st.Sent)
	return st, nil
}

// answered tells an ICMP error the peer sent back (the datagram arrived
// intact) from a timeout.
func answered(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH)
}
