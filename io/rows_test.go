package papoio_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/entropy-polarity/papo/internal/testinput"
	papoio "github.com/entropy-polarity/papo/io"
)

// TestReaderRows: an IPC file gives its row count before a batch is read (the footer and the
// batches' metadata); a stream, and a file cut short (no footer), do not.
func TestReaderRows(t *testing.T) {
	dir := t.TempDir()
	spec := testinput.Spec{V: 7, Steps: testinput.StepRows(100, 0), Batches: []int{30, 50, 20}, Seed: 1}
	file := filepath.Join(dir, "in.arrow")
	if err := testinput.WriteFile(file, spec); err != nil {
		t.Fatal(err)
	}
	stream, err := testinput.Stream(spec)
	if err != nil {
		t.Fatal(err)
	}
	streamPath := filepath.Join(dir, "in.arrows")
	whole, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.arrow")
	if err := os.WriteFile(streamPath, stream, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cut, whole[:len(whole)-20], 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path  string
		rows  int64
		known bool
	}{{file, 100, true}, {streamPath, 0, false}, {cut, 0, false}} {
		r, err := papoio.Open(tc.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, ok := r.Rows()
		r.Close()
		if n != tc.rows || ok != tc.known {
			t.Errorf("%s: Rows() = %d, %v; want %d, %v", filepath.Base(tc.path), n, ok, tc.rows, tc.known)
		}
	}
}
