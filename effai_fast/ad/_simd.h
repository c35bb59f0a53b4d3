/* Per-instruction block loops of the tape sweep (_tape.pyx), for float and double.
 *
 * Each loop runs one instruction over a block of n points laid out
 * structure-of-arrays.  The lowering never computes in place (a result slot
 * is never one of its argument slots), so the pointers are `restrict` and
 * every loop carries `omp simd`: the compiler vectorises it without runtime
 * alias checks, branches become blends.
 *
 * exp, log, sin, cos (and sigmoid through exp) use glibc's vector math library
 * where available (see below); a hand-written polynomial exp measured slower
 * than libmvec and was dropped.  tanh, log1p, expm1, pow call libm per point.
 */
#ifndef EFFAI_AD_SIMD_H
#define EFFAI_AD_SIMD_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <stddef.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif


#if defined(__GNUC__)
#define EFFAI_ALWAYS_INLINE __attribute__((always_inline))
#else
#define EFFAI_ALWAYS_INLINE
#endif

/* See effai_sweep_d below: AVX2 clone of the block sweep, chosen at load time. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(EFFAI_NO_CLONES) && !defined(__AVX2__)
#define EFFAI_CLONES __attribute__((target_clones("avx2", "default")))
#define EFFAI_HAVE_CLONES 1
#else
#define EFFAI_CLONES
#define EFFAI_HAVE_CLONES 0
#endif

/* Ask for the cache lines of [p, p + bytes) ahead of use (for write if rw): the
 * block sweep prefetches the next block's input rows and its own output rows, so
 * the memory traffic overlaps the (L1-resident) sweep instead of following it. */
static inline void effai_prefetch(const void* p, size_t bytes, int rw) {
#if defined(__GNUC__)
    const char* c = (const char*)p;
    if (rw) { for (size_t i = 0; i < bytes; i += 64) __builtin_prefetch(c + i, 1, 3); }
    else { for (size_t i = 0; i < bytes; i += 64) __builtin_prefetch(c + i, 0, 3); }
#else
    (void)p; (void)bytes; (void)rw;
#endif
}

/* Op codes of the flat tape (mirrored by cdef extern in _tape.pxd). */
enum {
    OP_CONST = 0, OP_COPY, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MAX, OP_MIN, OP_MUL0,
    OP_ADDC, OP_MULC, OP_RSUBC, OP_RDIVC, OP_POWC, OP_CPOW, OP_MAXC, OP_MINC, OP_DIVC,
    OP_MUL0C, OP_NEG, OP_EXP, OP_LOG, OP_LOG1P, OP_EXPM1, OP_SQRT, OP_SIN, OP_COS, OP_TANH,
    OP_SIGMOID, OP_ABS, OP_SIGN, OP_SQUARE, OP_LT, OP_LE, OP_EQ, OP_NE, OP_LTC, OP_LEC,
    OP_GTC, OP_GEC, OP_EQC, OP_NEC, OP_WHERE, OP_WHERE_VC, OP_WHERE_CV,
    /* superinstructions: two ops fused by the lowering when the first one's only
     * use is the second; each rounds exactly like the pair it replaces */
    OP_ADDMULC,   /* x + y*q          add(x, mulc(y))       */
    OP_ADD3,      /* (x + y) + z      add(add(x, y), z)     */
    OP_MULCMUL0,  /* mul0(x*q, y)     mul0(mulc(x), y)      */
    OP_MUL0MULC,  /* mul0(x, y*q)     mul0(x, mulc(y))      */
    OP_SQSUB,     /* x - y*y          sub(x, square(y))     */
    OP_SQMULC,    /* (x*x)*q          mulc(square(x))       */
    OP_ADDSQ,     /* x + y*y          add(x, square(y))     */
    OP_ADDMUL0,   /* x + mul0(y, z)   add(x, mul0(y, z))    */
    OP_ADDMUL,    /* x + y*z          add(x, mul(y, z))     */
    OP_SUBSQ,     /* (x - y)^2        square(sub(x, y))     */
    OP_NEGMUL0,   /* -mul0(x, y)      neg(mul0(x, y))       */
    OP_MUL0NEG,   /* mul0(x, -y)      mul0(x, neg(y))       */
    OP_ADDSUB,    /* (x + y) - z      sub(add(x, y), z)     */
    N_OPCODES
};

#if defined(_OPENMP)
#define EFFAI_SIMD _Pragma("omp simd")
#else
#define EFFAI_SIMD
#endif

