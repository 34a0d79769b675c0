package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"

	"github.com/overlaynet/overlay/pkg/cnierr"
)

// netnsLockTimeout bounds the wait for another ADD or DEL of the same
// container. The holder runs one IPAM call (overlay-ipam waits at most 10 s
// for its store) and a handful of netlink calls.
const netnsLockTimeout = 30 * time.Second

// Polling bounds: a blocked flock cannot be interrupted, so the lock is
// polled with LOCK_NB and a growing pause, as ipam/store does.
const (
	firstLockPoll = time.Millisecond
	maxLockPoll   = 50 * time.Millisecond
)

// lockNetns takes an exclusive flock on the container's network namespace
// file n (opened from path), waiting at most timeout; closing n releases it.
//
// ADD and DEL hold it for their whole run, so a runtime that retries ADD
// after a timeout, or sends the same ADD twice at once, gets invocations
// that run one after the other: the later one sees the interface the
// earlier one made and cannot take it for a failure of its own and release
// its address. The namespace is the one object every invocation for the
// container shares whatever path the runtime passes (a bind mount under
// /run/netns and /proc/PID/ns/net are the same nsfs inode, and flock locks
// the inode); it needs no file of ours and no cleanup, and the kernel drops
// the lock when a plugin process dies.
func lockNetns(n ns.NetNS, path string, timeout time.Duration) error {
	fd := int(n.Fd())
	deadline := time.Now().Add(timeout)
	for wait := firstLockPoll; ; wait = min(2*wait, maxLockPoll) {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return cnierr.IOFailure("cannot lock network namespace "+path, err.Error())
		}
		left := time.Until(deadline)
		if left <= 0 {
			return cnierr.TryAgain("another ADD or DEL for this container is still running",
				fmt.Sprintf("waited %s for the lock on network namespace %s; retry, and if this persists look for a hung overlay plugin process", timeout, path))
		}
		time.Sleep(min(wait, left))
	}
}
