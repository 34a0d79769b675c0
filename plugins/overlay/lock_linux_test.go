package main

import (
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
)

// The netns lock excludes a second opener (as a second plugin process
// would be) until the first closes the namespace; the wait is bounded and
// ends in code 11.
func TestLockNetns(t *testing.T) {
	requireRoot(t)
	c := newNS(t)
	open := func() ns.NetNS {
		t.Helper()
		n, err := ns.GetNS(c.path())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	holder, waiter := open(), open()
	defer waiter.Close()
	if err := lockNetns(holder, c.path(), time.Second); err != nil {
		t.Fatalf("first lock: %v", err)
	}
	start := time.Now()
	e := wantCNICode(t, lockNetns(waiter, c.path(), 100*time.Millisecond), types.ErrTryAgainLater)
	if waited := time.Since(start); waited < 100*time.Millisecond || waited > 2*time.Second {
		t.Errorf("waited %s for a 100ms lock timeout", waited)
	}
	if e.Msg != "another ADD or DEL for this container is still running" {
		t.Errorf("lock timeout: %q / %q", e.Msg, e.Details)
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lockNetns(waiter, c.path(), time.Second); err != nil {
		t.Errorf("lock after the holder closed the namespace: %v", err)
	}
}
