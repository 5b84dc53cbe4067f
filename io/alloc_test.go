package papoio

import (
	"bytes"
	"errors"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/entropy-polarity/papo/polarity"
)

func TestLimitAllocator(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	a := newLimitAllocator(mem, 8<<20, nil)

	// A freed large buffer is lent again, cleared, and accounted for once.
	b := a.Allocate(2 << 20)
	b[0], b[len(b)-1] = 7, 7
	p := unsafe.SliceData(b)
	a.Free(b)
	c := a.Allocate(3 << 19) // 1.5 MiB fits the pooled 2 MiB
	if unsafe.SliceData(c) != p {
		t.Fatal("the pooled buffer was not reused")
	}
	if len(c) != 3<<19 || c[0] != 0 {
		t.Fatalf("reused buffer: len %d, first byte %d; want %d, 0", len(c), c[0], 3<<19)
	}
	// Growing a lent buffer moves it; the old one goes back to the pool.
	c[1] = 9
	d := a.Reallocate(4<<20, c)
	if d[1] != 9 || len(d) != 4<<20 {
		t.Fatalf("Reallocate lost the contents or the length: %d, %d", d[1], len(d))
	}
	a.Free(d)
	// Small buffers go straight through.
	s := a.Allocate(100)
	s = a.Reallocate(200, s)
	a.Free(s)
	if got := mem.CurrentAlloc(); got != 6<<20 {
		t.Fatalf("%d bytes allocated below; want the two pooled buffers, %d", got, 6<<20)
	}
	a.drain()
	if got := mem.CurrentAlloc(); got != 0 {
		t.Fatalf("%d bytes still allocated after drain", got)
	}
	// After drain, frees are not pooled.
	e := a.Allocate(2 << 20)
	a.Free(e)
	if mem.CurrentAlloc() != 0 {
		t.Fatal("a free after drain was pooled")
	}

	// Over the limit: a panic carrying *errBufferLimit (Reader turns it into an error).
	func() {
		defer func() {
			err, _ := recover().(error)
			var lim *errBufferLimit
			if !errors.As(err, &lim) || lim.size != 9<<20 {
				t.Fatalf("recovered %v; want an *errBufferLimit for %d bytes", err, 9<<20)
			}
		}()
		a.Allocate(9 << 20)
	}()
}

// largeAllocs counts the allocations of 1 MiB and more that reach the allocator below.
type largeAllocs struct {
	memory.Allocator
	n int
}

func (l *largeAllocs) Allocate(size int) []byte {
	if size >= poolMinSize {
		l.n++
	}
	return l.Allocator.Allocate(size)
}

func (l *largeAllocs) Reallocate(size int, b []byte) []byte {
	if size >= poolMinSize {
		l.n++
	}
	return l.Allocator.Reallocate(size, b)
}

// TestBufferPoolShared: Readers given one BufferPool (a server's requests, one after another)
// take the message bodies of the Readers before them: the second Reader of the same stream
// allocates no large buffer, where a Reader with its own pool grows its first body anew; the
// pool keeps no more than its cap, and Release gives everything back.
func TestBufferPoolShared(t *testing.T) {
	checked := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer checked.AssertSize(t, 0)
	mem := &largeAllocs{Allocator: checked}
	const v, rows = 1024, 512 // 2 MiB of logits a batch
	cols := testColumns(polarity.Float32, v, rows, 0)
	schema := InputSchema(v, polarity.Float32, cols, nil)
	var recs []arrow.Record
	for range 3 {
		rec, err := BuildInput(memory.NewGoAllocator(), schema, &cols)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	stream := encodeIPC(t, true, schema, recs...)
	releaseRecords(recs)

	read := func(opts ...Option) int {
		t.Helper()
		before := mem.n
		r, err := NewReader(bytes.NewReader(stream), "pooled", mem, opts...)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for r.Next() {
			n += r.Batch().Input.Rows()
		}
		if err := errors.Join(r.Err(), r.Close()); err != nil || n != 3*rows {
			t.Fatalf("read %d rows, %v; want %d", n, err, 3*rows)
		}
		return mem.n - before
	}
	if got := read(); got == 0 {
		t.Fatal("a Reader with its own pool allocated no large buffer: the test measures nothing")
	}
	pool := NewBufferPool(mem, 64<<20)
	first := read(WithBufferPool(pool))
	if pool.Bytes() == 0 {
		t.Fatal("the shared pool holds nothing after its first Reader closed")
	}
	if got := read(WithBufferPool(pool)); got != 0 {
		t.Errorf("the second Reader of a shared pool made %d large allocations (the first %d); want 0", got, first)
	}
	pool.Release()
	if got := checked.CurrentAlloc(); got != 0 {
		t.Errorf("%d bytes still allocated after Release", got)
	}

	small := NewBufferPool(mem, 1<<20) // under one body: keeps nothing
	read(WithBufferPool(small))
	if got := small.Bytes(); got != 0 {
		t.Errorf("a pool capped at 1 MiB holds %d bytes", got)
	}
	small.Release()
}
