package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlaynet/overlay/pkg/subnet"
)

func newLeaseCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lease",
		Short: "Act on one lease: release (remove) a dead host's lease at once",
	}
	cmd.AddCommand(newLeaseReleaseCmd(g))
	return cmd
}

// releaseView is what lease release did (also its JSON form).
type releaseView struct {
	Network string `json:"network"`
	// Subnet is the key released: a host's subnet, an edge host's ADDRESS/32.
	Subnet string `json:"subnet"`
	// Lease is false when only a quarantine reservation was left to remove.
	Lease    bool   `json:"lease"`
	Kind     string `json:"kind,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	HostID   string `json:"hostID,omitempty"`
	// Alive is true when the lease was still being renewed: its overlayd
	// puts the key back.
	Alive bool `json:"alive"`
}

func newLeaseReleaseCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "release HOST|SUBNET",
		Short: "Remove a host's lease and its quarantine reservation: peers drop its routes at once and the subnet is free",
		Long: `Removes one lease key and its quarantine reservation, for a host that is gone
for good: every peer drops its routes to it at once (rather than when its TTL
runs out) and the subnet (or edge address) is free for any host to lease.

HOST is a hostname or host ID as overlayctl leases shows them; a hostname that
several leases carry is refused (release one by subnet). SUBNET is a host's
subnet (10.244.3.0/24) or an edge host's address (10.244.255.7, with or
without /32); a subnet whose host left recently and holds only a quarantine
reservation is released too.

A running overlayd puts its key back at once: stop it first. When the lease
still has most of its TTL left (something renews it) overlayctl says so on
stderr, and releases it anyway.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			c, err := g.connect(ctx)
			if err != nil {
				return err
			}
			defer c.Close()
			leases, _, err := c.Leases(ctx, g.network)
			if err != nil {
				return err
			}
			s, lease, err := resolveRelease(g.network, leases, args[0])
			if err != nil {
				return err
			}
			v := releaseView{Network: g.network, Subnet: s.String()}
			if lease != nil {
				v.Lease, v.Kind, v.Hostname, v.HostID = true, string(lease.Kind), lease.Hostname, lease.HostID
				v.Alive = warnIfAlive(ctx, c, cmd.ErrOrStderr(), *lease)
			}
			ok, err := c.DeleteLease(ctx, g.network, s)
			if err != nil {
				return err
			}
			if !ok {
				if lease != nil {
					return fmt.Errorf("the lease of %s went away before overlayctl could release it (it expired, or was released meanwhile)", s)
				}
				return nothingToRelease(ctx, c, g.network, leases, args[0])
			}
			return g.print(cmd, v, func(w io.Writer) error { return releaseText(w, v) })
		},
	}
}

// resolveRelease finds the key arg names among the network's leases: a
// subnet, an edge host's address, a hostname or host ID. It returns the
// key's subnet and its lease, or no lease for a subnet that has none
// listed (it may still hold a quarantine reservation).
func resolveRelease(network string, leases []subnet.Lease, arg string) (netip.Prefix, *subnet.Lease, error) {
	find := func(s netip.Prefix) *subnet.Lease {
		if i := slices.IndexFunc(leases, func(l subnet.Lease) bool { return l.Subnet == s }); i >= 0 {
			return &leases[i]
		}
		return nil
	}
	if p, err := netip.ParsePrefix(arg); err == nil {
		if !p.Addr().Is4() {
			return netip.Prefix{}, nil, fmt.Errorf("%s is no IPv4 subnet; leases are IPv4 subnets such as 10.244.3.0/24", arg)
		}
		if p.Masked() != p {
			return netip.Prefix{}, nil, fmt.Errorf("%s is no subnet (its host bits are set); did you mean %s?", arg, p.Masked())
		}
		return p, find(p), nil
	}
	if a, err := netip.ParseAddr(arg); err == nil {
		if !a.Is4() {
			return netip.Prefix{}, nil, fmt.Errorf("%s is no IPv4 address; an edge host's lease is an IPv4 address such as 10.244.255.7", arg)
		}
		s := netip.PrefixFrom(a, 32)
		if l := find(s); l != nil {
			return s, l, nil
		}
		// A container's address is no lease: say whose subnet holds it
		// rather than release a whole host by accident.
		for _, l := range leases {
			if l.Subnet.Contains(a) {
				return netip.Prefix{}, nil, fmt.Errorf("%s is an address in %s's subnet %s, not a lease of its own; to release that host: overlayctl lease release %s",
					a, describeHost(l), l.Subnet, l.Subnet)
			}
		}
		return s, nil, nil
	}
	var matches []subnet.Lease
	for _, l := range leases {
		if l.Hostname == arg || l.HostID == arg {
			matches = append(matches, l)
		}
	}
	switch len(matches) {
	case 0:
		return netip.Prefix{}, nil, fmt.Errorf("network %s has no lease of a host named %q or with that host ID; %s", network, arg, existing(network, leases))
	case 1:
		return matches[0].Subnet, &matches[0], nil
	}
	list := make([]string, 0, len(matches))
	for _, l := range matches {
		list = append(list, fmt.Sprintf("%s (%s host %s, host ID %s, public IP %s)", l.Subnet, l.Kind, l.Hostname, l.HostID, l.PublicIP))
	}
	return netip.Prefix{}, nil, fmt.Errorf("%q matches %d leases in network %s: %s; release one by its subnet", arg, len(matches), network, strings.Join(list, ", "))
}

