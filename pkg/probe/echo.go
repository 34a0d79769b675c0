package probe

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// ErrTooBig is the error (matched with errors.Is) of an echo with
// DontFragment set that is larger than the MTU of the local route (or the
// path MTU this host has learned) to its destination.
var ErrTooBig = errors.New("packet larger than the route's MTU and don't-fragment is set")

// tokenLen is the size of the random token that starts every payload we
// send; the smallest payload is the token.
const tokenLen = 8

// identity marks our echoes: a raw socket sees every echo reply of the
// namespace, and takes only those with its ID and token. The token keeps
// two sockets apart even when their random IDs collide.
type identity struct {
	id    uint16
	token [tokenLen]byte
}

func newIdentity() identity {
	id := identity{id: uint16(rand.N(1 << 16))}
	for i := range id.token {
		id.token[i] = byte(rand.N(256))
	}
	return id
}

// echoRequest is the ICMP echo request with seq and a payload of size
// bytes (at least the token).
func (id identity) echoRequest(seq uint16, size int) ([]byte, error) {
	data := make([]byte, max(size, tokenLen))
	copy(data, id.token[:])
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: int(id.id), Seq: int(seq), Data: data}}
	return msg.Marshal(nil)
}

// reply is one echo reply of ours.
type reply struct {
	seq  uint16
	from netip.Addr
	at   time.Time
}

// parse takes an ICMP message (no IP header) from from and says whether it
// is an echo reply of ours.
func (id identity) parse(b []byte, from netip.Addr) (reply, bool) {
	m, err := icmp.ParseMessage(1, b) // 1: ICMP for IPv4
	if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
		return reply{}, false
	}
	e, ok := m.Body.(*icmp.Echo)
	if !ok || e.ID != int(id.id) || !bytes.HasPrefix(e.Data, id.token[:]) {
		return reply{}, false
	}
	return reply{seq: uint16(e.Seq), from: from}, true
}
