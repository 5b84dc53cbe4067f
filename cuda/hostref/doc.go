// Package hostref runs the arithmetic of papo's CUDA kernels on the host, so that it is tested
// on machines without a GPU (CI among them). It compiles kernels/polarity_row.cuh, the header
// whose __host__ __device__ functions the kernels call, as C (gnu11) with cgo: the per-thread strips
// with the kernel's 16-byte vector striding, the running-maximum update, the associative merge
// in the kernel's warp-shuffle and block order, and the token step of docs/MATH.md §2.
//
// Engine wraps a host run of a kernel launch in the polarity.Engine interface, so the shared
// table of hard rows (polaritytest.CheckEngine) holds the kernels' arithmetic to the same
// tolerances as the CPU engine. The only differences from the device are the exponential (libm
// exp2f here, ex2.approx.ftz on the GPU: both within 2 ulp) and 2^w below 2^-126 (a subnormal
// here, 0 on the GPU).
//
// The package needs cgo; without it (CGO_ENABLED=0) only this file builds and New is absent.
package hostref
