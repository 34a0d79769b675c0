package bench

import (
	"fmt"
	"os/exec"
	"runtime"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

// netnsDir is where `ip netns add` mounts named namespaces.
const netnsDir = "/var/run/netns/"

// addNetns creates a named network namespace with its loopback up.
func addNetns(name string) error {
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return fmt.Errorf("create netns %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return fmt.Errorf("set lo up in %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// delNetns removes a named namespace; one that is gone already is fine.
func delNetns(name string) error {
	out, err := exec.Command("ip", "netns", "del", name).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "No such file") {
		return fmt.Errorf("remove netns %s: %v: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// inNetns runs fn on a thread inside the named namespace, as a runtime's
// CNI call runs in the host namespace: processes fn starts inherit it.
func inNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	n, err := ns.GetNS(netnsDir + name)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", name, err)
	}
	defer n.Close()
	return n.Do(func(ns.NetNS) error { return fn() })
}
