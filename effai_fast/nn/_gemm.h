/* Packed GEMM micro-kernels for the 1x1 (pointwise) convolution, NHWC.
 *
 *     C[m, n] = act(A[m, k] @ B[k, n] + bias[n])        (all row-major)
 *
 * A is the pixel matrix (one row per pixel, k = C_in contiguous), B the
 * (C_in, C_out) filter and C the output pixels.  This is the XNNPACK-style
 * "broadcast" GEMM that suits a convolution better than a BLAS call per block:
 *
 * - A is read in place when a row is one whole k-block (k <= KC), else its
 *   k-blocks are copied into MR-row micro-panels (each row's KC elements
 *   contiguous); a 6-row micro-tile broadcasts one element of each of its 6
 *   rows per step of k;
 * - B is packed into panels of NR columns (16 floats / 8 doubles), k-major,
 *   zero-padded to a whole panel: either once per call for all of B
 *   (effai_pack_b_*, shared read-only by the threads) or panel by panel into a
 *   small buffer on the stack just before use (when A has few rows, packing
 *   all of B would cost more memory traffic than the product itself);
 * - the 6 x NR accumulators live in 12 AVX2 registers for a whole block of k
 *   (KC steps), B's micro-panel (KC x NR, 16 KiB) stays in L1 while the
 *   micro-tile walks down an MC-row chunk of A (L2);
 * - few rows and a long k (m <= MC, the 7x7 layers and the classifier of a
 *   batch-1 MobileNet): all of A is packed once and each B panel is walked down
 *   the whole of k before the next (effai_gemm_small_*), so the C tiles stay in
 *   L1 between k-blocks and B streams in order (~5-10% faster there);
 * - bias and relu / relu6 are applied to the registers after the last k
 *   block, before the only store: no second pass over the output.
 *
 * Determinism: every output element is one chain of FMAs over k = 0..k-1 in
 * order (k blocks at fixed offsets, partial sums stored and reloaded
 * exactly), whatever the row / column range a call covers.  Splitting C
 * between threads by rows or by column panels therefore never changes a bit.
 *
 * Edges: rows past the end of a micro-tile re-read the last valid row
 * (their results are discarded), columns past n read the zero padding of the
 * packed panel; partial tiles go through a small buffer.
 *
 * The fast kernels need AVX2 + FMA at compile time (the _conv_avx2 /
 * _conv_avx512 builds); EFFAI_GEMM_NATIVE is 0 otherwise and the portable
 * kernel below is only a correct fallback (the baseline build calls BLAS).
 */
#ifndef EFFAI_NN_GEMM_H
#define EFFAI_NN_GEMM_H

#include <stddef.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define EFFAI_GEMM_NATIVE 1
#else
#define EFFAI_GEMM_NATIVE 0
#endif

#define EFFAI_GEMM_MR 6
#define EFFAI_GEMM_NR_F 16
#define EFFAI_GEMM_NR_D 8
#ifndef EFFAI_GEMM_KC
#define EFFAI_GEMM_KC 256      /* k steps per block: a B micro-panel is KC x NR (16 KiB) */
#endif
#ifndef EFFAI_GEMM_MC
#define EFFAI_GEMM_MC 144      /* rows of A per chunk (144 x 256 floats = 144 KiB, L2) */
#endif

/* Activation codes (same values as ACT_* in _conv.pxd). */
#define EFFAI_ACT_NONE 0
#define EFFAI_ACT_RELU 1
#define EFFAI_ACT_RELU6 2


/* ------------------------------------------------------------------ packing */

/* Size (elements) of B packed into panels: ceil(n / nr) * nr * k. */
static inline size_t effai_packed_size(size_t k, size_t n, size_t nr) {
    return ((n + nr - 1) / nr) * nr * k;
}

#define EFFAI_DEFINE_PACK(T, SUF)                                                      \
/* Panel p (columns p*nr .. p*nr+nr-1) of B, rows k0 .. k0+kc-1, into dst[kc][nr]. */ \
static inline void effai_pack_panel_##SUF(size_t kc, size_t ncols, size_t nr,        \
                                          const T* b, size_t ldb, T* dst) {          \
    size_t kk, j;                                                                    \
    if (ncols == nr) {                                                               \
        for (kk = 0; kk < kc; kk++)                                                  \
            memcpy(dst + kk * nr, b + kk * ldb, nr * sizeof(T));                     \
    } else {                                                                         \
        for (kk = 0; kk < kc; kk++) {                                                \
            for (j = 0; j < ncols; j++) dst[kk * nr + j] = b[kk * ldb + j];          \
            for (; j < nr; j++) dst[kk * nr + j] = 0;                                \
        }                                                                            \
    }                                                                                \
}                                                                                    \
/* Columns [0, ncols) of kc rows of B into consecutive panels of nr columns    \
 * (panel q at dst + q*nr*kc), row by row: B is read along its rows. */          \
