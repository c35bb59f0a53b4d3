/*
 * Inner loops of the surrogate prediction kernels (effai_fast/surrogate/_kernels.pyx).
 *
 * Why C and not Cython for these few loops: the prediction of a GP or an RBF
 * model is, per candidate, n distance evaluations, n kernel evaluations (an exp
 * or a sqrt) and one dot product.  Two things stop gcc from vectorising that
 * when it is written as a Cython loop: (1) libm's exp() is a scalar call
 * without -ffast-math, and (2) a floating-point sum reduction may not be
 * reordered without -fassociative-math.  Here exp is a branch-free polynomial
 * that gcc vectorises, and the reductions carry `#pragma omp simd
 * reduction(+:...)`, which allows the lane-wise partial sums only in that loop
 * (the result is fixed for a given build and CPU, independent of the thread
 * count).  Wheels cannot assume AVX2/AVX-512, so on gcc/x86-64/Linux each
 * function is compiled three times (target_clones) and the loader picks the
 * widest the CPU has.
 *
 * Accuracy: effai_sur_exp_d has a relative error below 1e-14 on [-708, 0]
 * (degree-11 Taylor polynomial on |r| <= ln2/2 after range reduction) and
 * returns 0 below -708; effai_sur_exp_f below 2e-7 on [-87, 0].  Both are
 * only called with arguments <= 0.
 */
#ifndef EFFAI_SURROGATE_SIMD_H
#define EFFAI_SURROGATE_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && (__GNUC__ >= 11)
#define EFFAI_SUR_CLONES \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define EFFAI_SUR_CLONES
#endif

#ifdef _OPENMP
#define EFFAI_SUR_PRAGMA(x) _Pragma(#x)
#else
#define EFFAI_SUR_PRAGMA(x)
#endif

/* kernel kinds shared with the .pyx */
enum {
    EFFAI_SUR_SE = 0,        /* exp(-s/2), s = scaled squared distance */
    EFFAI_SUR_MATERN32 = 1,  /* (1 + sqrt(3s)) exp(-sqrt(3s)) */
    EFFAI_SUR_MATERN52 = 2,  /* (1 + sqrt(5s) + 5s/3) exp(-sqrt(5s)) */
    EFFAI_SUR_LINEAR = 3,    /* -r                      (scipy RBFInterpolator sign) */
    EFFAI_SUR_CUBIC = 4,     /* r^3 */
    EFFAI_SUR_QUINTIC = 5,   /* -r^5 */
    EFFAI_SUR_TPS = 6,       /* r^2 log r, 0 at r = 0 */
    EFFAI_SUR_GAUSSIAN = 7   /* exp(-s) */
};

static inline double effai_sur_exp_d(double x)
{
    const double shift = 6755399441055744.0; /* 1.5 * 2^52: round to nearest */
    double xc = x < -708.0 ? -708.0 : x;
    double t = xc * 1.4426950408889634 + shift;
    double n = t - shift;
    double r = (xc - n * 0.693147180369123816490) - n * 1.90821492927058770002e-10;
    double p = 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t ti;
    memcpy(&ti, &t, sizeof ti);
    uint64_t bits = ((uint64_t)(ti + 1023)) << 52;
    double s;
    memcpy(&s, &bits, sizeof s);
    double res = p * s;
    return x < -708.0 ? 0.0 : res;
}

static inline float effai_sur_exp_f(float x)
{
    const float shift = 12582912.0f; /* 1.5 * 2^23 */
    float xc = x < -87.0f ? -87.0f : x;
    float t = xc * 1.44269504f + shift;
    float n = t - shift;
    float r = (xc - n * 0.693145752f) - n * 1.42860677e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t ti;
    memcpy(&ti, &t, sizeof ti);
    uint32_t bits = ((uint32_t)(ti + 127)) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    float res = p * s;
    return x < -87.0f ? 0.0f : res;
}