/* glibc's vector math library (libmvec, x86-64): declaring the SIMD variants of
 * exp/log/sin/cos lets `omp simd` loops call _ZGVbN2v_exp & co. (2 doubles or 4
 * floats per call at the SSE2 baseline, < 4 ulp) instead of libm once per point.
 * meson defines EFFAI_HAVE_LIBMVEC when libmvec is found; elsewhere these loops
 * call libm one element at a time. */
#if defined(EFFAI_HAVE_LIBMVEC) && defined(_OPENMP) && defined(__x86_64__) && defined(__GLIBC__)
#pragma omp declare simd notinbranch
double exp(double);
#pragma omp declare simd notinbranch
double log(double);
#pragma omp declare simd notinbranch
double sin(double);
#pragma omp declare simd notinbranch
double cos(double);
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float logf(float);
#pragma omp declare simd notinbranch
float sinf(float);
#pragma omp declare simd notinbranch
float cosf(float);
#define EFFAI_SIMD_MATH EFFAI_SIMD
#define EFFAI_VECTOR_MATH 1
#else
#define EFFAI_SIMD_MATH
#define EFFAI_VECTOR_MATH 0
#endif

#define EFFAI_DEFINE_LOOPS(T, S, EXPLIB)                                   \
static inline void effai_add_##S(T* restrict o, const T* restrict x, const T* restrict y,   \
                                 ptrdiff_t n) {                                            \
    EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] + y[j];                        \
}                                                                                           \
static inline void effai_sub_##S(T* restrict o, const T* restrict x, const T* restrict y,   \
                                 ptrdiff_t n) {                                            \
    EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] - y[j];                        \
}                                                                                           \
static inline void effai_mul_##S(T* restrict o, const T* restrict x, const T* restrict y,   \
                                 ptrdiff_t n) {                                            \
    EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] * y[j];                        \
}                                                                                           \
static inline void effai_div_##S(T* restrict o, const T* restrict x, const T* restrict y,   \
                                 ptrdiff_t n) {                                            \
    EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] / y[j];                        \
}                                                                                           \
static inline void effai_mul0_##S(T* restrict o, const T* restrict x, const T* restrict y,  \
                                  ptrdiff_t n) {                                           \
    EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                                          \
        T a = x[j], t = a * y[j]; o[j] = a == (T)0 ? (T)0 : t; }                            \
}                                                                                           \
static inline void effai_max_##S(T* restrict o, const T* restrict x, const T* restrict y,   \
                                 ptrdiff_t n) {                                            \
    EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                                          \
        T a = x[j], b = y[j]; o[j] = (a != a || a >= b) ? a : b; }                          \
}                                                                                           \
static inline void effai_min_##S(T* restrict o, const T* restrict x, const T* restrict y,   \
                                 ptrdiff_t n) {                                            \
    EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                                          \
        T a = x[j], b = y[j]; o[j] = (a != a || a <= b) ? a : b; }                          \
}                                                                                           \
static inline void effai_cmp_##S(int kind, T* restrict o, const T* restrict x,              \
                                 const T* restrict y, ptrdiff_t n) {                       \
    switch (kind) {                                                                         \
    case 0: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] < y[j] ? 1 : 0; break; \
    case 1: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] <= y[j] ? 1 : 0; break;\
    case 2: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] == y[j] ? 1 : 0; break;\
    default: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] != y[j] ? 1 : 0;     \
    }                                                                                       \
}                                                                                           \
static inline void effai_cmpc_##S(int kind, T* restrict o, const T* restrict x, T q,        \
                                  ptrdiff_t n) {                                           \
    switch (kind) {                                                                         \
    case 0: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] < q ? 1 : 0; break;    \
    case 1: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] <= q ? 1 : 0; break;   \
    case 2: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] > q ? 1 : 0; break;    \
    case 3: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] >= q ? 1 : 0; break;   \
    case 4: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] == q ? 1 : 0; break;   \
    default: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] != q ? 1 : 0;        \
    }                                                                                       \
}                                                                                           \
static inline void effai_where_##S(T* restrict o, const T* restrict c, const T* restrict x, \
                                   const T* restrict y, ptrdiff_t n) {                     \
    EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = c[j] != 0 ? x[j] : y[j];            \
}                                                                                           \
static inline void effai_where_vc_##S(T* restrict o, const T* restrict c,                   \
                                      const T* restrict x, T q, ptrdiff_t n) {             \
    EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = c[j] != 0 ? x[j] : q;               \
}                                                                                           \
static inline void effai_where_cv_##S(T* restrict o, const T* restrict c,                   \
                                      const T* restrict y, T q, ptrdiff_t n) {             \
    EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = c[j] != 0 ? q : y[j];               \
}                                                                                           \
static inline void effai_unc_##S(int kind, T* restrict o, const T* restrict x, T q,         \
                                 ptrdiff_t n) {                                            \
    switch (kind) {                                                                         \
    case 0: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] + q; break;            \
    case 1: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] * q; break;            \
    case 2: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = q - x[j]; break;            \
    case 3: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = q / x[j]; break;            \
    case 4: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] / q; break;            \
    case 5: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                                  \
        T a = x[j], t = a * q; o[j] = a == (T)0 ? (T)0 : t; } break;                        \
    case 6: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                                  \
        T a = x[j]; o[j] = (a != a || a >= q) ? a : q; } break;                             \
    case 7: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                                  \
        T a = x[j]; o[j] = (a != a || a <= q) ? a : q; } break;                             \
    case 8: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = q; break;                   \
    case 9: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j]; break;                \
    case 10: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = -x[j]; break;              \
    case 11: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = x[j] * x[j]; break;        \
    case 12: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                                 \
        T a = x[j]; o[j] = a > 0 ? (T)1 : (a < 0 ? (T)-1 : a); } break;                     \
    default: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                                 \
        T a = x[j]; o[j] = a < 0 ? -a : a; } break;                                         \
    }                                                                                       \
}                                                                                           \
static inline void effai_fused_##S(int op, T* restrict o, const T* restrict x,               \
                                   const T* restrict y, const T* restrict z, T q,           \
                                   ptrdiff_t n) {                                          \
    switch (op) {                                                                           \
    case OP_ADDMULC: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                         \
        T t = y[j] * q; o[j] = x[j] + t; } break;                                           \
    case OP_ADD3: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                            \
        T t = x[j] + y[j]; o[j] = t + z[j]; } break;                                        \
    case OP_MULCMUL0: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                        \
        T a = x[j] * q, t = a * y[j]; o[j] = a == (T)0 ? (T)0 : t; } break;                 \
    case OP_MUL0MULC: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                        \
        T a = x[j], t = a * (y[j] * q); o[j] = a == (T)0 ? (T)0 : t; } break;               \
    case OP_SQSUB: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                           \
        T t = y[j] * y[j]; o[j] = x[j] - t; } break;                                        \
    case OP_SQMULC: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                          \
        T t = x[j] * x[j]; o[j] = t * q; } break;                                           \
    case OP_ADDSQ: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                           \
        T t = y[j] * y[j]; o[j] = x[j] + t; } break;                                        \
    case OP_ADDMUL0: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                         \
        T a = y[j], t = a * z[j]; t = a == (T)0 ? (T)0 : t; o[j] = x[j] + t; } break;       \
    case OP_ADDMUL: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                          \
        T t = y[j] * z[j]; o[j] = x[j] + t; } break;                                        \
    case OP_NEGMUL0: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                         \
        T a = x[j], t = a * y[j]; t = a == (T)0 ? (T)0 : t; o[j] = -t; } break;             \
    case OP_MUL0NEG: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                         \
        T a = x[j], t = a * -y[j]; o[j] = a == (T)0 ? (T)0 : t; } break;                    \
    case OP_ADDSUB: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                          \
        T t = x[j] + y[j]; o[j] = t - z[j]; } break;                                        \
    default: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) {                                 \
        T t = x[j] - y[j]; o[j] = t * t; } break;                                           \
    }                                                                                       \
}                                                                                           \
static inline void effai_exp_##S(T* restrict o, const T* restrict x, ptrdiff_t n) {         \
    EFFAI_SIMD_MATH for (ptrdiff_t j = 0; j < n; j++) o[j] = EXPLIB(x[j]);                  \
}                                                                                           \
static inline void effai_sigmoid_##S(T* restrict o, const T* restrict x, ptrdiff_t n) {     \
    EFFAI_SIMD_MATH for (ptrdiff_t j = 0; j < n; j++) o[j] = (T)1 / ((T)1 + EXPLIB(-x[j])); \
}

