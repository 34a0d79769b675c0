// Package datapath is the only package of overlay that talks netlink (and
// ethtool: the VXLAN device's tx checksum offload, offload_linux.go). It owns
// the kernel objects of one overlay network on one host:
//
//   - the VXLAN device overlay.VNI (learning off, stable MAC, the host
//     subnet's first address as a /32),
//   - the bridge (overlay0) holding the gateway address,
//   - per remote host exactly one onlink route REMOTE_SUBNET via REMOTE_VTEP_IP,
//     one permanent neighbour REMOTE_VTEP_IP -> REMOTE_VTEP_MAC and one FDB
//     entry REMOTE_VTEP_MAC -> REMOTE_PUBLIC_IP on the VXLAN device (for a
//     direct peer the route goes on the underlay instead, see below),
//   - the container side of a CNI attachment (veth pair, address, routes).
//
// There is no flooding, learning or multicast: the control plane (etcd)
// tells every host where every VTEP is, so the kernel never has to ask.
//
// Ownership: anything attached to our VXLAN device is ours (we created the
// device); on any other device only routes of protocol 86 are ever read for
// deletion (direct routes and orphans, below), nothing else. Peer
// programming is level-triggered: SyncPeers compares the wanted peers with
// what the kernel has on our device (and the direct routes) and applies the
// difference, adding before deleting so a changed peer never loses its
// route in between. Routes we write carry protocol RouteProtocol (86) so
// people can find them, and every non-kernel route on our device is treated
// as ours. A route to a peer subnet that already exists and is not ours is
// reported, never replaced.
//
// Direct routes: a peer in ModeDirect (on this host's L2 segment, in a
// network that routes directly) has its subnet routed unencapsulated,
// REMOTE_SUBNET via REMOTE_PUBLIC_IP dev UNDERLAY proto 86 src OWN_VTEP_IP;
// its neighbour and FDB entry stay on the VXLAN device and its advertised
// LANs stay routed over VXLAN, so a mode switch moves one route. The
// underlay is not ours, so there protocol 86 is what makes a route ours: a
// network owns exactly the routes of protocol 86 on the underlay inside its
// range (ranges do not overlap, so networks sharing an underlay never see
// each other's). SyncPeersTarget adds and removes them like the rest, and a
// route to the subnet on the underlay of another protocol is reported,
// never replaced. The kernel keys the main table by destination whatever
// the device, so a switch is a RouteReplace of our route on one device by
// the route on the other, in one step. RemoveOrphans skips the underlay
// (it removes our routes inside the range on every other device but the
// VXLAN device); TeardownNetwork removes the direct routes with the rest.
//
// Namespaces: every function works in the network namespace of the calling
// OS thread. Callers lock the thread and switch (ns.Do) or run the whole
// process in the namespace (ip netns exec). Kernel dumps interrupted by a
// concurrent change are retried.
//
// Types at the boundary: the package speaks net/netip; conversion to the
// net.IP forms netlink wants lives in netconv.go only.
package datapath
