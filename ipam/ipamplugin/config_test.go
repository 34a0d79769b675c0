package ipamplugin

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name        string
		json        string
		wantNetwork string
		wantRunDir  string
		wantDataDir string
	}{
		{
			name:        "defaults",
			json:        `{"cniVersion":"1.0.0","name":"n","type":"overlay","ipam":{"type":"overlay-ipam"}}`,
			wantNetwork: "default", wantRunDir: "/run/overlay", wantDataDir: "/var/lib/cni/overlay",
		},
		{
			name:        "all set",
			json:        `{"cniVersion":"1.0.0","name":"n","type":"overlay","network":"blue","runDir":"/tmp/r","ipam":{"type":"overlay-ipam","dataDir":"/tmp/d"}}`,
			wantNetwork: "blue", wantRunDir: "/tmp/r", wantDataDir: "/tmp/d",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := loadConfig([]byte(tt.json))
			if err != nil {
				t.Fatalf("loadConfig: %v", err)
			}
			if c.Network != tt.wantNetwork || c.RunDir != tt.wantRunDir || c.IPAM.DataDir != tt.wantDataDir {
				t.Errorf("got network %q runDir %q dataDir %q; want %q %q %q",
					c.Network, c.RunDir, c.IPAM.DataDir, tt.wantNetwork, tt.wantRunDir, tt.wantDataDir)
			}
		})
	}
}

func TestLoadConfigRejects(t *testing.T) {
	tests := []struct {
		name      string
		json      string
		wantField string
	}{
		{"bad network name", `{"cniVersion":"1.0.0","network":"../etc","ipam":{"type":"overlay-ipam"}}`, `"network"`},
		{"network not a string", `{"cniVersion":"1.0.0","network":5,"ipam":{"type":"overlay-ipam"}}`, `"network"`},
		{"relative runDir", `{"cniVersion":"1.0.0","runDir":"run","ipam":{"type":"overlay-ipam"}}`, `"runDir"`},
		{"relative dataDir", `{"cniVersion":"1.0.0","ipam":{"type":"overlay-ipam","dataDir":"x"}}`, `"ipam.dataDir"`},
		{"dataDir not a string", `{"cniVersion":"1.0.0","ipam":{"type":"overlay-ipam","dataDir":[]}}`, `"ipam.dataDir"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := loadConfig([]byte(tt.json))
			var e *types.Error
			if !errors.As(err, &e) || e.Code != types.ErrInvalidNetworkConfig {
				t.Fatalf("loadConfig error = %v, want a CNI error with code 7", err)
			}
			if !strings.Contains(e.Msg, tt.wantField) {
				t.Errorf("error message %q does not name field %s", e.Msg, tt.wantField)
			}
		})
	}
}