static inline void effai_pack_block_##SUF(size_t kc, size_t ncols, size_t nr,       \
                                          const T* b, size_t ldb, T* dst) {          \
    size_t kk, j, q, nfull = ncols / nr, rest = ncols - nfull * nr;                  \
    for (kk = 0; kk < kc; kk++) {                                                    \
        const T* row = b + kk * ldb;                                                 \
        for (q = 0; q < nfull; q++)                                                  \
            memcpy(dst + q * nr * kc + kk * nr, row + q * nr, nr * sizeof(T));       \
        if (rest) {                                                                  \
            T* d = dst + nfull * nr * kc + kk * nr;                                  \
            for (j = 0; j < rest; j++) d[j] = row[nfull * nr + j];                   \
            for (; j < nr; j++) d[j] = 0;                                            \
        }                                                                            \
    }                                                                                \
}                                                                                    \
/* Panels [p0, p1) of the whole of B (k x n, row stride ldb) into bp.  Blocks   \
 * of 16 rows (16 x n, L1/L2) are spread over the panels: a panel-by-panel copy   \
 * of all k rows would read B down its columns, one cache line per row, and     \
 * with a power-of-two row stride those lines collide in the same cache sets. */ \
static inline void effai_pack_b_##SUF(size_t k, size_t n, const T* b, size_t ldb,    \
                                      T* bp, size_t nr, size_t p0, size_t p1) {      \
    size_t p, j0, nc, k0, kc;                                                        \
    for (k0 = 0; k0 < k; k0 += 16) {                                                 \
        kc = k - k0 < 16 ? k - k0 : 16;                                              \
        for (p = p0; p < p1; p++) {                                                  \
            j0 = p * nr;                                                             \
            nc = n - j0 < nr ? n - j0 : nr;                                          \
            effai_pack_panel_##SUF(kc, nc, nr, b + k0 * ldb + j0, ldb,               \
                                   bp + p * nr * k + k0 * nr);                       \
        }                                                                            \
    }                                                                                \
}

EFFAI_DEFINE_PACK(float, f)
EFFAI_DEFINE_PACK(double, d)


/* ---------------------------------------------------------------- epilogue */

#define EFFAI_DEFINE_EPI(T, SUF)                                                     \
static inline T effai_act_##SUF(T v, int act) {                                     \
    if (act == EFFAI_ACT_RELU) return v < 0 ? (T)0 : v;                              \
    if (act == EFFAI_ACT_RELU6) return v < 0 ? (T)0 : (v > 6 ? (T)6 : v);           \
    return v;                                                                        \
}

EFFAI_DEFINE_EPI(float, f)
EFFAI_DEFINE_EPI(double, d)


/* ----------------------------------------------------------- micro-kernels */
/* c (mr x nr valid, ldc) = [c +] a (mr rows, lda) @ bp (kc x NR packed);
 * if `last`: + bias[0:nr] (bias may be NULL), then act. */

#if EFFAI_GEMM_NATIVE


static inline __m256 effai_act8f(__m256 v, int act) {
    /* max(0, v) returns v when v is NaN (the second operand): NaN propagates. */
    if (act == EFFAI_ACT_RELU) return _mm256_max_ps(_mm256_setzero_ps(), v);
    if (act == EFFAI_ACT_RELU6)
        return _mm256_min_ps(_mm256_set1_ps(6.0f), _mm256_max_ps(_mm256_setzero_ps(), v));
    return v;
}

static inline __m256d effai_act4d(__m256d v, int act) {
    if (act == EFFAI_ACT_RELU) return _mm256_max_pd(_mm256_setzero_pd(), v);
    if (act == EFFAI_ACT_RELU6)
        return _mm256_min_pd(_mm256_set1_pd(6.0), _mm256_max_pd(_mm256_setzero_pd(), v));
    return v;
}

