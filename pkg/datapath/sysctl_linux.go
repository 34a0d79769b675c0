package datapath

import (
	"bytes"
	"fmt"
	"os"

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
	return setSysctl("net/ipv4/ip_forward", "1")
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
