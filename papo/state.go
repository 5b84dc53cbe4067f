package papo

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	papoio "github.com/entropy-polarity/papo/io"
)

// State-file identification. A file whose "format" differs is not a papo run state; a
// "version" above StateVersion was written by a newer papo.
const (
	StateFormat  = "papo-run-state"
	StateVersion = 1
)

// stateFile is the JSON document of a run-state file:
//
//	{
//	  "format": "papo-run-state",
//	  "version": 1,
//	  "params": {"method": "papo", "lambda": "0.5", "phase.mode": "slope", ...},
//	  "detector": {"last_step": 41, "last_tokens": 81920, "last_sum_entropy": 52344.75,
//	               "observed": 42, "ema": 0.6391, "phi": 0.2137, "window": [0.66, ...]}
//	}
//
// params holds the parameters that decide the weights (Config.effectiveParams), as exact
// decimal strings; detector is DetectorState. Floats are written in Go's shortest
// round-tripping form, so a loaded state is bit-identical to the saved one.
type stateFile struct {
	Format   string            `json:"format"`
	Version  *int              `json:"version"`
	Params   map[string]string `json:"params"`
	Detector *DetectorState    `json:"detector"`
}

// testHookBeforeRename, when set (tests only), runs after the state's temporary file is
// written and before it is renamed into place; a non-nil error aborts the save.
var testHookBeforeRename func(tmpPath string) error

func encodeState(c Config, d DetectorState) ([]byte, error) {
	ps := map[string]string{}
	for _, p := range c.effectiveParams() {
		ps[p.name] = p.value
	}
	if d.Window == nil {
		d.Window = []float64{}
	}
	v := StateVersion
	data, err := json.MarshalIndent(stateFile{Format: StateFormat, Version: &v, Params: ps, Detector: &d}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// saveState writes the state atomically: temporary file in the same directory, fsync, rename
// over path, fsync of the directory. A crash at any point leaves either the old or the new
// state at path, never a mixture.
func saveState(path string, c Config, d DetectorState) error {
	data, err := encodeState(c, d)
	if err != nil {
		return fmt.Errorf("run state %s: encode: %w", path, err)
	}
	f, err := papoio.CreateAtomic(path)
	if err != nil {
		return fmt.Errorf("run state: %w", err)
	}
	defer f.Abort()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("run state: write %s: %w", path, err)
	}
	if testHookBeforeRename != nil {
		if err := testHookBeforeRename(f.Name()); err != nil {
			return fmt.Errorf("run state %s: %w", path, err)
		}
	}
	if err := f.Commit(); err != nil {
		return fmt.Errorf("run state: %w", err)
	}
	return nil
}

// loadState reads path. ok is false (with a nil error) only when the file does not exist;
// anything unreadable, malformed or inconsistent is an error, never a silent fresh start.
func loadState(path string, c Config) (st DetectorState, ok bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return DetectorState{}, false, nil
	}
	if err != nil {
		return DetectorState{}, false, fmt.Errorf("run state: %w", err)
	}
	malformed := func(format string, a ...any) error {
		return fmt.Errorf("run state %s is malformed: %s; fix or remove it, or pass --%s to start a new run",
			path, fmt.Sprintf(format, a...), FlagResetState)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return DetectorState{}, false, malformed("the file is empty")
	}
	var sf stateFile
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return DetectorState{}, false, malformed("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return DetectorState{}, false, malformed("unexpected data after the JSON object")
	}
	if sf.Format != StateFormat {
		return DetectorState{}, false, malformed("format %q: want %q", sf.Format, StateFormat)
	}
	switch {
	case sf.Version == nil:
		return DetectorState{}, false, malformed("no version")
	case *sf.Version > StateVersion:
		return DetectorState{}, false, fmt.Errorf("run state %s has format version %d, written by a newer papo (this one reads version %d)",
			path, *sf.Version, StateVersion)
	case *sf.Version != StateVersion:
		return DetectorState{}, false, malformed("version %d: want %d", *sf.Version, StateVersion)
	}
	if sf.Params == nil {
		return DetectorState{}, false, malformed("no params")
	}
	if sf.Detector == nil {
		return DetectorState{}, false, malformed("no detector state")
	}
	if diff := paramDiff(sf.Params, c); diff != "" {
		return DetectorState{}, false, fmt.Errorf("run state %s was written with different parameters (%s); "+
			"use the state's parameters to continue that run, or pass --%s to start a new run", path, diff, FlagResetState)
	}
	if sf.Detector.Window == nil {
		return DetectorState{}, false, malformed("detector: no window")
	}
	if err := sf.Detector.check(c.Phase); err != nil {
		return DetectorState{}, false, malformed("detector: %v", err)
	}
	return *sf.Detector, true, nil
}

// paramDiff describes how saved differs from c's effective parameters ("" when equal).
func paramDiff(saved map[string]string, c Config) string {
	var diffs []string
	now := map[string]bool{}
	for _, p := range c.effectiveParams() {
		now[p.name] = true
		v, ok := saved[p.name]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s = %s now, absent in the state", p.name, p.value))
		case v != p.value:
			diffs = append(diffs, fmt.Sprintf("%s = %s in the state, %s now", p.name, v, p.value))
		}
	}
	var extra []string
	for k, v := range saved {
		if !now[k] {
			extra = append(extra, fmt.Sprintf("%s = %s in the state, unused now", k, v))
		}
	}
	// Map order is random: sort the extras so the message is stable.
	slices.Sort(extra)
	return strings.Join(append(diffs, extra...), "; ")
}

// removeStaleTemps deletes temporary files that a crash between write and rename left beside
// path (papoio.CreateAtomic names them ".<base>.tmp-*"). A state file has one writer, so no
// other process can be in the middle of a save.
func removeStaleTemps(path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	matches, err := filepath.Glob(filepath.Join(dir, "."+globEscape(base)+".tmp-*"))
	if err != nil {
		return fmt.Errorf("run state %s: look for stale temporary files: %w", path, err)
	}
	for _, m := range matches {
		if err := os.Remove(m); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("run state %s: remove stale temporary file: %w", path, err)
		}
	}
	return nil
}

// globEscape quotes the glob metacharacters of a file name.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
