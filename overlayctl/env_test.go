package main

import (
	"strings"
	"testing"
)

// The etcd flags default to the environment overlayd runs with (the
// DaemonSet's container), so `kubectl exec ds/overlayd -- overlayctl
// leases` needs no flags; a flag still wins.
func TestEtcdFlagsFromEnvironment(t *testing.T) {
	n := newCtlNet(t)
	t.Setenv("OVERLAY_ETCD_ENDPOINTS", n.srv.ClientURL())
	out, errOut, err := runSplit(t, "network", "get", "default")
	if err != nil || !strings.Contains(out, "10.244.0.0/16") {
		t.Fatalf("network get with OVERLAY_ETCD_ENDPOINTS: %v\n%s%s", err, out, errOut)
	}
	t.Setenv("OVERLAY_ETCD_CAFILE", "/nonexistent/ca.crt")
	if _, _, err := runSplit(t, "network", "get", "default"); err == nil || !strings.Contains(err.Error(), "--etcd-cafile") {
		t.Fatalf("OVERLAY_ETCD_CAFILE not used: %v", err)
	}
	t.Setenv("OVERLAY_ETCD_CAFILE", "")
	if _, _, err := runSplit(t, "--etcd-endpoints", "http://127.0.0.1:1", "--etcd-timeout", "1s", "network", "get", "default"); err == nil {
		t.Fatal("--etcd-endpoints did not win over OVERLAY_ETCD_ENDPOINTS")
	}
}
