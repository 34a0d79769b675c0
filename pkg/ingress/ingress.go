// Package ingress keeps the VXLAN ingress filter of one overlay network.
// VXLAN has no authentication: anyone who can send UDP to a host's VXLAN
// port can inject frames into its overlay, spoofing any container. The
// filter admits the network's port only from the underlay addresses of the
// network's members and drops (and counts) the rest.
//
// It lives in an nftables table of our own per network, "ip
// overlay-NETWORK", written over netlink (github.com/google/nftables; no
// nft binary needed):
//
//	table ip overlay-NETWORK {
//	    set members { type ipv4_addr; elements = { … } }
//	    chain input {
//	        type filter hook input priority -10; policy accept;
//	        udp dport PORT ip saddr != @members counter drop comment "…"
//	    }
//	}
//
// A set, not one rule per member: a lookup costs the same at 10 000
// members as at 10, and a member change is one element added or removed
// (bench_linux_test.go has the numbers against an iptables chain).
//
// The chain only drops and its policy is accept, so it cannot admit
// anything another table drops. Priority -10 runs it before iptables'
// filter chains (priority 0, iptables-nft's too), so a non-member's packet
// is counted here even when another firewall would drop it as well, and
// after conntrack (-200): a dropped packet's conntrack entry is never
// confirmed, so a flood of strangers does not fill the conntrack table.
// The input hook sees only packets for this host (the VXLAN socket's),
// never forwarded ones, and sees them reassembled.
//
// Table names: nftables allows 255 bytes; "overlay-" plus a network name
// (at most 63 characters, netconf) is at most 71. Names are case
// sensitive in both, so networks "a" and "A" get different tables. Two
// networks must not share a port (netconf refuses it): each table drops
// the port's packets from everyone who is not a member of its network.
//
// This package is the only importer of github.com/google/nftables.
package ingress

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

const (
	tablePrefix = "overlay-"
	chainName   = "input"
	setName     = "members"
	// priority runs the filter before iptables' filter chains (0) and
	// after conntrack (-200); see the package comment.
	priority = -10
	// chunk is how many elements go in one netlink message: an element
	// takes 16 bytes and the message's element list is one attribute,
	// whose length is 16 bits, so a list of more than 4095 elements
	// overflows it (the library does not check: the kernel then sees a
	// truncated list and adds only some members, without an error).
	// Several messages in one batch are still applied atomically.
	chunk = 1024
)

// Filter keeps one network's VXLAN ingress filter in the calling
// process's network namespace. It holds no state but the names: every
// call reads the kernel, so it is safe for concurrent use (the agent's
// Ensure and a metrics scrape's Dropped), and two Filters of one network
// are the same filter.
type Filter struct {
	network string
	table   string
}

// New returns the filter keeper of a network; nothing is touched before
// Ensure.
func New(network string) *Filter {
	return &Filter{network: network, table: tablePrefix + network}
}

func (f *Filter) tableRef() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: f.table}
}

// Ensure makes the table, chain, set and rule exist for port, and the set
// hold exactly members. It compares with what the kernel holds, so a
// deleted table or an edited set is repaired, and writes nothing when all
// is in place. Whatever needs writing goes in one netlink batch, which
// nftables applies atomically: no packet ever meets a half-built filter
// or a set missing a member that stays.
func (f *Filter) Ensure(port uint16, members []netip.Addr) error {
	if port == 0 {
		return fmt.Errorf("ingress filter %s: port 0", f.table)
	}
	want, err := keys(members)
	if err != nil {
		return fmt.Errorf("ingress filter %s: %w", f.table, err)
	}
	// One socket for all the reads; the write gets its own, sized for it.
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("ingress filter %s: open nftables: %w", f.table, err)
	}
	defer conn.CloseLasting()
	p, err := f.plan(conn, port, want)
	if err != nil {
		return err
	}
	if p.empty() {
		return nil
	}
	w, err := nftables.New(nftables.WithSockOptions(sendBuffer(p.size())))
	if err != nil {
		return fmt.Errorf("ingress filter %s: open nftables: %w", f.table, err)
	}
	if err := f.write(w, port, p); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("update ingress filter %s (port %d, %d members; %s): %w", f.table, port, len(want), p, err)
	}
	return nil
}

