// Package probe measures, per peer, whether the overlay works: it sends an
// ICMP echo to the peer's VTEP address, which the kernel routes through our
// VXLAN device (or the direct route of a direct-mode peer), and one to the
// peer's underlay (public) address, and keeps RTT and loss per peer and
// path. The two paths together tell failures apart that look the same from
// a container: when the overlay is lost while the underlay answers, the
// VXLAN port is blocked somewhere on the path or checksum offload corrupts
// encapsulated packets (flannel #2388, #2152, Calico #3145); when both are
// lost the host is down, the underlay is broken or ICMP is filtered.
//
// Rate bound: a Prober sends at most Config.Rate probes per second in total
// (a probe is one echo on each path, so at most 2×Rate packets a second),
// paced one probe every 1/Rate seconds with no bursts, whatever the number
// of peers. Peers that are due are served round-robin (least recently
// probed first), so each peer is probed every
//
//	PeerInterval = max(Interval, peers/Rate)
//
// With the defaults (5s, 50/s) up to 250 peers are probed every 5s; 10 000
// peers are probed every 200s. A peer's state changes after BrokenAfter
// consecutive lost probes, so a broken path is detected after about
// BrokenAfter × PeerInterval + Timeout: 16s with the defaults and up to 250
// peers, 10 minutes with 10 000. Raise Rate to detect sooner on big
// networks; the cost is 2×Rate small packets a second from every host.
//
// The scheduling (due times, pacing, round-robin, timeouts, loss window,
// state machine) is in core, which takes the time as an argument and is
// tested without root or sockets; Prober drives it with one raw ICMP socket
// (CAP_NET_RAW) and the wall clock.
//
// Sockets: a raw ICMP socket sees every ICMP packet of the network
// namespace, including the replies to other Probers, to Ping and to the
// ping command. Every Prober and every Ping call uses a random echo ID and
// a random 8-byte token at the start of the payload, and takes only echo
// replies that carry both; the rest is ignored.
//
// Namespaces: the socket belongs to the network namespace of the thread
// that calls Run (or Ping); the Prober stays in it afterwards.
package probe
