package papoio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// TestPassthroughDoesNotPinLogits keeps every batch's passthrough record, as the pipeline does
// for a training step, and checks that the logits are freed anyway: the kept memory must be a
// small fraction of the logits read (the reader's columns are zero-copy slices of the message
// body, so Passthrough must copy).
func TestPassthroughDoesNotPinLogits(t *testing.T) {
	const v, rows, batches = 4096, 64, 6
	build := memory.NewGoAllocator()
	sizes := make([]int, batches)
	for i := range sizes {
		sizes[i] = rows
	}
	cols := testColumns(polarity.Float32, v, rows, 0)
	schema := InputSchema(v, polarity.Float32, cols, nil)
	recs := buildBatches(t, build, schema, polarity.Float32, v, sizes, nil)
	defer releaseRecords(recs)
	for _, stream := range []bool{true, false} {
		data := encodeIPC(t, stream, schema, recs...)
		readMem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		keepMem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		r, err := NewReader(bytes.NewReader(data), "pinned.arrow", readMem)
		if err != nil {
			t.Fatal(err)
		}
		var kept []arrow.Record
		for r.Next() {
			kept = append(kept, r.Batch().Passthrough(keepMem))
		}
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		logits := batches * rows * v * 4
		// What the reader still holds once it is closed, while the passthrough records live:
		// nothing of the logits (the reader may keep no buffer after Close).
		if held := readMem.CurrentAlloc(); held > logits/10 {
			t.Errorf("stream=%v: %d bytes of the reader's memory stay alive with the passthrough columns (logits: %d)", stream, held, logits)
		}
		for _, k := range kept {
			k.Release()
		}
		readMem.AssertSize(t, 0)
		keepMem.AssertSize(t, 0)
	}
}

// TestPassthroughMappedShares: the batches of a memory-mapped IPC file share their
// passthrough columns (no allocation from mem, the same buffers), and their values are the
// input's.
func TestPassthroughMappedShares(t *testing.T) {
	const v, rows = 64, 100
	build := memory.NewGoAllocator()
	cols := testColumns(polarity.Float32, v, rows, 0)
	schema := InputSchema(v, polarity.Float32, cols, nil)
	recs := buildBatches(t, build, schema, polarity.Float32, v, []int{rows / 2, rows / 2}, nil)
	defer releaseRecords(recs)
	path := filepath.Join(t.TempDir(), "in.arrow")
	if err := os.WriteFile(path, encodeIPC(t, false, schema, recs...), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path, memory.NewGoAllocator())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if !r.Mapped() {
		t.Skip("the file is not memory-mapped here")
	}
	keepMem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	for k := 0; r.Next(); k++ {
		b := r.Batch()
		pass := b.Passthrough(keepMem)
		if keepMem.CurrentAlloc() != 0 {
			t.Fatalf("batch %d: Passthrough of a mapped file allocated %d bytes", k, keepMem.CurrentAlloc())
		}
		tok := pass.Column(int(pass.Schema().FieldIndices(ColTokenID)[0]))
		in := b.Record.Column(b.Record.Schema().FieldIndices(ColTokenID)[0])
		if tok.Data().Buffers()[1] != in.Data().Buffers()[1] || !array.Equal(tok, in) {
			t.Errorf("batch %d: token_id is not the input's column, shared", k)
		}
		if pass.NumCols() != b.Record.NumCols()-1 {
			t.Errorf("batch %d: %d passthrough columns of %d", k, pass.NumCols(), b.Record.NumCols())
		}
		pass.Release()
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
}