// plan is what Ensure writes: the whole table anew, or the rule and the
// member elements that differ.
type plan struct {
	rebuild  bool // table, set, chain and rule anew, the set holding add
	existed  bool // the table was there, so a rebuild first deletes it
	rule     bool // the chain's rules replaced by ours
	counter  expr.Counter
	add, del [][4]byte
}

func (p plan) empty() bool { return !p.rebuild && !p.rule && len(p.add) == 0 && len(p.del) == 0 }

// size bounds the batch's bytes: 16 per element plus headers.
func (p plan) size() int { return 64<<10 + 24*(len(p.add)+len(p.del)) }

func (p plan) String() string {
	if p.rebuild {
		return "table rebuilt"
	}
	return fmt.Sprintf("rule replaced %v, %d members added, %d removed", p.rule, len(p.add), len(p.del))
}

// plan compares the kernel's table with the wanted one.
func (f *Filter) plan(conn *nftables.Conn, port uint16, want map[[4]byte]bool) (plan, error) {
	all := plan{rebuild: true, add: sortedKeys(want)}
	table, err := conn.ListTableOfFamily(f.table, nftables.TableFamilyIPv4)
	if errors.Is(err, unix.ENOENT) {
		return all, nil
	}
	if err != nil {
		return plan{}, fmt.Errorf("read nftables table %s: %w", f.table, err)
	}
	all.existed = true
	// A dormant table filters nothing; an owned one belongs to another
	// process's socket. Neither is what we made.
	if table.Flags != 0 {
		return all, nil
	}
	chain, err := f.chain(conn)
	if err != nil {
		return plan{}, err
	}
	if chain == nil {
		return all, nil
	}
	rules, err := conn.GetRules(f.tableRef(), chain)
	if err != nil {
		return plan{}, fmt.Errorf("read the rules of %s: %w", f.table, err)
	}
	// Keep the drop count across a port change or a repair, so the
	// exported counter does not go back.
	for _, r := range rules {
		if c, ok := ourCounter(r); ok {
			all.counter = c
			break
		}
	}
	set, err := f.set(conn)
	if err != nil {
		return plan{}, err
	}
	if set == nil || !chainIsOurs(chain) {
		return all, nil
	}
	p := plan{counter: all.counter}
	p.rule = len(rules) != 1 || !isRule(rules[0], port)
	have, ok, err := f.members(conn, set)
	if err != nil {
		return plan{}, err
	}
	if !ok {
		return all, nil // cannot tell what the set holds: replace it
	}
	for k := range want {
		if !have[k] {
			p.add = append(p.add, k)
		}
	}
	for k := range have {
		if !want[k] {
			p.del = append(p.del, k)
		}
	}
	return p, nil
}

// members reads the set's elements; ok is false when the set holds
// something we never put there or the kernel's dump stayed inconsistent.
//
// The kernel dumps a set in pieces, each walking the hash table afresh
// and skipping as many elements as were sent before. Just after thousands
// of elements came or went, the table resizes in the background and its
// order changes between pieces: the dump then repeats some elements and
// leaves out as many others (seen here at 30 000 members, for up to a
// few hundred ms). Ensure would not delete a departed member it did not
// see, so a dump with repeats is read again, and after a few tries the
// set is replaced instead. (No repeats means nothing left out: a dump
// sends as many elements as the set holds, unless someone else changes
// it meanwhile, which the next Ensure repairs.)
func (f *Filter) members(conn *nftables.Conn, set *nftables.Set) (map[[4]byte]bool, bool, error) {
	for try := range 4 {
		if try > 0 {
			time.Sleep(25 * time.Millisecond << (try - 1))
		}
		elems, err := conn.GetSetElements(set)
		if err != nil {
			return nil, false, fmt.Errorf("read the members of %s: %w", f.table, err)
		}
		have := make(map[[4]byte]bool, len(elems))
		for _, e := range elems {
			if len(e.Key) != 4 || e.IntervalEnd {
				return nil, false, nil // not a set we made
			}
			have[[4]byte(e.Key)] = true
		}
		if len(have) == len(elems) {
			return have, true, nil
		}
	}
	return nil, false, nil
}