EFFAI_DEFINE_LOOPS(double, d, exp)
EFFAI_DEFINE_LOOPS(float, f, expf)


#define EFFAI_LIBM_LOOP(S, T, name, fn)                                                    \
static inline void effai_##name##_##S(T* restrict o, const T* restrict x, ptrdiff_t n) {    \
    for (ptrdiff_t j = 0; j < n; j++) o[j] = fn(x[j]);                                      \
}
#define EFFAI_VMATH_LOOP(S, T, name, fn)                                                   \
static inline void effai_##name##_##S(T* restrict o, const T* restrict x, ptrdiff_t n) {    \
    EFFAI_SIMD_MATH for (ptrdiff_t j = 0; j < n; j++) o[j] = fn(x[j]);                      \
}

EFFAI_VMATH_LOOP(d, double, log, log)
EFFAI_LIBM_LOOP(d, double, log1p, log1p)
EFFAI_LIBM_LOOP(d, double, expm1, expm1)
EFFAI_VMATH_LOOP(d, double, sin, sin)
EFFAI_VMATH_LOOP(d, double, cos, cos)
EFFAI_LIBM_LOOP(d, double, tanh, tanh)
EFFAI_VMATH_LOOP(f, float, log, logf)
EFFAI_LIBM_LOOP(f, float, log1p, log1pf)
EFFAI_LIBM_LOOP(f, float, expm1, expm1f)
EFFAI_VMATH_LOOP(f, float, sin, sinf)
EFFAI_VMATH_LOOP(f, float, cos, cosf)
EFFAI_LIBM_LOOP(f, float, tanh, tanhf)

