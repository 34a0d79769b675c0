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
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// Chain is the filter-table chain overlay owns.
const Chain = "OVERLAY-FORWARD"

const table = "filter"

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

// Forward keeps the FORWARD accept rules of one network.
type Forward struct {
	ipt     runner
	network string
}

// NewForward returns the rule keeper for a network, using the iptables
// binary on PATH in the current network namespace.
func NewForward(network string) (*Forward, error) {
	ipt, err := iptables.New()
	if err != nil {
		return nil, fmt.Errorf("iptables is not usable (%v); install it (apt-get install iptables) or disable forward rules", err)
	}
	return &Forward{ipt: ipt, network: network}, nil
}

func (f *Forward) comment() string { return "overlay-net=" + f.network }

// rules are the wanted rules for cidr: traffic from and to the overlay range.
func (f *Forward) rules(cidr netip.Prefix) [][]string {
	c := []string{"-m", "comment", "--comment", f.comment(), "-j", "ACCEPT"}
	return [][]string{
		append([]string{"-s", cidr.String()}, c...),
		append([]string{"-d", cidr.String()}, c...),
	}
}

// Ensure makes the chain, the jump and this network's rules exist, and
// removes this network's rules for any other range. It is idempotent and
// cheap when everything is in place (a few iptables reads).
func (f *Forward) Ensure(cidr netip.Prefix) error {
	if err := f.ensureChain(); err != nil {
		return err
	}
	for _, r := range f.rules(cidr) {
		ok, err := f.ipt.Exists(table, Chain, r...)
		if err != nil {
			return fmt.Errorf("check rule %v in %s: %w", r, Chain, err)
		}
		if !ok {
			if err := f.ipt.Append(table, Chain, r...); err != nil {
				return fmt.Errorf("add rule %v to %s: %w", r, Chain, err)
			}
		}
	}
	return f.removeStale(cidr)
}

func (f *Forward) ensureChain() error {
	ok, err := f.ipt.ChainExists(table, Chain)
	if err != nil {
		return fmt.Errorf("look for chain %s: %w", Chain, err)
	}
	if !ok {
		if err := f.ipt.NewChain(table, Chain); err != nil {
			return fmt.Errorf("create chain %s: %w", Chain, err)
		}
	}
	jump := []string{"-j", Chain}
	ok, err = f.ipt.Exists(table, "FORWARD", jump...)
	if err != nil {
		return fmt.Errorf("check jump to %s: %w", Chain, err)
	}
	if !ok {
		// First in FORWARD, ahead of a DROP policy's rules (Docker's jumps).
		if err := f.ipt.Insert(table, "FORWARD", 1, jump...); err != nil {
			return fmt.Errorf("add jump FORWARD -> %s: %w", Chain, err)
		}
	}
	return nil
}

// removeStale deletes this network's rules that don't match cidr (left from
// an earlier config). Rules are deleted by number, from the bottom up, so
// earlier numbers stay valid.
func (f *Forward) removeStale(cidr netip.Prefix) error {
	lines, err := f.ipt.List(table, Chain)
	if err != nil {
		return fmt.Errorf("list %s: %w", Chain, err)
	}
	var stale []int
	for i, line := range lines { // lines[0] is "-N CHAIN"; rule n is lines[n]
		fields := strings.Fields(line)
		if i == 0 || !hasComment(fields, f.comment()) {
			continue
		}
		if !slices.Contains(fields, cidr.String()) {
			stale = append(stale, i)
		}
	}
	for _, n := range slices.Backward(stale) {
		if err := f.ipt.DeleteById(table, Chain, n); err != nil {
			return fmt.Errorf("delete stale rule %d of %s: %w", n, Chain, err)
		}
	}
	return nil
}

func hasComment(fields []string, comment string) bool {
	for i := 0; i+1 < len(fields); i++ {
		if fields[i] == "--comment" && strings.Trim(fields[i+1], `"`) == comment {
			return true
		}
	}
	return false
}

// Remove deletes this network's rules; when no other network's rules are
// left it also removes the jump and the chain. Absent rules are success.
func (f *Forward) Remove() error {
	ok, err := f.ipt.ChainExists(table, Chain)
	if err != nil || !ok {
		return err
	}
	if err := f.removeStale(netip.Prefix{}); err != nil { // no range matches: all of ours go
		return err
	}
	lines, err := f.ipt.List(table, Chain)
	if err != nil {
		return fmt.Errorf("list %s: %w", Chain, err)
	}
	if len(lines) > 1 {
		return nil // other networks still use the chain
	}
	if err := f.ipt.Delete(table, "FORWARD", "-j", Chain); err != nil {
		return fmt.Errorf("delete jump FORWARD -> %s: %w", Chain, err)
	}
	if err := f.ipt.ClearAndDeleteChain(table, Chain); err != nil {
		return fmt.Errorf("delete chain %s: %w", Chain, err)
	}
	return nil
}
