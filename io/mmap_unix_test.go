//go:build unix

package papoio

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUnmapPieces(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name    string
		size, n int
		want    int // pieces (0: unmapped whole)
	}{
		{"small", parallelUnmapMin - 1, 2, 0},
		{"one goroutine", 1 << 30, 1, 0},
		{"two halves", 128 * mib, 2, 2},
		{"622 MB on 2", 622377346, 2, 2},
		{"odd size on 3", 100*mib + 12345, 3, 3},
		{"more goroutines than 2 MiB spans", parallelUnmapMin, 64, 32},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := unmapPieces(c.size, c.n)
			if len(p) != c.want {
				t.Fatalf("unmapPieces(%d, %d): %d pieces %v, want %d", c.size, c.n, len(p), p, c.want)
			}
			at := 0
			for i, q := range p {
				if q[0] != at || q[1] <= q[0] {
					t.Fatalf("piece %d is %v after %d: the pieces must tile [0, %d)", i, q, at, c.size)
				}
				if i < len(p)-1 && q[1]%parallelUnmapAlign != 0 {
					t.Errorf("piece %d ends at %d, not a multiple of %d", i, q[1], parallelUnmapAlign)
				}
				at = q[1]
			}
			if len(p) > 0 && at != c.size {
				t.Errorf("the pieces end at %d, want %d", at, c.size)
			}
		})
	}
}

// TestUnmapFileParallel maps a file above parallelUnmapMin, reads it through the mapping and
// removes the mapping in pieces: no error, and the file still reads the same.
func TestUnmapFileParallel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := int64(parallelUnmapMin + 3*parallelUnmapAlign + 17)
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	offsets := []int64{0, parallelUnmapAlign - 1, size / 2, size - 1}
	for i, off := range offsets {
		if _, err := f.WriteAt([]byte{byte(i + 1)}, off); err != nil {
			t.Fatal(err)
		}
	}
	data, _, err := mapFile(f, size)
	if err != nil {
		t.Fatal(err)
	}
	for i, off := range offsets {
		if data[off] != byte(i+1) {
			t.Fatalf("mapped byte %d = %d, want %d", off, data[off], i+1)
		}
	}
	if err := unmapFile(data, 3); err != nil {
		t.Fatalf("unmapFile: %v", err)
	}
	back, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i, off := range offsets {
		if back[off] != byte(i+1) {
			t.Errorf("after the unmap, byte %d of the file = %d, want %d", off, back[off], i+1)
		}
	}
}
