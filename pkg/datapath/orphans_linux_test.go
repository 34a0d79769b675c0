package datapath

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"github.com/containernetworking/plugins/pkg/netlinksafe"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Finding 4: after a VNI change the old device of the network keeps routes
// to every peer. RemoveOrphans removes it and our stray routes, and nothing
// that is not ours: a device without our alias, another network's device,
// routes of other protocols, our routes outside the network.
func TestRemoveOrphansTouchesOnlyOurs(t *testing.T) {
	host := newNS(t)
	do(t, host, func() error {
		ul, err := addUnderlay("ul0", testUnderlay)
		if err != nil {
			return err
		}
		mk := func(vni uint32, owner string) (VXLANSpec, error) {
			s := vxlanSpec(vni)
			s.UnderlayIndex, s.Owner, s.Port = ul.Attrs().Index, owner, uint16(8472+vni)
			_, err := EnsureVXLAN(s)
			return s, err
		}
		old, err := mk(1, "default")
		if err != nil {
			return err
		}
		keep, err := mk(2, "default")
		if err != nil {
			return err
		}
		if _, err := mk(3, "other"); err != nil { // another network's
			return err
		}
		if _, err := mk(4, ""); err != nil { // no alias: not provably ours
			return err
		}
		peer := Peer{Subnet: mustPrefix("10.244.7.0/24"), VTEPIP: netip.MustParseAddr("10.244.7.0"),
			VTEPMAC: []byte{2, 0, 0, 0, 0, 7}, PublicIP: netip.MustParseAddr("198.18.0.7")}
		// The old device holds the route to the peer, so the new one cannot
		// (a route replace would take it over from any device): the agent
		// removes orphans before it syncs peers.
		if _, err := SyncPeers(old.Name, []Peer{peer}); err != nil {
			return err
		}
		// Ours (protocol 86) on the underlay: inside the network (stray) and outside it.
		for _, dst := range []string{"10.244.9.0/24", "10.99.0.0/24"} {
			if err := addDirectRouteOnce(device{ul.Attrs().Index, "ul0"}, Route{Dst: mustPrefix(dst), Via: netip.MustParseAddr("198.18.0.254")}, false); err != nil {
				return err
			}
		}
		// Not ours: a static route inside the network on the underlay.
		if err := netlink.RouteAdd(&netlink.Route{LinkIndex: ul.Attrs().Index, Dst: toIPNet(mustPrefix("10.244.10.0/24")),
			Gw: toIP(netip.MustParseAddr("198.18.0.254")), Protocol: unix.RTPROT_STATIC}); err != nil {
			return err
		}

		// No underlay in the target: it has no direct routes, so our route on
		// ul0 is a stray.
		removed, err := RemoveOrphans("default", PeerTarget{Device: keep.Name, Range: mustPrefix("10.244.0.0/16")})
		if err != nil {
			return err
		}
		want := []string{"device overlay.1", "route 10.244.9.0/24"}
		slices.Sort(removed)
		if !slices.Equal(removed, want) {
			return fmt.Errorf("removed %v, want %v", removed, want)
		}
		for name, exists := range map[string]bool{"overlay.1": false, "overlay.2": true, "overlay.3": true, "overlay.4": true} {
			if _, err := netlinksafe.LinkByName(name); (err == nil) != exists {
				return fmt.Errorf("%s exists=%v after RemoveOrphans, want %v", name, err == nil, exists)
			}
		}
		routes, err := netlinksafe.RouteList(ul, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var dsts []string
		for _, r := range routes {
			if r.Dst != nil {
				dsts = append(dsts, r.Dst.String())
			}
		}
		for _, d := range []string{"10.99.0.0/24", "10.244.10.0/24"} {
			if !slices.Contains(dsts, d) {
				return fmt.Errorf("route %s on ul0 was removed (routes now %v)", d, dsts)
			}
		}
		if _, err := SyncPeers(keep.Name, []Peer{peer}); err != nil {
			return fmt.Errorf("peer on the kept device after the orphan went: %w", err)
		}
		// Teardown removes the network's devices whatever their names, and
		// leaves the other network's and the unowned one.
		gone, err := TeardownNetwork("default", mustPrefix("10.244.0.0/16"))
		if err != nil {
			return err
		}
		if !slices.Contains(gone, "vxlan overlay.2") {
			return fmt.Errorf("teardown removed %v, want overlay.2 among them", gone)
		}
		for name, exists := range map[string]bool{"overlay.2": false, "overlay.3": true, "overlay.4": true} {
			if _, err := netlinksafe.LinkByName(name); (err == nil) != exists {
				return fmt.Errorf("%s exists=%v after teardown, want %v", name, err == nil, exists)
			}
		}
		return nil
	})
}
