//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
)

// DefaultChunkBytes is the default bound on one chunk's logits: 256 MiB is ~880 Qwen rows in
// bfloat16, enough rows to fill an H100 (132 SMs × 4 resident blocks of 256 threads) in one
// launch, while the two slots' device and pinned buffers stay at 1 GiB in all.
const DefaultChunkBytes = 256 << 20

// maxChunkRows bounds the rows of one launch (the row-input and output buffers scale with it).
const maxChunkRows = 1 << 16

// outRowBytes is what the kernel writes per row: OutColumns float32 and one int32 status.
const outRowBytes = 4*kernels.OutColumns + 4

// Options configure New.
type Options struct {
	Device int // CUDA device ordinal
	// ChunkBytes bounds the logits of one chunk (one launch; each of the two slots holds one
	// chunk on the device and one in pinned host memory); 0 means DefaultChunkBytes. A chunk
	// holds at least one row.
	ChunkBytes int64
	// CopyThreads is the number of goroutines copying a chunk into pinned memory; 0 means
	// GOMAXPROCS.
	CopyThreads int
}

// Engine is the CUDA engine. Its methods may be called from any goroutine; calls run one at a
// time on the engine's context thread.
type Engine struct {
	opts  Options
	dev   cu.Device
	label string // "cuda:0"
	name  string // "cuda:0 NVIDIA H100 80GB HBM3"

	mu     sync.Mutex // held by each call into the context thread, and by Close
	jobs   chan func()
	exited chan struct{}
	closed bool
	relErr error // release's error, read by Close after exited

	// Owned by the context thread.
	ctx                       cu.CUContext
	mod                       cu.Module
	loaded                    bool
	fns                       [3]cu.Function // by polarity.Dtype
	copyStream, computeStream cu.Stream
	slots                     [2]slot
	broken                    error // the sticky failure after which the device is not used
}

// slot is one chunk's worth of buffers. Chunk j uses slot j%2, so chunk j+1's copies go to the
// other slot while chunk j computes.
type slot struct {
	dLogits, dRowIn, dOut cu.DevicePtr
	logitsCap, rowsCap    int64 // bytes of dLogits/hLogits, rows of the row buffers
	hLogits, hRowIn, hOut pinned
	copied                cu.Event // the chunk's logits and row inputs are on the device
	computed              cu.Event // the kernel is done with the chunk's device buffers
	finished              cu.Event // the chunk's outputs are in hOut
	events                bool
}

// New creates the engine on device opts.Device: a context on a dedicated locked OS thread,
// the kernels' module JIT-compiled for the device, two streams.
func New(opts Options) (*Engine, error) {
	if opts.ChunkBytes <= 0 {
		opts.ChunkBytes = DefaultChunkBytes
	}
	if opts.CopyThreads <= 0 {
		opts.CopyThreads = runtime.GOMAXPROCS(0)
	}
	n, err := cu.NumDevices()
	if err != nil {
		return nil, fmt.Errorf("cuda: cuDeviceGetCount: %w", asDriverError(err))
	}
	if opts.Device < 0 || opts.Device >= n {
		return nil, fmt.Errorf("cuda: device %d does not exist (%d device(s): 0 to %d)", opts.Device, n, n-1)
	}
	dev := cu.Device(opts.Device)
	devName, err := dev.Name()
	if err != nil {
		return nil, fmt.Errorf("cuda: device %d: cuDeviceGetName: %w", opts.Device, asDriverError(err))
	}
	e := &Engine{
		opts:   opts,
		dev:    dev,
		label:  fmt.Sprintf("cuda:%d", opts.Device),
		jobs:   make(chan func()),
		exited: make(chan struct{}),
	}
	e.name = e.label + " " + devName
	started := make(chan error)
	go e.loop(started)
	if err := <-started; err != nil {
		<-e.exited
		return nil, err
	}
	return e, nil
}

// loop is the context thread: it creates the context, serves jobs until Close, and releases
// everything. The goroutine stays locked to its thread, which exits with it.
func (e *Engine) loop(started chan<- error) {
	runtime.LockOSThread()
	defer close(e.exited)
	if err := e.init(); err != nil {
		e.release()
		started <- err
		return
	}
	started <- nil
	for job := range e.jobs {
		job()
	}
	e.relErr = e.release()
}

