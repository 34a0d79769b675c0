package main

import (
	"encoding/json"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/overlaynet/overlay/pkg/cnierr"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

const defaultNetwork = "default"

// NetConf is the plugin's network config (DESIGN.md Contract 5):
//
//	{"type":"overlay","network":"default","runDir":"/run/overlay",
//	 "ipam":{"type":"overlay-ipam","dataDir":"/var/lib/cni/overlay"}}
//
// Everything about the subnet, bridge and MTU comes from the host file
// overlayd writes, so the config names only which network and where its
// host file lives.
type NetConf struct {
	types.PluginConf
	// Network is the overlay network to join; default "default".
	Network string `json:"network"`
	// RunDir is where overlayd writes RUNDIR/NETWORK.json; default /run/overlay.
	RunDir string `json:"runDir"`
}

// loadNetConf decodes, defaults and validates the config. Every failure is
// a CNI error with code 7 naming the field. prevResult is left unparsed:
// only CHECK needs it, and a DEL must not fail over a cached result it does
// not use.
func loadNetConf(data []byte) (*NetConf, error) {
	c := &NetConf{Network: defaultNetwork, RunDir: hostfile.DefaultRunDir}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, cnierr.Decode(err)
	}
	if field, err := hostfile.ValidateLocation(c.Network, c.RunDir); err != nil {
		return nil, cnierr.InvalidConfig(field, err.Error())
	}
	switch {
	case c.IPAM.Type == "":
		return nil, cnierr.InvalidConfig("ipam.type", "ipam.type is missing; use overlay-ipam")
	case strings.ContainsRune(c.IPAM.Type, '/') || c.IPAM.Type == "." || c.IPAM.Type == "..":
		// The runtime looks the plugin up in its CNI_PATH; a path would escape it.
		return nil, cnierr.InvalidConfig("ipam.type", "must be a plugin name in the CNI bin dir, e.g. overlay-ipam")
	}
	return c, nil
}

// hostFilePath is where overlayd publishes this host's view of the network.
func (c *NetConf) hostFilePath() string { return hostfile.Path(c.RunDir, c.Network) }
