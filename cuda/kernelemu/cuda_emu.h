/*
 * cuda_emu.h: a minimal CUDA execution emulator for host C++, enough to compile CUDA kernel
 * source unchanged with g++ and run a launch on the CPU with CUDA's thread, warp and block
 * semantics. papo uses it to run kernels/polarity.cu itself (cuda/kernelemu).
 *
 * Execution model. A launch runs its blocks one after another on the calling OS thread. Each
 * block is blockDim.x·y·z cooperative fibers, one per CUDA thread, each on its own stack (64 KiB
 * of mmap'd memory with a PROT_NONE guard page below it, so that a stack overflow faults instead
 * of corrupting a neighbour). A fiber runs until it waits at a barrier or exits, then hands over
 * directly to the next runnable fiber of the block (a switch is a few instructions on x86-64,
 * ucontext's swapcontext elsewhere; see CUDA_EMU_ASM_SWITCH). The barriers are
 *   - warp-level: __shfl_*_sync(mask, …) releases when every lane named in mask has arrived at
 *     the same shuffle (same mask, same source line); the last lane to arrive computes every
 *     lane's result, so a lane that runs ahead cannot overwrite a value another lane has yet to
 *     read;
 *   - block-level: __syncthreads, __syncthreads_or/_and/_count release when every thread of the
 *     block has arrived at the same barrier (same kind, same source line).
 * The schedule is deterministic: in order (the next runnable fiber after the current one,
 * cyclically), or, when the launch is given a nonzero seed, pseudo-random: at every barrier
 * arrival a random runnable lane of the warp of highest priority runs, the warp priorities
 * being redrawn at every block barrier (see pick). Warps then run through the code between two
 * block barriers in a random order, so that a missing barrier (a race on shared memory between
 * warps) shows as results that depend on the seed.
 *
 * What a GPU would turn into a hang or undefined behaviour is an error here, reported by
 * launch() as a code and a message rather than a hang:
 *   CUDA_EMU_ERR_DEADLOCK  no fiber can run but some have not exited (e.g. one warp at a
 *                          shuffle while another lane of it waits at __syncthreads);
 *   CUDA_EMU_ERR_BARRIER   a block barrier reached while some thread of the block has exited,
 *                          a thread exiting while others wait at one, or threads waiting at
 *                          different block barriers (kind or source line);
 *   CUDA_EMU_ERR_SHFL      a shuffle whose mask does not name the calling lane, names a lane
 *                          that has exited or does not exist, reads a lane outside the mask,
 *                          or lanes of one warp at different shuffles (mask or source line);
 *   CUDA_EMU_ERR_LAUNCH    a bad launch configuration, out of memory, a nested launch.
 * These rules are stricter than sm_70+ hardware in one respect: CUDA lets threads of a block
 * reach __syncthreads from different source lines, and allows exited threads to be named in a
 * shuffle mask; here both are errors, as both are bugs in kernels written for all hardware.
 *
 * Memory. __shared__ is `static thread_local`: a launch runs one block at a time on one OS
 * thread, so per-thread static storage is exactly one block's shared memory; thread_local (not
 * plain static) keeps launches on different OS threads (concurrent test goroutines, simulated
 * streams) apart. As on a GPU its contents are not initialised at block start: they hold
 * whatever the previous block (or launch on the same OS thread) left there. Dynamic shared memory
 * (extern __shared__) is not supported. Global memory is ordinary host memory; __ldcs is a
 * plain load.
 *
 * threadIdx, blockIdx, blockDim and gridDim are thread_local variables that the scheduler sets
 * before every switch into a fiber, so each fiber sees its own.
 *
 * Neither __CUDACC__ nor __CUDA_ARCH__ is defined: code with device-only paths (inline PTX) must
 * have host paths, which is what this emulator runs.
 *
 * AddressSanitizer: when compiled with -fsanitize=address, every fiber switch is announced with
 * __sanitizer_start/finish_switch_fiber, so ASan knows which stack is current, and a stack is
 * unpoisoned before it is reused. (go test -asan adds -fsanitize=address to the C flags only:
 * C++ files need CGO_CXXFLAGS="-O2 -g -fsanitize=address" as well.)
 */
#ifndef PAPO_CUDA_EMU_H
#define PAPO_CUDA_EMU_H

