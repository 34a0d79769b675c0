// Package firewall owns overlay's iptables rules (through go-iptables, which
// only this package imports). Each network has two keepers:
//
//   - Forward, in the filter chain OVERLAY-FORWARD jumped to from the top of
//     FORWARD: ACCEPTs of the network's traffic, so it is routed between the
//     bridge and the VXLAN device on hosts whose FORWARD policy is DROP
//     (Docker and Kubernetes hosts set it so; without them cross-host
//     traffic would vanish silently); and, above every network's ACCEPTs,
//     DROPs of what the network sends to the other networks this host
//     serves, so networks stay isolated from each other.
//   - Masq, in the nat chain OVERLAY-POSTROUTING jumped to from the top of
//     POSTROUTING: egress masquerade (kube-flannel's ipMasq). What this
//     host's containers send outside the network, and outside the LANs
//     gateways advertise, leaves with the host's address.
//
// Each rule carries the comment overlay-net=NAME, so one network's rules are
// found, compared in order and replaced without touching another's or
// anyone else's; a chain and its jump go with the last network's rules.
// Changed rules are added before the old ones are deleted, so no moment
// lacks a RETURN ahead of a MASQUERADE or an isolating DROP.
package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// Chain is the filter-table chain overlay owns.
const Chain = "OVERLAY-FORWARD"

// runner is the part of go-iptables this package uses; an interface so the
// rule logic can be tested against a fake without root.
type runner interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	Exists(table, chain string, rulespec ...string) (bool, error)
	HasRandomFully() bool
	Insert(table, chain string, pos int, rulespec ...string) error
	Append(table, chain string, rulespec ...string) error
	List(table, chain string) ([]string, error)
	DeleteById(table, chain string, id int) error
	Delete(table, chain string, rulespec ...string) error
	ClearAndDeleteChain(table, chain string) error
}

var _ runner = (*iptables.IPTables)(nil)

// Forward keeps the FORWARD rules of one network: accept its traffic, and
// drop what it sends to the other networks this host serves.
type Forward struct {
	rules ruleSet
}

// Tables is this process's hold on overlay's iptables chains: make one
// per process and take every network's keepers from it. overlayd runs one
// agent per network, each with keepers on the same chains, and a keeper
// deletes rules by the numbers its List gave: another keeper's insert in
// between would shift them and the delete take the wrong rule (maybe
// another network's isolating DROP). Tables holds the lock that keeps
// their edits apart.
type Tables struct {
	ipt runner
	mu  sync.Mutex
}

// NewTables uses the iptables binary on PATH in the current network
// namespace.
func NewTables() (*Tables, error) {
	ipt, err := newRunner()
	if err != nil {
		return nil, err
	}
	return newTables(ipt), nil
}

func newTables(ipt runner) *Tables { return &Tables{ipt: ipt} }

// Forward returns the FORWARD rule keeper of a network.
func (t *Tables) Forward(network string) *Forward {
	return &Forward{rules: ruleSet{ipt: t.ipt, mu: &t.mu, table: "filter", chain: Chain, hook: "FORWARD",
		comment: comment(network), top: isDrop}}
}

func newRunner() (runner, error) {
	ipt, err := iptables.New()
	if err != nil {
		return nil, fmt.Errorf("iptables is not usable (%v); install it (apt-get install iptables)", err)
	}
	return ipt, nil
}

func comment(network string) string { return "overlay-net=" + network }

func isDrop(rule []string) bool {
	return slices.Equal(rule[max(len(rule)-2, 0):], []string{"-j", "DROP"})
}

// Ensure makes the chain, the jump and this network's rules exist —
// above every network's accepts, a DROP of traffic from cidr to each
// range in isolate; then ACCEPTs of traffic from and to cidr — and
// removes this network's other rules (an earlier range, a network no
// longer served). It is idempotent and cheap when everything is in place
// (a few iptables reads).
func (f *Forward) Ensure(cidr netip.Prefix, isolate []netip.Prefix) error {
	if err := f.rules.checkPrefixes("network", cidr); err != nil {
		return err
	}
	if err := f.rules.checkPrefixes("isolated network", isolate...); err != nil {
		return err
	}
	var drops [][]string
	for _, o := range isolate {
		drops = append(drops, f.rules.rule(slices.Concat(addr("-s", cidr), addr("-d", o)), "DROP"))
	}
	accepts := [][]string{
		f.rules.rule(addr("-s", cidr), "ACCEPT"),
		f.rules.rule(addr("-d", cidr), "ACCEPT"),
	}
	return f.rules.ensure(drops, accepts)
}

// Remove deletes this network's rules; when no other network's rules are
// left it also removes the jump and the chain. Absent rules are success.
func (f *Forward) Remove() error { return f.rules.remove() }
