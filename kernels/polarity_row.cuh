/*
 * polarity_row.cuh: the arithmetic of papo's CUDA kernels (docs/MATH.md §2 and §3), written once for
 * the device and the host.
 *
 * Under nvcc every function here is __host__ __device__ and the kernels in polarity.cu call
 * them. Compiled as plain C99 (cuda/hostref does so with cgo), the same functions run on a
 * machine without a GPU, where the tests compare them with the float64 reference on the shared
 * table of hard rows. The only device/host difference is the exponential (ex2.approx.ftz on the
 * device, libm exp2f on the host: both ≤ 2 ulp) and the NaN-propagating maximum (max.NaN.f32 on
 * the device, an explicit test on the host). Every multiply-add is written as fmaf so that nvcc
 * has nothing left to contract and both sides round identically.
 *
 * The row state (pp_state) is docs/MATH.md §3's four shifted sums in base 2: with the running
 * maximum m of the raw logits z and c = log2(e)/τ, each element contributes t = 2^w with
 * w = (z − m)·c = (u − M)·log2(e) ≤ 0. So t = e^{u−M} exactly as in docs/MATH.md, and the sums of
 * t·w are docs/MATH.md's s1 and s3 divided by ln 2 (one exponent instruction per element, no scaling
 * of its argument). m is kept in raw logit units so that the sampled token's u_a − M is
 * (z_a − m)/τ, exactly 0 when the sampled token is the maximum (docs/MATH.md §3's peaked row).
 *
 * s0 and s2 are kept as 1 + rest0 and 1 + rest2: the 1 is one element attaining m, excluded from
 * the float32 sums, so that log s0 = log1p(rest0) keeps its relative precision on a peaked row
 * (there rest0 ≈ 1e-10; a float32 sum that included the 1 would round it away).
 */
#ifndef PAPO_POLARITY_ROW_CUH
#define PAPO_POLARITY_ROW_CUH

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define PP_HD static __host__ __device__ __forceinline__
#else
#define PP_HD static inline
#endif

/* Launch shape. The Go model of the reduction tree (kernels/tree_test.go) reads these. */
#define PP_BLOCK_THREADS 256 /* threads per row (one block per row) */
#define PP_WARP 32
#define PP_WARPS (PP_BLOCK_THREADS / PP_WARP)
#define PP_VEC_BYTES 16   /* one 16-byte load per vector */
#define PP_GROUP_ELEMS 16 /* elements per running-max update: 4 float32 or 2 16-bit vectors */

/* Element types, as polarity.Dtype numbers them. */
#define PP_F32 0
#define PP_F16 1
#define PP_BF16 2

/* Row flags (pp_row_in.flags). */
#define PP_HAS_ADV 1 /* the token has an advantage */
#define PP_HAS_OLD 2 /* the token has log π_old(a) */
#define PP_TRAINED 4 /* mask true (or no mask column) */

/* Row status (the kernel's status column). */
#define PP_OK 0
#define PP_ERR_LOGIT 1     /* a NaN or +Inf logit */
#define PP_ERR_NO_FINITE 2 /* every logit −Inf */
#define PP_ERR_ADV 3       /* advantage present but not finite */
#define PP_ERR_OLD 4       /* old log-probability needed but not finite */

/* Output columns, each nrows floats, in this order (the Go engine reads them so). */
#define PP_OUT_ENTROPY 0
#define PP_OUT_LOGPROB 1
#define PP_OUT_SAMPLED 2
#define PP_OUT_CORRECTION 3
#define PP_OUT_FACTOR 4
#define PP_OUT_POLARITY 5
#define PP_OUT_DELTA_H 6
#define PP_OUT_COLUMNS 7

/*
 * Exponents below PP_W_FLOOR (base 2) are clamped to it: 2^-200 is 0 in float32, so −Inf
 * logits and the excluded maximum contribute exactly 0 to every sum (t·w = 0·(−200), no NaN).
 */
#define PP_W_FLOOR (-200.0f)

#define PP_LN2 0.693147180559945309417232121458176568
#define PP_LOG2E 1.44269504088896340735992468100189214

/* pp_row_in is one token row's inputs besides its logits (24 bytes; the Go engine writes them). */
typedef struct {
	double adv;        /* A, when flags & PP_HAS_ADV */
	float old_logprob; /* log π_old(a), when flags & PP_HAS_OLD */
	int32_t token;     /* sampled token a, 0 ≤ a < V (checked by the caller) */
	int32_t flags;     /* PP_HAS_ADV | PP_HAS_OLD | PP_TRAINED */
	int32_t pad;
} pp_row_in;