/* One instruction over a block: o <- op(x, y, z; q). */
#define EFFAI_DEFINE_OP(T, S, SQRT, POW)                                                     \
static inline EFFAI_ALWAYS_INLINE void effai_op_##S(int op, T* restrict o, const T* x, const T* y, const T* z,  \
                                T q, ptrdiff_t n) {                                        \
    switch (op) {                                                                           \
    case OP_ADD: effai_add_##S(o, x, y, n); break;                                          \
    case OP_SUB: effai_sub_##S(o, x, y, n); break;                                          \
    case OP_MUL: effai_mul_##S(o, x, y, n); break;                                          \
    case OP_DIV: effai_div_##S(o, x, y, n); break;                                          \
    case OP_MUL0: effai_mul0_##S(o, x, y, n); break;                                        \
    case OP_MAX: effai_max_##S(o, x, y, n); break;                                          \
    case OP_MIN: effai_min_##S(o, x, y, n); break;                                          \
    case OP_LT: effai_cmp_##S(0, o, x, y, n); break;                                        \
    case OP_LE: effai_cmp_##S(1, o, x, y, n); break;                                        \
    case OP_EQ: effai_cmp_##S(2, o, x, y, n); break;                                        \
    case OP_NE: effai_cmp_##S(3, o, x, y, n); break;                                        \
    case OP_ADDC: effai_unc_##S(0, o, x, q, n); break;                                      \
    case OP_MULC: effai_unc_##S(1, o, x, q, n); break;                                      \
    case OP_RSUBC: effai_unc_##S(2, o, x, q, n); break;                                     \
    case OP_RDIVC: effai_unc_##S(3, o, x, q, n); break;                                     \
    case OP_DIVC: effai_unc_##S(4, o, x, q, n); break;                                      \
    case OP_MUL0C: effai_unc_##S(5, o, x, q, n); break;                                     \
    case OP_MAXC: effai_unc_##S(6, o, x, q, n); break;                                      \
    case OP_MINC: effai_unc_##S(7, o, x, q, n); break;                                      \
    case OP_CONST: effai_unc_##S(8, o, x, q, n); break;                                     \
    case OP_COPY: effai_unc_##S(9, o, x, q, n); break;                                      \
    case OP_NEG: effai_unc_##S(10, o, x, q, n); break;                                      \
    case OP_SQUARE: effai_unc_##S(11, o, x, q, n); break;                                   \
    case OP_SIGN: effai_unc_##S(12, o, x, q, n); break;                                     \
    case OP_ABS: effai_unc_##S(13, o, x, q, n); break;                                      \
    case OP_LTC: effai_cmpc_##S(0, o, x, q, n); break;                                      \
    case OP_LEC: effai_cmpc_##S(1, o, x, q, n); break;                                      \
    case OP_GTC: effai_cmpc_##S(2, o, x, q, n); break;                                      \
    case OP_GEC: effai_cmpc_##S(3, o, x, q, n); break;                                      \
    case OP_EQC: effai_cmpc_##S(4, o, x, q, n); break;                                      \
    case OP_NEC: effai_cmpc_##S(5, o, x, q, n); break;                                      \
    case OP_WHERE: effai_where_##S(o, x, y, z, n); break;                                   \
    case OP_WHERE_VC: effai_where_vc_##S(o, x, y, q, n); break;                             \
    case OP_WHERE_CV: effai_where_cv_##S(o, x, y, q, n); break;                             \
    case OP_EXP: effai_exp_##S(o, x, n); break;                                             \
    case OP_SIGMOID: effai_sigmoid_##S(o, x, n); break;                                     \
    case OP_LOG: effai_log_##S(o, x, n); break;                                             \
    case OP_LOG1P: effai_log1p_##S(o, x, n); break;                                         \
    case OP_EXPM1: effai_expm1_##S(o, x, n); break;                                         \
    case OP_SIN: effai_sin_##S(o, x, n); break;                                             \
    case OP_COS: effai_cos_##S(o, x, n); break;                                             \
    case OP_TANH: effai_tanh_##S(o, x, n); break;                                           \
    case OP_SQRT: EFFAI_SIMD for (ptrdiff_t j = 0; j < n; j++) o[j] = SQRT(x[j]); break;    \
    case OP_POW: for (ptrdiff_t j = 0; j < n; j++) o[j] = POW(x[j], y[j]); break;           \
    case OP_POWC: for (ptrdiff_t j = 0; j < n; j++) o[j] = POW(x[j], q); break;             \
    case OP_CPOW: for (ptrdiff_t j = 0; j < n; j++) o[j] = POW(q, x[j]); break;             \
    case OP_ADDMULC: case OP_ADD3: case OP_MULCMUL0: case OP_MUL0MULC: case OP_SQSUB:       \
    case OP_SQMULC: case OP_ADDSQ: case OP_ADDMUL0: case OP_ADDMUL: case OP_SUBSQ:          \
    case OP_NEGMUL0: case OP_MUL0NEG: case OP_ADDSUB:                                       \
        effai_fused_##S(op, o, x, y, z, q, n); break;                                       \
    default: break;                                                                         \
    }                                                                                       \
}

