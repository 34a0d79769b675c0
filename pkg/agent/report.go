package agent

import (
	"context"
	"hash/fnv"
	"os"
	"strconv"
	"time"

	"github.com/overlaynet/overlay/pkg/probe"
	"github.com/overlaynet/overlay/pkg/statusfile"
)

// selfView is who this host is as last published, for the status file
// (the control goroutine owns local; this is its copy for other readers).
type selfView struct {
	status statusfile.Status // without the times, passes and probes
	gen    uint64            // counts publishes, so a change is seen
}

// publishSelf records who this host is now, with the wanted state w.
func (a *Agent) publishSelf(w Wanted) {
	l := a.local
	s := statusfile.Status{
		Version: statusfile.Version, Network: a.cfg.Network, PID: os.Getpid(), Every: a.cfg.ResyncInterval,
		Kind: string(l.Kind), HostID: l.HostID, Hostname: a.cfg.Hostname, PublicIP: l.PublicIP,
		Underlay: l.Underlay.Name, UnderMTU: l.Underlay.MTU, Advertise: l.Advertise, Routes: l.Routes,
		Lease: statusfile.Lease{Held: l.Held, Subnet: l.Subnet},
		VTEP:  statusfile.VTEP{Device: w.VXLAN.Name, IP: w.VXLAN.Address.Addr(), MAC: l.VTEPMAC.String(), TxChecksumOff: w.TxChecksumOff},
		MTU:   w.HostFile.MTU, PeersWanted: len(w.Peers),
		Probe: statusfile.Probe{Enabled: a.deps.Prober != nil, Interval: a.cfg.ProbeInterval, Rate: a.cfg.ProbeRate},
	}
	a.selfGen++
	a.self.Store(&selfView{status: s, gen: a.selfGen})
}

// statusCheckInterval is how often the status is looked at; it is written
// when something in it changed, and at least once per resync interval.
const statusCheckInterval = time.Second

// writeSpacing is the least time between two writes of a status with n
// peers: a second, plus a millisecond per peer, so that at 10 000 peers,
// whose probe states change every second while they are first probed,
// the 3 MB file is not encoded and written every second.
func writeSpacing(n int) time.Duration {
	return statusCheckInterval + time.Duration(n)*time.Millisecond
}

// reportStatus keeps the status file until ctx ends; it is the file's only
// writer.
func (a *Agent) reportStatus(ctx context.Context) {
	t := time.NewTicker(statusCheckInterval)
	defer t.Stop()
	path := statusfile.Path(a.cfg.RunDir, a.cfg.Network)
	var lastKey uint64
	var lastWrite time.Time
	for {
		s, key := a.status()
		since := time.Since(lastWrite)
		if (key != lastKey && since >= writeSpacing(len(s.Peers))) || since >= a.cfg.ResyncInterval {
			if err := statusfile.Write(path, s); err != nil {
				a.log.Warn("cannot write the status file; overlayctl status shows less", "path", path, "err", err)
			} else {
				lastKey, lastWrite = key, time.Now()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// status gathers the status and a digest of what in it is worth a write
// at once: not the times and round trips, which change every second, but
// who this host is, the last repair, a pass's error and the peers' states.
func (a *Agent) status() (statusfile.Status, uint64) {
	var s statusfile.Status
	h := fnv.New64a()
	if v := a.self.Load(); v != nil {
		s = v.status
		h.Write([]byte(strconv.FormatUint(v.gen, 16)))
	}
	s.Written = time.Now()
	if sess := a.sessionRef.Load(); sess != nil {
		s.Lease.Expires = sess.Expires()
		s.Lease.EtcdLease = sess.EtcdLease()
	}
	if p := a.lastPass.Load(); p != nil {
		s.LastPass = *p
		h.Write([]byte(p.Error))
	}
	if p := a.lastRepair.Load(); p != nil {
		s.LastRepair = *p
		h.Write([]byte(p.At.String()))
	}
	if a.deps.Prober != nil {
		s.Probe.PeerInterval = a.deps.Prober.PeerInterval()
		if err := a.probeErr.Load(); err != nil {
			s.Probe.Error = (*err).Error()
			h.Write([]byte(s.Probe.Error))
		}
		for _, r := range a.deps.Prober.Results() {
			s.Peers = append(s.Peers, peerProbe(r))
			h.Write([]byte(r.Peer.String() + string(r.State)))
		}
	}
	return s, h.Sum64()
}

func peerProbe(r probe.Result) statusfile.PeerProbe {
	return statusfile.PeerProbe{Peer: r.Peer, Name: r.Name, Overlay: r.Overlay, Underlay: r.Underlay,
		State: string(r.State), Since: r.Since,
		OverlayRTT: r.OverlayPath.RTT, OverlayLoss: r.OverlayPath.Loss,
		UnderlayRTT: r.UnderlayPath.RTT, UnderlayLoss: r.UnderlayPath.Loss, Sent: r.OverlayPath.Sent}
}

func itoa(n int) string { return strconv.Itoa(n) }
