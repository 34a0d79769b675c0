// Package e2e holds overlay's end-to-end tests: real overlayd processes on
// simulated hosts (network namespaces joined by an underlay bridge), a real
// etcd, and containers attached through the built CNI plugins via libcni.
// They need root and the binaries of `make build` (OVERLAY_BIN_DIR).
package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestMain removes what an earlier run left behind when it was killed
// before its cleanups could run (go test's -timeout panic, SIGKILL, ^C):
// namespaces named nsPrefix+PID+"-…" whose PID no longer exists, and the
// processes (that run's devetcd and overlayd) still running inside them.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		sweepStale()
	}
	os.Exit(m.Run())
}

func sweepStale() {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		owner, ok := ownerPID(e.Name())
		if !ok || alive(owner) {
			continue
		}
		out, _ := exec.Command("ip", "netns", "pids", e.Name()).Output()
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if err := exec.Command("ip", "netns", "del", e.Name()).Run(); err == nil {
			fmt.Fprintf(os.Stderr, "e2e: removed namespace %s left by killed test run %d\n", e.Name(), owner)
		}
	}
}

// ownerPID parses the PID out of nsPrefix+PID+"-…".
func ownerPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, nsPrefix)
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	return pid, err == nil && pid > 0
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