EFFAI_DEFINE_OP(double, d, sqrt, pow)
EFFAI_DEFINE_OP(float, f, sqrtf, powf)

/* Non-inlined entry for the debug sweep of _tape.pyx (one instruction at a time);
 * cloned like the sweep so that both call the same libmvec variants. */
EFFAI_CLONES static void effai_op1_d(int op, double* o, const double* x, const double* y, const double* z,
                        double q, ptrdiff_t n) { effai_op_d(op, o, x, y, z, q, n); }
EFFAI_CLONES static void effai_op1_f(int op, float* o, const float* x, const float* y, const float* z,
                        float q, ptrdiff_t n) { effai_op_f(op, o, x, y, z, q, n); }

/* The whole program over one block: v[dst*B..] <- op(v[a*B..], ...), for k in order.
 *
 * Runtime ISA dispatch.  Wheels are built for the x86-64 baseline (SSE2: two
 * doubles per vector).  On x86-64 Linux with gcc, `target_clones` compiles this
 * function (with every loop inlined into it) once more for AVX2 and picks the
 * clone when the process starts (an ifunc), so the per-instruction loops run
 * four doubles per vector, and libmvec's 4-wide exp/log where available, on the
 * CPUs that have it.  No FMA is enabled (and ISO C mode keeps -ffp-contract=off),
 * so both clones round every operation the same way: the results are identical
 * on any x86-64 CPU; only libmvec's exp/log/sin/cos may differ in the last bits
 * between its SSE and AVX2 variants.
 *
 * A full block of the default width EFFAI_BW points takes a path where the loop
 * length is a compile-time constant: every instruction is then a straight
 * sequence of vector operations, with no remainder loop and no trip-count tests.
 */
#define EFFAI_BW 64
#define EFFAI_SWEEP_LOOP(T, S, NB)                                                           \
    for (ptrdiff_t k = 0; k < n_ops; k++)                                                    \
        effai_op_##S(code[k], v + (ptrdiff_t)dst[k] * B, v + (ptrdiff_t)a[k] * B,            \
                     v + (ptrdiff_t)b[k] * B, v + (ptrdiff_t)c[k] * B, (T)imm[k], NB);

#define EFFAI_DEFINE_SWEEP(T, S)                                                             \
EFFAI_CLONES static void effai_sweep_##S(const int* code, const int* dst, const int* a,      \
                                         const int* b, const int* c, const double* imm,      \
                                         ptrdiff_t n_ops, T* v, ptrdiff_t B, ptrdiff_t nb) { \
    if (nb == EFFAI_BW && B == EFFAI_BW) {                                                   \
        EFFAI_SWEEP_LOOP(T, S, EFFAI_BW)                                                     \
    } else {                                                                                 \
        EFFAI_SWEEP_LOOP(T, S, nb)                                                           \
    }                                                                                        \
}

EFFAI_DEFINE_SWEEP(double, d)
EFFAI_DEFINE_SWEEP(float, f)

