//go:build cgo

// emu.cpp compiles kernels/polarity.cu, unchanged, for the host under the CUDA emulator of
// cuda_emu.h, and launches its kernels (pp_emu_launch).

#include "cuda_emu.h"

#include "polarity.cu"

#include "kernelemu.h"

static_assert(PP_EMU_OK == CUDA_EMU_OK && PP_EMU_ERR_DEADLOCK == CUDA_EMU_ERR_DEADLOCK &&
                  PP_EMU_ERR_BARRIER == CUDA_EMU_ERR_BARRIER && PP_EMU_ERR_SHFL == CUDA_EMU_ERR_SHFL &&
                  PP_EMU_ERR_LAUNCH == CUDA_EMU_ERR_LAUNCH,
              "kernelemu.h's codes are cuda_emu.h's");

namespace {

struct Args {
	int dt;
	const void *logits;
	long long V, nrows;
	const pp_row_in *rows;
	double tau, lr, clip_low, clip_high;
	long long natural;
	float *out;
	int *status;
};

// body is one CUDA thread: the kernel of the launch's dtype, called as the driver would.
void body(void *p) {
	const Args &a = *static_cast<const Args *>(p);
	switch (a.dt) {
	case PP_F32:
		polarity_rows_f32(a.logits, a.V, a.nrows, a.rows, a.tau, a.lr, a.clip_low, a.clip_high, a.natural, a.out, a.status);
		break;
	case PP_F16:
		polarity_rows_f16(a.logits, a.V, a.nrows, a.rows, a.tau, a.lr, a.clip_low, a.clip_high, a.natural, a.out, a.status);
		break;
	case PP_BF16:
		polarity_rows_bf16(a.logits, a.V, a.nrows, a.rows, a.tau, a.lr, a.clip_low, a.clip_high, a.natural, a.out,
		                   a.status);
		break;
	}
}

thread_local char last_error[1024];

} // namespace

extern "C" int pp_emu_launch_ex(int dt, const void *logits, long long V, long long nrows, const pp_row_in *rows, double tau,
                                double lr, double clip_low, double clip_high, long long natural, float *out, int *status,
                                int grid, unsigned long long seed, char *msg, size_t msglen) {
	if (dt != PP_F32 && dt != PP_F16 && dt != PP_BF16) {
		return cuda_emu::launch_error(msg, msglen, PP_EMU_ERR_LAUNCH, "unknown dtype");
	}
	if (grid < 1) {
		return cuda_emu::launch_error(msg, msglen, PP_EMU_ERR_LAUNCH, "grid of no blocks");
	}
	Args a = {dt, logits, V, nrows, rows, tau, lr, clip_low, clip_high, natural, out, status};
	return cuda_emu::launch(dim3((unsigned)grid), dim3(PP_BLOCK_THREADS), body, &a, seed, msg, msglen);
}

extern "C" int pp_emu_launch(int dt, const void *logits, long long V, long long nrows, const pp_row_in *rows, double tau,
                             double lr, double clip_low, double clip_high, long long natural, float *out, int *status,
                             int grid) {
	return pp_emu_launch_ex(dt, logits, V, nrows, rows, tau, lr, clip_low, clip_high, natural, out, status, grid, 0,
	                        last_error, sizeof last_error);
}

extern "C" const char *pp_emu_last_error(void) { return last_error; }
