# cython: language_level=3
"""Kernels of the non-convolution layers: batch norm (+ fused ReLU/ReLU6), activations,
global average pooling and softmax cross-entropy.

Design
------
Activations are NHWC, so a batch-norm input is a C-contiguous ``(M, C)`` matrix with
``M = N * H * W`` rows and one column per channel.  Per-channel reductions (mean, variance,
the gradient sums) are taken over rows in *fixed chunks* of ``rows_per_chunk`` rows: chunk
``k`` writes its partial sums (in double precision, for float32 too) to row ``k`` of a
``(n_chunks, C)`` buffer and the partials are then added in chunk order.  The chunking
depends only on the shape, never on the thread count, so results are bitwise identical at 1
and at 2 threads, and the threads split the chunks with ``schedule="static"``.  The inner
loops run over contiguous channels and vectorise.

The variance is computed in two passes (sum, then sum of squared deviations), which is
accurate where the one-pass formula cancels.  Normalisation and the activation are one
elementwise pass ``y = act(a[c] x + b[c])``; backward reads the activation *output* to mask
the gradient (``0 < y`` for ReLU, ``0 < y < 6`` for ReLU6 - the same convention as PyTorch's
``threshold_backward`` / ``hardtanh_backward``), so no mask array is stored.

Activation codes: 0 none, 1 ReLU, 2 ReLU6.
"""

cimport cython
from cython cimport floating
from cython.parallel cimport prange
from cython.parallel cimport parallel
from libc.math cimport exp, log
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc


cdef inline floating _act(floating v, int act) noexcept nogil:
    # NaN propagates (as in PyTorch): every comparison with NaN is false.
    if act == 1:
        return 0 if v < 0 else v
    if act == 2:
        return 0 if v < 0 else (6 if v > 6 else v)
    return v


cdef inline floating _mask(floating g, floating y, int act) noexcept nogil:
    if act == 1:
        return g if y > 0 else 0
    if act == 2:
        return g if (y > 0 and y < 6) else 0
    return g


# --------------------------------------------------------------------- reductions
def column_sums(const floating[:, ::1] x,          # IN (M, C)
                double[:, ::1] part,               # OUT (n_chunks, C) partial sums
                Py_ssize_t rows_per_chunk, int n_threads):
    """part[k, c] = sum of x[r, c] over the rows r of chunk k."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], n_chunks = part.shape[0]
    cdef Py_ssize_t k, r, c, r0, r1
    with nogil:
        for k in prange(n_chunks, schedule="static", num_threads=n_threads):
            r0 = k * rows_per_chunk
            r1 = r0 + rows_per_chunk
            if r1 > M:
                r1 = M
            for c in range(C):
                part[k, c] = 0
            for r in range(r0, r1):
                for c in range(C):
                    part[k, c] += x[r, c]


def column_sq_dev_sums(const floating[:, ::1] x,   # IN (M, C)
                       const double[::1] mean,     # IN (C,)
                       double[:, ::1] part,        # OUT (n_chunks, C)
                       Py_ssize_t rows_per_chunk, int n_threads):
    """part[k, c] = sum of (x[r, c] - mean[c])**2 over the rows of chunk k."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], n_chunks = part.shape[0]
    cdef Py_ssize_t k, r, c, r0, r1
    cdef double d
    with nogil:
        for k in prange(n_chunks, schedule="static", num_threads=n_threads):
            r0 = k * rows_per_chunk
            r1 = r0 + rows_per_chunk
            if r1 > M:
                r1 = M
            for c in range(C):
                part[k, c] = 0
            for r in range(r0, r1):
                for c in range(C):
                    d = x[r, c] - mean[c]
                    part[k, c] += d * d


