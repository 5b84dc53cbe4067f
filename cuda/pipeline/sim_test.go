package pipeline_test

// sim is a simulated CUDA device behind pipeline.Driver, strict where the real one is
// permissive, so that a pipeline bug that a GPU would show only now and then (a race between
// the host and a copy, a buffer reused too early) shows here as a test failure:
//
//   - Each stream is a goroutine running its operations in order, each after a random delay,
//     so the two streams and the host interleave differently from run to run.
//   - Events follow CUDA: Record marks the work queued so far on a stream; Wait and SyncEvent
//     wait for the event's most recent Record at the time of the call (none: no wait).
//   - Device memory is bounds-checked: a copy or launch outside an allocation is a hazard.
//   - An operation that writes a buffer while another operation uses it, or reads one while
//     another writes it, is a hazard; so is freeing memory that queued work still refers to.
//   - A host-to-device copy checks that its pinned source has not changed between the call
//     and the copy (the host staged the next chunk too early); a device-to-host copy fills its
//     destination with NaN bytes at the call, so a host that reads results before the copy has
//     finished reads NaN.
//   - Launches pass through their 8-byte parameter words (pipeline.Launch.Args), as the driver
//     passes them to the kernel, and run polarity.cu itself on the host (kernelemu.LaunchShuffled: a random grid of
//     at most 8 blocks, threads in a random order) on 256-byte-aligned memory, as the device
//     lays out its allocations.
//   - Failures: call number failCall returns failErr (a sticky error also loses the context, so
//     every later call fails); work operation number failExec fails asynchronously (the context
//     is lost and the error comes back from the next call, as CUDA reports a faulting kernel);
//     device memory beyond memLimit is CUDA_ERROR_OUT_OF_MEMORY.

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"sync"
	"time"
	"unsafe"

	"github.com/entropy-polarity/papo/cuda/kernelemu"
	"github.com/entropy-polarity/papo/cuda/pipeline"
	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
)

// simError is an error of the simulated driver.
type simError struct {
	name   string
	sticky bool
}

func (e *simError) Error() string { return e.name + " (simulated)" }

var (
	errOutOfMemory = &simError{name: "CUDA_ERROR_OUT_OF_MEMORY"}
	errInvalid     = &simError{name: "CUDA_ERROR_INVALID_VALUE"}
	errIllegal     = &simError{name: "CUDA_ERROR_ILLEGAL_ADDRESS", sticky: true}
)

type devBuf struct {
	base             pipeline.DevicePtr
	mem              []byte // 256-byte aligned
	readers, writers int    // operations running on it
	pending          int    // operations queued or running that refer to it
}

type hostBuf struct {
	mem     []byte
	pending int
}

type simStream struct {
	ops chan func()
}

type simEvent struct {
	recorded, done int // the generation of the latest Record call, and of the latest reached
}

type sim struct {
	mu     sync.Mutex
	cond   *sync.Cond // broadcast whenever an operation completes
	rng    *rand.Rand
	jitter time.Duration // the longest random delay before and within an operation

	memLimit int64 // device bytes; 0: unlimited
	memUsed  int64
	nextAddr pipeline.DevicePtr
	dev      map[pipeline.DevicePtr]*devBuf
	host     map[unsafe.Pointer]*hostBuf
	streams  []*simStream // nil once destroyed
	events   []*simEvent  // nil once destroyed
	running  sync.WaitGroup

	calls    int                    // driver calls so far
	failCall int                    // the call that fails with failErr; 0: none
	failErr  *simError              //
	onCall   func(n int, op string) // called (without the lock) at every call
	execs    int                    // work operations (copies, launches) started
	failExec int                    // the work operation that faults; 0: none
	lost     error                  // the sticky error that lost the context
	mallocs  int                    // successful MemAlloc calls

	hazards []string
}

func newSim(seed uint64, jitter time.Duration) *sim {
	d := &sim{
		rng:      rand.New(rand.NewPCG(seed, 7)),
		jitter:   jitter,
		nextAddr: 1 << 32,
		dev:      map[pipeline.DevicePtr]*devBuf{},
		host:     map[unsafe.Pointer]*hostBuf{},
	}
	d.cond = sync.NewCond(&d.mu)
	return d
}