func (e *Engine) init() error {
	// Blocking sync: waits for the GPU sleep instead of spinning, so the host copy goroutines
	// keep every core.
	ctx, err := e.dev.MakeContext(cu.SchedBlockingSync)
	if err != nil {
		return fmt.Errorf("cuda: %s: cuCtxCreate: %w", e.name, asDriverError(err))
	}
	e.ctx = ctx
	mod, err := cu.LoadData(kernels.PTX)
	if err != nil {
		return fmt.Errorf("cuda: %s: cuModuleLoadData (JIT-compiling the kernels' PTX, ISA 7.8 for sm_80+, for this device and driver): %w", e.name, asDriverError(err))
	}
	e.mod, e.loaded = mod, true
	for dt, name := range kernels.Kernels {
		if e.fns[dt], err = mod.Function(name); err != nil {
			return fmt.Errorf("cuda: %s: cuModuleGetFunction(%s): %w", e.name, name, asDriverError(err))
		}
	}
	if e.copyStream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		return fmt.Errorf("cuda: %s: cuStreamCreate: %w", e.name, asDriverError(err))
	}
	if e.computeStream, err = cu.MakeStream(cu.NonBlocking); err != nil {
		return fmt.Errorf("cuda: %s: cuStreamCreate: %w", e.name, asDriverError(err))
	}
	for k := range e.slots {
		s := &e.slots[k]
		for _, ev := range []*cu.Event{&s.copied, &s.computed, &s.finished} {
			if *ev, err = cu.MakeEvent(cu.DisableTiming); err != nil {
				return fmt.Errorf("cuda: %s: cuEventCreate: %w", e.name, asDriverError(err))
			}
		}
		s.events = true
	}
	return nil
}

// release frees every buffer, event, stream, the module and the context (on the context
// thread), and returns the first error.
func (e *Engine) release() error {
	var errs []error
	keep := func(op string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", op, asDriverError(err)))
		}
	}
	if e.ctx == (cu.CUContext{}) {
		return nil
	}
	if e.broken == nil { // a broken context would fail every call below but the destroy
		for k := range e.slots {
			s := &e.slots[k]
			keep("freeing slot buffers", s.freeBuffers())
			if s.events {
				for _, ev := range []*cu.Event{&s.copied, &s.computed, &s.finished} {
					keep("cuEventDestroy", cu.DestroyEvent(ev))
				}
				s.events = false
			}
		}
		if e.copyStream != (cu.Stream{}) {
			keep("cuStreamDestroy", e.copyStream.Destroy())
		}
		if e.computeStream != (cu.Stream{}) {
			keep("cuStreamDestroy", e.computeStream.Destroy())
		}
		if e.loaded {
			keep("cuModuleUnload", e.mod.Unload())
			e.loaded = false
		}
	} else {
		for k := range e.slots { // pinned host memory is the process's: give it back regardless
			s := &e.slots[k]
			s.hLogits.free()
			s.hRowIn.free()
			s.hOut.free()
		}
	}
	keep("cuCtxDestroy", e.ctx.Destroy())
	e.ctx = cu.CUContext{}
	return errors.Join(errs...)
}

// do runs f on the context thread and returns its error.
func (e *Engine) do(f func() error) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return fmt.Errorf("cuda: %s: engine used after Close", e.label)
	}
	res := make(chan error, 1)
	e.jobs <- func() { res <- f() }
	return <-res
}

// Name is "cuda:<ordinal> <device name>".
func (e *Engine) Name() string { return e.name }

// Close releases the device buffers, pinned memory, module and context, and ends the context
// thread. Close is idempotent.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	e.closed = true
	close(e.jobs)
	<-e.exited
	if e.relErr != nil {
		return fmt.Errorf("cuda: %s: close: %w", e.label, e.relErr)
	}
	return nil
}

