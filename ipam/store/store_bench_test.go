package store

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/overlaynet/overlay/ipam/allocator"
)

// BenchmarkReserve is the store's part of a CNI ADD on a /16 host subnet
// that is 90% full, with the reservations on disk (under the system's temp
// dir): lock, boot check, index lookup, the allocator asking the store
// about one candidate at a time (one lstat each), and the three writes.
// Each reservation is released again, untimed, so the store stays 90% full.
//
//   - scattered: the free 10% are spread at random, so Next stats about ten
//     candidates;
//   - wrap: the free 10% are the block just behind last_reserved (the
//     newest containers went away together), so Next stats every taken
//     address once before it finds one.
func BenchmarkReserve(b *testing.B) {
	r, err := allocator.NewRange(netip.MustParsePrefix("10.244.0.0/16"), netip.MustParseAddr("10.244.0.1"))
	if err != nil {
		b.Fatal(err)
	}
	usable := usableAddrs(r)
	free := len(usable) / 10
	b.Run("scattered", func(b *testing.B) {
		s := filledStore(b, "scattered", func() []netip.Addr {
			rnd := rand.New(rand.NewPCG(1, 2))
			taken := make([]netip.Addr, 0, len(usable)-free)
			for _, i := range rnd.Perm(len(usable))[free:] {
				taken = append(taken, usable[i])
			}
			return taken
		})
		benchReserve(b, s, r, func() {})
	})
	b.Run("wrap", func(b *testing.B) {
		last := usable[len(usable)-1]
		freeFrom := len(usable) - 1 - free
		s := filledStore(b, "wrap", func() []netip.Addr {
			return append(usable[:freeFrom:freeFrom], last)
		})
		setLast := func() {
			if err := os.WriteFile(s.path(lastReservedFile), []byte(last.String()+"\n"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		setLast()
		benchReserve(b, s, r, setLast)
	})
}

// benchReserve times Reserve alone; the release, and reset (which puts the
// round-robin cursor where the case wants it), run with the timer stopped.
// Reserve and Release leave the store's reservations as they found them,
// so a store serves every -count run of a case.
func benchReserve(b *testing.B, s *Store, r allocator.Range, reset func()) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		a := Attachment{ContainerID: fmt.Sprintf("bench%064d", i), IfName: "eth0"}
		i++
		res, err := s.Reserve(a, r)
		if err != nil || !res.New {
			b.Fatalf("Reserve: %+v, %v", res, err)
		}
		b.StopTimer()
		if err := s.Release(a); err != nil {
			b.Fatal(err)
		}
		reset()
		b.StartTimer()
	}
}

func usableAddrs(r allocator.Range) []netip.Addr {
	var out []netip.Addr
	for a := r.Subnet().Addr(); r.Subnet().Contains(a); a = a.Next() {
		if r.Contains(a) {
			out = append(out, a)
		}
	}
	return out
}

// benchStores are the filled stores, made once per test process (writing
// 118 000 files takes seconds) and removed by TestMain, also on SIGINT or
// SIGTERM. root is set once, before the first file is written.
var benchStores struct {
	sync.Mutex
	root atomic.Pointer[string]
	byID map[string]*Store
}

// filledStore returns the store named id holding a reservation, IP and
// index file as Reserve would have left them, for every address taken()
// lists. The files are written directly, without taking the lock and
// running the allocator tens of thousands of times.
func filledStore(b *testing.B, id string, taken func() []netip.Addr) *Store {
	b.Helper()
	benchStores.Lock()
	defer benchStores.Unlock()
	if s, ok := benchStores.byID[id]; ok {
		return s
	}
	if benchStores.root.Load() == nil {
		root, err := os.MkdirTemp("", "overlay-ipam-bench-")
		if err != nil {
			b.Fatal(err)
		}
		benchStores.root.Store(&root)
		benchStores.byID = map[string]*Store{}
	}
	s, err := New(filepath.Join(*benchStores.root.Load(), id), "default")
	if err != nil {
		b.Fatal(err)
	}
	for i, ip := range taken() {
		a := Attachment{ContainerID: fmt.Sprintf("%064x", i), IfName: "eth0"}
		writeFile(b, s.indexPath(a), index{Attachment: a, IP: ip})
		writeFile(b, s.ipPath(ip), a)
	}
	benchStores.byID[id] = s
	return s
}

// writeFile writes in place, not through a temp file: it is only setup.
func writeFile(b *testing.B, path string, v any) {
	data, err := json.Marshal(v)
	if err == nil {
		err = os.WriteFile(path, append(data, '\n'), 0o644)
	}
	if err != nil {
		b.Fatal(err)
	}
}

func TestMain(m *testing.M) {
	// An interrupted benchmark must not leave its 118 000 files behind.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		removeBenchStores()
		os.Exit(1)
	}()
	code := m.Run()
	removeBenchStores()
	os.Exit(code)
}

func removeBenchStores() {
	root := benchStores.root.Load()
	if root == nil {
		return
	}
	// A store being filled may add a file while RemoveAll works: retry.
	var err error
	for range 3 {
		if err = os.RemoveAll(*root); err == nil {
			return
		}
	}
	fmt.Fprintln(os.Stderr, "remove benchmark stores:", err)
}
