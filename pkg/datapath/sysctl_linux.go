package datapath

import (
	"bytes"
	"fmt"
	"os"

	"github.com/containernetworking/plugins/pkg/ip"
)

const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// EnableIPv4Forwarding sets net.ipv4.ip_forward=1 in the calling thread's
// network namespace (procfs resolves net sysctls by the opener's namespace).
// CNI's ip package writes only when the value differs, so this also works
// where forwarding is already on and /proc/sys is read-only.
func EnableIPv4Forwarding() error {
	if err := ip.EnableIP4Forward(); err != nil {
		return fmt.Errorf("enable IPv4 forwarding via %s: %w", ipForwardPath, err)
	}
	return nil
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