static void effai_ukr_f(size_t kc, const float* ap, const float* bp,
                        float* c, size_t ldc, int mr, int nr, int accumulate, int last,
                        const float* bias, int act) {
    const float* a0 = ap;
    const float* a1 = ap + kc;
    const float* a2 = ap + 2 * kc;
    const float* a3 = ap + 3 * kc;
    const float* a4 = ap + 4 * kc;
    const float* a5 = ap + 5 * kc;
    __m256 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    float tmp[EFFAI_GEMM_MR * 16] __attribute__((aligned(32)));
    float* cc = c;
    size_t ldt = ldc;
    int full = (mr == 6 && nr == 16);
    size_t kk;
    int i;
    if (!full) {
        cc = tmp;
        ldt = 16;
        if (accumulate) {
            /* rows / columns past the edge start from 0, never from stale stack
             * bytes (a subnormal there would slow every FMA of the tile) */
            memset(tmp, 0, sizeof(tmp));
            for (i = 0; i < mr; i++) memcpy(tmp + i * 16, c + i * ldc, nr * sizeof(float));
        }
    }
    if (accumulate) {
        c00 = _mm256_loadu_ps(cc + 0 * ldt); c01 = _mm256_loadu_ps(cc + 0 * ldt + 8);
        c10 = _mm256_loadu_ps(cc + 1 * ldt); c11 = _mm256_loadu_ps(cc + 1 * ldt + 8);
        c20 = _mm256_loadu_ps(cc + 2 * ldt); c21 = _mm256_loadu_ps(cc + 2 * ldt + 8);
        c30 = _mm256_loadu_ps(cc + 3 * ldt); c31 = _mm256_loadu_ps(cc + 3 * ldt + 8);
        c40 = _mm256_loadu_ps(cc + 4 * ldt); c41 = _mm256_loadu_ps(cc + 4 * ldt + 8);
        c50 = _mm256_loadu_ps(cc + 5 * ldt); c51 = _mm256_loadu_ps(cc + 5 * ldt + 8);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = _mm256_setzero_ps();
        c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_ps();
    }
#pragma GCC unroll 4
    for (kk = 0; kk < kc; kk++) {
        const __m256 b0 = _mm256_loadu_ps(bp);
        const __m256 b1 = _mm256_loadu_ps(bp + 8);
        __m256 av;
        av = _mm256_broadcast_ss(a0 + kk);
        c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);
        av = _mm256_broadcast_ss(a1 + kk);
        c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);
        av = _mm256_broadcast_ss(a2 + kk);
        c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);
        av = _mm256_broadcast_ss(a3 + kk);
        c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);
        av = _mm256_broadcast_ss(a4 + kk);
        c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);
        av = _mm256_broadcast_ss(a5 + kk);
        c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);
        bp += 16;
    }
    if (last && (bias != NULL || act != EFFAI_ACT_NONE)) {
        if (bias != NULL) {
            __m256 bb0, bb1;
            if (nr == 16) {
                bb0 = _mm256_loadu_ps(bias); bb1 = _mm256_loadu_ps(bias + 8);
            } else {
                float bt[16] __attribute__((aligned(32))) = {0};
                memcpy(bt, bias, nr * sizeof(float));
                bb0 = _mm256_load_ps(bt); bb1 = _mm256_load_ps(bt + 8);
            }
            c00 = _mm256_add_ps(c00, bb0); c01 = _mm256_add_ps(c01, bb1);
            c10 = _mm256_add_ps(c10, bb0); c11 = _mm256_add_ps(c11, bb1);
            c20 = _mm256_add_ps(c20, bb0); c21 = _mm256_add_ps(c21, bb1);
            c30 = _mm256_add_ps(c30, bb0); c31 = _mm256_add_ps(c31, bb1);
            c40 = _mm256_add_ps(c40, bb0); c41 = _mm256_add_ps(c41, bb1);
            c50 = _mm256_add_ps(c50, bb0); c51 = _mm256_add_ps(c51, bb1);
        }
        if (act != EFFAI_ACT_NONE) {
            c00 = effai_act8f(c00, act); c01 = effai_act8f(c01, act);
            c10 = effai_act8f(c10, act); c11 = effai_act8f(c11, act);
            c20 = effai_act8f(c20, act); c21 = effai_act8f(c21, act);
            c30 = effai_act8f(c30, act); c31 = effai_act8f(c31, act);
            c40 = effai_act8f(c40, act); c41 = effai_act8f(c41, act);
            c50 = effai_act8f(c50, act); c51 = effai_act8f(c51, act);
        }
    }
    _mm256_storeu_ps(cc + 0 * ldt, c00); _mm256_storeu_ps(cc + 0 * ldt + 8, c01);
    if (full || mr > 1) { _mm256_storeu_ps(cc + 1 * ldt, c10); _mm256_storeu_ps(cc + 1 * ldt + 8, c11); }
    if (full || mr > 2) { _mm256_storeu_ps(cc + 2 * ldt, c20); _mm256_storeu_ps(cc + 2 * ldt + 8, c21); }
    if (full || mr > 3) { _mm256_storeu_ps(cc + 3 * ldt, c30); _mm256_storeu_ps(cc + 3 * ldt + 8, c31); }
    if (full || mr > 4) { _mm256_storeu_ps(cc + 4 * ldt, c40); _mm256_storeu_ps(cc + 4 * ldt + 8, c41); }
    if (full || mr > 5) { _mm256_storeu_ps(cc + 5 * ldt, c50); _mm256_storeu_ps(cc + 5 * ldt + 8, c51); }
    if (!full)
        for (i = 0; i < mr; i++) memcpy(c + i * ldc, tmp + i * 16, nr * sizeof(float));
}

