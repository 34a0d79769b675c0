package netconf

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	cases := []struct {
		name, in string
		want     Config
		errHas   string
	}{
		{name: "defaults", in: `{"network":"10.244.0.0/16"}`,
			want: Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, VNI: 1, Port: 8472, IPMasq: true}},
		{name: "all fields", in: `{"network":"10.0.0.0/8","subnetLen":20,"vni":4096,"port":4789}`,
			want: Config{Network: netip.MustParsePrefix("10.0.0.0/8"), SubnetLen: 20, VNI: 4096, Port: 4789, IPMasq: true}},
		{name: "not json", in: `{`, errHas: "not valid JSON"},
		{name: "missing network", in: `{}`, errHas: `"network" is missing`},
		{name: "bad cidr", in: `{"network":"10.244.0.0"}`, errHas: `"network" "10.244.0.0" is not a CIDR`},
		{name: "host bits", in: `{"network":"10.244.1.0/16"}`, errHas: "did you mean 10.244.0.0/16"},
		{name: "ipv6", in: `{"network":"fd00::/48"}`, errHas: "not IPv4"},
		{name: "subnet too short", in: `{"network":"10.244.0.0/16","subnetLen":16}`, errHas: `"subnetLen" 16 does not fit`},
		{name: "subnet too long", in: `{"network":"10.244.0.0/16","subnetLen":31}`, errHas: `"subnetLen" 31 does not fit`},
		{name: "subnet negative", in: `{"network":"10.244.0.0/16","subnetLen":-1}`, errHas: `"subnetLen"`},
		{name: "vni zero", in: `{"network":"10.244.0.0/16","vni":0}`, errHas: `"vni" 0 is out of range`},
		{name: "vni too big", in: `{"network":"10.244.0.0/16","vni":16777216}`, errHas: `"vni" 16777216`},
		{name: "port zero", in: `{"network":"10.244.0.0/16","port":0}`, errHas: `"port" 0`},
		{name: "port too big", in: `{"network":"10.244.0.0/16","port":70000}`, errHas: `"port" 70000`},
		{name: "wrong type", in: `{"network":"10.244.0.0/16","vni":"one"}`, errHas: "not valid JSON"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse([]byte(tc.in))
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("Parse(%s) err = %v, want it to contain %q", tc.in, err, tc.errHas)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("Parse(%s) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	c := Config{Network: netip.MustParsePrefix("10.1.0.0/16"), SubnetLen: 26, VNI: 77, Port: 4789}
	data, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Parse(data)
	if err != nil || got != c {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, c)
	}
}

func TestSubnets(t *testing.T) {
	c := Config{Network: netip.MustParsePrefix("10.244.0.0/16"), SubnetLen: 24, VNI: 1, Port: 8472}
	hp := c.HostPool()
	if n := hp.Count(); n != 256 {
		t.Fatalf("HostPool().Count() = %d", n)
	}
	if s := hp.At(3); s != netip.MustParsePrefix("10.244.3.0/24") {
		t.Fatalf("At(3) = %v", s)
	}
	if s := hp.At(255); s != netip.MustParsePrefix("10.244.255.0/24") {
		t.Fatalf("At(255) = %v", s)
	}
	for _, tc := range []struct {
		s    string
		want bool
	}{{"10.244.3.0/24", true}, {"10.244.3.0/25", false}, {"10.245.0.0/24", false}, {"10.244.3.1/24", false}} {
		if got := c.Contains(netip.MustParsePrefix(tc.s)); got != tc.want {
			t.Errorf("Contains(%s) = %v", tc.s, got)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"default", "blue-2", "a.b_c", "X"} {
		if err := ValidateName(ok); err != nil {
			t.Errorf("ValidateName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "a/b", "-x", "has space", strings.Repeat("a", 64)} {
		if err := ValidateName(bad); err == nil {
			t.Errorf("ValidateName(%q) = nil, want error", bad)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"network":"10.244.0.0/16","subnetLen":24,"vni":1,"port":8472}`))
	f.Add([]byte(`{"network":"0.0.0.0/0","subnetLen":30}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted %s but Validate says %v", data, err)
		}
		if c.HostPool().Count() < 2 && c.SubnetLen != c.Network.Bits()+1 {
			t.Fatalf("odd subnet count for %+v", c)
		}
	})
}
