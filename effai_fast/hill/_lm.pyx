# cython: language_level=3
"""Batched Levenberg-Marquardt for the 4-parameter Hill (log-logistic) model.

Design
------
* One curve is a tiny problem (4 parameters, ~10 points), so there is nothing
  to vectorise inside a curve; the parallelism is across curves: one OpenMP
  ``prange`` over curves, each thread owning a small scratch buffer allocated
  once inside ``parallel()``.  Every curve is fitted by the same sequential
  code whatever thread runs it, so results do not depend on the thread count.
  Curves differ in cost (flat ones stop at once, hard ones retry) and on a
  shared machine one thread may lose its core for a while, so the loop is
  scheduled dynamically in chunks of ~32 curves (~0.4 ms): a static split
  would leave the other thread waiting at the end (and the last curves go
  out in chunks of ~4, so the thread that finishes first waits at the
  closing barrier only for the few curves the other one has in hand).  The schedule decides only
  which thread fits a curve, never how, so results stay bitwise identical.
* Everything per curve runs in the parallel loop, including the summary
  (F test against the flat model and flat labels, log-likelihood, AIC/BIC,
  R^2, standard errors) written to one contiguous row per quantity: a serial
  numpy pass over 10^6 curves (the F distribution alone ~0.7 s) would cap the
  2-thread speed-up by Amdahl's law.
* Parametrisation: theta = (a, b, m, h) with m = log EC50 and a *signed*
  slope h, R = a + (b - a) * sigma(h (log D - m)).  D^h / (K^h + D^h) is
  computed as the logistic sigma(u) = 1 / (1 + exp(-u)) in log-dose, from
  e = exp(-|u|) so that neither sigma nor sigma (1 - sigma) overflows or
  cancels; a zero dose is exact (sigma = 0 for h > 0, 1 for h < 0).
* Each curve is normalised before fitting (log-dose to [-1, 1], responses to
  unit half-range about the weighted mean), so tolerances, damping and the
  self-starting guess are scale free; bounds and fixed values are mapped into
  the same units and the fit is mapped back exactly (an affine change of
  parameters), covariances included.
* Solver: variable projection (Golub-Pereyra, Kaufman's Jacobian).  R is
  linear in the plateaus: for given (m, h) the optimal (a, b) are a 2 x 2
  weighted least-squares solve (one or none when plateaus are fixed), so
  Levenberg-Marquardt (Marquardt's diagonal scaling, Nielsen's damping
  update) runs on (m, h) alone against the projected residual; one pass of
  one exp per point gives the RSS, the projected normal matrix and the exact
  gradient.  A bounded plateau is not projected out but moved by the LM.  Box
  bounds by an active set (parameters at a bound whose gradient points
  outwards are held for the step) plus projection.  Stopping: relative actual
  and predicted reduction below ftol twice, a scaled gradient below gtol (the
  cosine test of MINPACK), a relative step below xtol, or an exact fit;
  damping that grows without an accepted step or the iteration limit is a
  stall, < 1e-6 relative progress over 10 iterations a valley walk.
* Start: the projected RSS on a grid of (m, h) -- m across and just beyond
  the doses, |h| from shallow to step-like, one sign only when both plateaus
  are projected out ((a, b, m, h) and (b, a, m, -h) are the same curve) --
  with one exp per point and slope (the m grid is a product).  A doubtful fit
  (stalled, or parameters far out) is rerun from the best grid point with
  another slope or EC50, walked on with the full budget if it drifts, and
  compared with the model's edge limits (power law, log-linear, step between
  or at dose levels).  A fit not stopped by the tight tests is still
  certified converged when its scaled gradient is <= 1e-6 or a full
  Gauss-Newton step would gain <= 1.5e-8 of the RSS (MINPACK's default ftol).
* Standard errors: sigma^2 (J'WJ)^-1 (Gauss-Newton, as scipy's curve_fit) or
  sigma^2 (H/2)^-1 with H the exact Hessian of the weighted RSS (as R's drc),
  sigma^2 = RSS / (n - p), over the free parameters only.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, NAN, exp, fabs, isfinite, isnan, log, sqrt
from cpython.pycapsule cimport PyCapsule_GetPointer, PyCapsule_IsValid
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID, clock_gettime, timespec

from effai_fast._openmp cimport omp_get_thread_num

from effai_fast.hill._lm cimport (
    HILL_AT_INFINITY, HILL_CONSTANT, HILL_CONVERGED, HILL_FAILED, HILL_FLAT,
    HILL_NO_CONVERGENCE, HILL_NO_EFFECT, HILL_NONFINITE, HILL_NPAR, HILL_OK, HILL_SINGULAR,
    HILL_TOO_FEW,
    HillCurveResult, HillOptions,
)


# scipy.special.cython_special's F survival function, looked up by signature
# at import time instead of cimported: its C name changed between SciPy
# releases (a plain cpdef in some, a fused function, __pyx_fuse_0fdtrc, in
# others), so a cimport ties the compiled module to the SciPy it was built
# against and fails to import under another.  Read-only after import.
ctypedef double (*_fdtrc_t)(double, double, double, int) noexcept nogil


cdef _fdtrc_t _find_fdtrc() except NULL:
    import scipy.special.cython_special as cs
    cdef const char* signature = b"double (double, double, double, int __pyx_skip_dispatch)"
    for key in ("fdtrc", "__pyx_fuse_0fdtrc"):
        capsule = cs.__pyx_capi__.get(key)
        if capsule is not None and PyCapsule_IsValid(capsule, signature):
            return <_fdtrc_t> PyCapsule_GetPointer(capsule, signature)
    raise ImportError(
        "scipy.special.cython_special exports no fdtrc(double, double, double); "
        "effai_fast.hill needs SciPy >= 1.9")


cdef _fdtrc_t _fdtrc = _find_fdtrc()

ctypedef fused floating:
    float
    double


cdef union _Bits:
    double d
    unsigned long long u


cdef inline double _fexp(double x) noexcept nogil:
    """exp(x), inlined: fdlibm's e_exp.c (reduction x = k ln2 + r, |r| <= ln2/2,
    with ln2 split in two; a degree-5 Remez approximation of r (e^r + 1) /
    (e^r - 1)), error below 1 ulp; libm's exp outside |x| < 708 and for NaN.
    About a third of the instructions of the libm call and its wrapper, and it
    leaves the per-point loops without calls."""
    cdef double kf, hi, lo, r, t, c, y
    cdef _Bits b
    if not (fabs(x) < 708.0):
        return exp(x)
    # round x / ln2 to the nearest integer (1.5 * 2^52: the sum's ulp is 1)
    kf = (x * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0
    hi = x - kf * 6.93147180369123816490e-01      # exact: ln2_hi has 32 bits
    lo = kf * 1.90821492927058770002e-10
    r = hi - lo
    t = r * r
    c = r - t * (1.66666666666666019037e-01 + t * (-2.77777777770155933842e-03
        + t * (6.61375632143793436117e-05 + t * (-1.65339022054652515390e-06
        + t * 4.13813679705723846039e-08))))
    y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi)
    b.u = <unsigned long long> (<long long> kf + 1023) << 52     # 2^k, |k| <= 1022
    return y * b.d


cdef inline void _logistic(double u, double* s, double* q) noexcept nogil:
    """s = sigma(u), q = sigma(u) (1 - sigma(u)) without overflow or cancellation."""
    cdef double e = _fexp(-fabs(u))
    cdef double inv = 1.0 / (1.0 + e)
    if u >= 0:
        s[0] = inv
    else:
        s[0] = e * inv
    q[0] = e * inv * inv


cdef double _evaluate(const double* th, Py_ssize_t n, const double* x, const double* y,
                      const double* w, const char* zd, int want,
                      double* A, double* g, double* S) noexcept nogil:
    """Weighted RSS at th; with want >= 1 also A = J'WJ and g = J'Wr (r = f - y);
    with want >= 2 also S = sum w r d2f (the second-order part of the Hessian/2).
    """
    cdef double a = th[0], b = th[1], m = th[2], h = th[3]
    cdef double ba = b - a, rss = 0.0, s, q, r, dx, wr, c
    cdef double j0, j1, j2, j3, q2
    cdef Py_ssize_t i, k
    if want >= 1:
        for k in range(16):
            A[k] = 0.0
        for k in range(4):
            g[k] = 0.0
    if want >= 2:
        for k in range(16):
            S[k] = 0.0
    for i in range(n):
        if zd[i]:
            dx = 0.0
            q = 0.0
            if h > 0:
                s = 0.0
            elif h < 0:
                s = 1.0
            else:
                s = 0.5
        else:
            dx = x[i] - m
            _logistic(h * dx, &s, &q)
        r = a + ba * s - y[i]
        wr = w[i] * r
        rss += wr * r
        if want >= 1:
            j0 = 1.0 - s
            j1 = s
            j2 = -ba * h * q
            j3 = ba * dx * q
            c = w[i]
            A[0] += c * j0 * j0
            A[1] += c * j0 * j1
            A[2] += c * j0 * j2
            A[3] += c * j0 * j3
            A[5] += c * j1 * j1
            A[6] += c * j1 * j2
            A[7] += c * j1 * j3
            A[10] += c * j2 * j2
            A[11] += c * j2 * j3
            A[15] += c * j3 * j3
            g[0] += wr * j0
            g[1] += wr * j1
            g[2] += wr * j2
            g[3] += wr * j3
            if want >= 2 and q != 0.0:
                q2 = q * (1.0 - 2.0 * s)      # d q / d u
                # d2f/da dm = h q, d2f/da dh = -dx q, d2f/db dm = -h q, d2f/db dh = dx q
                S[2] += wr * h * q
                S[3] += wr * (-dx * q)
                S[6] += wr * (-h * q)
                S[7] += wr * dx * q
                S[10] += wr * ba * h * h * q2
                S[11] += wr * ba * (-q - h * dx * q2)
                S[15] += wr * ba * dx * dx * q2
    if want >= 1:
        A[4] = A[1]; A[8] = A[2]; A[9] = A[6]; A[12] = A[3]; A[13] = A[7]; A[14] = A[11]
    if want >= 2:
        S[8] = S[2]; S[12] = S[3]; S[9] = S[6]; S[13] = S[7]; S[14] = S[11]
    return rss


cdef int _chol_solve(double* M, int k, double* rhs) noexcept nogil:
    """Solve M z = rhs in place (M k x k row-major, overwritten by its Cholesky
    factor; rhs by z).  Returns 0, or 1 if M is not positive definite."""
    cdef int i, j, l
    cdef double sm, l00, l10, l11
    if k == 2:
        # the common case (log EC50 and slope), unrolled: the same operations
        # in the same order as the loops below
        sm = M[0]
        if not (sm > 0.0) or not isfinite(sm):
            return 1
        l00 = sqrt(sm)
        l10 = M[2] / l00
        sm = M[3] - l10 * l10
        if not (sm > 0.0) or not isfinite(sm):
            return 1
        l11 = sqrt(sm)
        M[0] = l00
        M[2] = l10
        M[3] = l11
        rhs[0] = rhs[0] / l00
        rhs[1] = (rhs[1] - l10 * rhs[0]) / l11
        rhs[1] = rhs[1] / l11
        rhs[0] = (rhs[0] - l10 * rhs[1]) / l00
        return 0
    for j in range(k):
        sm = M[j * k + j]
        for l in range(j):
            sm -= M[j * k + l] * M[j * k + l]
        if not (sm > 0.0) or not isfinite(sm):
            return 1
        M[j * k + j] = sqrt(sm)
        for i in range(j + 1, k):
            sm = M[i * k + j]
            for l in range(j):
                sm -= M[i * k + l] * M[j * k + l]
            M[i * k + j] = sm / M[j * k + j]
    for i in range(k):
        sm = rhs[i]
        for l in range(i):
            sm -= M[i * k + l] * rhs[l]
        rhs[i] = sm / M[i * k + i]
    for i in range(k - 1, -1, -1):
        sm = rhs[i]
        for l in range(i + 1, k):
            sm -= M[l * k + i] * rhs[l]
        rhs[i] = sm / M[i * k + i]
    return 0


cdef int _chol_inverse(const double* M, int k, double* out) noexcept nogil:
    """out = M^-1 for a k x k SPD matrix (k <= 4).  Returns 1 if not SPD."""
    cdef double L[16]
    cdef double col[4]
    cdef int i, j
    for j in range(k):
        for i in range(k):
            L[i * k + j] = M[i * k + j]
    for j in range(k):
        for i in range(k):
            col[i] = 1.0 if i == j else 0.0
        for i in range(k * k):
            L[i] = M[i]
        if _chol_solve(L, k, col):
            return 1
        for i in range(k):
            out[i * k + j] = col[i]
    return 0


cdef double _vp_eval(double* th, Py_ssize_t n, const double* x, const double* y,
                     const double* w, const char* zd, int lin, const int* nidx, int k,
                     int want, double* s, double* q, double* R, double* g) noexcept nogil:
    """Variable projection at th: the linear parameters in ``lin`` (bit 0: a,
    bit 1: b) are set in th to their weighted least-squares optimum given the
    others, and the RSS is returned (INFINITY if that linear problem is
    singular).  With ``want``, R (k x k, stride 4) = J_N' P W P J_N, Kaufman's
    reduced normal matrix for the parameters nidx[:k] (P projects out the
    linear columns), and g = J_N' W r, the exact half-gradient of the
    projected RSS.  s, q: per-point scratch (sigma and sigma (1 - sigma))."""
    cdef double a = th[0], b = th[1], m = th[2], h = th[3]
    cdef double sw = 0.0, sws = 0.0, sb = 0.0, e1e1 = 0.0, e2e2 = 0.0, ye1 = 0.0, ye2 = 0.0
    cdef double e1 = 0.0, e2 = 0.0, yp, r, wr, rss = 0.0, ba, dx, c2
    cdef double u0, u1, g0, g1, a0, a1, b0, b1, r00, r10, r11
    cdef double u[4]
    cdef double ue1[4]
    cdef double ue2[4]
    cdef Py_ssize_t i
    cdef int j, l
    for i in range(n):
        if zd[i]:
            q[i] = 0.0
            s[i] = 0.0 if h > 0 else (1.0 if h < 0 else 0.5)
        else:
            _logistic(h * (x[i] - m), &s[i], &q[i])
        sw += w[i]
        sws += w[i] * s[i]
    sb = sws / sw
    if lin != 0:
        for i in range(n):
            if lin == 3:
                e1 = 1.0
                e2 = s[i] - sb
                yp = y[i]
            elif lin == 1:
                e1 = 1.0 - s[i]
                yp = y[i] - b * s[i]
            else:
                e1 = s[i]
                yp = y[i] - a * (1.0 - s[i])
            e1e1 += w[i] * e1 * e1
            e2e2 += w[i] * e2 * e2
            ye1 += w[i] * yp * e1
            ye2 += w[i] * yp * e2
        if not (e1e1 > 1e-24 * sw):
            return INFINITY
        if lin == 3:
            if not (e2e2 > 1e-24 * sw):
                return INFINITY
            c2 = ye2 / e2e2
            a = ye1 / e1e1 - c2 * sb
            b = a + c2
        elif lin == 1:
            a = ye1 / e1e1
        else:
            b = ye1 / e1e1
        th[0] = a
        th[1] = b
    ba = b - a
    if want:
        for j in range(k):
            g[j] = 0.0
            ue1[j] = 0.0
            ue2[j] = 0.0
            for l in range(k):
                R[j * 4 + l] = 0.0
    if want and lin == 3 and k == 2 and nidx[0] == 2 and nidx[1] == 3:
        # the common case (plateaus projected out, log EC50 and slope free),
        # written out: u = (-ba h q, ba dx q), e1 = 1, e2 = s - sb; the sums
        # in locals (registers: R and g may alias the inputs for the compiler)
        g0 = 0.0; g1 = 0.0; a0 = 0.0; a1 = 0.0; b0 = 0.0; b1 = 0.0
        r00 = 0.0; r10 = 0.0; r11 = 0.0
        for i in range(n):
            r = a + ba * s[i] - y[i]
            wr = w[i] * r
            rss += wr * r
            dx = 0.0 if zd[i] else x[i] - m
            u0 = -ba * h * q[i]
            u1 = ba * dx * q[i]
            e2 = s[i] - sb
            g0 += wr * u0
            g1 += wr * u1
            a0 += w[i] * u0
            a1 += w[i] * u1
            b0 += w[i] * u0 * e2
            b1 += w[i] * u1 * e2
            r00 += w[i] * u0 * u0
            r10 += w[i] * u1 * u0
            r11 += w[i] * u1 * u1
        g[0] = g0; g[1] = g1
        ue1[0] = a0; ue1[1] = a1
        ue2[0] = b0; ue2[1] = b1
        R[0] = r00; R[4] = r10; R[5] = r11
    else:
        for i in range(n):
            r = a + ba * s[i] - y[i]
            wr = w[i] * r
            rss += wr * r
            if want:
                dx = 0.0 if zd[i] else x[i] - m
                for j in range(k):
                    l = nidx[j]
                    if l == 0:
                        u[j] = 1.0 - s[i]
                    elif l == 1:
                        u[j] = s[i]
                    elif l == 2:
                        u[j] = -ba * h * q[i]
                    else:
                        u[j] = ba * dx * q[i]
                    g[j] += wr * u[j]
                if lin == 3:
                    e1 = 1.0
                    e2 = s[i] - sb
                elif lin == 1:
                    e1 = 1.0 - s[i]
                elif lin == 2:
                    e1 = s[i]
                for j in range(k):
                    ue1[j] += w[i] * u[j] * e1
                    ue2[j] += w[i] * u[j] * e2
                    for l in range(j + 1):
                        R[j * 4 + l] += w[i] * u[j] * u[l]
    if want:
        for j in range(k):
            for l in range(j + 1):
                if lin != 0:
                    R[j * 4 + l] -= ue1[j] * ue1[l] / e1e1
                if lin == 3:
                    R[j * 4 + l] -= ue2[j] * ue2[l] / e2e2
                R[l * 4 + j] = R[j * 4 + l]
    return rss


cdef double _proj_rss(const double* s, double a, double b, Py_ssize_t n, const double* y,
                      const double* w, int lin) noexcept nogil:
    """Projected RSS from sigma values s, in one pass (for the grid of starts;
    cancellation in the sums is harmless there).  a / b are used where not in
    ``lin``."""
    cdef double sw = 0.0, ss = 0.0, sss = 0.0, sy = 0.0, ssy = 0.0, syy = 0.0
    cdef double yp, vss, vsy, vyy, ee, ey
    cdef Py_ssize_t i
    for i in range(n):
        yp = y[i]
        if not (lin & 1):
            yp -= a * (1.0 - s[i])
        if not (lin & 2):
            yp -= b * s[i]
        sw += w[i]
        ss += w[i] * s[i]
        sss += w[i] * s[i] * s[i]
        sy += w[i] * yp
        ssy += w[i] * s[i] * yp
        syy += w[i] * yp * yp
    if lin == 3:
        vss = sss - ss * ss / sw
        vsy = ssy - ss * sy / sw
        vyy = syy - sy * sy / sw
        if not (vss > 1e-12 * sw):
            return INFINITY
        return vyy - vsy * vsy / vss
    if lin == 1:
        ee = sw - 2.0 * ss + sss
        ey = sy - ssy
    elif lin == 2:
        ee = sss
        ey = ssy
    else:
        return syy
    if not (ee > 1e-12 * sw):
        return INFINITY
    return syy - ey * ey / ee


cdef void _start_plateaus(double* th, Py_ssize_t n, const double* x, const double* y,
                          const double* w, const char* zd, int lin, double* s, double* q,
                          const double* fx, const double* lo, const double* hi,
                          int free_mask) noexcept nogil:
    """Plateaus of a grid start: solved linearly (then boxed); if that is
    singular, the ends of the normalised response range in the slope's order."""
    cdef double dummy[16]
    cdef int nidx[4]
    if not isfinite(_vp_eval(th, n, x, y, w, zd, lin, nidx, 0, 0, s, q, dummy, dummy)):
        if free_mask & 1:
            th[0] = -1.05
        if free_mask & 2:
            th[1] = 1.05
    _apply_box(th, fx, lo, hi, free_mask)