// fail wraps the failure of op; a sticky one also marks the engine broken, so that every later
// call fails at once with the same error.
func (e *Engine) fail(op string, err error) error {
	de := deviceError(e.label, op, err)
	if de.Sticky && e.broken == nil {
		e.broken = de
	}
	return de
}

// Compute fills out for every row of b (see polarity.Engine). Device failures are returned as
// *fallback.DeviceError (out then holds partial results); data errors as the CPU engine's
// *polarity.RowError for the lowest bad row.
func (e *Engine) Compute(ctx context.Context, b *polarity.Batch, p polarity.Params, out *polarity.Result) error {
	if n, err := polarity.Begin(ctx, b, p, out); err != nil || n == 0 {
		return err
	}
	return e.do(func() error { return e.compute(ctx, b, p, out) })
}

// chunk is one launch's rows [lo, lo+rows) in slot k.
type chunk struct{ lo, rows, k int }

// compute is Compute on the context thread: the chunk pipeline.
//
//	host:    stage j   | enqueue j | finish j−1 | stage j+1 | enqueue j+1 | finish j | …
//	copy:               HtoD j ─────────────────────────────── HtoD j+1 ───────
//	compute:                  kernel j, DtoH j ─────────────────────  kernel j+1 …
//
// Staging chunk j+1 (parallel memcpy into pinned memory) overlaps chunk j's HtoD copy and
// kernel; a slot is staged again only after its previous chunk has been finished (its results
// read back), so no buffer is overwritten while in use.
func (e *Engine) compute(ctx context.Context, b *polarity.Batch, p polarity.Params, out *polarity.Result) error {
	if e.broken != nil {
		return e.broken
	}
	dt := b.Logits.Dtype
	n := b.Rows()
	rowBytes := int64(b.Logits.V) * int64(dt.Size())
	chunkRows := min(int64(n), max(1, min(e.opts.ChunkBytes/rowBytes, maxChunkRows)))
	src := logitsBytes(&b.Logits)

	var dataErr error
	finish := func(c chunk) error {
		s := &e.slots[c.k]
		if err := s.finished.Synchronize(); err != nil {
			return e.fail(fmt.Sprintf("cuEventSynchronize (rows %d–%d: kernel and result copy)", c.lo, c.lo+c.rows-1), err)
		}
		cols := unsafe.Slice((*float32)(s.hOut.ptr), kernels.OutColumns*c.rows)
		status := unsafe.Slice((*int32)(unsafe.Add(s.hOut.ptr, 4*kernels.OutColumns*c.rows)), c.rows)
		if err := kernels.Unpack(b, p, c.lo, cols, status, out); err != nil && dataErr == nil {
			dataErr = err
		}
		return nil
	}

	var pending []chunk
	for lo, j := 0, 0; lo < n && dataErr == nil; j++ {
		if err := ctx.Err(); err != nil {
			e.drain()
			return err
		}
		c := chunk{lo: lo, rows: int(min(chunkRows, int64(n-lo))), k: j % 2}
		s := &e.slots[c.k]
		if j < 2 { // a one-chunk batch needs (and allocates) one slot only
			if err := e.reserve(c.k, chunkRows*rowBytes, chunkRows); err != nil {
				e.drain()
				return err
			}
		}
		nb := int64(c.rows) * rowBytes
		parallelCopy(s.hLogits.bytes(nb), src[int64(lo)*rowBytes:int64(lo)*rowBytes+nb], e.opts.CopyThreads)
		kernels.PackRows(b, lo, unsafe.Slice((*kernels.RowIn)(s.hRowIn.ptr), c.rows))
		if err := e.enqueue(s, c, dt, b.Logits.V, p); err != nil {
			e.drain()
			return err
		}
		pending = append(pending, c)
		if len(pending) == 2 {
			if err := finish(pending[0]); err != nil {
				e.drain()
				return err
			}
			pending = pending[1:]
		}
		lo += c.rows
	}
	for _, c := range pending {
		if err := finish(c); err != nil {
			e.drain()
			return err
		}
	}
	return dataErr
}

