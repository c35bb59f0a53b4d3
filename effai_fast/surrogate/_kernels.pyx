# Prediction kernels of the surrogates: the screening hot loop.
#
# Design note
# -----------
# A stationary-kernel model (GP posterior mean, RBF interpolant) predicts
#     f(x) = offset + sum_j w_j phi(|| (x - c) * s - z_j ||^2) [+ poly . (x - c) * s]
# with the n training points z_j stored *transposed* (d, n) and pre-scaled.
#
# Two forms of the sum:
#
# * The fused form (float64, phi = exp(-c s): the squared-exponential GP and the
#   Gaussian RBF -- the screening hot path).  s = |z|^2 + |z_j|^2 - 2 z.z_j: the
#   cross terms of 4 candidates x 4 training points are a register-blocked GEMM
#   (one load of z_j feeds 4 FMAs per dimension), and the exponent, the polynomial
#   exp and the weighted sum follow in the same registers, so neither distances nor
#   kernel values ever go to memory (effai_sur_fused_se_d in _simd.h; the training
#   data are packed per 4 points once per call).  The expansion cancels near s = 0,
#   but only to an absolute error ~1e-16 (|z|^2 + |z_j|^2) in s, and exp(-c s) has a
#   bounded derivative, so the kernel value is as accurate as with differences (a
#   test puts candidates on and next to training points).  On the AVX2 test machine
#   it is 1.15-1.2x the direct form, both with FMA contraction (bench/results/).
# * The direct form (everything else: float32, whose cancellation would cost digits,
#   and the sqrt-based kernels, where an error e in s becomes sqrt(e)): for one
#   candidate, the distances to all n points are d passes of a unit-stride loop over
#   j (vectorised), then one vectorised kernel pass (a polynomial exp, sqrt) and one
#   dot product with the weights.  A candidate on a training point gets s = 0
#   exactly.
#
# The C loops of _simd.h are compiled for AVX-512 / AVX2 / baseline and dispatched
# at load time.
#
# Rows are independent: `prange(schedule="static")` over candidate rows (mean)
# or over blocks of rows (mean + variance), each thread with its own scratch
# malloc'ed inside the parallel block.  Every output element is computed by one
# thread in a fixed order, so the results do not depend on the thread count.
#
# The predictive variance needs |A k(x)|^2 with A = sigma^2 L^{-1} (n x n): done
# per block of BLOCK_VAR rows with one BLAS trmm (reading A once per block, not
# once per row); for float64 and the smooth GP kernels the block's k(x) comes from
# one GEMM of the cross terms (the expansion above, clamped at s >= 0).  The MLP
# forward pass is gemm + tanh per block of BLOCK_MLP rows; the blocks are small
# enough (m*n*k <= 2^18) that OpenBLAS runs each call on the calling thread, so
# OpenMP is the only level of parallelism.
#
# Memory is flat: scratch is O(n_threads * BLOCK * n) whatever the number of rows;
# the caller (screen) feeds candidates chunk by chunk.

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

from scipy.linalg.cython_blas cimport dgemm, dtrmm, sgemm, strmm

cdef extern from "_simd.h" nogil:
    void effai_sur_sqdist_d(const double *z, const double *zt, int n, int d, double *out)
    void effai_sur_sqdist_f(const float *z, const float *zt, int n, int d, float *out)
    void effai_sur_kernel_d(double *buf, int n, int kind)
    void effai_sur_kernel_f(float *buf, int n, int kind)
    double effai_sur_kdot_d(const double *buf, const double *w, int n, int kind)
    float effai_sur_kdot_f(const float *buf, const float *w, int n, int kind)
    void effai_sur_kernel_gram_d(double *g, const double *zz, double xx, int n, int kind)
    void effai_sur_kernel_gram_f(float *g, const float *zz, float xx, int n, int kind)
    int EFFAI_SUR_HAVE_FUSED
    int FUSED_ROWS "EFFAI_SUR_ROWS"
    int FUSED_LANES "EFFAI_SUR_VW"
    int effai_sur_fused_impl()
    void effai_sur_fused_se_d(int impl, const double *u, const double *hx, const double *ztp,
                              const double *hzp, const double *wp, int nv, int d,
                              double *acc)
    double effai_sur_dot_d(const double *a, const double *b, int n)
    float effai_sur_dot_f(const float *a, const float *b, int n)
    double effai_sur_sumsq_d(const double *a, int n)
    float effai_sur_sumsq_f(const float *a, int n)
    void effai_sur_tanh_d(double *buf, size_t n)
    void effai_sur_tanh_f(float *buf, size_t n)