cdef void _grid_start(double* th, double* th_alt, Py_ssize_t n, const double* x,
                      const double* y, const double* w, const char* zd, int lin,
                      const double* fx, const double* lo, const double* hi,
                      int free_mask, bint sym, double* s, double* e) noexcept nogil:
    """Near-global start: the projected RSS on a coarse grid of (log EC50,
    slope) -- both slope signs, slopes from shallow to step-like, EC50 across
    and just beyond the dose range -- with the plateaus solved linearly.  th
    gets the best point; th_alt the best one with another slope (magnitude
    or sign) or an EC50 at least 0.75 away, for a retry."""
    cdef double mg[7]
    cdef double hg[8]
    cdef double rs[56]
    cdef double mm[56]
    cdef double hh[56]
    cdef double hmag[3]
    cdef int nm = 0, nh = 0, i, j, c, best = -1, alt = -1
    cdef Py_ssize_t l
    cdef double v, hl, step, dummy
    cdef bint uniform
    hmag[0] = 2.0; hmag[1] = 6.0; hmag[2] = 18.0
    if free_mask & 4:
        for i in range(5):
            v = -1.2 + 0.6 * i
            mg[nm] = lo[2] if v < lo[2] else (hi[2] if v > hi[2] else v)
            nm += 1
    else:
        mg[0] = fx[2]
        nm = 1
    if free_mask & 8:
        # with both plateaus projected out, (a, b, m, h) and (b, a, m, -h) are
        # the same curve: one slope sign suffices
        for i in range(3 if sym and lo[3] <= -18.0 and hi[3] >= 18.0 else 6):
            v = hmag[i % 3] * (1.0 if i < 3 else -1.0)
            hg[nh] = lo[3] if v < lo[3] else (hi[3] if v > hi[3] else v)
            nh += 1
    else:
        hg[0] = fx[3]
        nh = 1
    # an evenly spaced, unclipped m grid: exp(-h (x - m)) for the next m is one
    # product (|h (x - m)| <= 40 here, no overflow), so one exp per point and slope
    uniform = (free_mask & 12) == 12 and lo[2] <= -1.2 and hi[2] >= 1.2
    for j in range(nh):
        if uniform:
            hl = hg[j]
            step = _fexp(hl * 0.6)
            for l in range(n):
                if zd[l]:
                    s[l] = 0.0 if hl > 0 else 1.0
                else:
                    e[l] = _fexp(-hl * (x[l] + 1.2))
        for i in range(nm):
            c = j * nm + i
            mm[c] = mg[i]
            hh[c] = hg[j]
            for l in range(n):
                if uniform:
                    if not zd[l]:
                        s[l] = 1.0 / (1.0 + e[l])
                        e[l] *= step
                elif zd[l]:
                    s[l] = 0.0 if hg[j] > 0 else (1.0 if hg[j] < 0 else 0.5)
                else:
                    _logistic(hg[j] * (x[l] - mg[i]), &s[l], &dummy)
            rs[c] = _proj_rss(s, fx[0], fx[1], n, y, w, lin)
            if isfinite(rs[c]) and (best < 0 or rs[c] < rs[best]):
                best = c
    c = nm * nh
    if best < 0:
        best = 0
        rs[0] = INFINITY
    for i in range(c):
        if (isfinite(rs[i]) and (hh[i] != hh[best] or fabs(mm[i] - mm[best]) > 0.75)
                and (alt < 0 or rs[i] < rs[alt])):
            alt = i
    if alt < 0:
        alt = best
    th[0] = fx[0]; th[1] = fx[1]; th[2] = mm[best]; th[3] = hh[best]
    th_alt[0] = fx[0]; th_alt[1] = fx[1]; th_alt[2] = mm[alt]; th_alt[3] = hh[alt]


