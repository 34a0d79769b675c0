package datapath

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// resubscribeDelay spaces out attempts to reopen a netlink subscription the
// kernel closed (e.g. ENOBUFS after an event storm).
const resubscribeDelay = 200 * time.Millisecond

// Watch turns kernel events about the named devices into calls of changed
// until ctx ends: the devices appearing, changing or going away; address
// changes on them; routes on them or of our protocol anywhere; neighbour and
// FDB entries on the VXLAN devices among them (a bridge's neighbours churn
// with container traffic and are not ours). watched is called for every
// event and must be cheap; changed must not block. A subscription the
// kernel drops is reopened, and changed is called then too, since events
// may have been lost.
func Watch(ctx context.Context, watched func() []string, changed func(reason string)) {
	watch(ctx, watched, changed, func(int) {})
}

// watch is Watch that also calls stale with a link's index for every event
// that may have changed the peer entries on that link (0: on any link),
// whether or not it concerns a watched device: a link event, a neighbour
// event that is not our own write; and with 0 for a route event that is
// not our own write (a route elsewhere may shadow ours) and when a
// subscription starts, since events before it were not seen.
func watch(ctx context.Context, watched func() []string, changed func(reason string), stale func(linkIndex int)) {
	wait := backoff.NewExponentialBackOff()
	wait.InitialInterval, wait.MaxInterval = resubscribeDelay, 30*time.Second
	for ctx.Err() == nil {
		began := time.Now()
		err := watchOnce(ctx, watched, changed, stale)
		if err != nil {
			changed(err.Error())
		}
		// An overflow (a burst of events outran the socket) is no fault
		// of the kernel's or ours: reopen at once, without backing off.
		if time.Since(began) > time.Minute || errors.Is(err, unix.ENOBUFS) {
			wait.Reset()
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait.NextBackOff()):
		}
	}
}

// watchOnce runs one set of subscriptions until ctx ends or one fails.
func watchOnce(ctx context.Context, watched func() []string, changed func(string), stale func(int)) error {
	done := make(chan struct{})
	failed := make(chan error, 4)
	onErr := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 256)
	neighs := make(chan netlink.NeighUpdate, 256)
	// netlink's receive goroutines send blocking: after done is closed they
	// must be drained until they close their channels, or they leak.
	defer func() {
		close(done)
		go drain(links)
		go drain(addrs)
		go drain(routes)
		go drain(neighs)
	}()
	if err := subscribe(links, addrs, routes, neighs, done, onErr); err != nil {
		return err
	}
	stale(0) // what happened before this subscription went unseen
	idx := &indexCache{}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return fmt.Errorf("netlink subscription ended: %w", err)
		case u, ok := <-links:
			if !ok {
				return fmt.Errorf("link subscription closed")
			}
			idx.invalidate()
			stale(int(u.Index))
			if slices.Contains(watched(), u.Attrs().Name) {
				changed("link " + u.Attrs().Name)
			}
		case u, ok := <-addrs:
			if !ok {
				return fmt.Errorf("address subscription closed")
			}
			if _, ours := idx.lookup(watched(), u.LinkIndex); ours {
				changed("address " + u.LinkAddress.String())
			}
		case u, ok := <-routes:
			if !ok {
				return fmt.Errorf("route subscription closed")
			}
			if ownWrite(u) {
				continue
			}
			// Any link: a route that is not ours, anywhere, may now
			// shadow one of ours (refuseForeign).
			stale(0)
			if _, ours := idx.lookup(watched(), u.LinkIndex); ours || u.Protocol == RouteProtocol {
				changed("route " + u.Dst.String())
			}
		case u, ok := <-neighs:
			if !ok {
				return fmt.Errorf("neighbour subscription closed")
			}
			if ownNeighWrite(u) {
				continue
			}
			stale(u.LinkIndex)
			if vxlan, ours := idx.lookup(watched(), u.LinkIndex); ours && vxlan {
				changed("neighbour " + u.IP.String())
			}
		}
	}
}

// ownWrite reports whether a route event is one a pass causes when it
// writes: a route of our protocol added or replaced. Passes write tens of
// thousands of entries when many hosts join at once, and a pass triggered
// by each burst of their echoes would dump the whole table again to find
// nothing to do. Permanent neighbour and FDB entries appearing are skipped
// likewise. What this skips is only someone else writing entries that look
// like ours (e.g. `ip neigh replace … nud permanent` with a wrong MAC): the
// resync pass repairs that. Deletions, and entries of any other kind, still
// trigger a pass at once.
func ownWrite(u netlink.RouteUpdate) bool {
	return u.Type == unix.RTM_NEWROUTE && u.Protocol == RouteProtocol
}

// ownNeighWrite is ownWrite for neighbour and FDB events: a permanent
// entry appearing or being replaced.
func ownNeighWrite(u netlink.NeighUpdate) bool {
	return u.Type == unix.RTM_NEWNEIGH && u.State&netlink.NUD_PERMANENT != 0
}

// eventBuffer is the receive buffer of the route and neighbour
// subscriptions. A pass writing 10 000 peers raises 30 000 notifications;
// with the kernel's default buffer (about 200 KiB) a pass of 300 peers
// already overflowed it, and an overflow costs a resubscription and a dump.
const eventBuffer = 8 << 20

func subscribe(links chan netlink.LinkUpdate, addrs chan netlink.AddrUpdate, routes chan netlink.RouteUpdate,
	neighs chan netlink.NeighUpdate, done chan struct{}, onErr func(error)) error {
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to link events: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: onErr}); err != nil {
		return fmt.Errorf("subscribe to address events: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{ErrorCallback: onErr,
		ReceiveBufferSize: eventBuffer, ReceiveBufferForceSize: true}); err != nil {
		return fmt.Errorf("subscribe to route events: %w", err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{ErrorCallback: onErr,
		ReceiveBufferSize: eventBuffer, ReceiveBufferForceSize: true}); err != nil {
		return fmt.Errorf("subscribe to neighbour events: %w", err)
	}
	return nil
}

// drain reads ch until netlink closes it after done, giving up after a
// while for a subscription that never started (and so never closes).
func drain[T any](ch <-chan T) {
	give := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-give:
			return
		}
	}
}

// indexCache maps the watched devices' names to their link indices; it is
// rebuilt after any link event or when the watched names change. Only the
// watching goroutine uses it.
type indexCache struct {
	names []string
	byIdx map[int]bool // index -> is a VXLAN device
}

func (c *indexCache) invalidate() { c.byIdx = nil }

// lookup reports whether index is one of the watched devices and whether
// that device is a VXLAN device.
func (c *indexCache) lookup(names []string, index int) (vxlan, ok bool) {
	if c.byIdx == nil || !slices.Equal(c.names, names) {
		c.names = slices.Clone(names)
		c.byIdx = make(map[int]bool, len(names))
		for _, n := range names {
			if l, err := netlinksafe.LinkByName(n); err == nil {
				c.byIdx[l.Attrs().Index] = l.Type() == "vxlan"
			}
		}
	}
	vxlan, ok = c.byIdx[index]
	return vxlan, ok
}
