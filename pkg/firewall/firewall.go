// Package firewall owns overlay's iptables rules (through go-iptables): today
// the FORWARD accept rules that let overlay traffic be routed between the
// bridge and the VXLAN device on hosts whose FORWARD policy is DROP (Docker
// and Kubernetes hosts set it so; without these rules cross-host traffic
// would vanish silently). Later, masquerade and the VXLAN ingress filter live
// here too.
//
// All rules sit in a chain of our own, OVERLAY-FORWARD, jumped to from the
// top of FORWARD; each rule carries a comment naming its network, so one
// network's rules are found (and stale ones removed) without touching
// another's or anyone else's.
package firewall

import (
	"fmt"
	"net/netip"
	"slices"

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

// NewForward returns the rule keeper for a network, using the iptables
// binary on PATH in the current network namespace.
func NewForward(network string) (*Forward, error) {
	ipt, err := newRunner()
	if err != nil {
		return nil, err
	}
	return newForward(ipt, network), nil
}

func newForward(ipt runner, network string) *Forward {
	return &Forward{rules: ruleSet{ipt: ipt, table: "filter", chain: Chain, hook: "FORWARD",
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

func isDrop(rule []string) bool { return slices.Equal(rule[max(len(rule)-2, 0):], []string{"-j", "DROP"}) }

// Ensure makes the chain, the jump and this network's rules exist —
// above every network's accepts, a DROP of traffic from cidr to each
// range in isolate; then ACCEPTs of traffic from and to cidr — and
// removes this network's other rules (an earlier range, a network no
// longer served). It is idempotent and cheap when everything is in place
// (a few iptables reads).
func (f *Forward) Ensure(cidr netip.Prefix, isolate []netip.Prefix) error {
	var drops [][]string
	for _, o := range isolate {
		drops = append(drops, f.rules.rule([]string{"-s", cidr.String(), "-d", o.String()}, "DROP"))
	}
	accepts := [][]string{
		f.rules.rule([]string{"-s", cidr.String()}, "ACCEPT"),
		f.rules.rule([]string{"-d", cidr.String()}, "ACCEPT"),
	}
	return f.rules.ensure(drops, accepts)
}

// Remove deletes this network's rules; when no other network's rules are
// left it also removes the jump and the chain. Absent rules are success.
func (f *Forward) Remove() error { return f.rules.remove() }