def masked_grad_sums(const floating[:, ::1] grad,  # IN (M, C) gradient w.r.t. the output
                     const floating[:, ::1] y,     # IN (M, C) activation output (mask)
                     const floating[:, ::1] x,     # IN (M, C) batch-norm input
                     double[:, ::1] part_g,        # OUT (n_chunks, C): sum of masked grad
                     double[:, ::1] part_gx,       # OUT (n_chunks, C): sum of masked grad * x
                     int act, Py_ssize_t rows_per_chunk, int n_threads):
    """Per-chunk sums of g' and g' * x, with g' the gradient masked by the activation."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], n_chunks = part_g.shape[0]
    cdef Py_ssize_t k, r0, r1
    if M == 0 or C == 0:
        part_g[...] = 0
        part_gx[...] = 0
        return
    with nogil:
        for k in prange(n_chunks, schedule="static", num_threads=n_threads):
            r0 = k * rows_per_chunk
            r1 = r0 + rows_per_chunk
            if r1 > M:
                r1 = M
            _masked_sums_chunk(&grad[0, 0], &y[0, 0], &x[0, 0], &part_g[k, 0],
                               &part_gx[k, 0], r0, r1, C, act)


cdef void _masked_sums_chunk(const floating* grad, const floating* y, const floating* x,
                             double* pg, double* pgx, Py_ssize_t r0, Py_ssize_t r1,
                             Py_ssize_t C, int act) noexcept nogil:
    # The masked gradient of a block of at most 256 channels goes to a small stack buffer
    # (a select in the input type, which the compiler if-converts and vectorises), then a
    # second loop accumulates it in double.  Written as one loop with the select, the
    # float32 version was compiled with branches and ran at ~8 ns per element on ReLU
    # masks (mispredictions); split, ~0.4 ns.  Same additions in the same order, so the
    # sums are bitwise those of the plain loop.
    cdef Py_ssize_t r, c, o, c0, cb
    cdef floating gv, yv
    cdef floating tmp[256]
    cdef double g
    for c in range(C):
        pg[c] = 0
        pgx[c] = 0
    if act == 0 or floating is double:
        # no select, or one in double (if-converted as written): a single loop
        for r in range(r0, r1):
            o = r * C
            for c in range(C):
                gv = grad[o + c]
                yv = y[o + c]
                if act == 1:
                    gv = gv if yv > 0 else 0
                elif act == 2:
                    gv = gv if (yv > 0) & (yv < 6) else 0
                g = gv
                pg[c] += g
                pgx[c] += g * x[o + c]
        return
    for r in range(r0, r1):
        o = r * C
        for c0 in range(0, C, 256):
            cb = C - c0
            if cb > 256:
                cb = 256
            if act == 1:
                for c in range(cb):
                    gv = grad[o + c0 + c]
                    yv = y[o + c0 + c]
                    tmp[c] = gv if yv > 0 else 0
            else:
                for c in range(cb):
                    gv = grad[o + c0 + c]
                    yv = y[o + c0 + c]
                    tmp[c] = gv if (yv > 0) & (yv < 6) else 0
            for c in range(cb):
                pg[c0 + c] += <double> tmp[c]
                pgx[c0 + c] += <double> tmp[c] * x[o + c0 + c]


# --------------------------------------------------------------------- elementwise
def affine_act(const floating[:, ::1] x,           # IN (M, C)
               const floating[::1] a,              # IN (C,) scale
               const floating[::1] b,              # IN (C,) shift
               floating[:, ::1] y,                 # OUT (M, C) act(a * x + b)
               int act, int n_threads):
    """y = act(a[c] * x + b[c]): batch-norm normalisation (train or eval) and activation."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], r, c
    with nogil:
        for r in prange(M, schedule="static", num_threads=n_threads):
            for c in range(C):
                y[r, c] = _act(a[c] * x[r, c] + b[c], act)


