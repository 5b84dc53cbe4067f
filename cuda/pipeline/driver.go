package pipeline

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
)

// DevicePtr is a device address (CUdeviceptr).
type DevicePtr uint64

// Stream and Event are the driver's handles for a stream and an event.
type (
	Stream int
	Event  int
)

// Pinned is page-locked host memory, which the device's copy engines read and write directly.
type Pinned struct {
	Ptr unsafe.Pointer
	N   int64 // bytes
}

// Bytes is the first n bytes of h.
func (h Pinned) Bytes(n int64) []byte {
	if n < 0 || n > h.N {
		panic(fmt.Sprintf("pipeline: %d bytes of a %d-byte pinned buffer", n, h.N))
	}
	return unsafe.Slice((*byte)(h.Ptr), n)
}

// Launch is one launch of the kernel for Dtype over Rows rows of V logits at Logits: the row
// inputs (kernels.RowIn) at RowIn, the outputs at Out (kernels.OutColumns columns of Rows
// float32, then Rows int32 statuses).
type Launch struct {
	Dtype   polarity.Dtype
	Logits  DevicePtr
	V, Rows int64
	RowIn   DevicePtr
	Params  polarity.Params
	Out     DevicePtr
}

// Args are the kernel's parameters for l as the 8-byte words a launch passes, in polarity.cu's
// order (kernels.ParamTypes): logits, V, rows, row inputs, τ, learning rate, clip low, clip
// high, natural gradient (0 or 1), outputs, statuses (the outputs' address plus
// StatusOffset(rows)).
func (l Launch) Args() [len(kernels.ParamTypes)]uint64 {
	natural := uint64(0)
	if l.Params.NaturalGradient {
		natural = 1
	}
	return [...]uint64{
		uint64(l.Logits), uint64(l.V), uint64(l.Rows), uint64(l.RowIn),
		math.Float64bits(l.Params.Temperature), math.Float64bits(l.Params.LR),
		math.Float64bits(l.Params.ClipLow), math.Float64bits(l.Params.ClipHigh),
		natural, uint64(l.Out), uint64(l.Out) + uint64(StatusOffset(l.Rows)),
	}
}

// Driver is what the pipeline needs of a device: memory, asynchronous copies and launches on
// streams, and events. Every method is called from one goroutine (the CUDA engine's context
// thread). The semantics are CUDA's: operations on one stream run in order; Record marks the
// point reached by the stream's work queued so far; Wait makes a stream's later work wait for
// the event's most recent Record; SyncEvent and SyncStream block the caller until that work is
// done, and return an asynchronous failure of it.
type Driver interface {
	NewStream() (Stream, error)
	DestroyStream(Stream) error
	NewEvent() (Event, error)
	DestroyEvent(Event) error

	MemAlloc(n int64) (DevicePtr, error)
	MemFree(DevicePtr) error
	HostAlloc(n int64) (Pinned, error)
	HostFree(Pinned) error

	CopyHtoD(dst DevicePtr, src unsafe.Pointer, n int64, s Stream) error
	CopyDtoH(dst unsafe.Pointer, src DevicePtr, n int64, s Stream) error
	Launch(l Launch, s Stream) error

	Record(e Event, s Stream) error
	Wait(s Stream, e Event) error
	SyncEvent(Event) error
	SyncStream(Stream) error

	// Sticky reports whether err (returned by a method above) leaves the device context
	// unusable, so that every later call would fail too.
	Sticky(err error) bool
}
