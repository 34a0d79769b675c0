// Package datapath is the only package of overlay that talks netlink. It owns
// the kernel objects of one overlay network on one host:
//
//   - the VXLAN device overlay.VNI (learning off, stable MAC, the host
//     subnet's first address as a /32),
//   - the bridge (overlay0) holding the gateway address,
//   - per remote host exactly one onlink route REMOTE_SUBNET via REMOTE_VTEP_IP,
//     one permanent neighbour REMOTE_VTEP_IP -> REMOTE_VTEP_MAC and one FDB
//     entry REMOTE_VTEP_MAC -> REMOTE_PUBLIC_IP on the VXLAN device,
//   - the container side of a CNI attachment (veth pair, address, routes).
//
// There is no flooding, learning or multicast: the control plane (etcd)
// tells every host where every VTEP is, so the kernel never has to ask.
//
// Ownership: anything attached to our VXLAN device is ours (we created the
// device); entries on any other device are never read for deletion, let alone
// removed. Peer programming is level-triggered: SyncPeers compares the wanted
// peers with what the kernel has on our device and applies the difference,
// adding before deleting so a changed peer never loses its route in between.
// Routes we write carry protocol RouteProtocol (86) so people can find them,
// but every non-kernel route on our device is treated as ours. A route to a
// peer subnet that already exists on another device is reported, never
// replaced.
//
// Namespaces: every function works in the network namespace of the calling
// OS thread. Callers lock the thread and switch (ns.Do) or run the whole
// process in the namespace (ip netns exec). Kernel dumps interrupted by a
// concurrent change are retried.
//
// Types at the boundary: the package speaks net/netip; conversion to the
// net.IP forms netlink wants lives in netconv.go only.
package datapath