def affine_grad(const floating[:, ::1] grad,       # IN (M, C)
                const floating[:, ::1] y,          # IN (M, C) activation output (mask)
                const floating[:, ::1] x,          # IN (M, C)
                const floating[::1] a,             # IN (C,)
                const floating[::1] k1,            # IN (C,)
                const floating[::1] k0,            # IN (C,)
                floating[:, ::1] dx,               # OUT (M, C)
                int act, int n_threads):
    """dx = a[c] * g' - k1[c] * x + k0[c], g' the masked gradient (batch-norm backward)."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], r, c
    with nogil:
        for r in prange(M, schedule="static", num_threads=n_threads):
            for c in range(C):
                dx[r, c] = a[c] * _mask(grad[r, c], y[r, c], act) - k1[c] * x[r, c] + k0[c]


def act_forward(const floating[::1] x, floating[::1] y, int act, int n_threads):
    """y = act(x) elementwise."""
    cdef Py_ssize_t n = x.shape[0], i
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            y[i] = _act(x[i], act)


def act_backward(const floating[::1] grad, const floating[::1] y, floating[::1] dx, int act,
                 int n_threads):
    """dx = grad masked by the activation output y."""
    cdef Py_ssize_t n = y.shape[0], i
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            dx[i] = _mask(grad[i], y[i], act)


# --------------------------------------------------------------------- pooling
def global_avg_pool(const floating[:, :, ::1] x,   # IN (N, H*W, C)
                    floating[:, ::1] out,          # OUT (N, C)
                    int n_threads):
    """out[n, c] = mean over pixels p of x[n, p, c] (accumulated in double)."""
    cdef Py_ssize_t N = x.shape[0], P = x.shape[1], C = x.shape[2], n, p, c
    cdef double inv = 1.0 / P
    cdef double* acc
    with nogil, parallel(num_threads=n_threads):
        acc = <double*> malloc(C * sizeof(double))
        for n in prange(N, schedule="static"):
            for c in range(C):
                acc[c] = 0
            for p in range(P):
                for c in range(C):
                    acc[c] += x[n, p, c]
            for c in range(C):
                out[n, c] = <floating>(acc[c] * inv)
        free(acc)


def global_avg_pool_backward(const floating[:, ::1] grad,  # IN (N, C)
                             floating[:, :, ::1] dx,       # OUT (N, H*W, C)
                             int n_threads):
    """dx[n, p, c] = grad[n, c] / (H*W)."""
    cdef Py_ssize_t N = dx.shape[0], P = dx.shape[1], C = dx.shape[2], n, p, c
    cdef double inv = 1.0 / P
    with nogil:
        for n in prange(N, schedule="static", num_threads=n_threads):
            for p in range(P):
                for c in range(C):
                    dx[n, p, c] = <floating>(grad[n, c] * inv)


# --------------------------------------------------------------------- loss
def softmax_xent_labels(const floating[:, ::1] logits,   # IN (N, K)
                        const int64_t[::1] labels,     # IN (N,) in [0, K)
                        double[::1] loss,                # OUT (N,) per-sample loss
                        floating[:, ::1] grad,           # OUT (N, K) (softmax - onehot)*scale
                        double scale, bint want_grad, int n_threads):
    """Per-row cross-entropy ``logsumexp(z) - z[label]`` and its scaled gradient."""
    cdef Py_ssize_t N = logits.shape[0], K = logits.shape[1], n, j
    cdef double m, s, lse
    with nogil:
        for n in prange(N, schedule="static", num_threads=n_threads):
            m = logits[n, 0]
            for j in range(1, K):
                if logits[n, j] > m:
                    m = logits[n, j]
            s = 0
            for j in range(K):
                s = s + exp(logits[n, j] - m)
            lse = m + log(s)
            loss[n] = lse - logits[n, labels[n]]
            if want_grad:
                for j in range(K):
                    grad[n, j] = <floating>(exp(logits[n, j] - lse) * scale)
                grad[n, labels[n]] = <floating>(grad[n, labels[n]] - scale)


def softmax_xent_probs(const floating[:, ::1] logits,    # IN (N, K)
                       const floating[:, ::1] target,    # IN (N, K) rows of probabilities
                       double[::1] loss,                 # OUT (N,)
                       floating[:, ::1] grad,            # OUT (N, K) (softmax - t) * scale
                       double scale, bint want_grad, int n_threads):
    """Per-row cross-entropy ``sum_j t_j (logsumexp(z) - z_j)`` against soft targets."""
    cdef Py_ssize_t N = logits.shape[0], K = logits.shape[1], n, j
    cdef double m, s, lse, tsum, acc
    with nogil:
        for n in prange(N, schedule="static", num_threads=n_threads):
            m = logits[n, 0]
            for j in range(1, K):
                if logits[n, j] > m:
                    m = logits[n, j]
            s = 0
            for j in range(K):
                s = s + exp(logits[n, j] - m)
            lse = m + log(s)
            acc = 0
            tsum = 0
            for j in range(K):
                acc = acc + target[n, j] * (lse - logits[n, j])
                tsum = tsum + target[n, j]
            loss[n] = acc
            if want_grad:
                for j in range(K):
                    grad[n, j] = <floating>((exp(logits[n, j] - lse) * tsum - target[n, j])
                                            * scale)
