"""Acquisition functions: scores to *maximise* from a posterior mean and std.

``expected_improvement`` is computed as ``std * h(z)`` with
``h(z) = z Phi(z) + phi(z)`` (``Phi`` = ``scipy.special.ndtr``); with ``log=True``
it returns ``log EI`` via ``scipy.special.log_ndtr`` and an asymptotic expansion
for ``z < -6``, so candidates far below the incumbent still rank correctly
instead of all underflowing to 0.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import log_ndtr, ndtr

from effai_fast._validation import as_float_array, check_real

__all__ = ["expected_improvement", "upper_confidence_bound"]

_INV_SQRT2PI = 1.0 / np.sqrt(2.0 * np.pi)
_LOG_INV_SQRT2PI = -0.5 * np.log(2.0 * np.pi)


def _mean_std(mean, std):
    """Real float64 arrays of broadcast-compatible shapes (NaN allowed: it propagates)."""
    mean = as_float_array(mean, "mean", dtype=np.float64, allow_empty=True)
    std = as_float_array(std, "std", dtype=np.float64, allow_empty=True)
    try:
        np.broadcast_shapes(mean.shape, std.shape)
    except ValueError:
        raise ValueError(f"mean and std must have the same (or broadcastable) shapes, got "
                         f"{mean.shape} and {std.shape}") from None
    return mean, std


def expected_improvement(mean, std, best: float, *, maximize: bool = False,
                         xi: float = 0.0, log: bool = False) -> np.ndarray:
    """Expected improvement over ``best`` (the incumbent).

    Parameters
    ----------
    mean, std : array_like
        Posterior mean and standard deviation.
    best : float
        Best observed value.
    maximize : bool, default=False
        Whether larger values are better.
    xi : float, default=0.0
        Exploration margin.
    log : bool, default=False
        Return ``log EI`` (``-inf`` where EI is exactly 0).

    Returns
    -------
    ndarray (float64), larger is better.

    Raises
    ------
    TypeError, ValueError
        For complex/object/non-numeric ``mean`` or ``std``, shapes that do not
        broadcast, a non-real ``best`` or a non-finite ``xi`` (NaN in ``mean``,
        ``std`` or ``best`` propagates instead).
    """
    mean, std = _mean_std(mean, std)
    if isinstance(best, bool) or not isinstance(best, numbers.Real):
        raise TypeError(f"best must be a real number, got {type(best).__name__} {best!r}")
    xi = check_real(xi, "xi")
    imp = (mean - best - xi) if maximize else (best - mean - xi)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pos = std > 0
        z = np.where(pos, imp / np.where(pos, std, 1.0), 0.0)
        if not log:
            ei = std * (z * ndtr(z) + _INV_SQRT2PI * np.exp(-0.5 * z * z))
            return np.where(pos, np.maximum(ei, 0.0), np.maximum(imp, 0.0))
        # log h(z): direct for z >= -6; for z < -6, h(z) = phi(z)/z^2 (1 - 3/z^2 + 15/z^4 ...)
        zz = np.minimum(z, -6.0)
        tail = (_LOG_INV_SQRT2PI - 0.5 * zz * zz - 2.0 * np.log(-zz)
                + np.log1p(-3.0 / zz**2 + 15.0 / zz**4))
        hz = z * np.exp(log_ndtr(z)) + _INV_SQRT2PI * np.exp(-0.5 * z * z)
        direct = np.log(np.maximum(hz, 1e-300))
        logh = np.where(z >= -6.0, direct, tail)
        out = np.where(pos, np.log(np.where(pos, std, 1.0)) + logh,
                       np.where(imp > 0, np.log(np.maximum(imp, 1e-300)), -np.inf))
    return out


def upper_confidence_bound(mean, std, *, beta: float = 2.0, maximize: bool = False):
    """Optimistic bound ``mean + beta std`` (maximise) or ``-(mean - beta std)`` (minimise)."""
    mean, std = _mean_std(mean, std)
    beta = check_real(beta, "beta")
    return mean + beta * std if maximize else -(mean - beta * std)