static void effai_ukr_d(size_t kc, const double* ap, const double* bp,
                        double* c, size_t ldc, int mr, int nr, int accumulate, int last,
                        const double* bias, int act) {
    const double* a0 = ap;
    const double* a1 = ap + kc;
    const double* a2 = ap + 2 * kc;
    const double* a3 = ap + 3 * kc;
    const double* a4 = ap + 4 * kc;
    const double* a5 = ap + 5 * kc;
    __m256d c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
    double tmp[EFFAI_GEMM_MR * 8] __attribute__((aligned(32)));
    double* cc = c;
    size_t ldt = ldc;
    int full = (mr == 6 && nr == 8);
    size_t kk;
    int i;
    if (!full) {
        cc = tmp;
        ldt = 8;
        if (accumulate) {
            /* rows / columns past the edge start from 0, never from stale stack
             * bytes (a subnormal there would slow every FMA of the tile) */
            memset(tmp, 0, sizeof(tmp));
            for (i = 0; i < mr; i++) memcpy(tmp + i * 8, c + i * ldc, nr * sizeof(double));
        }
    }
    if (accumulate) {
        c00 = _mm256_loadu_pd(cc + 0 * ldt); c01 = _mm256_loadu_pd(cc + 0 * ldt + 4);
        c10 = _mm256_loadu_pd(cc + 1 * ldt); c11 = _mm256_loadu_pd(cc + 1 * ldt + 4);
        c20 = _mm256_loadu_pd(cc + 2 * ldt); c21 = _mm256_loadu_pd(cc + 2 * ldt + 4);
        c30 = _mm256_loadu_pd(cc + 3 * ldt); c31 = _mm256_loadu_pd(cc + 3 * ldt + 4);
        c40 = _mm256_loadu_pd(cc + 4 * ldt); c41 = _mm256_loadu_pd(cc + 4 * ldt + 4);
        c50 = _mm256_loadu_pd(cc + 5 * ldt); c51 = _mm256_loadu_pd(cc + 5 * ldt + 4);
    } else {
        c00 = c01 = c10 = c11 = c20 = c21 = _mm256_setzero_pd();
        c30 = c31 = c40 = c41 = c50 = c51 = _mm256_setzero_pd();
    }
#pragma GCC unroll 4
    for (kk = 0; kk < kc; kk++) {
        const __m256d b0 = _mm256_loadu_pd(bp);
        const __m256d b1 = _mm256_loadu_pd(bp + 4);
        __m256d av;
        av = _mm256_broadcast_sd(a0 + kk);
        c00 = _mm256_fmadd_pd(av, b0, c00); c01 = _mm256_fmadd_pd(av, b1, c01);
        av = _mm256_broadcast_sd(a1 + kk);
        c10 = _mm256_fmadd_pd(av, b0, c10); c11 = _mm256_fmadd_pd(av, b1, c11);
        av = _mm256_broadcast_sd(a2 + kk);
        c20 = _mm256_fmadd_pd(av, b0, c20); c21 = _mm256_fmadd_pd(av, b1, c21);
        av = _mm256_broadcast_sd(a3 + kk);
        c30 = _mm256_fmadd_pd(av, b0, c30); c31 = _mm256_fmadd_pd(av, b1, c31);
        av = _mm256_broadcast_sd(a4 + kk);
        c40 = _mm256_fmadd_pd(av, b0, c40); c41 = _mm256_fmadd_pd(av, b1, c41);
        av = _mm256_broadcast_sd(a5 + kk);
        c50 = _mm256_fmadd_pd(av, b0, c50); c51 = _mm256_fmadd_pd(av, b1, c51);
        bp += 8;
    }
    if (last && (bias != NULL || act != EFFAI_ACT_NONE)) {
        if (bias != NULL) {
            __m256d bb0, bb1;
            if (nr == 8) {
                bb0 = _mm256_loadu_pd(bias); bb1 = _mm256_loadu_pd(bias + 4);
            } else {
                double bt[8] __attribute__((aligned(32))) = {0};
                memcpy(bt, bias, nr * sizeof(double));
                bb0 = _mm256_load_pd(bt); bb1 = _mm256_load_pd(bt + 4);
            }
            c00 = _mm256_add_pd(c00, bb0); c01 = _mm256_add_pd(c01, bb1);
            c10 = _mm256_add_pd(c10, bb0); c11 = _mm256_add_pd(c11, bb1);
            c20 = _mm256_add_pd(c20, bb0); c21 = _mm256_add_pd(c21, bb1);
            c30 = _mm256_add_pd(c30, bb0); c31 = _mm256_add_pd(c31, bb1);
            c40 = _mm256_add_pd(c40, bb0); c41 = _mm256_add_pd(c41, bb1);
            c50 = _mm256_add_pd(c50, bb0); c51 = _mm256_add_pd(c51, bb1);
        }
        if (act != EFFAI_ACT_NONE) {
            c00 = effai_act4d(c00, act); c01 = effai_act4d(c01, act);
            c10 = effai_act4d(c10, act); c11 = effai_act4d(c11, act);
            c20 = effai_act4d(c20, act); c21 = effai_act4d(c21, act);
            c30 = effai_act4d(c30, act); c31 = effai_act4d(c31, act);
            c40 = effai_act4d(c40, act); c41 = effai_act4d(c41, act);
            c50 = effai_act4d(c50, act); c51 = effai_act4d(c51, act);
        }
    }
    _mm256_storeu_pd(cc + 0 * ldt, c00); _mm256_storeu_pd(cc + 0 * ldt + 4, c01);
    if (full || mr > 1) { _mm256_storeu_pd(cc + 1 * ldt, c10); _mm256_storeu_pd(cc + 1 * ldt + 4, c11); }
    if (full || mr > 2) { _mm256_storeu_pd(cc + 2 * ldt, c20); _mm256_storeu_pd(cc + 2 * ldt + 4, c21); }
    if (full || mr > 3) { _mm256_storeu_pd(cc + 3 * ldt, c30); _mm256_storeu_pd(cc + 3 * ldt + 4, c31); }
    if (full || mr > 4) { _mm256_storeu_pd(cc + 4 * ldt, c40); _mm256_storeu_pd(cc + 4 * ldt + 4, c41); }
    if (full || mr > 5) { _mm256_storeu_pd(cc + 5 * ldt, c50); _mm256_storeu_pd(cc + 5 * ldt + 4, c51); }
    if (!full)
        for (i = 0; i < mr; i++) memcpy(c + i * ldc, tmp + i * 8, nr * sizeof(double));
}


