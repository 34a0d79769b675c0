package cniinstall

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/overlaynet/overlay/pkg/atomicfile"
)

// Uninstall undoes what the installs recorded in the ledger at path:
// files still as written are removed (and a file they replaced put back),
// changed ones are kept and named, created directories are removed when
// empty, and the ledger goes last. With no ledger there is nothing to do.
// On an error the ledger keeps what is still to undo, so a rerun finishes.
func Uninstall(path string) (Report, error) {
	var rep Report
	ledger, err := LoadLedger(path)
	if err != nil {
		return rep, err
	}
	if !ledger.exists() {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("nothing to undo: no ledger at %s", path))
		return rep, nil
	}
	var left []FileRecord
	var errs []error
	for _, r := range slices.Backward(ledger.Files) {
		if err := undoFile(r, &rep); err != nil {
			errs = append(errs, err)
			left = append(left, r)
		}
	}
	if len(errs) > 0 {
		slices.Reverse(left)
		ledger.Files = left
		if err := ledger.save(); err != nil {
			errs = append(errs, err)
		}
		return rep, errors.Join(errs...)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("remove ledger: %w", err)
	}
	rep.step(path, "removed", "the ledger")
	removeDirIfEmpty(filepath.Join(filepath.Dir(path), "cni-backup"), nil)
	for _, d := range slices.Backward(ledger.Dirs) {
		removeDirIfEmpty(d, &rep)
	}
	return rep, nil
}

// undoFile removes one recorded file if it is still as written, putting
// back the file it replaced.
func undoFile(r FileRecord, rep *Report) error {
	if _, err := os.Stat(filepath.Dir(r.Path)); err != nil {
		// Not the filesystem the install saw (the ledger of a container
		// install read on the host, a staged DESTDIR): calling the file
		// gone would drop the record and leave it behind for good.
		return fmt.Errorf("%s: its directory is missing (%v); run the uninstall where the install ran (same mounts or root), the ledger keeps this record", r.Path, err)
	}
	cur, err := fileDigest(r.Path)
	if err != nil {
		return err
	}
	switch {
	case cur == "" && r.Backup != "":
		if err := restoreBackup(r); err != nil {
			return err
		}
		rep.step(r.Path, "restored", "ours was already removed; put back the file --force had replaced")
	case cur == "":
		rep.step(r.Path, "gone", "already removed")
		return nil
	case cur != r.SHA256:
		note := "changed since it was installed: kept; remove it by hand if it is not wanted"
		if r.Backup != "" {
			note += "; the file it replaced is at " + r.Backup
		}
		rep.step(r.Path, "kept", note)
		return nil
	case r.Backup != "":
		if err := restoreBackup(r); err != nil {
			return err
		}
		rep.step(r.Path, "restored", "the file --force had replaced")
	default:
		if err := os.Remove(r.Path); err != nil {
			return fmt.Errorf("remove %s: %w", r.Path, err)
		}
		rep.step(r.Path, "removed", "")
	}
	return nil
}

// restoreBackup puts the file r replaced back in its place and removes
// the backup.
func restoreBackup(r FileRecord) error {
	data, err := os.ReadFile(r.Backup)
	if err != nil {
		return fmt.Errorf("restore %s from %s: %w", r.Path, r.Backup, err)
	}
	if err := writeFile(r.Path, data, r.BackupMode); err != nil {
		return fmt.Errorf("restore %s: %w", r.Path, err)
	}
	if err := os.Remove(r.Backup); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove backup %s: %w", r.Backup, err)
	}
	return nil
}

// removeDirIfEmpty removes a directory an install created, unless
// something else lives in it now.
func removeDirIfEmpty(dir string, rep *Report) {
	err := os.Remove(dir)
	if rep == nil {
		return
	}
	switch {
	case err == nil:
		rep.step(dir, "removed", "directory")
	case errors.Is(err, fs.ErrNotExist):
	case errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST):
		rep.step(dir, "kept", "directory created by the install, not empty: holds files overlay did not install")
	default:
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("remove %s: %v", dir, err))
	}
}

// writeFile replaces path atomically (a runtime executing the old plugin
// or reading the old conflist never sees half a file).
func writeFile(path string, data []byte, mode fs.FileMode) error {
	if err := atomicfile.WriteFile(path, data, mode); err != nil {
		return fmt.Errorf("install %s: %w", path, err)
	}
	return nil
}