static inline double effai_sur_pos_d(double x) { return x > 0.0 ? x : 0.0; }
static inline float effai_sur_pos_f(float x) { return x > 0.0f ? x : 0.0f; }

/* phi(s) for one squared distance s, as a statement on variable v            */
#define EFFAI_SUR_PHI_SWITCH(T, EXP, SQRT, LOG, LOOP, V, AFTER)                             \
    switch (kind) {                                                                         \
    case EFFAI_SUR_SE:                                                                      \
        LOOP { T v_ = EXP((T)(-0.5) * (V)); AFTER }                                         \
        break;                                                                              \
    case EFFAI_SUR_MATERN32:                                                                \
        LOOP { T r_ = SQRT((T)3 * (V)); T v_ = ((T)1 + r_) * EXP(-r_); AFTER }              \
        break;                                                                              \
    case EFFAI_SUR_MATERN52:                                                                \
        LOOP { T s5_ = (T)5 * (V); T r_ = SQRT(s5_);                                        \
               T v_ = ((T)1 + r_ + s5_ / (T)3) * EXP(-r_); AFTER }                          \
        break;                                                                              \
    case EFFAI_SUR_LINEAR:                                                                  \
        LOOP { T v_ = -SQRT(V); AFTER }                                                     \
        break;                                                                              \
    case EFFAI_SUR_CUBIC:                                                                   \
        LOOP { T v_ = (V) * SQRT(V); AFTER }                                                \
        break;                                                                              \
    case EFFAI_SUR_QUINTIC:                                                                 \
        LOOP { T v_ = -(V) * (V) * SQRT(V); AFTER }                                         \
        break;                                                                              \
    case EFFAI_SUR_TPS:                                                                     \
        LOOP { T v_ = (V) > (T)0 ? (T)0.5 * (V) * LOG(V) : (T)0; AFTER }                    \
        break;                                                                              \
    default:                                                                                \
        LOOP { T v_ = EXP(-(V)); AFTER }                                                    \
        break;                                                                              \
    }

/* One template per float type: T the type, S the suffix.                                */
#define EFFAI_SUR_DEFINE(T, S, EXP, SQRT, LOG)                                              \
                                                                                            \