/* One row of A (k contiguous elements) times NP whole packed panels of B (panel q at
 * bp + q*pstride, k x NR each), NP = 6 or 1: c[0 .. (NP-1)*NR + nlast) = act(a @ B +
 * bias).  For m < MR rows (the classifier of a batch-1 network: m = 1) a 6-row tile
 * would compute 6 rows to keep one; this kernel instead runs 12 independent FMA
 * chains across 6 panels, so one row costs about a sixth of the tile per panel.  Each
 * output is still one FMA chain over k in order (the k blocks of the tile kernel only
 * store and reload the partial sum exactly): the same bits as the tile kernel. */
#define EFFAI_DEFINE_ROW(T, SUF, V, W, LOAD, STORE, BCAST, FMA, ADD, ZERO, ACT, NP)    \
static void effai_row##NP##_##SUF(size_t k, const T* a, const T* bp, size_t pstride,  \
                                  int nlast, T* c, const T* bias, int act) {          \
    V acc[NP][2];                                                                     \
    T tmp[2 * W] __attribute__((aligned(32)));                                        \
    size_t kk;                                                                        \
    int q;                                                                            \
    for (q = 0; q < NP; q++) acc[q][0] = acc[q][1] = ZERO();                          \
    for (kk = 0; kk < k; kk++) {                                                      \
        const V av = BCAST(a + kk);                                                   \
        _Pragma("GCC unroll 6")                                                       \
        for (q = 0; q < NP; q++) {                                                    \
            acc[q][0] = FMA(av, LOAD(bp + q * pstride + kk * 2 * W), acc[q][0]);      \
            acc[q][1] = FMA(av, LOAD(bp + q * pstride + kk * 2 * W + W), acc[q][1]);  \
        }                                                                             \
    }                                                                                 \
    for (q = 0; q < NP; q++) {                                                        \
        int nc = q == NP - 1 ? nlast : 2 * W;                                         \
        V v0 = acc[q][0], v1 = acc[q][1];                                             \
        if (bias != NULL) {                                                           \
            if (nc == 2 * W) {                                                        \
                v0 = ADD(v0, LOAD(bias + q * 2 * W));                                 \
                v1 = ADD(v1, LOAD(bias + q * 2 * W + W));                             \
            } else {                                                                  \
                memset(tmp, 0, sizeof(tmp));                                          \
                memcpy(tmp, bias + q * 2 * W, nc * sizeof(T));                        \
                v0 = ADD(v0, LOAD(tmp));                                              \
                v1 = ADD(v1, LOAD(tmp + W));                                          \
            }                                                                         \
        }                                                                             \
        v0 = ACT(v0, act);                                                            \
        v1 = ACT(v1, act);                                                            \
        if (nc == 2 * W) {                                                            \
            STORE(c + q * 2 * W, v0);                                                 \
            STORE(c + q * 2 * W + W, v1);                                             \
        } else {                                                                      \
            STORE(tmp, v0);                                                           \
            STORE(tmp + W, v1);                                                       \
            memcpy(c + q * 2 * W, tmp, nc * sizeof(T));                               \
        }                                                                             \
    }                                                                                 \
}

EFFAI_DEFINE_ROW(float, f, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_broadcast_ss,
                 _mm256_fmadd_ps, _mm256_add_ps, _mm256_setzero_ps, effai_act8f, 6)
EFFAI_DEFINE_ROW(float, f, __m256, 8, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_broadcast_ss,
                 _mm256_fmadd_ps, _mm256_add_ps, _mm256_setzero_ps, effai_act8f, 1)
EFFAI_DEFINE_ROW(double, d, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_broadcast_sd,
                 _mm256_fmadd_pd, _mm256_add_pd, _mm256_setzero_pd, effai_act4d, 6)
EFFAI_DEFINE_ROW(double, d, __m256d, 4, _mm256_loadu_pd, _mm256_storeu_pd, _mm256_broadcast_sd,
                 _mm256_fmadd_pd, _mm256_add_pd, _mm256_setzero_pd, effai_act4d, 1)

/* Rows [0, m) (m <= 2: from 3 rows on, 6-row tiles cost about the same) and columns [j0, j1) of C on a pre-packed B, row by row. */
#define EFFAI_DEFINE_ROWS(T, SUF, NR)                                                 \
static void effai_gemm_rows1_##SUF(size_t m, size_t j0, size_t j1, size_t k,          \
                                   const T* a, size_t lda, const T* bp, T* c,         \
                                   size_t ldc, const T* bias, int act) {              \
    size_t i, j;                                                                      \
    for (i = 0; i < m; i++) {                                                         \
        for (j = j0; j + 6 * NR <= j1 || (j < j1 && j1 - j > 5 * NR); j += 6 * NR)    \
            effai_row6_##SUF(k, a + i * lda, bp + (j / NR) * NR * k, NR * k,          \
                             (int)(j1 - j - 5 * NR < NR ? j1 - j - 5 * NR : NR),      \
                             c + i * ldc + j, bias != NULL ? bias + j : NULL, act);   \
        for (; j < j1; j += NR)                                                       \
            effai_row1_##SUF(k, a + i * lda, bp + (j / NR) * NR * k, NR * k,          \
                             (int)(j1 - j < NR ? j1 - j : NR),                        \
                             c + i * ldc + j, bias != NULL ? bias + j : NULL, act);   \
    }                                                                                 \
}
EFFAI_DEFINE_ROWS(float, f, EFFAI_GEMM_NR_F)
EFFAI_DEFINE_ROWS(double, d, EFFAI_GEMM_NR_D)
#define EFFAI_GEMM_HAVE_ROWS 1

