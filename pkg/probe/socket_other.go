//go:build !linux

package probe

import (
	"errors"
	"net/netip"
)

// conn needs Linux: raw sockets, ICMP_FILTER, IP_MTU_DISCOVER.
type conn struct{ identity }

func listen(identity, bool) (*conn, error) {
	return nil, errors.New("ICMP probes need Linux")
}

func (c *conn) Close() error                       { return nil }
func (c *conn) send(netip.Addr, uint16, int) error { return errors.New("ICMP probes need Linux") }
func (c *conn) readLoop(func(reply))               {}
