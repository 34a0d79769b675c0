package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// kernelEvents records the route and neighbour notifications of one
// namespace with the moment each reached the bench: a subscription of our
// own inside the namespace, read as messages arrive, so a convergence time
// is an event's time and not a poll's (nor `ip monitor`'s, which would add
// a process and a pipe between the kernel and the stamp).
type kernelEvents struct {
	ns   string
	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex
	events  []kernelEvent
	err     error
	changed chan struct{} // closed and replaced on every event
}

type eventKind int

const (
	routeEvent eventKind = iota
	neighEvent           // an IPv4 neighbour (ARP) entry
	fdbEvent             // a bridge FDB entry (family AF_BRIDGE)
)

type kernelEvent struct {
	at   time.Time
	kind eventKind
	del  bool
	dst  netip.Prefix // route: its destination
	ip   netip.Addr   // neigh: its address; fdb: the remote VTEP's underlay address
	mac  string       // neigh, fdb
}

// watchKernel subscribes to ns's route and neighbour notifications.
func watchKernel(ns string) (*kernelEvents, error) {
	h, err := netns.GetFromPath(filepath.Join(netnsDir, ns))
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", ns, err)
	}
	// The subscriptions open their sockets inside ns at once; the handle
	// is not needed after that.
	defer h.Close()
	k := &kernelEvents{ns: ns, done: make(chan struct{}), changed: make(chan struct{})}
	routes := make(chan netlink.RouteUpdate, 256)
	neighs := make(chan netlink.NeighUpdate, 256)
	onErr := func(err error) { k.fail(err) }
	if err := netlink.RouteSubscribeWithOptions(routes, k.done, netlink.RouteSubscribeOptions{Namespace: &h, ErrorCallback: onErr}); err != nil {
		close(k.done)
		return nil, fmt.Errorf("subscribe to routes in %s: %w", ns, err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighs, k.done, netlink.NeighSubscribeOptions{Namespace: &h, ErrorCallback: onErr}); err != nil {
		close(k.done)
		return nil, fmt.Errorf("subscribe to neighbours in %s: %w", ns, err)
	}
	k.wg.Go(func() {
		for u := range routes {
			at := time.Now()
			if u.Dst == nil {
				continue
			}
			ones, _ := u.Dst.Mask.Size()
			ip, ok := netip.AddrFromSlice(u.Dst.IP)
			if !ok {
				continue
			}
			k.add(kernelEvent{at: at, kind: routeEvent, del: u.Type == unix.RTM_DELROUTE, dst: netip.PrefixFrom(ip.Unmap(), ones)})
		}
	})
	k.wg.Go(func() {
		for u := range neighs {
			at := time.Now()
			ev := kernelEvent{at: at, kind: neighEvent, del: u.Type == unix.RTM_DELNEIGH, mac: u.HardwareAddr.String()}
			if u.Family == unix.AF_BRIDGE {
				ev.kind = fdbEvent
			}
			if ip, ok := netip.AddrFromSlice(u.IP); ok {
				ev.ip = ip.Unmap()
			}
			k.add(ev)
		}
	})
	return k, nil
}

func (k *kernelEvents) add(ev kernelEvent) {
	k.mu.Lock()
	k.events = append(k.events, ev)
	close(k.changed)
	k.changed = make(chan struct{})
	k.mu.Unlock()
}

func (k *kernelEvents) fail(err error) {
	k.mu.Lock()
	if k.err == nil {
		k.err = err
	}
	close(k.changed)
	k.changed = make(chan struct{})
	k.mu.Unlock()
}

// find returns the first event since since that match accepts.
func (k *kernelEvents) find(since time.Time, match func(kernelEvent) bool) (time.Time, bool, error, <-chan struct{}) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, ev := range k.events {
		if !ev.at.Before(since) && match(ev) {
			return ev.at, true, nil, k.changed
		}
	}
	return time.Time{}, false, k.err, k.changed
}

// wait waits for the first event since since that match accepts and
// returns when it arrived.
func (k *kernelEvents) wait(ctx context.Context, since time.Time, what string, timeout time.Duration, match func(kernelEvent) bool) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		at, ok, err, changed := k.find(since, match)
		switch {
		case ok:
			return at, nil
		case err != nil:
			return time.Time{}, fmt.Errorf("netlink events of %s: %w", k.ns, err)
		}
		select {
		case <-changed:
		case <-t.C:
			return time.Time{}, fmt.Errorf("timed out after %s waiting for %s in %s", timeout, what, k.ns)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// forget drops the events recorded so far (between rounds).
func (k *kernelEvents) forget() {
	k.mu.Lock()
	k.events = nil
	k.mu.Unlock()
}

// Close ends the subscriptions.
func (k *kernelEvents) Close() {
	close(k.done)
	k.wg.Wait()
}

func routeTo(s netip.Prefix, del bool) func(kernelEvent) bool {
	return func(ev kernelEvent) bool { return ev.kind == routeEvent && ev.del == del && ev.dst == s }
}

func fdbOf(mac net.HardwareAddr) func(kernelEvent) bool {
	return func(ev kernelEvent) bool { return ev.kind == fdbEvent && !ev.del && ev.mac == mac.String() }
}

// fileWatch reports when files appear in a directory: created there or
// renamed into place (how atomic writers publish), through inotify, so the
// moment is the event's and not a poll's.
type fileWatch struct {
	f     *os.File
	names []string

	mu      sync.Mutex
	seen    map[string]time.Time // the first appearance of each name
	changed chan struct{}
}

// watchFiles starts watching dir for names; the watch is in place on
// return.
func watchFiles(dir string, names ...string) (*fileWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_TO); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	// A non-blocking descriptor goes to Go's poller: Close ends the read.
	w := &fileWatch{f: os.NewFile(uintptr(fd), "inotify "+dir), names: names, seen: map[string]time.Time{}, changed: make(chan struct{})}
	go w.read()
	return w, nil
}

func (w *fileWatch) read() {
	buf := make([]byte, 4096)
	for {
		n, err := w.f.Read(buf)
		at := time.Now()
		if err != nil {
			return
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(trimNUL(buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]))
			off += unix.SizeofInotifyEvent + int(ev.Len)
			w.mu.Lock()
			if _, ok := w.seen[name]; !ok && slices.Contains(w.names, name) {
				w.seen[name] = at
				close(w.changed)
				w.changed = make(chan struct{})
			}
			w.mu.Unlock()
		}
	}
}

func trimNUL(b []byte) []byte {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i]
	}
	return b
}

// Wait returns when name first appeared.
func (w *fileWatch) Wait(ctx context.Context, name string, timeout time.Duration) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		w.mu.Lock()
		at, ok := w.seen[name]
		changed := w.changed
		w.mu.Unlock()
		if ok {
			return at, nil
		}
		select {
		case <-changed:
		case <-t.C:
			return time.Time{}, errors.New("timed out after " + timeout.String() + " waiting for " + name)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// Close ends the watch.
func (w *fileWatch) Close() { w.f.Close() }
