package main

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

func TestLoadNetConf(t *testing.T) {
	tests := []struct {
		name        string
		json        string
		wantNetwork string
		wantRunDir  string
		wantIPAM    string
		wantDNS     []string
	}{
		{
			name:        "defaults",
			json:        `{"cniVersion":"1.0.0","name":"n","type":"overlay","ipam":{"type":"overlay-ipam"}}`,
			wantNetwork: "default", wantRunDir: "/run/overlay", wantIPAM: "overlay-ipam",
		},
		{
			name:        "all set",
			json:        `{"cniVersion":"0.4.0","name":"n","type":"overlay","network":"blue.2","runDir":"/tmp/run","ipam":{"type":"host-local"},"dns":{"nameservers":["10.96.0.10"]}}`,
			wantNetwork: "blue.2", wantRunDir: "/tmp/run", wantIPAM: "host-local", wantDNS: []string{"10.96.0.10"},
		},
		{
			name:        "prevResult is not parsed",
			json:        `{"cniVersion":"1.0.0","ipam":{"type":"overlay-ipam"},"prevResult":{"ips":"garbage"}}`,
			wantNetwork: "default", wantRunDir: "/run/overlay", wantIPAM: "overlay-ipam",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadNetConf([]byte(tt.json))
			if err != nil {
				t.Fatalf("loadNetConf: %v", err)
			}
			if c.Network != tt.wantNetwork || c.RunDir != tt.wantRunDir || c.IPAM.Type != tt.wantIPAM {
				t.Errorf("got network %q runDir %q ipam %q; want %q %q %q",
					c.Network, c.RunDir, c.IPAM.Type, tt.wantNetwork, tt.wantRunDir, tt.wantIPAM)
			}
			if strings.Join(c.DNS.Nameservers, ",") != strings.Join(tt.wantDNS, ",") {
				t.Errorf("DNS nameservers = %v, want %v", c.DNS.Nameservers, tt.wantDNS)
			}
		})
	}
}

func TestLoadNetConfRejects(t *testing.T) {
	tests := []struct {
		name       string
		json       string
		wantField  string
		wantDetail string
	}{
		{"missing ipam.type", `{"cniVersion":"1.0.0","name":"n","type":"overlay"}`, `"ipam.type"`, "ipam.type is missing; use overlay-ipam"},
		{"empty ipam.type", `{"cniVersion":"1.0.0","ipam":{"type":""}}`, `"ipam.type"`, "use overlay-ipam"},
		{"ipam.type is a path", `{"cniVersion":"1.0.0","ipam":{"type":"../bin/x"}}`, `"ipam.type"`, "plugin name"},
		{"bad network name", `{"cniVersion":"1.0.0","network":"a/b","ipam":{"type":"overlay-ipam"}}`, `"network"`, "a/b"},
		{"empty network name", `{"cniVersion":"1.0.0","network":"","ipam":{"type":"overlay-ipam"}}`, `"network"`, "invalid"},
		{"network not a string", `{"cniVersion":"1.0.0","network":1,"ipam":{"type":"overlay-ipam"}}`, `"network"`, "number"},
		{"relative runDir", `{"cniVersion":"1.0.0","runDir":"run/overlay","ipam":{"type":"overlay-ipam"}}`, `"runDir"`, "absolute"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadNetConf([]byte(tt.json))
			var e *types.Error
			if !errors.As(err, &e) || e.Code != types.ErrInvalidNetworkConfig {
				t.Fatalf("loadNetConf error = %v, want a CNI error with code 7", err)
			}
			if !strings.Contains(e.Msg, tt.wantField) || !strings.Contains(e.Details, tt.wantDetail) {
				t.Errorf("error = %q / %q, want field %s and %q", e.Msg, e.Details, tt.wantField, tt.wantDetail)
			}
		})
	}
}

func TestPrevResult(t *testing.T) {
	conf := `{"cniVersion":"1.0.0","ipam":{"type":"overlay-ipam"},"prevResult":{"cniVersion":"1.0.0",
		"interfaces":[{"name":"veth1"},{"name":"eth0","sandbox":"/run/netns/c"},{"name":"eth1","sandbox":"/run/netns/c"}],
		"ips":[{"interface":0,"address":"10.244.7.200/24"},{"interface":2,"address":"10.244.8.3/24"},{"interface":1,"address":"10.244.7.5/24","gateway":"10.244.7.1"}]}}`
	c, err := loadNetConf([]byte(conf))
	if err != nil {
		t.Fatal(err)
	}
	prev, err := prevResult(c)
	if err != nil {
		t.Fatalf("prevResult: %v", err)
	}
	got, err := containerAddr(prev, "eth0")
	if err != nil || got != netip.MustParsePrefix("10.244.7.5/24") {
		t.Errorf("containerAddr(eth0) = %v, %v; want 10.244.7.5/24", got, err)
	}
	if _, err := containerAddr(prev, "eth9"); err == nil {
		t.Error("containerAddr found an address for an interface the result does not list")
	}

	c, _ = loadNetConf([]byte(`{"cniVersion":"1.0.0","ipam":{"type":"overlay-ipam"}}`))
	if _, err := prevResult(c); err == nil || !strings.Contains(err.Error(), "prevResult") {
		t.Errorf("prevResult without one = %v, want an error naming prevResult", err)
	}
}

func TestIPAMAddr(t *testing.T) {
	subnet := netip.MustParsePrefix("10.244.7.0/24")
	parse := func(js string) *current.Result {
		r, err := version.NewResult("1.0.0", []byte(js))
		if err != nil {
			t.Fatal(err)
		}
		res, _ := current.NewResultFromResult(r)
		return res
	}
	tests := []struct {
		name, result, want string
	}{
		{"first IPv4", `{"cniVersion":"1.0.0","ips":[{"address":"fd00::5/64"},{"address":"10.244.7.9/24"}]}`, "10.244.7.9/24"},
		{"outside the subnet", `{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.9/24"}]}`, ""},
		{"wrong prefix length", `{"cniVersion":"1.0.0","ips":[{"address":"10.244.7.9/16"}]}`, ""},
		{"none", `{"cniVersion":"1.0.0","ips":[]}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ipamAddr(parse(tt.result), subnet)
			if tt.want == "" {
				if err == nil {
					t.Errorf("ipamAddr = %s, want an error", got)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Errorf("ipamAddr = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}
