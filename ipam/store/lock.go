package store

import (
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// ErrLockTimeout is returned when another process held the store's lock for
// longer than the store's lock timeout. The request may be retried.
var ErrLockTimeout = errors.New("store is locked by another process")

// DefaultLockTimeout bounds how long an operation waits for the lock. A
// transaction takes milliseconds, so waiting longer means a plugin process is
// stuck; the runtime is better told to retry than left hanging.
const DefaultLockTimeout = 10 * time.Second

// Polling bounds: flock has no timeout of its own, and a blocked flock cannot
// be interrupted, so the lock is polled with LOCK_NB and a growing pause.
const (
	firstPoll = time.Millisecond
	maxPoll   = 50 * time.Millisecond
)

// lock takes the exclusive flock on the store's lock file and returns the
// function that releases it. The lock lives on an open file description of its
// own, so two Stores in one process exclude each other like two processes do,
// and a crashed holder's lock is released by the kernel.
func (s *Store) lock() (unlock func(), err error) {
	path := s.path(lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	timeout := s.LockTimeout
	if timeout <= 0 {
		timeout = DefaultLockTimeout
	}
	deadline := time.Now().Add(timeout)
	for wait := firstPoll; ; wait = min(2*wait, maxPoll) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			// Closing the descriptor drops the lock; nothing was written
			// through it, so a close error carries no information.
			unlock := func() { _ = f.Close() }
			if err := s.forgetEarlierBoot(); err != nil {
				unlock()
				return nil, err
			}
			return unlock, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		left := time.Until(deadline)
		if left <= 0 {
			_ = f.Close()
			return nil, fmt.Errorf("lock %s: waited %s: %w", path, timeout, ErrLockTimeout)
		}
		time.Sleep(min(wait, left))
	}
}