cdef int _vp_lm(double* th, Py_ssize_t n, const double* x, const double* y, const double* w,
                const char* zd, int lin, const int* nidx, int k, const double* lo,
                const double* hi, const HillOptions* opt, int evap, double* s, double* q,
                double* rss_out, int* iters) noexcept nogil:
    """Levenberg-Marquardt on the k parameters nidx[:k] of the projected
    problem (the linear ones in ``lin`` re-solved at every evaluation), from
    th (normalised units; updated in place).  Returns 0 (converged),
    1 (stalled), 2 (non-finite start), 3 (slow walk along a valley),
    4 (with evap: parameters drifting to the model's edge)."""
    cdef double R[16]
    cdef double g[4]
    cdef double R2[16]
    cdef double g2[4]
    cdef double M[16]
    cdef double z[4]
    cdef double tn[4]
    cdef double d[4]
    cdef int fidx[4]
    cdef double rss, rss_new, lam, nu, dmax, pred, actred, rho, t, gn, dn, tnorm, dd, rss_ref
    cdef int it, i, j, kk, code, blocked, small_f = 0
    rss = _vp_eval(th, n, x, y, w, zd, lin, nidx, k, 1, s, q, R, g)
    rss_out[0] = rss
    if not isfinite(rss):
        return 2
    if k == 0:
        return 0
    dmax = 0.0
    for i in range(k):
        if R[i * 5] > dmax:
            dmax = R[i * 5]
    lam = 1e-3
    nu = 2.0
    it = 0
    code = 1
    rss_ref = rss
    gn = INFINITY
    while it < opt.max_iter:
        it += 1
        # valley walk: less than 1e-6 relative progress over 10 iterations
        if it % 10 == 0:
            if it >= 20 and rss_ref - rss <= 1e-6 * rss:
                code = 3
                break
            rss_ref = rss
        if rss <= 1e-30:
            code = 0
            break
        # scaled projected-gradient test (cosine between r and the projected columns)
        gn = 0.0
        kk = 0
        for i in range(k):
            j = nidx[i]
            blocked = (th[j] <= lo[j] and g[i] > 0) or (th[j] >= hi[j] and g[i] < 0)
            if not blocked:
                fidx[kk] = i
                kk += 1
                if R[i * 5] > 0:
                    t = fabs(g[i]) / sqrt(R[i * 5] * rss)
                    if t > gn:
                        gn = t
        if gn <= opt.gtol or kk == 0:
            code = 0
            break
        for i in range(kk):
            for j in range(kk):
                M[i * kk + j] = R[fidx[i] * 4 + fidx[j]]
            dd = R[fidx[i] * 5]
            if dd < 1e-12 * dmax:
                dd = 1e-12 * dmax
            if dd <= 0:
                dd = 1e-12
            M[i * kk + i] += lam * dd
            z[i] = -g[fidx[i]]
        if _chol_solve(M, kk, z):
            lam *= nu
            nu *= 2.0
            if lam > 1e16:
                break
            continue
        for i in range(4):
            tn[i] = th[i]
        for i in range(k):
            d[i] = 0.0
        for i in range(kk):
            j = nidx[fidx[i]]
            t = th[j] + z[i]
            if t < lo[j]:
                t = lo[j]
            if t > hi[j]:
                t = hi[j]
            tn[j] = t
            d[fidx[i]] = t - th[j]
        pred = 0.0
        for i in range(k):
            pred -= 2.0 * g[i] * d[i]
            for j in range(k):
                pred -= d[i] * R[i * 4 + j] * d[j]
        rss_new = _vp_eval(tn, n, x, y, w, zd, lin, nidx, k, 1, s, q, R2, g2)
        actred = rss - rss_new
        if isfinite(rss_new) and actred > 0 and pred > 0:
            rho = actred / pred
            dn = 0.0
            tnorm = 0.0
            for i in range(k):
                if fabs(d[i]) > dn:
                    dn = fabs(d[i])
                if fabs(th[nidx[i]]) > tnorm:
                    tnorm = fabs(th[nidx[i]])
            for i in range(4):
                th[i] = tn[i]
            for i in range(16):
                R[i] = R2[i]
            for i in range(k):
                g[i] = g2[i]
            t = 2.0 * rho - 1.0
            t = 1.0 - t * t * t
            if t < 1.0 / 3.0:
                t = 1.0 / 3.0
            lam *= t
            nu = 2.0
            if lam < 1e-15:
                lam = 1e-15
            dmax = 0.0
            for i in range(k):
                if R[i * 5] > dmax:
                    dmax = R[i * 5]
            if actred <= opt.ftol * rss and pred <= opt.ftol * rss:
                small_f += 1
            else:
                small_f = 0
            rss = rss_new
            if evap and (fabs(th[0]) > 50.0 or fabs(th[1]) > 50.0 or fabs(th[2]) > 4.0
                         or fabs(th[3]) > 200.0):
                code = 4
                break
            if small_f >= 2:
                code = 0
                break
            if dn <= opt.xtol * (1.0 + tnorm):
                code = 0
                break
        else:
            lam *= nu
            nu *= 2.0
            if lam > 1e16:
                if gn <= 1e-6:
                    code = 0
                break
    iters[0] += it
    rss_out[0] = rss
    return code


