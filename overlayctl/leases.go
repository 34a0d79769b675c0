package main

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/overlaynet/overlay/pkg/datapath"
	"github.com/overlaynet/overlay/pkg/subnet"
)

// leaseView is one lease as overlayctl prints it (also its JSON form).
type leaseView struct {
	// Kind is host (a container subnet) or edge (one address, no containers).
	Kind        string `json:"kind"`
	Subnet      string `json:"subnet"`
	Hostname    string `json:"hostname"`
	HostID      string `json:"hostID"`
	PublicIP    string `json:"publicIP"`
	VTEP        string `json:"vtep"`
	VTEPMAC     string `json:"vtepMAC"`
	UnderlayMTU int    `json:"underlayMTU,omitempty"`
	EtcdLease   string `json:"etcdLease"`
	// Since is when the holder took the subnet; null for a record written
	// by a release that did not say.
	Since *time.Time `json:"since"`
	// AgeSeconds is the time since then, by this machine's clock.
	AgeSeconds *int64 `json:"ageSeconds"`
	// TTLLeftSeconds is how long the key stays without a renewal; null
	// when unknown (a key bound to no etcd lease, or etcd did not say).
	TTLLeftSeconds *int64 `json:"ttlLeftSeconds"`
	// Expired is true when the etcd lease ran out after the key was listed.
	Expired bool `json:"expired"`
	// Advertise lists the LANs a gateway edge host routes for.
	Advertise []string `json:"advertise,omitempty"`
}

func newLeasesCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "leases",
		Short: "List every lease in the network: kind, subnet, host, public IP, VTEP MAC, age, TTL left",
		Long: `Lists every member's lease (container hosts, then edge hosts, each in address
order). AGE is how long the holder has had the subnet ("-" for a record from a
release that does not say); TTL LEFT is how long etcd keeps the key without a
renewal: a live overlayd renews it every third of its TTL, so a TTL LEFT well
below the TTL means its host stopped. Remove a dead host's lease at once with
overlayctl lease release.`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("leases takes no arguments (got %q); to remove a lease: overlayctl lease release HOST|SUBNET", strings.Join(args, " "))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.connect(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			leases, _, err := c.Leases(cmd.Context(), g.network)
			if err != nil {
				return err
			}
			var vni uint32
			if cfg, err := c.NetworkConfig(cmd.Context(), g.network); err == nil {
				vni = cfg.VNI
			}
			ids := make([]int64, 0, len(leases))
			for _, l := range leases {
				ids = append(ids, l.EtcdLease)
			}
			// The list is worth having without the TTLs (a dead host is
			// found by its age and address too): say so, don't fail.
			ttls, err := c.LeaseTTLs(cmd.Context(), ids)
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "overlayctl: TTL left unknown: %v\n", err)
			}
			views := viewLeases(leases, vni, ttls, time.Now())
			return g.print(cmd, views, func(w io.Writer) error { return leasesTable(w, g.network, views) })
		},
	}
}

// viewLeases sorts leases (container hosts first, then edge hosts, each in
// address order; etcd lists keys as strings: 10.244.39.0 after
// 10.244.255.7) and views them at now. ttls may be nil (unknown).
func viewLeases(leases []subnet.Lease, vni uint32, ttls map[int64]subnet.LeaseTTL, now time.Time) []leaseView {
	leases = slices.Clone(leases)
	slices.SortFunc(leases, func(a, b subnet.Lease) int {
		return cmp.Or(cmp.Compare(kindOrder(a.Kind), kindOrder(b.Kind)), a.Subnet.Addr().Compare(b.Subnet.Addr()))
	})
	views := make([]leaseView, 0, len(leases))
	for _, l := range leases {
		views = append(views, viewLease(l, vni, ttls, now))
	}
	return views
}

func kindOrder(k subnet.Kind) int {
	if k == subnet.KindEdge {
		return 1
	}
	return 0
}

func viewLease(l subnet.Lease, vni uint32, ttls map[int64]subnet.LeaseTTL, now time.Time) leaseView {
	v := leaseView{
		Kind: string(l.Kind), Subnet: l.Subnet.String(), Hostname: l.Hostname, HostID: l.HostID, PublicIP: l.PublicIP.String(),
		VTEPMAC: l.VTEPMAC, UnderlayMTU: l.UnderlayMTU, EtcdLease: fmt.Sprintf("%x", l.EtcdLease),
	}
	for _, p := range l.Advertise {
		v.Advertise = append(v.Advertise, p.String())
	}
	if vni != 0 {
		v.VTEP = datapath.DeviceName(vni) + " " + l.Subnet.Addr().String()
	}
	if !l.Since.IsZero() {
		since := l.Since
		age := int64(max(now.Sub(since), 0) / time.Second)
		v.Since, v.AgeSeconds = &since, &age
	}
	if ttl, ok := ttls[l.EtcdLease]; ok && l.EtcdLease != 0 {
		left := int64(ttl.Left / time.Second)
		v.TTLLeftSeconds, v.Expired = &left, ttl.Expired()
	}
	return v
}

func leasesTable(w io.Writer, network string, views []leaseView) error {
	if len(views) == 0 {
		_, err := fmt.Fprintf(w, "network %s has no leases\n", network)
		return err
	}
	fmt.Fprintln(w, "KIND\tSUBNET\tHOST\tPUBLIC IP\tVTEP MAC\tAGE\tTTL LEFT\tADVERTISES")
	for _, v := range views {
		age, ttl := "-", "-"
		if v.AgeSeconds != nil {
			age = humanDuration(time.Duration(*v.AgeSeconds) * time.Second)
		}
		switch {
		case v.Expired:
			ttl = "expired"
		case v.TTLLeftSeconds != nil:
			ttl = humanDuration(time.Duration(*v.TTLLeftSeconds) * time.Second)
		}
		adv := strings.Join(v.Advertise, ",")
		if adv == "" {
			adv = "-"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Kind, v.Subnet, dash(v.Hostname), v.PublicIP, v.VTEPMAC, age, ttl, adv)
	}
	return nil
}

// dash is s for a table cell, "-" when empty (so columns stay aligned for
// tools that split on blanks).
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