#ifndef __cplusplus
#error "cuda_emu.h is C++"
#endif
#if defined(__CUDACC__) || defined(__CUDA_ARCH__)
#error "cuda_emu.h emulates CUDA for a host compiler; do not compile it with nvcc"
#endif

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* The fiber switch: a few instructions of x86-64 assembly (the callee-saved registers, the stack
 * pointer, MXCSR and the x87 control word), or ucontext elsewhere or with -DCUDA_EMU_UCONTEXT.
 * glibc's swapcontext makes a sigprocmask system call per switch, which takes a lock that all
 * the threads of the process share: with it, the tests of cuda/kernelemu take ~4x as long, and
 * concurrent launches on different OS threads run one at a time. */
#if defined(__x86_64__) && !defined(CUDA_EMU_UCONTEXT)
#define CUDA_EMU_ASM_SWITCH 1
#else
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define CUDA_EMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CUDA_EMU_ASAN 1
#endif
#endif
#ifdef CUDA_EMU_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

/* ---- CUDA's vector types and built-in variables ---- */

struct uint3 {
	unsigned int x, y, z;
};

struct dim3 {
	unsigned int x, y, z;
	constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

struct alignas(16) uint4 {
	unsigned int x, y, z, w;
};

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

/* ---- CUDA's declaration specifiers ---- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local /* one block at a time per OS thread; see above */

/* ---- intrinsics (the barriers are macros, to record the source line of each call) ---- */

#ifdef __FILE_NAME__
#define CUDA_EMU_FILE __FILE_NAME__
#else
#define CUDA_EMU_FILE __FILE__
#endif

#define __syncthreads() (::cuda_emu::block_sync(::cuda_emu::BAR_SYNC, 0, CUDA_EMU_FILE, __LINE__), (void)0)
#define __syncthreads_or(p) ::cuda_emu::block_sync(::cuda_emu::BAR_OR, (p), CUDA_EMU_FILE, __LINE__)
#define __syncthreads_and(p) ::cuda_emu::block_sync(::cuda_emu::BAR_AND, (p), CUDA_EMU_FILE, __LINE__)
#define __syncthreads_count(p) ::cuda_emu::block_sync(::cuda_emu::BAR_COUNT, (p), CUDA_EMU_FILE, __LINE__)
#define __shfl_sync(...) ::cuda_emu::shfl(::cuda_emu::SHFL_IDX, CUDA_EMU_FILE, __LINE__, __VA_ARGS__)
#define __shfl_up_sync(...) ::cuda_emu::shfl(::cuda_emu::SHFL_UP, CUDA_EMU_FILE, __LINE__, __VA_ARGS__)
#define __shfl_down_sync(...) ::cuda_emu::shfl(::cuda_emu::SHFL_DOWN, CUDA_EMU_FILE, __LINE__, __VA_ARGS__)
#define __shfl_xor_sync(...) ::cuda_emu::shfl(::cuda_emu::SHFL_XOR, CUDA_EMU_FILE, __LINE__, __VA_ARGS__)

static inline uint4 __ldcs(const uint4 *p) { return *p; }

#define CUDA_EMU_OK 0
#define CUDA_EMU_ERR_DEADLOCK 1
#define CUDA_EMU_ERR_BARRIER 2
#define CUDA_EMU_ERR_SHFL 3
#define CUDA_EMU_ERR_LAUNCH 4

namespace cuda_emu {

enum BarKind { BAR_SYNC, BAR_OR, BAR_AND, BAR_COUNT };
enum ShflKind { SHFL_IDX, SHFL_UP, SHFL_DOWN, SHFL_XOR };
enum FiberState : unsigned char { READY, WAIT_BLOCK, WAIT_WARP, EXITED };

static const int kWarp = 32;

inline const char *bar_name(int k) {
	static const char *const names[] = {"__syncthreads", "__syncthreads_or", "__syncthreads_and", "__syncthreads_count"};
	return names[k];
}

inline const char *shfl_name(int k) {
	static const char *const names[] = {"__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync"};
	return names[k];
}

/* Ctx is a suspended execution context: a fiber's, or the scheduler's. */
#ifdef CUDA_EMU_ASM_SWITCH
struct Ctx {
	void *sp; /* the callee-saved registers and the return address are on the stack below it */
};

/* swap_asm(from, to) saves the current context on its stack, stores the stack pointer in
 * *from and continues at stack pointer to: the x86-64 System V callee-saved state. */
__attribute__((naked, noinline)) static void swap_asm(void ** /*from*/, void * /*to*/) {
	__asm__("pushq %rbp\n\t"
	        "pushq %rbx\n\t"
	        "pushq %r12\n\t"
	        "pushq %r13\n\t"
	        "pushq %r14\n\t"
	        "pushq %r15\n\t"
	        "subq $8, %rsp\n\t"
	        "stmxcsr (%rsp)\n\t"
	        "fnstcw 4(%rsp)\n\t"
	        "movq %rsp, (%rdi)\n\t"
	        "movq %rsi, %rsp\n\t"
	        "ldmxcsr (%rsp)\n\t"
	        "fldcw 4(%rsp)\n\t"
	        "addq $8, %rsp\n\t"
	        "popq %r15\n\t"
	        "popq %r14\n\t"
	        "popq %r13\n\t"
	        "popq %r12\n\t"
	        "popq %rbx\n\t"
	        "popq %rbp\n\t"
	        "ret");
}

/* start_asm is where a new fiber's first swap returns to: it calls r12 (the entry function),
 * which never returns. The stack pointer is 16-byte aligned here, as a call needs. For the
 * unwinders (ASan's reports, gdb), the return address is undefined: the call chain ends here. */
__attribute__((naked, noinline)) static void start_asm() {
	__asm__(".cfi_undefined rip\n\t"
	        "callq *%r12\n\t"
	        "ud2");
}

inline void ctx_make(Ctx *c, char *stack, size_t size, void (*entry)()) {
	uint64_t *top = (uint64_t *)(((uintptr_t)(stack + size) - 64) & ~(uintptr_t)15); /* 64 bytes of slack */
	uint64_t *sp = top - 8;
	uint32_t mxcsr;
	uint16_t fpucw;
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr));
	__asm__ volatile("fnstcw %0" : "=m"(fpucw));
	sp[7] = (uint64_t)(uintptr_t)&start_asm; /* return address; after ret, rsp = top */
	sp[6] = 0;                               /* rbp */
	sp[5] = 0;                               /* rbx */
	sp[4] = (uint64_t)(uintptr_t)entry;      /* r12 */
	sp[3] = sp[2] = sp[1] = 0;               /* r13, r14, r15 */
	sp[0] = (uint64_t)mxcsr | (uint64_t)fpucw << 32;
	c->sp = sp;
}