/* pp_params are docs/MATH.md §2's per-run constants. */
typedef struct {
	double tau, lr, clip_low, clip_high; /* τ, η, ε_low, ε_high (+Inf: no clipping) */
	int natural;                         /* T_npg = −(log π_a + H) instead of T = C − S_a */
} pp_params;

/*
 * pp_state is one thread's, warp's or row's share of the sums. The empty state (no element
 * above −Inf) has m = −Inf, rest0 = rest2 = −1 (so s0 = s2 = 0) and s1 = s3 = 0.
 */
typedef struct {
	float m;     /* running maximum of the raw logits z */
	float rest0; /* s0 − 1, s0 = Σ 2^w */
	float s1;    /* Σ 2^w·w ≤ 0 */
	float rest2; /* s2 − 1, s2 = Σ 2^{2w} */
	float s3;    /* Σ 2^{2w}·w ≤ 0 */
} pp_state;

PP_HD pp_state pp_empty(void) {
	pp_state s;
	s.m = -INFINITY;
	s.rest0 = -1.0f;
	s.s1 = 0.0f;
	s.rest2 = -1.0f;
	s.s3 = 0.0f;
	return s;
}

PP_HD float pp_ex2(float w) {
#ifdef __CUDA_ARCH__
	float r;
	asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(w));
	return r;
#else
	return exp2f(w);
#endif
}

/* pp_max_nan is max(a, b), NaN when either is NaN (a NaN logit must not hide behind fmaxf). */
PP_HD float pp_max_nan(float a, float b) {
#ifdef __CUDA_ARCH__
	float r;
	asm("max.NaN.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
	return r;
#else
	if (a != a || b != b) {
		return NAN;
	}
	return a > b ? a : b;
#endif
}

PP_HD float pp_bits_f32(uint32_t b) {
#ifdef __CUDA_ARCH__
	return __uint_as_float(b);
#else
	float f;
	memcpy(&f, &b, sizeof f);
	return f;
#endif
}

/* pp_f16 decodes IEEE binary16 bits exactly (subnormals, ±Inf and NaN included). */
PP_HD float pp_f16(uint32_t h) {
#ifdef __CUDA_ARCH__
	float f;
	unsigned short hs = (unsigned short)h;
	asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(hs));
	return f;
#else
	uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
	if (exp == 0) { /* ±0 and subnormals: mant·2^-24, exact */
		float f = (float)mant * (1.0f / 16777216.0f);
		uint32_t b;
		memcpy(&b, &f, sizeof b);
		return pp_bits_f32(b | sign);
	}
	if (exp == 0x1f) {
		return pp_bits_f32(sign | 0x7f800000u | (mant << 13));
	}
	return pp_bits_f32(sign | ((exp + 127 - 15) << 23) | (mant << 13));
#endif
}

/* pp_decode16 turns one 16-byte vector (4 words) of dtype dt into 16/size floats. */
PP_HD void pp_decode16(int dt, const uint32_t w[4], float *z) {
	int k;
	for (k = 0; k < 4; k++) {
		if (dt == PP_F32) {
			z[k] = pp_bits_f32(w[k]);
		} else if (dt == PP_BF16) {
			z[2 * k] = pp_bits_f32(w[k] << 16);
			z[2 * k + 1] = pp_bits_f32(w[k] & 0xffff0000u);
		} else {
			z[2 * k] = pp_f16(w[k] & 0xffffu);
			z[2 * k + 1] = pp_f16(w[k] >> 16);
		}
	}
}

/* pp_load16 reads 16 aligned bytes; on the device a streaming load (read once, no L1 reuse). */
PP_HD void pp_load16(const void *p, uint32_t w[4]) {
#ifdef __CUDA_ARCH__
	uint4 q = __ldcs((const uint4 *)p);
	w[0] = q.x;
	w[1] = q.y;
	w[2] = q.z;
	w[3] = q.w;
#else
	memcpy(w, p, 16);
#endif
}

/* pp_load1 reads element j of a row as float. */
PP_HD float pp_load1(int dt, const void *row, long long j) {
	if (dt == PP_F32) {
		return ((const float *)row)[j];
	}
	uint32_t h = ((const uint16_t *)row)[j];
	return dt == PP_BF16 ? pp_bits_f32(h << 16) : pp_f16(h);
}

