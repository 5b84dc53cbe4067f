//go:build cuda

package cuda

import (
	"errors"
	"unsafe"

	"gorgonia.org/cu"

	"github.com/entropy-polarity/papo/cuda/pipeline"
	"github.com/entropy-polarity/papo/kernels"
)

// cuDriver is pipeline.Driver on the CUDA driver API, in the context current on the calling
// thread (the engine's context thread). Streams and events are kept in tables; their handles
// are the indices.
type cuDriver struct {
	fns     [3]cu.Function // the kernels, by polarity.Dtype
	streams []cu.Stream
	events  []cu.Event
}

var _ pipeline.Driver = (*cuDriver)(nil)

func (d *cuDriver) NewStream() (pipeline.Stream, error) {
	s, err := cu.MakeStream(cu.NonBlocking)
	if err != nil {
		return 0, asDriverError(err)
	}
	d.streams = append(d.streams, s)
	return pipeline.Stream(len(d.streams) - 1), nil
}

func (d *cuDriver) stream(s pipeline.Stream) cu.Stream { return d.streams[s] }

func (d *cuDriver) DestroyStream(s pipeline.Stream) error {
	err := d.streams[s].Destroy()
	d.streams[s] = cu.Stream{}
	return asDriverError(err)
}

func (d *cuDriver) NewEvent() (pipeline.Event, error) {
	// Without timing, an event records and synchronizes at the least cost.
	ev, err := cu.MakeEvent(cu.DisableTiming)
	if err != nil {
		return 0, asDriverError(err)
	}
	d.events = append(d.events, ev)
	return pipeline.Event(len(d.events) - 1), nil
}

func (d *cuDriver) DestroyEvent(e pipeline.Event) error {
	return asDriverError(cu.DestroyEvent(&d.events[e]))
}

func (d *cuDriver) MemAlloc(n int64) (pipeline.DevicePtr, error) {
	p, err := cu.MemAlloc(n)
	return pipeline.DevicePtr(p), asDriverError(err)
}

func (d *cuDriver) MemFree(p pipeline.DevicePtr) error {
	return asDriverError(cu.MemFree(cu.DevicePtr(p)))
}

func (d *cuDriver) HostAlloc(n int64) (pipeline.Pinned, error) { return allocPinned(n) }

func (d *cuDriver) HostFree(h pipeline.Pinned) error { return freePinned(h) }

func (d *cuDriver) CopyHtoD(dst pipeline.DevicePtr, src unsafe.Pointer, n int64, s pipeline.Stream) error {
	return asDriverError(cu.MemcpyHtoDAsync(cu.DevicePtr(dst), src, n, d.stream(s)))
}

func (d *cuDriver) CopyDtoH(dst unsafe.Pointer, src pipeline.DevicePtr, n int64, s pipeline.Stream) error {
	return asDriverError(cu.MemcpyDtoHAsync(dst, cu.DevicePtr(src), n, d.stream(s)))
}

// Launch queues the kernel for l.Dtype, one block per row. gorgonia.org/cu copies every
// parameter as 8 bytes, which l.Args are.
func (d *cuDriver) Launch(l pipeline.Launch, s pipeline.Stream) error {
	words := l.Args()
	args := make([]unsafe.Pointer, len(words))
	for i := range words {
		args[i] = unsafe.Pointer(&words[i])
	}
	return asDriverError(d.fns[l.Dtype].Launch(int(l.Rows), 1, 1, kernels.BlockThreads, 1, 1, 0, d.stream(s), args))
}

func (d *cuDriver) Record(e pipeline.Event, s pipeline.Stream) error {
	return asDriverError(d.events[e].Record(d.stream(s)))
}

func (d *cuDriver) Wait(s pipeline.Stream, e pipeline.Event) error {
	return asDriverError(d.stream(s).Wait(d.events[e], 0))
}

func (d *cuDriver) SyncEvent(e pipeline.Event) error { return asDriverError(d.events[e].Synchronize()) }

func (d *cuDriver) SyncStream(s pipeline.Stream) error {
	return asDriverError(d.stream(s).Synchronize())
}

func (d *cuDriver) Sticky(err error) bool {
	var de *driverError
	return errors.As(err, &de) && isSticky(de.Code)
}
