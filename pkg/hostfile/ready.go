package hostfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/overlaynet/overlay/pkg/atomicfile"
)

// Ready is the freshness stamp overlayd keeps beside the host file
// (RUNDIR/NAME.ready). The host file says what this host's subnet is; the
// stamp says that a running overlayd vouched for it recently. overlayd
// rewrites it after every successful reconcile pass (at least once per resync
// interval) with Until a few intervals ahead, and removes it when its lease
// is lost. The CNI plugins' STATUS answers 50 (plugin not available) when
// the stamp is missing or past Until, without talking to the daemon; ADD
// keeps working from the host file alone, so containers still start while
// overlayd restarts.
type Ready struct {
	// PID is the overlayd process that wrote the stamp (for diagnosis).
	PID int `json:"pid"`
	// Written is when the stamp was written.
	Written time.Time `json:"written"`
	// Until is when the stamp goes stale if overlayd does not renew it.
	Until time.Time `json:"until"`
}

// ErrStale is returned by CheckReady when the stamp exists but has expired.
var ErrStale = errors.New("overlayd has not renewed its ready stamp")

// ReadyPath returns the ready stamp path for a network.
func ReadyPath(runDir, network string) string {
	return filepath.Join(runDir, network+".ready")
}

// WriteReady stores r at path atomically.
func WriteReady(path string, r Ready) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode ready stamp %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, append(data, '\n'), 0o644)
}

// RemoveReady deletes the stamp; a missing stamp is not an error.
func RemoveReady(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove ready stamp %s: %w", path, err)
	}
	return nil
}

// ReadReady loads the stamp at path. A missing stamp yields an error
// wrapping ErrNotExist.
func ReadReady(path string) (Ready, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return Ready{}, fmt.Errorf("read ready stamp %s: %w", path, ErrNotExist)
	}
	if err != nil {
		return Ready{}, fmt.Errorf("read ready stamp %s: %w", path, err)
	}
	var r Ready
	if err := json.Unmarshal(data, &r); err != nil {
		return Ready{}, fmt.Errorf("parse ready stamp %s: %w", path, err)
	}
	return r, nil
}

// CheckReady reads the stamp and reports whether it is fresh at now: nil
// when it is, an error wrapping ErrNotExist or ErrStale (or a read error)
// that says why not.
func CheckReady(path string, now time.Time) error {
	r, err := ReadReady(path)
	if err != nil {
		return err
	}
	if now.After(r.Until) {
		return fmt.Errorf("%s: last written %s by pid %d, stale since %s: %w",
			path, r.Written.Format(time.RFC3339), r.PID, r.Until.Format(time.RFC3339), ErrStale)
	}
	return nil
}
