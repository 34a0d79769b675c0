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
//	        udp dport PORT ip saddr != @members counter drop  # comment "port=PORT"
//	    }
//	}
//
// A set, not one rule per member: a lookup costs the same at 10 000
// members as at 10, and a member change is one element added or removed
// (see bench_linux_test.go for the numbers against an iptables chain).
// The chain only drops and its policy is accept, so it cannot admit
// anything another table drops; priority -10 runs it before iptables'
// filter chains (0), so a non-member's packet is counted here even when
// another firewall would drop it too.
//
// This package is the only importer of github.com/google/nftables.
package ingress

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

const (
	chainName = "input"
	setName   = "members"
	// priority runs the filter before iptables' filter chains (0).
	priority = -10
)

// Filter keeps one network's VXLAN ingress filter in the calling
// process's network namespace.
type Filter struct {
	table string
}

// New returns the filter keeper of a network; nothing is touched before
// Ensure.
func New(network string) *Filter {
	return &Filter{table: "overlay-" + network}
}

func (f *Filter) tableRef() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: f.table}
}

// Ensure makes the table, chain, set and rule exist for port, and the set
// hold exactly members. It compares with what the kernel holds, so a
// deleted table or an edited set is repaired. A missing or different
// table, chain or rule is rebuilt whole, and member changes are applied,
// in one netlink batch: nftables applies a batch atomically, so no packet
// ever meets a half-built filter or a set missing a member that stays.
func (f *Filter) Ensure(port uint16, members []netip.Addr) error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	want, err := addrElements(members)
	if err != nil {
		return fmt.Errorf("ingress filter %s: %w", f.table, err)
	}
	set, intact, err := f.inspect(conn, port)
	if err != nil {
		return err
	}
	if !intact {
		f.rebuild(conn, port, want)
	} else if err := f.syncMembers(conn, set, want); err != nil {
		return err
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("write ingress filter %s for port %d: %w", f.table, port, err)
	}
	return nil
}

// inspect reports whether the table holds our chain with exactly our rule
// for port and our set; it returns the set when it exists.
func (f *Filter) inspect(conn *nftables.Conn, port uint16) (*nftables.Set, bool, error) {
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, false, fmt.Errorf("list nftables tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == f.table }) {
		return nil, false, nil
	}
	table := f.tableRef()
	set, err := conn.GetSetByName(table, setName)
	if err != nil {
		return nil, false, nil // no set: rebuild
	}
	chain, err := conn.ListChain(table, chainName)
	if err != nil || chain.Hooknum == nil || *chain.Hooknum != *nftables.ChainHookInput ||
		chain.Priority == nil || *chain.Priority != priority {
		return set, false, nil
	}
	rules, err := conn.GetRules(table, chain)
	if err != nil {
		return nil, false, fmt.Errorf("list rules of %s: %w", f.table, err)
	}
	return set, len(rules) == 1 && bytes.Equal(rules[0].UserData, portTag(port)), nil
}

// rebuild queues the whole table anew: deleting and re-adding it in one
// batch replaces whatever was there.
func (f *Filter) rebuild(conn *nftables.Conn, port uint16, members []nftables.SetElement) {
	table := conn.AddTable(f.tableRef())
	conn.DelTable(table)
	table = conn.AddTable(f.tableRef())
	set := &nftables.Set{Table: table, Name: setName, KeyType: nftables.TypeIPAddr}
	// AddSet only fails for set types this package does not use.
	_ = conn.AddSet(set, nil)
	_ = forChunks(members, func(c []nftables.SetElement) error { return conn.SetAddElements(set, c) })
	accept := nftables.ChainPolicyAccept
	chain := conn.AddChain(&nftables.Chain{
		Name: chainName, Table: table, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(priority), Policy: &accept,
	})
	conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: dropNonMembers(port, set), UserData: portTag(port)})
}

// dropNonMembers is `udp dport PORT ip saddr != @members counter drop`.
func dropNonMembers(port uint16, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, port)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID, Invert: true},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// portTag is the rule's user data: the port it was built for, so a port
// change is seen without decoding the expressions.
func portTag(port uint16) []byte { return fmt.Appendf(nil, "port=%d", port) }

// syncMembers queues the elements to add and to remove.
func (f *Filter) syncMembers(conn *nftables.Conn, set *nftables.Set, want []nftables.SetElement) error {
	have, err := conn.GetSetElements(set)
	if err != nil {
		return fmt.Errorf("list members of %s: %w", f.table, err)
	}
	add, del := diffElements(want, have)
	if err := forChunks(add, func(c []nftables.SetElement) error { return conn.SetAddElements(set, c) }); err != nil {
		return fmt.Errorf("add members to %s: %w", f.table, err)
	}
	if err := forChunks(del, func(c []nftables.SetElement) error { return conn.SetDeleteElements(set, c) }); err != nil {
		return fmt.Errorf("remove members from %s: %w", f.table, err)
	}
	return nil
}

// chunk is how many elements go in one netlink message. The element list
// is one attribute, whose length field has 16 bits: about 1 800 IPv4
// elements fit, and more were cut off silently (found at 10 000 members).
// Messages of one Flush still form one atomic batch.
const chunk = 1000

func forChunks(els []nftables.SetElement, queue func([]nftables.SetElement) error) error {
	for len(els) > 0 {
		n := min(chunk, len(els))
		if err := queue(els[:n]); err != nil {
			return err
		}
		els = els[n:]
	}
	return nil
}

func addrElements(addrs []netip.Addr) ([]nftables.SetElement, error) {
	out := make([]nftables.SetElement, 0, len(addrs))
	for _, a := range addrs {
		if !a.Is4() {
			return nil, fmt.Errorf("member %s is not an IPv4 address", a)
		}
		b := a.As4()
		out = append(out, nftables.SetElement{Key: b[:]})
	}
	return out, nil
}

// diffElements returns the elements of want missing from have and those
// of have not in want.
func diffElements(want, have []nftables.SetElement) (add, del []nftables.SetElement) {
	key := func(e nftables.SetElement) string { return string(e.Key) }
	in := func(s []nftables.SetElement) map[string]bool {
		m := make(map[string]bool, len(s))
		for _, e := range s {
			m[key(e)] = true
		}
		return m
	}
	haveSet, wantSet := in(have), in(want)
	for _, e := range want {
		if !haveSet[key(e)] {
			add = append(add, e)
			haveSet[key(e)] = true // once, even if want repeats it
		}
	}
	for _, e := range have {
		if !wantSet[key(e)] {
			del = append(del, e)
		}
	}
	return add, del
}

// Dropped reads the drop rule's packet counter: 0 when the filter is absent.
func (f *Filter) Dropped() (uint64, error) {
	conn, err := nftables.New()
	if err != nil {
		return 0, fmt.Errorf("open nftables: %w", err)
	}
	table := f.tableRef()
	chain, err := conn.ListChain(table, chainName)
	if err != nil {
		return 0, nil // no table or chain: nothing dropped
	}
	rules, err := conn.GetRules(table, chain)
	if err != nil {
		return 0, fmt.Errorf("list rules of %s: %w", f.table, err)
	}
	var n uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				n += c.Packets
			}
		}
	}
	return n, nil
}

// Remove deletes the network's table; an absent table is success.
func (f *Filter) Remove() error {
	conn, err := nftables.New()
	if err != nil {
		return fmt.Errorf("open nftables: %w", err)
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	if !slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == f.table }) {
		return nil
	}
	conn.DelTable(f.tableRef())
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("delete nftables table %s: %w", f.table, err)
	}
	return nil
}