#else  /* portable fallback: same arithmetic order (one chain over k per element) */

#define EFFAI_DEFINE_UKR(T, SUF, NR)                                                 \
static void effai_ukr_##SUF(size_t kc, const T* ap, const T* bp,                    \
                            T* c, size_t ldc, int mr, int nr, int accumulate,        \
                            int last, const T* bias, int act) {                      \
    T acc[EFFAI_GEMM_MR][NR];                                                        \
    size_t kk;                                                                       \
    int i, j;                                                                        \
    for (i = 0; i < EFFAI_GEMM_MR; i++)                                              \
        for (j = 0; j < NR; j++)                                                     \
            acc[i][j] = (accumulate && i < mr && j < nr) ? c[i * ldc + j] : (T)0;    \
    for (kk = 0; kk < kc; kk++)                                                      \
        for (i = 0; i < EFFAI_GEMM_MR; i++) {                                        \
            T av = ap[i * kc + kk];                                       \
            for (j = 0; j < NR; j++) acc[i][j] += av * bp[kk * NR + j];              \
        }                                                                            \
    for (i = 0; i < mr; i++)                                                         \
        for (j = 0; j < nr; j++) {                                                   \
            T v = acc[i][j];                                                         \
            if (last) {                                                              \
                if (bias != NULL) v += bias[j];                                      \
                v = effai_act_##SUF(v, act);                                         \
            }                                                                        \
            c[i * ldc + j] = v;                                                      \
        }                                                                            \
}

EFFAI_DEFINE_UKR(float, f, EFFAI_GEMM_NR_F)
EFFAI_DEFINE_UKR(double, d, EFFAI_GEMM_NR_D)

#endif


/* ------------------------------------------------------------------ driver */

/* Elements of A packed at once by the few-rows path (288 KiB of floats, L2). */
#define EFFAI_GEMM_SMALL_A (2 * (size_t)EFFAI_GEMM_MC * EFFAI_GEMM_KC)

/* Columns of B packed at a time by effai_gemm_*: a KC x JB block (128 KiB). */
#define EFFAI_GEMM_JB_F 128
#define EFFAI_GEMM_JB_D 64

/* Elements of scratch effai_gemm_* needs (one buffer per thread): a packed
 * MC x KC chunk of A and a packed KC x JB block of B, plus alignment slack. */
static inline size_t effai_gemm_work_size(size_t nr) {
    size_t jb = nr == EFFAI_GEMM_NR_F ? EFFAI_GEMM_JB_F : EFFAI_GEMM_JB_D;
    return (size_t)EFFAI_GEMM_SMALL_A + (size_t)EFFAI_GEMM_KC * jb + 64;
}

#if EFFAI_GEMM_NATIVE
#define EFFAI_GEMM_ROWS1(SUF, ...) effai_gemm_rows1_##SUF(__VA_ARGS__)
#else
#define EFFAI_GEMM_ROWS1(SUF, ...) ((void)0)
#endif

#define EFFAI_DEFINE_GEMM(T, SUF, NR)                                                \
/* Rows 0..mc-1, columns 0..kc-1 of A into MR-row micro-panels (each row's kc  \
 * elements contiguous, panel after panel: no cache-set aliasing whatever lda);  \
 * the rows of the last panel past mc repeat row mc-1 (results discarded). */     \
static inline void effai_pack_a_##SUF(size_t mc, size_t kc, const T* a, size_t lda, \
                                      T* dst) {                                      \
    size_t i, mp = (mc + EFFAI_GEMM_MR - 1) / EFFAI_GEMM_MR * EFFAI_GEMM_MR;        \
    for (i = 0; i < mp; i++)                                                         \
        memcpy(dst + i * kc, a + (i < mc ? i : mc - 1) * lda, kc * sizeof(T));      \
}                                                                                    \
/* One packed KC-block of A (rows i0..i1) times the panels [j, je) of a packed    \
 * B block (panel q at bpan + q*NR*kc ... with stride pstride between panels). */  \
