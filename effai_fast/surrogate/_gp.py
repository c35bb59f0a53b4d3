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
one refinement on all points from the best of them.  The Cholesky factor gets a
nugget ``tau`` (bounded below by ``noise_bounds[0]``) and, if it still fails, a
growing jitter, so duplicate training points do not break the fit.

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
_dger = linalg.blas.dger
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


def _lml(theta, Z0, y, kind, need_grad):
    """Log marginal likelihood (and gradient) at log-parameters theta."""
    n, d = Z0.shape
    s2 = np.exp(theta[0])
    ls = np.exp(theta[1:d + 1])
    tau = np.exp(theta[d + 1])
    Z = Z0 / ls
    sq = _sqdist(Z)
    R, G = _corr_and_grad_weight(kind, sq, need_grad)
    K = s2 * R
    K[np.diag_indices(n)] += tau
    L, _ = _cholesky(K, s2)
    alpha = linalg.cho_solve((L, True), y, check_finite=False)
    lml = -0.5 * y @ alpha - np.log(np.diag(L)).sum() - 0.5 * n * _LOG2PI
    if not need_grad:
        return lml, None
    Kinv, info = linalg.lapack.dpotri(L, lower=1, overwrite_c=1)
    if info != 0:  # pragma: no cover - L came from a successful Cholesky
        raise linalg.LinAlgError("dpotri failed")
    # W = a a^T - K^{-1} with as few n x n passes and temporaries as possible (they, not
    # the factorisations, were most of an evaluation at n = 1000): dpotri fills the lower
    # triangle; mirror it, negate, add the outer product in place (BLAS dger on the
    # Fortran view of the C array: the outer product is symmetric).
    W = np.tril(Kinv)
    del Kinv
    W += np.tril(W, -1).T
    W *= -1.0
    Wf = _dger(1.0, alpha, alpha, a=W.T, overwrite_a=1)
    if not np.shares_memory(Wf, W):  # pragma: no cover - dger copied
        W = np.ascontiguousarray(Wf.T)
    grad = np.empty(d + 2)
    grad[d + 1] = 0.5 * tau * np.trace(W)
    if kind != "se":
        grad[0] = 0.5 * s2 * np.einsum("ij,ij->", W, R)
    M = W
    M *= G
    M *= s2
    rs = M.sum(axis=1)
    if kind == "se":            # G is R: sum(W o R) is already in rs
        grad[0] = 0.5 * rs.sum()
    MZ = M @ Z
    grad[1:d + 1] = (Z * Z * rs[:, None]).sum(axis=0) - (Z * MZ).sum(axis=0)
    return lml, grad


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
    normalize_y : bool, default=True
        Standardise y before fitting (as scikit-learn's ``normalize_y``).
    seed : int, default=0
        Seeds the subset and the random starts.
    n_threads : int or None
        OpenMP threads for prediction (see ``effai_fast._threads``).

    Attributes
    ----------
    length_scale_ : ndarray of shape (d,)
    signal_variance_, noise_ : float
    log_marginal_likelihood_value_ : float
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
                 noise_bounds=(1e-10, 1e-1), normalize_y: bool = True, seed: int = 0,
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
        self.normalize_y = normalize_y
        self.seed = seed
        self.n_threads = n_threads

    # ------------------------------------------------------------------ fitting
    def _check_params(self, d):
        if self.kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {_KERNELS}, got {self.kernel!r}")
        if self.optimizer not in ("lbfgs", None):
            raise ValueError(f"optimizer must be 'lbfgs' or None, got {self.optimizer!r}")
        check_int(self.n_restarts, "n_restarts", min_value=0)
        check_int(self.n_subset, "n_subset", min_value=2)
        check_int(self.max_iter, "max_iter", min_value=1)
        check_real(self.signal_variance, "signal_variance", min_value=0, min_inclusive=False)
        check_real(self.noise, "noise", min_value=0)
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
        self._check_params(d)
        self.y_mean_ = float(y.mean()) if self.normalize_y else 0.0
        ystd = float(y.std()) if self.normalize_y else 1.0
        self.y_std_ = ystd if ystd > 0 else 1.0
        yn = (y - self.y_mean_) / self.y_std_
        lo, hi = X.min(axis=0), X.max(axis=0)
        rng_x = np.where(hi > lo, hi - lo, 1.0)
        self._x_range = rng_x
        U = (X - lo) / rng_x
        if self.length_scale is None:
            ls0 = np.full(d, 0.5)
        else:
            ls0 = np.broadcast_to(np.asarray(self.length_scale, np.float64), (d,)) / rng_x
        theta0 = np.concatenate([[np.log(self.signal_variance)], np.log(ls0),
                                 [np.log(max(self.noise, 1e-300))]])
        self.n_iter_ = 0
        if self.optimizer is not None:
            # Small dense factorisations lose to a BLAS team that must wake (and on a
            # busy machine spin) for each call: one BLAS thread below n = 2000.
            with blas_threads(1 if n <= 2000 else self._threads(None)):
                theta0 = self._optimize(theta0, U, yn)
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
        self.log_marginal_likelihood_value_ = float(
            -0.5 * yn @ alpha - np.log(np.diag(L)).sum() - 0.5 * n * _LOG2PI)
        Linv = linalg.solve_triangular(L, np.eye(n), lower=True, check_finite=False)
        self._center = center
        self._inv_scale = 1.0 / ls_raw
        self._ZT = np.ascontiguousarray(Z.T)
        self._weights = s2 * self.y_std_ * alpha
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

    def _optimize(self, theta0, U, yn):
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
        if n > self.n_subset:
            idx = np.sort(rng.choice(n, self.n_subset, replace=False))
            Us, ys = U[idx], yn[idx]
        else:
            Us, ys = U, yn
        best = None
        for t in starts:
            res = self._run_lbfgs(t, Us, ys, bounds)
            if res is not None and (best is None or res[1] > best[1]):
                best = res
        if best is None:
            raise ValueError("GP hyperparameter optimisation failed from every start "
                             "(kernel matrix not positive definite); check X and y")
        if Us is not U:
            res = self._run_lbfgs(best[0], U, yn, bounds)
            if res is not None:
                best = res
        return best[0]

    def _run_lbfgs(self, t0, U, y, bounds):
        kind = self.kernel
        scale = 1.0 / U.shape[0]

        def fun(t):
            try:
                lml, g = _lml(t, U, y, kind, True)
            except (linalg.LinAlgError, FloatingPointError):
                return 1e10, np.zeros_like(t)
            if not np.isfinite(lml):
                return 1e10, np.zeros_like(t)
            return -lml * scale, -g * scale

        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            f0, _ = fun(t0)
            if f0 >= 1e10:
                return None
            res = minimize(fun, t0, jac=True, method="L-BFGS-B", bounds=bounds,
                           options={"maxiter": self.max_iter})
        self.n_iter_ = getattr(self, "n_iter_", 0) + int(res.nit)
        if res.fun >= 1e10:
            return None
        return res.x, -res.fun / scale

    # ------------------------------------------------------------- introspection
    def log_marginal_likelihood(self, theta=None, eval_gradient: bool = False):
        """Log marginal likelihood of the training data (normalised target).

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
        lml, g = _lml(theta, self.X_train_ - self._center, yn, self.kernel, eval_gradient)
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
                                     None, self.y_mean_, _kernels.KINDS[self.kernel], nt)
            return mean
        # the variance calls BLAS trmm from inside the OpenMP team: one BLAS thread each
        with blas_threads(1):
            mean, var = kernel_predict(X, p["center"], p["inv_scale"], p["ZT"], p["weights"],
                                       None, self.y_mean_, _kernels.KINDS[self.kernel], nt,
                                       A=p["A"], prior_var=self.signal_variance_)
        return mean, self.y_std_ * np.sqrt(var)

    def _params(self, dtype):
        if dtype == np.float64:
            return {"center": self._center, "inv_scale": self._inv_scale, "ZT": self._ZT,
                    "weights": self._weights, "A": self._A}
        cache = self._cache32
        if cache is None:
            cache = {k: v.astype(np.float32) for k, v in self._params(np.float64).items()}
            self._cache32 = cache
        return cache
