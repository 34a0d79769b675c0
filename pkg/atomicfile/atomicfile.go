// Package atomicfile replaces files so that readers see either the old
// content or the new, never a torn write: WriteFile even across a machine
// crash, Replace across a crash of the writing process only.
package atomicfile

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// WriteFile writes data to a temp file beside path, fsyncs it, renames
// it over path and fsyncs the directory so the rename survives a crash.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return write(path, bytesOf(data), perm, true)
}

// Replace is WriteFile without the fsyncs: a writer killed at any point
// leaves the old file or the new one (and maybe a temp file), because the
// page cache keeps what a process wrote whatever becomes of the process;
// only a machine crash or power loss can lose or tear the write. It is for
// state that such a crash makes worthless anyway, where two fsyncs per
// write would cost more than all the rest of the work.
func Replace(path string, data []byte, perm os.FileMode) error {
	return write(path, bytesOf(data), perm, false)
}

// ReplaceWith is Replace with the content written by fill, so a large
// file is streamed to disk instead of built in memory first. An error of
// fill leaves the old file.
func ReplaceWith(path string, perm os.FileMode, fill func(w io.Writer) error) error {
	return write(path, func(w io.Writer) error {
		b := bufio.NewWriter(w)
		if err := fill(b); err != nil {
			return err
		}
		return b.Flush()
	}, perm, false)
}

func bytesOf(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

func write(path string, fill func(io.Writer) error, perm os.FileMode, durable bool) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create directory %s: %w", dir, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("create temp file in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := fill(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if durable {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp.Name(), path, err)
	}
	if !durable {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}
