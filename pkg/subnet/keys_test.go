package subnet

import (
	"net/netip"
	"testing"
)

func TestSubnetKeyRoundTrip(t *testing.T) {
	k := Keys{Prefix: "/overlay/"}
	for _, s := range []string{"10.244.3.0/24", "10.0.0.0/8", "192.168.1.4/30", "0.0.0.0/0"} {
		p := netip.MustParsePrefix(s)
		key := k.Subnet("default", p)
		got, err := k.ParseSubnetKey("default", key)
		if err != nil || got != p {
			t.Errorf("ParseSubnetKey(%q) = %v, %v; want %v", key, got, err, p)
		}
	}
	if got := k.Subnet("default", netip.MustParsePrefix("10.244.3.0/24")); got != "/overlay/networks/default/subnets/10.244.3.0-24" {
		t.Errorf("Subnet key = %q", got)
	}
	if got := k.Config("blue"); got != "/overlay/networks/blue/config" {
		t.Errorf("Config key = %q", got)
	}
}

func TestParseSubnetKeyRejects(t *testing.T) {
	k := Keys{Prefix: "/overlay"}
	bad := []string{
		"/overlay/networks/default/subnets/10.244.3.0/24",   // slash form
		"/overlay/networks/default/subnets/10.244.3.1-24",   // host bits
		"/overlay/networks/default/subnets/10.244.3.0-33",   // too long
		"/overlay/networks/default/subnets/10.244.3.0-024",  // non-canonical length
		"/overlay/networks/default/subnets/fd00::-64",       // IPv6
		"/overlay/networks/default/subnets/10.244.3.0-",     // no length
		"/overlay/networks/default2/subnets/10.244.3.0-24",  // other network
		"/overlay/networks/default/subnets/",                // empty
		"/overlay/networks/default/subnets/10.244.3.0-24-1", // trailing junk
	}
	for _, key := range bad {
		if p, err := k.ParseSubnetKey("default", key); err == nil {
			t.Errorf("ParseSubnetKey(%q) = %v, want error", key, p)
		}
	}
}

func FuzzParseSubnet(f *testing.F) {
	for _, s := range []string{"10.244.3.0-24", "0.0.0.0-0", "1.2.3.4-32", "x-1", "10.0.0.0-8-", "::-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, seg string) {
		p, err := ParseSubnet(seg)
		if err != nil {
			return
		}
		// Anything accepted is canonical: it formats back to the same segment.
		if got := FormatSubnet(p); got != seg {
			t.Fatalf("ParseSubnet(%q) = %v, formats back as %q", seg, p, got)
		}
		if !p.Addr().Is4() || p.Masked() != p {
			t.Fatalf("ParseSubnet(%q) = %v: not a canonical IPv4 prefix", seg, p)
		}
	})
}

func TestRecordValidate(t *testing.T) {
	good := Record{Version: 1, Kind: KindHost, HostID: "h", PublicIP: netip.MustParseAddr("198.18.0.2"), VTEPMAC: "02:00:00:00:00:01"}
	if err := good.Validate(); err != nil {
		t.Fatalf("valid record: %v", err)
	}
	cases := map[string]func(*Record){
		"no version":   func(r *Record) { r.Version = 0 },
		"unknown kind": func(r *Record) { r.Kind = "router" },
		"host advertises": func(r *Record) {
			r.Advertise = []netip.Prefix{netip.MustParsePrefix("192.168.1.0/24")}
		},
		"edge advertises default": func(r *Record) {
			r.Kind, r.Advertise = KindEdge, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}
		},
		"no host id":   func(r *Record) { r.HostID = "" },
		"no public ip": func(r *Record) { r.PublicIP = netip.Addr{} },
		"ipv6 public":  func(r *Record) { r.PublicIP = netip.MustParseAddr("2001:db8::1") },
		"bad mac":      func(r *Record) { r.VTEPMAC = "zz" },
		"long mac":     func(r *Record) { r.VTEPMAC = "02:00:00:00:00:00:00:01" },
		"zero mac":     func(r *Record) { r.VTEPMAC = "00:00:00:00:00:00" },
		"multicast":    func(r *Record) { r.VTEPMAC = "01:00:5e:00:00:01" },
	}
	for name, mutate := range cases {
		r := good
		mutate(&r)
		if err := r.Validate(); err == nil {
			t.Errorf("%s: Validate() = nil, want error", name)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add([]byte(`{"version":1,"kind":"host","hostID":"a","publicIP":"198.18.0.2","vtepMAC":"02:00:00:00:00:01"}`))
	f.Add([]byte(`{"publicIP":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(data)
		if err != nil {
			return
		}
		if r.Validate() != nil {
			t.Fatalf("decodeRecord accepted an invalid record %+v", r)
		}
	})
}