cdef enum:
    BLOCK_VAR = 32
    BLOCK_MLP = 128

__all__ = ["py_kernel_sum", "py_kernel_sum_direct", "py_kernel_sum_var", "py_mlp_forward",
           "KINDS", "py_kernel_sum_fused", "have_avx2"]

KINDS = {
    "se": KIND_SE, "matern32": KIND_MATERN32, "matern52": KIND_MATERN52,
    "linear": KIND_LINEAR, "cubic": KIND_CUBIC,
    "thin_plate_spline": KIND_TPS, "gaussian": KIND_GAUSSIAN,
}


cdef inline void _sqdist(const floating *z, const floating *zt, int n, int d,
                         floating *out) noexcept nogil:
    if floating is double:
        effai_sur_sqdist_d(z, zt, n, d, out)
    else:
        effai_sur_sqdist_f(z, zt, n, d, out)


cdef inline void _kernel(floating *buf, int n, int kind) noexcept nogil:
    if floating is double:
        effai_sur_kernel_d(buf, n, kind)
    else:
        effai_sur_kernel_f(buf, n, kind)


cdef inline floating _kdot(const floating *buf, const floating *w, int n,
                           int kind) noexcept nogil:
    if floating is double:
        return effai_sur_kdot_d(buf, w, n, kind)
    else:
        return effai_sur_kdot_f(buf, w, n, kind)


cdef inline floating _dot(const floating *a, const floating *b, int n) noexcept nogil:
    if floating is double:
        return effai_sur_dot_d(a, b, n)
    else:
        return effai_sur_dot_f(a, b, n)


cdef inline floating _sumsq(const floating *a, int n) noexcept nogil:
    if floating is double:
        return effai_sur_sumsq_d(a, n)
    else:
        return effai_sur_sumsq_f(a, n)


cdef inline floating _row_value(
    const floating *x, const floating *center, const floating *inv_scale,
    const floating *zt, const floating *weights, const floating *poly, bint has_poly,
    floating offset, int kind, int n, int d, floating *z, floating *buf, bint keep,
) noexcept nogil:
    """Scale one row into z, return offset + sum_j w_j phi(d_j) (+ poly . z).

    With ``keep``, buf is left holding phi(d_j) (for the variance)."""
    cdef int k
    cdef floating acc = offset
    for k in range(d):
        z[k] = (x[k] - center[k]) * inv_scale[k]
    _sqdist(z, zt, n, d, buf)
    if keep:
        _kernel(buf, n, kind)
        acc = acc + _dot(weights, buf, n)
    else:
        acc = acc + _kdot(buf, weights, n, kind)
    if has_poly:
        acc = acc + _dot(poly, z, d)
    return acc


cdef inline bint _use_gram(int kind, int d) noexcept nogil:
    """The GEMM distance form: float64 only, and only for kernels that are smooth in
    s = r^2 at s = 0 (an absolute error e in s moves phi by O(e), while the sqrt-based
    RBF kernels would move by O(sqrt(e)))."""
    return d >= 2 and (kind == KIND_SE or kind == KIND_MATERN32 or kind == KIND_MATERN52
                       or kind == KIND_GAUSSIAN)


