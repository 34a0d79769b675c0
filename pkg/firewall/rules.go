package firewall

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
)

// ruleSet keeps one network's rules in a chain of ours, in order: the
// network's rules are told apart from other networks' by their comment,
// and split into a top group (kept above every network's other rules: the
// drops that isolate networks) and a bottom group (appended).
type ruleSet struct {
	ipt     runner
	mu      *sync.Mutex // the Tables' lock, shared by every keeper
	table   string
	chain   string
	hook    string // the built-in chain whose first rule jumps to chain
	comment string
	// top reports whether a rule (as wanted, or as listed) belongs to the
	// top group.
	top func(rule []string) bool
}

// rule builds a rule in the order iptables prints it: matches on
// addresses, then the comment, then the target and its options.
func (r *ruleSet) rule(match []string, target ...string) []string {
	out := slices.Clone(match)
	out = append(out, "-m", "comment", "--comment", r.comment)
	return append(append(out, "-j"), target...)
}

// addr is an address match as iptables prints it back, so a listed rule
// compares equal to the wanted one: the prefix masked (10.244.1.0/24, not
// 10.244.1.5/24), and no match at all for /0, which iptables leaves out.
// Otherwise every Ensure would see a difference and rewrite the rules.
func addr(flag string, p netip.Prefix) []string {
	if p.Bits() == 0 {
		return nil
	}
	return []string{flag, p.Masked().String()}
}

// checkPrefixes refuses what iptables would refuse (an invalid or IPv6
// range) before anything is written: a rule failing halfway through the
// adds would leave a partial copy next to the old rules, and a new one at
// every retry.
func (r *ruleSet) checkPrefixes(what string, ps ...netip.Prefix) error {
	for _, p := range ps {
		if !p.IsValid() || !p.Addr().Is4() {
			return fmt.Errorf("%s %s rules of %s: %s %q is not an IPv4 range", r.table, r.chain, r.comment, what, p)
		}
	}
	return nil
}

// listed is one of the network's rules in the chain, with its number.
type listed struct {
	n    int
	spec string
}

// ensure makes the chain and the jump exist and this network's rules be
// exactly top (in order, above everything) and bottom (in order, after
// the rules already there). A group that differs is added anew first and
// its old copies deleted after, so there is never a moment without the
// rules (a RETURN missing ahead of a MASQUERADE, an isolating DROP gone).
func (r *ruleSet) ensure(top, bottom [][]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	created, err := r.ensureChain()
	if err != nil {
		return err
	}
	var haveTop, haveBottom []listed
	if !created { // a chain just made is empty: no need to list it
		if haveTop, haveBottom, err = r.current(); err != nil {
			return err
		}
	}
	var stale []int
	shift := 0 // rules inserted above the old ones
	if !sameSpecs(haveTop, top) {
		// In order from position 1, so at every step the new rules above
		// are a prefix of the wanted list: a MASQUERADE is never inserted
		// ahead of the RETURNs that must precede it.
		for i, rule := range top {
			if err := r.write("insert", r.ipt.Insert(r.table, r.chain, i+1, rule...), rule); err != nil {
				return err
			}
		}
		shift = len(top)
		stale = appendNumbers(stale, haveTop, shift)
	}
	if !sameSpecs(haveBottom, bottom) {
		for _, rule := range bottom {
			if err := r.write("append", r.ipt.Append(r.table, r.chain, rule...), rule); err != nil {
				return err
			}
		}
		stale = appendNumbers(stale, haveBottom, shift)
	}
	return r.deleteNumbers(stale)
}

// appendNumbers adds the rule numbers of rules, moved down by shift.
func appendNumbers(ns []int, rules []listed, shift int) []int {
	for _, l := range rules {
		ns = append(ns, l.n+shift)
	}
	return ns
}

func (r *ruleSet) write(what string, err error, rule []string) error {
	if err != nil {
		return fmt.Errorf("%s rule %q in %s %s: %w", what, strings.Join(rule, " "), r.table, r.chain, err)
	}
	return nil
}

// deleteNumbers deletes rules by number, from the bottom up, so the
// numbers still to delete stay valid.
func (r *ruleSet) deleteNumbers(ns []int) error {
	slices.Sort(ns)
	for _, n := range slices.Backward(ns) {
		if err := r.ipt.DeleteById(r.table, r.chain, n); err != nil {
			return fmt.Errorf("delete stale rule %d of %s %s: %w", n, r.table, r.chain, err)
		}
	}
	return nil
}

