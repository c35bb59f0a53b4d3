"""Radial-basis-function interpolation with a polynomial tail.

``f(x) = sum_j w_j phi(||z - z_j||) + c_0 + sum_k c_k z_k`` on scaled inputs
``z = (x - center) * s``, with ``(w, c)`` the solution of the saddle-point system
``[[Phi + smoothing I, P], [P^T, 0]] [w; c] = [y; 0]`` (scipy's
``RBFInterpolator`` formulation).  With ``smoothing=0`` it interpolates the data
exactly.

Duplicate training points would make ``Phi`` singular: exact duplicates are
merged (their targets averaged, and the merge counted in ``n_duplicates_``)
before the solve, so the interpolant stays defined; near-duplicates are handled
by the (small) ``smoothing`` the caller may set.

``scale``: ``"isotropic"`` (one factor for all inputs: the interpolant is then
the same as scipy's, whose polyharmonic kernels are scale invariant) or
``"box"`` (each input scaled to [-1, 1] by its training range: what one wants
when the inputs have different units, e.g. the Borehole problem).
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.spatial.distance import cdist

from effai_fast._validation import check_int, check_real
from effai_fast.surrogate import _kernels
from effai_fast.surrogate._base import SurrogateMixin
from effai_fast.surrogate._predict import kernel_predict

__all__ = ["RBFInterpolant"]

# minimum polynomial degree for conditional positive definiteness (as scipy)
_MIN_DEGREE = {"linear": 0, "thin_plate_spline": 1, "cubic": 1, "gaussian": -1}


class RBFInterpolant(SurrogateMixin):
    """RBF interpolation with a constant or linear polynomial tail.

    Parameters
    ----------
    kernel : {"cubic", "thin_plate_spline", "linear", "gaussian"}, default="cubic"
    degree : {-1, 0, 1} or None
        Degree of the polynomial tail (None: 1, or the kernel's minimum).
    smoothing : float, default=0.0
        Added to the diagonal of the kernel matrix (0 interpolates exactly).
    epsilon : float, default=1.0
        Shape parameter of the ``gaussian`` kernel (ignored by the others).
    scale : {"box", "isotropic"}, default="box"
        Per-input scaling to [-1, 1] or one scale for all inputs (see module doc).
    n_threads : int or None

    Attributes
    ----------
    n_duplicates_ : int
        Number of training rows merged into an identical earlier row.
    n_features_in_ : int
    """

    def __init__(self, kernel: str = "cubic", degree: int | None = None,
                 smoothing: float = 0.0, epsilon: float = 1.0, scale: str = "box",
                 n_threads: int | None = None):
        self.kernel = kernel
        self.degree = degree
        self.smoothing = smoothing
        self.epsilon = epsilon
        self.scale = scale
        self.n_threads = n_threads

    def fit(self, X, y):
        """Solve for the RBF weights and the polynomial coefficients; returns self."""
        X, y = self._validate_fit(X, y)
        if self.kernel not in _MIN_DEGREE:
            raise ValueError(f"kernel must be one of {sorted(_MIN_DEGREE)}, got {self.kernel!r}")
        if self.degree is None:
            degree = 1
        else:
            degree = check_int(self.degree, "degree", min_value=-1, max_value=1)
        if degree < _MIN_DEGREE[self.kernel]:
            raise ValueError(f"degree must be >= {_MIN_DEGREE[self.kernel]} for the "
                             f"{self.kernel!r} kernel, got {degree}")
        smoothing = check_real(self.smoothing, "smoothing", min_value=0)
        eps = check_real(self.epsilon, "epsilon", min_value=0, min_inclusive=False)
        if self.scale not in ("box", "isotropic"):
            raise ValueError(f"scale must be 'box' or 'isotropic', got {self.scale!r}")
        # merge exact duplicates (average their targets)
        uX, inv, counts = np.unique(X, axis=0, return_inverse=True, return_counts=True)
        inv = inv.ravel()
        self.n_duplicates_ = int(X.shape[0] - uX.shape[0])
        if self.n_duplicates_:
            y = np.bincount(inv, weights=y, minlength=uX.shape[0]) / counts
            X = uX
        n, d = X.shape
        n_poly = {-1: 0, 0: 1, 1: d + 1}[degree]
        if n < n_poly:
            raise ValueError(f"{type(self).__name__} with a degree-{degree} tail needs at "
                             f"least {n_poly} distinct samples, got {n} sample(s)")
        lo, hi = X.min(axis=0), X.max(axis=0)
        center = 0.5 * (lo + hi)
        half = 0.5 * (hi - lo)
        if self.scale == "box":
            inv_scale = 1.0 / np.where(half > 0, half, 1.0)
        else:
            h = half.max()
            inv_scale = np.full(d, 1.0 / h if h > 0 else 1.0)
        if self.kernel == "gaussian":
            inv_scale = inv_scale * eps
        Z = (X - center) * inv_scale
        sq = cdist(Z, Z, "sqeuclidean")
        Phi = _phi(self.kernel, sq)
        Phi[np.diag_indices(n)] += smoothing
        P = np.hstack([np.ones((n, 1)), Z])[:, :n_poly]
        lhs = np.zeros((n + n_poly, n + n_poly))
        lhs[:n, :n] = Phi
        lhs[:n, n:] = P
        lhs[n:, :n] = P.T
        rhs = np.concatenate([y, np.zeros(n_poly)])
        try:
            with np.errstate(all="ignore"):
                coef = linalg.solve(lhs, rhs, assume_a="sym", check_finite=False)
        except (linalg.LinAlgError, ValueError):
            coef = None
        if coef is None or not np.isfinite(coef).all() or np.abs(
                lhs @ coef - rhs).max() > 1e-6 * max(1.0, np.abs(y).max()):
            raise ValueError(
                "the RBF system is singular (points on a lower-dimensional set, or too "
                "few distinct points for the polynomial tail); set smoothing > 0 or a "
                "lower degree")
        w = coef[:n]
        c = coef[n:]
        self._center = center
        self._inv_scale = inv_scale
        self._ZT = np.ascontiguousarray(Z.T)
        self._weights = np.ascontiguousarray(w)
        self._offset = float(c[0]) if n_poly else 0.0
        self._poly = np.ascontiguousarray(c[1:]) if n_poly == d + 1 else None
        self._cache32 = None
        self.degree_ = degree
        self.n_features_in_ = d
        return self

    def predict(self, X, *, n_threads: int | None = None):
        """Interpolant at X (evaluated in float64: the weights may cancel)."""
        X = np.ascontiguousarray(self._validate_predict(X), dtype=np.float64)
        p = self._arrays(X.dtype)
        mean, _ = kernel_predict(X, p[0], p[1], p[2], p[3], p[4], self._offset,
                                 _kernels.KINDS[self.kernel], self._threads(n_threads))
        return mean

    def _arrays(self, dtype):
        arrs = (self._center, self._inv_scale, self._ZT, self._weights, self._poly)
        if dtype == np.float64:
            return arrs
        if self._cache32 is None:
            self._cache32 = tuple(None if a is None else a.astype(np.float32) for a in arrs)
        return self._cache32


def _phi(kernel, sq):
    """The kernel on squared distances (numpy; the fit and the test reference)."""
    if kernel == "cubic":
        return sq * np.sqrt(sq)
    if kernel == "linear":
        return -np.sqrt(sq)
    if kernel == "thin_plate_spline":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(sq > 0, 0.5 * sq * np.log(np.where(sq > 0, sq, 1.0)), 0.0)
    return np.exp(-sq)  # gaussian
