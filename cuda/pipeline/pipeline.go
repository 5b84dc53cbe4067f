package pipeline

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"github.com/entropy-polarity/papo/cuda/fallback"
	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
)

// DefaultChunkBytes is the default bound on one chunk's logits: 256 MiB is ~880 Qwen rows in
// bfloat16, enough rows to fill an H100 (132 SMs × 4 resident blocks of 256 threads) in one
// launch, while the two slots' device and pinned buffers stay at 1 GiB in all.
const DefaultChunkBytes = 256 << 20

// DefaultMaxChunkRows bounds the rows of one launch (the row-input and output buffers scale
// with it).
const DefaultMaxChunkRows = 1 << 16

// OutRowBytes is what the kernel writes per row: kernels.OutColumns float32 and one int32
// status.
const OutRowBytes = 4*kernels.OutColumns + 4

// StatusOffset is the byte offset of the statuses in the outputs of a launch over rows rows.
func StatusOffset(rows int64) int64 { return 4 * kernels.OutColumns * rows }

// Options configure New.
type Options struct {
	// ChunkBytes bounds the logits of one chunk (one launch; each of the two slots holds one
	// chunk on the device and one in pinned host memory); 0 means DefaultChunkBytes. A chunk
	// holds at least one row.
	ChunkBytes int64
	// MaxChunkRows bounds the rows of one chunk; 0 means DefaultMaxChunkRows.
	MaxChunkRows int
	// CopyThreads is the number of goroutines copying a chunk into pinned memory; 0 means
	// GOMAXPROCS.
	CopyThreads int
}

// Pipeline computes batches on a device through a Driver. It implements polarity.Engine, but
// its methods must be called one at a time, from the goroutine that may call the driver.
type Pipeline struct {
	drv   Driver
	label string
	opts  Options

	copyStream, computeStream Stream
	streams                   int // streams created (0, 1 or 2)
	slots                     [2]slot
	broken                    error // the sticky failure after which the device is not used
	closed                    bool
}

// slot is one chunk's worth of buffers. Chunk j uses slot j%2, so chunk j+1's copies go to the
// other slot while chunk j computes.
type slot struct {
	dLogits, dRowIn, dOut DevicePtr
	logitsCap, rowsCap    int64 // bytes of dLogits/hLogits, rows of the row buffers
	hLogits, hRowIn, hOut Pinned
	copied                Event // the chunk's logits and row inputs are on the device
	computed              Event // the kernel is done with the chunk's device buffers
	finished              Event // the chunk's outputs are in hOut
	events                int   // events created (0 to 3)
}

func (s *slot) eventPtrs() []*Event { return []*Event{&s.copied, &s.computed, &s.finished} }

// New creates the pipeline's two streams and its events on drv. label names the device in
// errors ("cuda:0"). On failure everything created is released.
func New(drv Driver, label string, opts Options) (*Pipeline, error) {
	if opts.ChunkBytes <= 0 {
		opts.ChunkBytes = DefaultChunkBytes
	}
	if opts.MaxChunkRows <= 0 {
		opts.MaxChunkRows = DefaultMaxChunkRows
	}
	if opts.CopyThreads <= 0 {
		opts.CopyThreads = runtime.GOMAXPROCS(0)
	}
	p := &Pipeline{drv: drv, label: label, opts: opts}
	if err := p.init(); err != nil {
		return nil, errors.Join(err, p.Close())
	}
	return p, nil
}

func (p *Pipeline) init() error {
	for _, s := range []*Stream{&p.copyStream, &p.computeStream} {
		var err error
		if *s, err = p.drv.NewStream(); err != nil {
			return p.fail("cuStreamCreate", err)
		}
		p.streams++
	}
	for k := range p.slots {
		s := &p.slots[k]
		for _, ev := range s.eventPtrs() {
			var err error
			if *ev, err = p.drv.NewEvent(); err != nil {
				return p.fail("cuEventCreate", err)
			}
			s.events++
		}
	}
	return nil
}

// Name is the device label given to New.
func (p *Pipeline) Name() string { return p.label }