// drain waits, after a failure, for the work already queued, so that no buffer is reused or
// freed while a copy or kernel still uses it. Its own errors add nothing to the first one.
func (e *Engine) drain() {
	_ = e.copyStream.Synchronize()
	_ = e.computeStream.Synchronize()
}

// enqueue queues chunk c of slot s: its copies on the copy stream, its kernel and result copy
// on the compute stream, ordered by the slot's events.
func (e *Engine) enqueue(s *slot, c chunk, dt polarity.Dtype, V int, p polarity.Params) error {
	rows := int64(c.rows)
	logitsN := rows * int64(V) * int64(dt.Size())
	what := fmt.Sprintf(" (rows %d–%d)", c.lo, c.lo+c.rows-1)
	if err := e.copyStream.Wait(s.computed, 0); err != nil {
		return e.fail("cuStreamWaitEvent"+what, err)
	}
	if err := cu.MemcpyHtoDAsync(s.dLogits, s.hLogits.ptr, logitsN, e.copyStream); err != nil {
		return e.fail(fmt.Sprintf("cuMemcpyHtoDAsync(%d B of logits)%s", logitsN, what), err)
	}
	if err := cu.MemcpyHtoDAsync(s.dRowIn, s.hRowIn.ptr, rows*kernels.RowInBytes, e.copyStream); err != nil {
		return e.fail("cuMemcpyHtoDAsync(row inputs)"+what, err)
	}
	if err := s.copied.Record(e.copyStream); err != nil {
		return e.fail("cuEventRecord"+what, err)
	}
	if err := e.computeStream.Wait(s.copied, 0); err != nil {
		return e.fail("cuStreamWaitEvent"+what, err)
	}
	if err := e.launch(dt, s.dLogits, int64(V), rows, s.dRowIn, p, s.dOut, e.computeStream); err != nil {
		return e.fail(fmt.Sprintf("cuLaunchKernel(%s, %d blocks)%s", kernels.Kernels[dt], rows, what), err)
	}
	if err := s.computed.Record(e.computeStream); err != nil {
		return e.fail("cuEventRecord"+what, err)
	}
	if err := cu.MemcpyDtoHAsync(s.hOut.ptr, s.dOut, rows*outRowBytes, e.computeStream); err != nil {
		return e.fail("cuMemcpyDtoHAsync(results)"+what, err)
	}
	if err := s.finished.Record(e.computeStream); err != nil {
		return e.fail("cuEventRecord"+what, err)
	}
	return nil
}

// launch queues the kernel for dtype dt over rows rows of V logits at logits. out receives the
// OutColumns output columns of rows floats, then rows int32 statuses. gorgonia.org/cu copies
// every parameter as 8 bytes: each is a pointer, an int64 or a float64.
func (e *Engine) launch(dt polarity.Dtype, logits cu.DevicePtr, V, rows int64, rowIn cu.DevicePtr, p polarity.Params, out cu.DevicePtr, stream cu.Stream) error {
	tau, lr, clipLow, clipHigh := p.Temperature, p.LR, p.ClipLow, p.ClipHigh
	natural := int64(0)
	if p.NaturalGradient {
		natural = 1
	}
	status := out + cu.DevicePtr(4*kernels.OutColumns*rows)
	args := []unsafe.Pointer{
		unsafe.Pointer(&logits), unsafe.Pointer(&V), unsafe.Pointer(&rows), unsafe.Pointer(&rowIn),
		unsafe.Pointer(&tau), unsafe.Pointer(&lr), unsafe.Pointer(&clipLow), unsafe.Pointer(&clipHigh),
		unsafe.Pointer(&natural), unsafe.Pointer(&out), unsafe.Pointer(&status),
	}
	return e.fns[dt].Launch(int(rows), 1, 1, kernels.BlockThreads, 1, 1, 0, stream, args)
}

// reserve makes slot k hold at least logitsBytes of logits and rows rows, reallocating only
// what is too small. On failure (out of memory above all) both slots are emptied, so that a
// later, smaller batch can start afresh.
func (e *Engine) reserve(k int, logitsBytes, rows int64) error {
	if err := e.slots[k].reserve(logitsBytes, rows); err != nil {
		e.drain() // the other slot may hold a chunk in flight
		for j := range e.slots {
			_ = e.slots[j].freeBuffers()
		}
		return e.fail(err.Error(), errors.Unwrap(err))
	}
	return nil
}

