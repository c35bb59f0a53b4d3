"""scikit-learn style estimator for one dose-response curve."""

from __future__ import annotations

import numpy as np

from effai_fast._validation import as_float_array
from effai_fast.hill.fit import fit

__all__ = ["HillRegressor"]

try:  # scikit-learn is optional: the estimator works without it
    from sklearn.base import BaseEstimator, RegressorMixin
except ImportError:  # pragma: no cover - exercised only without scikit-learn
    class BaseEstimator:  # minimal get_params / set_params
        def get_params(self, deep=True):
            return {k: getattr(self, k) for k in ("fixed", "bounds", "se", "max_iter",
                                                  "n_threads")}

        def set_params(self, **params):
            for k, v in params.items():
                setattr(self, k, v)
            return self

    class RegressorMixin:
        def score(self, X, y, sample_weight=None):
            y = np.asarray(y, dtype=float)
            p = self.predict(X)
            w = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight)
            ybar = np.average(y, weights=w)
            return 1 - np.sum(w * (y - p) ** 2) / np.sum(w * (y - ybar) ** 2)


class HillRegressor(RegressorMixin, BaseEstimator):
    """Hill dose-response regression: ``X`` is one column of doses.

    Parameters
    ----------
    fixed, bounds, se, max_iter, n_threads
        As for :func:`effai_fast.hill.fit`.

    Attributes
    ----------
    rmin_, rmax_, ec50_, n_ : float
        Fitted parameters (conventions of :mod:`effai_fast.hill.fit`).
    result_ : HillFit
        The full result (standard errors, AIC, status...).
    status_ : str
        "converged" or "failed" (flat labelling is off in the estimator: it
        always predicts with the Hill fit).
    n_features_in_ : int
        Always 1.

    Notes
    -----
    Doses must be non-negative (``fit`` raises ValueError otherwise), so the
    estimator declares ``positive_only`` input to scikit-learn's checks.
    """

    def __init__(self, *, fixed=None, bounds=None, se="hessian", max_iter=200,
                 n_threads=None):
        self.fixed = fixed
        self.bounds = bounds
        self.se = se
        self.max_iter = max_iter
        self.n_threads = n_threads

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        return tags

    def _check_X(self, X, reset):
        try:
            from sklearn.utils.validation import validate_data
        except ImportError:  # pragma: no cover
            # the checks validate_data makes: real, 2-D, non-empty, finite (NaN/complex named)
            X = as_float_array(X, "X", ndim=2, finite=True)
            if reset:
                self.n_features_in_ = X.shape[1]
        else:
            try:
                X = validate_data(self, X, reset=reset, dtype=(np.float64, np.float32),
                                  ensure_all_finite=True)
            except ValueError as exc:  # scikit-learn's messages do not name the argument
                msg = str(exc)
                raise ValueError(msg if "X" in msg.split() else f"X: {msg}") from exc
        if X.shape[1] != 1:
            raise ValueError(f"X must have exactly one column (the dose), got {X.shape[1]}")
        return X

    def fit(self, X, y, sample_weight=None):
        """Fit the curve; ``X`` is (n_samples, 1) doses, ``y`` the responses."""
        try:
            from sklearn.utils.validation import column_or_1d
        except ImportError:  # pragma: no cover
            def column_or_1d(v, **_):
                return np.ravel(np.asarray(v, dtype=float))
        X = self._check_X(X, reset=True)
        try:
            y = column_or_1d(np.asarray(y), warn=True)
        except ValueError as exc:
            raise ValueError(f"y: {exc}") from exc
        if y.dtype.kind not in "fiub":
            raise ValueError(f"y must be numeric, got dtype {y.dtype}")
        y = y.astype(X.dtype, copy=False)
        if not np.isfinite(y).all():
            raise ValueError("y must not contain NaN or infinity")
        if len(y) != len(X):
            raise ValueError(f"X and y have inconsistent numbers of samples: {len(X)} and "
                             f"{len(y)}")
        if sample_weight is not None and len(np.atleast_1d(sample_weight)) != len(X):
            raise ValueError(f"sample_weight has {len(np.atleast_1d(sample_weight))} entries, "
                             f"X has {len(X)} samples")
        res = fit(X[:, 0], y, weights=sample_weight, fixed=self.fixed, bounds=self.bounds,
                  se=self.se, flat_alpha=None, max_iter=self.max_iter,
                  n_threads=self.n_threads)
        self.result_ = res
        self.rmin_ = float(res.rmin[0])
        self.rmax_ = float(res.rmax[0])
        self.ec50_ = float(res.ec50[0])
        self.log_ec50_ = float(res.log_ec50[0])
        self.n_ = float(res.n[0])
        self.status_ = str(res.status_name[0])
        return self

    def predict(self, X):
        """Fitted responses at the doses ``X`` (n_samples, 1)."""
        if not hasattr(self, "result_"):
            try:
                from sklearn.exceptions import NotFittedError
            except ImportError:  # pragma: no cover
                NotFittedError = ValueError
            raise NotFittedError("This HillRegressor instance is not fitted yet; call fit first")
        X = self._check_X(X, reset=False)
        if (X < 0).any():
            raise ValueError("X (doses) must be non-negative")
        return self.result_.predict(X[:, 0])[0]
