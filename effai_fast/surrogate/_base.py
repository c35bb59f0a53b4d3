"""The scikit-learn estimator protocol without a scikit-learn dependency.

The surrogates follow scikit-learn's conventions (``__init__`` only stores
parameters, ``fit`` returns ``self``, fitted attributes end in ``_``,
``get_params``/``set_params``, ``score`` is R^2) and pass
``sklearn.utils.estimator_checks`` where scikit-learn is installed, but the
package does not import scikit-learn: this mixin provides the protocol.

Any object with ``fit(X, y) -> self`` and ``predict(X) -> (m,)`` (optionally
``predict(X, return_std=True) -> (mean, std)``) plugs into
:func:`~effai_fast.surrogate.screen` and :func:`~effai_fast.surrogate.optimize`;
that is how the additive model of ``effai_fast.additive`` or a scikit-learn
regressor is used.
"""

from __future__ import annotations

import copy
import inspect
from contextlib import contextmanager

import numpy as np

from effai_fast._threads import resolve_n_threads
from effai_fast._validation import as_float_array, check_consistent_length

__all__ = ["NotFittedError", "SurrogateMixin", "clone"]


class NotFittedError(ValueError, AttributeError):
    """Raised when predict is called before fit (as scikit-learn's)."""


class SurrogateMixin:
    """get_params / set_params / score / validation shared by the surrogates."""

    _has_std = False

    @classmethod
    def _param_names(cls):
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values()
                      if p.name != "self" and p.kind != p.VAR_KEYWORD)

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor parameters (scikit-learn protocol); returns self."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"Invalid parameter {key!r} for estimator "
                                 f"{type(self).__name__}; valid parameters are {valid}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def __sklearn_tags__(self):
        from sklearn.utils import InputTags, RegressorTags, Tags, TargetTags

        return Tags(estimator_type="regressor", target_tags=TargetTags(required=True),
                    regressor_tags=RegressorTags(), input_tags=InputTags())

    # ----------------------------------------------------------------- validation
    @staticmethod
    def _check_X_shape(X):
        if hasattr(X, "tocsr") or hasattr(X, "todense"):
            raise TypeError("X is a sparse matrix: sparse input is not supported, "
                            "pass a dense array")
        arr = np.asarray(X) if not isinstance(X, np.ndarray) else X
        if arr.ndim == 1:
            raise ValueError(f"X must be 2-D, got a 1-D array of shape {arr.shape}: "
                             "Reshape your data with X.reshape(-1, 1) for a single "
                             "feature or X.reshape(1, -1) for a single sample")
        if arr.ndim == 2 and arr.shape[1] == 0:
            raise ValueError(f"X has 0 feature(s) (shape={arr.shape}) while a minimum of "
                             "1 is required.")

    def _validate_fit(self, X, y):
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, "
                             "but the target y is None")
        self._check_X_shape(X)
        X = as_float_array(X, "X", dtype=np.float64, ndim=2, finite=True)
        y = as_float_array(y, "y", dtype=np.float64, ndim=(1, 2))
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(f"y must be 1-D (one target), got shape {y.shape}")
            y = y[:, 0]
        check_consistent_length(("X", X), ("y", y))
        if not np.isfinite(y).all():
            bad = np.flatnonzero(~np.isfinite(y))
            raise ValueError(
                f"y must not contain NaN or infinity ({bad.size} non-finite targets, "
                f"first at index {int(bad[0])}); drop those rows (optimize() does so "
                "and records them as failures)")
        return X, y

    def _check_fitted(self):
        if not hasattr(self, "n_features_in_"):
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet; "
                                 "call 'fit' with appropriate arguments first")

    def _validate_predict(self, X):
        self._check_fitted()
        self._check_X_shape(X)
        X = as_float_array(X, "X", ndim=2, finite=True, allow_empty=True)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} "
                             f"is expecting {self.n_features_in_} features as input")
        return X

    def _threads(self, n_threads):
        return resolve_n_threads(self.n_threads if n_threads is None else n_threads)

    def score(self, X, y) -> float:
        """Coefficient of determination R^2 of the predictions."""
        y = np.asarray(y, dtype=np.float64).ravel()
        pred = np.asarray(self.predict(X), dtype=np.float64)
        ss_res = float(((y - pred) ** 2).sum())
        ss_tot = float(((y - y.mean()) ** 2).sum())
        return 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else 0.0)


@contextmanager
def blas_threads(n_threads: int):
    """Limit BLAS to ``n_threads`` while fitting (threadpoolctl when installed).

    The fits are sequences of small dense factorisations; on a busy machine a
    BLAS team that spins for cores it does not get makes them ten times slower.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is optional
        yield
        return
    with threadpool_limits(limits=max(1, int(n_threads)), user_api="blas"):
        yield


def clone(estimator):
    """A fresh, unfitted copy with the same parameters (scikit-learn's ``clone``)."""
    if hasattr(estimator, "get_params"):
        params = {k: copy.deepcopy(v) for k, v in estimator.get_params(deep=False).items()}
        return type(estimator)(**params)
    return copy.deepcopy(estimator)


def predict_with(model, X, *, return_std: bool, n_threads: int | None):
    """Call ``model.predict`` with what it supports; returns (mean, std or None)."""
    try:
        params = inspect.signature(model.predict).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        params = {}
    kw = {}
    if "n_threads" in params:
        kw["n_threads"] = n_threads
    if return_std:
        if "return_std" not in params:
            raise ValueError(f"{type(model).__name__}.predict has no return_std: this model "
                             "gives no uncertainty")
        mean, std = model.predict(X, return_std=True, **kw)
        return np.asarray(mean).ravel(), np.asarray(std).ravel()
    return np.asarray(model.predict(X, **kw)).ravel(), None


def has_std(model) -> bool:
    """Whether ``model.predict`` accepts ``return_std``."""
    try:
        return "return_std" in inspect.signature(model.predict).parameters
    except (TypeError, ValueError, AttributeError):  # pragma: no cover
        return False