cdef double _powerlaw_rss(double kappa, Py_ssize_t n, const double* x, const double* y,
                         const double* w, const char* zd, double* alpha,
                         double* beta) noexcept nogil:
    """Profile RSS of y ~ alpha + beta exp(kappa x) (zero dose: exp -> 0, kappa > 0)."""
    cdef double sw = 0.0, su = 0.0, sy = 0.0, suu = 0.0, suy = 0.0, syy = 0.0, u, du, dy
    cdef double ub, yb
    cdef Py_ssize_t i
    for i in range(n):
        u = 0.0 if zd[i] else _fexp(kappa * x[i])
        sw += w[i]
        su += w[i] * u
        sy += w[i] * y[i]
    ub = su / sw
    yb = sy / sw
    for i in range(n):
        u = 0.0 if zd[i] else _fexp(kappa * x[i])
        du = u - ub
        dy = y[i] - yb
        suu += w[i] * du * du
        suy += w[i] * du * dy
        syy += w[i] * dy * dy
    if not (suu > 0):
        return INFINITY
    beta[0] = suy / suu
    alpha[0] = yb - beta[0] * ub
    return syy - suy * suy / suu


cdef double _limit_powerlaw(Py_ssize_t n, const double* x, const double* y, const double* w,
                            const char* zd, int has_zero, double xlo, double xhi,
                            double* th) noexcept nogil:
    """Best fit at the 'partial curve' edge of the Hill model: K -> 0 or inf with a
    plateau diverging, where R -> alpha + beta D^kappa.  Returns the RSS of a
    finite Hill parameter set within ~1e-15 (relative) of that limit."""
    cdef double best = INFINITY, r, lk, kbest = 0.0, al, be, a, b, c, d, fc, fd
    cdef double gr = 0.6180339887498949, sgn, sbest = 1.0
    cdef int i, sg, it
    for sg in range(2):
        sgn = 1.0 if sg == 0 else -1.0
        if sgn < 0 and has_zero:
            continue
        for i in range(13):
            lk = log(0.02) + i * (log(60.0) - log(0.02)) / 12.0
            r = _powerlaw_rss(sgn * exp(lk), n, x, y, w, zd, &al, &be)
            if r < best:
                best = r
                kbest = lk
                sbest = sgn
    if not isfinite(best):
        return INFINITY
    # golden-section refinement in log|kappa| around the best grid point
    sgn = sbest
    lk = kbest
    a = lk - (log(60.0) - log(0.02)) / 12.0
    b = lk + (log(60.0) - log(0.02)) / 12.0
    c = b - gr * (b - a)
    d = a + gr * (b - a)
    fc = _powerlaw_rss(sgn * exp(c), n, x, y, w, zd, &al, &be)
    fd = _powerlaw_rss(sgn * exp(d), n, x, y, w, zd, &al, &be)
    for it in range(32):
        if fc < fd:
            b = d
            d = c
            fd = fc
            c = b - gr * (b - a)
            fc = _powerlaw_rss(sgn * exp(c), n, x, y, w, zd, &al, &be)
        else:
            a = c
            c = d
            fc = fd
            d = a + gr * (b - a)
            fd = _powerlaw_rss(sgn * exp(d), n, x, y, w, zd, &al, &be)
    lk = 0.5 * (a + b)
    c = sgn * exp(lk)
    _powerlaw_rss(c, n, x, y, w, zd, &al, &be)
    # Hill with h = kappa, EC50 far beyond the data: sigma(h (x - m)) ~ exp(h (x - m))
    th[3] = c
    if c > 0:
        th[2] = xhi + 36.0 / c
    else:
        th[2] = xlo + 36.0 / c
    th[0] = al
    th[1] = al + be * exp(c * th[2])
    return 0.0


