// Package store keeps overlay-ipam's address reservations on disk, one
// directory per network, shared by every plugin process on the host:
//
//	DATADIR/NETWORK/lock              flock held for a whole transaction
//	DATADIR/NETWORK/boot_id           the boot the reservations were made in
//	DATADIR/NETWORK/last_reserved     the address handed out last (a hint)
//	DATADIR/NETWORK/ips/10.244.3.7    {"containerID":…,"ifName":…}
//	DATADIR/NETWORK/attachments/HASH  {"containerID":…,"ifName":…,"ip":…}
//
// The IP file is the reservation and the only source of truth: an address
// is taken exactly when its IP file exists, whoever it names. The attachment
// file, named by a hash of containerID and ifName, is an index that lets DEL
// find the address in O(1) instead of reading every IP file; it is trusted
// only when the IP file it points at names the same attachment.
//
// IP and index files are replaced atomically (atomicfile.Replace;
// last_reserved, a mere hint, is written in place), and the order of writes
// makes a killed plugin process harmless at any point:
//
//   - Reserve writes last_reserved, then the index, then the IP file. A kill
//     before the IP file leaves an index pointing at an address nobody holds,
//     which readers ignore: nothing is leaked and nothing handed out twice.
//   - Release removes the IP file, then the index. A kill in between leaves
//     the same harmless dangling index.
//
// Nothing is fsynced. What a process wrote before it was killed is in the
// page cache and stays; only a machine crash or power loss can lose or tear
// recent writes, and that same crash ends every container of the machine,
// so every reservation made before it is worthless. The store therefore
// records the kernel's boot ID and, on its first use in a later boot,
// drops every file last changed before that boot began, whatever state the
// crash left it in. (A store that has no boot ID yet, written by an older
// version, is adopted as this boot's; files an older version writes in
// this boot are newer than the boot and stay.) Within one boot, reservations of containers
// the runtime lost track of (no DEL ever came) are what CNI GC releases.
//
// An IP file without an index cannot arise from these sequences (only from
// outside interference); it still blocks the address, because handing it out
// could duplicate a live container's address, and GC releases it once its
// attachment is gone.
package store

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/overlaynet/overlay/ipam/allocator"
	"github.com/overlaynet/overlay/pkg/atomicfile"
	"github.com/overlaynet/overlay/pkg/netconf"
)

const (
	lockFile         = "lock"
	bootIDFile       = "boot_id"
	lastReservedFile = "last_reserved"
	ipsDir           = "ips"
	attachmentsDir   = "attachments"
)

// ErrNotFound is returned by Lookup when the attachment holds no address.
var ErrNotFound = errors.New("no address allocated")

// Attachment identifies one CNI attachment: an interface of a container.
type Attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

func (a Attachment) String() string { return a.ContainerID + "/" + a.IfName }

func (a Attachment) validate() error {
	if a.ContainerID == "" || a.IfName == "" {
		return fmt.Errorf("attachment %q: container ID and interface name must be set", a)
	}
	return nil
}

// Allocation is one reserved address and its holder.
type Allocation struct {
	IP         netip.Addr
	Attachment Attachment
}

// index is the content of an attachment file.
type index struct {
	Attachment
	IP netip.Addr `json:"ip"`
}

// Store is the reservation store of one network. Each operation takes the
// store's lock for its whole duration, so Stores in any number of processes
// (or goroutines) may work on one directory at once.
type Store struct {
	dir string
	// LockTimeout bounds the wait for the lock; zero means DefaultLockTimeout.
	LockTimeout time.Duration
	// BootIDPath is where the current boot's ID is read; empty means the
	// kernel's (DefaultBootIDPath).
	BootIDPath string
	// ProcStatPath is where the boot time (btime) is read; empty means
	// /proc/stat.
	ProcStatPath string
}

// DefaultBootIDPath is the kernel's random ID of the current boot.
const DefaultBootIDPath = "/proc/sys/kernel/random/boot_id"

