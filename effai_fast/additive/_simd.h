/*
 * Main-effect loop of the B-spline additive model (effai_fast/additive/_kernels.pyx).
 *
 * f(x) = bias + sum_u g_u(x[f_u]) with each g_u a uniform cubic spline kept in
 * power form: interval i = clamp(floor((x - lo) * inv_h)), s = fractional part,
 * g = c0 + s (c1 + s (c2 + s c3)) with (c0..c3) = pp[u, i, :].
 *
 * Why intrinsics: the work per point and unit is ~10 flops, so the cost is the
 * table lookup.  gcc does not vectorise the lookup of Cython's loop (an
 * indexed load per coefficient), and target_clones of the scalar loop gives
 * 4 gathers per unit.  Here 4 points go through one unit at a time in a ymm
 * register: the 4 interval rows (4 doubles, 32 bytes, one aligned load each)
 * are transposed in registers into c0..c3 vectors, then Horner with FMA.  The
 * running sum of the 4 points stays in a register across all units (units in
 * their fixed order), so the result of a point depends neither on the blocking
 * nor on the thread count.  float32 inputs are widened (4 at a time, in the
 * register) and the arithmetic is float64 (the same as the float64 path; the
 * output is rounded once).
 *
 * NaN safety: the clamp is written so that a NaN coordinate gives interval 0
 * (max(NaN, 0) = 0 in both paths): a non-finite input never indexes outside the
 * table.  Finiteness of the inputs is checked inside the main loop (AVX2 path:
 * each group of 8 rows is tested just before its coordinates are used, so X is
 * read from memory once) or by effai_add_nonfinite_* over a block (portable
 * path, and models without main effects); both are cheaper than numpy's isfinite
 * on the whole array, which allocates a mask of the input's size.
 *
 * Dispatch: the AVX2+FMA path is used when the CPU reports both
 * (__builtin_cpu_supports); otherwise the portable scalar loop, which is the
 * same algorithm without FMA (results differ from the AVX2 path by rounding
 * only, ~1e-16 relative).
 */
#ifndef EFFAI_ADDITIVE_SIMD_H
#define EFFAI_ADDITIVE_SIMD_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && (__GNUC__ >= 8)
#define EFFAI_ADD_X86 1
#include <immintrin.h>
#define EFFAI_ADD_AVX2 __attribute__((target("avx2,fma")))
#else
#define EFFAI_ADD_X86 0
#endif