// chain returns the table's chain of our chain's name, nil when missing.
// (ListChain would do, but it does not let us tell missing from failed.)
func (f *Filter) chain(conn *nftables.Conn) (*nftables.Chain, error) {
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("read the chains of %s: %w", f.table, err)
	}
	for _, c := range chains {
		if c.Table != nil && c.Table.Name == f.table && c.Name == chainName {
			return c, nil
		}
	}
	return nil, nil
}

// chainIsOurs reports whether c is the base chain we make: another hook,
// priority or type, or a drop policy, is not.
func chainIsOurs(c *nftables.Chain) bool {
	return c.Type == nftables.ChainTypeFilter && c.Hooknum != nil && *c.Hooknum == *nftables.ChainHookInput &&
		c.Priority != nil && *c.Priority == priority && c.Policy != nil && *c.Policy == nftables.ChainPolicyAccept
}

// set returns our set, nil when it is missing or of another kind.
func (f *Filter) set(conn *nftables.Conn) (*nftables.Set, error) {
	sets, err := conn.GetSets(f.tableRef())
	if err != nil {
		return nil, fmt.Errorf("read the sets of %s: %w", f.table, err)
	}
	for _, s := range sets {
		if s.Name != setName {
			continue
		}
		if s.KeyType.Name != nftables.TypeIPAddr.Name || s.IsMap || s.Interval || s.Constant ||
			s.Anonymous || s.HasTimeout || s.Concatenation {
			return nil, nil
		}
		return s, nil
	}
	return nil, nil
}

// write queues p on conn.
func (f *Filter) write(conn *nftables.Conn, port uint16, p plan) error {
	table := f.tableRef()
	set := &nftables.Set{Table: table, Name: setName, KeyType: nftables.TypeIPAddr}
	chain := &nftables.Chain{Table: table, Name: chainName}
	if p.rebuild {
		if p.existed {
			// Adding, deleting and adding the table in one batch replaces
			// whatever was there (and works if it went meanwhile). Only
			// then: a batch that deletes anything waits for an RCU grace
			// period, 10-16 ms here, where creating takes 0.1 ms.
			conn.AddTable(table)
			conn.DelTable(table)
		}
		conn.AddTable(table)
		if err := conn.AddSet(set, nil); err != nil {
			return fmt.Errorf("create the member set of %s: %w", f.table, err)
		}
		accept := nftables.ChainPolicyAccept
		chain = conn.AddChain(&nftables.Chain{
			Name: chainName, Table: table, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(priority), Policy: &accept,
		})
	}
	// Elements before the rule: the set is complete when the rule that
	// uses it appears (all in one batch, so this is belt and braces).
	for c := range slices.Chunk(p.add, chunk) {
		if err := conn.SetAddElements(set, elements(c)); err != nil {
			return fmt.Errorf("add members to %s: %w", f.table, err)
		}
	}
	for c := range slices.Chunk(p.del, chunk) {
		if err := conn.SetDeleteElements(set, elements(c)); err != nil {
			return fmt.Errorf("remove members from %s: %w", f.table, err)
		}
	}
	if p.rebuild || p.rule {
		if !p.rebuild {
			conn.FlushChain(chain)
		}
		conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: dropNonMembers(port, set, p.counter),
			UserData: userdata.AppendString(nil, userdata.TypeComment, "overlay network "+f.network+": vxlan only from members")})
	}
	return nil
}

// dropNonMembers is `udp dport PORT ip saddr != @members counter drop`,
// the counter starting at c.
func dropNonMembers(port uint16, set *nftables.Set, c expr.Counter) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: true},
		&c,
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// isRule reports whether r, as read back from the kernel, is our drop
// rule for port (whatever its counter says).
func isRule(r *nftables.Rule, port uint16) bool {
	p, ok := rulePort(r)
	return ok && p == port
}