cdef inline void _gram(int nb, int rows, int d, const floating *zt, int ldz,
                       const floating *zs, floating *g) noexcept nogil:
    """g (rows, nb) row-major = zs (rows, d) row-major @ zt[:, :nb] (d, ldz) row-major.

    Column-major view: g^T (nb, rows) = zt^T (nb, d; ld ldz) @ zs^T (d, rows; ld d)."""
    cdef char tn = b'N'
    cdef floating one = 1, zero = 0
    if floating is double:
        dgemm(&tn, &tn, &nb, &rows, &d, &one, <double *>zt, &ldz, <double *>zs, &d,
              &zero, g, &nb)
    else:
        sgemm(&tn, &tn, &nb, &rows, &d, &one, <float *>zt, &ldz, <float *>zs, &d,
              &zero, g, &nb)


cdef inline void _kernel_gram(floating *g, const floating *zz, floating xx, int n,
                              int kind) noexcept nogil:
    if floating is double:
        effai_sur_kernel_gram_d(g, zz, xx, n, kind)
    else:
        effai_sur_kernel_gram_f(g, zz, xx, n, kind)


cdef void _sq_norms(const floating[:, ::1] ZT, floating *zz) noexcept nogil:
    """zz[j] = sum_k ZT[k, j]^2, summed over k in order."""
    cdef Py_ssize_t k, j
    cdef int d = <int>ZT.shape[0], n = <int>ZT.shape[1]
    for j in range(n):
        zz[j] = 0
    for k in range(d):
        for j in range(n):
            zz[j] = zz[j] + ZT[k, j] * ZT[k, j]


