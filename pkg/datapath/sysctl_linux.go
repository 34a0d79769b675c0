package datapath

import (
	"bytes"
	"fmt"
	"os"
)

const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// EnableIPv4Forwarding sets net.ipv4.ip_forward=1 in the calling thread's
// network namespace (procfs resolves net sysctls by the opener's namespace).
// It writes only when the value differs, so it also works where forwarding is
// already on and /proc/sys is mounted read-only (as inside many containers).
func EnableIPv4Forwarding() error {
	cur, err := os.ReadFile(ipForwardPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", ipForwardPath, err)
	}
	if string(bytes.TrimSpace(cur)) == "1" {
		return nil
	}
	if err := os.WriteFile(ipForwardPath, []byte("1"), 0o644); err != nil {
		return fmt.Errorf("enable IPv4 forwarding via %s: %w", ipForwardPath, err)
	}
	return nil
}
