# Public C-level interface of the batched Hill Levenberg-Marquardt kernel.
#
# Parameters are always ordered (a, b, m, h): a = rmin, b = rmax,
# m = log(EC50) (natural log), h = signed Hill slope n, for the model
#     R(D) = a + (b - a) * sigma(h * (log D - m)),   sigma(u) = 1 / (1 + exp(-u)),
# which is R = a + (b - a) D^h / (K^h + D^h) with K = exp(m); D = 0 is exact.

cdef enum:
    HILL_NPAR = 4

# status codes written by the kernel (the Python layer adds FLAT from the F test)
cdef enum:
    HILL_CONVERGED = 0
    HILL_FLAT = 1
    HILL_FAILED = 2

# reason codes (why a status was given)
cdef enum:
    HILL_OK = 0
    HILL_CONSTANT = 1
    HILL_TOO_FEW = 2
    HILL_NO_CONVERGENCE = 3
    HILL_NONFINITE = 4
    HILL_SINGULAR = 5
    HILL_NO_EFFECT = 6     # F test against the flat model (set by the batch driver)
    HILL_AT_INFINITY = 7   # optimum at the model's edge; theta approximates the limit

cdef struct HillOptions:
    int free_mask          # bit k set: parameter k is estimated
    double lo[4]           # box bounds in (a, b, m, h) units (may be +-inf)
    double hi[4]
    int canon              # swap so that a <= b when both are free with equal bounds
    int se_mode            # 0: Gauss-Newton (J'WJ), 1: full Hessian of the RSS
    int max_iter
    double ftol
    double xtol
    double gtol
    int retry              # try a second start when the first one stalls
    const double* fskip    # per n_obs: F below which a doubtful fit is left as is
                           # (it will be labelled flat); NULL: never skip

cdef struct HillCurveResult:
    double theta[4]        # fitted (a, b, m, h) in data units
    double cov[16]         # covariance of theta (row-major), NaN where undefined
    double rss             # weighted residual sum of squares
    double tss             # weighted total sum of squares about the weighted mean
    double sum_logw        # sum of log(weights) over used points
    double ymean           # weighted mean response
    int n_obs              # points used
    int n_iter             # LM iterations over both starts
    int status
    int reason

# Fit one curve from n_doses points (NaN dose/response or zero weight = missing).
# `fixed` holds the values of parameters not in opt.free_mask (same units).
# `work` must hold 6 * n_doses + 1 doubles.  Never touches Python; thread-safe.
cdef void hill_fit_curve(const double* dose, const double* resp, const double* weight,
                         Py_ssize_t n_doses, const double* fixed,
                         const HillOptions* opt, double* work,
                         HillCurveResult* res) noexcept nogil
