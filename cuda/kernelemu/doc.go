// Package kernelemu runs kernels/polarity.cu itself, unchanged, on a machine without a GPU.
//
// Package hostref tests the kernels' arithmetic (kernels/polarity_row.cuh) with a sequential
// re-implementation of the kernel's row loop and reduction tree (pp_host_rows, pp_row_tree).
// What that leaves untested is the glue in polarity.cu: the grid-stride row loop, the 64-bit
// row offset, the __shfl_xor_sync merges, warp_state in shared memory, __syncthreads_or of the
// NaN/+Inf flags, the `lane < PP_WARPS` load of the warps' states, the __syncthreads before
// the next row reuses warp_state, and thread 0 writing the outputs and status. This package
// compiles polarity.cu with g++ under cuda_emu.h, a small CUDA execution emulator (one
// cooperative fiber per CUDA thread, warp-level barriers for the shuffles, block-level ones for
// __syncthreads; see the header's comment), and Launch runs a real launch: grid blocks of
// kernels.BlockThreads threads over the same memory layout as hostref.Launch.
//
// The emulator turns what a GPU would make a hang or undefined behaviour into an *Error: a
// deadlock, a block barrier that not every thread reaches (or reaches at another barrier), a
// shuffle that not every named lane of the warp reaches. LaunchShuffled runs the threads of a
// block in a pseudo-random order, so that a missing barrier (a race on shared memory) shows as
// results that depend on the seed.
//
// Neither __CUDACC__ nor __CUDA_ARCH__ is defined, so polarity_row.cuh takes its host paths,
// the ones hostref compiles: libm exp2f where the device runs ex2.approx.ftz (so 2^w below
// 2^-126 is a subnormal here and 0 there), an explicit NaN test where it runs max.NaN.f32,
// memcpy for the 16-byte streaming loads (see the header's comment). A launch here is
// therefore bitwise equal to hostref.Launch on the same inputs (same arithmetic, same merge
// order), which the tests check, and not bitwise equal to the GPU's.
//
// What it cannot show: anything about real concurrency or the memory model (a block's threads
// run one at a time, switching only at barriers), timing, or the device's own arithmetic.
//
// Under AddressSanitizer, go test -asan instruments the C files only; the C++ ones (the kernel)
// need CGO_CXXFLAGS="-O2 -g -fsanitize=address" as well:
//
//	CGO_CXXFLAGS="-O2 -g -fsanitize=address" go test -asan ./cuda/kernelemu
//
// The package needs cgo and a C++17 compiler; without cgo (CGO_ENABLED=0) only this file
// builds.
package kernelemu