/* out[j] = sum_k (z[k] - zt[k*n + j])^2: scaled squared distances to n points.          */ \
/* Four dimensions per pass over out[] (a unit-stride, vectorised loop over j).          */ \
EFFAI_SUR_CLONES                                                                            \
static void effai_sur_sqdist_##S(const T *restrict z, const T *restrict zt, int n, int d,  \
                                 T *restrict out)                                           \
{                                                                                           \
    int k = 0;                                                                              \
    for (int j = 0; j < n; j++) out[j] = (T)0;                                              \
    for (; k + 4 <= d; k += 4) {                                                            \
        const T z0 = z[k], z1 = z[k + 1], z2 = z[k + 2], z3 = z[k + 3];                     \
        const T *r0 = zt + (size_t)k * (size_t)n;                                           \
        const T *r1 = r0 + n, *r2 = r1 + n, *r3 = r2 + n;                                   \
        for (int j = 0; j < n; j++) {                                                       \
            T a = z0 - r0[j], b = z1 - r1[j], c = z2 - r2[j], e = z3 - r3[j];               \
            out[j] += (a * a + b * b) + (c * c + e * e);                                    \
        }                                                                                   \
    }                                                                                       \
    for (; k < d; k++) {                                                                    \
        const T zk = z[k];                                                                  \
        const T *row = zt + (size_t)k * (size_t)n;                                          \
        for (int j = 0; j < n; j++) {                                                       \
            T a = zk - row[j];                                                              \
            out[j] += a * a;                                                                \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
                                                                                            \
/* buf[j] <- phi(buf[j]) in place                                                        */ \
EFFAI_SUR_CLONES                                                                            \
static void effai_sur_kernel_##S(T *restrict buf, int n, int kind)                          \
{                                                                                           \
    EFFAI_SUR_PHI_SWITCH(T, EXP, SQRT, LOG, for (int j = 0; j < n; j++), buf[j],            \
                         buf[j] = v_;)                                                      \
}                                                                                           \
                                                                                            \
/* sum_j w[j] phi(buf[j]): the kernel pass and the dot product fused                     */ \
EFFAI_SUR_CLONES                                                                            \
static T effai_sur_kdot_##S(const T *restrict buf, const T *restrict w, int n, int kind)   \
{                                                                                           \
    T acc = (T)0;                                                                           \
    EFFAI_SUR_PHI_SWITCH(T, EXP, SQRT, LOG,                                                 \
                         EFFAI_SUR_PRAGMA(omp simd reduction(+:acc))                        \
                         for (int j = 0; j < n; j++), buf[j], acc += w[j] * v_;)            \
    return acc;                                                                             \
}                                                                                           \
                                                                                            \
/* g[j] <- phi(max(xx + zz[j] - 2 g[j], 0)) in place                                     */ \
EFFAI_SUR_CLONES                                                                            \
static void effai_sur_kernel_gram_##S(T *restrict g, const T *restrict zz, T xx, int n,    \
                                      int kind)                                             \
{                                                                                           \
    EFFAI_SUR_PHI_SWITCH(T, EXP, SQRT, LOG, for (int j = 0; j < n; j++),                    \
                         effai_sur_pos_##S(xx + zz[j] - (T)2 * g[j]), g[j] = v_;)           \
}                                                                                           \
                                                                                            \
EFFAI_SUR_CLONES                                                                            \
static T effai_sur_dot_##S(const T *a, const T *b, int n)                                   \
{                                                                                           \
    T acc = (T)0;                                                                           \
    EFFAI_SUR_PRAGMA(omp simd reduction(+:acc))                                             \
    for (int j = 0; j < n; j++) acc += a[j] * b[j];                                         \
    return acc;                                                                             \
}                                                                                           \
                                                                                            \
EFFAI_SUR_CLONES                                                                            \
static T effai_sur_sumsq_##S(const T *a, int n)                                             \
{                                                                                           \
    T acc = (T)0;                                                                           \
    EFFAI_SUR_PRAGMA(omp simd reduction(+:acc))                                             \
    for (int j = 0; j < n; j++) acc += a[j] * a[j];                                         \
    return acc;                                                                             \
}                                                                                           \
                                                                                            \
/* tanh in place (for the MLP), via exp(-2|x|)                                            */ \
EFFAI_SUR_CLONES                                                                            \
static void effai_sur_tanh_##S(T *buf, size_t n)                                            \
{                                                                                           \
    for (size_t j = 0; j < n; j++) {                                                        \
        T x = buf[j];                                                                       \
        T ax = x < (T)0 ? -x : x;                                                           \
        T e = EXP((T)(-2) * ax);                                                            \
        T t = ((T)1 - e) / ((T)1 + e);                                                      \
        buf[j] = x < (T)0 ? -t : t;                                                         \
    }                                                                                       \
}

EFFAI_SUR_DEFINE(double, d, effai_sur_exp_d, sqrt, log)
EFFAI_SUR_DEFINE(float, f, effai_sur_exp_f, sqrtf, logf)

/* ------------------------------------------------------------------------------------
 * The fused GP-mean kernel (squared-exponential / Gaussian, float64).
 *
 * For EFFAI_SUR_ROWS candidate rows z_r at a time and 4 training points z_j at a time,
 *     s_rj = max(|z_r|^2 + |z_j|^2 - 2 z_r . z_j, 0),  acc_r += w_j exp(-c s_rj)
 * entirely in registers: the cross terms are a register-blocked GEMM (each training
 * vector, loaded once, feeds EFFAI_SUR_ROWS FMAs per dimension) and the kernel values
 * never go to memory.  Written with GCC vector extensions of 4 doubles (one ymm on
 * x86-64-v3/v4, two xmm on the baseline); 4 rows x 4 lanes keep the accumulators and
 * the polynomial's constants within the 16 ymm registers of AVX2.
 * Training data are packed per 4 points: ztp[(j/4) * d * 4 + k * 4 + j % 4], with n
 * padded to a multiple of 4 by points of weight 0.  Each row's sum is over the 4 lanes
 * then added in a fixed order, so the result does not depend on the thread count.
 * Cancellation: the absolute error of s is ~1e-16 (|z_r|^2 + |z_j|^2), and
 * d exp(-c s)/ds is bounded, so the kernel value moves by the same ~1e-16 relative
 * amount as with the difference form (the sqrt-based RBF kernels are not done here).
 * ---------------------------------------------------------------------------------- */
#if defined(__GNUC__)
#define EFFAI_SUR_HAVE_FUSED 1
#define EFFAI_SUR_ROWS 4
#define EFFAI_SUR_VW 4
typedef double effai_v4d __attribute__((vector_size(32)));
typedef long long effai_v4l __attribute__((vector_size(32)));

/* 2^x on 4 lanes for -1020 <= x (the callers clamp): x = n + r, n = round(x),
 * |r| <= 1/2, 2^r by its degree-10 Chebyshev (near-minimax) polynomial, relative error
 * below 5e-16 on [-1/2, 1/2] in float64 Horner (measured against mpmath), times 2^n built
 * in the exponent bits.  Base 2 instead of e: the caller scales the exponent by log2(e)
 * (folded into u, hx, hz), which saves the two-constant ln2 reduction.               */
#define EFFAI_SUR_EXP2_POLY(P, R)                                                           \
    P = R * 7.072585949269223e-09 + 1.0208690299958306e-07;                                 \
    P = P * R + 1.321544258792169e-06;                                                      \
    P = P * R + 1.5252657260200837e-05;                                                     \
    P = P * R + 0.0001540353044173605;                                                      \
    P = P * R + 0.0013333558230164974;                                                      \
    P = P * R + 0.009618129107606888;                                                       \
    P = P * R + 0.05550410866444772;                                                        \
    P = P * R + 0.24022650695910097;                                                        \
    P = P * R + 0.69314718055995;                                                           \
    P = P * R + 1.0;

static inline __attribute__((always_inline)) effai_v4d effai_sur_exp2_v4d(effai_v4d x)
{
    effai_v4d t = x + 6755399441055744.0;   /* 1.5 * 2^52: round to nearest integer */
    effai_v4d nn = t - 6755399441055744.0;
    effai_v4d r = x - nn;                   /* exact */
    effai_v4d p;
    EFFAI_SUR_EXP2_POLY(p, r)
    effai_v4l bits = ((effai_v4l)t + 1023) << 52;
    return p * (effai_v4d)bits;
}

static inline __attribute__((always_inline)) effai_v4d effai_sur_loadu_v4d(const double *a)
{
    effai_v4d v;
    memcpy(&v, a, sizeof v);
    return v;
}

/* max(e, -1020), as a mask blend (GCC's C vector extensions have no ?: nor max).  No
 * upper clamp: cancellation can leave e ~ +1e-16 |z|^2 above 0 near a training point,
 * where 2^e = 1 + O(1e-16) is as accurate as the difference form.                     */
static inline __attribute__((always_inline)) effai_v4d effai_sur_clamp_v4d(effai_v4d e)
{
    const effai_v4d lo = {-1020.0, -1020.0, -1020.0, -1020.0};
    effai_v4l m = e > lo;
    return (effai_v4d)(((effai_v4l)e & m) | ((effai_v4l)lo & ~m));
}

/* acc[r] = sum_j w[j] 2^(e_rj) with the exponent
 *     e_rj = max(hx[r] + hz[j] + sum_k u[r, k] zt[k, j], -1020) = -c log2(e) s_rj
 * for u = 2 c log2(e) z_r, hx = -c log2(e) |z_r|^2, hz = -c log2(e) |z_j|^2, for
 * r < EFFAI_SUR_ROWS; u: (EFFAI_SUR_ROWS, d) row-major, ztp/hzp/wp packed and padded
 * to 4 * nv points.  (2^-1020 ~ 1e-307 stands for 0: far points add nothing visible.) */
EFFAI_SUR_CLONES
static void effai_sur_fused_se_d_generic(const double *restrict u, const double *restrict hx,
                                         const double *restrict ztp,
                                         const double *restrict hzp,
                                         const double *restrict wp, int nv, int d,
                                         double *restrict acc)
{
    effai_v4d a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    const double *u0 = u, *u1 = u + d, *u2 = u + 2 * d, *u3 = u + 3 * d;
    for (int v = 0; v < nv; v++) {
        const double *blk = ztp + (size_t)v * (size_t)d * 4;
        effai_v4d hz = effai_sur_loadu_v4d(hzp + 4 * (size_t)v);
        effai_v4d e0 = hz + hx[0], e1 = hz + hx[1], e2 = hz + hx[2], e3 = hz + hx[3];
        for (int k = 0; k < d; k++) {
            effai_v4d t = effai_sur_loadu_v4d(blk + 4 * k);
            e0 += t * u0[k];
            e1 += t * u1[k];
            e2 += t * u2[k];
            e3 += t * u3[k];
        }
        effai_v4d w = effai_sur_loadu_v4d(wp + 4 * (size_t)v);
        a0 += w * effai_sur_exp2_v4d(effai_sur_clamp_v4d(e0));
        a1 += w * effai_sur_exp2_v4d(effai_sur_clamp_v4d(e1));
        a2 += w * effai_sur_exp2_v4d(effai_sur_clamp_v4d(e2));
        a3 += w * effai_sur_exp2_v4d(effai_sur_clamp_v4d(e3));
    }
    acc[0] = (a0[0] + a0[1]) + (a0[2] + a0[3]);
    acc[1] = (a1[0] + a1[1]) + (a1[2] + a1[3]);
    acc[2] = (a2[0] + a2[1]) + (a2[2] + a2[3]);
    acc[3] = (a3[0] + a3[1]) + (a3[2] + a3[3]);
}

#if defined(__x86_64__) && !defined(__clang__) && (__GNUC__ >= 8)
#include <immintrin.h>
#define EFFAI_SUR_X86 1
/* The same loop in AVX2 + FMA intrinsics (dispatched at run time): the clamp is one
 * vmaxpd instead of the four-instruction mask blend the vector extensions need, and
 * the exponent's sum is an explicit FMA chain.  Same arithmetic otherwise, so the
 * two versions agree to rounding (the FMA contractions may differ).                   */
static inline __attribute__((always_inline, target("avx2,fma"))) __m256d
effai_sur_exp2_avx2(__m256d x)
{
    const __m256d shift = _mm256_set1_pd(6755399441055744.0);
    x = _mm256_max_pd(x, _mm256_set1_pd(-1020.0));
    __m256d t = _mm256_add_pd(x, shift);
    __m256d r = _mm256_sub_pd(x, _mm256_sub_pd(t, shift));
    __m256d p = _mm256_fmadd_pd(r, _mm256_set1_pd(7.072585949269223e-09),
                                _mm256_set1_pd(1.0208690299958306e-07));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.321544258792169e-06));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.5252657260200837e-05));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.0001540353044173605));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.0013333558230164974));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.009618129107606888));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.05550410866444772));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.24022650695910097));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(0.69314718055995));
    p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(1.0));
    __m256i bits = _mm256_slli_epi64(
        _mm256_add_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(1023)), 52);
    return _mm256_mul_pd(p, _mm256_castsi256_pd(bits));
}

