package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overlaynet/overlay/pkg/datapath"
)

// reapEnv, set to the reaper lock's path, makes the plugin binary a veth
// reaper instead of a CNI plugin.
const reapEnv = "OVERLAY_REAP_VETHS"

// reaperLock is the file, in the run dir, whose flock the one reaper of a
// host holds.
const reaperLock = ".veth-reaper.lock"

// lockFD is where the reaper finds that lock, held, from its parent.
const lockFD = 3

// reapLater deletes the pairs DEL disarmed after DEL has answered. The
// kernel takes 15 to 25 ms (RCU grace periods) to delete a veth pair,
// longer than all the rest of a DEL, and nothing about it is left for the
// runtime to wait for: the container's address is off its interface and
// released, the pair is off the bridge and marked doomed. So a detached
// copy of this binary deletes every doomed pair in one request. One such
// reaper runs at a time: a DEL that finds one running leaves its pair to
// it (the reaper looks again after it lets the lock go, and the DEL marked
// its pair before it tried the lock), so a burst of DELs starts few
// processes and costs the kernel few rounds of grace periods. If no reaper
// can start, the pairs are deleted here. If one dies first, the pairs stay,
// harmless, until the next reaper or CNI GC.
func reapLater(runDir string) error {
	lock, err := openReaperLock(runDir)
	if err != nil {
		return errors.Join(err, datapath.DeleteDoomedVeths())
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil // the running reaper takes this pair too
		}
		return datapath.DeleteDoomedVeths()
	}
	if err := startReaper(lock); err != nil {
		return datapath.DeleteDoomedVeths()
	}
	return nil
}

func openReaperLock(runDir string) (*os.File, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(filepath.Join(runDir, reaperLock), os.O_RDWR|os.O_CREATE, 0o600)
}

// startReaper starts the detached copy, handing it the held lock.
func startReaper(lock *os.File) error {
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = []string{reapEnv + "=" + lock.Name()}
	cmd.ExtraFiles = []*os.File{lock} // becomes lockFD
	// Its own session: the runtime's signals to the plugin's process group
	// do not reach it, and no stdio ties the runtime to it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// reapVeths is the reaper's whole life; it returns the exit status. It
// deletes the doomed pairs, lets the lock go, and goes on while pairs
// marked meanwhile are left. It waits for the lock rather than leave them
// to whoever holds it: that may be the DEL that started it, not yet closed
// its copy, or a newer reaper that already looked (both soon let go).
func reapVeths(lockPath string) int {
	lock := os.NewFile(lockFD, lockPath)
	for {
		err := datapath.DeleteDoomedVeths()
		lock.Close()
		if err != nil {
			return 1
		}
		if more, err := datapath.AnyDoomedVeth(); err != nil || !more {
			return 0
		}
		if lock, err = lockWithin(lockPath, reaperLockWait); err != nil {
			return 1
		}
	}
}

// reaperLockWait bounds a reaper's wait for the lock; holders keep it for
// one round of deletions.
const reaperLockWait = 5 * time.Second

// lockWithin opens path and takes its flock, polling up to wait.
func lockWithin(path string, wait time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(wait)
	for pause := time.Millisecond; ; pause = min(2*pause, 50*time.Millisecond) {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, err
		}
		time.Sleep(pause)
	}
}
