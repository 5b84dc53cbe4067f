package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestWriteback: Write starts the writeback of every WritebackBytes as they are written, in
// consecutive ranges from the file's start, whatever the sizes of the writes; the committed file
// holds exactly the bytes written. In the last case the real startWriteback runs under the
// record (sync_file_range on 64-bit Linux) and must not fail on a regular file: a wrong system
// call number or flag would give ENOSYS or EINVAL.
func TestWriteback(t *testing.T) {
	const wb = WritebackBytes
	tests := []struct {
		name   string
		writes []int
		want   [][2]int64 // the ranges started, [off, n]
		real   bool
	}{
		{"small writes, under one range", []int{100, 1 << 20, 3 << 20}, nil, false},
		{"exactly one range", []int{wb}, [][2]int64{{0, wb}}, false},
		{"1 MiB writes", slices.Repeat([]int{1 << 20}, 20), [][2]int64{{0, wb}, {wb, wb}}, false},
		{"odd sizes", []int{wb - 1, 2, wb + 5, 7}, [][2]int64{{0, wb + 1}, {wb + 1, wb + 5}}, false},
		{"one large write", []int{3*wb + 9}, [][2]int64{{0, 3*wb + 9}}, false},
		{"sync_file_range itself", slices.Repeat([]int{1 << 20}, 3*wb>>20+1), [][2]int64{{0, wb}, {wb, wb}, {2 * wb, wb}}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out")
			f, err := Create(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Abort()
			var got [][2]int64
			f.writeback = func(file *os.File, off, n int64) error {
				if file != f.File {
					t.Errorf("writeback of another file")
				}
				got = append(got, [2]int64{off, n})
				if !tc.real {
					return nil
				}
				err := startWriteback(file, off, n)
				if err != nil {
					t.Errorf("startWriteback(%d, %d): %v", off, n, err)
				}
				return err
			}
			var want bytes.Buffer
			for i, n := range tc.writes {
				p := bytes.Repeat([]byte{byte(i*37 + 1)}, n)
				if k, err := f.Write(p); err != nil || k != n {
					t.Fatalf("write %d: %d, %v", i, k, err)
				}
				want.Write(p)
			}
			if err := f.Commit(); err != nil {
				t.Fatal(err)
			}
			if data, err := os.ReadFile(path); err != nil || !bytes.Equal(data, want.Bytes()) {
				t.Fatalf("the committed file differs from the bytes written (%d bytes, %v)", len(data), err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("writeback ranges %v, want %v", got, tc.want)
			}
		})
	}
}
