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
accurate where the one-pass formula cancels; the fused training kernels (bn_train_forward,
bn_backward) do both passes chunk by chunk while the chunk is in cache and merge the chunks
with Chan's pairwise formula (see "fused batch norm" below).  The module is compiled for the
baseline ISA, AVX2 and AVX-512 (bit-identical results; _functional_dense picks one).  Normalisation and the activation are one
elementwise pass ``y = act(a[c] x + b[c])``; backward reads the activation *output* to mask
the gradient (``0 < y`` for ReLU, ``0 < y < 6`` for ReLU6 - the same convention as PyTorch's
``threshold_backward`` / ``hardtanh_backward``), so no mask array is stored.

Activation codes: 0 none, 1 ReLU, 2 ReLU6.
"""

cimport cython
from cython cimport floating
from cython.parallel cimport prange
from cython.parallel cimport parallel
from libc.math cimport exp, log, sqrt
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


# --------------------------------------------------------------------- fused batch norm
# The training-mode forward and backward of batch norm as one call each (the layers' hot
# path: separate reduction and elementwise kernels cost several Python round trips and
# numpy temporaries per call, more than the arithmetic on a small student's activations).
#
# Forward statistics in one sweep over memory: the rows are cut into fixed chunks of
# rows_per_chunk rows; each chunk (at most rows_per_chunk x C values, in L1/L2) is read
# twice while it is in cache - its sum, then the sum of squared deviations from *its own*
# mean - and the chunks are merged in chunk order with Chan et al.'s pairwise update
#     M2 = sum_k M2_k + sum_k n_k (mean_k - mean)^2,
# which has no cancellation (every term is >= 0) whatever the offset of the data.  All sums
# in double.  The chunking depends only on the shape, so the statistics are bitwise the same
# at any thread count.  Then one pass y = act(a x + b).
#
# Backward: one sweep for both reductions, sum g' and sum g' (x - mean) (deviations from
# the mean, not sum g' x - mean sum g', which cancels when |mean| >> std), then one pass
# dx = a g' - k1 (x - mean) - c0 with a = gamma invstd, k1 = a invstd dgamma / M,
# c0 = a dbeta / M (evaluation mode: dx = a g').

cdef void _bn_chunk_stats(const floating* x, double* s, double* m2, Py_ssize_t r0,
                          Py_ssize_t r1, Py_ssize_t C) noexcept nogil:
    """s[c] = sum of rows r0..r1 of column c; m2[c] = sum of squared deviations from s/n."""
    # Channels in blocks of 16 whose accumulators are fixed-size locals (kept in vector
    # registers: no store-to-load round trip per row), then the leftover channels.  The
    # additions of each channel run over the rows in order either way.
    cdef Py_ssize_t r, c, o, c0, j
    cdef double inv = 1.0 / (r1 - r0)
    cdef double d
    cdef double acc[16]
    cdef double mu[16]
    cdef const floating* p
    c0 = 0
    while c0 + 16 <= C:
        for j in range(16):
            acc[j] = 0
        for r in range(r0, r1):
            p = x + r * C + c0
            for j in range(16):
                acc[j] += p[j]
        for j in range(16):
            s[c0 + j] = acc[j]
            mu[j] = acc[j] * inv
            acc[j] = 0
        for r in range(r0, r1):
            p = x + r * C + c0
            for j in range(16):
                d = p[j] - mu[j]
                acc[j] += d * d
        for j in range(16):
            m2[c0 + j] = acc[j]
        c0 += 16
    if c0 == C:
        return
    for c in range(c0, C):
        s[c] = 0
        m2[c] = 0
    for r in range(r0, r1):
        o = r * C
        for c in range(c0, C):
            s[c] += x[o + c]
    for r in range(r0, r1):
        o = r * C
        for c in range(c0, C):
            d = x[o + c] - s[c] * inv
            m2[c] += d * d


cdef void _affine_act_rows(const floating* x, const floating* a, const floating* b,
                           floating* y, Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t C,
                           int act) noexcept nogil:
    cdef Py_ssize_t r, c, o
    cdef floating v
    for r in range(r0, r1):
        o = r * C
        # NaN propagates (as _act and PyTorch): the comparisons are false for NaN
        if act == 1:
            for c in range(C):
                v = a[c] * x[o + c] + b[c]
                y[o + c] = 0 if v < 0 else v
        elif act == 2:
            for c in range(C):
                v = a[c] * x[o + c] + b[c]
                v = 0 if v < 0 else v
                y[o + c] = 6 if v > 6 else v
        else:
            for c in range(C):
                y[o + c] = a[c] * x[o + c] + b[c]


def bn_train_forward(const floating[:, ::1] x,       # IN (M, C), M >= 2
                     const floating[::1] gamma,      # IN (C,)
                     const floating[::1] beta,       # IN (C,)
                     double eps,
                     double[::1] mean_out,           # OUT (C,) batch mean
                     double[::1] invstd_out,         # OUT (C,) 1 / sqrt(biased var + eps)
                     double[::1] uvar_out,           # OUT (C,) unbiased batch variance
                     floating[:, ::1] y,             # OUT (M, C) act(gamma xhat + beta)
                     int act, Py_ssize_t rows_per_chunk, int n_threads):
    """Batch-norm training forward: statistics (one sweep, Chan merge) and normalisation."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t n_chunks = (M + rows_per_chunk - 1) // rows_per_chunk
    cdef Py_ssize_t k, c, r0, r1
    cdef double* s
    cdef double* m2
    cdef floating* ab
    cdef double mu, d, acc, nk, v
    if M < 2 or C == 0:
        raise ValueError("bn_train_forward needs M >= 2 rows and C >= 1 channels")
    s = <double*> malloc(2 * n_chunks * C * sizeof(double))
    ab = <floating*> malloc(2 * C * sizeof(floating))
    if s == NULL or ab == NULL:
        free(s)
        free(ab)
        raise MemoryError()
    m2 = s + n_chunks * C
    with nogil:
        for k in prange(n_chunks, schedule="static", num_threads=n_threads):
            r0 = k * rows_per_chunk
            r1 = r0 + rows_per_chunk
            if r1 > M:
                r1 = M
            _bn_chunk_stats(&x[0, 0], s + k * C, m2 + k * C, r0, r1, C)
        for c in range(C):
            acc = 0
            for k in range(n_chunks):
                acc = acc + s[k * C + c]
            mu = acc / M
            acc = 0
            for k in range(n_chunks):
                nk = rows_per_chunk if k < n_chunks - 1 else M - k * rows_per_chunk
                d = s[k * C + c] / nk - mu
                acc = acc + m2[k * C + c] + nk * d * d
            v = 1.0 / sqrt(acc / M + eps)
            mean_out[c] = mu
            invstd_out[c] = v
            uvar_out[c] = acc / (M - 1)
            ab[c] = <floating>(gamma[c] * v)
            ab[C + c] = <floating>(beta[c] - mu * gamma[c] * v)
        for k in prange(n_chunks, schedule="static", num_threads=n_threads):
            r0 = k * rows_per_chunk
            r1 = r0 + rows_per_chunk
            if r1 > M:
                r1 = M
            _affine_act_rows(&x[0, 0], ab, ab + C, &y[0, 0], r0, r1, C, act)
    free(s)
    free(ab)


