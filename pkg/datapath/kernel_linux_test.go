package datapath

import (
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// A Kernel's syncs after the first diff against what the earlier ones
// left: peers that come and go are programmed exactly, without a dump.
// Drift is found only after Watch reports it (forget) or a sync failed:
// this test takes an entry away behind its back to show which sync dumps.
func TestKernelRemembersWhatItProgrammed(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	k := NewKernel(time.Hour)
	target := PeerTarget{Device: spec.Name}
	var afterChange, afterDrift, afterForget rawState
	var blind, repair Plan
	do(t, host, func() (err error) {
		if _, err = k.SyncPeers(target, []Peer{peer(2), peer(3), peer(4)}); err != nil {
			return err
		}
		moved := peer(3)
		moved.PublicIP = netip.MustParseAddr("198.18.0.33")
		if _, err = k.SyncPeers(target, []Peer{peer(2), moved, peer(5)}); err != nil {
			return err
		}
		if afterChange, err = dumpDevice(spec.Name); err != nil {
			return err
		}
		// Someone deletes a neighbour; nothing reports it to k.
		if err := deleteNeighbour(spec.Name, peer(2).VTEPIP); err != nil {
			return err
		}
		if blind, err = k.SyncPeers(target, []Peer{peer(2), moved, peer(5)}); err != nil {
			return err
		}
		if afterDrift, err = dumpDevice(spec.Name); err != nil {
			return err
		}
		k.stale(0) // what Watch does on the neighbour's deletion
		if repair, err = k.SyncPeers(target, []Peer{peer(2), moved, peer(5)}); err != nil {
			return err
		}
		afterForget, err = dumpDevice(spec.Name)
		return err
	})
	moved := peer(3)
	moved.PublicIP = netip.MustParseAddr("198.18.0.33")
	checkProgrammed(t, afterChange, []Peer{peer(2), moved, peer(5)})
	if !blind.Empty() || len(afterDrift.neighs) != 2 {
		t.Errorf("a sync with the state remembered dumped anyway: plan %q, %d neighbours left", planLines(blind), len(afterDrift.neighs))
	}
	if len(repair.AddNeighs) != 1 {
		t.Errorf("after forget, plan %q, want the one neighbour restored", planLines(repair))
	}
	checkProgrammed(t, afterForget, []Peer{peer(2), moved, peer(5)})
}

// A sync that fails in part leaves nothing remembered, so the next one
// dumps; and what was remembered expires after verifyEvery.
func TestKernelForgetsAfterFailureAndAge(t *testing.T) {
	host, spec := hostWithVXLAN(t)
	target := PeerTarget{Device: spec.Name}
	bad := peer(9)
	do(t, host, func() error {
		// Not ours: a static route to peer 9's subnet on the underlay.
		ul, err := netlink.LinkByName("ul0")
		if err != nil {
			return err
		}
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: ul.Attrs().Index, Dst: toIPNet(bad.Subnet), Scope: netlink.SCOPE_LINK}); err != nil {
			return err
		}
		k := NewKernel(time.Hour)
		if _, err := k.SyncPeers(target, []Peer{peer(2), bad}); err == nil {
			t.Error("sync with a foreign route in the way succeeded")
		}
		if _, _, ok := k.recall(target); ok {
			t.Error("a failed sync was remembered")
		}
		aged := NewKernel(time.Nanosecond)
		if _, err := aged.SyncPeers(target, []Peer{peer(2)}); err != nil {
			return err
		}
		if _, _, ok := aged.recall(target); !ok {
			t.Error("a successful sync was not remembered")
		}
		return nil
	})
}

// deleteNeighbour deletes the neighbour entry of ip on device, as someone
// other than overlay would.
func deleteNeighbour(device string, ip netip.Addr) error {
	link, err := netlink.LinkByName(device)
	if err != nil {
		return err
	}
	return netlink.NeighDel(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4, IP: toIP(ip)})
}