PP_HD int pp_dtype_size(int dt) { return dt == PP_F32 ? 4 : 2; }

/*
 * pp_update folds n raw logits z (one group) into st at c = log2(e)/τ. The group's maximum is
 * taken first, so the state is rescaled at most once per group. A NaN or +Inf in the group sets
 * *bad and leaves st alone (the row is a data error); −Inf elements contribute nothing.
 */
PP_HD void pp_update(pp_state *st, int *bad, const float *z, int n, float c) {
	float cm = z[0], thr = NAN;
	int k;
	for (k = 1; k < n; k++) {
		cm = pp_max_nan(cm, z[k]);
	}
	if (!(cm <= FLT_MAX)) { /* NaN, +Inf, or every element −Inf */
		if (cm != -INFINITY) {
			*bad = 1;
		}
		return;
	}
	if (cm > st->m) {
		/* New maximum: the old sums move to the new shift (d ≤ 0; the old maximum joins
		 * rest0), and the first element equal to cm becomes the state's implicit 1. */
		float d = fmaxf((st->m - cm) * c, PP_W_FLOOR);
		float r = pp_ex2(d), r2 = r * r;
		float s0 = 1.0f + st->rest0, s2 = 1.0f + st->rest2;
		st->s1 = r * fmaf(d, s0, st->s1);
		st->s3 = r2 * fmaf(d, s2, st->s3);
		st->rest0 = r * s0;
		st->rest2 = r2 * s2;
		st->m = cm;
		thr = cm;
	}
	for (k = 0; k < n; k++) {
		float w = fmaxf((z[k] - st->m) * c, PP_W_FLOOR);
		if (z[k] == thr) { /* the new maximum itself: excluded once, ties after it count */
			w = PP_W_FLOOR;
			thr = NAN;
		}
		float t = pp_ex2(w);
		float t2 = t * t;
		st->rest0 += t;
		st->s1 = fmaf(t, w, st->s1);
		st->rest2 += t2;
		st->s3 = fmaf(t2, w, st->s3);
	}
}

/*
 * pp_merge is docs/MATH.md §3's associative merge of the states of two disjoint sets of elements:
 * hi (the larger maximum; a on a tie) keeps its implicit 1, lo's whole s0 = 1 + rest0 joins
 * rest0 scaled by 2^d, d = (m_lo − m_hi)·c ≤ 0. Empty states need no test: d clamps to the floor,
 * 2^d = 0 and s0 = s2 = 0, so an empty lo adds exactly nothing and two empties stay empty.
 */
PP_HD pp_state pp_merge(pp_state a, pp_state b, float c) {
	pp_state hi = a, lo = b, o;
	if (b.m > a.m) {
		hi = b;
		lo = a;
	}
	float d = fmaxf((lo.m - hi.m) * c, PP_W_FLOOR); /* NaN (two empties) → floor */
	float r = pp_ex2(d), r2 = r * r;
	float s0 = 1.0f + lo.rest0, s2 = 1.0f + lo.rest2;
	o.m = hi.m;
	o.rest0 = fmaf(r, s0, hi.rest0);
	o.s1 = fmaf(r, fmaf(d, s0, lo.s1), hi.s1);
	o.rest2 = fmaf(r2, s2, hi.rest2);
	o.s3 = fmaf(r2, fmaf(d, s2, lo.s3), hi.s3);
	return o;
}

/*
 * pp_strip folds thread tid's share of one row (V logits of dtype dt at row, nthreads threads
 * per row) into st. The row is split into a head (elements before the first 16-byte boundary,
 * fewer than one vector), a body of 16-byte vectors and a tail. Thread tid takes body vectors
 * tid, tid + T, tid + 2T, … (T = nthreads), so a warp's loads cover 512 contiguous bytes; it
 * folds them in groups of PP_GROUP_ELEMS elements (vectors j, j+T, …), then single vectors,
 * then head elements tid, tid + T, … and tail elements likewise (in the kernel, T = 256 exceeds
 * the head and tail lengths, so each thread takes at most one of each). The Go model in
 * kernels/tree_test.go walks the same order.
 */
