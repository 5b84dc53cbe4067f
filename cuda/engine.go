//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"gorgonia.org/cu"

	"github.com/entropy-polarity/papo/cuda/pipeline"
	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
)

// Options configure New.
type Options struct {
	Device int // CUDA device ordinal
	// ChunkBytes and CopyThreads are the pipeline's (pipeline.Options, whose defaults apply
	// to 0).
	ChunkBytes  int64
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
	ctx    cu.CUContext
	mod    cu.Module
	loaded bool
	drv    cuDriver
	pipe   *pipeline.Pipeline // the batch pipeline: streams, events, buffers
}

// New creates the engine on device opts.Device: a context on a dedicated locked OS thread,
// the kernels' module JIT-compiled for the device, the pipeline's streams and events.
func New(opts Options) (*Engine, error) {
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
		_ = e.release()
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
		if e.drv.fns[dt], err = mod.Function(name); err != nil {
			return fmt.Errorf("cuda: %s: cuModuleGetFunction(%s): %w", e.name, name, asDriverError(err))
		}
	}
	e.pipe, err = pipeline.New(&e.drv, e.label, pipeline.Options{ChunkBytes: e.opts.ChunkBytes, CopyThreads: e.opts.CopyThreads})
	if err != nil {
		return fmt.Errorf("cuda: %s: %w", e.name, err)
	}
	return nil
}

// release frees the pipeline's buffers, events and streams, the module and the context (on the
// context thread), and returns the first error.
func (e *Engine) release() error {
	if e.ctx == (cu.CUContext{}) {
		return nil
	}
	var errs []error
	if e.pipe != nil {
		errs = append(errs, e.pipe.Close())
		if e.pipe.Broken() != nil {
			e.loaded = false // a lost context fails every call but its destruction
		}
		e.pipe = nil
	}
	if e.loaded {
		if err := e.mod.Unload(); err != nil {
			errs = append(errs, fmt.Errorf("cuModuleUnload: %w", asDriverError(err)))
		}
		e.loaded = false
	}
	if err := e.ctx.Destroy(); err != nil {
		errs = append(errs, fmt.Errorf("cuCtxDestroy: %w", asDriverError(err)))
	}
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

// fail wraps the failure of op as the pipeline does (a sticky one breaks the engine).
func (e *Engine) fail(op string, err error) error { return e.pipe.Fail(op, asDriverError(err)) }

// Compute fills out for every row of b (see polarity.Engine and pipeline.Pipeline.Compute).
// Device failures are returned as *fallback.DeviceError (out then holds partial results); data
// errors as the CPU engine's *polarity.RowError for the lowest bad row.
func (e *Engine) Compute(ctx context.Context, b *polarity.Batch, p polarity.Params, out *polarity.Result) error {
	return e.do(func() error { return e.pipe.Compute(ctx, b, p, out) })
}
