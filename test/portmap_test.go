package e2e

import (
	"fmt"
	"testing"
	"time"
)

// TestPortmapChain runs the shipped conflist (overlay, then portmap) with a
// published port and reaches it three ways: from a container on another
// host, from the host itself, and from the publishing container through its
// own host's address (hairpin: the DNATed packet leaves the bridge by the
// port it came in on, which needs hairpin mode on the host veth).
func TestPortmapChain(t *testing.T) {
	c := newCluster(t, 2)
	c.SetNetwork()
	c.startAll()
	h1, h2 := c.Hosts[0], c.Hosts[1]
	list := h1.shippedConfList("10-overlay.conflist")
	const hostPort, ctrPort = 18080, 5201
	caps := map[string]any{"portMappings": []map[string]any{{"hostPort": hostPort, "containerPort": ctrPort, "protocol": "tcp"}}}
	web, err := h1.AttachWithCaps("web", list, caps)
	if err != nil {
		t.Fatal(err)
	}
	other := h2.Attach("other")
	other.mustReach(t, web.IP)

	target := h1.IP
	for _, from := range []struct{ name, ns string }{
		{"container on h2", other.NS},
		{"h2 itself", h2.NS},
		{"the publishing container (hairpin)", web.NS},
	} {
		t.Run(from.name, func(t *testing.T) {
			srv := nsCmd(web.NS, "iperf3", "-s", "-1", "-p", fmt.Sprint(ctrPort))
			if err := srv.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
			var out []byte
			var err error
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) { // the server needs a moment to listen
				out, err = nsCmd(from.ns, "iperf3", "-c", target, "-p", fmt.Sprint(hostPort), "-t", "1", "--connect-timeout", "2000").CombinedOutput()
				if err == nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("%s -> %s:%d (published by %s): %v\n%s", from.name, target, hostPort, web.IP, err, out)
			}
		})
	}
}
