// The roofline for papo's CPU engine (issue 12): a plain C kernel of the engine's four sums per
// row (max pass, then Σe^v, Σe^v·v, Σe^{2v}, Σe^{2v}·v with v = u − m), with a degree-6
// polynomial exp (no table), two accumulator chains, float32 partial sums flushed to double
// every 64 elements. AVX2+FMA and AVX-512F variants, chosen at run time; gcc -O3.
//
//   ./roofline [V] [rows] [reps] [threads]
//       prints tokens/s on 1 thread and on `threads` (default: all online CPUs), per ISA, and the
//       worst relative error of H against a double pass. `papo bench --peers` compiles this
//       file (embedded in the binary) with the system's cc and reads these lines.
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct { double s0, s1, s2, s3; float m; } sums;

// exp(v) for v in [−87, 0]: v = n·ln2 + r (ln2 split in two for the reduction), e^r by a degree-6
// polynomial, 2^n added to the exponent bits.

__attribute__((target("avx2,fma"))) static float hmax8(__m256 x) {
    __m128 a = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    a = _mm_max_ps(a, _mm_movehl_ps(a, a));
    a = _mm_max_ss(a, _mm_shuffle_ps(a, a, 1));
    return _mm_cvtss_f32(a);
}
__attribute__((target("avx2,fma"))) static double hsum8(__m256 x) {
    float t[8];
    _mm256_storeu_ps(t, x);
    double s = 0;
    for (int i = 0; i < 8; i++) s += t[i];
    return s;
}

__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 v) {
    v = _mm256_max_ps(v, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(-0.693359375f), v);
    r = _mm256_fmadd_ps(n, _mm256_set1_ps(2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i k = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    return _mm256_castsi256_ps(_mm256_add_epi32(k, _mm256_castps_si256(p)));
}

// V must be a multiple of 16 here (the benchmark's V = 151,936 is).
__attribute__((target("avx2,fma"))) static sums row_avx2(const float *x, int V) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    for (int j = 0; j < V; j += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + j));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + j + 8));
    }
    float m = hmax8(_mm256_max_ps(m0, m1));
    __m256 mv = _mm256_set1_ps(m);
    sums s = {0, 0, 0, 0, m};
    for (int j0 = 0; j0 < V; j0 += 64) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        int end = j0 + 64 < V ? j0 + 64 : V;
        for (int j = j0; j < end; j += 16) {
            __m256 v0 = _mm256_sub_ps(_mm256_loadu_ps(x + j), mv), v1 = _mm256_sub_ps(_mm256_loadu_ps(x + j + 8), mv);
            v0 = _mm256_max_ps(v0, _mm256_set1_ps(-43.6f));
            v1 = _mm256_max_ps(v1, _mm256_set1_ps(-43.6f));
            __m256 e0 = exp8(v0), e1 = exp8(v1);
            __m256 f0 = _mm256_mul_ps(e0, e0), f1 = _mm256_mul_ps(e1, e1);
            a0 = _mm256_add_ps(a0, e0); a1 = _mm256_add_ps(a1, e1);
            b0 = _mm256_fmadd_ps(e0, v0, b0); b1 = _mm256_fmadd_ps(e1, v1, b1);
            c0 = _mm256_add_ps(c0, f0); c1 = _mm256_add_ps(c1, f1);
            d0 = _mm256_fmadd_ps(f0, v0, d0); d1 = _mm256_fmadd_ps(f1, v1, d1);
        }
        s.s0 += hsum8(_mm256_add_ps(a0, a1)); s.s1 += hsum8(_mm256_add_ps(b0, b1));
        s.s2 += hsum8(_mm256_add_ps(c0, c1)); s.s3 += hsum8(_mm256_add_ps(d0, d1));
    }
    return s;
}

__attribute__((target("avx512f"))) static inline __m512 exp16(__m512 v) {
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(v, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), v);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    __m512i k = _mm512_slli_epi32(_mm512_cvtps_epi32(n), 23);
    return _mm512_castsi512_ps(_mm512_add_epi32(k, _mm512_castps_si512(p)));
}

// V must be a multiple of 32.
__attribute__((target("avx512f"))) static sums row_avx512(const float *x, int V) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    for (int j = 0; j < V; j += 32) {
        m0 = _mm512_max_ps(m0, _mm512_loadu_ps(x + j));
        m1 = _mm512_max_ps(m1, _mm512_loadu_ps(x + j + 16));
    }
    float m = _mm512_reduce_max_ps(_mm512_max_ps(m0, m1));
    __m512 mv = _mm512_set1_ps(m);
    sums s = {0, 0, 0, 0, m};
    for (int j0 = 0; j0 < V; j0 += 64) {
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, b0 = a0, b1 = a0, c0 = a0, c1 = a0, d0 = a0, d1 = a0;
        int end = j0 + 64 < V ? j0 + 64 : V;
        for (int j = j0; j < end; j += 32) {
            __m512 v0 = _mm512_sub_ps(_mm512_loadu_ps(x + j), mv), v1 = _mm512_sub_ps(_mm512_loadu_ps(x + j + 16), mv);
            v0 = _mm512_max_ps(v0, _mm512_set1_ps(-43.6f));
            v1 = _mm512_max_ps(v1, _mm512_set1_ps(-43.6f));
            __m512 e0 = exp16(v0), e1 = exp16(v1);
            __m512 f0 = _mm512_mul_ps(e0, e0), f1 = _mm512_mul_ps(e1, e1);
            a0 = _mm512_add_ps(a0, e0); a1 = _mm512_add_ps(a1, e1);
            b0 = _mm512_fmadd_ps(e0, v0, b0); b1 = _mm512_fmadd_ps(e1, v1, b1);
            c0 = _mm512_add_ps(c0, f0); c1 = _mm512_add_ps(c1, f1);
            d0 = _mm512_fmadd_ps(f0, v0, d0); d1 = _mm512_fmadd_ps(f1, v1, d1);
        }
        s.s0 += _mm512_reduce_add_ps(_mm512_add_ps(a0, a1)); s.s1 += _mm512_reduce_add_ps(_mm512_add_ps(b0, b1));
        s.s2 += _mm512_reduce_add_ps(_mm512_add_ps(c0, c1)); s.s3 += _mm512_reduce_add_ps(_mm512_add_ps(d0, d1));
    }
    return s;
}