var _ pipeline.Driver = (*sim)(nil)

// call counts one driver call and returns the error it fails with, if any.
func (d *sim) call(op string) error {
	d.mu.Lock()
	d.calls++
	n, hook := d.calls, d.onCall
	d.mu.Unlock()
	if hook != nil {
		hook(n, op)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.lost != nil {
		return d.lost
	}
	if n == d.failCall {
		if d.failErr.sticky {
			d.lost = d.failErr
		}
		return d.failErr
	}
	return nil
}

func (d *sim) hazard(format string, args ...any) {
	d.hazards = append(d.hazards, fmt.Sprintf(format, args...))
}

// fault records a hazard that the device meets as a fault: the context is lost, as by an
// illegal address.
func (d *sim) fault(format string, args ...any) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hazard(format, args...)
	if d.lost == nil {
		d.lost = errIllegal
	}
}

// Hazards returns what the pipeline did wrong so far.
func (d *sim) Hazards() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.hazards...)
}

func (d *sim) delay() {
	if d.jitter <= 0 {
		return
	}
	d.mu.Lock()
	t := time.Duration(d.rng.Int64N(int64(d.jitter)))
	d.mu.Unlock()
	time.Sleep(t)
}

func (d *sim) NewStream() (pipeline.Stream, error) {
	if err := d.call("cuStreamCreate"); err != nil {
		return 0, err
	}
	s := &simStream{ops: make(chan func(), 1024)}
	d.running.Add(1)
	go func() {
		defer d.running.Done()
		for op := range s.ops {
			op()
		}
	}()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.streams = append(d.streams, s)
	return pipeline.Stream(len(d.streams) - 1), nil
}

func (d *sim) stream(s pipeline.Stream, op string) (*simStream, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if int(s) >= len(d.streams) || d.streams[s] == nil {
		d.hazard("%s on stream %d, which does not exist", op, s)
		return nil, errInvalid
	}
	return d.streams[s], nil
}

func (d *sim) DestroyStream(s pipeline.Stream) error {
	if err := d.call("cuStreamDestroy"); err != nil {
		return err
	}
	st, err := d.stream(s, "cuStreamDestroy")
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.streams[s] = nil
	d.mu.Unlock()
	close(st.ops) // as in CUDA, work already queued still completes
	return nil
}

