/*
 * kernelemu.h: the C entry points of package kernelemu (emu.cpp runs kernels/polarity.cu under
 * the CUDA emulator of cuda_emu.h; selftest.cpp holds the emulator's own test kernels).
 */
#ifndef PAPO_KERNELEMU_H
#define PAPO_KERNELEMU_H

#include <stddef.h>

#include "polarity_row.cuh"

/* Return codes (the same numbers as cuda_emu.h's CUDA_EMU_*). */
#define PP_EMU_OK 0
#define PP_EMU_ERR_DEADLOCK 1 /* no thread can run but some have not exited */
#define PP_EMU_ERR_BARRIER 2  /* divergent or incomplete block barrier */
#define PP_EMU_ERR_SHFL 3     /* divergent or incomplete warp shuffle */
#define PP_EMU_ERR_LAUNCH 4   /* bad launch (grid, dtype), out of memory */

#ifdef __cplusplus
extern "C" {
#endif

/*
 * pp_emu_launch runs kernel polarity_rows_f32/_f16/_bf16 (dt 0, 1, 2) of kernels/polarity.cu with
 * grid blocks of PP_BLOCK_THREADS threads (one block after another) and the kernel's own
 * parameters. It returns PP_EMU_OK or an error code; pp_emu_last_error then holds the message
 * (per OS thread: call it from the thread that launched).
 */
int pp_emu_launch(int dt, const void *logits, long long V, long long nrows, const pp_row_in *rows, double tau, double lr,
                  double clip_low, double clip_high, long long natural, float *out, int *status, int grid);
const char *pp_emu_last_error(void);

/*
 * pp_emu_launch_ex is pp_emu_launch with the schedule (seed 0: threads in order; otherwise a
 * pseudo-random order drawn from seed) and the message written to msg (msglen bytes).
 */
int pp_emu_launch_ex(int dt, const void *logits, long long V, long long nrows, const pp_row_in *rows, double tau,
                     double lr, double clip_low, double clip_high, long long natural, float *out, int *status, int grid,
                     unsigned long long seed, char *msg, size_t msglen);

/*
 * pp_emu_selftest runs test kernel number kernel (selftest.cpp) with grid blocks of block
 * threads over n ints at out, scheduled by seed; for the tests of the emulator itself.
 */
int pp_emu_selftest(int kernel, int grid, int block, int n, int *out, unsigned long long seed, char *msg, size_t msglen);

#ifdef __cplusplus
}
#endif

#endif /* PAPO_KERNELEMU_H */
