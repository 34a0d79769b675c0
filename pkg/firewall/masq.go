package firewall

import (
	"net/netip"
	"slices"
)

// MasqChain is the nat-table chain overlay owns.
const MasqChain = "OVERLAY-POSTROUTING"

// multicast is never masqueraded: it does not leave the link.
const multicast = "224.0.0.0/4"

// Masq keeps one network's egress masquerade: what the containers of this
// host's subnet send outside the network leaves with the host's address
// (kube-flannel's ipMasq), while traffic to the network itself
// (containers, edge hosts) and to the LANs gateways advertise keeps the
// container's own address.
type Masq struct {
	rules ruleSet
}

// Masq returns the masquerade keeper of a network.
func (t *Tables) Masq(network string) *Masq {
	return &Masq{rules: ruleSet{ipt: t.ipt, mu: &t.mu, table: "nat", chain: MasqChain, hook: "POSTROUTING",
		// All of a network's rules are one top group: a change inserts the
		// new list above the old one and then deletes the old, so a
		// RETURN added for a new LAN is in force before the old MASQUERADE
		// goes (appended below it, a flow to that LAN starting meanwhile
		// would be NATed for its whole life). Networks' rules match only
		// their own subnet, so their order among each other is free.
		comment: comment(network), top: func([]string) bool { return true }}}
}

// Ensure makes this network's rules: RETURN for subnet to each range of
// keep, then MASQUERADE for subnet to anything but multicast. Each
// network's rules match only its own subnet, so networks sharing the chain
// do not affect each other. An invalid subnet (an edge host, ipMasq off)
// removes the network's rules.
func (m *Masq) Ensure(subnet netip.Prefix, keep []netip.Prefix) error {
	if !subnet.IsValid() {
		return m.Remove()
	}
	if err := m.rules.checkPrefixes("subnet", subnet); err != nil {
		return err
	}
	if err := m.rules.checkPrefixes("kept destination", keep...); err != nil {
		return err
	}
	src := addr("-s", subnet)
	var rules [][]string
	for _, k := range keep {
		rules = append(rules, m.rules.rule(slices.Concat(src, addr("-d", k)), "RETURN"))
	}
	return m.rules.ensure(append(rules, m.masquerade(src)), nil)
}

// masquerade is the last rule: anything else from the subnet but multicast.
// --random-fully picks source ports at random, so two containers' flows to
// one destination do not collide on the host's address (kube-flannel and
// Kubernetes use it for the same reason); iptables before 1.6.2 lacks it,
// and there the rule goes without (as kube-flannel does).
func (m *Masq) masquerade(src []string) []string {
	target := []string{"MASQUERADE"}
	if m.rules.ipt.HasRandomFully() {
		target = append(target, "--random-fully")
	}
	return m.rules.rule(slices.Concat(src, []string{"!", "-d", multicast}), target...)
}

// Remove deletes this network's rules; the jump and the chain go with the
// last network's. Absent rules are success.
func (m *Masq) Remove() error { return m.rules.remove() }
