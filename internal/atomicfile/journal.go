package atomicfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// The journal is a small JSON document:
//
//	{"format": "papo-commit-journal", "version": 1,
//	 "files": [{"temp": "/run/.out.arrow.tmp-123", "path": "/run/out.arrow"}, ...]}
//
// with absolute paths, so that Recover works from any working directory.
const (
	journalFormat  = "papo-commit-journal"
	journalVersion = 1
)

type journal struct {
	Format  string         `json:"format"`
	Version int            `json:"version"`
	Files   []journalEntry `json:"files"`
}

type journalEntry struct {
	Temp string `json:"temp"`
	Path string `json:"path"`
}

// CommitAll commits files as one transaction whose commit record is the file at journalPath
// (papo puts it beside the run state). Every file is synced first; a failure there aborts them
// all and changes nothing. Once the journal is written the group is committed: the files are
// renamed in the order given (the run state last, so that it never runs ahead of the outputs)
// and the journal is removed. If a rename fails after that point, or the process dies, the
// journal stays and Recover finishes the commit; the error says so.
func CommitAll(journalPath string, files ...*File) error {
	return commitAll(journalPath, files, nil)
}

// commitAll is CommitAll with a hook that runs before rename i (tests kill the process there).
func commitAll(journalPath string, files []*File, beforeRename func(i int)) error {
	abortAll := func() {
		for _, f := range files {
			f.Abort()
		}
	}
	j := journal{Format: journalFormat, Version: journalVersion}
	for _, f := range files {
		if err := f.Sync(); err != nil {
			abortAll()
			return err
		}
		// A directory at the destination would make the rename fail after the commit point.
		if fi, err := os.Lstat(f.path); err == nil && fi.IsDir() {
			abortAll()
			return fmt.Errorf("commit %s: it is a directory", f.path)
		}
		temp, err1 := filepath.Abs(f.TempPath())
		path, err2 := filepath.Abs(f.path)
		if err := errors.Join(err1, err2); err != nil {
			abortAll()
			return fmt.Errorf("commit %s: %w", f.path, err)
		}
		j.Files = append(j.Files, journalEntry{Temp: temp, Path: path})
	}
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		abortAll()
		return fmt.Errorf("commit journal %s: %w", journalPath, err)
	}
	if err := WriteFile(journalPath, append(data, '\n')); err != nil {
		abortAll()
		return fmt.Errorf("commit journal: %w", err)
	}
	// The commit point has passed: from here on the files belong to the journal.
	for _, f := range files {
		f.done = true
	}
	if err := apply(j, beforeRename); err != nil {
		return fmt.Errorf("%w; the commit is recorded in %s and completes when the run state is next opened", err, journalPath)
	}
	return removeJournal(journalPath)
}

// Recover finishes a commit that a crash interrupted: when journalPath exists it renames every
// temporary file it names that is still there, syncs their directories and removes the journal.
// It reports whether there was a journal. Call it before reading or writing any file of the
// group, with no other writer of the group running.
func Recover(journalPath string) (bool, error) {
	data, err := os.ReadFile(journalPath)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("commit journal: %w", err)
	}
	var j journal
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err = dec.Decode(&j)
	if err == nil {
		if _, tail := dec.Token(); tail != io.EOF {
			err = errors.New("unexpected data after the JSON object")
		}
	}
	if err == nil && (j.Format != journalFormat || j.Version != journalVersion) {
		err = fmt.Errorf("format %q version %d: want %q version %d", j.Format, j.Version, journalFormat, journalVersion)
	}
	for _, e := range j.Files {
		if err == nil && (!filepath.IsAbs(e.Temp) || !filepath.IsAbs(e.Path) || filepath.Dir(e.Temp) != filepath.Dir(e.Path)) {
			err = fmt.Errorf("entry %q → %q: want absolute paths in one directory", e.Temp, e.Path)
		}
	}
	if err != nil {
		// The journal is written atomically, so this is not a torn write: leave it for a person.
		return false, fmt.Errorf("commit journal %s is malformed (%v): it records an interrupted commit; inspect it, then remove it", journalPath, err)
	}
	if err := apply(j, nil); err != nil {
		return true, fmt.Errorf("finish the commit recorded in %s: %w", journalPath, err)
	}
	return true, removeJournal(journalPath)
}

// apply renames every journal entry whose temporary file is still there (an entry whose file
// is gone was renamed before a crash) and syncs the directories involved. beforeRename (tests)
// runs before rename i and, with i = len(j.Files), after the last.
func apply(j journal, beforeRename func(i int)) error {
	hook := func(i int) {
		if beforeRename != nil {
			beforeRename(i)
		}
	}
	var dirs []string
	for i, e := range j.Files {
		hook(i)
		if err := os.Rename(e.Temp, e.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rename %s: %w", e.Path, err)
		}
		if d := filepath.Dir(e.Path); !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	hook(len(j.Files))
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

func removeJournal(path string) error {
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove commit journal: %w", err)
	}
	return syncDir(filepath.Dir(path))
}
