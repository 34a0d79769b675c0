package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/overlaynet/overlay/pkg/atomicfile"
)

// forgetEarlierBoot drops the reservations of earlier boots of the machine
// when the store was last used in one: no container of those boots
// survived (see the package comment). It drops only files last changed
// before this boot began, so reservations a writer that keeps no boot ID
// (an older overlay-ipam) made in this boot stay. It runs under the
// store's lock, first thing in every transaction.
func (s *Store) forgetEarlierBoot() error {
	cur, err := os.ReadFile(s.bootIDPath())
	if err != nil || len(bytes.TrimSpace(cur)) == 0 {
		// Without the kernel's boot ID nothing can be compared: keep all.
		return nil
	}
	cur = bytes.TrimSpace(cur)
	have, err := os.ReadFile(s.path(bootIDFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A new store, or one written before boot IDs were kept: what it
		// holds is taken to be this boot's.
		return s.writeBootID(cur)
	case err != nil:
		return fmt.Errorf("read %s: %w", s.path(bootIDFile), err)
	case bytes.Equal(bytes.TrimSpace(have), cur):
		return nil
	}
	booted, err := s.bootTime()
	if err != nil {
		return fmt.Errorf("drop the reservations of an earlier boot: %w", err)
	}
	if err := s.dropBefore(booted); err != nil {
		return fmt.Errorf("drop the reservations of an earlier boot: %w", err)
	}
	return s.writeBootID(cur)
}

// writeBootID records the boot the store's reservations belong to. It is
// written once per boot, so unlike the reservations it is fsynced: a crash
// must not leave a store without it, which would be adopted as is.
func (s *Store) writeBootID(id []byte) error {
	return atomicfile.WriteFile(s.path(bootIDFile), append(id, '\n'), 0o644)
}

// dropBefore removes every reservation, index and temp file last changed
// before t, and the round-robin hint.
func (s *Store) dropBefore(t time.Time) error {
	for _, d := range []string{ipsDir, attachmentsDir} {
		entries, err := os.ReadDir(s.path(d))
		if err != nil {
			return err
		}
		for _, e := range entries {
			p := filepath.Join(s.path(d), e.Name())
			if changed, err := changeTime(p); err == nil && changed.Before(t) {
				if err := removeIfExists(p); err != nil {
					return err
				}
			}
		}
	}
	return removeIfExists(s.path(lastReservedFile))
}

// changeTime is a file's ctime: unlike its mtime, no one can set it back.
func changeTime(path string) (time.Time, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return time.Time{}, err
	}
	return time.Unix(st.Ctim.Unix()), nil
}

// bootTime is when this boot began, from the kernel's btime.
func (s *Store) bootTime() (time.Time, error) {
	path := s.ProcStatPath
	if path == "" {
		path = "/proc/stat"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return time.Time{}, fmt.Errorf("read boot time: %w", err)
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("parse btime %q in %s: %w", v, path, err)
			}
			return time.Unix(secs, 0), nil
		}
	}
	return time.Time{}, fmt.Errorf("no btime in %s", path)
}

func (s *Store) bootIDPath() string {
	if s.BootIDPath != "" {
		return s.BootIDPath
	}
	return DefaultBootIDPath
}
