package cniinstall

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/invoke"
)

// checkKeptPlugins asks each host plugin install keeps, that the conflist
// runs, which CNI versions it speaks (CNI_COMMAND=VERSION): an old one
// (containernetworking-plugins before 1.0 speak 0.4.0 at most) would fail
// every pod's ADD with "incompatible CNI versions". One that cannot be
// run here (a dynamically linked host binary seen from the image) is a
// warning: it may well work on the host.
func (o Options) checkKeptPlugins(plan []planned, conflist []byte, types []string, rep *Report) []string {
	var list struct {
		CNIVersion string `json:"cniVersion"`
	}
	if json.Unmarshal(conflist, &list) != nil || list.CNIVersion == "" {
		return nil
	}
	var refusals []string
	for _, p := range plan {
		if p.action != "kept" || !slices.Contains(types, filepath.Base(p.dst)) {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		info, err := invoke.GetVersionInfo(ctx, p.dst, nil)
		cancel()
		if err != nil {
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("could not ask %s which CNI versions it speaks (%v); if pods fail with \"incompatible CNI versions\", install again with --force to replace it with ours", p.dst, err))
			continue
		}
		if !slices.Contains(info.SupportedVersions(), list.CNIVersion) {
			refusals = append(refusals, fmt.Sprintf("%s (the host's own, kept) speaks CNI %v, not %s that %s needs: every pod's ADD would fail. Upgrade it, or pass --force to replace it with ours (backed up, put back by uninstall)", p.dst, info.SupportedVersions(), list.CNIVersion, o.Conflist))
		}
	}
	return refusals
}
