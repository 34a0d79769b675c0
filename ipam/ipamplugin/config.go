package ipamplugin

import (
	"encoding/json"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/overlaynet/overlay/pkg/cnierr"
	"github.com/overlaynet/overlay/pkg/hostfile"
)

// Defaults for fields the network config leaves out.
const (
	defaultNetwork = "default"
	defaultDataDir = "/var/lib/cni/overlay"
)

// config is what overlay-ipam reads from the network config it is given: the
// whole config of the calling plugin, so that `network` and `runDir` are
// written once, at its top level, and only `dataDir` belongs to the ipam
// section.
type config struct {
	types.PluginConf
	// Network names the overlay network, and so the host file and store.
	Network string `json:"network"`
	// RunDir is where overlayd writes the host file.
	RunDir string `json:"runDir"`
	// IPAM shadows PluginConf.IPAM to add our own field.
	IPAM ipamSection `json:"ipam"`
	// LegacyAttachments is the name an early draft of CNI 1.1 gave
	// cni.dev/valid-attachments; libcni still sends both (containernetworking/cni#1101).
	LegacyAttachments []types.GCAttachment `json:"cni.dev/attachments"`
}

type ipamSection struct {
	Type string `json:"type"`
	// DataDir holds the reservation store, one directory per network.
	DataDir string `json:"dataDir"`
}

// loadConfig decodes and checks the config; every failure is a CNI error
// with code 7 naming the field.
func loadConfig(data []byte) (*config, error) {
	c := &config{
		Network: defaultNetwork,
		RunDir:  hostfile.DefaultRunDir,
		IPAM:    ipamSection{DataDir: defaultDataDir},
	}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, cnierr.Decode(err)
	}
	if field, err := hostfile.ValidateLocation(c.Network, c.RunDir); err != nil {
		return nil, cnierr.InvalidConfig(field, err.Error())
	}
	if !filepath.IsAbs(c.IPAM.DataDir) {
		return nil, cnierr.InvalidConfig("ipam.dataDir", "must be an absolute path, e.g. "+defaultDataDir)
	}
	return c, nil
}

// prevResult decodes the cached result the runtime passes with CHECK, nil if
// there is none. Only CHECK reads it: a DEL must not fail over a cached
// result it has no use for.
func (c *config) prevResult() (*current.Result, error) {
	if err := version.ParsePrevResult(&c.PluginConf); err != nil {
		return nil, cnierr.InvalidConfig("prevResult", err.Error())
	}
	if c.PrevResult == nil {
		return nil, nil
	}
	r, err := current.NewResultFromResult(c.PrevResult)
	if err != nil {
		return nil, cnierr.InvalidConfig("prevResult", err.Error())
	}
	return r, nil
}

// validAttachments is the runtime's list of attachments GC must keep. A
// request without the list is refused rather than read as "keep nothing":
// guessing wrong would take the address of every running container.
func (c *config) validAttachments() ([]types.GCAttachment, error) {
	switch {
	case c.ValidAttachments != nil:
		return c.ValidAttachments, nil
	case c.LegacyAttachments != nil:
		return c.LegacyAttachments, nil
	}
	return nil, cnierr.InvalidConfig("cni.dev/valid-attachments",
		"GC needs the list of attachments still in use (an empty list releases everything); the runtime sent none, so nothing was released")
}

// hostFilePath is where overlayd publishes this host's subnet of the network.
func (c *config) hostFilePath() string { return hostfile.Path(c.RunDir, c.Network) }

// ValidAttachments decodes a GC request's list of attachments still in
// use, refusing a request that has none (see validAttachments).
func ValidAttachments(stdin []byte) ([]types.GCAttachment, error) {
	c, err := loadConfig(stdin)
	if err != nil {
		return nil, err
	}
	return c.validAttachments()
}