cdef double _limit_linear(Py_ssize_t n, const double* x, const double* y, const double* w,
                          double* th) noexcept nogil:
    """The 'shallow' edge: h -> 0 with both plateaus diverging, R -> alpha + gamma log D
    (only without zero doses).  Sets a finite Hill approximation; returns 0."""
    cdef double sw = 0.0, sx = 0.0, sy = 0.0, sxx = 0.0, sxy = 0.0, xb, yb, gam, h = 1e-5
    cdef Py_ssize_t i
    for i in range(n):
        sw += w[i]
        sx += w[i] * x[i]
        sy += w[i] * y[i]
    xb = sx / sw
    yb = sy / sw
    for i in range(n):
        sxx += w[i] * (x[i] - xb) * (x[i] - xb)
        sxy += w[i] * (x[i] - xb) * (y[i] - yb)
    if not (sxx > 0):
        return INFINITY
    gam = sxy / sxx
    # a + (b - a) sigma(h (x - m)) ~ (a + b) / 2 + (b - a) h (x - m) / 4
    th[2] = xb
    th[3] = h if gam >= 0 else -h
    th[0] = yb - 2.0 * fabs(gam) / h
    th[1] = yb + 2.0 * fabs(gam) / h
    return 0.0


cdef void _limit_step(Py_ssize_t n, const double* x, const double* y, const double* w,
                      const char* zd, double* th, double* rss_out) noexcept nogil:
    """Best fit at the 'infinitely steep' edge (h -> inf): a step between two
    dose levels, or a step *at* a dose level whose points then take any value
    between the plateaus (h -> inf with h (x_j - m) held finite)."""
    cdef Py_ssize_t i, j
    cdef double cut, nxt, prv, s0, w0, s1, w1, sm, wm, r, best = INFINITY, pj, mean0, mean1
    cdef double v, t, lt, gap, hh
    cdef int mode
    for i in range(n):
        for mode in range(2):
            if mode == 1 and zd[i]:
                continue
            cut = -1e300 if zd[i] else x[i]
            nxt = INFINITY
            prv = -INFINITY
            s0 = 0.0; w0 = 0.0; s1 = 0.0; w1 = 0.0; sm = 0.0; wm = 0.0
            for j in range(n):
                pj = -1e300 if zd[j] else x[j]
                if pj < cut or (mode == 0 and pj == cut):
                    s0 += w[j] * y[j]
                    w0 += w[j]
                    if pj > prv:
                        prv = pj
                elif pj > cut:
                    s1 += w[j] * y[j]
                    w1 += w[j]
                    if pj < nxt:
                        nxt = pj
                else:
                    sm += w[j] * y[j]
                    wm += w[j]
            if w1 == 0.0 or w0 == 0.0:
                continue
            mean0 = s0 / w0
            mean1 = s1 / w1
            v = 0.0
            if mode == 1:
                if mean0 == mean1:
                    continue
                v = sm / wm
                t = (v - mean0) / (mean1 - mean0)
                if t < 1e-9:
                    t = 1e-9
                if t > 1.0 - 1e-9:
                    t = 1.0 - 1e-9
                v = mean0 + t * (mean1 - mean0)
            r = 0.0
            for j in range(n):
                pj = -1e300 if zd[j] else x[j]
                if pj < cut or (mode == 0 and pj == cut):
                    r += w[j] * (y[j] - mean0) * (y[j] - mean0)
                elif pj > cut:
                    r += w[j] * (y[j] - mean1) * (y[j] - mean1)
                else:
                    r += w[j] * (y[j] - v) * (y[j] - v)
            if r < best:
                best = r
                th[0] = mean0
                th[1] = mean1
                if mode == 1:
                    # sigma(h (x_i - m)) = t exactly, every other level >= 36 away
                    lt = log(t / (1.0 - t))
                    gap = nxt - cut
                    if prv > -1e299 and cut - prv < gap:
                        gap = cut - prv
                    hh = (36.0 + fabs(lt)) / gap
                    th[3] = hh
                    th[2] = cut - lt / hh
                elif zd[i]:
                    th[2] = nxt - 1.0
                    th[3] = 72.0
                else:
                    th[2] = 0.5 * (cut + nxt)
                    th[3] = 72.0 / (nxt - cut)
    rss_out[0] = best


cdef inline bint _doubtful(int code, const double* th) noexcept nogil:
    """A fit worth a second opinion (normalised units)."""
    return (code != 0 or fabs(th[0]) > 5.0 or fabs(th[1]) > 5.0 or fabs(th[2]) > 2.5
            or fabs(th[3]) > 25.0)


cdef inline void _apply_box(double* th, const double* fx, const double* lo, const double* hi,
                            int free_mask) noexcept nogil:
    cdef int k
    for k in range(4):
        if not (free_mask & (1 << k)):
            th[k] = fx[k]
        if th[k] < lo[k]:
            th[k] = lo[k]
        if th[k] > hi[k]:
            th[k] = hi[k]


cdef inline void _keep_better(double* th, double* rss, int* code, const double* th2,
                              double rss2, int code2) noexcept nogil:
    cdef int k
    if isfinite(rss2) and (not isfinite(rss[0]) or rss2 < rss[0]):
        for k in range(4):
            th[k] = th2[k]
        rss[0] = rss2
        code[0] = code2
    elif code2 == 0 and code[0] != 0 and rss2 <= rss[0] * (1.0 + 1e-10):
        code[0] = 0


cdef int _try_limits(Py_ssize_t n, const double* x, const double* y, const double* w,
                     const char* zd, int has_zero, double xlo, double xhi,
                     double* th, double* rss) noexcept nogil:
    """Replace th by the best edge limit of the model (power law, log-linear,
    step) if that has a lower RSS; return 1 if it did."""
    cdef double th2[4]
    cdef double dummy[16]
    cdef double g[4]
    cdef double r
    cdef int k, better = 0
    # the power-law edge (EC50 beyond the data, a plateau diverging) costs
    # ~40 exp per point: only when the fit is heading that way
    cdef bint far = (fabs(th[2]) > 0.8 or fabs(th[0]) > 2.0 or fabs(th[1]) > 2.0
                     or not isfinite(rss[0]))
    for k in range(3):
        if k == 0:
            if not far or _limit_powerlaw(n, x, y, w, zd, has_zero, xlo, xhi, th2) != 0.0:
                continue
        elif k == 1:
            if has_zero or _limit_linear(n, x, y, w, th2) != 0.0:
                continue
        else:
            _limit_step(n, x, y, w, zd, th2, &r)
            if not isfinite(r):
                continue
        r = _evaluate(th2, n, x, y, w, zd, 0, dummy, g, dummy)
        # a limit that the fit matches (to 1e-9) is where the fit is heading
        if isfinite(r) and (not isfinite(rss[0]) or r <= rss[0] * (1.0 + 1e-9)):
            th[0] = th2[0]; th[1] = th2[1]; th[2] = th2[2]; th[3] = th2[3]
            rss[0] = r
            better = 1
    return better


