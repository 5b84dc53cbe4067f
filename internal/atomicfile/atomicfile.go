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
type File struct {
	*os.File
	path   string
	synced bool // data synced and the temporary file closed
	done   bool // committed or aborted
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
		return &File{File: f, path: path}, nil
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
