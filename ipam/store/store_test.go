package store

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/overlaynet/overlay/ipam/allocator"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := New(t.TempDir(), "default")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

func newRange(t *testing.T, subnet, gateway string) allocator.Range {
	t.Helper()
	r, err := allocator.NewRange(netip.MustParsePrefix(subnet), netip.MustParseAddr(gateway))
	if err != nil {
		t.Fatalf("NewRange: %v", err)
	}
	return r
}

func att(id string) Attachment { return Attachment{ContainerID: id, IfName: "eth0"} }

func reserve(t *testing.T, s *Store, a Attachment, r allocator.Range) netip.Addr {
	t.Helper()
	res, err := s.Reserve(a, r)
	if err != nil {
		t.Fatalf("Reserve(%s): %v", a, err)
	}
	return res.IP
}

func wantLookup(t *testing.T, s *Store, a Attachment, want netip.Addr) {
	t.Helper()
	got, err := s.Lookup(a)
	if !want.IsValid() {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Lookup(%s) = %v, %v; want ErrNotFound", a, got, err)
		}
		return
	}
	if err != nil || got != want {
		t.Errorf("Lookup(%s) = %v, %v; want %s", a, got, err, want)
	}
}

func TestReserveReleaseReuse(t *testing.T) {
	s := newStore(t)
	r := newRange(t, "10.244.3.0/29", "10.244.3.1") // .2 to .6
	a := reserve(t, s, att("a"), r)
	b := reserve(t, s, att("b"), r)
	if a.String() != "10.244.3.2" || b.String() != "10.244.3.3" {
		t.Fatalf("got %s, %s; want 10.244.3.2, 10.244.3.3", a, b)
	}
	wantLookup(t, s, att("a"), a)

	if err := s.Release(att("a")); err != nil {
		t.Fatalf("Release: %v", err)
	}
	wantLookup(t, s, att("a"), netip.Addr{})
	// Round-robin: the released .2 comes back only after the rest is used.
	for i, want := range []string{"10.244.3.4", "10.244.3.5", "10.244.3.6", "10.244.3.2"} {
		if got := reserve(t, s, att(fmt.Sprint("c", i)), r); got.String() != want {
			t.Errorf("reservation %d = %s, want %s", i, got, want)
		}
	}
	_, err := s.Reserve(att("full"), r)
	var ex *allocator.ExhaustedError
	if !errors.As(err, &ex) {
		t.Errorf("Reserve on a full range: %v, want ExhaustedError", err)
	}
}

func TestReleaseTwiceAndUnknown(t *testing.T) {
	s := newStore(t)
	r := newRange(t, "10.244.3.0/24", "10.244.3.1")
	reserve(t, s, att("a"), r)
	for i := range 2 {
		if err := s.Release(att("a")); err != nil {
			t.Fatalf("Release #%d: %v", i+1, err)
		}
	}
	if err := s.Release(att("never")); err != nil {
		t.Errorf("Release of an unknown attachment: %v", err)
	}
	if got, err := s.List(); err != nil || len(got) != 0 {
		t.Errorf("List = %v, %v; want empty", got, err)
	}
}

func TestReserveIsIdempotent(t *testing.T) {
	s := newStore(t)
	r := newRange(t, "10.244.3.0/24", "10.244.3.1")
	first := reserve(t, s, att("a"), r)
	reserve(t, s, att("b"), r)
	again, err := s.Reserve(att("a"), r)
	if err != nil || again != (Reservation{IP: first}) {
		t.Errorf("second Reserve for the same attachment = %+v, %v; want %s, not new", again, err, first)
	}
	other := reserve(t, s, Attachment{ContainerID: "a", IfName: "eth1"}, r)
	if other == first {
		t.Errorf("a second interface of the container got the same address %s", other)
	}
}

// TestReserveSaysWhetherNew: only the call that took an address reports it
// as new, so only that ADD may hand it back when it fails; concurrent calls
// for one attachment share one address.
func TestReserveSaysWhetherNew(t *testing.T) {
	dir := t.TempDir()
	r := newRange(t, "10.244.3.0/24", "10.244.3.1")
	const n = 10
	got := make([]Reservation, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := New(dir, "default")
			if err != nil {
				errs[i] = err
				return
			}
			got[i], errs[i] = s.Reserve(att("a"), r)
		})
	}
	wg.Wait()
	fresh := 0
	for i, res := range got {
		if errs[i] != nil {
			t.Fatalf("Reserve %d: %v", i, errs[i])
		}
		if res.IP != got[0].IP {
			t.Errorf("Reserve %d gave %s, Reserve 0 gave %s for the same attachment", i, res.IP, got[0].IP)
		}
		if res.New {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d of %d Reserve calls for one attachment said New, want exactly 1", fresh, n)
	}

	// After the subnet changed the old address is gone and the one in the
	// new range is new.
	s := newStore(t)
	reserve(t, s, att("a"), r)
	moved, err := s.Reserve(att("a"), newRange(t, "10.244.9.0/24", "10.244.9.1"))
	if err != nil || !moved.New {
		t.Errorf("Reserve in a new range = %+v, %v; want a new reservation", moved, err)
	}
}