/* Between the caller's row-major points (AoS) and a block's slots (SoA).
 *
 * Short rows (n_x = 10 inputs) make the obvious double loop a scalar move per
 * element with a loop test per row: that cost 2.5x a memcpy of the same bytes.
 * Here float64 moves go in 4 points x 4 columns tiles (four row loads, a 4x4
 * transpose in registers, four slot stores), the rest element by element.
 * `slots` maps column k to its slot (NULL: column k is slot k).  Pure moves:
 * no value changes. */
#if defined(__GNUC__) && !defined(__clang__)
typedef double effai_v4d __attribute__((vector_size(32)));
typedef long long effai_v4i __attribute__((vector_size(32)));
typedef double effai_v2d __attribute__((vector_size(16)));
typedef long long effai_v2i __attribute__((vector_size(16)));
#define EFFAI_TRANSPOSE4(r0, r1, r2, r3) do {                                              \
    effai_v4d t0 = __builtin_shuffle(r0, r1, (effai_v4i){0, 4, 2, 6});                     \
    effai_v4d t1 = __builtin_shuffle(r0, r1, (effai_v4i){1, 5, 3, 7});                     \
    effai_v4d t2 = __builtin_shuffle(r2, r3, (effai_v4i){0, 4, 2, 6});                     \
    effai_v4d t3 = __builtin_shuffle(r2, r3, (effai_v4i){1, 5, 3, 7});                     \
    r0 = __builtin_shuffle(t0, t2, (effai_v4i){0, 1, 4, 5});                               \
    r1 = __builtin_shuffle(t1, t3, (effai_v4i){0, 1, 4, 5});                               \
    r2 = __builtin_shuffle(t0, t2, (effai_v4i){2, 3, 6, 7});                               \
    r3 = __builtin_shuffle(t1, t3, (effai_v4i){2, 3, 6, 7});                               \
} while (0)
#define EFFAI_HAVE_TILES 1
#else
#define EFFAI_HAVE_TILES 0
#endif

EFFAI_CLONES static void effai_aos_to_soa_d(const double* X, ptrdiff_t ldx, ptrdiff_t ncols,
                                            ptrdiff_t npts, double* v, ptrdiff_t B) {
    ptrdiff_t k0 = 0;
#if EFFAI_HAVE_TILES
    ptrdiff_t j4 = npts & ~(ptrdiff_t)3;
    ptrdiff_t c4 = ncols & ~(ptrdiff_t)3;
    /* four rows at a time, left to right: the rows are read as four sequential
     * streams (wide rows: each input cache line is fetched once per block) */
    for (ptrdiff_t j = 0; j < j4; j += 4) {
        for (ptrdiff_t kk = 0; kk < c4; kk += 4) {
            effai_v4d r0, r1, r2, r3;
            memcpy(&r0, X + (j + 0) * ldx + kk, 32);
            memcpy(&r1, X + (j + 1) * ldx + kk, 32);
            memcpy(&r2, X + (j + 2) * ldx + kk, 32);
            memcpy(&r3, X + (j + 3) * ldx + kk, 32);
            EFFAI_TRANSPOSE4(r0, r1, r2, r3);
            memcpy(v + (kk + 0) * B + j, &r0, 32);
            memcpy(v + (kk + 1) * B + j, &r1, 32);
            memcpy(v + (kk + 2) * B + j, &r2, 32);
            memcpy(v + (kk + 3) * B + j, &r3, 32);
        }
    }
    for (ptrdiff_t j = j4; j < npts; j++)
        for (ptrdiff_t k = 0; k < c4; k++) v[k * B + j] = X[j * ldx + k];
    k0 = c4;
    /* rows of exactly two values (n_x = 2): four points per step, two 32-byte
     * loads de-interleaved into the two slots */
    if (ncols == 2 && ldx == 2 && k0 == 0) {
        for (ptrdiff_t j = 0; j < j4; j += 4) {
            effai_v4d r0, r1;
            memcpy(&r0, X + 2 * j, 32);
            memcpy(&r1, X + 2 * j + 4, 32);
            effai_v4d c0 = __builtin_shuffle(r0, r1, (effai_v4i){0, 2, 4, 6});
            effai_v4d c1 = __builtin_shuffle(r0, r1, (effai_v4i){1, 3, 5, 7});
            memcpy(v + j, &c0, 32);
            memcpy(v + B + j, &c1, 32);
        }
        for (ptrdiff_t j = j4; j < npts; j++) {
            v[j] = X[2 * j];
            v[B + j] = X[2 * j + 1];
        }
        return;
    }
    /* column pairs (n_x = 3, 6, ...): 2 points x 2 columns per step */
    ptrdiff_t j2 = npts & ~(ptrdiff_t)1;
    for (; k0 + 2 <= ncols; k0 += 2) {
        double* c0 = v + k0 * B;
        double* c1 = v + (k0 + 1) * B;
        for (ptrdiff_t j = 0; j < j2; j += 2) {
            effai_v2d r0, r1;
            memcpy(&r0, X + j * ldx + k0, 16);
            memcpy(&r1, X + (j + 1) * ldx + k0, 16);
            effai_v2d s0 = __builtin_shuffle(r0, r1, (effai_v2i){0, 2});
            effai_v2d s1 = __builtin_shuffle(r0, r1, (effai_v2i){1, 3});
            memcpy(c0 + j, &s0, 16);
            memcpy(c1 + j, &s1, 16);
        }
        for (ptrdiff_t j = j2; j < npts; j++) {
            c0[j] = X[j * ldx + k0];
            c1[j] = X[j * ldx + k0 + 1];
        }
    }
#endif
    for (ptrdiff_t k = k0; k < ncols; k++)
        for (ptrdiff_t j = 0; j < npts; j++) v[k * B + j] = X[j * ldx + k];
}

