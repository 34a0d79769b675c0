package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrLocked means another process holds the state dir's lock for a network.
var ErrLocked = errors.New("state dir is locked by another process")

// Lock takes the exclusive lock of network's state in this dir, so a second
// overlayd for the same network and state dir cannot run beside the first
// (both would believe they own one subnet). The lock is released by the
// returned function or when the process dies; the kernel drops flocks of
// dead processes, so a crash never leaves a stale lock behind.
func (d Dir) Lock(network string) (unlock func(), err error) {
	p := filepath.Join(d.Path, "networks", network+".lock")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("create state dir %s: %w", filepath.Dir(p), err)
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", p, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s: %w", p, ErrLocked)
		}
		return nil, fmt.Errorf("lock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}

// HostIDPath is the file holding the host's ID: deleting it (with the
// overlayd stopped) gives a cloned machine an identity of its own.
func (d Dir) HostIDPath() string { return filepath.Join(d.Path, "host-id") }
