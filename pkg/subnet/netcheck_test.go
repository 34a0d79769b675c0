package subnet

import (
	"strings"
	"testing"

	"github.com/overlaynet/overlay/pkg/etcdtest"
)

// network set refuses a config that clashes with another network (VNI,
// range, port) or whose MTU override a member's underlay cannot carry,
// naming the field; nothing is written.
func TestSetNetworkConfigChecksOthersAndMTU(t *testing.T) {
	srv := etcdtest.New(t)
	c := connect(t, srv)
	ctx := t.Context()
	if err := c.SetNetworkConfig(ctx, "default", testNet); err != nil {
		t.Fatal(err)
	}
	blue := withCIDR(testNet, "10.245.0.0/16")
	for _, tc := range []struct {
		field  string
		mutate func()
	}{
		{`"vni" 1`, func() {}},
		{`"port" 8472`, func() { blue.VNI = 2 }},
		{`"network" 10`, func() { blue.Network, blue.Port = testNet.Network, 4789 }},
	} {
		field := tc.field
		tc.mutate()
		err := c.SetNetworkConfig(ctx, "blue", blue)
		if err == nil || !strings.Contains(err.Error(), field) || !strings.Contains(err.Error(), "network default's") {
			t.Errorf("clash on %s: err = %v", field, err)
		}
	}
	if _, err := c.NetworkConfig(ctx, "blue"); err == nil {
		t.Fatal("a refused config was written")
	}
	blue = withCIDR(testNet, "10.245.0.0/16")
	blue.VNI, blue.Port = 2, 4789
	if err := c.SetNetworkConfig(ctx, "blue", blue); err != nil {
		t.Fatalf("distinct network refused: %v", err)
	}

	rec := hostRecord(1)
	rec.UnderlayMTU = 1500
	acquire(t, c, testNet, rec, testNet.Network)
	tooBig := testNet
	tooBig.MTU = 1460
	err := c.SetNetworkConfig(ctx, "default", tooBig)
	if err == nil || !strings.Contains(err.Error(), `field "mtu" 1460`) || !strings.Contains(err.Error(), "h1") {
		t.Fatalf("MTU override over a 1500-byte member: %v", err)
	}
	tooBig.MTU = 1450
	if err := c.SetNetworkConfig(ctx, "default", tooBig); err != nil {
		t.Fatalf("MTU override that fits: %v", err)
	}
}
