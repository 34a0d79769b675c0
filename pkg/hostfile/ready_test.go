package hostfile

import (
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestReadyStamp(t *testing.T) {
	path := ReadyPath(t.TempDir(), "default")
	now := time.Now()
	if err := CheckReady(path, now); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing stamp: got %v, want ErrNotExist", err)
	}
	if err := WriteReady(path, Ready{PID: 7, Written: now, Until: now.Add(30 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	if err := CheckReady(path, now.Add(29*time.Second)); err != nil {
		t.Fatalf("fresh stamp: %v", err)
	}
	if err := CheckReady(path, now.Add(31*time.Second)); !errors.Is(err, ErrStale) {
		t.Fatalf("expired stamp: got %v, want ErrStale", err)
	}
	if err := RemoveReady(path); err != nil {
		t.Fatal(err)
	}
	if err := RemoveReady(path); err != nil {
		t.Fatalf("removing a missing stamp: %v", err)
	}
	if got := filepath.Base(path); got != "default.ready" {
		t.Fatalf("ReadyPath base = %s", got)
	}
}
