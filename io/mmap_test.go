package papoio

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/entropy-polarity/papo/polarity"
)

// peakAllocator records the most bytes it has had out at once.
type peakAllocator struct {
	memory.Allocator
	mu        sync.Mutex
	cur, peak int64
}

func (a *peakAllocator) add(n int) {
	a.mu.Lock()
	a.cur += int64(n)
	a.peak = max(a.peak, a.cur)
	a.mu.Unlock()
}

func (a *peakAllocator) Allocate(n int) []byte { a.add(n); return a.Allocator.Allocate(n) }

func (a *peakAllocator) Reallocate(n int, b []byte) []byte {
	a.add(n - len(b))
	return a.Allocator.Reallocate(n, b)
}

func (a *peakAllocator) Free(b []byte) { a.add(-len(b)); a.Allocator.Free(b) }

// TestMappedSingleBatch: an IPC file whose one record batch (32 MiB of logits) is 32 times the
// buffer cap is read through its memory map, with at most a few KiB allocated while its rows are
// checked value by value; the same batch in an IPC stream is refused with the cap in the error.
func TestMappedSingleBatch(t *testing.T) {
	const v, rows, capBytes = 4096, 2048, 1 << 20
	for _, dtype := range []polarity.Dtype{polarity.Float32, polarity.BFloat16} {
		t.Run(dtype.String(), func(t *testing.T) {
			build := memory.NewGoAllocator()
			cols := testColumns(dtype, v, 1, 0)
			schema := InputSchema(v, dtype, cols, nil)
			recs := buildBatches(t, build, schema, dtype, v, []int{rows}, nil)
			file := writeTemp(t, "big.arrow", encodeIPC(t, false, schema, recs...))
			stream := writeTemp(t, "big.arrows", encodeIPC(t, true, schema, recs...))
			releaseRecords(recs)

			mem := &peakAllocator{Allocator: memory.NewGoAllocator()}
			r, err := Open(file, mem, WithMaxBufferBytes(capBytes))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if !r.Mapped() {
				t.Fatal("the IPC file was not memory-mapped")
			}
			n := 0
			for r.Next() {
				checkBatch(t, r.Batch(), dtype, v)
				n += r.Batch().Input.Rows()
			}
			if err := r.Err(); err != nil {
				t.Fatal(err)
			}
			if n != rows {
				t.Fatalf("%d rows, want %d", n, rows)
			}
			// The scalar columns are views too; what is allocated is arrow-go's bookkeeping.
			logits := int64(rows * v * dtype.Size())
			if mem.peak > 64<<10 {
				t.Errorf("peak allocation %d bytes reading a %d-byte batch; want ≤ 64 KiB (the batch is a view of the map)", mem.peak, logits)
			}
			t.Logf("%s: %d-byte batch read with a peak of %d bytes allocated", dtype, logits, mem.peak)

			s, err := Open(stream, nil, WithMaxBufferBytes(capBytes))
			if err == nil {
				defer s.Close()
				for s.Next() {
				}
				err = s.Err()
			}
			if !errors.Is(err, ErrBufferLimit) || !strings.Contains(err.Error(), "1048576") {
				t.Fatalf("stream with a %d-byte batch under a %d-byte cap: %v; want ErrBufferLimit naming the cap", logits, capBytes, err)
			}
			t.Logf("stream: %v", err)
		})
	}
}
