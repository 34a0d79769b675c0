package datapath

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/containernetworking/plugins/pkg/utils/sysctl"
)

const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// EnableIPv4Forwarding sets net.ipv4.ip_forward=1 in the calling thread's
// network namespace (procfs resolves net sysctls by the opener's namespace).
// It writes only when the value differs, so this also works where
// forwarding is already on and /proc/sys is read-only.
func EnableIPv4Forwarding() error {
	on, err := IPv4Forwarding()
	if err != nil || on {
		return err
	}
	err = setSysctl("net/ipv4/ip_forward", "1")
	if errors.Is(err, syscall.EROFS) {
		// A container without privileges (the Kubernetes DaemonSet) sees
		// /proc/sys read-only: the node must have forwarding on already.
		return fmt.Errorf("%w: net.ipv4.ip_forward is 0 and this process cannot change it; turn it on on the host (sysctl -w net.ipv4.ip_forward=1, and in /etc/sysctl.d to keep it), as Kubernetes nodes need anyway", err)
	}
	return err
}

// IPv4Forwarding reports whether net.ipv4.ip_forward is on in the calling
// thread's network namespace.
func IPv4Forwarding() (bool, error) {
	cur, err := os.ReadFile(ipForwardPath)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", ipForwardPath, err)
	}
	return string(bytes.TrimSpace(cur)) == "1", nil
}

// setSysctl writes a sysctl of the calling thread's network namespace.
func setSysctl(name, value string) error {
	if _, err := sysctl.Sysctl(name, value); err != nil {
		return fmt.Errorf("set sysctl %s=%s: %w", name, value, err)
	}
	return nil
}
