//go:build cgo

// selftest.cpp: kernels that test the CUDA emulator itself (cuda_emu.h): one whose results
// check the shuffles' and barriers' semantics, kernels that deadlock or diverge on a GPU (the
// emulator must report an error, not hang or pass), and a kernel with a shared-memory race that
// only a random schedule exposes.

#include "cuda_emu.h"

#include "kernelemu.h"

namespace {

const unsigned kFull = 0xffffffffu;

// Per block, out[8·blockIdx.x + k]: the block's sum of (blockIdx.x·1000 + threadIdx.x) by warp
// shuffles and shared memory, __syncthreads_or of one true and of no true predicate,
// __syncthreads_and with one false, __syncthreads_count of threadIdx.x % 3 == 0, the number of
// threads whose up/down/idx/xor(width 16) shuffles delivered a wrong value, blockDim.x, gridDim.x.
__global__ void k_semantics(int *out) {
	__shared__ int warp_sum[32];
	const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
	const int v = (int)blockIdx.x * 1000 + tid;
	int s = v;
	for (int off = 16; off > 0; off /= 2) {
		s += __shfl_xor_sync(kFull, s, off);
	}
	if (lane == 0) {
		warp_sum[warp] = s;
	}
	const int any = __syncthreads_or(tid == (int)(blockIdx.x % blockDim.x));
	const int none = __syncthreads_or(0);
	const int all = __syncthreads_and(tid != 7);
	const int thirds = __syncthreads_count(tid % 3 == 0);
	int wrong = 0;
	const int up = __shfl_up_sync(kFull, v, 3), down = __shfl_down_sync(kFull, v, 5), idx = __shfl_sync(kFull, v, 9);
	const int x16 = __shfl_xor_sync(kFull, v, 17, 16), x8 = __shfl_xor_sync(kFull, v, 4, 8);
	const double d = __shfl_xor_sync(kFull, (double)v + 0.25, 1);
	wrong += up != (lane >= 3 ? v - 3 : v);
	wrong += down != (lane + 5 < 32 ? v + 5 : v);
	wrong += idx != v - lane + 9;
	/* width 16: lane ^ 17 of a lane < 16 lies in a later segment (own value), of a lane ≥ 16 in an
	 * earlier one (allowed) */
	wrong += x16 != (lane < 16 ? v : v - lane + (lane ^ 17));
	wrong += x8 != v - lane + (lane ^ 4);
	wrong += d != (double)(v - lane + (lane ^ 1)) + 0.25;
	const int nwrong = __syncthreads_count(wrong != 0);
	if (tid == 0) {
		int total = 0;
		for (int w = 0; w < (int)blockDim.x / 32; w++) {
			total += warp_sum[w];
		}
		int *o = out + 8 * blockIdx.x;
		o[0] = total;
		o[1] = any;
		o[2] = none;
		o[3] = all;
		o[4] = thirds;
		o[5] = nwrong;
		o[6] = (int)blockDim.x;
		o[7] = (int)gridDim.x;
	}
}

// Warp 0 alone reaches __syncthreads; the other warps exit.
__global__ void k_warp0_sync(int *out) {
	if (threadIdx.x < 32) {
		__syncthreads();
	}
	out[0] = 1;
}

// Lane 5 of warp 0 skips a shuffle and exits.
__global__ void k_skip_shfl_exit(int *out) {
	int v = threadIdx.x;
	if (threadIdx.x != 5) {
		v = __shfl_xor_sync(kFull, v, 1);
	}
	out[0] = v;
}

// Lane 5 of warp 0 skips a shuffle and waits at __syncthreads, where everyone else arrives after
// the shuffle: the warp's other lanes wait for lane 5 forever.
__global__ void k_skip_shfl_sync(int *out) {
	int v = threadIdx.x;
	if (threadIdx.x != 5) {
		v = __shfl_xor_sync(kFull, v, 1);
	}
	__syncthreads();
	out[0] = v;
}

// Even warps wait at __syncthreads, odd warps at __syncthreads_or.
__global__ void k_mixed_barriers(int *out) {
	int r = 0;
	if (threadIdx.x / 32 % 2 == 0) {
		__syncthreads();
	} else {
		r = __syncthreads_or(1);
	}
	out[0] = r;
}

// Even and odd lanes shuffle at different call sites.
__global__ void k_divergent_shfl(int *out) {
	int v = threadIdx.x;
	if (threadIdx.x % 2 == 0) {
		v = __shfl_xor_sync(kFull, v, 2);
	} else {
		v = __shfl_xor_sync(kFull, v, 2);
	}
	out[0] = v;
}

// A shuffle whose mask leaves out lane 0, called by lane 0 too.
__global__ void k_mask_missing_lane(int *out) {
	out[0] = __shfl_xor_sync(0xfffffffeu, (int)threadIdx.x, 1);
}

// Grid-stride rows through one shared word: warp 1 writes it, everyone reads it after a
// barrier, out[row] is what thread 1 read. Without the barrier at the end of the loop (fixed
// == 0), warp 1 may write the next row's value before thread 1 has read this one's.
template <bool fixed> __global__ void k_race(int *out, int n) {
	__shared__ int word;
	for (int row = blockIdx.x; row < n; row += gridDim.x) {
		if (threadIdx.x == 32) {
			word = row;
		}
		__syncthreads();
		int v = word;
		v = __shfl_xor_sync(kFull, v, 1);
		if (threadIdx.x == 0) {
			out[row] = v;
		}
		if (fixed) {
			__syncthreads();
		}
	}
}

struct Args {
	int kernel, n;
	int *out;
};

void body(void *p) {
	const Args &a = *static_cast<const Args *>(p);
	switch (a.kernel) {
	case 0:
		k_semantics(a.out);
		break;
	case 1:
		k_warp0_sync(a.out);
		break;
	case 2:
		k_skip_shfl_exit(a.out);
		break;
	case 3:
		k_skip_shfl_sync(a.out);
		break;
	case 4:
		k_mixed_barriers(a.out);
		break;
	case 5:
		k_divergent_shfl(a.out);
		break;
	case 6:
		k_mask_missing_lane(a.out);
		break;
	case 7:
		k_race<false>(a.out, a.n);
		break;
	case 8:
		k_race<true>(a.out, a.n);
		break;
	}
}

} // namespace

extern "C" int pp_emu_selftest(int kernel, int grid, int block, int n, int *out, unsigned long long seed, char *msg,
                               size_t msglen) {
	if (kernel < 0 || kernel > 8 || grid < 1 || block < 1) {
		return cuda_emu::launch_error(msg, msglen, PP_EMU_ERR_LAUNCH, "bad self-test launch");
	}
	Args a = {kernel, n, out};
	return cuda_emu::launch(dim3((unsigned)grid), dim3((unsigned)block), body, &a, seed, msg, msglen);
}
