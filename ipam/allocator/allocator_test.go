package allocator

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func mustRange(t testing.TB, subnet, gateway string) Range {
	t.Helper()
	r, err := NewRange(netip.MustParsePrefix(subnet), netip.MustParseAddr(gateway))
	if err != nil {
		t.Fatalf("NewRange(%s, %s): %v", subnet, gateway, err)
	}
	return r
}

func usedSet(addrs ...string) func(netip.Addr) (bool, error) {
	set := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		set[netip.MustParseAddr(a)] = true
	}
	return func(a netip.Addr) (bool, error) { return set[a], nil }
}

func TestNext(t *testing.T) {
	tests := []struct {
		name    string
		subnet  string
		gateway string
		last    string // "" = nothing reserved yet
		used    []string
		want    string
	}{
		{name: "empty subnet starts after the gateway", subnet: "10.244.3.0/24", gateway: "10.244.3.1", want: "10.244.3.2"},
		{name: "round robin continues after last", subnet: "10.244.3.0/24", gateway: "10.244.3.1", last: "10.244.3.2", want: "10.244.3.3"},
		{name: "released address below last is not reused first", subnet: "10.244.3.0/24", gateway: "10.244.3.1", last: "10.244.3.9", used: []string{"10.244.3.3"}, want: "10.244.3.10"},
		{name: "skips used addresses", subnet: "10.244.3.0/24", gateway: "10.244.3.1", used: []string{"10.244.3.2", "10.244.3.3"}, want: "10.244.3.4"},
		{name: "wraps past broadcast and network address", subnet: "10.244.3.0/24", gateway: "10.244.3.1", last: "10.244.3.254", want: "10.244.3.2"},
		{name: "last is broadcast", subnet: "10.244.3.0/24", gateway: "10.244.3.1", last: "10.244.3.255", want: "10.244.3.2"},
		{name: "last outside the subnet restarts at its beginning", subnet: "10.244.3.0/24", gateway: "10.244.3.1", last: "10.244.9.77", want: "10.244.3.2"},
		{name: "gateway elsewhere in the subnet is skipped", subnet: "10.244.3.0/24", gateway: "10.244.3.10", last: "10.244.3.9", want: "10.244.3.11"},
		{name: "gateway elsewhere frees the first host address", subnet: "10.244.3.0/24", gateway: "10.244.3.254", want: "10.244.3.1"},
		{name: "only free address is last itself", subnet: "10.244.3.0/29", gateway: "10.244.3.1", last: "10.244.3.4", used: []string{"10.244.3.2", "10.244.3.3", "10.244.3.5", "10.244.3.6"}, want: "10.244.3.4"},
		{name: "slash 30 has one address", subnet: "10.244.3.0/30", gateway: "10.244.3.1", want: "10.244.3.2"},
		{name: "unmasked subnet is masked", subnet: "10.244.3.77/24", gateway: "10.244.3.1", want: "10.244.3.2"},
		{name: "slash 16 crosses octets", subnet: "10.244.0.0/16", gateway: "10.244.0.1", last: "10.244.0.255", want: "10.244.1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustRange(t, tt.subnet, tt.gateway)
			var last netip.Addr
			if tt.last != "" {
				last = netip.MustParseAddr(tt.last)
			}
			got, err := r.Next(last, usedSet(tt.used...))
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if got != netip.MustParseAddr(tt.want) {
				t.Errorf("Next = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestNextExhausted(t *testing.T) {
	tests := []struct {
		subnet, gateway string
		used            []string
		want            string
	}{
		{subnet: "10.244.3.0/30", gateway: "10.244.3.1", used: []string{"10.244.3.2"}, want: "subnet 10.244.3.0/30 is exhausted (1 addresses in use)"},
		{subnet: "10.244.3.0/29", gateway: "10.244.3.1", used: []string{"10.244.3.2", "10.244.3.3", "10.244.3.4", "10.244.3.5", "10.244.3.6"}, want: "subnet 10.244.3.0/29 is exhausted (5 addresses in use)"},
	}
	for _, tt := range tests {
		t.Run(tt.subnet, func(t *testing.T) {
			r := mustRange(t, tt.subnet, tt.gateway)
			_, err := r.Next(netip.Addr{}, usedSet(tt.used...))
			var ex *ExhaustedError
			if !errors.As(err, &ex) {
				t.Fatalf("Next error = %v, want *ExhaustedError", err)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q, want %q", err, tt.want)
			}
		})
	}
}

// TestNextHandsOutEveryUsableAddressOnce fills a subnet and checks that the
// reserved addresses never appear and nothing is handed out twice.
func TestNextHandsOutEveryUsableAddressOnce(t *testing.T) {
	r := mustRange(t, "10.244.3.0/26", "10.244.3.1")
	used := map[netip.Addr]bool{}
	inUse := func(a netip.Addr) (bool, error) { return used[a], nil }
	var last netip.Addr
	for range r.Usable() {
		a, err := r.Next(last, inUse)
		if err != nil {
			t.Fatalf("Next after %d addresses: %v", len(used), err)
		}
		if used[a] {
			t.Fatalf("%s handed out twice", a)
		}
		switch a.String() {
		case "10.244.3.0", "10.244.3.1", "10.244.3.63":
			t.Fatalf("reserved address %s handed out", a)
		}
		used[a], last = true, a
	}
	if len(used) != 61 {
		t.Errorf("handed out %d addresses, want 61", len(used))
	}
	if _, err := r.Next(last, inUse); err == nil {
		t.Error("Next on a full subnet succeeded")
	}
}

func TestNextStopsOnLookupError(t *testing.T) {
	r := mustRange(t, "10.244.3.0/24", "10.244.3.1")
	boom := errors.New("disk on fire")
	_, err := r.Next(netip.Addr{}, func(netip.Addr) (bool, error) { return false, boom })
	if !errors.Is(err, boom) {
		t.Errorf("Next error = %v, want it to wrap %v", err, boom)
	}
}

func TestNewRangeRejects(t *testing.T) {
	tests := []struct{ name, subnet, gateway string }{
		{"ipv6", "fd00::/64", "fd00::1"},
		{"slash 31", "10.244.3.0/31", "10.244.3.1"},
		{"slash 32", "10.244.3.0/32", "10.244.3.0"},
		{"gateway outside", "10.244.3.0/24", "10.244.4.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewRange(netip.MustParsePrefix(tt.subnet), netip.MustParseAddr(tt.gateway)); err == nil {
				t.Errorf("NewRange(%s, %s) succeeded", tt.subnet, tt.gateway)
			}
		})
	}
	if _, err := NewRange(netip.Prefix{}, netip.Addr{}); err == nil {
		t.Error("NewRange of zero values succeeded")
	}
}

func TestContains(t *testing.T) {
	r := mustRange(t, "10.244.3.0/24", "10.244.3.1")
	for a, want := range map[string]bool{
		"10.244.3.0": false, "10.244.3.1": false, "10.244.3.255": false, "10.244.4.2": false,
		"10.244.3.2": true, "10.244.3.254": true,
	} {
		if got := r.Contains(netip.MustParseAddr(a)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", a, got, want)
		}
	}
}

// BenchmarkNext allocates on a /16 that is 90% full, with the in-use set
// in a map, as a caller holding the reservations in memory would:
//
//   - scattered: the free 10% are spread at random (containers of every age
//     come and go), so each call scans past about nine taken addresses;
//   - wrap: the free 10% are the block just behind the cursor (the newest
//     containers went away together, a batch job ending), so the next call
//     wraps around and scans every taken address once, the worst case of
//     the round-robin.
func BenchmarkNext(b *testing.B) {
	r := mustRange(b, "10.244.0.0/16", "10.244.0.1")
	b.Run("scattered", func(b *testing.B) {
		rnd := rand.New(rand.NewPCG(1, 2))
		used := make(map[netip.Addr]bool, r.Usable())
		for a := r.Subnet().Addr(); r.Subnet().Contains(a); a = a.Next() {
			if r.Contains(a) && rnd.IntN(10) < 9 {
				used[a] = true
			}
		}
		inUse := func(a netip.Addr) (bool, error) { return used[a], nil }
		var last netip.Addr
		b.ReportAllocs()
		for b.Loop() {
			a, err := r.Next(last, inUse)
			if err != nil {
				b.Fatal(err)
			}
			last = a
		}
	})
	b.Run("wrap", func(b *testing.B) {
		used, last, firstFree := freeBlockBehind(r, r.Usable()/10)
		inUse := func(a netip.Addr) (bool, error) { return used[a], nil }
		b.ReportAllocs()
		for b.Loop() {
			a, err := r.Next(last, inUse)
			if err != nil || a != firstFree {
				b.Fatalf("Next = %s, %v; want %s", a, err, firstFree)
			}
		}
	})
}

// freeBlockBehind marks every usable address of r taken except the free
// ones right before last, the highest usable address (itself taken). It
// returns the set, last, and the first free address, where Next lands
// after wrapping around.
func freeBlockBehind(r Range, free int) (used map[netip.Addr]bool, last, firstFree netip.Addr) {
	var usable []netip.Addr
	for a := r.Subnet().Addr(); r.Subnet().Contains(a); a = a.Next() {
		if r.Contains(a) {
			usable = append(usable, a)
		}
	}
	last = usable[len(usable)-1]
	freeFrom := len(usable) - 1 - free
	used = make(map[netip.Addr]bool, len(usable)-free)
	for i, a := range usable {
		if i < freeFrom || i == len(usable)-1 {
			used[a] = true
		}
	}
	return used, last, usable[freeFrom]
}

func TestNextDoesNotAllocate(t *testing.T) {
	r := mustRange(t, "10.244.0.0/16", "10.244.0.1")
	inUse := usedSet("10.244.0.2", "10.244.0.3")
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := r.Next(netip.Addr{}, inUse); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Next allocates %.1f times per call, want 0", allocs)
	}
}