// rulePort returns the port of r if r is our drop rule for some port.
func rulePort(r *nftables.Rule) (uint16, bool) {
	if len(r.Exprs) != 8 {
		return 0, false
	}
	cmp, ok := r.Exprs[3].(*expr.Cmp)
	if !ok || len(cmp.Data) != 2 {
		return 0, false
	}
	port := binary.BigEndian.Uint16(cmp.Data)
	want := dropNonMembers(port, &nftables.Set{Name: setName}, expr.Counter{})
	for i, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Counter:
			e = &expr.Counter{} // counts are not part of the rule's meaning
			if !reflect.DeepEqual(e, want[i]) {
				return 0, false
			}
		case *expr.Lookup:
			l := *e
			l.SetID = 0 // the kernel reports the set by name
			if !reflect.DeepEqual(&l, want[i]) {
				return 0, false
			}
		default:
			if !reflect.DeepEqual(e, want[i]) {
				return 0, false
			}
		}
	}
	return port, true
}

// ourCounter returns the counter of r if r is our drop rule (any port).
func ourCounter(r *nftables.Rule) (expr.Counter, bool) {
	if _, ok := rulePort(r); !ok {
		return expr.Counter{}, false
	}
	return *r.Exprs[6].(*expr.Counter), true
}

// keys checks and deduplicates the members.
func keys(addrs []netip.Addr) (map[[4]byte]bool, error) {
	out := make(map[[4]byte]bool, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if !a.Is4() {
			return nil, fmt.Errorf("member %s is not an IPv4 address", a)
		}
		out[a.As4()] = true
	}
	return out, nil
}

// sortedKeys orders the set's keys, so a rebuild's batch is the same
// from one run to the next.
func sortedKeys(m map[[4]byte]bool) [][4]byte {
	out := make([][4]byte, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b [4]byte) int { return slices.Compare(a[:], b[:]) })
	return out
}

func elements(ks [][4]byte) []nftables.SetElement {
	out := make([]nftables.SetElement, len(ks))
	for i, k := range ks {
		out[i] = nftables.SetElement{Key: k[:]}
	}
	return out
}

// sendBuffer lets a socket send a batch of n bytes. nftables takes a batch
// in one sendmsg, which fails (EMSGSIZE) above the socket's send buffer:
// 208 KiB by default, about 13 000 elements. Like nft, we raise it with
// SO_SNDBUFFORCE (we hold CAP_NET_ADMIN, or the write fails anyway); it is
// a limit, not memory set aside. SO_SNDBUF, capped by net.core.wmem_max,
// is the fallback.
func sendBuffer(n int) nftables.SockOption {
	return func(c *netlink.Conn) error {
		if n <= 128<<10 {
			return nil
		}
		raw, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, n)
		}); err != nil {
			return err
		}
		if serr != nil {
			return c.SetWriteBuffer(n)
		}
		return nil
	}
}

// Dropped reads the drop rule's packet counter: 0 when the filter is absent.
func (f *Filter) Dropped() (uint64, error) {
	conn, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return 0, fmt.Errorf("ingress filter %s: open nftables: %w", f.table, err)
	}
	defer conn.CloseLasting()
	_, err = conn.ListTableOfFamily(f.table, nftables.TableFamilyIPv4)
	if errors.Is(err, unix.ENOENT) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read nftables table %s: %w", f.table, err)
	}
	chain, err := f.chain(conn)
	if err != nil || chain == nil {
		return 0, err
	}
	rules, err := conn.GetRules(f.tableRef(), chain)
	if err != nil {
		return 0, fmt.Errorf("read the rules of %s: %w", f.table, err)
	}
	for _, r := range rules {
		if c, ok := ourCounter(r); ok {
			return c.Packets, nil
		}
	}
	return 0, nil
}

// Remove deletes the network's table; an absent table is success.
func (f *Filter) Remove() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("ingress filter %s: open nftables: %w", f.table, err)
	}
	conn.DelTable(f.tableRef())
	err = conn.Flush()
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete nftables table %s: %w", f.table, err)
	}
	return nil
}