cdef void _bn_chunk_grad_sums(const floating* grad, const floating* y, const floating* x,
                              const double* mean, double* pg, double* pgx, Py_ssize_t r0,
                              Py_ssize_t r1, Py_ssize_t C, int act) noexcept nogil:
    # pg[c] = sum g', pgx[c] = sum g' (x - mean[c]), g' the gradient masked by the
    # activation, both in one sweep over the chunk.
    # The masked gradient of a block of at most 256 channels goes to a small stack buffer
    # (a select in the input type, which the compiler if-converts and vectorises), then a
    # second loop accumulates it in double.  Written as one loop with the select, the
    # float32 version was compiled with branches and ran at ~8 ns per element on ReLU
    # masks (mispredictions); split, ~0.4 ns.  Same additions in the same order, so the
    # sums are bitwise those of the plain loop.  (Register-blocked accumulators as in
    # _bn_chunk_stats were measured 3-4x slower here: the select then stayed a branch.)
    cdef Py_ssize_t r, c, o, c0, cb
    cdef floating gv, yv
    cdef floating tmp[256]
    cdef double g
    for c in range(C):
        pg[c] = 0
        pgx[c] = 0
    if act == 0 or floating is double:
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
                pgx[c] += g * (x[o + c] - mean[c])
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
                pgx[c0 + c] += <double> tmp[c] * (x[o + c0 + c] - mean[c0 + c])