func (d *sim) NewEvent() (pipeline.Event, error) {
	if err := d.call("cuEventCreate"); err != nil {
		return 0, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events = append(d.events, &simEvent{})
	return pipeline.Event(len(d.events) - 1), nil
}

func (d *sim) event(e pipeline.Event, op string) (*simEvent, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if int(e) >= len(d.events) || d.events[e] == nil {
		d.hazard("%s on event %d, which does not exist", op, e)
		return nil, errInvalid
	}
	return d.events[e], nil
}

func (d *sim) DestroyEvent(e pipeline.Event) error {
	if err := d.call("cuEventDestroy"); err != nil {
		return err
	}
	if _, err := d.event(e, "cuEventDestroy"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.events[e] = nil
	return nil
}

func (d *sim) MemAlloc(n int64) (pipeline.DevicePtr, error) {
	if err := d.call("cuMemAlloc"); err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, errInvalid
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.memLimit > 0 && d.memUsed+n > d.memLimit {
		return 0, errOutOfMemory
	}
	raw := make([]byte, n+256)
	off := (256 - int(uintptr(unsafe.Pointer(&raw[0]))%256)) % 256
	b := &devBuf{base: d.nextAddr, mem: raw[off : off+int(n)]}
	for i := range b.mem { // device memory starts as garbage
		b.mem[i] = 0xa5
	}
	d.dev[b.base] = b
	d.nextAddr += pipeline.DevicePtr((n+255)/256*256 + 4096)
	d.memUsed += n
	d.mallocs++
	return b.base, nil
}

func (d *sim) MemFree(p pipeline.DevicePtr) error {
	if err := d.call("cuMemFree"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.dev[p]
	if !ok {
		d.hazard("cuMemFree of %#x, which is not an allocation", p)
		return errInvalid
	}
	if b.pending > 0 {
		d.hazard("cuMemFree of %#x with %d operation(s) still queued on it", p, b.pending)
	}
	delete(d.dev, p)
	d.memUsed -= int64(len(b.mem))
	return nil
}

func (d *sim) HostAlloc(n int64) (pipeline.Pinned, error) {
	if err := d.call("cuMemHostAlloc"); err != nil {
		return pipeline.Pinned{}, err
	}
	if n <= 0 {
		return pipeline.Pinned{}, errInvalid
	}
	mem := make([]byte, n)
	p := unsafe.Pointer(&mem[0])
	d.mu.Lock()
	defer d.mu.Unlock()
	d.host[p] = &hostBuf{mem: mem}
	return pipeline.Pinned{Ptr: p, N: n}, nil
}

func (d *sim) HostFree(h pipeline.Pinned) error {
	if err := d.call("cuMemFreeHost"); err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	b, ok := d.host[h.Ptr]
	if !ok {
		d.hazard("cuMemFreeHost of %p, which is not pinned memory", h.Ptr)
		return errInvalid
	}
	if b.pending > 0 {
		d.hazard("cuMemFreeHost of %p with %d copy(ies) still queued on it", h.Ptr, b.pending)
	}
	delete(d.host, h.Ptr)
	return nil
}

// devRange is [p, p+n) of device memory; d.mu is held.
func (d *sim) devRange(p pipeline.DevicePtr, n int64, what string) (*devBuf, []byte, error) {
	for _, b := range d.dev {
		if p >= b.base && int64(p-b.base)+n <= int64(len(b.mem)) {
			off := int64(p - b.base)
			return b, b.mem[off : off+n], nil
		}
	}
	d.hazard("%s: %d bytes at %#x are not inside one device allocation", what, n, p)
	return nil, nil, errInvalid
}

// hostRange is [p, p+n) of pinned memory; d.mu is held.
func (d *sim) hostRange(p unsafe.Pointer, n int64, what string) (*hostBuf, []byte, error) {
	for _, b := range d.host {
		base := uintptr(unsafe.Pointer(&b.mem[0]))
		if uintptr(p) >= base && int64(uintptr(p)-base)+n <= int64(len(b.mem)) {
			off := int64(uintptr(p) - base)
			return b, b.mem[off : off+n], nil
		}
	}
	d.hazard("%s: %d bytes at %p are not inside one pinned allocation (an asynchronous copy needs pinned memory)", what, n, p)
	return nil, nil, errInvalid
}

// use is one device buffer an operation touches.
type use struct {
	b     *devBuf
	write bool
}

// enqueue queues work on stream s: begin marks the buffers in use (a conflict is a hazard),
// the work runs after a random delay unless the context is lost, then the buffers are released.
func (d *sim) enqueue(s *simStream, what string, uses []use, hosts []*hostBuf, work func()) {
	for _, u := range uses {
		u.b.pending++
	}
	for _, h := range hosts {
		h.pending++
	}
	s.ops <- func() {
		d.delay()
		d.mu.Lock()
		d.execs++
		if d.execs == d.failExec && d.lost == nil {
			d.lost = errIllegal
		}
		run := d.lost == nil
		for _, u := range uses {
			switch {
			case u.write && (u.b.readers > 0 || u.b.writers > 0):
				d.hazard("%s writes device buffer %#x while another operation uses it", what, u.b.base)
			case !u.write && u.b.writers > 0:
				d.hazard("%s reads device buffer %#x while another operation writes it", what, u.b.base)
			}
			if u.write {
				u.b.writers++
			} else {
				u.b.readers++
			}
		}
		d.mu.Unlock()
		if run {
			d.delay()
			work()
		}
		d.mu.Lock()
		for _, u := range uses {
			if u.write {
				u.b.writers--
			} else {
				u.b.readers--
			}
			u.b.pending--
		}
		for _, h := range hosts {
			h.pending--
		}
		d.cond.Broadcast()
		d.mu.Unlock()
	}
}

func checksum(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func (d *sim) CopyHtoD(dst pipeline.DevicePtr, src unsafe.Pointer, n int64, s pipeline.Stream) error {
	return d.copyAsync("cuMemcpyHtoDAsync", true, dst, src, n, s)
}

func (d *sim) CopyDtoH(dst unsafe.Pointer, src pipeline.DevicePtr, n int64, s pipeline.Stream) error {
	return d.copyAsync("cuMemcpyDtoHAsync", false, src, dst, n, s)
}

// copyAsync queues a copy of n bytes between device memory at dp and pinned memory at hp, to
// the device when toDevice. A copy to the device checks, when it runs, that its source has not
// changed since the call; a copy to the host makes its destination NaN bytes until it runs.
func (d *sim) copyAsync(op string, toDevice bool, dp pipeline.DevicePtr, hp unsafe.Pointer, n int64, s pipeline.Stream) error {
	if err := d.call(op); err != nil {
		return err
	}
	st, err := d.stream(s, op)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	db, dmem, err := d.devRange(dp, n, op)
	if err != nil {
		return err
	}
	hb, hmem, err := d.hostRange(hp, n, op)
	if err != nil {
		return err
	}
	if !toDevice {
		for i := range hmem { // undefined until the copy completes: NaN floats, status -1
			hmem[i] = 0xff
		}
		d.enqueue(st, op, []use{{db, false}}, []*hostBuf{hb}, func() { copy(hmem, dmem) })
		return nil
	}
	sum := checksum(hmem)
	d.enqueue(st, op, []use{{db, true}}, []*hostBuf{hb}, func() {
		if checksum(hmem) != sum {
			d.mu.Lock()
			d.hazard("%s: the pinned source at %p changed between the call and the copy", op, hp)
			d.mu.Unlock()
		}
		copy(dmem, hmem)
	})
	return nil
}

func (d *sim) Launch(l pipeline.Launch, s pipeline.Stream) error {
	const op = "cuLaunchKernel"
	if err := d.call(op); err != nil {
		return err
	}
	st, err := d.stream(s, op)
	if err != nil {
		return err
	}
	if int(l.Dtype) >= len(kernels.Kernels) {
		return errInvalid
	}
	// The kernel sees the launch only as its 8-byte parameter words (kernels.ParamTypes).
	w := l.Args()
	f := math.Float64frombits
	l = pipeline.Launch{
		Dtype: l.Dtype, Logits: pipeline.DevicePtr(w[0]), V: int64(w[1]), Rows: int64(w[2]),
		RowIn:  pipeline.DevicePtr(w[3]),
		Params: polarity.Params{Temperature: f(w[4]), LR: f(w[5]), ClipLow: f(w[6]), ClipHigh: f(w[7]), NaturalGradient: w[8] != 0},
		Out:    pipeline.DevicePtr(w[9]),
	}
	if l.Rows <= 0 || l.V <= 0 || w[8] > 1 {
		return errInvalid
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if w[10] != w[9]+uint64(pipeline.StatusOffset(l.Rows)) { // kernelemu writes them there
		d.hazard("%s: the statuses' address %#x is not after the outputs' columns at %#x", op, w[10], w[9])
		return errInvalid
	}
	lb, lmem, err := d.devRange(l.Logits, l.Rows*l.V*int64(l.Dtype.Size()), op+" logits")
	if err != nil {
		return err
	}
	rb, rmem, err := d.devRange(l.RowIn, l.Rows*kernels.RowInBytes, op+" row inputs")
	if err != nil {
		return err
	}
	ob, omem, err := d.devRange(l.Out, l.Rows*pipeline.OutRowBytes, op+" outputs")
	if err != nil {
		return err
	}
	// Fewer blocks than rows, so that the kernel's grid-stride loop runs; the block's threads
	// in a random order.
	grid, seed := int(min(l.Rows, 1+d.rng.Int64N(8))), d.rng.Uint64()|1
	d.enqueue(st, op, []use{{lb, false}, {rb, false}, {ob, true}}, nil, func() {
		// The kernel reads the sampled token's logit at the token id: an id out of range (row
		// inputs not yet copied) is an illegal address on the device, a crash on the host.
		for r, in := range unsafe.Slice((*kernels.RowIn)(unsafe.Pointer(&rmem[0])), l.Rows) {
			if in.Token < 0 || int64(in.Token) >= l.V {
				d.fault("%s: row %d's token id %d is outside [0, %d): its row inputs were not copied yet", op, r, in.Token, l.V)
				return
			}
		}
		err := kernelemu.LaunchShuffled(l.Dtype, unsafe.Pointer(&lmem[0]), l.V, l.Rows, unsafe.Pointer(&rmem[0]), l.Params, unsafe.Pointer(&omem[0]), grid, seed)
		if err != nil {
			d.fault("%s: %v", op, err)
		}
	})
	return nil
}

// streamEvent makes the call op on stream s and event e.
func (d *sim) streamEvent(op string, s pipeline.Stream, e pipeline.Event) (*simStream, *simEvent, error) {
	if err := d.call(op); err != nil {
		return nil, nil, err
	}
	st, err := d.stream(s, op)
	if err != nil {
		return nil, nil, err
	}
	ev, err := d.event(e, op)
	return st, ev, err
}

func (d *sim) Record(e pipeline.Event, s pipeline.Stream) error {
	st, ev, err := d.streamEvent("cuEventRecord", s, e)
	if err != nil {
		return err
	}
	d.mu.Lock()
	ev.recorded++
	g := ev.recorded
	d.mu.Unlock()
	st.ops <- func() {
		d.mu.Lock()
		ev.done = max(ev.done, g)
		d.cond.Broadcast()
		d.mu.Unlock()
	}
	return nil
}

func (d *sim) Wait(s pipeline.Stream, e pipeline.Event) error {
	st, ev, err := d.streamEvent("cuStreamWaitEvent", s, e)
	if err != nil {
		return err
	}
	d.mu.Lock()
	g := ev.recorded
	d.mu.Unlock()
	st.ops <- func() {
		d.mu.Lock()
		for ev.done < g {
			d.cond.Wait()
		}
		d.mu.Unlock()
	}
	return nil
}

func (d *sim) SyncEvent(e pipeline.Event) error {
	if err := d.call("cuEventSynchronize"); err != nil {
		return err
	}
	ev, err := d.event(e, "cuEventSynchronize")
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for g := ev.recorded; ev.done < g; {
		d.cond.Wait()
	}
	return d.lost
}

func (d *sim) SyncStream(s pipeline.Stream) error {
	if err := d.call("cuStreamSynchronize"); err != nil {
		return err
	}
	st, err := d.stream(s, "cuStreamSynchronize")
	if err != nil {
		return err
	}
	done := make(chan struct{})
	st.ops <- func() { close(done) }
	<-done
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lost
}

func (d *sim) Sticky(err error) bool {
	var se *simError
	return errors.As(err, &se) && se.sticky
}

// destroyContext is cuCtxDestroy: it waits for the streams and frees everything. The test calls
// it where the CUDA engine destroys its context, after the pipeline's Close.
func (d *sim) destroyContext() {
	d.mu.Lock()
	for k, s := range d.streams {
		if s != nil {
			close(s.ops)
			d.streams[k] = nil
		}
	}
	d.mu.Unlock()
	d.running.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.dev)
	clear(d.host)
	clear(d.events)
	d.memUsed = 0
}

// leaks describes what is still allocated or alive.
func (d *sim) leaks() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	streams, events := 0, 0
	for _, s := range d.streams {
		if s != nil {
			streams++
		}
	}
	for _, e := range d.events {
		if e != nil {
			events++
		}
	}
	if len(d.dev)+len(d.host)+streams+events == 0 {
		return ""
	}
	return fmt.Sprintf("%d device allocation(s), %d pinned, %d stream(s), %d event(s) left", len(d.dev), len(d.host), streams, events)
}