// New opens (creating if needed) the store of network under dataDir.
func New(dataDir, network string) (*Store, error) {
	// The name becomes a path element: refuse anything that could escape dataDir.
	if err := netconf.ValidateName(network); err != nil {
		return nil, fmt.Errorf("open ipam store: %w", err)
	}
	s := &Store{dir: filepath.Join(dataDir, network)}
	for _, d := range []string{ipsDir, attachmentsDir} {
		if err := os.MkdirAll(s.path(d), 0o755); err != nil {
			return nil, fmt.Errorf("open ipam store: %w", err)
		}
	}
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// Reservation is what Reserve gave an attachment.
type Reservation struct {
	IP netip.Addr
	// New is true when this call reserved IP, false when the attachment
	// already held it (a retried ADD). A failed ADD may hand back only a
	// new reservation: an old one may be the address of a live interface.
	New bool
}

// Reserve returns an address of r for a, reserving the next free one unless
// a already holds one in r. Asking twice for the same attachment returns the
// same address (with New false), so a runtime retrying ADD does not leak
// one. An address a holds outside r (the host's subnet changed) is released
// first.
func (s *Store) Reserve(a Attachment, r allocator.Range) (Reservation, error) {
	if err := a.validate(); err != nil {
		return Reservation{}, err
	}
	unlock, err := s.lock()
	if err != nil {
		return Reservation{}, err
	}
	defer unlock()

	held, err := s.lookupLocked(a)
	switch {
	case err == nil && r.Contains(held):
		return Reservation{IP: held}, nil
	case err == nil:
		if err := s.releaseLocked(a); err != nil {
			return Reservation{}, err
		}
	case !errors.Is(err, ErrNotFound):
		return Reservation{}, err
	}

	last, err := s.lastReserved()
	if err != nil {
		return Reservation{}, err
	}
	ip, err := r.Next(last, s.taken)
	if err != nil {
		return Reservation{}, fmt.Errorf("reserve address for %s: %w", a, err)
	}
	if err := s.writeReservation(a, ip); err != nil {
		return Reservation{}, fmt.Errorf("reserve %s for %s: %w", ip, a, err)
	}
	return Reservation{IP: ip, New: true}, nil
}

// writeReservation writes the files of a new reservation in crash-safe order
// (see the package comment).
func (s *Store) writeReservation(a Attachment, ip netip.Addr) error {
	// last_reserved only steers the round-robin, and a torn write reads as
	// "no hint" (see lastReserved), so it is written in place.
	if err := os.WriteFile(s.path(lastReservedFile), []byte(ip.String()+"\n"), 0o644); err != nil {
		return fmt.Errorf("record last reserved address: %w", err)
	}
	if err := writeJSON(s.indexPath(a), index{Attachment: a, IP: ip}); err != nil {
		return err
	}
	return writeJSON(s.ipPath(ip), a)
}

// Release frees the address a holds. Releasing an attachment that holds
// nothing succeeds, so DEL can run any number of times.
func (s *Store) Release(a Attachment) error {
	if err := a.validate(); err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	return s.releaseLocked(a)
}

func (s *Store) releaseLocked(a Attachment) error {
	idx, err := s.readIndex(a)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release %s: %w", a, err)
	}
	// A dangling index must not remove an address someone else now holds.
	if owner, err := s.readIP(idx.IP); err == nil && owner == a {
		if err := removeIfExists(s.ipPath(idx.IP)); err != nil {
			return fmt.Errorf("release %s of %s: %w", idx.IP, a, err)
		}
	}
	if err := removeIfExists(s.indexPath(a)); err != nil {
		return fmt.Errorf("release %s: %w", a, err)
	}
	return nil
}

// Lookup returns the address a holds, or an error wrapping ErrNotFound.
func (s *Store) Lookup(a Attachment) (netip.Addr, error) {
	if err := a.validate(); err != nil {
		return netip.Addr{}, err
	}
	unlock, err := s.lock()
	if err != nil {
		return netip.Addr{}, err
	}
	defer unlock()
	return s.lookupLocked(a)
}

func (s *Store) lookupLocked(a Attachment) (netip.Addr, error) {
	idx, err := s.readIndex(a)
	if errors.Is(err, fs.ErrNotExist) {
		return netip.Addr{}, fmt.Errorf("%s: %w", a, ErrNotFound)
	}
	if err != nil {
		return netip.Addr{}, err
	}
	owner, err := s.readIP(idx.IP)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && owner != a) {
		return netip.Addr{}, fmt.Errorf("%s: %w", a, ErrNotFound)
	}
	if err != nil {
		return netip.Addr{}, err
	}
	return idx.IP, nil
}

// List returns every reservation, in address order.
func (s *Store) List() ([]Allocation, error) {
	unlock, err := s.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	allocs, errs := s.listLocked()
	return allocs, errors.Join(errs...)
}