// Broken is the sticky failure after which the pipeline refuses work, or nil.
func (p *Pipeline) Broken() error { return p.broken }

// ComputeStream is the stream the kernels run on.
func (p *Pipeline) ComputeStream() Stream { return p.computeStream }

// Fail wraps the failure of the driver call op as a *fallback.DeviceError; a sticky one also
// marks the pipeline broken, so that every later call fails at once with the same error.
func (p *Pipeline) Fail(op string, err error) error { return p.fail(op, err) }

func (p *Pipeline) fail(op string, err error) *fallback.DeviceError {
	de := &fallback.DeviceError{Device: p.label, Op: op, Err: err, Sticky: p.drv.Sticky(err)}
	if de.Sticky && p.broken == nil {
		p.broken = de
	}
	return de
}

// Close frees every buffer, event and stream and returns the first error; it is idempotent.
// After a sticky failure the driver would fail every call: Close then only tries to give the
// pinned host memory back, ignoring errors, and leaves the rest to the destruction of the
// context, which releases everything it holds.
func (p *Pipeline) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	if p.broken != nil {
		for k := range p.slots {
			s := &p.slots[k]
			for _, h := range []*Pinned{&s.hLogits, &s.hRowIn, &s.hOut} {
				_ = p.freeHost(h)
			}
		}
		return nil
	}
	var errs []error
	keep := func(op string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", op, err))
		}
	}
	for k := range p.slots {
		s := &p.slots[k]
		keep("freeing slot buffers", p.freeBuffers(s))
		for _, ev := range s.eventPtrs()[:s.events] {
			keep("cuEventDestroy", p.drv.DestroyEvent(*ev))
		}
		s.events = 0
	}
	for _, st := range []Stream{p.copyStream, p.computeStream}[:p.streams] {
		keep("cuStreamDestroy", p.drv.DestroyStream(st))
	}
	p.streams = 0
	return errors.Join(errs...)
}

// chunk is one launch's rows [lo, lo+rows) in slot k.
type chunk struct{ lo, rows, k int }

func (c chunk) String() string { return fmt.Sprintf("rows %d–%d", c.lo, c.lo+c.rows-1) }

// Compute fills out for every row of b (see polarity.Engine). Device failures are returned as
// *fallback.DeviceError (out then holds partial results); data errors as the CPU engine's
// *polarity.RowError for the lowest bad row.
//
//	host:    stage j   | enqueue j | finish j−1 | stage j+1 | enqueue j+1 | finish j | …
//	copy:               HtoD j ─────────────────────────────── HtoD j+1 ───────
//	compute:                  kernel j, DtoH j ─────────────────────  kernel j+1 …
//
// Staging chunk j+1 (parallel memcpy into pinned memory) overlaps chunk j's HtoD copy and
// kernel; a slot is staged again only after its previous chunk has been finished (its results
// read back), so no pinned or device buffer is overwritten while in use. (The copy stream
// also waits for the kernel that last read the slot before overwriting its device buffers,
// which the host's wait already implies: it keeps the streams' order self-contained.)
func (p *Pipeline) Compute(ctx context.Context, b *polarity.Batch, params polarity.Params, out *polarity.Result) error {
	n, err := polarity.Begin(ctx, b, params, out)
	if err != nil || n == 0 {
		return err
	}
	if p.broken != nil {
		return p.broken
	}
	if p.closed {
		return fmt.Errorf("%s: pipeline used after Close", p.label)
	}
	if err := p.compute(ctx, b, params, out); err != nil {
		var de *fallback.DeviceError
		if errors.As(err, &de) || ctx.Err() != nil {
			p.drain() // no buffer is reused or freed while a copy or kernel still uses it
		}
		return err
	}
	return nil
}

