package agent

import (
	"runtime/debug"
	"sync"
	"time"
)

// Programming thousands of peers (hosts joining en masse, a reprogram after
// the VXLAN device was lost) churns through far more memory than the
// daemon keeps: every netlink request and notification gets a fresh 64 KiB
// receive buffer from the netlink library. The garbage collector frees it,
// but Go hands freed memory back to the OS only slowly, so after 10 000
// peers joined the daemon stayed at 90 MiB resident where its steady state
// is under 40 MiB. Once a burst of writes is over, its memory is handed
// back at once.
const (
	// burstWrites is how many entries the passes must have written since
	// the last hand-back for one to be worth it (a forced collection).
	burstWrites = 1000
	// burstOver is how long no pass may write before the burst counts as
	// over.
	burstOver = time.Second
)

// memoryReturner hands memory back to the OS after a burst of writes.
type memoryReturner struct {
	mu      sync.Mutex
	written int
	timer   *time.Timer
	// release is debug.FreeOSMemory; tests count calls instead.
	release func()
}

// wrote notes that a pass wrote n entries.
func (m *memoryReturner) wrote(n int) {
	if n == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.written += n
	if m.written < burstWrites {
		return
	}
	if m.timer != nil {
		m.timer.Stop()
	}
	m.timer = time.AfterFunc(burstOver, m.handBack)
}

func (m *memoryReturner) handBack() {
	m.mu.Lock()
	m.written, m.timer = 0, nil
	release := m.release
	m.mu.Unlock()
	if release == nil {
		release = debug.FreeOSMemory
	}
	release()
}

// stop cancels a pending hand-back.
func (m *memoryReturner) stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
}
