package atomicfile

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// File is a file that appears at Path only when Commit succeeds. It embeds the temporary file:
// write to it as to any *os.File.
//
// Write starts the kernel writing each WritebackBytes of data to the device as soon as they
// are written (on 64-bit Linux, sync_file_range without waiting: RocksDB's bytes_per_sync,
// PostgreSQL's backend_flush_after), so that the disk works while the rest of the output is
// produced and Sync waits only for the last part. A 336 MB output written and synced took
// 150–196 ms here without it and 102–108 ms with it (2026-12-07, bench/RESULTS.md). It changes
// no byte and no guarantee: the data is durable only after Sync, as before.
type File struct {
	*os.File
	path   string
	synced bool // data synced and the temporary file closed
	done   bool // committed or aborted

	written, started int64 // bytes written by Write; bytes whose writeback has been started
	// writeback starts writing [off, off+n) to the device (startWriteback; tests record it).
	writeback func(f *os.File, off, n int64) error
}

// WritebackBytes is how much newly written data makes Write start its writeback: large enough
// that the calls cost nothing next to the copies (one per 8 MiB), small enough that the disk
// starts early (4 and 16 MiB measured the same).
const WritebackBytes = 8 << 20

// Write writes p to the temporary file and starts the writeback of the data written since the
// last start once that is WritebackBytes or more. A failed start is not an error: the data is
// still in the page cache, and Sync writes it or reports why it could not.
func (f *File) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	f.written += int64(n)
	if f.written-f.started >= WritebackBytes {
		f.writeback(f.File, f.started, f.written-f.started) // advice: Sync reports what fails
		f.started = f.written
	}
	return n, err
}

// tempPrefix is the start of a temporary file's name beside path's base name.
func tempPrefix(base string) string { return "." + base + ".tmp-" }

// Create opens a temporary file beside path, in the same directory (a rename across file
// systems would not be atomic).
func Create(path string) (*File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	// Mode 0666 less the umask, as os.Create gives: os.CreateTemp's 0600 (and a chmod to a
	// fixed mode after it) would not respect the user's umask.
	for range 10000 {
		name := filepath.Join(dir, tempPrefix(base)+strconv.FormatUint(rand.Uint64(), 36))
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
		return &File{File: f, path: path, writeback: startWriteback}, nil
	}
	return nil, fmt.Errorf("create %s: no free temporary name beside it", path)
}

// Path is the destination path.
func (f *File) Path() string { return f.path }

// TempPath is the temporary file's path.
func (f *File) TempPath() string { return f.File.Name() }

// Sync makes the written data durable in the temporary file and closes it; nothing is visible
// at Path yet. Commit calls it when the caller has not; CommitAll calls it for every file before
// it writes its journal.
func (f *File) Sync() error {
	if f.done {
		return fmt.Errorf("%s: already committed or aborted", f.path)
	}
	if f.synced {
		return nil
	}
	if err := f.File.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", f.path, err)
	}
	if err := f.File.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.path, err)
	}
	f.synced = true
	return nil
}

// Commit syncs the data, renames it over the destination and syncs the directory. A failed
// Commit removes the temporary file and leaves the destination as it was.
func (f *File) Commit() error {
	if err := f.Sync(); err != nil {
		f.Abort()
		return err
	}
	if err := os.Rename(f.TempPath(), f.path); err != nil {
		f.Abort()
		return fmt.Errorf("rename %s: %w", f.path, err)
	}
	f.done = true
	return syncDir(filepath.Dir(f.path))
}

// Abort removes the temporary file; the destination is left as it was. Abort after Commit does
// nothing, so `defer f.Abort()` is the idiom.
func (f *File) Abort() error {
	if f.done {
		return nil
	}
	f.done = true
	if !f.synced {
		f.File.Close()
	}
	if err := os.Remove(f.TempPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", f.TempPath(), err)
	}
	return nil
}

// WriteFile writes data to path atomically.
func WriteFile(path string, data []byte) error {
	f, err := Create(path)
	if err != nil {
		return err
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Commit()
}

// RemoveStale deletes the temporary files that a killed writer of path left beside it. Call it
// only where no other process can be writing path (papo holds the run state's lock).
func RemoveStale(path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("look for stale temporary files of %s: %w", path, err)
	}
	prefix := tempPrefix(base)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || e.IsDir() {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove stale temporary file of %s: %w", path, err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
