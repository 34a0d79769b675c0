package cniinstall

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"

	"github.com/overlaynet/overlay/pkg/atomicfile"
)

// ledgerVersion is the format of the ledger file; a reader refuses other
// versions rather than undo the wrong files.
const ledgerVersion = 1

// Ledger is what installs wrote on this host, so an uninstall removes
// exactly that. It is rewritten after every change, so an install that
// stops part-way still leaves a ledger that undoes what it did.
type Ledger struct {
	Version int `json:"version"`
	// Files are the files an install wrote, each with the digest it
	// wrote: a file that no longer has it was changed by someone else and
	// is left alone.
	Files []FileRecord `json:"files"`
	// Dirs are the directories an install created, in creation order.
	Dirs []string `json:"dirs,omitempty"`

	path string
}

// FileRecord is one file an install wrote.
type FileRecord struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	// Backup is where the file this one replaced (with --force) was kept,
	// and BackupMode its permissions; uninstall puts it back.
	Backup     string      `json:"backup,omitempty"`
	BackupMode fs.FileMode `json:"backupMode,omitempty"`
}

// LoadLedger reads the ledger at path; a missing file is an empty ledger.
func LoadLedger(path string) (*Ledger, error) {
	l := &Ledger{Version: ledgerVersion, path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ledger %s: %w", path, err)
	}
	if err := json.Unmarshal(data, l); err != nil {
		return nil, fmt.Errorf("ledger %s is not valid JSON (%v); it lists what an install wrote: repair it, or move it aside and remove those files by hand", path, err)
	}
	if l.Version != ledgerVersion {
		return nil, fmt.Errorf("ledger %s has version %d, this overlayctl reads %d; use the overlayctl that wrote it", path, l.Version, ledgerVersion)
	}
	return l, nil
}

// exists reports whether the ledger is on disk.
func (l *Ledger) exists() bool {
	_, err := os.Stat(l.path)
	return err == nil
}

func (l *Ledger) save() error {
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteFile(l.path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save ledger: %w", err)
	}
	return nil
}

// record returns the ledger's entry for path, or nil.
func (l *Ledger) record(path string) *FileRecord {
	for i := range l.Files {
		if l.Files[i].Path == path {
			return &l.Files[i]
		}
	}
	return nil
}

// put records that path now holds digest, keeping an earlier backup.
func (l *Ledger) put(r FileRecord) {
	if old := l.record(r.Path); old != nil {
		if r.Backup == "" {
			r.Backup, r.BackupMode = old.Backup, old.BackupMode
		}
		*old = r
		return
	}
	l.Files = append(l.Files, r)
}

// drop forgets path.
func (l *Ledger) drop(path string) {
	l.Files = slices.DeleteFunc(l.Files, func(r FileRecord) bool { return r.Path == path })
}

func (l *Ledger) addDir(dir string) {
	if !slices.Contains(l.Dirs, dir) {
		l.Dirs = append(l.Dirs, dir)
	}
}

// ours reports whether the file at path is the one an install wrote and
// nobody changed since.
func (l *Ledger) ours(path, digest string) bool {
	r := l.record(path)
	return r != nil && r.SHA256 == digest
}

// fileDigest is the sha256 of the file at path, "" if there is none.
func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func digestOf(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