/* Stores of the outputs.  With `nt` (outputs larger than the caches: the caller
 * decides), 16-byte aligned pairs go out as non-temporal (streaming) stores: the
 * output rows are written once and never read by the sweep, so fetching each line
 * into the cache before overwriting it (what a normal store does) only doubles
 * the memory traffic.  The caller issues effai_sfence() when it is done. */
#if EFFAI_HAVE_TILES
static inline EFFAI_ALWAYS_INLINE void effai_store2_d(double* p, effai_v2d x, int nt) {
#if defined(__SSE2__)
    if (nt) { _mm_stream_pd(p, (__m128d)x); return; }
#endif
    (void)nt;
    memcpy(p, &x, 16);
}
#endif

static inline void effai_sfence(void) {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}

/* o[0:n] = s[0:n]; streaming stores where nt and o is 8-byte aligned. */
EFFAI_CLONES static void effai_copy_d(double* o, const double* s, ptrdiff_t n, int nt) {
#if defined(__SSE2__) && EFFAI_HAVE_TILES
    if (nt && ((uintptr_t)o & 7) == 0) {
        ptrdiff_t j = 0;
        if (((uintptr_t)o & 15) != 0 && n > 0) { o[0] = s[0]; j = 1; }
        for (; j + 2 <= n; j += 2) {
            effai_v2d x;
            memcpy(&x, s + j, 16);
            _mm_stream_pd(o + j, (__m128d)x);
        }
        for (; j < n; j++) o[j] = s[j];
        return;
    }
#endif
    (void)nt;
    memcpy(o, s, (size_t)n * sizeof(double));
}