static inline void effai_gemm_block_##SUF(size_t i0, size_t i1, size_t j, size_t je,\
                                          size_t kc, const T* apack, const T* bpan, \
                                          size_t pstride, T* c, size_t ldc,          \
                                          int accumulate, int last, const T* bias,   \
                                          int act) {                                 \
    size_t i, nc, nt = (i1 - i0 + EFFAI_GEMM_MR - 1) / EFFAI_GEMM_MR, t;              \
    size_t lines = kc * NR * sizeof(T) / 64, l0, l1, l;                               \
    for (; j < je; j += NR, bpan += pstride) {                                       \
        nc = je - j < NR ? je - j : NR;                                              \
        for (i = i0, t = 0; i < i1; i += EFFAI_GEMM_MR, t++) {                       \
            /* Prefetch the next panel (into L2) a slice per micro-tile: with few   \
             * rows (7x7, 14x14 layers) a panel serves only a few tiles, and the    \
             * first of them would otherwise wait for B from L3 / memory. */         \
            if (j + NR < je) {                                                       \
                l0 = t * lines / nt;                                                 \
                l1 = (t + 1) * lines / nt;                                           \
                for (l = l0; l < l1; l++)                                            \
                    __builtin_prefetch((const char*)(bpan + pstride) + 64 * l, 0, 2);\
            }                                                                        \
            effai_ukr_##SUF(kc, apack + (i - i0) * kc, bpan, c + i * ldc + j, ldc,   \
                            (int)(i1 - i < EFFAI_GEMM_MR ? i1 - i : EFFAI_GEMM_MR),  \
                            (int)nc, accumulate, last,                               \
                            bias != NULL ? bias + j : NULL, act);                    \
        }                                                                            \
    }                                                                                \
}                                                                                    \
/* Rows [i0, i1) of C times one k-block [k0, k0+kc) of the panels [j, je).  When    \
 * the block is all of A's row (kc == k == lda: a 1x1 convolution with C_in <= KC,   \
 * or an im2col patch) A is already in the packed layout (row i at a + i*kc): the   \
 * whole micro-panels are read in place and only a partial last one (whose rows past \
 * i1 must repeat row i1-1, never read past the array) is copied into apack. */     \
static inline void effai_gemm_rows_##SUF(size_t i0, size_t i1, size_t j, size_t je,  \
                                         size_t kc, size_t k0, size_t k, const T* a, \
                                         size_t lda, T* apack, const T* bpan,        \
                                         size_t pstride, T* c, size_t ldc,           \
                                         const T* bias, int act) {                   \
    size_t iF;                                                                       \
    if (kc == k && lda == k) {                                                       \
        iF = i0 + (i1 - i0) / EFFAI_GEMM_MR * EFFAI_GEMM_MR;                         \
        if (iF > i0)                                                                 \
            effai_gemm_block_##SUF(i0, iF, j, je, kc, a + i0 * lda, bpan, pstride,  \
                                   c, ldc, 0, 1, bias, act);                         \
        if (i1 > iF) {                                                               \
            effai_pack_a_##SUF(i1 - iF, kc, a + iF * lda, lda, apack);               \
            effai_gemm_block_##SUF(iF, i1, j, je, kc, apack, bpan, pstride,          \
                                   c, ldc, 0, 1, bias, act);                         \
        }                                                                            \
        return;                                                                      \
    }                                                                                \
    effai_pack_a_##SUF(i1 - i0, kc, a + i0 * lda + k0, lda, apack);                  \
    effai_gemm_block_##SUF(i0, i1, j, je, kc, apack, bpan, pstride, c, ldc,          \
                           k0 > 0, k0 + kc == k, bias, act);                         \
}                                                                                    \
/* Few rows, long k (the 7x7 layers of a batch-1 MobileNet: m = 49, k = 512..1024):  \
 * every k-block of A is packed once (all of A stays in L2), then each panel of the  \
 * pre-packed B is walked down all of k at once: the panel streams in order from    \
 * L3 / memory, and the panel's C tiles stay in L1 between k-blocks instead of being \
 * stored and reloaded from L2 once per k-block over all of C.  Same k-blocks, same  \
 * FMA chain per element as the general order: the same bits. */                   \
static void effai_gemm_small_##SUF(size_t m, size_t j0, size_t j1, size_t k,         \
                                   const T* a, size_t lda, const T* bp, T* c,        \
                                   size_t ldc, const T* bias, int act, T* apack) {   \
    size_t mp = (m + EFFAI_GEMM_MR - 1) / EFFAI_GEMM_MR * EFFAI_GEMM_MR;             \
    size_t k0, kc, i, j, nc, l, l0, l1, t, nt = mp / EFFAI_GEMM_MR;                  \
    size_t lines = EFFAI_GEMM_KC * NR * sizeof(T) / 64;                              \
    const T* bpan;                                                                   \
    for (k0 = 0; k0 < k; k0 += kc) {                                                 \
        kc = k - k0 > EFFAI_GEMM_KC ? EFFAI_GEMM_KC : k - k0;                        \
        effai_pack_a_##SUF(m, kc, a + k0, lda, apack + mp * k0);                     \
    }                                                                                \
    for (j = j0; j < j1; j += NR) {                                                  \
        nc = j1 - j < NR ? j1 - j : NR;                                              \
        bpan = bp + (j / NR) * NR * k;                                               \
        for (k0 = 0; k0 < k; k0 += kc) {                                             \
            kc = k - k0 > EFFAI_GEMM_KC ? EFFAI_GEMM_KC : k - k0;                    \
            for (i = 0, t = 0; i < m; i += EFFAI_GEMM_MR, t++) {                     \
                /* B is one stream (panel after panel, k-major): prefetch the next    \
                 * KC x NR slice of it into L2, a share per micro-tile */            \
                if (j + NR < j1 || k0 + kc < k) {                                    \
                    l0 = t * lines / nt;                                             \
                    l1 = (t + 1) * lines / nt;                                       \
                    for (l = l0; l < l1; l++)                                        \
                        __builtin_prefetch((const char*)(bpan + (k0 + kc) * NR) + 64 * l, 0, 2); \
                }                                                                    \
                effai_ukr_##SUF(kc, apack + mp * k0 + i * kc, bpan + k0 * NR,        \
                                c + i * ldc + j, ldc,                                \
                                (int)(m - i < EFFAI_GEMM_MR ? m - i : EFFAI_GEMM_MR),\
                                (int)nc, k0 > 0, k0 + kc == k,                       \
                                bias != NULL ? bias + j : NULL, act);                \
            }                                                                        \
        }                                                                            \
    }                                                                                \
}                                                                                    \
/* Rows [0, m) and columns [j0, j1) of C (j0 a multiple of NR).                    \
 * bp != NULL: all of B packed by effai_pack_b_* (panel p at bp + p*NR*k).        \
 * bp == NULL: B (k x n, row stride ldb) is packed here, KC x JB block by block,  \
 * into the scratch `work` (effai_gemm_work_size(NR) elements): every element of  \
 * B is read once per MC... rows of A when m is small, with no large buffer. */   \
