package bench

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// RouteWatch follows the routes of one protocol in a namespace from the
// kernel's own notifications (what `ip monitor route` prints), so the
// bench times when the kernel changed, not when a poll noticed.
type RouteWatch struct {
	mu     sync.Mutex
	routes map[netip.Prefix]bool
	last   time.Time // when the set last changed
	err    error
	notify chan struct{}
	done   chan struct{}
}

// WatchRoutes subscribes to route events in netns and counts the main
// table's IPv4 routes of protocol proto, starting from a dump.
func WatchRoutes(netnsName string, proto int) (*RouteWatch, error) {
	h, err := netns.GetFromName(netnsName)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", netnsName, err)
	}
	defer h.Close()
	w := &RouteWatch{routes: map[netip.Prefix]bool{}, notify: make(chan struct{}, 1), done: make(chan struct{})}
	ch := make(chan netlink.RouteUpdate, 4096)
	err = netlink.RouteSubscribeWithOptions(ch, w.done, netlink.RouteSubscribeOptions{
		Namespace: &h, ReceiveBufferSize: 64 << 20, ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) {
			w.fail(fmt.Errorf("route events in %s: %w (events lost: the measurement is void)", netnsName, err))
		},
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to routes in %s: %w", netnsName, err)
	}
	go w.follow(ch, proto)
	// The dump comes after the subscription, so no route is missed between
	// the two; seeing one in both is harmless (a set).
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("netlink handle in %s: %w", netnsName, err)
	}
	defer nh.Close()
	existing, err := nh.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: netlink.RouteProtocol(proto), Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("list routes in %s: %w", netnsName, err)
	}
	w.mu.Lock()
	for _, r := range existing {
		if p, ok := prefixOf(r); ok {
			w.routes[p] = true
		}
	}
	w.mu.Unlock()
	return w, nil
}

func (w *RouteWatch) follow(ch <-chan netlink.RouteUpdate, proto int) {
	for u := range ch {
		if int(u.Protocol) != proto || u.Table != unix.RT_TABLE_MAIN {
			continue
		}
		p, ok := prefixOf(u.Route)
		if !ok {
			continue
		}
		w.mu.Lock()
		switch u.Type {
		case unix.RTM_NEWROUTE:
			w.routes[p] = true
		case unix.RTM_DELROUTE:
			delete(w.routes, p)
		}
		w.last = time.Now()
		w.mu.Unlock()
		w.poke()
	}
}

func prefixOf(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(r.Dst.IP.To4())
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(a, ones), ok
}

func (w *RouteWatch) poke() {
	select {
	case w.notify <- struct{}{}:
	default:
	}
}

func (w *RouteWatch) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
	w.poke()
}

// Forget drops what the watch knows: the routes went without a
// notification (the kernel sends none for the routes of a deleted device).
func (w *RouteWatch) Forget() {
	w.mu.Lock()
	clear(w.routes)
	w.mu.Unlock()
}

// WaitCount waits until exactly n routes are there and returns when the
// kernel reported the change that made it so.
func (w *RouteWatch) WaitCount(ctx context.Context, n int, timeout time.Duration) (time.Time, error) {
	deadline := time.After(timeout)
	for {
		w.mu.Lock()
		have, last, err := len(w.routes), w.last, w.err
		w.mu.Unlock()
		switch {
		case err != nil:
			return time.Time{}, err
		case have == n:
			return last, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-deadline:
			return time.Time{}, fmt.Errorf("timed out after %s with %d routes, waiting for %d", timeout, have, n)
		case <-w.notify:
		}
	}
}

// Close ends the subscription.
func (w *RouteWatch) Close() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
}