inline void ctx_swap(Ctx *from, Ctx *to) { swap_asm(&from->sp, to->sp); }
#else
struct Ctx {
	ucontext_t uc;
};

inline void ctx_make(Ctx *c, char *stack, size_t size, void (*entry)()) {
	getcontext(&c->uc);
	c->uc.uc_stack.ss_sp = stack;
	c->uc.uc_stack.ss_size = size;
	c->uc.uc_link = nullptr;
	makecontext(&c->uc, entry, 0);
}

inline void ctx_swap(Ctx *from, Ctx *to) { swapcontext(&from->uc, &to->uc); }
#endif

struct Fiber {
	Ctx ctx;
	char *stack;
	size_t stack_size;
	uint3 tid;
	int lin;         /* linear thread index in the block */
	void *asan_fake; /* ASan's fake stack while switched out */
};

/* A thread's state and barrier results, apart from its (large) Fiber so that the barriers
 * touch a few cache lines, not one per thread. */
struct Hot {
	uint64_t shfl_out; /* the value the last shuffle delivered to this lane */
	int bar_out;       /* the value the last block barrier delivered */
	FiberState state;
};

/* One warp's pending shuffle. */
struct WarpSync {
	int arrived;
	unsigned mask;
	int need;         /* lanes in mask */
	unsigned present; /* lanes the block has */
	unsigned exited;  /* lanes that have exited */
	int ready;        /* lanes that are READY */
	uint64_t prio;    /* its priority in the random schedule */
	int kind;
	const char *file;
	int line;
	uint64_t in[kWarp];
	int src[kWarp];
};

/* The block's pending barrier. */
struct BlockSync {
	int arrived;
	int kind;
	const char *file;
	int line;
	int acc;
};