__attribute__((target("avx2,fma")))
static void effai_sur_fused_se_d_avx2(const double *restrict u, const double *restrict hx,
                                      const double *restrict ztp, const double *restrict hzp,
                                      const double *restrict wp, int nv, int d,
                                      double *restrict acc)
{
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    const __m256d h0 = _mm256_set1_pd(hx[0]), h1 = _mm256_set1_pd(hx[1]);
    const __m256d h2 = _mm256_set1_pd(hx[2]), h3 = _mm256_set1_pd(hx[3]);
    const double *u0 = u, *u1 = u + d, *u2 = u + 2 * d, *u3 = u + 3 * d;
    for (int v = 0; v < nv; v++) {
        const double *blk = ztp + (size_t)v * (size_t)d * 4;
        __m256d hz = _mm256_loadu_pd(hzp + 4 * (size_t)v);
        __m256d e0 = _mm256_add_pd(hz, h0), e1 = _mm256_add_pd(hz, h1);
        __m256d e2 = _mm256_add_pd(hz, h2), e3 = _mm256_add_pd(hz, h3);
        for (int k = 0; k < d; k++) {
            __m256d t = _mm256_loadu_pd(blk + 4 * k);
            e0 = _mm256_fmadd_pd(t, _mm256_broadcast_sd(u0 + k), e0);
            e1 = _mm256_fmadd_pd(t, _mm256_broadcast_sd(u1 + k), e1);
            e2 = _mm256_fmadd_pd(t, _mm256_broadcast_sd(u2 + k), e2);
            e3 = _mm256_fmadd_pd(t, _mm256_broadcast_sd(u3 + k), e3);
        }
        __m256d w = _mm256_loadu_pd(wp + 4 * (size_t)v);
        a0 = _mm256_fmadd_pd(w, effai_sur_exp2_avx2(e0), a0);
        a1 = _mm256_fmadd_pd(w, effai_sur_exp2_avx2(e1), a1);
        a2 = _mm256_fmadd_pd(w, effai_sur_exp2_avx2(e2), a2);
        a3 = _mm256_fmadd_pd(w, effai_sur_exp2_avx2(e3), a3);
    }
    double t[4][4];
    _mm256_storeu_pd(t[0], a0);
    _mm256_storeu_pd(t[1], a1);
    _mm256_storeu_pd(t[2], a2);
    _mm256_storeu_pd(t[3], a3);
    for (int r = 0; r < 4; r++)
        acc[r] = (t[r][0] + t[r][1]) + (t[r][2] + t[r][3]);
}
#else
#define EFFAI_SUR_X86 0
#endif

