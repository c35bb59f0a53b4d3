# The kernels of effai_fast.distill, included by _kd.pyx (portable baseline build) and
# by _kd_x86_64_v3.pyx / _kd_x86_64_v4.pyx (the same code compiled for AVX2+FMA and
# AVX-512; effai_fast.distill.losses picks one at import with the CPU's features).
# See the design note in _kd.pyx.

from libc.math cimport log, isfinite
from libc.stdlib cimport malloc, free
from libc.stdint cimport int64_t
from cython cimport floating
from cython.parallel cimport prange, parallel

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>

    /* exp(x) for x <= 0, vectorisable; see the design note in _kd.pyx. */
    static inline double effai_kd_exp_neg_d(double x)
    {
        const double shift = 6755399441055744.0;          /* 1.5 * 2^52 */
        const double log2e = 1.4426950408889634074;
        const double ln2hi = 6.93147180369123816490e-01;  /* fdlibm split */
        const double ln2lo = 1.90821492927058770002e-10;
        double xc = x < -708.0 ? -708.0 : x;
        double kd = xc * log2e + shift;
        double n = kd - shift;
        double r = (xc - n * ln2hi) - n * ln2lo;
        double p = 1.0 / 6227020800.0;                    /* 1/13! */
        p = p * r + 1.0 / 479001600.0;
        p = p * r + 1.0 / 39916800.0;
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
        uint64_t ki;
        memcpy(&ki, &kd, sizeof ki);
        uint64_t bits = (ki + (uint64_t)1023) << 52;
        double scale;
        memcpy(&scale, &bits, sizeof scale);
        double res = p * scale;
        return x < -708.0 ? 0.0 : res;
    }

    static inline float effai_kd_exp_neg_f(float x)
    {
        const float shift = 12582912.0f;                  /* 1.5 * 2^23 */
        const float log2e = 1.44269504088896341f;
        const float ln2hi = 0.693359375f;                 /* Cephes split */
        const float ln2lo = -2.12194440e-4f;
        float xc = x < -87.0f ? -87.0f : x;
        float kd = xc * log2e + shift;
        float n = kd - shift;
        float r = (xc - n * ln2hi) - n * ln2lo;
        float p = 1.0f / 5040.0f;
        p = p * r + 1.0f / 720.0f;
        p = p * r + 1.0f / 120.0f;
        p = p * r + 1.0f / 24.0f;
        p = p * r + 1.0f / 6.0f;
        p = p * r + 0.5f;
        p = p * r + 1.0f;
        p = p * r + 1.0f;
        uint32_t ki;
        memcpy(&ki, &kd, sizeof ki);
        uint32_t bits = (ki + (uint32_t)127) << 23;
        float scale;
        memcpy(&scale, &bits, sizeof scale);
        float res = p * scale;
        return x < -87.0f ? 0.0f : res;
    }
    """
    double effai_kd_exp_neg_d(double x) noexcept nogil
    float effai_kd_exp_neg_f(float x) noexcept nogil


cdef enum:
    LANES = 16      # accumulator lanes of every row reduction


cdef inline floating _exp_neg(floating x) noexcept nogil:
    if floating is float:
        return effai_kd_exp_neg_f(x)
    else:
        return effai_kd_exp_neg_d(x)


cdef inline floating _row_max(const floating* x, Py_ssize_t n) noexcept nogil:
    """max_j x[j] (NaNs are skipped; they surface later through exp)."""
    cdef floating lanes[LANES]
    cdef floating m, v
    cdef Py_ssize_t j, k, nb = n - n % LANES
    if nb == 0:
        m = x[0]
        for j in range(1, n):
            m = x[j] if x[j] > m else m
        return m
    for k in range(LANES):
        lanes[k] = x[k]
    for j in range(LANES, nb, 16):
        for k in range(LANES):
            v = x[j + k]
            lanes[k] = v if v > lanes[k] else lanes[k]
    m = lanes[0]
    for k in range(1, LANES):
        m = lanes[k] if lanes[k] > m else m
    for j in range(nb, n):
        m = x[j] if x[j] > m else m
    return m


cdef inline void _exp_shifted(const floating* x, floating shift, floating inv_t,
                              floating* out, Py_ssize_t n) noexcept nogil:
    """out[j] = exp((x[j] - shift) * inv_t), elementwise."""
    cdef Py_ssize_t j
    for j in range(n):
        out[j] = _exp_neg((x[j] - shift) * inv_t)


cdef inline double _sum(const floating* x, Py_ssize_t n) noexcept nogil:
    """sum_j x[j] in double, in 16 fixed lanes."""
    cdef double lanes[LANES]
    cdef double s = 0.0
    cdef Py_ssize_t j, k, nb = n - n % LANES
    for k in range(LANES):
        lanes[k] = 0.0
    for j in range(0, nb, 16):
        for k in range(LANES):
            lanes[k] += <double>x[j + k]
    for k in range(LANES):
        s += lanes[k]
    for j in range(nb, n):
        s += <double>x[j]
    return s


cdef inline double _weighted_diff_sum(const floating* w, const floating* t, floating mt,
                                      const floating* s, floating ms,
                                      Py_ssize_t n) noexcept nogil:
    """sum_j w[j] * ((t[j] - mt) - (s[j] - ms)) in double, in 16 fixed lanes."""
    cdef double lanes[LANES]
    cdef double acc = 0.0
    cdef Py_ssize_t j, k, nb = n - n % LANES
    for k in range(LANES):
        lanes[k] = 0.0
    for j in range(0, nb, 16):
        for k in range(LANES):
            lanes[k] += <double>w[j + k] * <double>((t[j + k] - mt) - (s[j + k] - ms))
    for k in range(LANES):
        acc += lanes[k]
    for j in range(nb, n):
        acc += <double>w[j] * <double>((t[j] - mt) - (s[j] - ms))
    return acc


# ---------------------------------------------------------------------------
# softmax / log_softmax

cdef void softmax_rows(const floating[:, ::1] z,          # IN  (B, C)
                       double inv_t,                      # IN  1 / temperature
                       floating[:, ::1] out,              # OUT (B, C), may alias z
                       int n_threads) noexcept nogil:
    """out[i] = softmax(z[i] / T)."""
    cdef Py_ssize_t n_rows = z.shape[0], n = z.shape[1], i, j
    cdef floating m, scale
    cdef floating it = <floating>inv_t
    cdef double s
    if n_rows == 0 or n == 0:
        return
    for i in prange(n_rows, schedule="static", num_threads=n_threads, nogil=True):
        m = _row_max(&z[i, 0], n)
        _exp_shifted(&z[i, 0], m, it, &out[i, 0], n)
        s = _sum(&out[i, 0], n)
        scale = <floating>(1.0 / s)
        for j in range(n):
            out[i, j] = out[i, j] * scale


cdef int log_softmax_rows(const floating[:, ::1] z,       # IN  (B, C)
                          double inv_t,                   # IN  1 / temperature
                          floating[:, ::1] out,           # OUT (B, C), may alias z
                          int n_threads) noexcept nogil:
    """out[i] = log_softmax(z[i] / T) = (z[i] - max) / T - log(sum exp((z[i] - max) / T)).

    Returns 0, or -1 when a thread could not allocate its scratch row.
    """
    cdef Py_ssize_t n_rows = z.shape[0], n = z.shape[1], i, j
    cdef floating m, lse
    cdef floating it = <floating>inv_t
    cdef floating* buf
    cdef int[1] failed             # an array element is shared by the team
    failed[0] = 0
    if n_rows == 0 or n == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        buf = <floating*>malloc(n * sizeof(floating))
        if buf == NULL:
            failed[0] = 1
        else:
            for i in prange(n_rows, schedule="static"):
                m = _row_max(&z[i, 0], n)
                _exp_shifted(&z[i, 0], m, it, buf, n)
                lse = <floating>log(_sum(buf, n))
                for j in range(n):
                    out[i, j] = (z[i, j] - m) * it - lse
            free(buf)
    return -failed[0]


# ---------------------------------------------------------------------------
# fused KD loss and gradient

cdef inline double _hard_row(const floating* s, Py_ssize_t n, int64_t label,
                             double hard_loss_w, double hard_grad_w,
                             floating* g) noexcept nogil:
    """Cross-entropy only: row loss hard_loss_w * CE, g = hard_grad_w * (q_S - onehot)."""
    cdef floating ms = _row_max(s, n)
    cdef double sh, sx, loss
    cdef floating c
    cdef Py_ssize_t j
    _exp_shifted(s, ms, <floating>1, g, n)
    sh = _sum(g, n)
    loss = hard_loss_w * (log(sh) - <double>(s[label] - ms))
    c = <floating>(hard_grad_w / sh)
    for j in range(n):
        g[j] = c * g[j]
    g[label] -= <floating>hard_grad_w
    # -inf logits would give a finite CE (probability 0); the KD path rejects
    # them, so this one does too: sum_j s_j is finite iff every s_j is.
    sx = _sum(s, n)
    if not (isfinite(ms) and isfinite(sh) and isfinite(sx)):
        loss = loss + (ms - ms) + (sh - sh) + (sx - sx)     # NaN / inf out
    return loss


cdef inline double _kd_row(const floating* s,              # IN  student logits (C,)
                           const floating* t,              # IN  teacher logits (C,)
                           Py_ssize_t n,
                           int64_t label,                  # IN  < 0: no hard term
                           floating inv_t,
                           double soft_loss_w,             # weight of KL in the row loss
                           double soft_grad_w,             # weight of (p_S - p_T) in grad
                           double hard_loss_w,             # weight of CE in the row loss
                           double hard_grad_w,             # weight of (q_S - y) in grad
                           floating* g,                    # OUT grad row (C,)
                           floating* tb,                   # scratch (C,)
                           floating* hb) noexcept nogil:   # scratch (C,)
    cdef floating ms, mt
    cdef double ss, st, w, kl, sh, ce, loss
    cdef floating a, b, c
    cdef Py_ssize_t j
    cdef bint hard = label >= 0

    if hard and soft_loss_w == 0.0 and soft_grad_w == 0.0:
        return _hard_row(s, n, label, hard_loss_w, hard_grad_w, g)
    ms = _row_max(s, n)
    mt = _row_max(t, n)
    _exp_shifted(s, ms, inv_t, g, n)             # e^S (unnormalised p_S)
    _exp_shifted(t, mt, inv_t, tb, n)            # e^T (unnormalised p_T)
    ss = _sum(g, n)
    st = _sum(tb, n)
    w = _weighted_diff_sum(tb, t, mt, s, ms, n)
    kl = w * <double>inv_t / st + log(ss / st)
    if kl < 0.0:                                 # rounding only; NaN stays NaN
        kl = 0.0
    loss = soft_loss_w * kl

    a = <floating>(soft_grad_w / ss)
    b = <floating>(soft_grad_w / st)
    if hard:
        if inv_t == 1:
            sh = ss
            hb = g                                # q_S = p_S when T = 1
        else:
            _exp_shifted(s, ms, <floating>1, hb, n)
            sh = _sum(hb, n)
        ce = log(sh) - <double>(s[label] - ms)
        loss += hard_loss_w * ce
        c = <floating>(hard_grad_w / sh)
        for j in range(n):
            g[j] = a * g[j] - b * tb[j] + c * hb[j]
        g[label] -= <floating>hard_grad_w
    else:
        for j in range(n):
            g[j] = a * g[j] - b * tb[j]
    if not (isfinite(ms) and isfinite(mt) and isfinite(ss) and isfinite(st)):
        loss = loss + (ms - ms) + (mt - mt) + (ss - ss) + (st - st)   # NaN / inf out
    return loss


cdef int kd_loss_rows(const floating[:, ::1] student,    # IN  (B, C)
                      const floating[:, ::1] teacher,    # IN  (B, C)
                      const int64_t[::1] labels,         # IN  (B,) in [0, C), or (0,)
                      double inv_t,                      # IN  1 / temperature
                      double soft_loss_w, double soft_grad_w,
                      double hard_loss_w, double hard_grad_w,
                      floating[:, ::1] grad,             # OUT (B, C), must not alias inputs
                      double[::1] row_loss,              # OUT (B,)
                      int n_threads) noexcept nogil:
    """Per-row loss and gradient of the KD objective.

    row_loss[i] = soft_loss_w * KL(p_T,i || p_S,i) + hard_loss_w * CE(q_S,i, y_i)
    grad[i]     = soft_grad_w * (p_S,i - p_T,i) + hard_grad_w * (q_S,i - onehot(y_i))

    with p = softmax(z / T), q = softmax(z).  The hard terms are skipped when
    ``labels`` is empty; with labels and both soft weights 0 the teacher is
    not read (plain cross-entropy, one exp per element).  A NaN or infinity anywhere in row i makes
    row_loss[i] non-finite (the caller's check); grad is then unspecified.
    Returns 0, or -1 when a thread could not allocate its scratch rows.
    """
    cdef Py_ssize_t n_rows = student.shape[0], n = student.shape[1], i
    cdef bint has_labels = labels.shape[0] > 0
    cdef floating it = <floating>inv_t
    cdef floating* tb
    cdef floating* hb
    cdef int[1] failed
    failed[0] = 0
    if n_rows == 0 or n == 0:
        return 0
    with nogil, parallel(num_threads=n_threads):
        tb = <floating*>malloc(2 * n * sizeof(floating))
        if tb == NULL:
            failed[0] = 1
        else:
            hb = tb + n
            for i in prange(n_rows, schedule="static"):
                row_loss[i] = _kd_row(&student[i, 0], &teacher[i, 0], n,
                                      labels[i] if has_labels else -1, it,
                                      soft_loss_w, soft_grad_w, hard_loss_w, hard_grad_w,
                                      &grad[i, 0], tb, hb)
            free(tb)
    return -failed[0]


# ---------------------------------------------------------------------------
# Python entry points (validated in effai_fast.distill._kernels)

def _softmax(const floating[:, ::1] z, double inv_t, floating[:, ::1] out, int n_threads):
    with nogil:
        softmax_rows(z, inv_t, out, n_threads)


def _log_softmax(const floating[:, ::1] z, double inv_t, floating[:, ::1] out, int n_threads):
    cdef int status
    with nogil:
        status = log_softmax_rows(z, inv_t, out, n_threads)
    if status != 0:
        raise MemoryError("log_softmax could not allocate its scratch rows")


def _kd_loss(const floating[:, ::1] student, const floating[:, ::1] teacher,
             const int64_t[::1] labels, double inv_t,
             double soft_loss_w, double soft_grad_w, double hard_loss_w, double hard_grad_w,
             floating[:, ::1] grad, double[::1] row_loss, int n_threads):
    cdef int status
    with nogil:
        status = kd_loss_rows(student, teacher, labels, inv_t, soft_loss_w, soft_grad_w,
                              hard_loss_w, hard_grad_w, grad, row_loss, n_threads)
    if status != 0:
        raise MemoryError("kd_loss could not allocate its scratch rows")


# Non-fused twins of the entry points above: a fused ``def`` picks its
# specialisation by inspecting the arguments at every call (~10 us); these skip
# that for the small batches of a training step.
def _kd_loss_f32(const float[:, ::1] student, const float[:, ::1] teacher,
                 const int64_t[::1] labels, double inv_t,
                 double soft_loss_w, double soft_grad_w, double hard_loss_w, double hard_grad_w,
                 float[:, ::1] grad, double[::1] row_loss, int n_threads):
    cdef int status
    with nogil:
        status = kd_loss_rows(student, teacher, labels, inv_t, soft_loss_w, soft_grad_w,
                              hard_loss_w, hard_grad_w, grad, row_loss, n_threads)
    if status != 0:
        raise MemoryError("kd_loss could not allocate its scratch rows")


def _kd_loss_f64(const double[:, ::1] student, const double[:, ::1] teacher,
                 const int64_t[::1] labels, double inv_t,
                 double soft_loss_w, double soft_grad_w, double hard_loss_w, double hard_grad_w,
                 double[:, ::1] grad, double[::1] row_loss, int n_threads):
    cdef int status
    with nogil:
        status = kd_loss_rows(student, teacher, labels, inv_t, soft_loss_w, soft_grad_w,
                              hard_loss_w, hard_grad_w, grad, row_loss, n_threads)
    if status != 0:
        raise MemoryError("kd_loss could not allocate its scratch rows")


def _sum_ordered(const double[::1] x):
    """Sum in index order (the reduction the loss uses; thread-count independent)."""
    cdef double s = 0.0
    cdef Py_ssize_t i
    with nogil:
        for i in range(x.shape[0]):
            s += x[i]
    return s