EFFAI_CLONES static void effai_soa_to_aos_d(const double* v, ptrdiff_t B, const int* slots,
                                            ptrdiff_t ncols, ptrdiff_t npts, double* O,
                                            ptrdiff_t ldo, int nt) {
    ptrdiff_t k0 = 0;
    if (ncols == 1 && ldo == 1) {   /* one output column: a contiguous run */
        effai_copy_d(O, v + (ptrdiff_t)slots[0] * B, npts, nt);
        return;
    }
#if EFFAI_HAVE_TILES
    ptrdiff_t j4 = npts & ~(ptrdiff_t)3;
    ptrdiff_t c4 = ncols & ~(ptrdiff_t)3;
    /* streaming needs every pair store 16-byte aligned, and whole rows written by
     * the tiles (ncols == ldo, a multiple of 4): then four rows are one contiguous
     * run written in a single pass, so the write-combining buffers flush full
     * lines.  Rows finished by a later column-pair pass would go out as partial
     * lines (measured 2x slower at n_x = 10). */
    nt = nt && ((uintptr_t)O & 15) == 0 && (ncols - c4 == 0 || ncols - c4 == 2)
         && ldo == ncols;
    /* two columns left over (n_x = 10, ...): written in the same pass as the
     * tiles of their rows, so that a row group is still one contiguous run */
    const int rem2 = ncols - c4 == 2 && ncols > 2;
    /* four rows at a time, left to right: each output row is written as one
     * sequential stream, every cache line once per block */
    for (ptrdiff_t j = 0; j < j4; j += 4) {
        for (ptrdiff_t kk = 0; kk < c4; kk += 4) {
            const double* s0 = v + (ptrdiff_t)slots[kk] * B;
            const double* s1 = v + (ptrdiff_t)slots[kk + 1] * B;
            const double* s2 = v + (ptrdiff_t)slots[kk + 2] * B;
            const double* s3 = v + (ptrdiff_t)slots[kk + 3] * B;
            effai_v4d r0, r1, r2, r3;
            memcpy(&r0, s0 + j, 32);
            memcpy(&r1, s1 + j, 32);
            memcpy(&r2, s2 + j, 32);
            memcpy(&r3, s3 + j, 32);
            EFFAI_TRANSPOSE4(r0, r1, r2, r3);
            double* o0 = O + (j + 0) * ldo + kk;
            double* o1 = O + (j + 1) * ldo + kk;
            double* o2 = O + (j + 2) * ldo + kk;
            double* o3 = O + (j + 3) * ldo + kk;
            if (nt) {
                effai_store2_d(o0, (effai_v2d){r0[0], r0[1]}, 1);
                effai_store2_d(o0 + 2, (effai_v2d){r0[2], r0[3]}, 1);
                effai_store2_d(o1, (effai_v2d){r1[0], r1[1]}, 1);
                effai_store2_d(o1 + 2, (effai_v2d){r1[2], r1[3]}, 1);
                effai_store2_d(o2, (effai_v2d){r2[0], r2[1]}, 1);
                effai_store2_d(o2 + 2, (effai_v2d){r2[2], r2[3]}, 1);
                effai_store2_d(o3, (effai_v2d){r3[0], r3[1]}, 1);
                effai_store2_d(o3 + 2, (effai_v2d){r3[2], r3[3]}, 1);
            } else {
                memcpy(o0, &r0, 32);
                memcpy(o1, &r1, 32);
                memcpy(o2, &r2, 32);
                memcpy(o3, &r3, 32);
            }
        }
        if (rem2) {
            const double* sa = v + (ptrdiff_t)slots[c4] * B;
            const double* sb = v + (ptrdiff_t)slots[c4 + 1] * B;
            for (ptrdiff_t r = 0; r < 4; r++)
                effai_store2_d(O + (j + r) * ldo + c4, (effai_v2d){sa[j + r], sb[j + r]}, nt);
        }
    }
    if (rem2) c4 = ncols;
    for (ptrdiff_t j = j4; j < npts; j++)
        for (ptrdiff_t k = 0; k < c4; k++) O[j * ldo + k] = v[(ptrdiff_t)slots[k] * B + j];
    k0 = c4;
    if (ncols == 2 && ldo == 2) {   /* rows of two values: four points per step */
        const double* s0 = v + (ptrdiff_t)slots[0] * B;
        const double* s1 = v + (ptrdiff_t)slots[1] * B;
        for (ptrdiff_t j = 0; j < j4; j += 4) {
            effai_v4d a, b;
            memcpy(&a, s0 + j, 32);
            memcpy(&b, s1 + j, 32);
            effai_v4d r0 = __builtin_shuffle(a, b, (effai_v4i){0, 4, 1, 5});
            effai_v4d r1 = __builtin_shuffle(a, b, (effai_v4i){2, 6, 3, 7});
            memcpy(O + 2 * j, &r0, 32);
            memcpy(O + 2 * j + 4, &r1, 32);
        }
        for (ptrdiff_t j = j4; j < npts; j++) {
            O[2 * j] = s0[j];
            O[2 * j + 1] = s1[j];
        }
        return;
    }
    ptrdiff_t j2 = npts & ~(ptrdiff_t)1;
    for (; k0 + 2 <= ncols; k0 += 2) {
        const double* s0 = v + (ptrdiff_t)slots[k0] * B;
        const double* s1 = v + (ptrdiff_t)slots[k0 + 1] * B;
        for (ptrdiff_t j = 0; j < j2; j += 2) {
            effai_v2d r0, r1;
            memcpy(&r0, s0 + j, 16);
            memcpy(&r1, s1 + j, 16);
            effai_v2d t0 = __builtin_shuffle(r0, r1, (effai_v2i){0, 2});
            effai_v2d t1 = __builtin_shuffle(r0, r1, (effai_v2i){1, 3});
            effai_store2_d(O + j * ldo + k0, t0, nt);
            effai_store2_d(O + (j + 1) * ldo + k0, t1, nt);
        }
        for (ptrdiff_t j = j2; j < npts; j++) {
            O[j * ldo + k0] = s0[j]; O[j * ldo + k0 + 1] = s1[j];
        }
    }
#endif
    (void)nt;
    for (ptrdiff_t k = k0; k < ncols; k++) {
        const double* sk = v + (ptrdiff_t)slots[k] * B;
        for (ptrdiff_t j = 0; j < npts; j++) O[j * ldo + k] = sk[j];
    }
}

#endif