/* 1 when the AVX2+FMA path may run on this CPU. */
static inline int effai_add_have_avx2(void)
{
#if EFFAI_ADD_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* 64-byte aligned pointer inside a buffer malloc'ed with 64 spare bytes. */
static inline double *effai_add_align64(void *raw)
{
    uintptr_t p = (uintptr_t)raw;
    return (double *)((p + 63) & ~(uintptr_t)63);
}

/* ------------------------------------------------------------ portable path */
static inline double effai_add_piece(double x, double lo, double ih, int nint, const double *pp)
{
    double t = (x - lo) * ih;
    double hi = (double)nint;
    t = t > 0.0 ? t : 0.0;  /* also maps NaN to 0 */
    t = t < hi ? t : hi;
    int i = (int)t;
    i = i > nint - 1 ? nint - 1 : i;
    double s = t - (double)i;
    const double *c = pp + 4 * i;
    return c[0] + s * (c[1] + s * (c[2] + s * c[3]));
}

#define EFFAI_ADD_PORTABLE(NAME, T)                                                         \
    static void NAME(const T *X, ptrdiff_t d, ptrdiff_t nb, ptrdiff_t M, const int32_t *feat, \
                     const double *map, int nint, const double *pp, double *acc)            \
    {                                                                                       \
        for (ptrdiff_t q = 0; q < nb; q++) {                                                \
            const T *x = X + q * d;                                                         \
            double a = acc[q];                                                              \
            for (ptrdiff_t u = 0; u < M; u++)                                               \
                a += effai_add_piece((double)x[feat[u]], map[2 * u], map[2 * u + 1], nint,  \
                                     pp + (size_t)u * nint * 4);                            \
            acc[q] = a;                                                                     \
        }                                                                                   \
    }

EFFAI_ADD_PORTABLE(effai_add_main_portable_d, double)
EFFAI_ADD_PORTABLE(effai_add_main_portable_f, float)

static int effai_add_nonfinite_portable_d(const double *p, ptrdiff_t len)
{
    double s = 0.0;
    for (ptrdiff_t i = 0; i < len; i++)
        s += p[i] * 0.0;  /* inf * 0 and NaN * 0 are NaN */
    return s != s;
}

static int effai_add_nonfinite_portable_f(const float *p, ptrdiff_t len)
{
    float s = 0.0f;
    for (ptrdiff_t i = 0; i < len; i++)
        s += p[i] * 0.0f;
    return s != s;
}

#if EFFAI_ADD_X86
/* ------------------------------------------------------------ AVX2 + FMA path */

/* The 4 coefficients of interval idx[r] for r = 0..3, transposed: c_k = (c_k[idx[0]], ..). */
EFFAI_ADD_AVX2 static inline void effai_add_rows4(const double *tab, __m128i i, __m256d *c0,
                                                  __m256d *c1, __m256d *c2, __m256d *c3)
{
#ifdef EFFAI_ADD_GATHER
    /* measured 0.5x of the loads + transpose below on Zen 3 (vgatherdpd is slow there) */
    i = _mm_slli_epi32(i, 2);
    *c0 = _mm256_i32gather_pd(tab, i, 8);
    *c1 = _mm256_i32gather_pd(tab + 1, i, 8);
    *c2 = _mm256_i32gather_pd(tab + 2, i, 8);
    *c3 = _mm256_i32gather_pd(tab + 3, i, 8);
#else
    /* two 64-bit moves instead of four 32-bit extracts (the indices are >= 0) */
    uint64_t lo = (uint64_t)_mm_cvtsi128_si64(i);
    uint64_t hi = (uint64_t)_mm_extract_epi64(i, 1);
    __m256d r0 = _mm256_load_pd(tab + 4 * (uint32_t)lo);
    __m256d r1 = _mm256_load_pd(tab + 4 * (lo >> 32));
    __m256d r2 = _mm256_load_pd(tab + 4 * (uint32_t)hi);
    __m256d r3 = _mm256_load_pd(tab + 4 * (hi >> 32));
    __m256d t0 = _mm256_unpacklo_pd(r0, r1);  /* c0_0 c0_1 c2_0 c2_1 */
    __m256d t1 = _mm256_unpackhi_pd(r0, r1);  /* c1_0 c1_1 c3_0 c3_1 */
    __m256d t2 = _mm256_unpacklo_pd(r2, r3);
    __m256d t3 = _mm256_unpackhi_pd(r2, r3);
    *c0 = _mm256_permute2f128_pd(t0, t2, 0x20);
    *c2 = _mm256_permute2f128_pd(t0, t2, 0x31);
    *c1 = _mm256_permute2f128_pd(t1, t3, 0x20);
    *c3 = _mm256_permute2f128_pd(t1, t3, 0x31);
#endif
}

/* g_u at 4 points: x already widened to double, loih = lo * ih (rounded once). */
EFFAI_ADD_AVX2 static inline __m256d effai_add_piece4(__m256d x, __m256d loih, __m256d ih,
                                                      __m256d hi, __m128i imax,
                                                      const double *tab)
{
    __m256d t = _mm256_fmsub_pd(x, ih, loih);
    t = _mm256_max_pd(t, _mm256_setzero_pd());  /* max(NaN, 0) = 0 */
    t = _mm256_min_pd(t, hi);
    __m128i i = _mm_min_epi32(_mm256_cvttpd_epi32(t), imax);
    __m256d s = _mm256_sub_pd(t, _mm256_cvtepi32_pd(i));
    __m256d c0, c1, c2, c3;
    effai_add_rows4(tab, i, &c0, &c1, &c2, &c3);
    __m256d v = _mm256_fmadd_pd(s, c3, c2);
    v = _mm256_fmadd_pd(s, v, c1);
    return _mm256_fmadd_pd(s, v, c0);
}

/* Units per pass over a group: the group's coordinates of these units are copied to a
 * small SoA scratch (8 values of X's type per unit) so each register load is one
 * aligned load. */
#define EFFAI_ADD_UCHUNK 64

/* Groups of 8 rows ahead whose cache lines are prefetched (8 rows of d = 10 doubles are
 * 10 lines; 8 groups ahead is 5 kB, a few memory latencies of work at this loop's
 * speed).  Measured on 400,000 x 10 doubles (32 MB, streamed from RAM) on the shared
 * 2-core machine: 0 (hardware prefetch only) was clearly slower with the fused check;
 * 4, 8, 16 and 32 groups were within the noise of each other. */
#ifndef EFFAI_ADD_PF_GROUPS
#define EFFAI_ADD_PF_GROUPS 8
#endif

/* Non-finite test of len contiguous values, accumulated in a register: v * 0 is NaN for
 * NaN and +-inf, +-0 otherwise. */
EFFAI_ADD_AVX2 static inline __m256d effai_add_fin_d(const double *p, ptrdiff_t len, __m256d f)
{
    /* OR of the products: independent multiplies, a latency-1 chain; the OR of +-0 and
     * a NaN pattern is a NaN */
    const __m256d z = _mm256_setzero_pd();
    ptrdiff_t i = 0;
    for (; i + 4 <= len; i += 4)
        f = _mm256_or_pd(f, _mm256_mul_pd(_mm256_loadu_pd(p + i), z));
    for (; i < len; i++)
        f = _mm256_or_pd(f, _mm256_set1_pd(p[i] * 0.0));
    return f;
}

EFFAI_ADD_AVX2 static inline __m256d effai_add_fin_f(const float *p, ptrdiff_t len, __m256d f)
{
    const __m256 z = _mm256_setzero_ps();
    __m256 g = z;
    ptrdiff_t i = 0;
    for (; i + 8 <= len; i += 8)
        g = _mm256_or_ps(g, _mm256_mul_ps(_mm256_loadu_ps(p + i), z));
    for (; i < len; i++)
        g = _mm256_or_ps(g, _mm256_set1_ps(p[i] * 0.0f));
    /* widening keeps a NaN a NaN */
    f = _mm256_or_pd(f, _mm256_cvtps_pd(_mm256_castps256_ps128(g)));
    return _mm256_or_pd(f, _mm256_cvtps_pd(_mm256_extractf128_ps(g, 1)));
}

/* Groups of 8 points in two registers (independent chains); the running sums stay in
 * registers across all units, in unit order.  A last group with fewer than 8 points
 * repeats its last row in the missing lanes (computed, never stored): every point goes
 * through the same lane arithmetic wherever it sits, hence the same bits.
 *
 * One pass over X: with check != 0 the group's rows (8 d contiguous values) are tested
 * for NaN/inf right before their coordinates are copied to the SoA scratch, so the rows
 * come from memory once (a separate checking pass over a block that streams from RAM
 * cost as much as a third of the call).  Rows EFFAI_ADD_PF_GROUPS groups ahead are
 * prefetched, but never beyond navail rows from X (the rows the caller owns).
 * Returns 1 when check found a non-finite value (acc is then meaningless). */
#define EFFAI_ADD_MAIN_AVX2(NAME, T, FIN, LOADX)                                                   \
    EFFAI_ADD_AVX2 static int NAME(const T *X, ptrdiff_t d, ptrdiff_t nb, ptrdiff_t M,      \
                                   const int32_t *feat, const double *map, int nint,        \
                                   const double *pp, double *acc, int check,                \
                                   ptrdiff_t navail)                                        \
    {                                                                                       \
        const __m256d hi = _mm256_set1_pd((double)nint);                                    \
        const __m128i imax = _mm_set1_epi32(nint - 1);                                      \
        const size_t stride = (size_t)nint * 4;                                             \
        const ptrdiff_t gbytes = 8 * d * (ptrdiff_t)sizeof(T);                              \
        T xs[8 * EFFAI_ADD_UCHUNK] __attribute__((aligned(32)));                            \
        double a8[8];                                                                       \
        __m256d fin = _mm256_setzero_pd();                                                  \
        for (ptrdiff_t q = 0; q < nb; q += 8) {                                             \
            const int nr = nb - q < 8 ? (int)(nb - q) : 8;                                  \
            const T *x = X + q * d;                                                         \
            const double *as = acc + q;                                                     \
            if (q + 8 * (EFFAI_ADD_PF_GROUPS + 1) <= navail) {                              \
                const char *pf = (const char *)(x + 8 * EFFAI_ADD_PF_GROUPS * d);           \
                for (ptrdiff_t o = 0; o < gbytes; o += 64)                                  \
                    _mm_prefetch(pf + o, _MM_HINT_T0);                                      \
            }                                                                               \
            if (check)                                                                      \
                fin = FIN(x, nr * d, fin);                                                  \
            if (nr < 8) {                                                                   \
                for (int r = 0; r < 8; r++)                                                 \
                    a8[r] = acc[q + (r < nr ? r : nr - 1)];                                 \
                as = a8;                                                                    \
            }                                                                               \
            __m256d a = _mm256_loadu_pd(as);                                                \
            __m256d b = _mm256_loadu_pd(as + 4);                                            \
            for (ptrdiff_t u0 = 0; u0 < M; u0 += EFFAI_ADD_UCHUNK) {                        \
                const ptrdiff_t nu = M - u0 < EFFAI_ADD_UCHUNK ? M - u0 : EFFAI_ADD_UCHUNK; \
                if (nr == 8) {                                                              \
                    for (ptrdiff_t k = 0; k < nu; k++) {                                    \
                        const T *xc = x + feat[u0 + k];                                     \
                        for (int r = 0; r < 8; r++)                                         \
                            xs[8 * k + r] = xc[r * d];                                      \
                    }                                                                       \
                } else {                                                                    \
                    for (ptrdiff_t k = 0; k < nu; k++) {                                    \
                        const T *xc = x + feat[u0 + k];                                     \
                        for (int r = 0; r < 8; r++)                                         \
                            xs[8 * k + r] = xc[(r < nr ? r : nr - 1) * d];                  \
                    }                                                                       \
                }                                                                           \
                for (ptrdiff_t k = 0; k < nu; k++) {                                        \
                    const ptrdiff_t u = u0 + k;                                             \
                    const __m256d ih = _mm256_broadcast_sd(map + 2 * u + 1);                \
                    const __m256d loih = _mm256_mul_pd(_mm256_broadcast_sd(map + 2 * u), ih); \
                    const double *tab = pp + u * stride;                                    \
                    a = _mm256_add_pd(a, effai_add_piece4(LOADX(xs + 8 * k), loih, ih, hi,  \
                                                          imax, tab));                      \
                    b = _mm256_add_pd(b, effai_add_piece4(LOADX(xs + 8 * k + 4), loih, ih,  \
                                                          hi, imax, tab));                  \
                }                                                                           \
            }                                                                               \
            if (nr == 8) {                                                                  \
                _mm256_storeu_pd(acc + q, a);                                               \
                _mm256_storeu_pd(acc + q + 4, b);                                           \
            } else {                                                                        \
                _mm256_storeu_pd(a8, a);                                                    \
                _mm256_storeu_pd(a8 + 4, b);                                                \
                for (int r = 0; r < nr; r++)                                                \
                    acc[q + r] = a8[r];                                                     \
            }                                                                               \
        }                                                                                   \
        /* any lane NaN (unordered compare with itself) */                                 \
        return check && _mm256_movemask_pd(_mm256_cmp_pd(fin, fin, _CMP_UNORD_Q)) != 0;     \
    }

/* 4 scratch values as doubles: float32 scratch is widened in the register (one vcvtps2pd
 * per 4 values instead of 4 scalar vcvtss2sd, whose merge into the destination register
 * chains them through a false dependency: the float32 path ran 12-30% slower than float64) */
#define EFFAI_ADD_LOADX_D(p) _mm256_load_pd(p)
#define EFFAI_ADD_LOADX_F(p) _mm256_cvtps_pd(_mm_load_ps(p))

EFFAI_ADD_MAIN_AVX2(effai_add_main_avx2_d, double, effai_add_fin_d, EFFAI_ADD_LOADX_D)
EFFAI_ADD_MAIN_AVX2(effai_add_main_avx2_f, float, effai_add_fin_f, EFFAI_ADD_LOADX_F)

EFFAI_ADD_AVX2 static int effai_add_nonfinite_avx2_d(const double *p, ptrdiff_t len)
{
    const __m256d z = _mm256_setzero_pd();
    __m256d s0 = z, s1 = z, s2 = z, s3 = z;
    ptrdiff_t i = 0;
    for (; i + 16 <= len; i += 16) {
        s0 = _mm256_fmadd_pd(_mm256_loadu_pd(p + i), z, s0);
        s1 = _mm256_fmadd_pd(_mm256_loadu_pd(p + i + 4), z, s1);
        s2 = _mm256_fmadd_pd(_mm256_loadu_pd(p + i + 8), z, s2);
        s3 = _mm256_fmadd_pd(_mm256_loadu_pd(p + i + 12), z, s3);
    }
    s0 = _mm256_add_pd(_mm256_add_pd(s0, s1), _mm256_add_pd(s2, s3));
    double v[4];
    _mm256_storeu_pd(v, s0);
    double s = (v[0] + v[1]) + (v[2] + v[3]);
    for (; i < len; i++)
        s += p[i] * 0.0;
    return s != s;
}

EFFAI_ADD_AVX2 static int effai_add_nonfinite_avx2_f(const float *p, ptrdiff_t len)
{
    const __m256 z = _mm256_setzero_ps();
    __m256 s0 = z, s1 = z;
    ptrdiff_t i = 0;
    for (; i + 16 <= len; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(p + i), z, s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(p + i + 8), z, s1);
    }
    float v[8];
    _mm256_storeu_ps(v, _mm256_add_ps(s0, s1));
    float s = 0.0f;
    for (int k = 0; k < 8; k++)
        s += v[k];
    for (; i < len; i++)
        s += p[i] * 0.0f;
    return s != s;
}
#endif /* EFFAI_ADD_X86 */

