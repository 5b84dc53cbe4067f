//go:build cuda

package cuda

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/entropy-polarity/papo/cuda/pipeline"
	"github.com/entropy-polarity/papo/kernels"
	"github.com/entropy-polarity/papo/polarity"
)

// Timing is the device time of repeated operations, from CUDA events around each repetition.
type Timing struct {
	Reps        int
	Min, Median float64 // seconds per repetition
}

// timeReps records an event before each of reps calls of op on stream and after the last,
// and returns the per-repetition times.
func timeReps(stream cu.Stream, reps int, op func() error) (Timing, error) {
	evs := make([]cu.Event, reps+1)
	defer func() {
		for i := range evs {
			if evs[i] != (cu.Event{}) {
				_ = cu.DestroyEvent(&evs[i])
			}
		}
	}()
	for i := range evs {
		var err error
		if evs[i], err = cu.MakeEvent(cu.DefaultEvent); err != nil {
			return Timing{}, fmt.Errorf("cuEventCreate: %w", asDriverError(err))
		}
	}
	for i := range reps {
		if err := evs[i].Record(stream); err != nil {
			return Timing{}, fmt.Errorf("cuEventRecord: %w", asDriverError(err))
		}
		if err := op(); err != nil {
			return Timing{}, err
		}
	}
	if err := evs[reps].Record(stream); err != nil {
		return Timing{}, fmt.Errorf("cuEventRecord: %w", asDriverError(err))
	}
	if err := evs[reps].Synchronize(); err != nil {
		return Timing{}, fmt.Errorf("cuEventSynchronize: %w", asDriverError(err))
	}
	times := make([]float64, reps)
	for i := range reps {
		ms, err := evs[i].Elapsed(evs[i+1])
		if err != nil {
			return Timing{}, fmt.Errorf("cuEventElapsedTime: %w", asDriverError(err))
		}
		times[i] = ms / 1e3
	}
	slices.Sort(times)
	return Timing{Reps: reps, Min: times[0], Median: times[reps/2]}, nil
}

// computeStream is the engine's compute stream (on the context thread).
func (e *Engine) computeStream() cu.Stream { return e.drv.stream(e.pipe.ComputeStream()) }

// MeasureCopy times reps device-to-device copies of n bytes (after one warm-up copy). A copy
// reads and writes each byte once, so the device memory bandwidth it reaches is 2n/time: the
// roofline the kernel's read bandwidth is compared with.
func (e *Engine) MeasureCopy(n int64, reps int) (Timing, error) {
	var t Timing
	err := e.do(func() error {
		if err := e.pipe.Broken(); err != nil {
			return err
		}
		src, err := cu.MemAlloc(n)
		if err != nil {
			return e.fail(fmt.Sprintf("cuMemAlloc(%d B)", n), err)
		}
		defer cu.MemFree(src)
		dst, err := cu.MemAlloc(n)
		if err != nil {
			return e.fail(fmt.Sprintf("cuMemAlloc(%d B)", n), err)
		}
		defer cu.MemFree(dst)
		if err := cu.MemsetD8(src, 0x3f, n); err != nil {
			return e.fail("cuMemsetD8", err)
		}
		// The memset runs on the legacy stream, which the engine's non-blocking streams do
		// not wait for.
		if err := cu.Synchronize(); err != nil {
			return e.fail("cuCtxSynchronize", err)
		}
		copyOnce := func() error {
			if err := cu.MemcpyDtoDAsync(dst, src, n, e.computeStream()); err != nil {
				return e.fail(fmt.Sprintf("cuMemcpyDtoDAsync(%d B)", n), err)
			}
			return nil
		}
		if err := copyOnce(); err != nil {
			return err
		}
		t, err = timeReps(e.computeStream(), max(reps, 1), copyOnce)
		return err
	})
	return t, err
}

// MeasureKernel copies b to the device once and times reps launches of its kernel over all of
// b's rows in one launch each (after one warm-up launch): the kernel alone, without transfers.
// The last launch's results are stored in out (resized to b.Rows()), with the data error of the
// lowest bad row if there is one.
func (e *Engine) MeasureKernel(b *polarity.Batch, p polarity.Params, reps int, out *polarity.Result) (Timing, error) {
	if err := p.Validate(); err != nil {
		return Timing{}, err
	}
	if err := b.Validate(); err != nil {
		return Timing{}, err
	}
	n := b.Rows()
	if n == 0 {
		return Timing{}, errors.New("cuda: MeasureKernel of an empty batch")
	}
	out.Resize(n)
	var t Timing
	err := e.do(func() error {
		if err := e.pipe.Broken(); err != nil {
			return err
		}
		src := pipeline.LogitsBytes(&b.Logits)
		rows := make([]kernels.RowIn, n)
		kernels.PackRows(b, 0, rows)
		res := make([]byte, int64(n)*pipeline.OutRowBytes)
		var bufs []cu.DevicePtr
		defer func() {
			for _, d := range bufs {
				_ = cu.MemFree(d)
			}
		}()
		alloc := func(size int64, what string) (cu.DevicePtr, error) {
			d, err := cu.MemAlloc(size)
			if err != nil {
				return 0, e.fail(fmt.Sprintf("cuMemAlloc(%d B of %s)", size, what), err)
			}
			bufs = append(bufs, d)
			return d, nil
		}
		dLogits, err := alloc(int64(len(src)), "logits")
		if err != nil {
			return err
		}
		dRowIn, err := alloc(int64(n)*kernels.RowInBytes, "row inputs")
		if err != nil {
			return err
		}
		dOut, err := alloc(int64(len(res)), "results")
		if err != nil {
			return err
		}
		if err := cu.MemcpyHtoD(dLogits, unsafe.Pointer(unsafe.SliceData(src)), int64(len(src))); err != nil {
			return e.fail("cuMemcpyHtoD(logits)", err)
		}
		if err := cu.MemcpyHtoD(dRowIn, unsafe.Pointer(unsafe.SliceData(rows)), int64(n)*kernels.RowInBytes); err != nil {
			return e.fail("cuMemcpyHtoD(row inputs)", err)
		}
		// A copy from pageable memory may return before its DMA ends, on the legacy stream that
		// the engine's non-blocking streams do not wait for.
		if err := cu.Synchronize(); err != nil {
			return e.fail("cuCtxSynchronize", err)
		}
		dt := b.Logits.Dtype
		launch := func() error {
			l := pipeline.Launch{Dtype: dt, Logits: pipeline.DevicePtr(dLogits), V: int64(b.Logits.V), Rows: int64(n),
				RowIn: pipeline.DevicePtr(dRowIn), Params: p, Out: pipeline.DevicePtr(dOut)}
			if err := e.drv.Launch(l, e.pipe.ComputeStream()); err != nil {
				return e.fail(fmt.Sprintf("cuLaunchKernel(%s, %d blocks)", kernels.Kernels[dt], n), err)
			}
			return nil
		}
		if err := launch(); err != nil {
			return err
		}
		if t, err = timeReps(e.computeStream(), max(reps, 1), launch); err != nil {
			return e.fail("timing the kernel", err)
		}
		if err := cu.MemcpyDtoH(unsafe.Pointer(unsafe.SliceData(res)), dOut, int64(len(res))); err != nil {
			return e.fail("cuMemcpyDtoH(results)", err)
		}
		cols := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(res))), kernels.OutColumns*n)
		status := unsafe.Slice((*int32)(unsafe.Pointer(&res[pipeline.StatusOffset(int64(n))])), n)
		return kernels.Unpack(b, p, 0, cols, status, out)
	})
	return t, err
}
