package papoio

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

func TestLimitAllocator(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	a := &limitAllocator{mem: mem, limit: 8 << 20}

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
