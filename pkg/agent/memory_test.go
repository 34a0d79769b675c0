package agent

import (
	"sync/atomic"
	"testing"
	"time"
)

// Memory is handed back once a burst of writes is over, not during it and
// not after small passes.
func TestMemoryReturnedAfterABurst(t *testing.T) {
	var released atomic.Int32
	m := &memoryReturner{release: func() { released.Add(1) }}
	m.wrote(burstWrites - 1)
	time.Sleep(burstOver + 200*time.Millisecond)
	if n := released.Load(); n != 0 {
		t.Fatalf("%d writes handed memory back %d times, want 0", burstWrites-1, n)
	}
	for range 5 { // a burst: passes closer together than burstOver
		m.wrote(burstWrites)
		time.Sleep(burstOver / 4)
	}
	if n := released.Load(); n != 0 {
		t.Fatalf("memory handed back %d times during the burst, want 0", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for released.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := released.Load(); n != 1 {
		t.Fatalf("memory handed back %d times after the burst, want 1", n)
	}
	m.wrote(burstWrites)
	m.stop()
	time.Sleep(burstOver + 200*time.Millisecond)
	if n := released.Load(); n != 1 {
		t.Fatalf("a stopped returner handed memory back (%d times)", n)
	}
}