cdef void hill_fit_curve(const double* dose, const double* resp, const double* weight,
                         Py_ssize_t n_doses, const double* fixed,
                         const HillOptions* opt, double* work,
                         HillCurveResult* res) noexcept nogil:
    cdef double* x = work
    cdef double* y = work + n_doses
    cdef double* w = work + 2 * n_doses
    cdef double* s = work + 3 * n_doses
    cdef double* q = work + 4 * n_doses
    cdef char* zd = <char*> (work + 5 * n_doses)
    cdef Py_ssize_t i, n = 0
    cdef int k, j, p = 0, n_pos = 0, code1, code2
    cdef int idx[4]
    cdef double lo[4]
    cdef double hi[4]
    cdef double fx[4]
    cdef double th[4]
    cdef double th2[4]
    cdef double T[4]
    cdef double C[4]
    cdef double A[16]
    cdef double g[4]
    cdef double S[16]
    cdef double M[16]
    cdef double Minv[16]
    cdef int nidx[4]
    cdef double sw = 0.0, swy = 0.0
    cdef double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY
    cdef double xc, xs, yc, ys, d, t, gn
    cdef double rss1, rss2, sigma2
    cdef int has_zero = 0, at_inf = 0, unbounded = 1, limits_ok, lin, lin_all, kk
    cdef double xlo_n, xhi_n
    for k in range(16):
        res.cov[k] = NAN
    for k in range(4):
        res.theta[k] = NAN
    res.rss = NAN
    res.tss = NAN
    res.sum_logw = 0.0
    res.ymean = NAN
    res.n_iter = 0
    res.status = HILL_FAILED
    res.reason = HILL_OK
    # 1. compact the valid points
    for i in range(n_doses):
        d = dose[i]
        if isnan(d) or isnan(resp[i]) or isnan(weight[i]) or weight[i] <= 0:
            continue
        y[n] = resp[i]
        w[n] = weight[i]
        if d > 0:
            x[n] = log(d)
            zd[n] = 0
            n_pos += 1
            if x[n] < xmin:
                xmin = x[n]
            if x[n] > xmax:
                xmax = x[n]
        else:
            x[n] = 0.0
            zd[n] = 1
            has_zero = 1
        sw += w[n]
        swy += w[n] * y[n]
        res.sum_logw += log(w[n])
        if y[n] < ymin:
            ymin = y[n]
        if y[n] > ymax:
            ymax = y[n]
        n += 1
    res.n_obs = <int> n
    for k in range(4):
        if opt.free_mask & (1 << k):
            idx[p] = k
            p += 1
    if n == 0:
        res.reason = HILL_TOO_FEW
        return
    yc = swy / sw
    res.ymean = yc
    res.tss = 0.0
    for i in range(n):
        res.tss += w[i] * (y[i] - yc) * (y[i] - yc)
    if not isfinite(res.tss) or not isfinite(yc):
        res.reason = HILL_NONFINITE
        return
    if n < p or (n_pos == 0):
        res.reason = HILL_TOO_FEW
        return
    if ymax == ymin:
        # constant responses: no dose effect at all
        res.status = HILL_FLAT
        res.reason = HILL_CONSTANT
        res.theta[0] = yc
        res.theta[1] = yc
        res.theta[2] = NAN
        res.theta[3] = 0.0
        res.rss = 0.0
        return
    # 2. normalise: log-dose of positive doses to [-1, 1], responses to unit half-range
    if xmax > xmin:
        xc = 0.5 * (xmax + xmin)
        xs = 0.5 * (xmax - xmin)
    else:
        xc = xmax
        xs = 1.0
    ys = 0.5 * (ymax - ymin)
    for i in range(n):
        if not zd[i]:
            x[i] = (x[i] - xc) / xs
        y[i] = (y[i] - yc) / ys
    T[0] = ys; T[1] = ys; T[2] = xs; T[3] = 1.0 / xs
    C[0] = yc; C[1] = yc; C[2] = xc; C[3] = 0.0
    for k in range(4):
        lo[k] = (opt.lo[k] - C[k]) / T[k]
        hi[k] = (opt.hi[k] - C[k]) / T[k]
        fx[k] = (fixed[k] - C[k]) / T[k]
    for k in range(4):
        if isfinite(lo[k]) or isfinite(hi[k]):
            unbounded = 0
    xlo_n = (xmin - xc) / xs
    xhi_n = (xmax - xc) / xs
    # internal safety box for the log-EC50 and the slope (far outside any data)
    if lo[2] < -60.0:
        lo[2] = -60.0
    if hi[2] > 60.0:
        hi[2] = 60.0
    if lo[3] < -1e4:
        lo[3] = -1e4
    if hi[3] > 1e4:
        hi[3] = 1e4
    # 3. near-global start: the projected RSS (plateaus solved linearly) on a
    # coarse grid of (log EC50, slope); a and b bounded are not projected out
    lin_all = opt.free_mask & 3
    lin = lin_all
    if isfinite(lo[0]) or isfinite(hi[0]):
        lin &= ~1
    if isfinite(lo[1]) or isfinite(hi[1]):
        lin &= ~2
    k = 0
    for j in range(4):
        if (opt.free_mask & (1 << j)) and not (lin & (1 << j)):
            nidx[k] = j
            k += 1
    _grid_start(th, th2, n, x, y, w, zd, lin_all, fx, lo, hi, opt.free_mask, lin == 3, s, q)
    _start_plateaus(th, n, x, y, w, zd, lin_all, s, q, fx, lo, hi, opt.free_mask)
    _start_plateaus(th2, n, x, y, w, zd, lin_all, s, q, fx, lo, hi, opt.free_mask)
    # 4. Levenberg-Marquardt on the projected problem; a doubtful result (no
    # convergence, or parameters drifting to the model's edge) is retried from
    # the best grid start in another basin, then compared with the edge limits
    # of the model; a best fit still drifting is walked out with the full budget.
    code1 = _vp_lm(th, n, x, y, w, zd, lin, nidx, k, lo, hi, opt, 1, s, q, &rss1,
                   &res.n_iter)
    limits_ok = opt.free_mask == 15 and unbounded
    if (opt.retry and _doubtful(code1, th) and opt.fskip != NULL and p > 1 and n > p
            and (res.tss / (ys * ys) - rss1) / (p - 1) < opt.fskip[n] * rss1 / (n - p)):
        # no dose effect worth the name: the F test will label this curve flat
        pass
    elif opt.retry and _doubtful(code1, th):
        code2 = _vp_lm(th2, n, x, y, w, zd, lin, nidx, k, lo, hi, opt, 1, s, q, &rss2,
                       &res.n_iter)
        _keep_better(th, &rss1, &code1, th2, rss2, code2)
        if code1 == 4 and fabs(th[3]) <= 200.0:
            # drifting plateaus / EC50: the optimum may be finite but far out,
            # below every edge limit -- walk on before comparing with them
            code1 = _vp_lm(th, n, x, y, w, zd, lin, nidx, k, lo, hi, opt, 0, s, q, &rss1,
                           &res.n_iter)
        if limits_ok and _doubtful(code1, th):
            at_inf = _try_limits(n, x, y, w, zd, has_zero, xlo_n, xhi_n, th, &rss1)
        if not at_inf and code1 == 4:
            code1 = _vp_lm(th, n, x, y, w, zd, lin, nidx, k, lo, hi, opt, 0, s, q, &rss1,
                           &res.n_iter)
            if limits_ok and _doubtful(code1, th):
                at_inf = _try_limits(n, x, y, w, zd, has_zero, xlo_n, xhi_n, th, &rss1)
    if not isfinite(rss1):
        res.reason = HILL_NONFINITE
        return
    if not at_inf and code1 != 0:
        # not stopped by the tight tolerances: certify a stationary point at
        # practical tolerances -- the scaled gradient of the full problem is
        # <= 1e-6, or a full Gauss-Newton step from here would lower the RSS by
        # <= 1.5e-8 of it (MINPACK's default ftol, as scipy's curve_fit uses)
        _evaluate(th, n, x, y, w, zd, 1, A, g, S)
        gn = 0.0
        kk = 0
        for j in range(p):
            k = idx[j]
            if (th[k] <= lo[k] and g[k] > 0) or (th[k] >= hi[k] and g[k] < 0):
                continue
            t = fabs(g[k]) / sqrt(A[k * 5] * rss1) if A[k * 5] > 0 else INFINITY
            if not (t <= gn):
                gn = t
            nidx[kk] = k
            kk += 1
        if gn <= 1e-6:
            code1 = 0
        else:
            for j in range(kk):
                for k in range(kk):
                    M[j * kk + k] = A[nidx[j] * 4 + nidx[k]]
                Minv[j] = g[nidx[j]]
            if _chol_solve(M, kk, Minv) == 0:
                t = 0.0
                for j in range(kk):
                    t += g[nidx[j]] * Minv[j]
                if t <= 1.49012e-8 * rss1:
                    code1 = 0
    # 5. canonical orientation a <= b (same curve: swap plateaus, flip slope)
    if opt.canon and th[0] > th[1]:
        t = th[0]
        th[0] = th[1]
        th[1] = t
        th[3] = -th[3]
    for k in range(4):
        res.theta[k] = th[k] * T[k] + C[k]
    res.rss = rss1 * ys * ys
    if at_inf:
        res.status = HILL_CONVERGED
        res.reason = HILL_AT_INFINITY
    elif code1 == 0:
        res.status = HILL_CONVERGED
    else:
        res.status = HILL_FAILED
        res.reason = HILL_NO_CONVERGENCE
    # 6. covariance of the free parameters: sigma^2 (J'WJ)^-1 or sigma^2 (H/2)^-1
    if n <= p:
        return
    _evaluate(th, n, x, y, w, zd, 2 if opt.se_mode == 1 else 1, A, g, S)
    for j in range(p):
        for k in range(p):
            M[j * p + k] = A[idx[j] * 4 + idx[k]]
            if opt.se_mode == 1:
                M[j * p + k] += S[idx[j] * 4 + idx[k]]
    if _chol_inverse(M, p, Minv):
        if res.status == HILL_CONVERGED:
            res.reason = HILL_SINGULAR
        return
    sigma2 = rss1 / (n - p)
    for j in range(p):
        for k in range(p):
            res.cov[idx[j] * 4 + idx[k]] = sigma2 * Minv[j * p + k] * T[idx[j]] * T[idx[k]]


