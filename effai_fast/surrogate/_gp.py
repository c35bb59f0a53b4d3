"""Gaussian-process (kriging) regression with anisotropic (ARD) kernels.

Model: ``y = m + s * f(x) + eps`` with ``m, s`` the training mean and standard
deviation of ``y`` (``normalize_y=True``), ``f ~ GP(0, sigma2 * R)`` and
``eps ~ N(0, s^2 * tau)``, where ``R`` is a squared-exponential or Matern
(nu = 3/2, 5/2) correlation of the ARD distance
``r^2 = sum_k ((x_k - x'_k) / l_k)^2``.

Hyperparameters ``theta = (log sigma2, log l_1 .. log l_d, log tau)`` maximise
the log marginal likelihood (analytic gradient, L-BFGS-B).  The gradient costs
one Cholesky, one ``K^{-1}`` and one ``n x n x d`` product per evaluation: for
length scale ``k``, ``0.5 tr(W dK/dlog l_k)`` with ``W = a a^T - K^{-1}`` is
``sum_i z_ik^2 (M 1)_i - sum_i z_ik (M Z)_ik`` where ``M = W o dR/d(r^2)``-like
weights (see ``_corr_and_grad_weight``), so no ``n x n x d`` tensor is formed.

Multi-start: L-BFGS-B from the default start and ``n_restarts`` seeded random
starts on a random subset of ``n_subset`` points (cheap, O(n_subset^3)), then
one refinement on all points from the best of them.  That refinement stops when
the likelihood is flat to its rounding noise (see ``_run_lbfgs``): about half the
evaluations L-BFGS-B's default tolerances spent at n = 1000 moved the log
likelihood by < 0.05 nats in all.  The Cholesky factor gets a
nugget ``tau`` (bounded below by ``noise_bounds[0]``) and, if it still fails, a
growing jitter, so duplicate training points do not break the fit.

Noise-free data (``interpolation_noise``): on a deterministic simulator the
maximum-likelihood nugget is not noise but the kernel's misfit at the scale of
rounding (~1e-8 of var(y) at n = 1000 on Borehole / Wing weight), and it costs
accuracy: it pulls the length scales away from the near-interpolating optimum
(relative RMSE 4.0e-4 vs 3.2e-4 on Borehole).  When the fitted nugget is below
``100 * interpolation_noise`` the hyperparameters are refined once more with the
nugget fixed at ``interpolation_noise`` (warm start: ~15 L-BFGS-B iterations),
and that model is kept.  The rule cannot hurt by more than the noise it ignores:
it fires only when the estimated noise standard deviation is below
``10 sqrt(interpolation_noise)`` ~ 3e-4 of std(y); noisy data or conflicting
duplicate points give a far larger nugget and keep the maximum-likelihood fit.

Prior mean (``mean``): constant (the training mean of y) or linear in x
(universal kriging: basis ``H = [1, x]``, coefficients by generalised least
squares at every theta, i.e. the likelihood profiled over them; the gradient
keeps its form by the envelope theorem, with ``y - H beta`` for y).  With
``reml=True`` (default) the linear-mean model's hyperparameters maximise the
restricted likelihood instead (the trend integrated out under a flat prior:
``-0.5 log det(H^T K^{-1} H)`` more; Patterson & Thompson 1971): the profiled
likelihood ignores the d + 1 degrees of freedom the trend uses and, at n = 50 on
Borehole / Wing weight, shrank the signal variance 5-100x below the REML value;
the REML fit had the larger closed-form LOO log density on all 10 of those
designs (a training-data criterion).
``mean="auto"`` fits both and keeps the larger closed-form leave-one-out log
predictive density (``loo_residuals``; R&W sec. 5.4.2 eq. 5.10-5.12, with
Dubrule's projection for the trend): nested mean models make the marginal
likelihoods incomparable.  Above
``n_subset`` points the choice is made on the subset fits, and only the chosen
model is refined on all points.  On Borehole / Wing weight (5 designs each)
it keeps the constant mean except at n = 50 on some designs, where the linear
trend halves the error on Wing weight.

Cost per likelihood evaluation (gradient included): one Cholesky and one
``K^{-1}`` (LAPACK potrf/potri in place on a Fortran-ordered array: no copies),
and O(n^2) passes that use only the lower triangle of ``K^{-1}`` (the rows and
columns sums and the products with Z of the symmetric matrix are taken from the
triangle, so ``W = a a^T - K^{-1}`` is never formed).

Prediction runs in the compiled kernels of ``_kernels.pyx``.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.optimize import minimize

from effai_fast._validation import check_int, check_real
from effai_fast.surrogate import _kernels
from effai_fast.surrogate._base import SurrogateMixin, blas_threads
from effai_fast.surrogate._predict import kernel_predict

__all__ = ["GaussianProcess"]

_KERNELS = ("se", "matern52", "matern32")
_MEANS = ("auto", "constant", "linear")
_dpotrf = linalg.lapack.dpotrf
_dpotrs = linalg.lapack.dpotrs
_dpotri = linalg.lapack.dpotri
_LOG2PI = np.log(2 * np.pi)


def _sqdist(Z: np.ndarray) -> np.ndarray:
    zz = np.einsum("ij,ij->i", Z, Z)
    sq = Z @ Z.T
    sq *= -2.0
    sq += zz[:, None]
    sq += zz[None, :]
    np.maximum(sq, 0.0, out=sq)
    np.fill_diagonal(sq, 0.0)
    return sq


def _se_corr(Z: np.ndarray) -> np.ndarray:
    """exp(-|z_i - z_j|^2 / 2) in place on the Gram matrix: one allocation, four passes."""
    h = 0.5 * np.einsum("ij,ij->i", Z, Z)
    R = Z @ Z.T
    R -= h[:, None]
    R -= h[None, :]
    np.minimum(R, 0.0, out=R)
    np.exp(R, out=R)
    R.flat[::R.shape[0] + 1] = 1.0
    return R


def _corr_and_grad_weight(kind: str, sq: np.ndarray, need_grad: bool):
    """R(r^2) and G with dR/dlog l_k = G * (z_k - z'_k)^2."""
    if kind == "se":
        R = np.exp(-0.5 * sq)
        return R, R
    c = 3.0 if kind == "matern32" else 5.0
    r = np.sqrt(c * sq)
    e = np.exp(-r)
    if kind == "matern32":
        R = (1.0 + r) * e
        G = 3.0 * e if need_grad else None
    else:
        R = (1.0 + r + (5.0 / 3.0) * sq) * e
        G = (5.0 / 3.0) * (1.0 + r) * e if need_grad else None
    return R, G


def _cholesky(K: np.ndarray, scale: float):
    """Lower Cholesky factor of K, adding jitter (relative to ``scale``) if needed."""
    jitter = 0.0
    for k in range(8):
        try:
            if jitter:
                Kj = K.copy()
                Kj[np.diag_indices_from(Kj)] += jitter
            else:
                Kj = K
            return linalg.cholesky(Kj, lower=True, check_finite=False), jitter
        except linalg.LinAlgError:
            jitter = scale * 1e-10 * 10.0**k
    raise linalg.LinAlgError("kernel matrix is not positive definite even with jitter")


def _factor(R, s2, tau):
    """Lower Cholesky factor of ``s2 R + tau I`` (Fortran order, upper triangle zero),
    adding jitter (relative to ``s2``) if needed; returns (factor, jitter)."""
    n = R.shape[0]
    jitter = 0.0
    for k in range(9):
        K = np.multiply(R, s2, order="F")
        K.flat[::n + 1] += tau + jitter
        c, info = _dpotrf(K, lower=1, clean=1, overwrite_a=1)
        if info == 0:
            return c, jitter
        jitter = s2 * 1e-10 * 10.0**k
    raise linalg.LinAlgError("kernel matrix is not positive definite even with jitter")


def _gls(c, y, H):
    """Generalised least squares of y on the columns of H under the covariance whose
    Cholesky factor is c: (beta, K^{-1} (y - H beta), K^{-1} H)."""
    alpha, _ = _dpotrs(c, y, lower=1)
    KiH, _ = _dpotrs(c, H, lower=1)
    beta = np.linalg.lstsq(H.T @ KiH, H.T @ alpha, rcond=None)[0]
    return beta, alpha - KiH @ beta, KiH


def _trend_basis(H):
    """Orthonormal basis of the column span of H (SVD; rank-deficient directions, e.g.
    a constant input column, dropped): the profiled and restricted likelihoods and the
    LOO residuals depend on H only through its span."""
    u, sv, _ = np.linalg.svd(H, full_matrices=False)
    return u[:, sv > sv[0] * max(H.shape) * np.finfo(np.float64).eps]


def _lml(theta, Z0, y, kind, need_grad, H=None, reml=False):
    """Log marginal likelihood (and gradient) at log-parameters theta.

    With a trend basis ``H`` (n, p) the likelihood is profiled over the trend
    coefficients: ``beta`` is their generalised-least-squares estimate at theta,
    and the residual ``y - H beta`` replaces y.  The gradient formula is unchanged
    (``beta`` maximises the likelihood at every theta, so its own derivative
    drops out: the envelope theorem).

    ``reml=True`` (with H): the restricted likelihood instead (Patterson & Thompson
    1971; the trend integrated out under a flat prior), which adds
    ``-0.5 log det(H^T K^{-1} H)`` and replaces ``(n / 2) log 2 pi`` by
    ``((n - p) / 2) log 2 pi``.  Its gradient is the profiled one with
    ``W = a a^T - K^{-1}`` replaced by ``a a^T + V V^T - K^{-1}``, ``V = K^{-1} H
    L_A^{-T}`` (``L_A`` the Cholesky factor of ``H^T K^{-1} H``): the terms in ``a``
    are taken over the p + 1 columns of ``B = [a, V]``."""
    n, d = Z0.shape
    s2 = np.exp(theta[0])
    ls = np.exp(theta[1:d + 1])
    tau = np.exp(theta[d + 1])
    Z = Z0 / ls
    if kind == "se":
        R = G = _se_corr(Z)
    else:
        R, G = _corr_and_grad_weight(kind, _sqdist(Z), need_grad)
    c, _ = _factor(R, s2, tau)
    n_eff = n
    extra = 0.0
    if H is None:
        alpha, _ = _dpotrs(c, y, lower=1)
        B = alpha[:, None]
    else:
        Hq = _trend_basis(H)
        alpha, _ = _dpotrs(c, y, lower=1)
        KiH, _ = _dpotrs(c, Hq, lower=1)
        A = Hq.T @ KiH
        A = 0.5 * (A + A.T)
        beta = np.linalg.lstsq(A, Hq.T @ alpha, rcond=None)[0]
        y = y - Hq @ beta
        alpha = alpha - KiH @ beta
        B = alpha[:, None]
        if reml:
            LA = linalg.cholesky(A, lower=True, check_finite=False)
            extra = -np.log(LA.diagonal()).sum()
            n_eff = n - Hq.shape[1]
            V = linalg.solve_triangular(LA, KiH.T, lower=True, check_finite=False).T
            B = np.hstack([B, V])
    lml = -0.5 * y @ alpha - np.log(c.diagonal()).sum() - 0.5 * n_eff * _LOG2PI + extra
    if not need_grad:
        return lml, None
    # P: lower triangle of K^{-1} (dpotri in place; the upper triangle stays zero), so the
    # full inverse is S = P + P^T - diag(P).  With W = B B^T - S (B = [a] or [a, V]) and
    # M = s2 W o G:
    #   row sums of M  = s2 (sum_b b o (G b) - rowsum(Q) - colsum(Q) + diag(Q)),  Q = P o G
    #   M Z            = s2 (sum_b b o (G (b o Z)) - (Q Z + Q^T Z - diag(Q) Z))
    P, info = _dpotri(c, lower=1, overwrite_c=1)
    if info != 0:  # pragma: no cover - c came from a successful Cholesky
        raise linalg.LinAlgError("dpotri failed")
    trP = P.trace()
    m = B.shape[1]
    grad = np.empty(d + 2)
    grad[d + 1] = 0.5 * tau * (np.einsum("ij,ij->", B, B) - trP)    # 0.5 tau tr(W)
    if kind != "se":                                             # 0.5 s2 sum(W o R)
        sPR = 2.0 * np.einsum("ij,ij->", P, R) - trP             # sum(S o R), diag(R) = 1
        grad[0] = 0.5 * s2 * (np.einsum("ij,ij->", B, R @ B) - sPR)
    P *= G
    dQ = P.diagonal().copy()
    rs = s2 * (np.einsum("ij,ij->i", B, G @ B) - (P.sum(axis=1) + P.sum(axis=0) - dQ))
    if kind == "se":            # G is R: sum(W o R) is already in rs
        grad[0] = 0.5 * rs.sum()
    if m == 1:
        BGZ = alpha[:, None] * (G @ (alpha[:, None] * Z))
    else:
        BZ = (B[:, :, None] * Z[:, None, :]).reshape(n, m * d)
        BGZ = np.einsum("ib,ibk->ik", B, (G @ BZ).reshape(n, m, d))
    MZ = s2 * (BGZ - (P @ Z + P.T @ Z - dQ[:, None] * Z))
    grad[1:d + 1] = (Z * Z * rs[:, None]).sum(axis=0) - (Z * MZ).sum(axis=0)
    return lml, grad


def loo_residuals(theta, Z0, y, kind, H=None):
    """Closed-form leave-one-out residuals ``y_i - E[y_i | y_{-i}]`` and predictive
    variances ``Var[y_i | y_{-i}]`` at theta.

    Rasmussen & Williams (2006) eq. 5.12: ``[K^{-1} y]_i / [K^{-1}]_ii`` and
    ``1 / [K^{-1}]_ii``.  With a
    trend basis H re-estimated by generalised least squares without point i,
    ``K^{-1}`` is replaced by ``Q = K^{-1} - K^{-1} H (H^T K^{-1} H)^{-1} H^T K^{-1}``
    (Dubrule 1983), so the left-out point does not inform the trend either.
    One Cholesky and one inverse: O(n^3)."""
    n, d = Z0.shape
    s2, ls, tau = np.exp(theta[0]), np.exp(theta[1:d + 1]), np.exp(theta[d + 1])
    Z = Z0 / ls
    R = _se_corr(Z) if kind == "se" else _corr_and_grad_weight(kind, _sqdist(Z), False)[0]
    c, _ = _factor(R, s2, tau)
    P, info = _dpotri(c, lower=1, overwrite_c=1)
    if info != 0:  # pragma: no cover - c came from a successful Cholesky
        raise linalg.LinAlgError("dpotri failed")
    S = P + P.T
    S.flat[::n + 1] -= P.diagonal()
    if H is not None:
        SH = S @ H
        S -= SH @ np.linalg.lstsq(H.T @ SH, SH.T, rcond=None)[0]
    dS = S.diagonal()
    return (S @ y) / dS, 1.0 / dS


class _Stalled(Exception):
    """Raised inside the L-BFGS-B objective to end a refinement that has stalled."""


class GaussianProcess(SurrogateMixin):
    """GP regression with an ARD kernel, fitted by maximum marginal likelihood.

    Parameters
    ----------
    kernel : {"se", "matern52", "matern32"}, default="se"
        Squared-exponential or Matern correlation over the ARD distance.
    length_scale : float, array_like of shape (d,) or None
        Length scales in the units of X: the start of the optimisation, or the
        fixed values when ``optimizer=None``.  None: half the range of each
        input in the training data.
    signal_variance : float, default=1.0
        ``sigma2`` (in units of the normalised target): start or fixed value.
    noise : float, default=1e-6
        Nugget ``tau``, the noise variance in units of the normalised target:
        start or fixed value.
    optimizer : {"lbfgs", None}, default="lbfgs"
        None keeps the hyperparameters fixed.
    n_restarts : int, default=3
        Random starts besides the default one.
    n_subset : int, default=256
        Starts are run on a random subset of this many points when n is larger;
        the best is refined on all points.
    max_iter : int, default=200
        L-BFGS-B iterations per start.
    length_scale_bounds : (float, float), default=(1e-2, 1e2)
        Bounds of the length scales relative to each input's training range.
    signal_variance_bounds : (float, float), default=(1e-4, 1e4)
    noise_bounds : (float, float), default=(1e-10, 1e-1)
    interpolation_noise : float or None, default=1e-9
        Noise-free data: when the maximum-likelihood noise is below
        ``100 * interpolation_noise`` (estimated noise standard deviation below
        ~3e-4 of std(y)), the hyperparameters are refined once more with the
        noise fixed at this value (a near-interpolating GP, as a deterministic
        simulator calls for), and that model is kept.  None: pure maximum
        likelihood.  Ignored with ``optimizer=None``.
    normalize_y : bool, default=True
        Standardise y before fitting (as scikit-learn's ``normalize_y``).
    mean : {"auto", "constant", "linear"}, default="auto"
        Prior mean of the GP.  "constant": the training mean of y (simple
        kriging on the standardised target).  "linear": ``b_0 + sum_k b_k x_k``
        (universal kriging), the coefficients estimated by generalised least
        squares at every hyperparameter value, i.e. the likelihood profiled over
        them; needs at least ``d + 2`` training points.  "auto": both are fitted
        and the one with the larger closed-form leave-one-out log predictive
        density is kept (Rasmussen & Williams 2006, sec. 5.4.2, eq. 5.10; the
        linear model's LOO re-estimates the trend without the left-out point) —
        the marginal likelihoods of nested mean models are not comparable.  Above
        ``n_subset`` points the choice is made on the subset fits, and only the
        chosen model is refined on all points.  Constant when n < d + 2 or
        ``optimizer=None``.  The predictive standard deviation treats the fitted
        trend coefficients as known (the plug-in variance: it omits the
        universal-kriging term for their uncertainty).
    reml : bool, default=True
        With the linear prior mean, fit the hyperparameters by restricted maximum
        likelihood (REML: the trend coefficients integrated out under a flat prior,
        adding ``-0.5 log det(H^T K^{-1} H)`` to the profiled likelihood; Patterson &
        Thompson 1971; Rasmussen & Williams 2006, sec. 2.7).
        The profiled likelihood (False) ignores the d + 1 degrees of freedom the
        trend uses, which biases the signal variance down when n is a few times d
        (5-100x below the REML value): at n = 50 on Borehole / Wing weight (5 LHS
        designs each) the REML fit had the larger closed-form LOO log density (a
        training-data criterion) on all 10 designs.  No effect with the constant
        mean.
    seed : int, default=0
        Seeds the subset and the random starts.
    n_threads : int or None
        OpenMP threads for prediction (see ``effai_fast._threads``).

    Attributes
    ----------
    length_scale_ : ndarray of shape (d,)
    signal_variance_, noise_ : float
    log_marginal_likelihood_value_ : float
        At the fitted hyperparameters (with the linear mean: profiled over the trend,
        whatever ``reml``).
    interpolating_ : bool
        Whether the ``interpolation_noise`` refinement was kept.
    mean_ : {"constant", "linear"}
        The prior mean used (the choice of ``mean="auto"``).
    loo_log_density_ : dict
        With ``mean="auto"``: the mean leave-one-out log predictive density
        (standardised target) of each candidate mean, on the points the choice
        was made on (the criterion).
    loo_rmse_ : dict
        Their leave-one-out RMSE (units of the standardised target), for
        information.
    trend_coef_ : ndarray of shape (d,)
        Slopes of the linear prior mean in units of y per unit of x (zeros with
        ``mean="constant"``).
    trend_intercept_ : float
        Its intercept (the training mean of y with ``mean="constant"``).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.surrogate import GaussianProcess
    >>> X = np.linspace(0, 1, 20)[:, None]
    >>> gp = GaussianProcess(seed=0).fit(X, np.sin(6 * X[:, 0]))
    >>> mean, std = gp.predict([[0.5]], return_std=True)
    >>> abs(mean[0] - np.sin(3.0)) < 1e-3
    True
    """

    _has_std = True

    def __init__(self, kernel: str = "se", length_scale=None, signal_variance: float = 1.0,
                 noise: float = 1e-6, optimizer: str | None = "lbfgs", n_restarts: int = 3,
                 n_subset: int = 256, max_iter: int = 200,
                 length_scale_bounds=(1e-2, 1e2), signal_variance_bounds=(1e-4, 1e4),
                 noise_bounds=(1e-10, 1e-1), interpolation_noise: float | None = 1e-9,
                 normalize_y: bool = True, mean: str = "auto", reml: bool = True, seed: int = 0,
                 n_threads: int | None = None):
        self.kernel = kernel
        self.length_scale = length_scale
        self.signal_variance = signal_variance
        self.noise = noise
        self.optimizer = optimizer
        self.n_restarts = n_restarts
        self.n_subset = n_subset
        self.max_iter = max_iter
        self.length_scale_bounds = length_scale_bounds
        self.signal_variance_bounds = signal_variance_bounds
        self.noise_bounds = noise_bounds
        self.interpolation_noise = interpolation_noise
        self.normalize_y = normalize_y
        self.mean = mean
        self.reml = reml
        self.seed = seed
        self.n_threads = n_threads

    # ------------------------------------------------------------------ fitting
    def _check_params(self, n, d):
        if self.kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {_KERNELS}, got {self.kernel!r}")
        if self.mean not in _MEANS:
            raise ValueError(f"mean must be one of {_MEANS}, got {self.mean!r}")
        if self.mean == "linear" and n < d + 2:
            raise ValueError(f"mean='linear' needs at least d + 2 = {d + 2} training "
                             f"points, got {n}")
        for name in ("normalize_y", "reml"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.optimizer not in ("lbfgs", None):
            raise ValueError(f"optimizer must be 'lbfgs' or None, got {self.optimizer!r}")
        check_int(self.n_restarts, "n_restarts", min_value=0)
        check_int(self.n_subset, "n_subset", min_value=2)
        check_int(self.max_iter, "max_iter", min_value=1)
        check_real(self.signal_variance, "signal_variance", min_value=0, min_inclusive=False)
        check_real(self.noise, "noise", min_value=0)
        if self.interpolation_noise is not None:
            check_real(self.interpolation_noise, "interpolation_noise", min_value=0,
                       min_inclusive=False)
        for name in ("length_scale_bounds", "signal_variance_bounds", "noise_bounds"):
            b = getattr(self, name)
            if len(b) != 2 or not (0 < b[0] < b[1]):
                raise ValueError(f"{name} must be (low, high) with 0 < low < high, got {b!r}")
        if self.length_scale is not None:
            try:
                ls = np.broadcast_to(np.asarray(self.length_scale, dtype=np.float64), (d,))
            except ValueError:
                raise ValueError(f"length_scale must be a scalar or have {d} entries, got "
                                 f"{self.length_scale!r}") from None
            if not (np.isfinite(ls).all() and (ls > 0).all()):
                raise ValueError(f"length_scale must be positive and finite, "
                                 f"got {self.length_scale!r}")

    def fit(self, X, y):
        """Fit the GP (hyperparameters by maximum marginal likelihood unless fixed).

        Parameters
        ----------
        X : array_like of shape (n, d)
        y : array_like of shape (n,)
            Finite targets (NaN raises ValueError; drop such rows first).

        Returns
        -------
        self
        """
        X, y = self._validate_fit(X, y)
        n, d = X.shape
        self._check_params(n, d)
        self.y_mean_ = float(y.mean()) if self.normalize_y else 0.0
        ystd = float(y.std()) if self.normalize_y else 1.0
        self.y_std_ = ystd if ystd > 0 else 1.0
        yn = (y - self.y_mean_) / self.y_std_
        lo, hi = X.min(axis=0), X.max(axis=0)
        rng_x = np.where(hi > lo, hi - lo, 1.0)
        self._x_range = rng_x
        U = (X - lo) / rng_x
        H_lin = np.hstack([np.ones((n, 1)), U])
        self.mean_ = "linear" if self.mean == "linear" else "constant"
        self.loo_rmse_ = {}
        self.loo_log_density_ = {}
        if self.length_scale is None:
            ls0 = np.full(d, 0.5)
        else:
            ls0 = np.broadcast_to(np.asarray(self.length_scale, np.float64), (d,)) / rng_x
        theta0 = np.concatenate([[np.log(self.signal_variance)], np.log(ls0),
                                 [np.log(max(self.noise, 1e-300))]])
        self.n_iter_ = 0
        self.interpolating_ = False
        if self.optimizer is not None:
            # Small dense factorisations lose to a BLAS team that must wake (and on a
            # busy machine spin) for each call: one BLAS thread below n = 2000.
            with blas_threads(1 if n <= 2000 else self._threads(None)):
                if self.mean == "auto" and n >= d + 2:
                    theta0 = self._select_mean(theta0, U, yn, H_lin)
                else:
                    H = H_lin if self.mean_ == "linear" else None
                    theta0 = self._optimize(theta0, U, yn, H)[0]
                    theta0 = self._interpolation_rule(theta0, U, yn, H)
        H = H_lin if self.mean_ == "linear" else None
        self._theta = theta0
        s2 = float(np.exp(theta0[0]))
        ls_raw = np.exp(theta0[1:d + 1]) * rng_x
        tau = float(np.exp(theta0[d + 1]))
        self.signal_variance_ = s2
        self.length_scale_ = ls_raw
        self.noise_ = tau
        # final factorisation on the raw inputs (centred) for prediction
        center = X.mean(axis=0)
        Z = (X - center) / ls_raw
        R, _ = _corr_and_grad_weight(self.kernel, _sqdist(Z), False)
        K = s2 * R
        K[np.diag_indices(n)] += tau
        L, jitter = _cholesky(K, s2)
        self.jitter_ = jitter
        alpha = linalg.cho_solve((L, True), yn, check_finite=False)
        coef = np.zeros(d)
        intercept = self.y_mean_
        if H is not None:
            KiH = linalg.cho_solve((L, True), H, check_finite=False)
            beta = np.linalg.lstsq(H.T @ KiH, H.T @ alpha, rcond=None)[0]
            alpha = alpha - KiH @ beta
            coef = self.y_std_ * beta[1:] / rng_x
            intercept = self.y_mean_ + self.y_std_ * beta[0] - float(lo @ coef)
        r = yn - (0.0 if H is None else H @ beta)
        self.trend_coef_ = coef
        self.trend_intercept_ = float(intercept)
        self.log_marginal_likelihood_value_ = float(
            -0.5 * r @ alpha - np.log(np.diag(L)).sum() - 0.5 * n * _LOG2PI)
        Linv = linalg.solve_triangular(L, np.eye(n), lower=True, check_finite=False)
        self._center = center
        self._inv_scale = 1.0 / ls_raw
        self._ZT = np.ascontiguousarray(Z.T)
        self._weights = s2 * self.y_std_ * alpha
        # trend in the kernels' coordinates z = (x - center) / l: offset + poly . z
        self._offset = float(intercept + center @ coef)
        self._poly = np.ascontiguousarray(coef * ls_raw) if H is not None else None
        self._A = np.ascontiguousarray(s2 * Linv)
        self._cache32 = None
        self.X_train_ = X
        self.y_train_ = y
        self.n_features_in_ = d
        return self

    def _bounds(self, d):
        lb, ub = np.log(self.length_scale_bounds)
        sb = np.log(self.signal_variance_bounds)
        nb = np.log(self.noise_bounds)
        return [tuple(sb)] + [(lb, ub)] * d + [tuple(nb)]

    def _interpolation_rule(self, theta, U, yn, H):
        cap = self.interpolation_noise
        if cap is not None and np.exp(theta[U.shape[1] + 1]) < 100.0 * cap:
            return self._refine_interpolating(theta, U, yn, float(cap), H)
        return theta

    def _select_mean(self, theta0, U, yn, H_lin):
        """mean="auto": fit the constant- and linear-mean models, keep the one with the
        larger closed-form LOO log predictive density (on the subset when n > n_subset,
        then refine the chosen one on all points); sets mean_, loo_log_density_,
        loo_rmse_, interpolating_."""
        n = U.shape[0]
        full = n <= self.n_subset
        cands = {}
        for name, H in (("constant", None), ("linear", H_lin)):
            self.interpolating_ = False
            if full:
                t, _ = self._optimize(theta0, U, yn, H)
                t = self._interpolation_rule(t, U, yn, H)
                Us, ys, Hs = U, yn, H
            elif H is None:
                t, idx = self._optimize(theta0, U, yn, None, full=False)
                Us, ys = U[idx], yn[idx]
                Hs = None
            else:
                # subset stage of the linear mean: one start, from the constant mean's
                # optimum (the trend moves the optimum little; the multi-start above has
                # explored the modes), which keeps the n = 1000 fit within its budget
                Us, ys, Hs = U[idx], yn[idx], H[idx]
                res = self._run_lbfgs(cands["constant"][2], Us, ys,
                                      self._bounds(U.shape[1]), self._maxls(n), Hs)
                t = cands["constant"][2] if res is None else res[0]
            with np.errstate(all="ignore"):
                r, v = loo_residuals(t, Us, ys, self.kernel, Hs)
                lpd = float(np.mean(-0.5 * np.log(2 * np.pi * v) - 0.5 * r * r / v))
            rmse = float(np.sqrt(np.mean(r * r)))
            cands[name] = (lpd if np.isfinite(lpd) else -np.inf, rmse, t,
                           self.interpolating_)
        self.loo_log_density_ = {k: v[0] for k, v in cands.items()}
        self.loo_rmse_ = {k: v[1] for k, v in cands.items()}
        self.mean_ = max(cands, key=lambda k: cands[k][0])   # ties: constant
        _, _, t, self.interpolating_ = cands[self.mean_]
        if n > self.n_subset:
            H = H_lin if self.mean_ == "linear" else None
            res = self._run_lbfgs(t, U, yn, self._bounds(U.shape[1]), self._maxls(n), H)
            if res is not None:
                t = res[0]
            t = self._interpolation_rule(t, U, yn, H)
        return t

    def _optimize(self, theta0, U, yn, H=None, full=True):
        """Multi-start L-BFGS-B (on the subset when n > n_subset), then, if ``full``,
        one refinement on all points; returns (theta, subset indices or None)."""
        n, d = U.shape
        bounds = self._bounds(d)
        lo = np.array([b[0] for b in bounds])
        hi = np.array([b[1] for b in bounds])
        theta0 = np.clip(theta0, lo, hi)
        rng = np.random.default_rng(self.seed)
        starts = [theta0]
        for _ in range(self.n_restarts):
            t = np.empty(d + 2)
            t[0] = rng.uniform(np.log(0.3), np.log(3.0))
            t[1:d + 1] = rng.uniform(np.log(0.1), np.log(2.0), size=d)
            t[d + 1] = rng.uniform(np.log(1e-8), np.log(1e-3))
            starts.append(np.clip(t, lo, hi))
        idx = None
        if n > self.n_subset:
            idx = np.sort(rng.choice(n, self.n_subset, replace=False))
            Us, ys = U[idx], yn[idx]
            Hs = None if H is None else H[idx]
        else:
            Us, ys, Hs = U, yn, H
        best = None
        maxls = self._maxls(n)
        for t in starts:
            res = self._run_lbfgs(t, Us, ys, bounds, maxls, Hs)
            if res is not None and (best is None or res[1] > best[1]):
                best = res
        if best is None:
            raise ValueError("GP hyperparameter optimisation failed from every start "
                             "(kernel matrix not positive definite); check X and y")
        if Us is not U and full:
            res = self._run_lbfgs(best[0], U, yn, bounds, maxls, H)
            if res is not None:
                best = res
        return best[0], idx

    def _maxls(self, n):
        """Line-search evaluations per L-BFGS-B iteration.  Above n_subset points the
        likelihood is flat to its rounding noise near the optimum and a line search that
        still fails after 4 evaluations will not succeed: L-BFGS-B's default (20) spent
        most of the n = 1000 refinement's O(n^3) evaluations there before ending
        "ABNORMAL", for the same optimum.  Smaller problems keep the default."""
        return 4 if n > self.n_subset else 20

    def _refine_interpolating(self, theta, U, yn, cap, H=None):
        """Refine (signal variance, length scales) with the noise fixed at ``cap``,
        warm-started from the maximum-likelihood ``theta``; returns the theta kept."""
        d = U.shape[1]
        if np.exp(theta[d + 1]) <= cap:
            return theta            # already below the cap: nothing to refine
        bounds = self._bounds(d)
        bounds[d + 1] = (np.log(cap), np.log(cap))   # fixed (L-BFGS-B drops it)
        t = theta.copy()
        t[d + 1] = np.log(cap)
        res = self._run_lbfgs(t, U, yn, bounds, self._maxls(U.shape[0]), H)
        if res is None:         # pragma: no cover - the jitter keeps K factorisable
            return theta
        self.interpolating_ = True
        return res[0]

    def _run_lbfgs(self, t0, U, y, bounds, maxls=20, H=None):
        kind = self.kernel
        scale = 1.0 / U.shape[0]
        reml = bool(self.reml) and H is not None
        # Refinement on all points (n > n_subset; each evaluation O(n^3)).  Near the
        # optimum the likelihood is flat to its rounding noise (~3e-3 nats at n = 1000,
        # lml ~ 5e3), and L-BFGS-B's default tolerances kept it iterating there: about
        # half of the n = 1000 fit's evaluations moved the lml by < 0.05 nats in all,
        # through line searches failing on that noise.  So on all points an iteration
        # gaining less than ``ftol`` = 2e-6 of |lml| (~0.01 nats) ends the run, and so do
        # ``stall`` = 6 evaluations within 1e-5 of |lml| of the best (~0.05 nats: a
        # likelihood ratio of 1.05, meaningless, and a few times the rounding noise) none
        # of which beats it by more (evaluations far below the best, a line search
        # overshooting, are not counted: the optimiser is still moving); the best point
        # evaluated is kept.  Caveat: where the run stops decides the interpolation rule
        # when the maximum-likelihood nugget sits near 100 * interpolation_noise: on
        # Borehole n = 1000 design 1003 with mean="constant" the refinement ended at a
        # nugget of 1.1e-7 (held-out relative RMSE 4.4e-4; the previous, longer run went
        # below 1e-7 and interpolated: 3.7e-4).  The default (linear mean there) was not
        # affected on the 10 benchmark designs at n = 1000.
        full = U.shape[0] > self.n_subset
        ftol = 2e-6
        stall = 6
        best = [None, np.inf, 0]          # theta, objective, evaluations without gain

        def fun(t):
            try:
                lml, g = _lml(t, U, y, kind, True, H, reml)
            except (linalg.LinAlgError, FloatingPointError):
                return 1e10, np.zeros_like(t)
            if not np.isfinite(lml):
                return 1e10, np.zeros_like(t)
            f = -lml * scale
            if full:
                gain = best[1] - f
                tol = 1e-5 * max(abs(f), 1.0)
                if gain > tol:
                    best[2] = 0
                elif gain > -tol:
                    best[2] += 1
                if gain > 0:
                    best[0], best[1] = t.copy(), f
                if best[2] >= stall:
                    raise _Stalled
            return f, -g * scale

        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            f0, _ = fun(t0)
            if f0 >= 1e10:
                return None
            opts = {"maxiter": self.max_iter, "maxls": maxls}
            if full:
                opts["ftol"] = ftol
            try:
                res = minimize(fun, t0, jac=True, method="L-BFGS-B", bounds=bounds,
                               options=opts)
                self.n_iter_ = getattr(self, "n_iter_", 0) + int(res.nit)
                x, f = res.x, res.fun
            except _Stalled:
                x, f = None, np.inf
        if full and best[1] < f:
            x, f = best[0], best[1]
        if f >= 1e10:
            return None
        return x, -f / scale

    # ------------------------------------------------------------- introspection
    def log_marginal_likelihood(self, theta=None, eval_gradient: bool = False):
        """Log marginal likelihood of the training data (normalised target).

        With the linear mean, the likelihood profiled over the trend coefficients
        (the value ``log_marginal_likelihood_value_`` holds), also when ``reml=True``
        made the fit maximise the restricted likelihood instead.

        Parameters
        ----------
        theta : array_like of shape (d + 2,), optional
            ``(log signal_variance, log length_scale_1..d (units of X), log noise)``;
            default: the fitted values.
        eval_gradient : bool
            Also return the gradient with respect to theta.
        """
        self._check_fitted()
        d = self.n_features_in_
        if theta is None:
            theta = np.concatenate([[np.log(self.signal_variance_)],
                                    np.log(self.length_scale_), [np.log(self.noise_)]])
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (d + 2,):
            raise ValueError(f"theta must have shape ({d + 2},), got {theta.shape}")
        yn = (self.y_train_ - self.y_mean_) / self.y_std_
        Z0 = self.X_train_ - self._center
        H = np.hstack([np.ones((len(yn), 1)), Z0]) if self.mean_ == "linear" else None
        lml, g = _lml(theta, Z0, yn, self.kernel, eval_gradient, H)
        return (lml, g) if eval_gradient else lml

    # --------------------------------------------------------------- prediction
    def predict(self, X, return_std: bool = False, *, n_threads: int | None = None):
        """Posterior mean (and standard deviation of the latent function).

        Parameters
        ----------
        X : array_like of shape (m, d)
            Predicted in float64 whatever its dtype (see the comment in the code).
        return_std : bool
        n_threads : int or None
            Overrides the estimator's ``n_threads``.

        Returns
        -------
        mean : ndarray of shape (m,)
        std : ndarray of shape (m,), if ``return_std``
        """
        X = self._validate_predict(X)
        nt = self._threads(n_threads)
        # Always float64: the GP weights K^{-1} y of a nearly-interpolating model are
        # large and of alternating sign, so a float32 sum cancels to garbage.
        X = np.ascontiguousarray(X, dtype=np.float64)
        p = self._params(X.dtype)
        if not return_std:
            mean, _ = kernel_predict(X, p["center"], p["inv_scale"], p["ZT"], p["weights"],
                                     p.get("poly"), self._offset,
                                     _kernels.KINDS[self.kernel], nt)
            return mean
        # the variance calls BLAS trmm from inside the OpenMP team: one BLAS thread each
        with blas_threads(1):
            mean, var = kernel_predict(X, p["center"], p["inv_scale"], p["ZT"], p["weights"],
                                       None, self._offset, _kernels.KINDS[self.kernel], nt,
                                       A=p["A"], prior_var=self.signal_variance_)
        if self._poly is not None:      # the variance kernel has no trend term
            mean += (X - self._center) @ self.trend_coef_
        return mean, self.y_std_ * np.sqrt(var)

    def _params(self, dtype):
        if dtype == np.float64:
            p = {"center": self._center, "inv_scale": self._inv_scale, "ZT": self._ZT,
                 "weights": self._weights, "A": self._A}
            if self._poly is not None:
                p["poly"] = self._poly
            return p
        cache = self._cache32
        if cache is None:
            cache = {k: v.astype(np.float32) for k, v in self._params(np.float64).items()}
            self._cache32 = cache
        return cache