// opError is an allocation failure: the message names the call, Unwrap gives the driver error.
type opError struct {
	op  string
	err error
}

func (o *opError) Error() string { return o.op }
func (o *opError) Unwrap() error { return o.err }

func (s *slot) reserve(logitsBytes, rows int64) error {
	if s.logitsCap < logitsBytes {
		if err := s.freeLogits(); err != nil {
			return &opError{"freeing the logits buffers", err}
		}
		d, err := cu.MemAlloc(logitsBytes)
		if err != nil {
			return &opError{fmt.Sprintf("cuMemAlloc(%d B of logits)", logitsBytes), err}
		}
		s.dLogits = d
		if s.hLogits, err = allocPinned(logitsBytes); err != nil {
			return &opError{fmt.Sprintf("cuMemHostAlloc(%d B of pinned logits)", logitsBytes), err}
		}
		s.logitsCap = logitsBytes
	}
	if s.rowsCap < rows {
		if err := s.freeRows(); err != nil {
			return &opError{"freeing the row buffers", err}
		}
		var err error
		if s.dRowIn, err = cu.MemAlloc(rows * kernels.RowInBytes); err != nil {
			return &opError{fmt.Sprintf("cuMemAlloc(%d B of row inputs)", rows*kernels.RowInBytes), err}
		}
		if s.dOut, err = cu.MemAlloc(rows * outRowBytes); err != nil {
			return &opError{fmt.Sprintf("cuMemAlloc(%d B of results)", rows*outRowBytes), err}
		}
		if s.hRowIn, err = allocPinned(rows * kernels.RowInBytes); err != nil {
			return &opError{fmt.Sprintf("cuMemHostAlloc(%d B of row inputs)", rows*kernels.RowInBytes), err}
		}
		if s.hOut, err = allocPinned(rows * outRowBytes); err != nil {
			return &opError{fmt.Sprintf("cuMemHostAlloc(%d B of results)", rows*outRowBytes), err}
		}
		s.rowsCap = rows
	}
	return nil
}

func (s *slot) freeLogits() error {
	var errs []error
	if s.dLogits != 0 {
		errs = append(errs, cu.MemFree(s.dLogits))
		s.dLogits = 0
	}
	errs = append(errs, s.hLogits.free())
	s.logitsCap = 0
	return errors.Join(errs...)
}

func (s *slot) freeRows() error {
	var errs []error
	for _, d := range []*cu.DevicePtr{&s.dRowIn, &s.dOut} {
		if *d != 0 {
			errs = append(errs, cu.MemFree(*d))
			*d = 0
		}
	}
	errs = append(errs, s.hRowIn.free(), s.hOut.free())
	s.rowsCap = 0
	return errors.Join(errs...)
}

func (s *slot) freeBuffers() error { return errors.Join(s.freeLogits(), s.freeRows()) }

// logitsBytes is the raw bytes of l (float32, or 16-bit patterns).
func logitsBytes(l *polarity.Logits) []byte {
	if l.Dtype == polarity.Float32 {
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(l.F32))), 4*len(l.F32))
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(l.Bits))), 2*len(l.Bits))
}

// copyPiece is the smallest share of a parallel copy: below it, goroutine start-up costs more
// than the copy.
const copyPiece = 4 << 20

// parallelCopy copies src into dst (same length) with up to threads goroutines: one core's
// memcpy (~8 GB/s) is slower than PCIe, several keep up with it.
func parallelCopy(dst, src []byte, threads int) {
	n := len(src)
	parts := min(threads, (n+copyPiece-1)/copyPiece)
	if parts <= 1 {
		copy(dst, src)
		return
	}
	var wg sync.WaitGroup
	per := (n + parts - 1) / parts
	for lo := 0; lo < n; lo += per {
		hi := min(n, lo+per)
		wg.Go(func() { copy(dst[lo:hi], src[lo:hi]) })
	}
	wg.Wait()
}