func (p *Pipeline) compute(ctx context.Context, b *polarity.Batch, params polarity.Params, out *polarity.Result) error {
	dt := b.Logits.Dtype
	n := b.Rows()
	rowBytes := int64(b.Logits.V) * int64(dt.Size())
	chunkRows := min(int64(n), max(1, min(p.opts.ChunkBytes/rowBytes, int64(p.opts.MaxChunkRows))))
	src := LogitsBytes(&b.Logits)

	var dataErr error
	finish := func(c chunk) error {
		s := &p.slots[c.k]
		if err := p.drv.SyncEvent(s.finished); err != nil {
			return p.fail(fmt.Sprintf("cuEventSynchronize (%v: kernel and result copy)", c), err)
		}
		cols := unsafe.Slice((*float32)(s.hOut.Ptr), kernels.OutColumns*c.rows)
		status := unsafe.Slice((*int32)(unsafe.Add(s.hOut.Ptr, StatusOffset(int64(c.rows)))), c.rows)
		if err := kernels.Unpack(b, params, c.lo, cols, status, out); err != nil && dataErr == nil {
			dataErr = err
		}
		return nil
	}

	var pending []chunk
	for lo, j := 0, 0; lo < n && dataErr == nil; j++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := chunk{lo: lo, rows: int(min(chunkRows, int64(n-lo))), k: j % 2}
		s := &p.slots[c.k]
		if j < 2 { // a one-chunk batch needs (and allocates) one slot only
			if err := p.reserve(c.k, chunkRows*rowBytes, chunkRows); err != nil {
				return err
			}
		}
		nb := int64(c.rows) * rowBytes
		parallelCopy(s.hLogits.Bytes(nb), src[int64(lo)*rowBytes:int64(lo)*rowBytes+nb], p.opts.CopyThreads)
		kernels.PackRows(b, lo, unsafe.Slice((*kernels.RowIn)(s.hRowIn.Ptr), c.rows))
		if err := p.enqueue(s, c, dt, b.Logits.V, params); err != nil {
			return err
		}
		pending = append(pending, c)
		if len(pending) == 2 {
			if err := finish(pending[0]); err != nil {
				return err
			}
			pending = pending[1:]
		}
		lo += c.rows
	}
	for _, c := range pending {
		if err := finish(c); err != nil {
			return err
		}
	}
	return dataErr
}

// drain waits, after a failure, for the work already queued. Its own errors add nothing to the
// first one.
func (p *Pipeline) drain() {
	if p.streams == 2 {
		_ = p.drv.SyncStream(p.copyStream)
		_ = p.drv.SyncStream(p.computeStream)
	}
}

// enqueue queues chunk c of slot s: its copies on the copy stream, its kernel and result copy
// on the compute stream, ordered by the slot's events.
func (p *Pipeline) enqueue(s *slot, c chunk, dt polarity.Dtype, V int, params polarity.Params) error {
	rows := int64(c.rows)
	logitsN := rows * int64(V) * int64(dt.Size())
	what := fmt.Sprintf(" (%v)", c)
	if err := p.drv.Wait(p.copyStream, s.computed); err != nil {
		return p.fail("cuStreamWaitEvent"+what, err)
	}
	if err := p.drv.CopyHtoD(s.dLogits, s.hLogits.Ptr, logitsN, p.copyStream); err != nil {
		return p.fail(fmt.Sprintf("cuMemcpyHtoDAsync(%d B of logits)%s", logitsN, what), err)
	}
	if err := p.drv.CopyHtoD(s.dRowIn, s.hRowIn.Ptr, rows*kernels.RowInBytes, p.copyStream); err != nil {
		return p.fail("cuMemcpyHtoDAsync(row inputs)"+what, err)
	}
	if err := p.drv.Record(s.copied, p.copyStream); err != nil {
		return p.fail("cuEventRecord"+what, err)
	}
	if err := p.drv.Wait(p.computeStream, s.copied); err != nil {
		return p.fail("cuStreamWaitEvent"+what, err)
	}
	l := Launch{Dtype: dt, Logits: s.dLogits, V: int64(V), Rows: rows, RowIn: s.dRowIn, Params: params, Out: s.dOut}
	if err := p.drv.Launch(l, p.computeStream); err != nil {
		return p.fail(fmt.Sprintf("cuLaunchKernel(%s, %d blocks)%s", kernels.Kernels[dt], rows, what), err)
	}
	if err := p.drv.Record(s.computed, p.computeStream); err != nil {
		return p.fail("cuEventRecord"+what, err)
	}
	if err := p.drv.CopyDtoH(s.hOut.Ptr, s.dOut, rows*OutRowBytes, p.computeStream); err != nil {
		return p.fail("cuMemcpyDtoHAsync(results)"+what, err)
	}
	if err := p.drv.Record(s.finished, p.computeStream); err != nil {
		return p.fail("cuEventRecord"+what, err)
	}
	return nil
}