// listLocked reads every IP file it can and returns the errors of the others.
func (s *Store) listLocked() ([]Allocation, []error) {
	entries, err := os.ReadDir(s.path(ipsDir))
	if err != nil {
		return nil, []error{fmt.Errorf("list reservations: %w", err)}
	}
	var allocs []Allocation
	var errs []error
	for _, e := range entries {
		ip, err := netip.ParseAddr(e.Name())
		if err != nil {
			continue // temp files of atomic writes, or not ours
		}
		owner, err := s.readIP(ip)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		allocs = append(allocs, Allocation{IP: ip, Attachment: owner})
	}
	// File names sort as strings ("10.0.0.10" before "10.0.0.2").
	slices.SortFunc(allocs, func(a, b Allocation) int { return a.IP.Compare(b.IP) })
	return allocs, errs
}

// GC releases every reservation whose attachment keep rejects, drops
// dangling index files and temp files left by a crash mid-write. It works
// through everything it can and returns the joined errors of the rest.
func (s *Store) GC(keep func(Attachment) bool) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	allocs, errs := s.listLocked()
	for _, al := range allocs {
		if keep(al.Attachment) {
			continue
		}
		if err := removeIfExists(s.ipPath(al.IP)); err != nil {
			errs = append(errs, fmt.Errorf("gc %s of %s: %w", al.IP, al.Attachment, err))
		}
	}
	errs = append(errs, s.sweepIndexes()...)
	errs = append(errs, s.sweepTemps()...)
	return errors.Join(errs...)
}

// sweepIndexes removes index files no IP file confirms.
func (s *Store) sweepIndexes() []error {
	entries, err := os.ReadDir(s.path(attachmentsDir))
	if err != nil {
		return []error{fmt.Errorf("gc: list attachments: %w", err)}
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(s.path(attachmentsDir), e.Name())
		var idx index
		if err := readJSON(p, &idx); err == nil {
			if owner, err := s.readIP(idx.IP); err == nil && owner == idx.Attachment {
				continue
			}
		}
		if err := removeIfExists(p); err != nil {
			errs = append(errs, fmt.Errorf("gc: %w", err))
		}
	}
	return errs
}

// sweepTemps removes temp files of atomic writes. Every write happens under
// the lock GC holds, so any temp file seen now was left by a crash.
func (s *Store) sweepTemps() []error {
	var errs []error
	for _, d := range []string{".", ipsDir, attachmentsDir} {
		matches, err := filepath.Glob(filepath.Join(s.path(d), ".*.tmp-*"))
		if err != nil {
			errs = append(errs, fmt.Errorf("gc: %w", err))
			continue
		}
		for _, m := range matches {
			if err := removeIfExists(m); err != nil {
				errs = append(errs, fmt.Errorf("gc: %w", err))
			}
		}
	}
	return errs
}

// taken reports whether ip's reservation file exists; it is the allocator's
// view of the store, one stat per candidate address.
func (s *Store) taken(ip netip.Addr) (bool, error) {
	_, err := os.Lstat(s.ipPath(ip))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// lastReserved returns the last address handed out, or the zero Addr when
// there is none or the hint is unreadable: it only steers the round-robin.
func (s *Store) lastReserved() (netip.Addr, error) {
	data, err := os.ReadFile(s.path(lastReservedFile))
	if errors.Is(err, fs.ErrNotExist) {
		return netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("read last reserved address: %w", err)
	}
	ip, err := netip.ParseAddr(strings.TrimSpace(string(data)))
	if err != nil {
		return netip.Addr{}, nil
	}
	return ip, nil
}

func (s *Store) readIndex(a Attachment) (index, error) {
	var idx index
	if err := readJSON(s.indexPath(a), &idx); err != nil {
		return index{}, err
	}
	return idx, nil
}

func (s *Store) readIP(ip netip.Addr) (Attachment, error) {
	var a Attachment
	if err := readJSON(s.ipPath(ip), &a); err != nil {
		return Attachment{}, err
	}
	return a, nil
}

func (s *Store) path(name string) string { return filepath.Join(s.dir, name) }

func (s *Store) ipPath(ip netip.Addr) string {
	return filepath.Join(s.dir, ipsDir, ip.String())
}

// indexPath names an attachment's index by a hash, because container IDs
// and interface names may hold characters (and lengths) a file name cannot.
func (s *Store) indexPath(a Attachment) string {
	sum := sha256.Sum256([]byte(a.ContainerID + "\x00" + a.IfName))
	return filepath.Join(s.dir, attachmentsDir, hex.EncodeToString(sum[:]))
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return atomicfile.Replace(path, append(data, '\n'), 0o644)
}

func readJSON(path string, v any) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	return nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