// TestReserveAfterSubnetChange covers a host that leased a new subnet: the
// old address must not be returned and must not stay reserved.
func TestReserveAfterSubnetChange(t *testing.T) {
	s := newStore(t)
	old := reserve(t, s, att("a"), newRange(t, "10.244.3.0/24", "10.244.3.1"))
	got := reserve(t, s, att("a"), newRange(t, "10.244.9.0/24", "10.244.9.1"))
	if got.String() != "10.244.9.2" {
		t.Errorf("Reserve in new subnet = %s, want 10.244.9.2", got)
	}
	allocs, err := s.List()
	if err != nil || len(allocs) != 1 || allocs[0].IP != got {
		t.Errorf("List = %v, %v; want only %s (old %s released)", allocs, err, got, old)
	}
}

func TestConcurrentReserve(t *testing.T) {
	dir := t.TempDir()
	r := newRange(t, "10.244.3.0/24", "10.244.3.1")
	const n = 50
	ips := make([]netip.Addr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			// A Store of its own: its own lock file descriptor, like a process.
			s, err := New(dir, "default")
			if err != nil {
				errs[i] = err
				return
			}
			var res Reservation
			res, errs[i] = s.Reserve(att(fmt.Sprint("c", i)), r)
			ips[i] = res.IP
		})
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, ip := range ips {
		if errs[i] != nil {
			t.Fatalf("Reserve %d: %v", i, errs[i])
		}
		if j, dup := seen[ip]; dup {
			t.Fatalf("%s handed to both c%d and c%d", ip, j, i)
		}
		seen[ip] = i
	}
	s, _ := New(dir, "default")
	if allocs, err := s.List(); err != nil || len(allocs) != n {
		t.Errorf("List has %d reservations (err %v), want %d", len(allocs), err, n)
	}
}

func TestLockTimeout(t *testing.T) {
	dir := t.TempDir()
	holder, err := New(dir, "default")
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := holder.lock()
	if err != nil {
		t.Fatalf("lock: %v", err)
	}
	waiter, _ := New(dir, "default")
	waiter.LockTimeout = 100 * time.Millisecond
	r := newRange(t, "10.244.3.0/24", "10.244.3.1")

	start := time.Now()
	_, err = waiter.Reserve(att("a"), r)
	if !errors.Is(err, ErrLockTimeout) {
		t.Fatalf("Reserve while locked: %v, want ErrLockTimeout", err)
	}
	if waited := time.Since(start); waited < 100*time.Millisecond || waited > 2*time.Second {
		t.Errorf("waited %s for a 100ms lock timeout", waited)
	}
	if err := waiter.Release(att("a")); !errors.Is(err, ErrLockTimeout) {
		t.Errorf("Release while locked: %v, want ErrLockTimeout", err)
	}
	unlock()
	if _, err := waiter.Reserve(att("a"), r); err != nil {
		t.Errorf("Reserve after unlock: %v", err)
	}
}

// TestCrashBetweenIndexAndIPFile simulates a crash after the index was
// written but before the IP file: the address is neither leaked nor
// considered held, and releasing the stale attachment later cannot free the
// address once someone else holds it.
func TestCrashBetweenIndexAndIPFile(t *testing.T) {
	s := newStore(t)
	r := newRange(t, "10.244.3.0/24", "10.244.3.1")
	ip := netip.MustParseAddr("10.244.3.2")
	if err := writeJSON(s.indexPath(att("crashed")), index{Attachment: att("crashed"), IP: ip}); err != nil {
		t.Fatal(err)
	}
	wantLookup(t, s, att("crashed"), netip.Addr{})
	if got := reserve(t, s, att("b"), r); got != ip {
		t.Fatalf("Reserve = %s, want the unheld %s", got, ip)
	}
	if err := s.Release(att("crashed")); err != nil {
		t.Fatalf("Release of the crashed attachment: %v", err)
	}
	wantLookup(t, s, att("b"), ip)
}