// describeHost names a lease's holder for a message.
func describeHost(l subnet.Lease) string {
	if l.Hostname != "" {
		return l.Hostname
	}
	return "host ID " + l.HostID
}

// existingShown bounds the leases an error lists; the rest are counted.
const existingShown = 10

// existing names the network's leases for an error that found none.
func existing(network string, leases []subnet.Lease) string {
	if len(leases) == 0 {
		return fmt.Sprintf("it has no leases at all (is --network %s right?)", network)
	}
	views := viewLeases(leases, 0, nil, time.Time{})
	var names []string
	for _, v := range views[:min(len(views), existingShown)] {
		names = append(names, fmt.Sprintf("%s %s (host ID %s)", v.Subnet, dash(v.Hostname), v.HostID))
	}
	more := ""
	if n := len(views) - existingShown; n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	return fmt.Sprintf("its leases are %s%s (overlayctl leases lists them)", strings.Join(names, ", "), more)
}

// nothingToRelease is the error for a subnet with neither lease nor
// reservation, naming what exists (and the networks there are, when this
// one has nothing: a wrong --network is the likely mistake).
func nothingToRelease(ctx context.Context, c *subnet.Client, network string, leases []subnet.Lease, arg string) error {
	msg := fmt.Sprintf("network %s has no lease or quarantine reservation for %s; %s", network, arg, existing(network, leases))
	if len(leases) == 0 {
		if others, err := c.OtherNetworkConfigs(ctx, network); err == nil && len(others) > 0 {
			names := make([]string, 0, len(others))
			for n := range others {
				names = append(names, n)
			}
			slices.Sort(names)
			msg += "; networks in etcd: " + strings.Join(names, ", ")
		}
	}
	return fmt.Errorf("%s", msg)
}

// warnIfAlive says on stderr when l's etcd lease still has most of its TTL
// left: a live overlayd renews it every third of its TTL, so it puts the
// key back as soon as it is deleted. (A host that died less than half a
// TTL ago looks the same; the warning says "looks".) It reports whether it
// warned.
func warnIfAlive(ctx context.Context, c *subnet.Client, stderr io.Writer, l subnet.Lease) bool {
	if l.EtcdLease == 0 {
		return false
	}
	ttls, err := c.LeaseTTLs(ctx, []int64{l.EtcdLease})
	if err != nil {
		fmt.Fprintf(stderr, "overlayctl: cannot tell whether %s's overlayd is still running (%v); if it is, it puts the lease back\n", describeHost(l), err)
		return false
	}
	ttl := ttls[l.EtcdLease]
	if ttl.Expired() || ttl.Left <= ttl.Granted/2 {
		return false
	}
	fmt.Fprintf(stderr, "overlayctl: warning: the lease of %s (%s) looks alive: its etcd lease has %s of %s left, so an overlayd renews it and puts the key back at once; stop overlayd on %s (public IP %s) first, then release again (released anyway)\n",
		describeHost(l), l.Subnet, humanDuration(ttl.Left), humanDuration(ttl.Granted), describeHost(l), l.PublicIP)
	return true
}

func releaseText(w io.Writer, v releaseView) error {
	var err error
	switch {
	case !v.Lease:
		_, err = fmt.Fprintf(w, "released the quarantine reservation of %s in network %s (it had no lease): the subnet is free\n", v.Subnet, v.Network)
	case v.Alive:
		_, err = fmt.Fprintf(w, "released %s (%s %s, host ID %s) in network %s; its overlayd looks alive and puts it back\n", v.Subnet, v.Kind, dash(v.Hostname), v.HostID, v.Network)
	default:
		_, err = fmt.Fprintf(w, "released %s (%s %s, host ID %s) in network %s: peers drop its routes now and the subnet is free\n", v.Subnet, v.Kind, dash(v.Hostname), v.HostID, v.Network)
	}
	return err
}