typedef sums (*rowfn)(const float *, int);

typedef struct { rowfn f; const float *x; int V, lo, hi; double h; } job;

static void *work(void *p) {
    job *j = p;
    double acc = 0;
    for (int i = j->lo; i < j->hi; i++) {
        sums s = j->f(j->x + (size_t)i * j->V, j->V);
        acc += log(s.s0) - s.s1 / s.s0; // H, so that nothing is optimized away
    }
    j->h = acc;
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static double tokens_per_s(rowfn f, const float *x, int V, int rows, int threads, int reps) {
    double best = 1e300;
    for (int r = 0; r < reps; r++) {
        pthread_t tid[256];
        job jobs[256];
        double t0 = now();
        for (int k = 0; k < threads; k++) {
            jobs[k] = (job){f, x, V, rows * k / threads, rows * (k + 1) / threads, 0};
            pthread_create(&tid[k], NULL, work, &jobs[k]);
        }
        for (int k = 0; k < threads; k++) pthread_join(tid[k], NULL);
        double d = now() - t0;
        if (d < best) best = d;
    }
    return rows / best;
}

// The double reference of H for one row (two passes, exp from libm).
static double ref_entropy(const float *x, int V) {
    double m = -INFINITY;
    for (int j = 0; j < V; j++) m = x[j] > m ? x[j] : m;
    double s0 = 0, s1 = 0;
    for (int j = 0; j < V; j++) {
        double v = x[j] - m, e = exp(v);
        s0 += e;
        s1 += e * v;
    }
    return log(s0) - s1 / s0;
}

int main(int argc, char **argv) {
    int V = argc > 1 ? atoi(argv[1]) : 151936, rows = argc > 2 ? atoi(argv[2]) : 256, reps = argc > 3 ? atoi(argv[3]) : 3;
    if (V % 32 != 0 || V <= 0 || rows <= 0) {
        fprintf(stderr, "roofline: V must be a positive multiple of 32\n");
        return 2;
    }
    float *x = aligned_alloc(64, (size_t)V * rows * sizeof(float));
    uint64_t st = 2026;
    for (size_t i = 0; i < (size_t)V * rows; i++) { // N(0, 2²) by Box-Muller on an LCG
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        double u1 = ((st >> 11) + 1) * (1.0 / 9007199254740993.0);
        st = st * 6364136223846793005ULL + 1442695040888963407ULL;
        double u2 = (st >> 11) * (1.0 / 9007199254740992.0);
        x[i] = (float)(2 * sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2));
    }
    x[(size_t)V * 1 + 17] = 40; // one peaked row
    int threads = argc > 4 ? atoi(argv[4]) : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1) threads = 1;
    if (threads > 256) threads = 256;
    __builtin_cpu_init();
    struct { const char *name; rowfn f; int ok; } isa[] = {
        {"avx2+fma", row_avx2, __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")},
        {"avx512f", row_avx512, __builtin_cpu_supports("avx512f")},
    };
    printf("C roofline of the four sums, V = %d, %d rows, best of %d\n", V, rows, reps);
    for (int k = 0; k < 2; k++) {
        if (!isa[k].ok) {
            printf("%-9s not supported by this CPU\n", isa[k].name);
            continue;
        }
        double worst = 0;
        for (int i = 0; i < rows && i < 16; i++) {
            if (i == 1)
                continue; // the peaked row: log(s0) − s1/s0 from float32 sums loses its H ≈ 1e-15 (papo's engine keeps s0 − 1 apart)
            sums s = isa[k].f(x + (size_t)i * V, V);
            double h = log(s.s0) - s.s1 / s.s0, r = ref_entropy(x + (size_t)i * V, V);
            double e = fabs(h - r) / r;
            worst = e > worst ? e : worst;
        }
        double one = tokens_per_s(isa[k].f, x, V, rows, 1, reps), all = tokens_per_s(isa[k].f, x, V, rows, threads, reps);
        printf("%-9s 1 thread %8.0f tokens/s   %d threads %8.0f tokens/s   worst relative error of H %.1e (unpeaked rows)\n",
               isa[k].name, one, threads, all, worst);
    }
    free(x);
    return 0;
}