cdef void _bn_grad_rows(const floating* grad, const floating* y, const floating* x,
                        const floating* k, floating* dx, Py_ssize_t r0, Py_ssize_t r1,
                        Py_ssize_t C, int act) noexcept nogil:
    # k = [a | k1 | mean | c0], each of length C: dx = a g' - k1 (x - mean) - c0
    cdef Py_ssize_t r, c, o
    cdef floating gv, yv
    cdef const floating* a = k
    cdef const floating* k1 = k + C
    cdef const floating* mu = k + 2 * C
    cdef const floating* c0 = k + 3 * C
    for r in range(r0, r1):
        o = r * C
        if act == 1:
            for c in range(C):
                gv = grad[o + c]
                yv = y[o + c]
                gv = gv if yv > 0 else 0
                dx[o + c] = a[c] * gv - k1[c] * (x[o + c] - mu[c]) - c0[c]
        elif act == 2:
            for c in range(C):
                gv = grad[o + c]
                yv = y[o + c]
                gv = gv if (yv > 0) & (yv < 6) else 0
                dx[o + c] = a[c] * gv - k1[c] * (x[o + c] - mu[c]) - c0[c]
        else:
            for c in range(C):
                dx[o + c] = a[c] * grad[o + c] - k1[c] * (x[o + c] - mu[c]) - c0[c]


def bn_backward(const floating[:, ::1] grad,         # IN (M, C) gradient w.r.t. the output
                const floating[:, ::1] y,            # IN (M, C) forward output (mask)
                const floating[:, ::1] x,            # IN (M, C) forward input
                const floating[::1] gamma,           # IN (C,)
                const double[::1] mean,              # IN (C,) as saved by the forward
                const double[::1] invstd,            # IN (C,)
                floating[:, ::1] dx,                 # OUT (M, C)
                double[::1] dgamma,                  # OUT (C,)
                double[::1] dbeta,                   # OUT (C,)
                bint training, int act, Py_ssize_t rows_per_chunk, int n_threads):
    """Batch-norm backward: both reductions in one sweep, then the input gradient."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1]
    cdef Py_ssize_t n_chunks = (M + rows_per_chunk - 1) // rows_per_chunk
    cdef Py_ssize_t k, c, r0, r1
    cdef double* pg
    cdef double* pgx
    cdef floating* kk
    cdef double sg, sgx, a
    if M == 0 or C == 0:
        dgamma[...] = 0
        dbeta[...] = 0
        return
    pg = <double*> malloc(2 * n_chunks * C * sizeof(double))
    kk = <floating*> malloc(4 * C * sizeof(floating))
    if pg == NULL or kk == NULL:
        free(pg)
        free(kk)
        raise MemoryError()
    pgx = pg + n_chunks * C
    with nogil:
        for k in prange(n_chunks, schedule="static", num_threads=n_threads):
            r0 = k * rows_per_chunk
            r1 = r0 + rows_per_chunk
            if r1 > M:
                r1 = M
            _bn_chunk_grad_sums(&grad[0, 0], &y[0, 0], &x[0, 0], &mean[0], pg + k * C,
                                pgx + k * C, r0, r1, C, act)
        for c in range(C):
            sg = 0
            sgx = 0
            for k in range(n_chunks):
                sg = sg + pg[k * C + c]
                sgx = sgx + pgx[k * C + c]
            dbeta[c] = sg
            dgamma[c] = invstd[c] * sgx
            a = gamma[c] * invstd[c]
            kk[c] = <floating> a
            kk[2 * C + c] = <floating> mean[c]
            if training:
                kk[C + c] = <floating>(a * invstd[c] * invstd[c] * sgx / M)
                kk[3 * C + c] = <floating>(a * sg / M)
            else:
                kk[C + c] = 0
                kk[3 * C + c] = 0
        for k in prange(n_chunks, schedule="static", num_threads=n_threads):
            r0 = k * rows_per_chunk
            r1 = r0 + rows_per_chunk
            if r1 > M:
                r1 = M
            _bn_grad_rows(&grad[0, 0], &y[0, 0], &x[0, 0], kk, &dx[0, 0], r0, r1, C, act)
    free(pg)
    free(kk)


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