static void effai_gemm_##SUF(size_t m, size_t j0, size_t j1, size_t k,              \
                             const T* a, size_t lda, const T* bp,                    \
                             const T* b, size_t ldb, T* c, size_t ldc,               \
                             const T* bias, int act, T* work) {                      \
    const size_t JB = NR == EFFAI_GEMM_NR_F ? EFFAI_GEMM_JB_F : EFFAI_GEMM_JB_D;     \
    T* apack = (T*)(((size_t)work + 63) & ~(size_t)63);                              \
    T* bblk = apack + EFFAI_GEMM_SMALL_A;                                            \
    size_t i0, i1, i, k0, kc, j, jb, je;                                             \
    if (m == 0 || j1 <= j0) return;                                                  \
    if (k == 0) {                                                                    \
        for (i = 0; i < m; i++)                                                      \
            for (j = j0; j < j1; j++)                                                \
                c[i * ldc + j] = effai_act_##SUF(bias != NULL ? bias[j] : (T)0, act);\
        return;                                                                      \
    }                                                                                \
    if (EFFAI_GEMM_NATIVE && bp != NULL && m <= 2) {  /* row kernel: see above */    \
        EFFAI_GEMM_ROWS1(SUF, m, j0, j1, k, a, lda, bp, c, ldc, bias, act);          \
        return;                                                                      \
    }                                                                                \
    if (bp != NULL && k > EFFAI_GEMM_KC && m <= EFFAI_GEMM_MC                        \
        && (m + EFFAI_GEMM_MR - 1) / EFFAI_GEMM_MR * EFFAI_GEMM_MR * k                \
           <= EFFAI_GEMM_SMALL_A) {                                                  \
        effai_gemm_small_##SUF(m, j0, j1, k, a, lda, bp, c, ldc, bias, act, apack);   \
        return;                                                                      \
    }                                                                                \
    if (bp != NULL) {                                                                \
        for (i0 = 0; i0 < m; i0 = i1) {                                              \
            i1 = m - i0 > EFFAI_GEMM_MC ? i0 + EFFAI_GEMM_MC : m;                    \
            for (k0 = 0; k0 < k; k0 += kc) {                                         \
                kc = k - k0 > EFFAI_GEMM_KC ? EFFAI_GEMM_KC : k - k0;                \
                effai_gemm_rows_##SUF(i0, i1, j0, j1, kc, k0, k, a, lda, apack,      \
                                      bp + (j0 / NR) * NR * k + k0 * NR, NR * k,     \
                                      c, ldc, bias, act);                            \
            }                                                                        \
        }                                                                            \
        return;                                                                      \
    }                                                                                \
    for (jb = j0; jb < j1; jb = je) {                                                \
        je = j1 - jb > JB ? jb + JB : j1;                                            \
        for (k0 = 0; k0 < k; k0 += kc) {                                             \
            kc = k - k0 > EFFAI_GEMM_KC ? EFFAI_GEMM_KC : k - k0;                    \
            effai_pack_block_##SUF(kc, je - jb, NR, b + k0 * ldb + jb, ldb, bblk);   \
            for (i0 = 0; i0 < m; i0 = i1) {                                          \
                i1 = m - i0 > EFFAI_GEMM_MC ? i0 + EFFAI_GEMM_MC : m;                \
                effai_gemm_rows_##SUF(i0, i1, jb, je, kc, k0, k, a, lda, apack,      \
                                      bblk, NR * kc, c, ldc, bias, act);             \
            }                                                                        \
        }                                                                            \
    }                                                                                \
}

EFFAI_DEFINE_GEMM(float, f, EFFAI_GEMM_NR_F)
EFFAI_DEFINE_GEMM(double, d, EFFAI_GEMM_NR_D)

#endif
