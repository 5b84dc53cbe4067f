package papoio

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// TestStreamBodyGrowsWithBytes: a stream whose 16 MB record batch is cut 1 MiB into its
// body (a client that declares a large body and sends little) holds memory for what arrived,
// not for what was declared: under 3 MiB at its peak, where the whole body (16 MB) was
// reserved before. The whole stream still reads back, with one body's memory.
func TestStreamBodyGrowsWithBytes(t *testing.T) {
	const v, rows = 20000, 200 // 16 MB of float32 logits in one batch
	cols := testColumns(polarity.Float32, v, 1, 0)
	schema := InputSchema(v, polarity.Float32, cols, nil)
	recs := buildBatches(t, memory.NewGoAllocator(), schema, polarity.Float32, v, []int{rows}, nil)
	full := encodeIPC(t, true, schema, recs...)
	releaseRecords(recs)
	// The schema and the batch's metadata take a few KiB: 1 MiB into the stream is inside the body.
	const cut = 1 << 20
	for _, tc := range []struct {
		name  string
		data  []byte
		cut   bool
		limit int64
	}{
		{"cut 1 MiB into a 16 MB body", full[:cut], true, 3 << 20},
		{"whole stream", full, false, v*rows*4 + 4<<20},
	} {
		mem := &peakAllocator{Allocator: memory.NewGoAllocator()}
		r, err := NewReader(bytes.NewReader(tc.data), "req.arrows", mem, WithStreamOnly())
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		n := 0
		for r.Next() {
			n += r.Batch().Input.Rows()
		}
		err = r.Err()
		r.Close()
		if tc.cut != (err != nil) || tc.cut && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%s: %d rows, error %v", tc.name, n, err)
		}
		if !tc.cut && n != rows {
			t.Errorf("%s: %d rows, want %d", tc.name, n, rows)
		}
		if mem.peak > tc.limit {
			t.Errorf("%s: %d bytes held at the peak, want at most %d", tc.name, mem.peak, tc.limit)
		}
	}
}
