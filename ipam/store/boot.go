package store

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/overlaynet/overlay/pkg/atomicfile"
)

// forgetEarlierBoot drops every reservation when the store was last used in
// an earlier boot of the machine: no container of that boot survived it
// (see the package comment). It runs under the store's lock, first thing
// in every transaction.
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
	if err := s.dropAll(); err != nil {
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

// dropAll removes every reservation, index and the round-robin hint.
func (s *Store) dropAll() error {
	for _, d := range []string{ipsDir, attachmentsDir} {
		if err := os.RemoveAll(s.path(d)); err != nil {
			return err
		}
		if err := os.MkdirAll(s.path(d), 0o755); err != nil {
			return err
		}
	}
	return removeIfExists(s.path(lastReservedFile))
}

func (s *Store) bootIDPath() string {
	if s.BootIDPath != "" {
		return s.BootIDPath
	}
	return DefaultBootIDPath
}
