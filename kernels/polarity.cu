/*
 * polarity.cu: papo's CUDA kernels. For each token row of a batch, one block of
 * PP_BLOCK_THREADS threads reads the row's logits once (16-byte streaming loads, 64-bit row
 * offsets), keeps docs/MATH.md §3's shifted sums per thread, merges them across the warp with xor
 * shuffles and across the block through shared memory (the associative merge), and thread 0
 * writes the token's docs/MATH.md §2 outputs and status. The logits are never written.
 *
 * The arithmetic lives in polarity_row.cuh, shared with the host build that the tests run
 * without a GPU. Kernel parameters are all 8 bytes wide (pointers, long long, double): the Go
 * side (gorgonia.org/cu's Function.Launch) copies every parameter as 8 bytes.
 *
 * Build: make -C kernels ptx (nvcc -ptx for compute_80: max.NaN.f32 needs sm_80; the PTX is
 * JIT-compiled by the driver for newer GPUs such as sm_90).
 */
#include <stdint.h>

#include "polarity_row.cuh"

__device__ __forceinline__ pp_state pp_shfl_xor(pp_state s, int off) {
	pp_state o;
	o.m = __shfl_xor_sync(0xffffffffu, s.m, off);
	o.rest0 = __shfl_xor_sync(0xffffffffu, s.rest0, off);
	o.s1 = __shfl_xor_sync(0xffffffffu, s.s1, off);
	o.rest2 = __shfl_xor_sync(0xffffffffu, s.rest2, off);
	o.s3 = __shfl_xor_sync(0xffffffffu, s.s3, off);
	return o;
}

template <int DT>
__device__ __forceinline__ void pp_rows(const void *logits, long long V, long long nrows, const pp_row_in *rows,
                                        double tau, double lr, double clip_low, double clip_high, long long natural,
                                        float *out, int *status) {
	__shared__ pp_state warp_state[PP_WARPS];
	const int tid = threadIdx.x, lane = tid % PP_WARP, warp = tid / PP_WARP;
	const float c = (float)(PP_LOG2E / tau);
	const long long es = DT == PP_F32 ? 4 : 2;
	for (long long row = blockIdx.x; row < nrows; row += gridDim.x) {
		const char *z = (const char *)logits + row * V * es; /* 64-bit: 14,134 rows × 151,936 × 4 B > 2^31 */
		pp_state st = pp_empty();
		int bad = 0;
		pp_strip(&st, &bad, DT, z, V, tid, PP_BLOCK_THREADS, c);
		for (int off = PP_WARP / 2; off > 0; off /= 2) {
			st = pp_merge(st, pp_shfl_xor(st, off), c);
		}
		if (lane == 0) {
			warp_state[warp] = st;
		}
		bad = __syncthreads_or(bad);
		if (warp == 0) {
			st = lane < PP_WARPS ? warp_state[lane] : pp_empty();
			for (int off = PP_WARPS / 2; off > 0; off /= 2) {
				st = pp_merge(st, pp_shfl_xor(st, off), c);
			}
			if (lane == 0) {
				const pp_row_in in = rows[row];
				pp_params p;
				p.tau = tau;
				p.lr = lr;
				p.clip_low = clip_low;
				p.clip_high = clip_high;
				p.natural = natural != 0;
				const float z_a = pp_load1(DT, z, in.token);
				status[row] = pp_finish(st, bad, z_a, in, p, out + row, nrows);
			}
		}
		__syncthreads(); /* warp_state is reused by the next row */
	}
}

#define PP_KERNEL(name, DT)                                                                                          \
	extern "C" __global__ void __launch_bounds__(PP_BLOCK_THREADS)                                                   \
	    name(const void *logits, long long V, long long nrows, const pp_row_in *rows, double tau, double lr,         \
	         double clip_low, double clip_high, long long natural, float *out, int *status) {                        \
		pp_rows<DT>(logits, V, nrows, rows, tau, lr, clip_low, clip_high, natural, out, status);                    \
	}

/* One kernel per dtype; the parameter list is the same for all three. */
PP_KERNEL(polarity_rows_f32, PP_F32)
PP_KERNEL(polarity_rows_f16, PP_F16)
PP_KERNEL(polarity_rows_bf16, PP_BF16)