struct Launch {
	void (*body)(void *);
	void *arg;
	dim3 grid, block;
	int nthreads, nwarps;
	Fiber *f;
	Hot *h;
	WarpSync *warps;
	char *map; /* the fiber stacks (stack_cache's mapping) */
	BlockSync bar;
	int cur, ready, exited;
	uint64_t rng; /* 0: in-order schedule */
	Ctx sched;
	void *sched_fake;
	const void *sched_bottom;
	size_t sched_size;
	bool from_sched;
	int err;
	char msg[1024];
};

inline thread_local Launch *current;

inline uint64_t next_rand(Launch *L) {
	uint64_t x = L->rng; /* xorshift64* */
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	L->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* jump saves the current context in from and continues at to (a fiber's stack, or the
 * scheduler's when bottom is its recorded stack). fake is null when the current fiber has
 * exited and will not be resumed. */
inline void jump(Launch *L, Ctx *from, void **fake, Ctx *to, const void *bottom, size_t size) {
#ifdef CUDA_EMU_ASAN
	__sanitizer_start_switch_fiber(fake, bottom, size);
#else
	(void)fake;
	(void)bottom;
	(void)size;
#endif
	ctx_swap(from, to);
#ifdef CUDA_EMU_ASAN
	__sanitizer_finish_switch_fiber(fake ? *fake : nullptr, nullptr, nullptr);
#endif
	(void)L;
}

/* fail records the first error and returns to the scheduler, abandoning the block. With
 * who set, the message starts with the current thread and block. */
[[noreturn]] inline void fail(Launch *L, int code, bool who, const char *fmt, ...) {
	Fiber *f = &L->f[L->cur];
	if (L->err == 0) {
		int n = 0;
		if (who) {
			n = snprintf(L->msg, sizeof L->msg, "thread (%u,%u,%u) of block (%u,%u,%u) ", f->tid.x, f->tid.y, f->tid.z,
			             blockIdx.x, blockIdx.y, blockIdx.z);
		}
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(L->msg + n, sizeof L->msg - (size_t)n, fmt, ap);
		va_end(ap);
		L->err = code;
	}
	jump(L, &f->ctx, &f->asan_fake, &L->sched, L->sched_bottom, L->sched_size);
	abort(); /* the scheduler never resumes a failed block */
}

/* make_ready and make_waiting move thread i in and out of the READY set. */
inline void make_ready(Launch *L, int i) {
	L->h[i].state = READY;
	L->ready++;
	L->warps[i / kWarp].ready++;
}

inline void make_waiting(Launch *L, int i, FiberState st) {
	L->h[i].state = st;
	L->ready--;
	L->warps[i / kWarp].ready--;
}

/* shuffle_priorities draws new warp priorities for the random schedule. */
inline void shuffle_priorities(Launch *L) {
	for (int w = 0; w < L->nwarps; w++) {
		L->warps[w].prio = next_rand(L);
	}
}

/*
 * pick returns a runnable fiber (possibly the current one), or -1. In order: the next one after
 * the current one. In the random schedule: a random runnable lane of the runnable warp of
 * highest priority, the priorities being drawn anew at every block barrier and, now and then
 * (1/256 picks), for one warp. So warps run in a random order through each stretch of code
 * between block barriers, as they may on a GPU where one warp runs far ahead of another (a
 * uniformly random pick would interleave the warps finely and almost never let one warp run a
 * whole stretch before another starts, which is what a missing barrier needs to show).
 */
inline int pick(Launch *L) {
	if (L->ready == 0) {
		return -1;
	}
	const int n = L->nthreads;
	if (L->rng == 0) {
		for (int k = 1; k <= n; k++) {
			int j = (L->cur + k) % n;
			if (L->h[j].state == READY) {
				return j;
			}
		}
	} else {
		uint64_t r = next_rand(L);
		if ((r & 255) == 0) {
			L->warps[(r >> 8) % (uint64_t)L->nwarps].prio = next_rand(L);
		}
		int best = -1;
		for (int w = 0; w < L->nwarps; w++) {
			if (L->warps[w].ready > 0 && (best < 0 || L->warps[w].prio > L->warps[best].prio)) {
				best = w;
			}
		}
		int k = (int)(next_rand(L) % (uint64_t)L->warps[best].ready);
		for (int j = best * kWarp; j < L->nthreads; j++) {
			if (L->h[j].state == READY && k-- == 0) {
				return j;
			}
		}
	}
	abort(); /* L->ready disagrees with the fibers' states */
}

/* append formats onto buf (n bytes, *len used), truncating. */
inline void append(char *buf, size_t n, size_t *len, const char *fmt, ...) {
	if (*len + 1 >= n) {
		return;
	}
	va_list ap;
	va_start(ap, fmt);
	int k = vsnprintf(buf + *len, n - *len, fmt, ap);
	va_end(ap);
	*len = k < 0 ? *len : (*len + (size_t)k < n ? *len + (size_t)k : n - 1);
}

[[noreturn]] inline void deadlock(Launch *L) {
	char waits[640];
	size_t len = 0;
	int at_block = 0;
	for (int i = 0; i < L->nthreads; i++) {
		at_block += L->h[i].state == WAIT_BLOCK;
	}
	waits[0] = 0;
	append(waits, sizeof waits, &len, "%d exited", L->exited);
	if (at_block > 0) {
		append(waits, sizeof waits, &len, ", %d at %s (%s:%d)", at_block, bar_name(L->bar.kind), L->bar.file, L->bar.line);
	}
	for (int w = 0; w < L->nwarps; w++) {
		const WarpSync &s = L->warps[w];
		if (s.arrived > 0) {
			append(waits, sizeof waits, &len, ", warp %d: %d lanes at %s (%s:%d, mask %#x)", w, s.arrived, shfl_name(s.kind),
			       s.file, s.line, s.mask);
		}
	}
	fail(L, CUDA_EMU_ERR_DEADLOCK, false, "deadlock in block (%u,%u,%u): no thread can run; of %d threads: %s", blockIdx.x,
	     blockIdx.y, blockIdx.z, L->nthreads, waits);
}

/* switch_to continues fiber j (no-op if it is the current one). */
inline void switch_to(Launch *L, int j, bool exiting) {
	Fiber *from = &L->f[L->cur];
	if (j == L->cur) {
		return;
	}
	Fiber *to = &L->f[j];
	L->cur = j;
	threadIdx = to->tid;
	jump(L, &from->ctx, exiting ? nullptr : &from->asan_fake, &to->ctx, to->stack, to->stack_size);
}

/* park blocks the current fiber (already marked waiting) until a barrier releases it. */
inline void park(Launch *L) {
	int j = pick(L);
	if (j < 0) {
		deadlock(L);
	}
	switch_to(L, j, false);
}

/* reschedule, in the random schedule, hands over to a runnable fiber picked after a release. */
inline void reschedule(Launch *L) {
	if (L->rng != 0) {
		switch_to(L, pick(L), false);
	}
}

inline int block_sync(int kind, int pred, const char *file, int line) {
	Launch *L = current;
	if (L == nullptr) {
		fprintf(stderr, "cuda_emu: %s outside a launch\n", bar_name(kind));
		abort();
	}
	if (L->exited > 0) {
		fail(L, CUDA_EMU_ERR_BARRIER, true, "reaches %s (%s:%d) after %d threads of its block exited (a GPU hangs or misbehaves)", bar_name(kind), file, line, L->exited);
	}
	BlockSync &b = L->bar;
	if (b.arrived == 0) {
		b.kind = kind;
		b.file = file;
		b.line = line;
		b.acc = kind == BAR_AND ? 1 : 0;
	} else if (b.kind != kind || b.line != line || (b.file != file && strcmp(b.file, file) != 0)) {
		fail(L, CUDA_EMU_ERR_BARRIER, true, "reaches %s (%s:%d) while %d threads wait at %s (%s:%d): divergent block barriers",
		     bar_name(kind), file, line, b.arrived, bar_name(b.kind), b.file, b.line);
	}
	switch (kind) {
	case BAR_OR:
		b.acc |= pred != 0;
		break;
	case BAR_AND:
		b.acc &= pred != 0;
		break;
	case BAR_COUNT:
		b.acc += pred != 0;
		break;
	}
	if (++b.arrived < L->nthreads) {
		make_waiting(L, L->cur, WAIT_BLOCK);
		park(L);
		return L->h[L->cur].bar_out;
	}
	/* Every thread is here (none has exited): release them all. */
	L->ready = 0;
	for (int w = 0; w < L->nwarps; w++) {
		L->warps[w].ready = 0;
	}
	for (int i = 0; i < L->nthreads; i++) {
		make_ready(L, i);
		L->h[i].bar_out = b.acc;
	}
	if (L->rng != 0) {
		shuffle_priorities(L);
	}
	b.arrived = 0;
	reschedule(L);
	return L->h[L->cur].bar_out;
}

template <class T> inline T shfl(int kind, const char *file, int line, unsigned mask, T v, int arg, int width = kWarp) {
	static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of a value wider than 8 bytes");
	Launch *L = current;
	if (L == nullptr) {
		fprintf(stderr, "cuda_emu: %s outside a launch\n", shfl_name(kind));
		abort();
	}
	const int lane = L->cur % kWarp, w = L->cur / kWarp, base = w * kWarp;
	if (!((mask >> lane) & 1u)) {
		fail(L, CUDA_EMU_ERR_SHFL, true, "calls %s (%s:%d) with mask %#x that does not name its lane %d", shfl_name(kind),
		     file, line, mask, lane);
	}
	if (width < 1 || width > kWarp || (width & (width - 1)) != 0) {
		fail(L, CUDA_EMU_ERR_SHFL, true, "calls %s (%s:%d) with width %d", shfl_name(kind), file, line, width);
	}
	WarpSync &s = L->warps[w];
	if ((mask & ~s.present) != 0) {
		fail(L, CUDA_EMU_ERR_SHFL, true, "calls %s (%s:%d) with mask %#x naming lane %d, which the block does not have",
		     shfl_name(kind), file, line, mask, __builtin_ctz(mask & ~s.present));
	}
	if ((mask & s.exited) != 0) {
		fail(L, CUDA_EMU_ERR_SHFL, true, "calls %s (%s:%d) with mask %#x naming lane %d, which has exited", shfl_name(kind),
		     file, line, mask, __builtin_ctz(mask & s.exited));
	}
	if (s.arrived == 0) {
		s.mask = mask;
		s.need = __builtin_popcount(mask);
		s.kind = kind;
		s.file = file;
		s.line = line;
	} else if (s.mask != mask || s.kind != kind || s.line != line || (s.file != file && strcmp(s.file, file) != 0)) {
		fail(L, CUDA_EMU_ERR_SHFL, true, "(warp %d) reaches %s (%s:%d, mask %#x) while %d lanes wait at %s (%s:%d, mask %#x): divergent shuffles",
		     w, shfl_name(kind), file, line, mask, s.arrived, shfl_name(s.kind), s.file, s.line, s.mask);
	}
	/* The source lane, as CUDA defines it for each kind within segments of width lanes. */
	const int seg = lane & ~(width - 1);
	int src = lane;
	switch (kind) {
	case SHFL_IDX:
		src = seg + (arg & (width - 1));
		break;
	case SHFL_UP:
		src = lane - arg >= seg ? lane - arg : lane;
		break;
	case SHFL_DOWN:
		src = lane + arg < seg + width ? lane + arg : lane;
		break;
	case SHFL_XOR:
		src = lane ^ arg;
		if (src < 0 || src >= seg + width) { /* a later segment (or out of the warp): own value */
			src = lane;
		}
		break;
	}
	s.in[lane] = 0;
	memcpy(&s.in[lane], &v, sizeof v);
	s.src[lane] = src;
	if (++s.arrived < s.need) {
		make_waiting(L, L->cur, WAIT_WARP);
		park(L);
	} else {
		/* The last lane: deliver every lane's value, release the others. */
		for (int l = 0; l < kWarp; l++) {
			if (!((mask >> l) & 1u)) {
				continue;
			}
			if (!((mask >> s.src[l]) & 1u)) {
				fail(L, CUDA_EMU_ERR_SHFL, false, "%s (%s:%d, mask %#x): lane %d of warp %d reads lane %d, outside the mask",
				     shfl_name(kind), file, line, mask, l, w, s.src[l]);
			}
			Hot *g = &L->h[base + l];
			g->shfl_out = s.in[s.src[l]];
			if (base + l != L->cur) {
				make_ready(L, base + l);
			}
		}
		s.arrived = 0;
		reschedule(L);
	}
	T r;
	memcpy(&r, &L->h[L->cur].shfl_out, sizeof r);
	return r;
}

/* thread_exit ends the current fiber: the kernel body has returned. */
[[noreturn]] inline void thread_exit(Launch *L) {
	Fiber *f = &L->f[L->cur];
	make_waiting(L, L->cur, EXITED);
	L->warps[f->lin / kWarp].exited |= 1u << (f->lin % kWarp);
	L->exited++;
	if (L->bar.arrived > 0) {
		fail(L, CUDA_EMU_ERR_BARRIER, true, "exits while %d threads of its block wait at %s (%s:%d) (a GPU hangs or misbehaves)", L->bar.arrived, bar_name(L->bar.kind), L->bar.file, L->bar.line);
	}
	const WarpSync &s = L->warps[f->lin / kWarp];
	if (s.arrived > 0 && ((s.mask >> (f->lin % kWarp)) & 1u)) {
		fail(L, CUDA_EMU_ERR_SHFL, true, "exits while %d lanes of its warp wait for it at %s (%s:%d, mask %#x)", s.arrived,
		     shfl_name(s.kind), s.file, s.line, s.mask);
	}
	int j = pick(L);
	if (j >= 0) {
		switch_to(L, j, true);
	} else if (L->exited < L->nthreads) {
		deadlock(L);
	} else {
		jump(L, &f->ctx, nullptr, &L->sched, L->sched_bottom, L->sched_size); /* the block is done */
	}
	abort(); /* an exited fiber is never resumed */
}

inline void fiber_entry() {
	Launch *L = current;
#ifdef CUDA_EMU_ASAN
	const void *bottom;
	size_t size;
	__sanitizer_finish_switch_fiber(nullptr, &bottom, &size);
	if (L->from_sched) { /* the first fiber of a block learns the scheduler's stack */
		L->sched_bottom = bottom;
		L->sched_size = size;
	}
#endif
	L->from_sched = false;
	L->body(L->arg);
	thread_exit(L);
}

inline int launch_error(char *msg, size_t msglen, int code, const char *text) {
	if (msg != nullptr && msglen > 0) {
		snprintf(msg, msglen, "%s", text);
	}
	return code;
}

/*
 * StackCache keeps the calling OS thread's fiber stacks (one mapping: per thread a PROT_NONE
 * guard page, then its stack) from one launch to the next: mapping, protecting and faulting in
 * 256 fresh stacks per launch cost more than launches over a few rows compute (keeping them made
 * the pipeline tests' random batches, launches of 1 to 16 rows, 14 s → 8.6 s). The mapping
 * is replaced when a launch needs other sizes, and unmapped when the thread exits.
 */
struct StackCache {
	char *map = nullptr;
	size_t size = 0, nthreads = 0, stack_size = 0;

	void release() {
		if (map != nullptr) {
#ifdef CUDA_EMU_ASAN
			__asan_unpoison_memory_region(map, size); /* a later mapping here must not inherit marks */
#endif
			munmap(map, size);
		}
		map = nullptr;
		size = nthreads = stack_size = 0;
	}

	/* get returns n stacks of stack_size bytes (each after a guard page), or null. */
	char *get(size_t n, size_t stack_size_, size_t page) {
		if (map != nullptr && n == nthreads && stack_size_ == stack_size) {
			return map;
		}
		release();
		size_t sz = n * (stack_size_ + page);
		char *m = (char *)mmap(nullptr, sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED) {
			return nullptr;
		}
		for (size_t i = 0; i < n; i++) {
			if (mprotect(m + i * (stack_size_ + page), page, PROT_NONE) != 0) {
				munmap(m, sz);
				return nullptr;
			}
		}
		map = m;
		size = sz;
		nthreads = n;
		stack_size = stack_size_;
		return map;
	}

	~StackCache() { release(); }
};

static thread_local StackCache stack_cache;

/*
 * launch runs body(arg) as a kernel: grid blocks of block threads, one block after another on
 * the calling thread, each CUDA thread a fiber with its own stack of stack_size bytes. seed 0
 * schedules the fibers in order; any other seed, in a pseudo-random order drawn from it. It
 * returns CUDA_EMU_OK, or an error code with a message in msg (msglen bytes, may be null).
 */
inline int launch(dim3 grid, dim3 block, void (*body)(void *), void *arg, uint64_t seed, char *msg, size_t msglen,
                  size_t stack_size = 64 << 10) {
	if (msg != nullptr && msglen > 0) {
		msg[0] = 0;
	}
	if (current != nullptr) {
		return launch_error(msg, msglen, CUDA_EMU_ERR_LAUNCH, "nested launch (dynamic parallelism is not emulated)");
	}
	const uint64_t nthreads = (uint64_t)block.x * block.y * block.z;
	if (nthreads < 1 || nthreads > 1024 || block.z > 64) {
		return launch_error(msg, msglen, CUDA_EMU_ERR_LAUNCH, "invalid block dimensions (1 to 1024 threads)");
	}
	if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.x > 0x7fffffffu || grid.y > 65535 || grid.z > 65535) {
		return launch_error(msg, msglen, CUDA_EMU_ERR_LAUNCH, "invalid grid dimensions");
	}
	const size_t page = (size_t)sysconf(_SC_PAGESIZE);
	stack_size = (stack_size + page - 1) / page * page;
	Launch *L = (Launch *)calloc(1, sizeof(Launch));
	if (L == nullptr) {
		return launch_error(msg, msglen, CUDA_EMU_ERR_LAUNCH, "out of memory");
	}
	L->body = body;
	L->arg = arg;
	L->grid = grid;
	L->block = block;
	L->nthreads = (int)nthreads;
	L->nwarps = (L->nthreads + kWarp - 1) / kWarp;
	L->rng = seed == 0 ? 0 : seed;
	L->f = (Fiber *)calloc((size_t)L->nthreads, sizeof(Fiber));
	L->h = (Hot *)calloc((size_t)L->nthreads, sizeof(Hot));
	L->warps = (WarpSync *)calloc((size_t)L->nwarps, sizeof(WarpSync));
	int code = CUDA_EMU_OK;
	L->map = stack_cache.get((size_t)L->nthreads, stack_size, page);
	if (L->f == nullptr || L->h == nullptr || L->warps == nullptr || L->map == nullptr) {
		code = launch_error(msg, msglen, CUDA_EMU_ERR_LAUNCH, "out of memory, or mprotect of a stack guard page failed");
	}
	for (int i = 0; code == CUDA_EMU_OK && i < L->nthreads; i++) {
		Fiber *f = &L->f[i];
		char *guard = L->map + (size_t)i * (stack_size + page);
		f->stack = guard + page;
		f->stack_size = stack_size;
		f->lin = i;
		f->tid.x = (unsigned)i % block.x;
		f->tid.y = (unsigned)i / block.x % block.y;
		f->tid.z = (unsigned)i / (block.x * block.y);
	}
	if (code == CUDA_EMU_OK) {
		current = L;
		blockDim = block;
		gridDim = grid;
		for (unsigned bz = 0; bz < grid.z && L->err == 0; bz++) {
			for (unsigned by = 0; by < grid.y && L->err == 0; by++) {
				for (unsigned bx = 0; bx < grid.x && L->err == 0; bx++) {
					blockIdx.x = bx;
					blockIdx.y = by;
					blockIdx.z = bz;
					memset(&L->bar, 0, sizeof L->bar);
					memset(L->warps, 0, (size_t)L->nwarps * sizeof(WarpSync));
					for (int w = 0; w < L->nwarps; w++) {
						const int lanes = L->nthreads - w * kWarp < kWarp ? L->nthreads - w * kWarp : kWarp;
						L->warps[w].present = lanes == kWarp ? ~0u : (1u << lanes) - 1;
					}
					L->ready = 0;
					L->exited = 0;
					for (int i = 0; i < L->nthreads; i++) {
						Fiber *f = &L->f[i];
#ifdef CUDA_EMU_ASAN
						/* The frames a fiber left on its stack (an exited thread never returns
						 * from its last switch) leave ASan's redzone marks behind. */
						__asan_unpoison_memory_region(f->stack, f->stack_size);
#endif
						ctx_make(&f->ctx, f->stack, f->stack_size, fiber_entry);
						make_ready(L, i);
					}
					L->cur = L->nthreads - 1; /* in order, the first pick is thread 0 */
					if (L->rng != 0) {
						shuffle_priorities(L);
					}
					L->cur = pick(L);
					L->from_sched = true;
					threadIdx = L->f[L->cur].tid;
					jump(L, &L->sched, &L->sched_fake, &L->f[L->cur].ctx, L->f[L->cur].stack, L->f[L->cur].stack_size);
				}
			}
		}
		current = nullptr;
		code = L->err;
		if (code != CUDA_EMU_OK) {
			launch_error(msg, msglen, code, L->msg);
		}
	}
	free(L->warps);
	free(L->h);
	free(L->f);
	free(L);
	return code;
}

} // namespace cuda_emu

#endif /* PAPO_CUDA_EMU_H */
