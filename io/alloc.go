package papoio

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// errBufferLimit is raised (as a panic inside arrow-go, recovered where arrow-go is called) when
// corrupt metadata asks for a buffer larger than the reader allows.
type errBufferLimit struct {
	size, limit int64
	streamBody  bool // the body of a record batch in an IPC stream, which must be held whole
}

// ErrBufferLimit matches (errors.Is) the error of an input that needs a buffer over the
// WithMaxBufferBytes limit.
var ErrBufferLimit = errors.New("buffer over the limit")

func (e *errBufferLimit) Is(target error) bool { return target == ErrBufferLimit }

func (e *errBufferLimit) Error() string {
	if e.streamBody {
		return fmt.Sprintf("a record batch of %d bytes is over the cap of %d bytes for a batch of an IPC stream "+
			"(a stream's batch is held in memory whole; the cap is WithMaxBufferBytes, papo's --max-batch-bytes): "+
			"write smaller record batches (pyarrow: write_table(..., max_chunksize=ROWS)), or an IPC file, which papo "+
			"memory-maps and reads without a cap", e.size, e.limit)
	}
	return fmt.Sprintf("a buffer of %d bytes was requested, more than the limit of %d bytes: "+
		"the input is corrupt (or raise the limit with WithMaxBufferBytes)", e.size, e.limit)
}

// limitAllocator is the reader's allocator: it refuses single allocations above limit, and it
// keeps a few large freed buffers for reuse.
//
// The limit: lengths in Arrow IPC come from the input (message and buffer lengths); without it a
// few corrupt bytes could ask for terabytes.
//
// The reuse: every batch needs the same large buffers as the one before (a message body, the
// logits values), and the previous batch's are freed just before. Fresh large allocations cost a
// page fault per page and zeroing, which halved the reading speed (BenchmarkRead); buffers
// kept here are already resident. A reused buffer is cleared before it is handed out (cheap on
// resident memory), so that no code relying on zeroed allocations sees stale bytes.
type limitAllocator struct {
	mem   memory.Allocator
	limit int64

	mu      sync.Mutex
	pool    [][]byte         // freed large buffers, each with the length it was allocated with
	pooled  int64            // bytes in pool
	largest int64            // largest allocation seen: the pool holds at most twice that
	lent    map[*byte][]byte // buffers handed out from the pool → the buffer as allocated
	drained bool             // after Close: free everything to mem
}

const poolMinSize = 1 << 20

func (a *limitAllocator) check(size int) {
	if size < 0 || int64(size) > a.limit {
		panic(&errBufferLimit{size: int64(size), limit: a.limit})
	}
}

func (a *limitAllocator) Allocate(size int) []byte {
	a.check(size)
	if size < poolMinSize {
		return a.mem.Allocate(size)
	}
	a.mu.Lock()
	a.largest = max(a.largest, int64(size))
	b := a.lend(size)
	a.mu.Unlock()
	if b == nil {
		return a.mem.Allocate(size)
	}
	clear(b)
	return b
}

// takePooled lends a pooled buffer of size bytes, not cleared, or returns nil when the pool has
// none that large: for a stream message's body, which the reader overwrites whole. A body
// whose size the pool holds already costs no new memory, so it need not grow with the bytes
// that arrive; and a buffer that is overwritten need not be cleared first (12 MB of clearing a
// batch, papo bench --row-stats).
func (a *limitAllocator) takePooled(size int) []byte {
	if size < poolMinSize {
		return nil
	}
	a.check(size)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lend(size)
}

// lend takes the smallest pooled buffer of at least size bytes out of the pool and returns its
// first size bytes, as they are; nil when none is that large. a.mu is held.
func (a *limitAllocator) lend(size int) []byte {
	best := -1
	for i, b := range a.pool {
		if len(b) >= size && (best < 0 || len(b) < len(a.pool[best])) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	b := a.pool[best]
	a.pool = append(a.pool[:best], a.pool[best+1:]...)
	a.pooled -= int64(len(b))
	if a.lent == nil {
		a.lent = make(map[*byte][]byte)
	}
	a.lent[unsafe.SliceData(b)] = b
	return b[:size:size]
}

func (a *limitAllocator) Reallocate(size int, b []byte) []byte {
	a.check(size)
	a.mu.Lock()
	_, lent := a.lent[unsafe.SliceData(b)]
	a.largest = max(a.largest, int64(size)) // a grown body is pooled when freed
	a.mu.Unlock()
	if !lent || cap(b) == 0 {
		return a.mem.Reallocate(size, b)
	}
	if size <= cap(b) {
		return b[:size]
	}
	nb := a.Allocate(size)
	copy(nb, b)
	a.Free(b)
	return nb
}

func (a *limitAllocator) Free(b []byte) {
	if cap(b) == 0 {
		return
	}
	a.mu.Lock()
	full := b
	if orig, ok := a.lent[unsafe.SliceData(b)]; ok {
		delete(a.lent, unsafe.SliceData(b))
		full = orig
	}
	if len(full) >= poolMinSize && !a.drained && a.pooled+int64(len(full)) <= 2*a.largest {
		a.pool = append(a.pool, full)
		a.pooled += int64(len(full))
		a.mu.Unlock()
		return
	}
	a.mu.Unlock()
	a.mem.Free(full)
}

// drain frees the pooled buffers; later frees go straight to mem.
func (a *limitAllocator) drain() {
	a.mu.Lock()
	pool := a.pool
	a.pool, a.pooled, a.drained = nil, 0, true
	a.mu.Unlock()
	for _, b := range pool {
		a.mem.Free(b)
	}
}