PP_HD void pp_strip(pp_state *st, int *bad, int dt, const void *row, long long V, int tid, int nthreads, float c) {
	const long long es = pp_dtype_size(dt), per = PP_VEC_BYTES / es, gv = PP_GROUP_ELEMS / per;
	const long long T = nthreads;
	long long head = ((PP_VEC_BYTES - (long long)((uintptr_t)row & (PP_VEC_BYTES - 1))) & (PP_VEC_BYTES - 1)) / es;
	if (head > V) {
		head = V;
	}
	const long long nvec = (V - head) / per, tail = V - head - nvec * per;
	const char *body = (const char *)row + head * es;
	float z[PP_GROUP_ELEMS];
	uint32_t w[4], cur[PP_GROUP_ELEMS / 4][4], next[PP_GROUP_ELEMS / 4][4];
	long long j = tid, g, k;
	/* Groups of gv vectors. The next group's loads are issued before the current group is
	 * folded, so every thread keeps a group of loads in flight while it computes: the memory
	 * parallelism does not depend on how the warp schedulers interleave warps. */
	if (j + (gv - 1) * T < nvec) {
		for (g = 0; g < gv; g++) {
			pp_load16(body + (j + g * T) * PP_VEC_BYTES, cur[g]);
		}
	}
	for (; j + (gv - 1) * T < nvec; j += gv * T) {
		const long long jn = j + gv * T;
		if (jn + (gv - 1) * T < nvec) {
			for (g = 0; g < gv; g++) {
				pp_load16(body + (jn + g * T) * PP_VEC_BYTES, next[g]);
			}
		}
		for (g = 0; g < gv; g++) {
			pp_decode16(dt, cur[g], z + g * per);
		}
		pp_update(st, bad, z, PP_GROUP_ELEMS, c);
		for (g = 0; g < gv; g++) {
			for (k = 0; k < 4; k++) {
				cur[g][k] = next[g][k];
			}
		}
	}
	for (; j < nvec; j += T) {
		pp_load16(body + j * PP_VEC_BYTES, w);
		pp_decode16(dt, w, z);
		pp_update(st, bad, z, (int)per, c);
	}
	for (j = tid; j < head; j += T) { /* a single pass; in the kernel (T > 16) at most once */
		z[0] = pp_load1(dt, row, j);
		pp_update(st, bad, z, 1, c);
	}
	for (j = tid; j < tail; j += T) {
		z[0] = pp_load1(dt, row, head + nvec * per + j);
		pp_update(st, bad, z, 1, c);
	}
}

/*
 * pp_finish is docs/MATH.md §2 for one token, in float64, from the row's merged state, the sampled
 * token's raw logit z_a and the row's inputs; it mirrors polarity.Finish (the CPU engine's
 * shared token step) rule for rule. It writes the seven output columns (as float32) to
 * out[k·stride] and returns the row status. Where the status is an error the outputs written so
 * far are partial, as the CPU engine's are.
 */
PP_HD int pp_finish(pp_state st, int bad, float z_a, pp_row_in in, pp_params p, float *out, long long stride) {
	if (bad) {
		return PP_ERR_LOGIT;
	}
	if (st.m == -INFINITY) {
		return PP_ERR_NO_FINITE;
	}
	const double tau = p.tau;
	const double M = (double)st.m / tau;
	const double s0 = 1.0 + (double)st.rest0, s2 = 1.0 + (double)st.rest2;
	const double logS0 = log1p((double)st.rest0);
	const double shift = PP_LN2 * (double)st.s1 / s0; /* μ − M ≤ 0 */
	const double H = logS0 - shift;                     /* two non-negative terms */
	const double C = (PP_LN2 * (double)st.s3 - shift * s2) / (s0 * s0);
	double logpi, S;
	if (z_a == -INFINITY) {
		logpi = -INFINITY;
		S = 0.0;
	} else {
		const double va = (double)z_a / tau - M; /* exactly 0 when a attains the maximum */
		logpi = va - logS0;
		S = exp(logpi) * (va - shift);
	}
	const double T = p.natural ? -(logpi + H) : C - S;
	double P = 0.0, dH = 0.0;
	int status = PP_OK;
	if (in.flags & PP_HAS_ADV) {
		const double A = in.adv;
		if (!(A - A == 0.0)) { /* NaN or ±Inf */
			status = PP_ERR_ADV;
		} else {
			if (A != 0.0) {
				P = A * T;
			}
			if ((in.flags & PP_TRAINED) && P != 0.0) {
				double ratio = 1.0;
				int grad = 1;
				if (in.flags & PP_HAS_OLD) {
					const double old = (double)in.old_logprob;
					if (!(old - old == 0.0)) {
						status = PP_ERR_OLD;
						grad = 0;
					} else if (logpi == -INFINITY) {
						grad = 0; /* r = 0: no gradient */
					} else {
						ratio = exp(logpi - old);
						if ((A > 0.0 && ratio > 1.0 + p.clip_high) || (A < 0.0 && ratio < 1.0 - p.clip_low)) {
							grad = 0; /* clipped by PPO */
						}
					}
				}
				if (grad) {
					dH = p.lr / (tau * tau) * ratio * P;
				}
			}
		}
	}
	out[PP_OUT_ENTROPY * stride] = (float)H;
	out[PP_OUT_LOGPROB * stride] = (float)logpi;
	out[PP_OUT_SAMPLED * stride] = (float)S;
	out[PP_OUT_CORRECTION * stride] = (float)C;
	out[PP_OUT_FACTOR * stride] = (float)T;
	out[PP_OUT_POLARITY * stride] = (float)P;
	out[PP_OUT_DELTA_H * stride] = (float)dH;
	return status;
}

