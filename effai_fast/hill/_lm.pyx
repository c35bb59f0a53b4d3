# cython: language_level=3
"""Batched Levenberg-Marquardt for the 4-parameter Hill (log-logistic) model.

Design
------
* One curve is a tiny problem (4 parameters, ~10 points), so there is nothing
  to vectorise inside a curve; the parallelism is across curves: one OpenMP
  ``prange`` over curves, each thread owning a small scratch buffer allocated
  once inside ``parallel()``.  Every curve is fitted by the same sequential
  code whatever thread runs it, so results do not depend on the thread count.
  Curves differ in cost (flat ones stop at once, hard ones retry), so the
  static schedule uses small chunks (deterministic, round-robin, balanced).
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
* Solver: Levenberg-Marquardt with Marquardt's diagonal scaling and
  Nielsen's damping update; one pass over the points per iteration computes
  the RSS, J'WJ and J'Wr together with one exp per point.  Box bounds by an
  active set (parameters at a bound whose gradient points outwards are held
  for the step) plus projection.  Stopping: relative actual and predicted
  reduction below ftol, a scaled gradient below gtol (the cosine test of
  MINPACK), a relative step below xtol, or an exact fit.  Damping that grows
  without an accepted step, or the iteration limit, is a stall; a stalled or
  suspicious fit (step-like slope, plateaus far outside the data) is retried
  from a second, independent start and the lower RSS kept.
* Standard errors: sigma^2 (J'WJ)^-1 (Gauss-Newton, as scipy's curve_fit) or
  sigma^2 (H/2)^-1 with H the exact Hessian of the weighted RSS (as R's drc),
  sigma^2 = RSS / (n - p), over the free parameters only.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport INFINITY, NAN, exp, fabs, isfinite, isnan, log, sqrt
from libc.stdlib cimport free, malloc

from effai_fast.hill._lm cimport (
    HILL_CONSTANT, HILL_CONVERGED, HILL_FAILED, HILL_FLAT, HILL_NO_CONVERGENCE,
    HILL_NONFINITE, HILL_NPAR, HILL_AT_INFINITY, HILL_OK, HILL_SINGULAR, HILL_TOO_FEW,
    HillCurveResult, HillOptions,
)

ctypedef fused floating:
    float
    double


cdef inline void _logistic(double u, double* s, double* q) noexcept nogil:
    """s = sigma(u), q = sigma(u) (1 - sigma(u)) without overflow or cancellation."""
    cdef double e = exp(-fabs(u))
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
    cdef double sm
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


cdef int _lm(double* th, Py_ssize_t n, const double* x, const double* y, const double* w,
             const char* zd, const int* idx, int p, const double* lo, const double* hi,
             const HillOptions* opt, int evap, double* rss_out, int* iters) noexcept nogil:
    """Levenberg-Marquardt from th (normalised units); th is updated in place.
    Returns 0 (converged), 1 (stalled), 2 (non-finite start), 3 (slow walk
    along a valley), 4 (with evap: parameters drifting to the model's edge)."""
    cdef double A[16]
    cdef double g[4]
    cdef double A2[16]
    cdef double g2[4]
    cdef double M[16]
    cdef double z[4]
    cdef double tn[4]
    cdef double d[4]
    cdef double dummy[16]
    cdef int act[4]
    cdef int fidx[4]
    cdef double rss, rss_new, lam, nu, dmax, pred, actred, rho, t, gn, dn, tnorm, dd
    cdef int it, i, j, k, kk, code, blocked, small_f = 0
    cdef double rss_ref
    rss = _evaluate(th, n, x, y, w, zd, 1, A, g, dummy)
    if not isfinite(rss):
        rss_out[0] = rss
        return 2
    dmax = 0.0
    for i in range(p):
        if A[idx[i] * 5] > dmax:
            dmax = A[idx[i] * 5]
    lam = 1e-3
    nu = 2.0
    it = 0
    code = 1
    rss_ref = rss
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
        # scaled projected-gradient test (cosine between r and the columns of J)
        gn = 0.0
        kk = 0
        for i in range(p):
            j = idx[i]
            blocked = (th[j] <= lo[j] and g[j] > 0) or (th[j] >= hi[j] and g[j] < 0)
            act[i] = blocked
            if not blocked:
                fidx[kk] = j
                kk += 1
                if A[j * 5] > 0:
                    t = fabs(g[j]) / sqrt(A[j * 5] * rss)
                    if t > gn:
                        gn = t
        if gn <= opt.gtol:
            code = 0
            break
        if kk == 0:
            code = 0
            break
        # damped normal equations on the unblocked free parameters
        for i in range(kk):
            for j in range(kk):
                M[i * kk + j] = A[fidx[i] * 4 + fidx[j]]
            dd = A[fidx[i] * 5]
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
            d[i] = 0.0
        for i in range(kk):
            j = fidx[i]
            t = th[j] + z[i]
            if t < lo[j]:
                t = lo[j]
            if t > hi[j]:
                t = hi[j]
            tn[j] = t
            d[j] = t - th[j]
        # predicted reduction of the quadratic model for the (projected) step
        pred = 0.0
        for i in range(4):
            pred -= 2.0 * g[i] * d[i]
            for j in range(4):
                pred -= d[i] * A[i * 4 + j] * d[j]
        rss_new = _evaluate(tn, n, x, y, w, zd, 1, A2, g2, dummy)
        actred = rss - rss_new
        if isfinite(rss_new) and actred > 0 and pred > 0:
            rho = actred / pred
            dn = 0.0
            tnorm = 0.0
            for i in range(4):
                if fabs(d[i]) > dn:
                    dn = fabs(d[i])
                if fabs(th[i]) > tnorm:
                    tnorm = fabs(th[i])
            for i in range(4):
                th[i] = tn[i]
            for i in range(16):
                A[i] = A2[i]
            for i in range(4):
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
            for i in range(p):
                if A[idx[i] * 5] > dmax:
                    dmax = A[idx[i] * 5]
            # relative reduction test, required twice in a row
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
                # damping blew up: converged if the gradient is small enough
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
        u = 0.0 if zd[i] else exp(kappa * x[i])
        sw += w[i]
        su += w[i] * u
        sy += w[i] * y[i]
    ub = su / sw
    yb = sy / sw
    for i in range(n):
        u = 0.0 if zd[i] else exp(kappa * x[i])
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
        for i in range(25):
            lk = log(0.02) + i * (log(60.0) - log(0.02)) / 24.0
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
    a = lk - (log(60.0) - log(0.02)) / 24.0
    b = lk + (log(60.0) - log(0.02)) / 24.0
    c = b - gr * (b - a)
    d = a + gr * (b - a)
    fc = _powerlaw_rss(sgn * exp(c), n, x, y, w, zd, &al, &be)
    fd = _powerlaw_rss(sgn * exp(d), n, x, y, w, zd, &al, &be)
    for it in range(40):
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
    """Best fit at the 'infinitely steep' edge: a step between two dose levels."""
    cdef Py_ssize_t i, j
    cdef double cut, nxt, s0, w0, s1, w1, r, best = INFINITY, pi, pj, mean0, mean1
    for i in range(n):
        cut = -1e300 if zd[i] else x[i]
        nxt = INFINITY
        s0 = 0.0; w0 = 0.0; s1 = 0.0; w1 = 0.0
        for j in range(n):
            pj = -1e300 if zd[j] else x[j]
            if pj <= cut:
                s0 += w[j] * y[j]
                w0 += w[j]
            else:
                s1 += w[j] * y[j]
                w1 += w[j]
                if pj < nxt:
                    nxt = pj
        if w1 == 0.0 or w0 == 0.0:
            continue
        mean0 = s0 / w0
        mean1 = s1 / w1
        r = 0.0
        for j in range(n):
            pj = -1e300 if zd[j] else x[j]
            if pj <= cut:
                r += w[j] * (y[j] - mean0) * (y[j] - mean0)
            else:
                r += w[j] * (y[j] - mean1) * (y[j] - mean1)
        if r < best:
            best = r
            th[0] = mean0
            th[1] = mean1
            if zd[i]:
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


cdef void _second_start(Py_ssize_t n, const double* x, const double* y, const double* w,
                        const char* zd, const double* th, double* th2) noexcept nogil:
    """Plateaus from the lowest / highest dose groups, EC50 at the response
    closest to their midpoint, a slope steeper (or shallower) than the first fit."""
    cdef double ylo_sum = 0.0, ylo_w = 0.0, yhi_sum = 0.0, yhi_w = 0.0, u, t, mid
    cdef double lo_pos = INFINITY, hi_pos = -INFINITY, best = INFINITY
    cdef Py_ssize_t i
    for i in range(n):
        u = -1.5 if zd[i] else x[i]
        if u < lo_pos:
            lo_pos = u
        if u > hi_pos:
            hi_pos = u
    for i in range(n):
        u = -1.5 if zd[i] else x[i]
        if u == lo_pos:
            ylo_sum += w[i] * y[i]
            ylo_w += w[i]
        if u == hi_pos:
            yhi_sum += w[i] * y[i]
            yhi_w += w[i]
    th2[0] = ylo_sum / ylo_w
    th2[1] = yhi_sum / yhi_w
    mid = 0.5 * (th2[0] + th2[1])
    th2[2] = 0.0
    for i in range(n):
        if zd[i]:
            continue
        t = fabs(y[i] - mid)
        if t < best:
            best = t
            th2[2] = x[i]
    th2[3] = 6.0 if fabs(th[3]) < 6.0 else 1.5


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
    for k in range(3):
        if k == 0:
            if _limit_powerlaw(n, x, y, w, zd, has_zero, xlo, xhi, th2) != 0.0:
                continue
        elif k == 1:
            if has_zero or _limit_linear(n, x, y, w, th2) != 0.0:
                continue
        else:
            _limit_step(n, x, y, w, zd, th2, &r)
            if not isfinite(r):
                continue
        r = _evaluate(th2, n, x, y, w, zd, 0, dummy, g, dummy)
        if isfinite(r) and (not isfinite(rss[0]) or r < rss[0]):
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
    cdef char* zd = <char*> (work + 3 * n_doses)
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
    cdef double sw = 0.0, swy = 0.0, swx = 0.0, swxx = 0.0, swxy = 0.0, swyy = 0.0
    cdef double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY
    cdef double xc, xs, yc, ys, d, r, t, u, sgn, s0, s1, a0, b0, lo_pos, hi_pos
    cdef double rss1, rss2, sigma2, cov_s, swz, swzx, sw2, swx2, swxx2, det
    cdef double ylo_sum, ylo_w, yhi_sum, yhi_w, best, pos, mid
    cdef int has_zero = 0, at_inf = 0, unbounded = 1, limits_ok
    cdef HillOptions opt_short
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
    # 3. self-starting guess: logit regression of the rescaled responses on log-dose
    pos = 0.0
    swx = 0.0
    sw2 = 0.0
    cov_s = 0.0
    for i in range(n):
        u = -1.5 if zd[i] else x[i]
        swx += w[i] * u
        sw2 += w[i]
    swx /= sw2
    for i in range(n):
        u = (-1.5 if zd[i] else x[i]) - swx
        cov_s += w[i] * u * y[i]
    sgn = 1.0 if cov_s >= 0 else -1.0
    a0 = -1.0 - 0.05
    b0 = 1.0 + 0.05
    # a = rmin < b = rmax and the slope's sign follows the trend; a fixed
    # plateau keeps its value and the free one goes to the far end of the data
    th[0] = a0
    th[1] = b0
    if not (opt.free_mask & 1):
        th[0] = fx[0]
        if opt.free_mask & 2:
            th[1] = b0 if fabs(fx[0] - a0) <= fabs(fx[0] - b0) else a0
    if not (opt.free_mask & 2):
        th[1] = fx[1]
        if opt.free_mask & 1:
            th[0] = a0 if fabs(fx[1] - b0) <= fabs(fx[1] - a0) else b0
    # regression of z = logit((y - a) / (b - a)) on x over positive doses
    sw2 = 0.0; swx2 = 0.0; swxx2 = 0.0; swz = 0.0; swzx = 0.0
    for i in range(n):
        if zd[i]:
            continue
        t = (y[i] - th[0]) / (th[1] - th[0])
        if t < 0.02:
            t = 0.02
        if t > 0.98:
            t = 0.98
        t = log(t / (1.0 - t))
        sw2 += w[i]
        swx2 += w[i] * x[i]
        swxx2 += w[i] * x[i] * x[i]
        swz += w[i] * t
        swzx += w[i] * t * x[i]
    det = sw2 * swxx2 - swx2 * swx2
    th[3] = NAN
    if det > 1e-12 * sw2 * sw2:
        th[3] = (sw2 * swzx - swx2 * swz) / det
        th[2] = (swz - th[3] * swx2) / sw2  # intercept
        if fabs(th[3]) > 0.1 and isfinite(th[3]):
            th[2] = -th[2] / th[3]
        else:
            th[3] = NAN
    if not isfinite(th[3]):
        th[3] = 2.0 * sgn * (1.0 if th[1] >= th[0] else -1.0)
        th[2] = 0.0
    if th[2] < -3.0:
        th[2] = -3.0
    if th[2] > 3.0:
        th[2] = 3.0
    if th[3] > 20.0:
        th[3] = 20.0
    if th[3] < -20.0:
        th[3] = -20.0
    _apply_box(th, fx, lo, hi, opt.free_mask)
    # 4. Levenberg-Marquardt from the self-start; a doubtful result (no
    # convergence, or parameters drifting to the model's edge) is retried
    # from a second start, then compared with the edge limits of the model,
    # then with four more starts across the dose range; a best fit still
    # drifting is finally walked out with the full iteration budget.
    code1 = _lm(th, n, x, y, w, zd, idx, p, lo, hi, opt, 1, &rss1, &res.n_iter)
    limits_ok = opt.free_mask == 15 and unbounded
    if opt.retry and _doubtful(code1, th):
        _second_start(n, x, y, w, zd, th, th2)
        _apply_box(th2, fx, lo, hi, opt.free_mask)
        code2 = _lm(th2, n, x, y, w, zd, idx, p, lo, hi, opt, 1, &rss2, &res.n_iter)
        _keep_better(th, &rss1, &code1, th2, rss2, code2)
    if (opt.retry and _doubtful(code1, th) and opt.fskip != NULL and p > 1 and n > p
            and (res.tss / (ys * ys) - rss1) / (p - 1) < opt.fskip[n] * rss1 / (n - p)):
        # no dose effect worth the name: the F test will label this curve flat
        pass
    elif opt.retry and _doubtful(code1, th):
        # extra starts get a third of the budget (a local copy: opt is shared)
        opt_short = opt[0]
        opt_short.max_iter = opt.max_iter // 3 if opt.max_iter >= 3 else 1
        for j in range(4):
            th2[0] = -1.05
            th2[1] = 1.05
            th2[2] = -0.9 + 0.6 * j
            th2[3] = 3.0 * sgn
            _apply_box(th2, fx, lo, hi, opt.free_mask)
            code2 = _lm(th2, n, x, y, w, zd, idx, p, lo, hi, &opt_short, 1, &rss2,
                        &res.n_iter)
            _keep_better(th, &rss1, &code1, th2, rss2, code2)
        if limits_ok and _doubtful(code1, th):
            at_inf = _try_limits(n, x, y, w, zd, has_zero, xlo_n, xhi_n, th, &rss1)
        if not at_inf and code1 == 4:
            code1 = _lm(th, n, x, y, w, zd, idx, p, lo, hi, opt, 0, &rss1, &res.n_iter)
            if limits_ok and _doubtful(code1, th):
                at_inf = _try_limits(n, x, y, w, zd, has_zero, xlo_n, xhi_n, th, &rss1)
    if not isfinite(rss1):
        res.reason = HILL_NONFINITE
        return
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

def fit_batch(const floating[:, ::1] dose, const floating[:, ::1] resp,
              const floating[:, ::1] weight, const double[:, ::1] fixed,
              int free_mask, const double[::1] lo, const double[::1] hi, bint canon,
              int se_mode, int max_iter, double ftol, double xtol, double gtol, bint retry,
              double[:, ::1] theta, double[:, :, ::1] cov, double[:, ::1] stats,
              int[:, ::1] istats, const double[::1] fskip, int n_threads):
    """Fit every row of ``resp`` (IN, (n_curves, n_doses)).

    ``dose`` / ``weight`` / ``fixed`` have 1 row (shared) or n_curves rows.
    OUT: theta (n, 4) as (a, b, log EC50, h); cov (n, 4, 4); stats (n, 4) =
    rss, tss, sum log w, weighted mean; istats (n, 4) = n_obs, n_iter, status,
    reason.  Inputs are trusted (validated in fit.py).
    """
    cdef Py_ssize_t n_curves = resp.shape[0], nd = resp.shape[1]
    cdef Py_ssize_t c, k, rd, rw, rf
    cdef bint dshared = dose.shape[0] == 1
    cdef bint wshared = weight.shape[0] == 1
    cdef bint fshared = fixed.shape[0] == 1
    cdef HillOptions opt
    cdef HillCurveResult* res
    cdef double* buf
    cdef double* dd
    cdef double* rr
    cdef double* ww
    cdef double* work
    opt.free_mask = free_mask
    for k in range(4):
        opt.lo[k] = lo[k]
        opt.hi[k] = hi[k]
    opt.canon = canon
    opt.se_mode = se_mode
    opt.max_iter = max_iter
    opt.ftol = ftol
    opt.xtol = xtol
    opt.gtol = gtol
    opt.retry = retry
    opt.fskip = &fskip[0] if fskip.shape[0] > nd else NULL
    with nogil, parallel(num_threads=n_threads):
        buf = <double*> malloc(sizeof(double) * (8 * nd + 8))
        res = <HillCurveResult*> malloc(sizeof(HillCurveResult))
        if buf != NULL and res != NULL:
            dd = buf
            rr = buf + nd
            ww = buf + 2 * nd
            work = buf + 3 * nd
            for c in prange(n_curves, schedule="static", chunksize=16):
                rd = 0 if dshared else c
                rw = 0 if wshared else c
                rf = 0 if fshared else c
                for k in range(nd):
                    dd[k] = dose[rd, k]
                    rr[k] = resp[c, k]
                    ww[k] = weight[rw, k]
                hill_fit_curve(dd, rr, ww, nd, &fixed[rf, 0], &opt, work, res)
                for k in range(4):
                    theta[c, k] = res.theta[k]
                for k in range(16):
                    cov[c, k // 4, k % 4] = res.cov[k]
                stats[c, 0] = res.rss
                stats[c, 1] = res.tss
                stats[c, 2] = res.sum_logw
                stats[c, 3] = res.ymean
                istats[c, 0] = res.n_obs
                istats[c, 1] = res.n_iter
                istats[c, 2] = res.status
                istats[c, 3] = res.reason
        free(buf)
        free(res)
    return 0


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
