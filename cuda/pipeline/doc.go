// Package pipeline is the CUDA engine's batch pipeline, written against a small Driver
// interface instead of the CUDA driver API, so that the same code runs on a GPU (package cuda,
// build tag cuda, implements Driver with gorgonia.org/cu) and, in tests, on a simulated device
// on any host.
//
// A batch is cut into chunks of rows of at most Options.ChunkBytes of logits. Chunk j uses
// slot j%2: it is copied by parallel goroutines from the batch into the slot's pinned staging
// buffer, sent to the device on a copy stream, and computed on a compute stream that also
// copies its 32 bytes per row of results back into pinned memory. Events order the two
// streams: a slot's device buffers are overwritten only after the kernel that read them has
// finished, and its pinned buffers only after the chunk's results have been read back, so chunk
// j+1's host and PCIe copies overlap chunk j's kernel without a buffer ever being used by two
// operations at once. Buffers are kept and reused across batches.
//
// Every driver error is returned as a *fallback.DeviceError naming the call and the rows, and
// marked sticky when the driver says the context is lost; after a sticky error the pipeline
// refuses further work with that error. Data errors in a batch are the CPU engine's
// *polarity.RowError, for the same row (kernels.Unpack).
//
// The tests run the pipeline on a simulated device (sim_test.go): streams that execute
// asynchronously with random delays, CUDA's event semantics, bounds-checked device memory,
// hazard detection (a buffer written while another operation uses it, staging memory changed
// before its copy ran, memory freed with work queued on it), and launches that run
// kernels/polarity.cu itself on the host (package cuda/kernelemu) from the launch's parameter
// words. Every driver call of a batch is made to fail in turn to check that no failure loses,
// duplicates or corrupts a result and none leaks memory.
package pipeline