cdef void kernel_sum_fused(
    const double[:, ::1] X,
    const double[::1] center,
    const double[::1] inv_scale,
    const double[:, ::1] ZT,
    const double[::1] weights,
    const double[::1] poly,
    double offset,
    int kind,
    double[::1] out,
    int n_threads,
    int impl=-1,                     # -1: AVX2+FMA if the CPU has it, 0: generic C
) noexcept nogil:
    """kernel_sum for the exp(-c s) kernels in float64 through effai_sur_fused_se_d:
    the training data are packed once per call (O(n d)), then each block of
    FUSED_ROWS candidates is one pass over them with everything in registers."""
    cdef Py_ssize_t m = X.shape[0], blk, nblocks, i, j
    cdef int d = <int>X.shape[1], n = <int>ZT.shape[1], nv, r, k, rows
    cdef bint has_poly = poly.shape[0] == d
    # the exponent in base 2 (the kernel computes 2^e): log2(e) folded into c
    cdef double c = (0.5 if kind == KIND_SE else 1.0) * 1.4426950408889634
    if impl < 0:
        impl = effai_sur_fused_impl()
    cdef double *ztp
    cdef double *hzp
    cdef double *wp
    cdef double *u
    cdef double *hx
    cdef double *acc
    cdef double *pv
    cdef double zk, q, pq
    if m == 0:
        return
    nv = (n + FUSED_LANES - 1) // FUSED_LANES
    ztp = <double *>calloc(<size_t>nv * FUSED_LANES * d + 1, sizeof(double))
    hzp = <double *>calloc(<size_t>nv * FUSED_LANES + 1, sizeof(double))
    wp = <double *>calloc(<size_t>nv * FUSED_LANES + 1, sizeof(double))
    for j in range(n):
        q = 0
        for k in range(d):
            ztp[(j // FUSED_LANES) * d * FUSED_LANES + k * FUSED_LANES + j % FUSED_LANES] = ZT[k, j]
            q = q + ZT[k, j] * ZT[k, j]
        hzp[j] = -c * q
        wp[j] = weights[j]
    nblocks = (m + FUSED_ROWS - 1) // FUSED_ROWS
    with nogil, parallel(num_threads=n_threads):
        u = <double *>malloc(sizeof(double) * FUSED_ROWS * d)
        hx = <double *>malloc(sizeof(double) * FUSED_ROWS)
        acc = <double *>malloc(sizeof(double) * FUSED_ROWS)
        pv = <double *>malloc(sizeof(double) * FUSED_ROWS)
        for blk in prange(nblocks, schedule="static"):
            rows = <int>(min(m, (blk + 1) * FUSED_ROWS) - blk * FUSED_ROWS)
            for r in range(FUSED_ROWS):
                q = 0
                pq = 0
                if r < rows:
                    i = blk * FUSED_ROWS + r
                    for k in range(d):
                        zk = (X[i, k] - center[k]) * inv_scale[k]
                        u[r * d + k] = 2 * c * zk
                        q = q + zk * zk
                        if has_poly:
                            pq = pq + poly[k] * zk
                else:
                    for k in range(d):
                        u[r * d + k] = 0
                hx[r] = -c * q
                pv[r] = pq
            effai_sur_fused_se_d(impl, u, hx, ztp, hzp, wp, nv, d, acc)
            for r in range(rows):
                out[blk * FUSED_ROWS + r] = offset + acc[r] + pv[r]
        free(u)
        free(hx)
        free(acc)
        free(pv)
    free(ztp)
    free(hzp)
    free(wp)


cdef void kernel_sum_direct(
    const floating[:, ::1] X,
    const floating[::1] center,
    const floating[::1] inv_scale,
    const floating[:, ::1] ZT,
    const floating[::1] weights,
    const floating[::1] poly,
    floating offset,
    int kind,
    floating[::1] out,
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t m = X.shape[0], i
    cdef int d = <int>X.shape[1], n = <int>ZT.shape[1]
    cdef bint has_poly = poly.shape[0] == d
    cdef floating *z
    cdef floating *buf
    cdef const floating *pp = &poly[0] if has_poly else NULL
    if m == 0:
        return
    with nogil, parallel(num_threads=n_threads):
        z = <floating *>malloc(sizeof(floating) * (d + 1))
        buf = <floating *>malloc(sizeof(floating) * (n + 1))
        for i in prange(m, schedule="static"):
            out[i] = _row_value(&X[i, 0], &center[0], &inv_scale[0], &ZT[0, 0],
                                &weights[0], pp, has_poly, offset, kind, n, d, z, buf, False)
        free(z)
        free(buf)


cdef void kernel_sum(
    const floating[:, ::1] X,
    const floating[::1] center,
    const floating[::1] inv_scale,
    const floating[:, ::1] ZT,
    const floating[::1] weights,
    const floating[::1] poly,
    floating offset,
    int kind,
    floating[::1] out,
    int n_threads,
) noexcept nogil:
    """The mean: the fused register-blocked kernel for float64 exp(-c s) kernels (SE,
    Gaussian), else the direct form."""
    if floating is double:
        if EFFAI_SUR_HAVE_FUSED and X.shape[1] >= 1 and (kind == KIND_SE
                                                         or kind == KIND_GAUSSIAN):
            kernel_sum_fused(X, center, inv_scale, ZT, weights, poly, offset, kind, out,
                             n_threads)
            return
    kernel_sum_direct(X, center, inv_scale, ZT, weights, poly, offset, kind, out, n_threads)


cdef void kernel_sum_var(
    const floating[:, ::1] X,
    const floating[::1] center,
    const floating[::1] inv_scale,
    const floating[:, ::1] ZT,
    const floating[::1] weights,
    floating offset,
    int kind,
    const floating[:, ::1] A,
    floating prior_var,
    floating[::1] out_mean,
    floating[::1] out_var,
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t m = X.shape[0], blk, r, i, nblocks
    cdef int d = <int>X.shape[1], n = <int>ZT.shape[1], rows, k
    cdef bint gram = floating is double and _use_gram(kind, d)
    cdef floating *z
    cdef floating *zs
    cdef floating *zz = NULL
    cdef floating *kb
    cdef floating one = 1
    cdef floating v
    cdef char side = b'L', uplo = b'U', trans = b'T', diag = b'N'
    if m == 0:
        return
    nblocks = (m + BLOCK_VAR - 1) // BLOCK_VAR
    if gram:
        zz = <floating *>malloc(sizeof(floating) * (n + 1))
        _sq_norms(ZT, zz)
    with nogil, parallel(num_threads=n_threads):
        z = <floating *>malloc(sizeof(floating) * (d + 1))
        zs = <floating *>malloc(sizeof(floating) * BLOCK_VAR * d)
        kb = <floating *>malloc(sizeof(floating) * BLOCK_VAR * (n + 1))
        for blk in prange(nblocks, schedule="static"):
            rows = <int>(min(m, (blk + 1) * BLOCK_VAR) - blk * BLOCK_VAR)
            if gram:
                # kb <- the (rows, n) cross terms in one GEMM, then phi in place
                for r in range(rows):
                    i = blk * BLOCK_VAR + r
                    for k in range(d):
                        zs[r * d + k] = (X[i, k] - center[k]) * inv_scale[k]
                _gram(n, rows, d, &ZT[0, 0], n, zs, kb)
                for r in range(rows):
                    i = blk * BLOCK_VAR + r
                    _kernel_gram(kb + r * n, zz, _sumsq(zs + r * d, d), n, kind)
                    out_mean[i] = offset + _dot(&weights[0], kb + r * n, n)
            else:
                for r in range(rows):
                    i = blk * BLOCK_VAR + r
                    out_mean[i] = _row_value(&X[i, 0], &center[0], &inv_scale[0], &ZT[0, 0],
                                             &weights[0], NULL, False, offset, kind, n, d,
                                             z, kb + r * n, True)
            # kb is (rows, n) row-major = (n, rows) column-major; the row-major
            # lower-triangular A is column-major upper, so op = 'T' gives A @ k.
            if floating is double:
                dtrmm(&side, &uplo, &trans, &diag, &n, &rows, &one, <double *>&A[0, 0], &n,
                      kb, &n)
            else:
                strmm(&side, &uplo, &trans, &diag, &n, &rows, &one, <float *>&A[0, 0], &n,
                      kb, &n)
            for r in range(rows):
                i = blk * BLOCK_VAR + r
                v = prior_var - _sumsq(kb + r * n, n)
                out_var[i] = v if v > 0 else 0
        free(z)
        free(zs)
        free(kb)
    free(zz)


cdef inline void _tanh(floating *buf, size_t n) noexcept nogil:
    if floating is double:
        effai_sur_tanh_d(buf, n)
    else:
        effai_sur_tanh_f(buf, n)


cdef void mlp_forward(
    const floating[:, ::1] X,
    const floating[::1] params,
    const int[::1] sizes,
    floating[::1] out,
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t m = X.shape[0], blk, nblocks, r, c, off
    cdef int n_layers = <int>sizes.shape[0] - 1, layer, fin, fout, rows, width = 0
    cdef floating *a0
    cdef floating *b0
    cdef floating *a
    cdef floating *b
    cdef floating *tmp
    cdef floating one = 1
    cdef char tn = b'N'
    if m == 0:
        return
    for layer in range(n_layers + 1):
        width = max(width, sizes[layer])
    nblocks = (m + BLOCK_MLP - 1) // BLOCK_MLP
    with nogil, parallel(num_threads=n_threads):
        a0 = <floating *>malloc(sizeof(floating) * BLOCK_MLP * width)
        b0 = <floating *>malloc(sizeof(floating) * BLOCK_MLP * width)
        for blk in prange(nblocks, schedule="static"):
            # a, b are (last)private to the loop: set them in every iteration
            a = a0
            b = b0
            rows = <int>(min(m, (blk + 1) * BLOCK_MLP) - blk * BLOCK_MLP)
            memcpy(a, &X[blk * BLOCK_MLP, 0], sizeof(floating) * rows * sizes[0])
            off = 0
            for layer in range(n_layers):
                fin = sizes[layer]
                fout = sizes[layer + 1]
                # b <- bias, then b += a @ W (row-major), i.e. column-major
                # b^T (fout, rows) += W^T (fout, fin) a^T (fin, rows)
                for r in range(rows):
                    memcpy(b + r * fout, &params[off + fin * fout], sizeof(floating) * fout)
                if floating is double:
                    dgemm(&tn, &tn, &fout, &rows, &fin, &one, <double *>&params[off], &fout,
                          a, &fin, &one, b, &fout)
                else:
                    sgemm(&tn, &tn, &fout, &rows, &fin, &one, <float *>&params[off], &fout,
                          a, &fin, &one, b, &fout)
                off = off + fin * fout + fout
                if layer < n_layers - 1:
                    _tanh(b, <size_t>rows * fout)
                tmp = a
                a = b
                b = tmp
            for r in range(rows):
                out[blk * BLOCK_MLP + r] = a[r]
        free(a0)
        free(b0)


# ---------------------------------------------------------------- Python entry points
# Validated by the Python layer (effai_fast/surrogate/_predict.py); these only
# dispatch on the dtype.

def py_kernel_sum(const floating[:, ::1] X, const floating[::1] center,
                  const floating[::1] inv_scale, const floating[:, ::1] ZT,
                  const floating[::1] weights, const floating[::1] poly, double offset,
                  int kind, floating[::1] out, int n_threads):
    """out[i] = offset + sum_j w_j phi(|z_i - z_j|^2) (+ poly . z_i); see the design note."""
    with nogil:
        kernel_sum(X, center, inv_scale, ZT, weights, poly, <floating>offset, kind, out,
                   n_threads)


def py_kernel_sum_direct(const floating[:, ::1] X, const floating[::1] center,
                         const floating[::1] inv_scale, const floating[:, ::1] ZT,
                         const floating[::1] weights, const floating[::1] poly, double offset,
                         int kind, floating[::1] out, int n_threads):
    """py_kernel_sum always in the direct (sum of squared differences) form: the
    reference for the GEMM form in tests and benchmarks."""
    with nogil:
        kernel_sum_direct(X, center, inv_scale, ZT, weights, poly, <floating>offset, kind,
                          out, n_threads)


def py_kernel_sum_fused(const double[:, ::1] X, const double[::1] center,
                        const double[::1] inv_scale, const double[:, ::1] ZT,
                        const double[::1] weights, const double[::1] poly, double offset,
                        int kind, double[::1] out, int n_threads, int impl=-1):
    """The fused float64 SE/Gaussian kernel with a chosen inner loop (tests): impl -1 the
    fastest for this CPU, 0 the generic C (vector extensions), 1 AVX2+FMA intrinsics."""
    if impl not in (-1, 0, 1):
        raise ValueError(f"impl must be -1, 0 or 1, got {impl}")
    if impl == 1 and not effai_sur_fused_impl():
        raise ValueError("impl=1: this CPU has no AVX2+FMA")
    if kind != KIND_SE and kind != KIND_GAUSSIAN:
        raise ValueError("the fused kernel is for kind 'se' or 'gaussian'")
    with nogil:
        kernel_sum_fused(X, center, inv_scale, ZT, weights, poly, offset, kind, out,
                         n_threads, impl)


def have_avx2():
    """Whether the AVX2+FMA fused GP kernel runs on this CPU."""
    return bool(effai_sur_fused_impl())


def py_kernel_sum_var(const floating[:, ::1] X, const floating[::1] center,
                      const floating[::1] inv_scale, const floating[:, ::1] ZT,
                      const floating[::1] weights, double offset, int kind,
                      const floating[:, ::1] A, double prior_var, floating[::1] out_mean,
                      floating[::1] out_var, int n_threads):
    """Mean as py_kernel_sum and variance prior_var - |A k(x)|^2 (clipped at 0)."""
    with nogil:
        kernel_sum_var(X, center, inv_scale, ZT, weights, <floating>offset, kind, A,
                       <floating>prior_var, out_mean, out_var, n_threads)


def py_mlp_forward(const floating[:, ::1] X, const floating[::1] params,
                   const int[::1] sizes, floating[::1] out, int n_threads):
    """Forward pass of a tanh MLP with a linear output layer."""
    with nogil:
        mlp_forward(X, params, sizes, out, n_threads)