// current lists this network's rules, split into the two groups.
func (r *ruleSet) current() (top, bottom []listed, err error) {
	lines, err := r.ipt.List(r.table, r.chain)
	if err != nil {
		return nil, nil, fmt.Errorf("list %s %s: %w", r.table, r.chain, err)
	}
	for i, line := range lines { // lines[0] is "-N CHAIN"; rule n is lines[n]
		fields := strings.Fields(strings.ReplaceAll(line, `"`, ""))
		if i == 0 || len(fields) < 2 || !hasComment(fields, r.comment) {
			continue
		}
		rule := fields[2:] // drop "-A CHAIN"
		l := listed{n: i, spec: strings.Join(rule, " ")}
		if r.top(rule) {
			top = append(top, l)
		} else {
			bottom = append(bottom, l)
		}
	}
	return top, bottom, nil
}

func sameSpecs(have []listed, want [][]string) bool {
	return slices.EqualFunc(have, want, func(h listed, w []string) bool { return h.spec == strings.Join(w, " ") })
}

// ensureChain makes the chain and the hook's jump to it exist, and
// reports whether it made the chain. Each iptables run costs a process
// start (about 2 ms), and on a host's first start these runs delay its
// ready stamp: a chain just made is known to have no jump yet (iptables
// refuses a jump to a chain that does not exist), so the jump is added
// without looking.
func (r *ruleSet) ensureChain() (created bool, err error) {
	ok, err := r.ipt.ChainExists(r.table, r.chain)
	if err != nil {
		return false, fmt.Errorf("look for chain %s %s: %w", r.table, r.chain, err)
	}
	if !ok {
		if err := r.ipt.NewChain(r.table, r.chain); err != nil {
			return false, fmt.Errorf("create chain %s %s: %w", r.table, r.chain, err)
		}
	}
	jump := []string{"-j", r.chain}
	if ok {
		jumps, err := r.ipt.Exists(r.table, r.hook, jump...)
		if err != nil {
			return false, fmt.Errorf("check jump %s -> %s: %w", r.hook, r.chain, err)
		}
		if jumps {
			return false, nil
		}
	}
	// First in the hook, ahead of rules others add (Docker's jumps).
	if err := r.ipt.Insert(r.table, r.hook, 1, jump...); err != nil {
		return !ok, fmt.Errorf("add jump %s -> %s: %w", r.hook, r.chain, err)
	}
	return !ok, nil
}

// remove deletes this network's rules; when no other network's rules are
// left it also removes the jump and the chain. Absent rules are success.
func (r *ruleSet) remove() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	ok, err := r.ipt.ChainExists(r.table, r.chain)
	if err != nil {
		return fmt.Errorf("look for chain %s %s: %w", r.table, r.chain, err)
	}
	if !ok {
		return nil
	}
	top, bottom, err := r.current()
	if err != nil {
		return err
	}
	if err := r.deleteNumbers(appendNumbers(appendNumbers(nil, top, 0), bottom, 0)); err != nil {
		return err
	}
	lines, err := r.ipt.List(r.table, r.chain)
	if err != nil {
		return fmt.Errorf("list %s %s: %w", r.table, r.chain, err)
	}
	if len(lines) > 1 {
		return nil // other networks still use the chain
	}
	return r.removeChain()
}

// removeChain deletes the jump, if there, and the empty chain (a jump
// already gone, e.g. flushed by hand, is no reason to keep the chain).
func (r *ruleSet) removeChain() error {
	jump := []string{"-j", r.chain}
	ok, err := r.ipt.Exists(r.table, r.hook, jump...)
	if err != nil {
		return fmt.Errorf("check jump %s -> %s: %w", r.hook, r.chain, err)
	}
	if ok {
		if err := r.ipt.Delete(r.table, r.hook, jump...); err != nil {
			return fmt.Errorf("delete jump %s -> %s: %w", r.hook, r.chain, err)
		}
	}
	if err := r.ipt.ClearAndDeleteChain(r.table, r.chain); err != nil {
		return fmt.Errorf("delete chain %s %s: %w", r.table, r.chain, err)
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