# ---------------------------------------------------------------------------
# batch driver (called from fit.py) and small test hooks
# ---------------------------------------------------------------------------

# rows of fit_batch's ``fout`` (per-curve float results, one contiguous row each)
cdef enum:
    F_RMIN = 0
    F_RMAX = 1
    F_EC50 = 2
    F_N = 3
    F_LOG_EC50 = 4
    F_SE_RMIN = 5
    F_SE_RMAX = 6
    F_SE_LOG_EC50 = 7
    F_SE_EC50 = 8
    F_SE_N = 9
    F_RSS = 10
    F_TSS = 11
    F_LOGLIK = 12
    F_AIC = 13
    F_BIC = 14
    F_R2 = 15
    F_SIGMA = 16
    F_FSTAT = 17
    F_PFLAT = 18
    F_YMEAN = 19
    N_FOUT = 20

# rows of fit_batch's ``iout``
cdef enum:
    I_N_OBS = 0
    I_N_PARAMS = 1
    I_DF = 2
    I_N_ITER = 3
    N_IOUT = 4

FOUT_FIELDS = ("rmin", "rmax", "ec50", "n", "log_ec50", "se_rmin", "se_rmax", "se_log_ec50",
               "se_ec50", "se_n", "rss", "tss", "loglik", "aic", "bic", "r2", "sigma",
               "f_stat", "p_flat", "ymean")
IOUT_FIELDS = ("n_obs", "n_params", "df_resid", "n_iter")

cdef double _LOG_2PI = 1.8378770664093453

# fit_batch's optional timing record: one row of TIMING_FIELDS per thread (a
# row is 8 doubles, one cache line, so the threads never write the same line)
# and a last row whose first entry is the end of the parallel region; times in
# seconds from the start of the call
TIMING_FIELDS = ("start", "end", "busy", "cpu", "chunks", "curves")
cdef enum:
    _TROW = 8


cdef inline double _now(int clock) noexcept nogil:
    cdef timespec ts
    clock_gettime(clock, &ts)
    return <double> ts.tv_sec + 1e-9 * <double> ts.tv_nsec


cdef void _finish(HillCurveResult* res, int p, bint label, double flat_alpha,
                  double* fo, long long* io, double* th_hill) noexcept nogil:
    """Per-curve summary of a fit (IN res, OUT fo[N_FOUT], io[N_IOUT],
    th_hill[4]; res.theta / res.cov / status / reason are updated in place):
    the F test against the flat model (and, with ``label``, a flat label when
    its p-value exceeds ``flat_alpha``), the flat model for flat curves,
    log-likelihood, AIC/BIC, R^2, residual SE and standard errors.  Runs in the
    parallel loop so nothing per curve is left to serial numpy code."""
    cdef int n_params = p, df, k
    cdef double rss = res.rss, tss = res.tss, f, pf, nobs, ll, kk
    for k in range(4):
        th_hill[k] = res.theta[k]
    th_hill[2] = exp(res.theta[2])
    df = res.n_obs - p
    if df < 0:
        df = 0
    f = NAN
    if df > 0 and p > 1:
        f = ((tss - rss) / (p - 1)) / (rss / df)
    pf = NAN
    if isfinite(f):
        pf = _fdtrc(<double> (p - 1 if p > 1 else 1), <double> (df if df > 1 else 1),
                    f if f > 0.0 else 0.0, 0)
    if label and res.status != HILL_FLAT and pf > flat_alpha and isfinite(rss):
        res.status = HILL_FLAT
        res.reason = HILL_NO_EFFECT
    if res.status == HILL_FLAT:
        res.theta[0] = res.ymean
        res.theta[1] = res.ymean
        res.theta[2] = NAN
        res.theta[3] = 0.0
        for k in range(16):
            res.cov[k] = NAN
        rss = tss
        n_params = 1
        df = res.n_obs - 1
        if df < 0:
            df = 0
    nobs = <double> res.n_obs
    ll = -0.5 * nobs * (_LOG_2PI + log(rss / nobs) + 1.0) + 0.5 * res.sum_logw
    kk = <double> (n_params + 1)
    fo[F_RMIN] = res.theta[0]
    fo[F_RMAX] = res.theta[1]
    fo[F_EC50] = exp(res.theta[2])
    fo[F_N] = res.theta[3]
    fo[F_LOG_EC50] = res.theta[2]
    fo[F_SE_RMIN] = sqrt(res.cov[0])
    fo[F_SE_RMAX] = sqrt(res.cov[5])
    fo[F_SE_LOG_EC50] = sqrt(res.cov[10])
    fo[F_SE_EC50] = fo[F_EC50] * fo[F_SE_LOG_EC50]
    fo[F_SE_N] = sqrt(res.cov[15])
    fo[F_RSS] = rss
    fo[F_TSS] = tss
    fo[F_LOGLIK] = ll
    fo[F_AIC] = -2.0 * ll + 2.0 * kk
    fo[F_BIC] = -2.0 * ll + log(nobs) * kk
    fo[F_R2] = 1.0 - rss / tss
    fo[F_SIGMA] = sqrt(rss / df)
    fo[F_FSTAT] = f
    fo[F_PFLAT] = pf
    fo[F_YMEAN] = res.ymean
    io[I_N_OBS] = res.n_obs
    io[I_N_PARAMS] = n_params
    io[I_DF] = df
    io[I_N_ITER] = res.n_iter


