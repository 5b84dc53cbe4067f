// Package fallback keeps a batch's results when the GPU fails: it wraps a GPU engine so that a
// device failure during a batch (out of memory, a failed launch, a lost context) recomputes
// that batch on the CPU engine, says so in one line, and leaves the result exactly as if the
// CPU engine alone had run. Data errors in the batch (*polarity.RowError) and cancellation are
// not device failures: they are returned as they are.
//
// The package has no build tag and no cgo, so its tests run everywhere; the CUDA engine
// (package cuda, build tag cuda) reports its failures as *DeviceError.
package fallback

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/entropy-polarity/papo/polarity"
)

// DeviceError is a failure of the device or its driver while computing a batch.
type DeviceError struct {
	Device string // the engine's device, e.g. "cuda:0"
	Op     string // the call that failed, e.g. "cuMemAlloc(1073741824 B)"
	Err    error  // the driver's error
	// Sticky reports that the device context is unusable for the rest of the process (a failed
	// launch or an illegal address: CUDA keeps returning the error); otherwise (out of memory)
	// a later batch may succeed.
	Sticky bool
}

func (e *DeviceError) Error() string {
	s := fmt.Sprintf("%s: %s: %v", e.Device, e.Op, e.Err)
	if e.Sticky {
		s += " (the device context is no longer usable)"
	}
	return s
}

func (e *DeviceError) Unwrap() error { return e.Err }

// Engine runs batches on a GPU engine and recomputes on a CPU engine each batch that the GPU
// fails with a *DeviceError. After a sticky failure the GPU engine is closed and every later
// batch runs on the CPU engine, with one line saying so.
type Engine struct {
	gpu, cpu polarity.Engine
	logw     io.Writer

	mu       sync.Mutex
	disabled bool // after a sticky failure
	gpuName  string
}

// New wraps gpu; failed batches run on cpu and are reported, one line each, to logw.
func New(gpu, cpu polarity.Engine, logw io.Writer) *Engine {
	if logw == nil {
		logw = io.Discard
	}
	return &Engine{gpu: gpu, cpu: cpu, logw: logw, gpuName: gpu.Name()}
}

// Name is the GPU engine's name, or the CPU engine's once the GPU has been given up.
func (e *Engine) Name() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.disabled {
		return fmt.Sprintf("%s (fallback after %s failed)", e.cpu.Name(), e.gpuName)
	}
	return e.gpuName
}

// Compute runs b on the GPU engine; if that fails with a *DeviceError it recomputes the whole
// batch on the CPU engine into out (every row is overwritten, so none is lost or kept twice).
func (e *Engine) Compute(ctx context.Context, b *polarity.Batch, p polarity.Params, out *polarity.Result) error {
	e.mu.Lock()
	disabled := e.disabled
	e.mu.Unlock()
	if disabled {
		return e.cpu.Compute(ctx, b, p, out)
	}
	err := e.gpu.Compute(ctx, b, p, out)
	var de *DeviceError
	if !errors.As(err, &de) {
		return err
	}
	if de.Sticky {
		e.mu.Lock()
		first := !e.disabled
		e.disabled = true
		e.mu.Unlock()
		if first {
			fmt.Fprintf(e.logw, "papo: GPU failure, batch recomputed on the %s engine, which runs the rest of the work: %v\n", e.cpu.Name(), de)
			if cerr := e.gpu.Close(); cerr != nil {
				fmt.Fprintf(e.logw, "papo: closing %s after its failure: %v\n", e.gpuName, cerr)
			}
		}
	} else {
		fmt.Fprintf(e.logw, "papo: GPU failure, batch recomputed on the %s engine: %v\n", e.cpu.Name(), de)
	}
	return e.cpu.Compute(ctx, b, p, out)
}

// Close closes both engines (the GPU engine only if it is still open).
func (e *Engine) Close() error {
	e.mu.Lock()
	disabled := e.disabled
	e.mu.Unlock()
	var errs []error
	if !disabled {
		errs = append(errs, e.gpu.Close())
	}
	errs = append(errs, e.cpu.Close())
	return errors.Join(errs...)
}
