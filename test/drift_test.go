package e2e

import (
	"slices"
	"testing"
	"time"
)

// TestDriftRepaired: kernel state removed behind overlayd's back (a route
// deleted by hand, the whole VXLAN device deleted by a network restart) comes
// back by the periodic reconcile, with no etcd event at all; so do flushed
// FORWARD rules. These are the
// failures flannel users report (routes lost after a network restart).
func TestDriftRepaired(t *testing.T) {
	c := newCluster(t, 2)
	c.SetNetwork()
	for _, h := range c.Hosts {
		h.Start("--resync-interval", "500ms")
	}
	for _, h := range c.Hosts {
		h.WaitReady()
	}
	h1, h2 := c.Hosts[0], c.Hosts[1]
	a, b := h1.Attach("a"), h2.Attach("b")
	a.mustReach(t, b.IP)
	peer := h2.HostFile().Subnet.String()
	dev := "overlay.1"
	hasRoute := func() bool { return slices.Contains(h1.vxlanRoutes(), peer) }

	inNS(t, h1.NS, "ip", "route", "del", peer)
	if hasRoute() {
		t.Fatal("route still there right after ip route del")
	}
	waitFor(t, 10*time.Second, "h1's route to "+peer+" to be restored", hasRoute)
	a.mustReach(t, b.IP)

	inNS(t, h1.NS, "ip", "link", "del", dev)
	waitFor(t, 10*time.Second, "h1's "+dev+" and its peers to be restored", hasRoute)
	a.mustReach(t, b.IP)
	b.mustReach(t, a.IP)

	// Someone flushes the FORWARD rules (a firewall reload): with the
	// policy DROP, traffic stops until overlayd puts them back.
	inNS(t, h1.NS, "iptables", "-F", "OVERLAY-FORWARD")
	waitFor(t, 10*time.Second, "h1's FORWARD rules to be restored", func() bool {
		return nsCmd(h1.NS, "iptables", "-C", "OVERLAY-FORWARD", "-s", overlayCIDR,
			"-m", "comment", "--comment", "overlay-net="+networkName, "-j", "ACCEPT").Run() == nil
	})
	a.mustReach(t, b.IP)
}
