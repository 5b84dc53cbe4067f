package papoio

// The Reader and its Batch: their types, accessors and Close. Opening an input is in open.go,
// iterating its batches in next.go, checking and viewing their columns in columns.go, the
// passthrough columns in passthrough.go.

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

// Reader reads token rows from an Arrow IPC file or stream, one record batch at a time, and
// checks them against docs/SCHEMA.md. It is an iterator in the manner of arrow-go's readers:
//
//	for r.Next() { use(r.Batch()) }
//	if err := r.Err(); err != nil { ... }
//
// A Reader is not safe for concurrent use.
type Reader struct {
	name  string
	mem   memory.Allocator // the caller's allocator behind the size limit
	limit int64            // largest single allocation (WithMaxBufferBytes)
	lay   *layout
	meta  Meta
	sch   *arrow.Schema

	file       *ipc.FileReader // IPC file with a valid footer
	footer     *fileIndex      // its verified footer
	stream     *ipc.Reader     // IPC stream, or an IPC file without a valid footer
	noFooter   error           // an IPC file without a usable footer, read as a stream; the footer's error
	noContract bool            // WithContract said no: metadata only, no batches
	mapped     bool            // file is a read-only memory map (openMapped)
	records    recordSource    // a Parquet, CSV or JSONL table (table.go)
	closers    []func() error
	index      int   // next batch index
	rows       int64 // rows before the next batch
	batch      *Batch
	err        error
	done       bool
	closed     bool
	closeError error
}

// Batch is one record batch of the input, checked and viewed as a polarity.Batch.
type Batch struct {
	Index    int          // batch number in the input (0-based; empty batches are counted, not yielded)
	FirstRow int64        // index of the batch's first row in the whole input
	Record   arrow.Record // the input record; owned by the Reader until Next (Retain to keep it)
	// Input views the Record without copying where the layout allows: float32 logits, float16
	// and bfloat16 bits, int32 token ids, float64 advantages, float32 old log-probabilities.
	// Columns stored in another type (int64 token ids, float32 advantages, ...) are converted
	// into fresh slices. The views stay valid as long as Record is.
	Input polarity.Batch
	Step  []int64 // nil when there is no step column

	file   string
	lay    *layout
	mapped bool // Record is a view of the Reader's memory map
}

// Mapped reports whether the input is an IPC file read through a memory map (no copies).
func (r *Reader) Mapped() bool { return r.mapped }

// Rows is the number of token rows of an IPC file input, from its footer and its batches'
// metadata, before any batch is read; false for any other input (a stream, a table, a file
// without a valid footer) or metadata that does not give it (reading the batch says why).
func (r *Reader) Rows() (int64, bool) {
	if r.footer == nil {
		return 0, false
	}
	n, err := r.footer.rows()
	return n, err == nil
}

// Schema is the input schema.
func (r *Reader) Schema() *arrow.Schema { return r.sch }

// Meta describes the input. For list<...> logits, V is 0 until the first row has been read.
func (r *Reader) Meta() Meta { return r.meta }

// Batch is the current batch, valid until the next call to Next.
func (r *Reader) Batch() *Batch { return r.batch }

// Err is the error that ended the iteration, nil at a clean end.
func (r *Reader) Err() error { return r.err }

// Close releases the current batch and the input. It is safe to call more than once.
func (r *Reader) Close() error {
	if r.closed {
		return r.closeError
	}
	r.closed = true
	r.releaseBatch()
	for i := len(r.closers) - 1; i >= 0; i-- {
		if err := r.closers[i](); err != nil && r.closeError == nil {
			r.closeError = fileError(r.name, err, "close")
		}
	}
	r.closers = nil
	r.mem.(*limitAllocator).drain()
	return r.closeError
}

func (r *Reader) releaseBatch() {
	if r.batch != nil {
		r.batch.Record.Release()
		r.batch = nil
	}
}
