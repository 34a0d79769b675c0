package agent

import (
	"context"
	"time"

	"github.com/overlaynet/overlay/pkg/hostfile"
)

// watchedDevices names the devices whose kernel events trigger a pass.
func (a *Agent) watchedDevices() []string {
	if p := a.watched.Load(); p != nil {
		return *p
	}
	return nil
}

// kernelChanged turns a kernel event on our devices into a pass. Passes
// coalesce in the loop, so a burst of events (including those our own
// writes cause) costs one or two passes, and a pass that finds nothing to
// change writes nothing and raises no events.
func (a *Agent) kernelChanged(reason string) {
	a.log.Debug("kernel changed", "what", reason)
	a.loop.Trigger()
}

// checkFiles triggers a pass when what no kernel event reports has drifted:
// the host file is missing or differs, the ready stamp is missing while the
// lease is held, or ip_forward was turned off where this host forwards.
func (a *Agent) checkFiles(ctx context.Context) {
	t := time.NewTicker(fileCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if reason := a.fileDrift(); reason != "" {
			a.log.Debug("drift found", "what", reason)
			a.loop.Trigger()
		}
	}
}

func (a *Agent) fileDrift() string {
	if want := a.wantFile.Load(); want != nil {
		have, err := hostfile.Read(hostfile.Path(a.cfg.RunDir, a.cfg.Network))
		if err != nil || have != *want {
			return "host file"
		}
	}
	if a.wantHeld.Load() && a.ready.Load() && !fileExists(hostfile.ReadyPath(a.cfg.RunDir, a.cfg.Network)) {
		return "ready stamp"
	}
	if !a.wantForward.Load() {
		return ""
	}
	if on, err := a.deps.Datapath.IPv4Forwarding(); err == nil && !on {
		return "ip_forward"
	}
	return ""
}
