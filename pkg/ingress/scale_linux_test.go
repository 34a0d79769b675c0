package ingress

import (
	"testing"

	"github.com/google/nftables"
)

// Finding: at 10 000 members the set must hold all of them (one netlink
// message cannot carry them all).
func TestFilterHoldsTenThousandMembers(t *testing.T) {
	p := newPair(t)
	f := New("scale")
	members := membersUpTo(10000)
	p.ensure(t, f, 8472, members...)
	count := func() int {
		var n int
		p.in(t, func() error {
			c, _ := nftables.New()
			set, err := c.GetSetByName(f.tableRef(), setName)
			if err != nil {
				return err
			}
			els, err := c.GetSetElements(set)
			n = len(els)
			return err
		})
		return n
	}
	if n := count(); n != len(members) {
		t.Fatalf("set holds %d members after a rebuild, want %d", n, len(members))
	}
	if !p.arrives(t, member, 8472) {
		t.Error("the last of 10 000 members is dropped")
	}
	// Then grow it through the update path.
	more := append(membersUpTo(12000)[:11999], member)
	p.ensure(t, f, 8472, more...)
	if n := count(); n != len(more) {
		t.Fatalf("set holds %d members after adding 2 000, want %d", n, len(more))
	}
}
