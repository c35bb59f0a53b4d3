# cython: language_level=3
"""Sparse additive evaluation: sum of per-feature (and per-pair) shape functions.

Design note
-----------
An additive model is ``f(x) = b + sum_u g_u(x_{S_u})`` over *units* ``u`` (a
feature, or a pair of features), each ``g_u`` a small MLP or a cubic
B-spline.  The kernels never materialise per-unit activations for the whole
batch: points are processed in blocks of ``_BLOCK`` and every unit's hidden
activations for the block live in a per-thread scratch of
``n_layers * _BLOCK * max(hidden)`` values.  Features that are absent
(pruned, constant) are simply not units: they cost nothing.

Forward (``mlp_forward``, ``spline_forward``): blocks of points are spread
over threads (static schedule); each point's sum over units is accumulated
by one thread in unit order, so the result does not depend on the thread
count.

Backward (``mlp_backward``, the VJP of the forward w.r.t. every weight, given
the upstream ``g = dL/df`` per point): units are spread over threads; each
unit's weight gradient is a disjoint slice of ``grad``, accumulated by one
thread over the blocks in their natural order (recomputing the unit's
forward activations per block).  No cross-thread reduction is needed and the
gradient is bitwise independent of the thread count.

Parameter layout of a unit with inputs ``din`` (1 or 2), hidden sizes
``h_0..h_{L-1}``: ``W_0 (din, h_0), b_0 (h_0), W_1 (h_0, h_1), b_1, ...,
w_out (h_{L-1})``, row-major, starting at ``unit_off[u]``.  The global bias is
handled by the caller.

B-spline units: uniform cubic B-splines with ``K`` coefficients on
``[lo_j, lo_j + (K-3) h_j]``; inputs outside are clamped (constant
extension).  Pair units use tensor products with ``K2`` coefficients per side.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport exp
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc

cdef enum:
    _BLOCK = 32
    _SBLOCK = 256


cdef inline double _tanh(double z) noexcept nogil:
    """tanh through one exp (glibc's tanh is several times slower); |error| < 4e-16."""
    cdef double e
    if z > 20.0:
        return 1.0
    if z < -20.0:
        return -1.0
    e = exp(2.0 * z)
    return (e - 1.0) / (e + 1.0)


cdef inline int _n_params(int din, const int32_t* hidden, int L) noexcept nogil:
    cdef int n = 0, prev = din, l
    for l in range(L):
        n += prev * hidden[l] + hidden[l]
        prev = hidden[l]
    return n + prev


cdef void _unit_forward(
    const floating* x, Py_ssize_t ldx, Py_ssize_t nb,   # IN block rows of X
    const int32_t* feats, int din,                       # IN the unit's features
    const floating* th,                                  # IN the unit's parameters
    const int32_t* hidden, int L, int hmax, int act,
    floating* acts,                                      # OUT (L, _BLOCK, hmax)
) noexcept nogil:
    """Hidden activations of one unit for a block of points."""
    cdef Py_ssize_t q
    cdef int i, j, l, prev, h
    cdef floating v
    cdef const floating* W = th
    cdef const floating* b
    cdef floating* a
    cdef const floating* ap
    # layer 0 from the raw features
    h = hidden[0]
    b = W + din * h
    a = acts
    for q in range(nb):
        for j in range(h):
            a[q * hmax + j] = b[j]
        for i in range(din):
            v = x[q * ldx + feats[i]]
            for j in range(h):
                a[q * hmax + j] += v * W[i * h + j]
        for j in range(h):
            if act == 0:
                a[q * hmax + j] = <floating>_tanh(a[q * hmax + j])
            elif a[q * hmax + j] < 0:
                a[q * hmax + j] = 0
    W = b + h
    prev = h
    for l in range(1, L):
        h = hidden[l]
        b = W + prev * h
        ap = acts + (l - 1) * _BLOCK * hmax
        a = acts + l * _BLOCK * hmax
        for q in range(nb):
            for j in range(h):
                a[q * hmax + j] = b[j]
            for i in range(prev):
                v = ap[q * hmax + i]
                for j in range(h):
                    a[q * hmax + j] += v * W[i * h + j]
            for j in range(h):
                if act == 0:
                    a[q * hmax + j] = <floating>_tanh(a[q * hmax + j])
                elif a[q * hmax + j] < 0:
                    a[q * hmax + j] = 0
        W = b + h
        prev = h


cdef int mlp_forward_c(
    const floating[:, ::1] X,        # IN (n, d)
    const floating[::1] theta,       # IN (P,) all unit parameters
    const int32_t[:, ::1] unit_feat,  # IN (U, 2) features of each unit (second -1: main effect)
    const int64_t[::1] unit_off,     # IN (U,) offset of each unit in theta
    const int32_t[::1] hidden,       # IN (L,) hidden sizes
    int act,                         # 0 tanh, 1 relu
    double bias,
    floating[::1] out,               # OUT (n,)
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef Py_ssize_t U = unit_feat.shape[0]
    cdef int L = <int>hidden.shape[0], hmax = 1, l, din, j, np_
    cdef Py_ssize_t n_blocks = (n + _BLOCK - 1) // _BLOCK, blk, q0, nb, q, u
    cdef floating* acts
    cdef const floating* th
    cdef const floating* wout
    cdef floating* a
    cdef floating s
    cdef int failed = 0
    cdef int* failp = &failed
    for l in range(L):
        if hidden[l] > hmax:
            hmax = hidden[l]
    if n == 0:
        return 0
    with parallel(num_threads=n_threads):
        acts = <floating*>malloc(sizeof(floating) * L * _BLOCK * hmax)
        if acts == NULL:
            failp[0] = 1
        else:
            for blk in prange(n_blocks, schedule="static"):
                q0 = blk * _BLOCK
                nb = n - q0
                if nb > _BLOCK:
                    nb = _BLOCK
                for q in range(nb):
                    out[q0 + q] = <floating>bias
                for u in range(U):
                    din = 1 if unit_feat[u, 1] < 0 else 2
                    th = &theta[unit_off[u]]
                    _unit_forward(&X[q0, 0], d, nb, &unit_feat[u, 0], din, th, &hidden[0],
                                  L, hmax, act, acts)
                    np_ = _n_params(din, &hidden[0], L)
                    wout = th + np_ - hidden[L - 1]
                    a = acts + (L - 1) * _BLOCK * hmax
                    for q in range(nb):
                        s = 0
                        for j in range(hidden[L - 1]):
                            s = s + a[q * hmax + j] * wout[j]
                        out[q0 + q] += s
            free(acts)
    return -1 if failed else 0


cdef int mlp_backward_c(
    const floating[:, ::1] X,        # IN (n, d)
    const floating[::1] theta,       # IN (P,)
    const int32_t[:, ::1] unit_feat,  # IN (U, 2)
    const int64_t[::1] unit_off,     # IN (U,)
    const int32_t[::1] hidden,       # IN (L,)
    int act,
    const floating[::1] g,           # IN (n,) upstream gradient dL/df
    floating[::1] grad,              # OUT (P,) dL/dtheta (every unit's slice overwritten)
    int n_threads,
) noexcept nogil:
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef Py_ssize_t U = unit_feat.shape[0]
    cdef int L = <int>hidden.shape[0], hmax = 1, l, din, i, j, h, prev, np_, k
    cdef Py_ssize_t n_blocks = (n + _BLOCK - 1) // _BLOCK, blk, q0, nb, q, u
    cdef floating* acts
    cdef floating* dbase
    cdef floating* dcur
    cdef floating* dprev
    cdef floating* tmp
    cdef const floating* th
    cdef floating* gr
    cdef const floating* W
    cdef floating* gW
    cdef floating* a
    cdef floating* ap
    cdef floating v, gq
    cdef int64_t* woff
    cdef int failed = 0
    cdef int* failp = &failed
    for l in range(L):
        if hidden[l] > hmax:
            hmax = hidden[l]
    with parallel(num_threads=n_threads):
        acts = <floating*>malloc(sizeof(floating) * L * _BLOCK * hmax)
        dbase = <floating*>malloc(sizeof(floating) * 2 * _BLOCK * hmax)
        woff = <int64_t*>malloc(sizeof(int64_t) * (L + 1))
        if acts == NULL or dbase == NULL or woff == NULL:
            failp[0] = 1
        else:
            for u in prange(U, schedule="static"):
                din = 1 if unit_feat[u, 1] < 0 else 2
                th = &theta[unit_off[u]]
                gr = &grad[unit_off[u]]
                np_ = _n_params(din, &hidden[0], L)
                for k in range(np_):
                    gr[k] = 0
                # offsets of W_l inside the unit (W_L = w_out)
                prev = din
                woff[0] = 0
                for l in range(L):
                    woff[l + 1] = woff[l] + prev * hidden[l] + hidden[l]
                    prev = hidden[l]
                for blk in range(n_blocks):
                    q0 = blk * _BLOCK
                    nb = n - q0
                    if nb > _BLOCK:
                        nb = _BLOCK
                    _unit_forward(&X[q0, 0], d, nb, &unit_feat[u, 0], din, th, &hidden[0],
                                  L, hmax, act, acts)
                    dcur = dbase
                    dprev = dbase + _BLOCK * hmax
                    # output layer
                    h = hidden[L - 1]
                    a = acts + (L - 1) * _BLOCK * hmax
                    W = th + woff[L]
                    gW = gr + woff[L]
                    for q in range(nb):
                        gq = g[q0 + q]
                        for j in range(h):
                            gW[j] += gq * a[q * hmax + j]
                            v = gq * W[j]
                            if act == 0:
                                dcur[q * hmax + j] = v * (1 - a[q * hmax + j] * a[q * hmax + j])
                            else:
                                dcur[q * hmax + j] = v if a[q * hmax + j] > 0 else 0
                    # hidden layers L-1 .. 1
                    for l in range(L - 1, 0, -1):
                        h = hidden[l]
                        prev = hidden[l - 1]
                        W = th + woff[l]
                        gW = gr + woff[l]
                        ap = acts + (l - 1) * _BLOCK * hmax
                        for q in range(nb):
                            for i in range(prev):
                                v = ap[q * hmax + i]
                                for j in range(h):
                                    gW[i * h + j] += v * dcur[q * hmax + j]
                            for j in range(h):
                                gW[prev * h + j] += dcur[q * hmax + j]
                            for i in range(prev):
                                v = 0
                                for j in range(h):
                                    v = v + W[i * h + j] * dcur[q * hmax + j]
                                if act == 0:
                                    dprev[q * hmax + i] = v * (1 - ap[q * hmax + i]
                                                               * ap[q * hmax + i])
                                else:
                                    dprev[q * hmax + i] = v if ap[q * hmax + i] > 0 else 0
                        tmp = dcur
                        dcur = dprev
                        dprev = tmp
                    # layer 0 from the raw features
                    h = hidden[0]
                    gW = gr
                    for q in range(nb):
                        for i in range(din):
                            v = X[q0 + q, unit_feat[u, i]]
                            for j in range(h):
                                gW[i * h + j] += v * dcur[q * hmax + j]
                        for j in range(h):
                            gW[din * h + j] += dcur[q * hmax + j]
        free(acts)
        free(dbase)
        free(woff)
    return -1 if failed else 0


cdef inline void _bspline4(double t, int K, int* i0, double* w) noexcept nogil:
    """Uniform cubic B-spline: first index and the 4 weights at knot coordinate t."""
    cdef double s, s2, s3, r
    cdef int nint = K - 3
    cdef int i
    if not t > 0:               # also NaN: the index stays in range
        t = 0
    elif t > nint:
        t = nint
    i = <int>t
    if i > nint - 1:
        i = nint - 1
    s = t - i
    s2 = s * s
    s3 = s2 * s
    r = 1.0 - s
    w[0] = r * r * r / 6.0
    w[1] = (3.0 * s3 - 6.0 * s2 + 4.0) / 6.0
    w[2] = (-3.0 * s3 + 3.0 * s2 + 3.0 * s + 1.0) / 6.0
    w[3] = s3 / 6.0
    i0[0] = i


cdef inline double _pair_terms(
    const floating* x,               # IN (d,) one point
    Py_ssize_t Q, int K2, const int32_t* pair_feat, const double* pair_coef,
    const double* pair_map,
) noexcept nogil:
    """Sum of the tensor-product pair units at one point (de Boor weights, 4 x 4 coefs)."""
    cdef Py_ssize_t u
    cdef int i0, j0, a
    cdef double wa[4]
    cdef double wb[4]
    cdef double s = 0.0, r
    cdef const double* c
    for u in range(Q):
        _bspline4((x[pair_feat[2 * u]] - pair_map[4 * u]) * pair_map[4 * u + 1], K2, &i0, wa)
        _bspline4((x[pair_feat[2 * u + 1]] - pair_map[4 * u + 2]) * pair_map[4 * u + 3], K2,
                  &j0, wb)
        for a in range(4):
            c = pair_coef + u * K2 * K2 + (i0 + a) * K2 + j0
            r = wb[0] * c[0] + wb[1] * c[1] + wb[2] * c[2] + wb[3] * c[3]
            s += wa[a] * r
    return s


cdef void _spline_pp(
    const double* coef, int K,       # IN (K,) B-spline coefficients of one unit
    double* pp,                      # OUT (K - 3, 4) power-form coefficients per interval
) noexcept nogil:
    """Power (pp) form of a uniform cubic B-spline: on interval i, with s in [0, 1],
    g = pp[i,0] + s (pp[i,1] + s (pp[i,2] + s pp[i,3])).  Exact algebra (the
    same polynomial as the four de Boor weights), only the rounding differs."""
    cdef int i
    cdef double c0, c1, c2, c3
    for i in range(K - 3):
        c0 = coef[i]
        c1 = coef[i + 1]
        c2 = coef[i + 2]
        c3 = coef[i + 3]
        pp[4 * i] = (c0 + 4.0 * c1 + c2) / 6.0
        pp[4 * i + 1] = (c2 - c0) * 0.5
        pp[4 * i + 2] = (c0 - 2.0 * c1 + c2) * 0.5
        pp[4 * i + 3] = (c3 - c0 + 3.0 * (c1 - c2)) / 6.0


cdef inline void _main_block(
    const floating* x, Py_ssize_t d, Py_ssize_t nb,   # IN block of rows of X
    int f, double lo, double ih, int nint,            # IN the unit's feature and knot map
    const double* pp,                                 # IN (nint, 4) power form
    double* acc,                                      # IN/OUT (nb,) running sums
) noexcept nogil:
    """acc[q] += g(x[q, f]) for a block of points: clamp, one interval index, Horner."""
    cdef Py_ssize_t q
    cdef double t, s, hi = <double>nint
    cdef int i
    cdef const double* c
    for q in range(nb):
        t = (<double>x[q * d + f] - lo) * ih
        t = t if t > 0.0 else 0.0   # NaN -> 0: the index stays in range
        t = hi if t > hi else t
        i = <int>t
        i = nint - 1 if i > nint - 1 else i
        s = t - i
        c = pp + 4 * i
        acc[q] += c[0] + s * (c[1] + s * (c[2] + s * c[3]))


cdef extern from "_simd.h" nogil:
    int effai_add_have_avx2()
    double* effai_add_align64(void* raw)
    int effai_add_main_d(int impl, const double* X, Py_ssize_t d, Py_ssize_t nb, Py_ssize_t M,
                         const int32_t* feat, const double* map, int nint, const double* pp,
                         double* acc, int check, Py_ssize_t navail)
    int effai_add_main_f(int impl, const float* X, Py_ssize_t d, Py_ssize_t nb, Py_ssize_t M,
                         const int32_t* feat, const double* map, int nint, const double* pp,
                         double* acc, int check, Py_ssize_t navail)
    int effai_add_nonfinite_d(int impl, const double* p, Py_ssize_t n)
    int effai_add_nonfinite_f(int impl, const float* p, Py_ssize_t n)


cdef int _spline_forward(
    const floating[:, ::1] X,        # IN (n, d)
    const int32_t[::1] main_feat,    # IN (M,) feature of each main-effect unit
    const double[:, ::1] main_coef,  # IN (M, K)
    const double[:, ::1] main_map,   # IN (M, 2) lo and 1/h of each unit's knots
    const int32_t[:, ::1] pair_feat,  # IN (Q, 2)
    const double[:, ::1] pair_coef,  # IN (Q, K2*K2)
    const double[:, ::1] pair_map,   # IN (Q, 4) lo_a, 1/h_a, lo_b, 1/h_b
    int K2,
    double bias,
    floating[::1] out,               # OUT (n,)
    int n_threads,
    int impl,                        # 0 fastest available, 1 portable C, 2 reference (Cython)
    int check,                       # 1: also test every value of X for NaN/inf
    int* nonfinite,                  # OUT 1 when check and X has a NaN or an infinity
) noexcept nogil:
    """Evaluate the B-spline additive model (M or Q may be 0).

    Main effects: each unit's B-spline is converted once per call to power
    form (``(K-3) x 4`` doubles, a few kB, rows 32-byte aligned), then blocks
    of ``_SBLOCK`` points are evaluated by the C loop of ``_simd.h`` (4
    points per AVX2 register, all units summed in a register, one aligned
    load per point and unit for the interval's 4 coefficients) or, with
    ``impl=2``, by the reference Cython loop ``_main_block`` (units outer,
    scalar).  Pairs: per point, tensor-product de Boor weights.  Each point
    is summed by one thread in unit order: results do not depend on the
    thread count.  Returns -1 when scratch cannot be allocated.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef Py_ssize_t M = main_feat.shape[0], Q = pair_feat.shape[0]
    cdef int K = <int>main_coef.shape[1], nint = K - 3
    cdef Py_ssize_t n_blocks = (n + _SBLOCK - 1) // _SBLOCK, blk, q0, nb, q, u
    cdef void* pp_raw
    cdef double* pp
    cdef double* mp
    cdef double* acc
    cdef int failed = 0, bad = 0, cimpl
    cdef int* failp = &failed
    cdef int* badp = &bad
    nonfinite[0] = 0
    if n == 0:
        return 0
    if impl == 0:
        cimpl = 1 if effai_add_have_avx2() else 0
    elif impl == 1:
        cimpl = 0
    else:
        cimpl = -1
    pp_raw = malloc(sizeof(double) * (4 * nint * M + 2 * M + 1) + 64)
    if pp_raw == NULL:
        return -1
    pp = effai_add_align64(pp_raw)
    mp = pp + 4 * nint * M
    for u in range(M):
        _spline_pp(&main_coef[u, 0], K, pp + 4 * nint * u)
        mp[2 * u] = main_map[u, 0]
        mp[2 * u + 1] = main_map[u, 1]
    with parallel(num_threads=n_threads):
        acc = <double*>malloc(sizeof(double) * _SBLOCK)
        if acc == NULL:
            failp[0] = 1
        else:
            for blk in prange(n_blocks, schedule="static"):
                q0 = blk * _SBLOCK
                nb = n - q0
                if nb > _SBLOCK:
                    nb = _SBLOCK
                # the C loops test finiteness while they read the rows (one pass over X)
                if check and (M == 0 or cimpl < 0):
                    if floating is double:
                        if effai_add_nonfinite_d(cimpl, &X[q0, 0], nb * d):
                            badp[0] = 1
                    else:
                        if effai_add_nonfinite_f(cimpl, &X[q0, 0], nb * d):
                            badp[0] = 1
                for q in range(nb):
                    acc[q] = bias
                if M > 0:
                    if cimpl < 0:
                        for u in range(M):
                            _main_block(&X[q0, 0], d, nb, main_feat[u], main_map[u, 0],
                                        main_map[u, 1], nint, pp + 4 * nint * u, acc)
                    elif floating is double:
                        if effai_add_main_d(cimpl, &X[q0, 0], d, nb, M, &main_feat[0], mp,
                                            nint, pp, acc, check, n - q0):
                            badp[0] = 1
                    else:
                        if effai_add_main_f(cimpl, &X[q0, 0], d, nb, M, &main_feat[0], mp,
                                            nint, pp, acc, check, n - q0):
                            badp[0] = 1
                if Q > 0:
                    for q in range(nb):
                        acc[q] += _pair_terms(&X[q0 + q, 0], Q, K2, &pair_feat[0, 0],
                                              &pair_coef[0, 0], &pair_map[0, 0])
                for q in range(nb):
                    out[q0 + q] = <floating>acc[q]
            free(acc)
    free(pp_raw)
    nonfinite[0] = bad
    return -1 if failed else 0


cdef int spline_forward_c(
    const floating[:, ::1] X,        # IN (n, d)
    const int32_t[::1] main_feat,    # IN (M,) feature of each main-effect unit
    const double[:, ::1] main_coef,  # IN (M, K)
    const double[:, ::1] main_map,   # IN (M, 2) lo and 1/h of each unit's knots
    const int32_t[:, ::1] pair_feat,  # IN (Q, 2)
    const double[:, ::1] pair_coef,  # IN (Q, K2*K2)
    const double[:, ::1] pair_map,   # IN (Q, 4) lo_a, 1/h_a, lo_b, 1/h_b
    int K2,
    double bias,
    floating[::1] out,               # OUT (n,)
    int n_threads,
) noexcept nogil:
    """Evaluate the B-spline additive model with the fastest main-effect loop
    (see ``_spline_forward``); X must be finite.  Returns -1 when scratch
    cannot be allocated."""
    cdef int nonfinite = 0
    return _spline_forward(X, main_feat, main_coef, main_map, pair_feat, pair_coef, pair_map,
                           K2, bias, out, n_threads, 0, 0, &nonfinite)


# ----------------------------------------------------------------- Python API
def mlp_forward(const floating[:, ::1] X, const floating[::1] theta,
                const int32_t[:, ::1] unit_feat, const int64_t[::1] unit_off,
                const int32_t[::1] hidden, int act, double bias, floating[::1] out,
                int n_threads):
    cdef int rc
    with nogil:
        rc = mlp_forward_c(X, theta, unit_feat, unit_off, hidden, act, bias, out, n_threads)
    if rc:
        raise MemoryError("additive forward: out of memory for scratch")


def mlp_backward(const floating[:, ::1] X, const floating[::1] theta,
                 const int32_t[:, ::1] unit_feat, const int64_t[::1] unit_off,
                 const int32_t[::1] hidden, int act, const floating[::1] g,
                 floating[::1] grad, int n_threads):
    cdef int rc
    with nogil:
        rc = mlp_backward_c(X, theta, unit_feat, unit_off, hidden, act, g, grad, n_threads)
    if rc:
        raise MemoryError("additive backward: out of memory for scratch")


def spline_forward(const floating[:, ::1] X, const int32_t[::1] main_feat,
                   const double[:, ::1] main_coef, const double[:, ::1] main_map,
                   const int32_t[:, ::1] pair_feat, const double[:, ::1] pair_coef,
                   const double[:, ::1] pair_map, int K2, double bias, floating[::1] out,
                   int n_threads, int impl=0, bint check_finite=False):
    """Fill ``out``; return True when ``check_finite`` and X holds a NaN or an infinity
    (``out`` is then meaningless but every index stayed in range).  ``impl``: 0 the
    fastest loop for this CPU, 1 the portable C loop, 2 the reference Cython loop."""
    cdef int rc, nonfinite = 0
    if impl < 0 or impl > 2:
        raise ValueError(f"impl must be 0, 1 or 2, got {impl}")
    with nogil:
        rc = _spline_forward(X, main_feat, main_coef, main_map, pair_feat, pair_coef,
                             pair_map, K2, bias, out, n_threads, impl, check_finite,
                             &nonfinite)
    if rc:
        raise MemoryError("additive spline forward: out of memory for scratch")
    return bool(nonfinite)


def have_avx2():
    """Whether the AVX2+FMA main-effect loop runs on this CPU."""
    return bool(effai_add_have_avx2())
