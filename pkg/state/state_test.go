package state

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestHostIDStable(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	a, err := d.HostID()
	if err != nil || len(a) != 32 {
		t.Fatalf("HostID = %q, %v", a, err)
	}
	b, err := d.HostID()
	if err != nil || a != b {
		t.Fatalf("second HostID = %q, want %q", b, a)
	}
	if c, _ := (Dir{Path: t.TempDir()}).HostID(); c == a {
		t.Fatal("two state dirs share a host ID")
	}
}

func TestInitMakesWhatAStartNeeds(t *testing.T) {
	d := Dir{Path: filepath.Join(t.TempDir(), "state")}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	id, err := os.ReadFile(d.HostIDPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Init(); err != nil {
		t.Fatal("second Init:", err)
	}
	if got, err := d.HostID(); err != nil || got+"\n" != string(id) {
		t.Fatalf("HostID after Init = %q, %v; Init wrote %q", got, err, id)
	}
	unlock, err := d.Lock("default")
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}

func TestNetworkRoundTrip(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	fresh, err := d.LoadNetwork("default")
	if err != nil || fresh.Subnet.IsValid() {
		t.Fatalf("fresh = %+v, %v", fresh, err)
	}
	mac, err := net.ParseMAC(fresh.VTEPMAC)
	if err != nil || mac[0]&0x03 != 0x02 {
		t.Fatalf("fresh MAC %q is not locally administered unicast", fresh.VTEPMAC)
	}
	want := Network{Subnet: netip.MustParsePrefix("10.244.3.0/24"), VTEPMAC: fresh.VTEPMAC}
	if err := d.SaveNetwork("default", want); err != nil {
		t.Fatal(err)
	}
	got, err := d.LoadNetwork("default")
	if err != nil || got != want {
		t.Fatalf("LoadNetwork = %+v, %v; want %+v", got, err, want)
	}
}

func TestCorruptNetworkState(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	os.MkdirAll(filepath.Join(d.Path, "networks"), 0o755)
	os.WriteFile(filepath.Join(d.Path, "networks", "default.json"), []byte("{"), 0o644)
	if _, err := d.LoadNetwork("default"); err == nil {
		t.Fatal("corrupt state accepted")
	}
}

func TestLockExcludesSecondHolder(t *testing.T) {
	d := Dir{Path: t.TempDir()}
	unlock, err := d.Lock("default")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Lock("default"); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: err = %v, want ErrLocked", err)
	}
	other, err := d.Lock("other")
	if err != nil {
		t.Fatalf("another network's lock: %v", err)
	}
	other()
	unlock()
	again, err := d.Lock("default")
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
}
