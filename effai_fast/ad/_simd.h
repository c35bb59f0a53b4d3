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

/* Op codes of the flat tape (mirrored by cdef extern in _tape.pxd). */
enum {
    OP_CONST = 0, OP_COPY, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_MAX, OP_MIN, OP_MUL0,
    OP_ADDC, OP_MULC, OP_RSUBC, OP_RDIVC, OP_POWC, OP_CPOW, OP_MAXC, OP_MINC, OP_DIVC,
    OP_MUL0C, OP_NEG, OP_EXP, OP_LOG, OP_LOG1P, OP_EXPM1, OP_SQRT, OP_SIN, OP_COS, OP_TANH,
    OP_SIGMOID, OP_ABS, OP_SIGN, OP_SQUARE, OP_LT, OP_LE, OP_EQ, OP_NE, OP_LTC, OP_LEC,
    OP_GTC, OP_GEC, OP_EQC, OP_NEC, OP_WHERE, OP_WHERE_VC, OP_WHERE_CV, N_OPCODES
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
    default: break;                                                                         \
    }                                                                                       \
}

EFFAI_DEFINE_OP(double, d, sqrt, pow)
EFFAI_DEFINE_OP(float, f, sqrtf, powf)

/* Non-inlined entry for the debug sweep of _tape.pyx (one instruction at a time). */
static void effai_op1_d(int op, double* o, const double* x, const double* y, const double* z,
                        double q, ptrdiff_t n) { effai_op_d(op, o, x, y, z, q, n); }
static void effai_op1_f(int op, float* o, const float* x, const float* y, const float* z,
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

#endif
