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
		Version: statusfile.Version, Network: a.cfg.Network, PID: os.Getpid(), PIDNamespace: a.pidNS, Every: a.cfg.ResyncInterval,
		Kind: string(l.Kind), HostID: l.HostID, Hostname: a.cfg.Hostname, PublicIP: l.PublicIP,
		Underlay: l.Underlay.Name, UnderMTU: l.Underlay.MTU, Advertise: l.Advertise,
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
		key := a.statusKey()
		since := time.Since(lastWrite)
		if (key != lastKey && since >= writeSpacing(a.peersWanted())) || since >= a.cfg.ResyncInterval {
			if err := statusfile.Write(path, a.status()); err != nil {
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

// statusKey is a digest of what in the status is worth a write at once:
// not the times and round trips, which change every second, but who this
// host is, the last repair, a pass's error, the probes' error and whether
// any peer's probe state changed. It copies nothing per peer.
func (a *Agent) statusKey() uint64 {
	h := fnv.New64a()
	if v := a.self.Load(); v != nil {
		h.Write([]byte(strconv.FormatUint(v.gen, 16)))
	}
	if p := a.lastPass.Load(); p != nil {
		h.Write([]byte(p.Error))
	}
	if p := a.lastRepair.Load(); p != nil {
		h.Write([]byte(p.At.String()))
	}
	if err := a.probeErr.Load(); err != nil {
		h.Write([]byte((*err).Error()))
	}
	h.Write([]byte(strconv.FormatUint(a.probeMoves.Load(), 16)))
	return h.Sum64()
}

func (a *Agent) peersWanted() int {
	if v := a.self.Load(); v != nil {
		return v.status.PeersWanted
	}
	return 0
}

// status gathers the whole status.
func (a *Agent) status() statusfile.Status {
	var s statusfile.Status
	if v := a.self.Load(); v != nil {
		s = v.status
	}
	s.Written = time.Now()
	if sess := a.sessionRef.Load(); sess != nil {
		s.Lease.Expires = sess.Expires()
		s.Lease.EtcdLease = sess.EtcdLease()
	}
	if p := a.lastPass.Load(); p != nil {
		s.LastPass = *p
	}
	if p := a.lastRepair.Load(); p != nil {
		s.LastRepair = *p
	}
	if a.deps.Prober != nil {
		s.Probe.PeerInterval = a.deps.Prober.PeerInterval()
		if err := a.probeErr.Load(); err != nil {
			s.Probe.Error = (*err).Error()
		}
		results := a.deps.Prober.Results()
		s.Peers = make([]statusfile.PeerProbe, 0, len(results))
		for _, r := range results {
			pp := peerProbe(r)
			pp.Name = a.feed.Hostname(r.Peer)
			s.Peers = append(s.Peers, pp)
		}
	}
	return s
}

func peerProbe(r probe.Result) statusfile.PeerProbe {
	return statusfile.PeerProbe{Peer: r.Peer, Name: r.Name, Overlay: r.Overlay, Underlay: r.Underlay,
		State: string(r.State), Since: r.Since,
		OverlayRTT: r.OverlayPath.RTT, OverlayLoss: r.OverlayPath.Loss,
		UnderlayRTT: r.UnderlayPath.RTT, UnderlayLoss: r.UnderlayPath.Loss, Sent: r.OverlayPath.Sent}
}

func itoa(n int) string { return strconv.Itoa(n) }