/* ------------------------------------------------------------ dispatch */
/* impl: 1 = AVX2 + FMA (caller checked effai_add_have_avx2), otherwise portable. */
static inline int effai_add_main_d(int impl, const double *X, ptrdiff_t d, ptrdiff_t nb,
                                   ptrdiff_t M, const int32_t *feat, const double *map,
                                   int nint, const double *pp, double *acc, int check,
                                   ptrdiff_t navail)
{
#if EFFAI_ADD_X86
    if (impl == 1)
        return effai_add_main_avx2_d(X, d, nb, M, feat, map, nint, pp, acc, check, navail);
#endif
    (void)impl;
    (void)navail;
    effai_add_main_portable_d(X, d, nb, M, feat, map, nint, pp, acc);
    return check && effai_add_nonfinite_portable_d(X, nb * d);
}

static inline int effai_add_main_f(int impl, const float *X, ptrdiff_t d, ptrdiff_t nb,
                                   ptrdiff_t M, const int32_t *feat, const double *map,
                                   int nint, const double *pp, double *acc, int check,
                                   ptrdiff_t navail)
{
#if EFFAI_ADD_X86
    if (impl == 1)
        return effai_add_main_avx2_f(X, d, nb, M, feat, map, nint, pp, acc, check, navail);
#endif
    (void)impl;
    (void)navail;
    effai_add_main_portable_f(X, d, nb, M, feat, map, nint, pp, acc);
    return check && effai_add_nonfinite_portable_f(X, nb * d);
}

static inline int effai_add_nonfinite_d(int impl, const double *p, ptrdiff_t len)
{
#if EFFAI_ADD_X86
    if (impl == 1)
        return effai_add_nonfinite_avx2_d(p, len);
#endif
    (void)impl;
    return effai_add_nonfinite_portable_d(p, len);
}

static inline int effai_add_nonfinite_f(int impl, const float *p, ptrdiff_t len)
{
#if EFFAI_ADD_X86
    if (impl == 1)
        return effai_add_nonfinite_avx2_f(p, len);
#endif
    (void)impl;
    return effai_add_nonfinite_portable_f(p, len);
}

#endif /* EFFAI_ADDITIVE_SIMD_H */
