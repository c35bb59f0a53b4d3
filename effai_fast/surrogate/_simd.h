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

#endif /* EFFAI_SURROGATE_SIMD_H */