// TestIPFileWithoutIndex: an orphaned reservation keeps blocking its address
// until GC finds its attachment is gone.
func TestIPFileWithoutIndex(t *testing.T) {
	s := newStore(t)
	r := newRange(t, "10.244.3.0/30", "10.244.3.1") // only .2
	if err := writeJSON(s.ipPath(netip.MustParseAddr("10.244.3.2")), att("orphan")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Reserve(att("a"), r); err == nil {
		t.Fatal("Reserve took an address that has an IP file")
	}
	if err := s.GC(func(Attachment) bool { return false }); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := reserve(t, s, att("a"), r); got.String() != "10.244.3.2" {
		t.Errorf("Reserve after GC = %s, want 10.244.3.2", got)
	}
}

func TestGC(t *testing.T) {
	s := newStore(t)
	r := newRange(t, "10.244.3.0/24", "10.244.3.1")
	keepIP := reserve(t, s, att("keep"), r)
	reserve(t, s, att("gone"), r)
	dangling := s.indexPath(att("dangling"))
	if err := writeJSON(dangling, index{Attachment: att("dangling"), IP: netip.MustParseAddr("10.244.3.200")}); err != nil {
		t.Fatal(err)
	}
	temp := filepath.Join(s.Dir(), ipsDir, ".10.244.3.9.tmp-123")
	if err := os.WriteFile(temp, nil, 0o644); err != nil {
		t.Fatal(err)
	}

	err := s.GC(func(a Attachment) bool { return a == att("keep") })
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	wantLookup(t, s, att("keep"), keepIP)
	wantLookup(t, s, att("gone"), netip.Addr{})
	for _, p := range []string{dangling, temp, s.indexPath(att("gone"))} {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived GC (stat: %v)", p, err)
		}
	}
	if allocs, _ := s.List(); len(allocs) != 1 {
		t.Errorf("List after GC = %v, want only %s", allocs, keepIP)
	}
}

func TestNewRejectsBadNetworkName(t *testing.T) {
	for _, name := range []string{"", "..", "../etc", "a/b"} {
		if _, err := New(t.TempDir(), name); err == nil {
			t.Errorf("New with network %q succeeded", name)
		}
	}
}

func TestRejectsEmptyAttachment(t *testing.T) {
	s := newStore(t)
	r := newRange(t, "10.244.3.0/24", "10.244.3.1")
	for _, a := range []Attachment{{ContainerID: "x"}, {IfName: "eth0"}} {
		if _, err := s.Reserve(a, r); err == nil {
			t.Errorf("Reserve(%+v) succeeded", a)
		}
	}
}

// A reboot ends every container, so the first use of the store in a new
// boot drops what earlier boots reserved; within a boot nothing is dropped,
// a store without a boot ID (written before they were kept) is adopted,
// and what a writer that keeps no boot ID (an older overlay-ipam) reserved
// in the new boot stays.
func TestEarlierBootIsForgotten(t *testing.T) {
	dir := t.TempDir()
	bootID := filepath.Join(t.TempDir(), "boot_id")
	procStat := filepath.Join(t.TempDir(), "stat")
	setBoot := func(id string, began time.Time) {
		if err := os.WriteFile(bootID, []byte(id+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(procStat, fmt.Appendf(nil, "cpu 1 2 3\nbtime %d\nprocesses 9\n", began.Unix()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	open := func() *Store {
		s, err := New(dir, "default")
		if err != nil {
			t.Fatal(err)
		}
		s.BootIDPath, s.ProcStatPath = bootID, procStat
		return s
	}
	older := func() *Store { // keeps no boot ID
		s := open()
		s.BootIDPath = filepath.Join(t.TempDir(), "missing")
		return s
	}
	r := newRange(t, "10.244.7.0/24", "10.244.7.1")
	a, b, c := att("a"), att("b"), att("c")

	if _, err := older().Reserve(a, r); err != nil {
		t.Fatal(err)
	}
	setBoot("boot-1", time.Unix(0, 0))
	s := open()
	if _, err := s.Lookup(a); err != nil {
		t.Fatalf("the reservation of a store without a boot ID was dropped: %v", err)
	}
	if _, err := s.Reserve(b, r); err != nil {
		t.Fatal(err)
	}
	if allocs, _ := s.List(); len(allocs) != 2 {
		t.Fatalf("same boot: %v, want a and b", allocs)
	}

	time.Sleep(1100 * time.Millisecond) // btime has a resolution of seconds
	setBoot("boot-2", time.Now())
	if _, err := older().Reserve(c, r); err != nil {
		t.Fatal(err)
	}
	allocs, err := open().List()
	if err != nil {
		t.Fatal(err)
	}
	if len(allocs) != 1 || allocs[0].Attachment != c {
		t.Errorf("after a reboot the store holds %v, want only c (reserved in this boot)", allocs)
	}
	if _, err := open().Reserve(a, r); err != nil {
		t.Errorf("reserve after a reboot: %v", err)
	}
}