#ifndef __CUDACC__
/*
 * pp_row_tree is the kernel's whole reduction for one row, run on the host: PP_BLOCK_THREADS
 * strips, then in each warp the xor-shuffle tree (offsets 16, 8, 4, 2, 1; every lane merges its
 * own state with its partner's, own first, as __shfl_xor_sync delivers them), then warp 0
 * merging the warps' lane-0 states the same way (lanes ≥ PP_WARPS empty). It returns lane 0's
 * state and ORs the NaN/+Inf flags into *bad. pp_row_seq is the single pass (one thread).
 */
static inline pp_state pp_row_tree(int *bad, int dt, const void *row, long long V, float c) {
	pp_state lanes[PP_BLOCK_THREADS], next[PP_WARP], warps[PP_WARPS];
	int t, w, l, off;
	*bad = 0;
	for (t = 0; t < PP_BLOCK_THREADS; t++) {
		int b = 0;
		lanes[t] = pp_empty();
		pp_strip(&lanes[t], &b, dt, row, V, t, PP_BLOCK_THREADS, c);
		*bad |= b;
	}
	for (w = 0; w < PP_WARPS; w++) {
		pp_state *lane = lanes + w * PP_WARP;
		for (off = PP_WARP / 2; off > 0; off /= 2) {
			for (l = 0; l < PP_WARP; l++) {
				next[l] = pp_merge(lane[l], lane[l ^ off], c);
			}
			memcpy(lane, next, sizeof next);
		}
		warps[w] = lane[0];
	}
	for (l = 0; l < PP_WARP; l++) {
		next[l] = l < PP_WARPS ? warps[l] : pp_empty();
	}
	for (off = PP_WARPS / 2; off > 0; off /= 2) {
		pp_state tmp[PP_WARP];
		for (l = 0; l < PP_WARP; l++) {
			tmp[l] = pp_merge(next[l], next[l ^ off], c);
		}
		memcpy(next, tmp, sizeof tmp);
	}
	return next[0];
}

static inline pp_state pp_row_seq(int *bad, int dt, const void *row, long long V, float c) {
	pp_state st = pp_empty();
	*bad = 0;
	pp_strip(&st, bad, dt, row, V, 0, 1, c);
	return st;
}

/*
 * pp_host_rows is a launch of polarity.cu's kernel for dtype dt, run on the host: the same
 * parameters, row loop, reduction (pp_row_tree, or the single pass pp_row_seq when tree is 0)
 * and token step. logits must be laid out as on the device (the rows back to back from a
 * 16-byte-aligned base) for the head/body/tail split to match.
 */
static inline void pp_host_rows(int dt, const void *logits, long long V, long long nrows, const pp_row_in *rows, double tau,
                                double lr, double clip_low, double clip_high, long long natural, float *out, int32_t *status,
                                int tree) {
	const float c = (float)(PP_LOG2E / tau);
	const long long es = pp_dtype_size(dt);
	pp_params p;
	long long row;
	p.tau = tau;
	p.lr = lr;
	p.clip_low = clip_low;
	p.clip_high = clip_high;
	p.natural = natural != 0;
	for (row = 0; row < nrows; row++) {
		const char *z = (const char *)logits + row * V * es;
		int bad;
		pp_state st = tree ? pp_row_tree(&bad, dt, z, V, c) : pp_row_seq(&bad, dt, z, V, c);
		const pp_row_in in = rows[row];
		status[row] = pp_finish(st, bad, pp_load1(dt, z, in.token), in, p, out + row, nrows);
	}
}
#endif /* !__CUDACC__ */

#endif /* PAPO_POLARITY_ROW_CUH */
