package papoio

import (
	"errors"
	"fmt"
	"math"
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
// keeps a few large freed buffers for reuse (pool).
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
	pool  *BufferPool // the Reader's own, or WithBufferPool's, shared with later Readers
	own   bool        // pool is the Reader's own: drain frees it
}

// newLimitAllocator is a Reader's allocator: its own pool, or shared when the pool is given.
func newLimitAllocator(mem memory.Allocator, limit int64, shared *BufferPool) *limitAllocator {
	if shared != nil {
		return &limitAllocator{mem: shared.mem, limit: limit, pool: shared}
	}
	return &limitAllocator{mem: mem, limit: limit, pool: &BufferPool{mem: mem, max: math.MaxInt64}, own: true}
}

// BufferPool keeps the large buffers (1 MiB and more: message bodies, columns' values) that the
// Readers given it (WithBufferPool) free, for the Readers that come after: a server reading one
// request after another on a connection gets each request's message bodies from the last
// request's, instead of growing fresh ones from 1 MiB (copies, clearing and page faults: about
// 10 ms, 3 % of papo serve's CPU, on a 4M-token request in batches of 131,072 rows, 2026-12-07).
// It holds at most twice the largest allocation seen, and never more than its cap; a Reader's
// own pool (without WithBufferPool) lives as long as the Reader.
type BufferPool struct {
	mem memory.Allocator
	max int64 // cap on the bytes held

	mu       sync.Mutex
	bufs     [][]byte         // freed large buffers, each with the length it was allocated with
	pooled   int64            // bytes in bufs
	largest  int64            // largest allocation seen: the pool holds at most twice that
	lent     map[*byte][]byte // buffers handed out from the pool → the buffer as allocated
	released bool             // after Release: frees go straight to mem
}

// NewBufferPool is a pool of buffers allocated from mem (nil: memory.DefaultAllocator) holding
// at most maxBytes between uses. Readers that share it must be given the same mem, or none.
func NewBufferPool(mem memory.Allocator, maxBytes int64) *BufferPool {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	return &BufferPool{mem: mem, max: maxBytes}
}

// Release frees the buffers held; buffers freed later go straight to the allocator.
func (p *BufferPool) Release() {
	p.mu.Lock()
	bufs := p.bufs
	p.bufs, p.pooled, p.released = nil, 0, true
	p.mu.Unlock()
	for _, b := range bufs {
		p.mem.Free(b)
	}
}

// Bytes is what the pool holds now.
func (p *BufferPool) Bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pooled
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
	p := a.pool
	p.mu.Lock()
	p.largest = max(p.largest, int64(size))
	b := p.lend(size)
	p.mu.Unlock()
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
	p := a.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lend(size)
}

// lend takes the smallest pooled buffer of at least size bytes out of the pool and returns its
// first size bytes, as they are; nil when none is that large. p.mu is held.
func (p *BufferPool) lend(size int) []byte {
	best := -1
	for i, b := range p.bufs {
		if len(b) >= size && (best < 0 || len(b) < len(p.bufs[best])) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	b := p.bufs[best]
	p.bufs = append(p.bufs[:best], p.bufs[best+1:]...)
	p.pooled -= int64(len(b))
	if p.lent == nil {
		p.lent = make(map[*byte][]byte)
	}
	p.lent[unsafe.SliceData(b)] = b
	return b[:size:size]
}

func (a *limitAllocator) Reallocate(size int, b []byte) []byte {
	a.check(size)
	p := a.pool
	p.mu.Lock()
	_, lent := p.lent[unsafe.SliceData(b)]
	p.largest = max(p.largest, int64(size)) // a grown body is pooled when freed
	p.mu.Unlock()
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
	p := a.pool
	p.mu.Lock()
	full := b
	if orig, ok := p.lent[unsafe.SliceData(b)]; ok {
		delete(p.lent, unsafe.SliceData(b))
		full = orig
	}
	if n := int64(len(full)); n >= poolMinSize && !p.released && p.pooled+n <= min(2*p.largest, p.max) {
		p.bufs = append(p.bufs, full)
		p.pooled += n
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	a.mem.Free(full)
}

// drain frees the Reader's own pool (a shared pool outlives the Reader); later frees go
// straight to mem.
func (a *limitAllocator) drain() {
	if a.own {
		a.pool.Release()
	}
}
