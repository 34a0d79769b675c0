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
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain removes what an earlier run left behind when it was killed
// before its cleanups could run (go test's -timeout panic, SIGKILL, ^C):
// namespaces named nsPrefix+PID+"-…" whose PID no longer exists, and the
// processes (that run's devetcd, overlayd and runtime daemons) still running
// inside them; and the runtime tests' cgroups, named the same way, with
// the container processes still in them.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		sweepStale()
		sweepStaleCgroups()
	}
	os.Exit(m.Run())
}

func sweepStaleCgroups() {
	var tops []string
	for _, pattern := range []string{cgroupRoot + "/*/" + nsPrefix + "*", cgroupRoot + "/" + nsPrefix + "*"} {
		m, _ := filepath.Glob(pattern)
		tops = append(tops, m...)
	}
	for _, top := range tops {
		owner, ok := ownerPID(filepath.Base(top))
		if !ok || alive(owner) {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(top, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for _, d := range dirs {
			procs, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(procs)) {
				if pid, err := strconv.Atoi(f); err == nil {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		time.Sleep(200 * time.Millisecond)    // killed processes leave their cgroups
		for i := len(dirs) - 1; i >= 0; i-- { // WalkDir lists parents first
			_ = os.Remove(dirs[i])
		}
		if _, err := os.Stat(top); err == nil {
			fmt.Fprintf(os.Stderr, "e2e: cgroup %s left by killed test run %d could not be removed\n", top, owner)
		} else if strings.HasPrefix(top, cgroupRoot+"/memory/") { // once, not per hierarchy
			fmt.Fprintf(os.Stderr, "e2e: removed cgroups %s left by killed test run %d\n", filepath.Base(top), owner)
		}
	}
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
