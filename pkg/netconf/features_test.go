package netconf

import (
	"strings"
	"testing"
)

// ipMasq is on unless turned off (kube-flannel's default); directRouting
// off unless turned on; both survive Marshal.
func TestMasqAndDirectRoutingFields(t *testing.T) {
	c, err := Parse([]byte(`{"network":"10.244.0.0/16"}`))
	if err != nil || !c.IPMasq || c.DirectRouting {
		t.Fatalf("defaults: ipMasq %v directRouting %v, err %v; want true, false", c.IPMasq, c.DirectRouting, err)
	}
	c, err = Parse([]byte(`{"network":"10.244.0.0/16","ipMasq":false,"directRouting":true}`))
	if err != nil || c.IPMasq || !c.DirectRouting {
		t.Fatalf("set: ipMasq %v directRouting %v, err %v; want false, true", c.IPMasq, c.DirectRouting, err)
	}
	data, _ := c.Marshal()
	back, err := Parse(data)
	if err != nil || back != c {
		t.Fatalf("round trip of %s = %+v, %v; want %+v", data, back, err, c)
	}
	if _, err := Parse([]byte(`{"network":"10.244.0.0/16","ipMasq":"yes"}`)); err == nil {
		t.Error(`ipMasq "yes" was accepted`)
	}
}

func mustConfig(t *testing.T, js string) Config {
	t.Helper()
	c, err := Parse([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Networks must not share a VNI, addresses or a UDP port; each refusal
// names the field and the other network.
func TestCheckOthers(t *testing.T) {
	blue := mustConfig(t, `{"network":"10.244.0.0/16"}`)
	others := map[string]Config{"blue": blue}
	cases := map[string]struct {
		cfg  string
		want string
	}{
		"vni":     {`{"network":"10.245.0.0/16","port":4789}`, `field "vni" 1 is already network blue's`},
		"overlap": {`{"network":"10.244.128.0/17","vni":2,"port":4789}`, `field "network" 10.244.128.0/17 overlaps network blue's`},
		"port":    {`{"network":"10.245.0.0/16","vni":2}`, `field "port" 8472 is already network blue's`},
	}
	for name, tc := range cases {
		err := mustConfig(t, tc.cfg).CheckOthers(others)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", name, err, tc.want)
		}
	}
	if err := mustConfig(t, `{"network":"10.245.0.0/16","vni":2,"port":8473}`).CheckOthers(others); err != nil {
		t.Errorf("a distinct network was refused: %v", err)
	}
	if err := mustConfig(t, `{"network":"10.245.0.0/16","vni":2}`).CheckOthers(others); !strings.Contains(err.Error(), "--port 8473") {
		t.Errorf("port clash does not suggest a free port: %v", err)
	}
}

// An MTU override larger than a host's underlay leaves is refused, naming
// the field, the host and the largest that fits.
func TestCheckUnderlay(t *testing.T) {
	c := mustConfig(t, `{"network":"10.244.0.0/16","mtu":1460}`)
	err := c.CheckUnderlay("host h2", 1500)
	if err == nil || !strings.Contains(err.Error(), `field "mtu" 1460`) || !strings.Contains(err.Error(), "host h2") || !strings.Contains(err.Error(), "at most 1450") {
		t.Errorf("err = %v", err)
	}
	if err := c.CheckUnderlay("host h1", 9000); err != nil {
		t.Errorf("jumbo host refused: %v", err)
	}
	if got := c.OverlayMTU(9000); got != 1460 {
		t.Errorf("OverlayMTU with override = %d", got)
	}
	c.MTU = 0
	if got := c.OverlayMTU(9000); got != 8950 || c.CheckUnderlay("x", 1500) != nil {
		t.Errorf("derived: OverlayMTU %d", got)
	}
}
