package statusfile

import (
	"errors"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	p := Path(dir, "default")
	if _, err := Read(p); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing file: %v, want ErrNotExist", err)
	}
	now := time.Now().UTC().Round(0)
	s := Status{Version: Version, Network: "default", Written: now, Every: time.Second, Kind: "host",
		Lease:    Lease{Held: true, Subnet: netip.MustParsePrefix("10.244.1.0/24")},
		Peers:    []PeerProbe{{Peer: netip.MustParsePrefix("10.244.2.0/24"), State: "ok", OverlayRTT: time.Millisecond}},
		LastPass: Pass{At: now, Repaired: map[string]int{"fdb_added": 1}}}
	if err := Write(p, s); err != nil {
		t.Fatal(err)
	}
	got, err := Read(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Fatalf("read %+v\nwant %+v", got, s)
	}
	if filepath.Base(p) != "default.status" {
		t.Fatalf("path %s", p)
	}
	if s.Stale(now.Add(2*time.Second)) || !s.Stale(now.Add(4*time.Second)) {
		t.Fatal("a status is stale after three of its intervals, not before")
	}
}
