package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Usage is what a process has cost so far.
type Usage struct {
	RSSBytes  int64         // resident now
	PeakBytes int64         // the most it was resident (VmHWM)
	CPU       time.Duration // user + system
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc on every
// architecture it supports.
const clockTicks = 100

// ProcUsage reads pid's memory and CPU use from /proc.
func ProcUsage(pid int) (Usage, error) {
	var u Usage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("read usage of pid %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "VmRSS":
			u.RSSBytes = kB(v)
		case "VmHWM":
			u.PeakBytes = kB(v)
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, fmt.Errorf("read usage of pid %d: %w", pid, err)
	}
	// Fields after the command name, which may hold spaces, are plain:
	// utime and stime are the 14th and 15th of the line.
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return u, fmt.Errorf("read usage of pid %d: short stat line", pid)
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	u.CPU = time.Duration(utime+stime) * time.Second / clockTicks
	return u, nil
}

func kB(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return n * 1024
}