// reserve makes slot k hold at least logitsBytes of logits and rows rows, reallocating only
// what is too small. On failure (out of memory above all) both slots are emptied, after the
// work in flight has drained, so that a later, smaller batch can start afresh.
func (p *Pipeline) reserve(k int, logitsBytes, rows int64) error {
	op, err := p.reserveSlot(&p.slots[k], logitsBytes, rows)
	if err == nil {
		return nil
	}
	de := p.fail(op, err)
	p.drain() // the other slot may hold a chunk in flight
	if de.Sticky {
		return de
	}
	for j := range p.slots {
		_ = p.freeBuffers(&p.slots[j])
	}
	return de
}

// reserveSlot returns the failed call's description with its error.
func (p *Pipeline) reserveSlot(s *slot, logitsBytes, rows int64) (string, error) {
	if s.logitsCap < logitsBytes {
		if err := p.freeLogits(s); err != nil {
			return "freeing the logits buffers", err
		}
		d, err := p.drv.MemAlloc(logitsBytes)
		if err != nil {
			return fmt.Sprintf("cuMemAlloc(%d B of logits)", logitsBytes), err
		}
		s.dLogits = d
		if s.hLogits, err = p.drv.HostAlloc(logitsBytes); err != nil {
			return fmt.Sprintf("cuMemHostAlloc(%d B of pinned logits)", logitsBytes), err
		}
		s.logitsCap = logitsBytes
	}
	if s.rowsCap < rows {
		if err := p.freeRows(s); err != nil {
			return "freeing the row buffers", err
		}
		var err error
		if s.dRowIn, err = p.drv.MemAlloc(rows * kernels.RowInBytes); err != nil {
			return fmt.Sprintf("cuMemAlloc(%d B of row inputs)", rows*kernels.RowInBytes), err
		}
		if s.dOut, err = p.drv.MemAlloc(rows * OutRowBytes); err != nil {
			return fmt.Sprintf("cuMemAlloc(%d B of results)", rows*OutRowBytes), err
		}
		if s.hRowIn, err = p.drv.HostAlloc(rows * kernels.RowInBytes); err != nil {
			return fmt.Sprintf("cuMemHostAlloc(%d B of row inputs)", rows*kernels.RowInBytes), err
		}
		if s.hOut, err = p.drv.HostAlloc(rows * OutRowBytes); err != nil {
			return fmt.Sprintf("cuMemHostAlloc(%d B of results)", rows*OutRowBytes), err
		}
		s.rowsCap = rows
	}
	return "", nil
}

func (p *Pipeline) freeDevice(d *DevicePtr) error {
	if *d == 0 {
		return nil
	}
	err := p.drv.MemFree(*d)
	*d = 0
	return err
}

func (p *Pipeline) freeHost(h *Pinned) error {
	if h.Ptr == nil {
		return nil
	}
	err := p.drv.HostFree(*h)
	*h = Pinned{}
	return err
}

func (p *Pipeline) freeLogits(s *slot) error {
	err := errors.Join(p.freeDevice(&s.dLogits), p.freeHost(&s.hLogits))
	s.logitsCap = 0
	return err
}

func (p *Pipeline) freeRows(s *slot) error {
	err := errors.Join(p.freeDevice(&s.dRowIn), p.freeDevice(&s.dOut), p.freeHost(&s.hRowIn), p.freeHost(&s.hOut))
	s.rowsCap = 0
	return err
}

func (p *Pipeline) freeBuffers(s *slot) error { return errors.Join(p.freeLogits(s), p.freeRows(s)) }

// LogitsBytes is the raw bytes of l (float32, or 16-bit patterns).
func LogitsBytes(l *polarity.Logits) []byte {
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
