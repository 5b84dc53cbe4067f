package papoio

// The columns a Batch carries through to the output unchanged.

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Passthrough is the batch's record without the logits column: the input columns that go to the
// output unchanged, copied into memory from mem (nil: memory.DefaultAllocator). They are copied
// because the reader's columns are zero-copy slices of one message body: sharing them would keep
// the batch's logits alive for as long as the caller keeps the small columns (a whole training
// step, in papo's pipeline). A batch of a memory-mapped IPC file shares them instead: its
// columns are views of the mapping, which holds no heap memory and lasts until the Reader's
// Close (the copy was a fifth of papo analyze's time on a 4M-row row-statistics file). A column
// of a type arrow-go cannot copy is shared too. The caller releases the new record.
func (b *Batch) Passthrough(mem memory.Allocator) arrow.Record {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	cols := make([]arrow.Array, len(b.lay.passIdx))
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for i, idx := range b.lay.passIdx {
		col := b.Record.Column(idx)
		if b.mapped {
			col.Retain()
			cols[i] = col
			continue
		}
		c, err := array.Concatenate([]arrow.Array{col}, mem)
		if err != nil {
			col.Retain()
			c = col
		}
		cols[i] = c
	}
	return array.NewRecord(b.lay.passSchema, cols, b.Record.NumRows())
}