def fit_batch(const floating[:, ::1] dose, const floating[:, ::1] resp,
              const floating[:, ::1] weight, const double[:, ::1] fixed,
              int free_mask, const double[::1] lo, const double[::1] hi, bint canon,
              int se_mode, int max_iter, double ftol, double xtol, double gtol, bint retry,
              const double[::1] fskip, bint label, double flat_alpha,
              double[:, :, ::1] cov, double[:, ::1] fout, long long[:, ::1] iout,
              double[:, ::1] theta_hill, signed char[::1] status, signed char[::1] reason,
              int n_threads, int chunk, double[:, ::1] timing=None):
    """Fit every row of ``resp`` (IN, (n_curves, n_doses)) and summarise each fit.

    ``dose`` / ``weight`` / ``fixed`` have 1 row (shared) or n_curves rows.
    ``label``: relabel as flat the curves whose F-test p-value exceeds
    ``flat_alpha``.  OUT: cov (n, 4, 4) of (rmin, rmax, log EC50, n);
    fout (N_FOUT, n), one row per name in FOUT_FIELDS; iout (N_IOUT, n), rows
    IOUT_FIELDS; theta_hill (n, 4) the Hill fit (rmin, rmax, EC50, n) even for
    curves labelled flat; status, reason (n,).  Curves are handed out to the
    threads in chunks of ``chunk`` (dynamic schedule; with several threads the
    last ``2 * chunk * n_threads`` curves in chunks of ``chunk // 8``, so the
    threads finish together).  Inputs are trusted
    (validated in fit.py).

    ``timing`` (optional, OUT, shape (n_threads + 1, 8), zeroed here) records
    where the call's time goes: row t for OpenMP thread t holds, by
    TIMING_FIELDS, the wall time at which it entered the parallel region and
    at which it finished its last chunk (seconds from the start of the call),
    its wall time inside chunks, its thread CPU time from entry to its last
    chunk, and the chunks and curves it fitted; ``timing[n_threads, 0]`` is the
    wall time at which the region (its closing barrier included) ended.  Two
    clock reads per chunk; the fits are the same with or without it.
    """
    cdef Py_ssize_t n_curves = resp.shape[0], nd = resp.shape[1]
    cdef Py_ssize_t c, k, j, rd, rw, rf, ch, c0, c1, n_chunks, n_head, head, small
    cdef bint dshared = dose.shape[0] == 1
    cdef bint wshared = weight.shape[0] == 1
    cdef bint fshared = fixed.shape[0] == 1
    cdef int p = 0
    cdef HillOptions opt
    cdef HillCurveResult* res
    cdef double* buf
    cdef double* dd
    cdef double* rr
    cdef double* ww
    cdef double* work
    cdef double* fo
    cdef long long* io
    cdef double* fst
    cdef long long* ist
    cdef signed char* sst
    cdef double* tim = NULL
    cdef double t0 = 0.0, tc, cpu0 = 0.0
    cdef int tid
    if chunk < 1:
        chunk = 1
    if timing is not None:
        if timing.shape[0] < n_threads + 1 or timing.shape[1] != _TROW:
            raise ValueError(f"timing must have shape ({n_threads + 1}, {_TROW}), "
                             f"got {(timing.shape[0], timing.shape[1])}")
        timing[:, :] = 0.0
        tim = &timing[0, 0]
        t0 = _now(CLOCK_MONOTONIC)
    if n_curves == 0:
        return 0
    # chunks of `chunk` curves, then the last ~2 chunks per thread in chunks of
    # chunk / 8, so that the thread that finishes first waits at most a small
    # chunk for the other (the tail of a dynamic schedule)
    small = chunk // 8 if chunk >= 8 else 1
    n_head = (n_curves - 2 * chunk * n_threads) // chunk if n_threads > 1 else 0
    if n_head < 0:
        n_head = 0
    head = n_head * chunk
    if n_threads > 1:
        n_chunks = n_head + (n_curves - head + small - 1) // small
    else:
        n_chunks = (n_curves + chunk - 1) // chunk
    opt.free_mask = free_mask
    for k in range(4):
        opt.lo[k] = lo[k]
        opt.hi[k] = hi[k]
        if free_mask & (1 << k):
            p += 1
    opt.canon = canon
    opt.se_mode = se_mode
    opt.max_iter = max_iter
    opt.ftol = ftol
    opt.xtol = xtol
    opt.gtol = gtol
    opt.retry = retry
    opt.fskip = &fskip[0] if fskip.shape[0] > nd else NULL
    with nogil, parallel(num_threads=n_threads):
        # one block per thread: curve copies, solver scratch, the result
        # struct, the per-curve summary and the staging rows of one chunk (no
        # allocation inside the loop)
        buf = <double*> malloc(sizeof(double) * (9 * nd + 8 + N_FOUT + N_IOUT)
                               + sizeof(HillCurveResult)
                               + chunk * (sizeof(double) * N_FOUT
                                          + sizeof(long long) * N_IOUT + 2))
        if buf != NULL:
            dd = buf
            rr = buf + nd
            ww = buf + 2 * nd
            work = buf + 3 * nd
            fo = buf + 9 * nd + 8
            io = <long long*> (fo + N_FOUT)
            res = <HillCurveResult*> (io + N_IOUT)
            fst = <double*> (res + 1)
            ist = <long long*> (fst + chunk * N_FOUT)
            sst = <signed char*> (ist + chunk * N_IOUT)
            tid = omp_get_thread_num()
            if tim != NULL:
                tim[tid * _TROW] = _now(CLOCK_MONOTONIC) - t0
                tim[tid * _TROW + 1] = tim[tid * _TROW]
                cpu0 = _now(CLOCK_THREAD_CPUTIME_ID)
            # dynamic: curves differ in cost (flat ones stop at once, hard ones
            # retry) and on a shared machine a thread may be descheduled; each
            # curve is fitted by the same code whatever thread takes it, so the
            # results do not depend on the schedule or the thread count.  The
            # summary rows of a chunk are staged per thread and written once
            # per chunk: written curve by curve, the rows of two chunks fitted
            # at once by two threads would share cache lines at every write.
            for ch in prange(n_chunks, schedule="dynamic", chunksize=1):
                if ch < n_head or n_threads == 1:
                    c0 = ch * chunk
                    c1 = c0 + chunk
                else:
                    c0 = head + (ch - n_head) * small
                    c1 = c0 + small
                if c1 > n_curves:
                    c1 = n_curves
                if tim != NULL:
                    tc = _now(CLOCK_MONOTONIC) - t0
                for c in range(c0, c1):
                    rd = 0 if dshared else c
                    rw = 0 if wshared else c
                    rf = 0 if fshared else c
                    for k in range(nd):
                        dd[k] = dose[rd, k]
                        rr[k] = resp[c, k]
                        ww[k] = weight[rw, k]
                    hill_fit_curve(dd, rr, ww, nd, &fixed[rf, 0], &opt, work, res)
                    _finish(res, p, label, flat_alpha, fo, io, &theta_hill[c, 0])
                    for k in range(16):
                        cov[c, k // 4, k % 4] = res.cov[k]
                    j = c - c0
                    for k in range(N_FOUT):
                        fst[k * chunk + j] = fo[k]
                    for k in range(N_IOUT):
                        ist[k * chunk + j] = io[k]
                    sst[j] = <signed char> res.status
                    sst[chunk + j] = <signed char> res.reason
                for k in range(N_FOUT):
                    memcpy(&fout[k, c0], fst + k * chunk, sizeof(double) * (c1 - c0))
                for k in range(N_IOUT):
                    memcpy(&iout[k, c0], ist + k * chunk, sizeof(long long) * (c1 - c0))
                memcpy(&status[c0], sst, c1 - c0)
                memcpy(&reason[c0], sst + chunk, c1 - c0)
                if tim != NULL:
                    tim[tid * _TROW + 1] = _now(CLOCK_MONOTONIC) - t0
                    tim[tid * _TROW + 2] = tim[tid * _TROW + 2] + (tim[tid * _TROW + 1] - tc)
                    tim[tid * _TROW + 3] = _now(CLOCK_THREAD_CPUTIME_ID) - cpu0
                    tim[tid * _TROW + 4] = tim[tid * _TROW + 4] + 1.0
                    tim[tid * _TROW + 5] = tim[tid * _TROW + 5] + <double> (c1 - c0)
        free(buf)
    if tim != NULL:
        tim[n_threads * _TROW] = _now(CLOCK_MONOTONIC) - t0
    return 0


def _fexp_py(const double[::1] x, double[::1] out):
    """Test hook: the kernel's inlined exp, elementwise."""
    cdef Py_ssize_t i
    for i in range(x.shape[0]):
        out[i] = _fexp(x[i])


def _evaluate_py(double[::1] theta, double[::1] x, double[::1] y, double[::1] w,
                 signed char[::1] zero_dose, int want):
    """Test hook: (rss, J'WJ, J'Wr, S) of the kernel's one-pass evaluation."""
    cdef double A[16]
    cdef double g[4]
    cdef double S[16]
    cdef Py_ssize_t k
    cdef double rss = _evaluate(&theta[0], x.shape[0], &x[0], &y[0], &w[0],
                                <const char*> &zero_dose[0], want, A, g, S)
    return (rss, [A[k] for k in range(16)] if want >= 1 else None,
            [g[k] for k in range(4)] if want >= 1 else None,
            [S[k] for k in range(16)] if want >= 2 else None)


def _vp_eval_py(double[::1] theta, double[::1] x, double[::1] y, double[::1] w,
                signed char[::1] zero_dose, int lin, int[::1] nidx):
    """Test hook: (rss, theta with the linear parameters solved, R, g) of the
    variable-projection evaluation for the parameters ``nidx``."""
    cdef double R[16]
    cdef double g[4]
    cdef double th[4]
    cdef int k = nidx.shape[0], j, l
    cdef Py_ssize_t n = x.shape[0]
    cdef double* s = <double*> malloc(sizeof(double) * (2 * n + 1))
    if s == NULL:
        raise MemoryError()
    for j in range(4):
        th[j] = theta[j]
    cdef double rss = _vp_eval(th, n, &x[0], &y[0], &w[0], <const char*> &zero_dose[0], lin,
                               &nidx[0], k, 1, s, s + n, R, g)
    free(s)
    return (rss, [th[j] for j in range(4)],
            [[R[j * 4 + l] for l in range(k)] for j in range(k)], [g[j] for j in range(k)])
