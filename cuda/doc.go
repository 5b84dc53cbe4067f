// Package cuda is papo's GPU engine: the polarity.Engine of docs/MATH.md §2–§3 on an NVIDIA GPU,
// through the CUDA driver API (gorgonia.org/cu, plus a small cgo shim for pinned host memory).
// It is built only with the build tag cuda (the papo-cuda binary); without the tag the package
// holds only its error classification, so that `go build ./...` needs no CUDA.
//
// The engine owns one CUDA context on one locked OS thread; every CUDA call runs on that
// thread, fed by a channel. The module (kernels.PTX) and its three kernels (float32, float16,
// bfloat16 logits) are loaded once. The batch pipeline is package cuda/pipeline, which this
// package drives through a thin pipeline.Driver on gorgonia.org/cu (cudriver.go), and which
// its tests run on a simulated device on any host. A batch is cut into chunks of rows of at most
// Options.ChunkBytes of logits; each chunk is copied by parallel goroutines from the batch into
// one of two pinned staging buffers, sent to the device on a copy stream, and computed on a
// compute stream that also copies its 32 bytes per row of results back. The two slots of
// buffers let chunk k+1's host and PCIe copies overlap chunk k's kernel. Device and pinned
// buffers are kept and reused across batches (one owner: the engine; one Close).
//
// Every CUDA call's error is checked and returned as a *fallback.DeviceError naming the call;
// papo-cuda wraps the engine with fallback.New so that such a batch is recomputed on the CPU.
// Data errors in a batch are the CPU engine's *polarity.RowError, for the same row.
//
// A CUDA build cannot start without a GPU driver, and gorgonia.org/cu exits at initialisation
// on a host without a device: package cuda/guard, initialised first, turns that into a clear
// message and exit status 3 (see docs/DESIGN.md, "Why papo and papo-cuda are two binaries").
package cuda
