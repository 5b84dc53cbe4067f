package synth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFileFormats: WriteFile writes an Arrow IPC file and stream, and refuses a .parquet
// path with papoio's error (synth has no Parquet codec), leaving nothing behind.
func TestWriteFileFormats(t *testing.T) {
	cfg := DefaultConfig()
	cfg.V, cfg.TokensPerStep, cfg.Steps, cfg.Threads = 11, 8, 1, 1
	dir := t.TempDir()
	for _, name := range []string{"x.arrow", "x.arrows", "x.parquet"} {
		g, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		rows, err := WriteFile(path, g, nil)
		_, statErr := os.Stat(path)
		if name != "x.parquet" {
			if err != nil || rows != 8 || statErr != nil {
				t.Errorf("%s: %d rows, %v, %v; want 8 rows written", name, rows, err, statErr)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "io/files") || statErr == nil {
			t.Errorf("%s: %d rows, error %v, file %v; want the error naming the file and io/files, no file", name, rows, err, statErr)
		}
	}
}