/* 1: the AVX2 + FMA loop runs on this CPU (checked by the caller once per call). */
static inline int effai_sur_fused_impl(void)
{
#if EFFAI_SUR_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

static inline void effai_sur_fused_se_d(int impl, const double *u, const double *hx,
                                        const double *ztp, const double *hzp,
                                        const double *wp, int nv, int d, double *acc)
{
#if EFFAI_SUR_X86
    if (impl == 1) {
        effai_sur_fused_se_d_avx2(u, hx, ztp, hzp, wp, nv, d, acc);
        return;
    }
#endif
    (void)impl;
    effai_sur_fused_se_d_generic(u, hx, ztp, hzp, wp, nv, d, acc);
}
#else
#define EFFAI_SUR_HAVE_FUSED 0
#define EFFAI_SUR_ROWS 4
#define EFFAI_SUR_VW 4
static inline int effai_sur_fused_impl(void) { return 0; }
static void effai_sur_fused_se_d(int impl, const double *u, const double *hx,
                                 const double *ztp, const double *hzp, const double *wp, int nv,
                                 int d, double *acc)
{
    (void)impl; (void)u; (void)hx; (void)ztp; (void)hzp; (void)wp; (void)nv; (void)d;
    acc[0] = acc[1] = acc[2] = acc[3] = 0.0;
}
#endif

#endif /* EFFAI_SURROGATE_SIMD_H */
