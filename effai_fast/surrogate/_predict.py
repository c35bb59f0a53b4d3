"""Thin dispatch from the estimators to the compiled kernels (``_kernels.pyx``).

The estimators validate their inputs; this module only allocates the outputs,
casts the model's arrays to the input's float type, and caps the OpenMP team
by the amount of work (``threads_for_work``) so that small calls stay serial.
"""

from __future__ import annotations

import numpy as np

from effai_fast._threads import threads_for_work
from effai_fast.surrogate import _kernels

__all__ = ["kernel_predict", "mlp_predict"]

# Least work (pair evaluations) worth waking a second thread for.
_GRAIN = 200_000


def kernel_predict(X, center, inv_scale, ZT, weights, poly, offset, kind, n_threads, *,
                   A=None, prior_var=1.0, out=None):
    """Mean ``offset + sum_j w_j phi(.) (+ poly . z)`` and, with ``A``, the variance.

    ``X`` must be C-contiguous float32/float64; model arrays of the same dtype.
    Returns ``(mean, var)`` with ``var`` None unless ``A`` is given.
    """
    m = X.shape[0]
    dt = X.dtype
    n = ZT.shape[1]
    mean = np.empty(m, dtype=dt) if out is None else out
    nt = threads_for_work(n_threads, m * n * (X.shape[1] + 8), _GRAIN)
    if A is None:
        pl = np.empty(0, dtype=dt) if poly is None else poly
        _kernels.py_kernel_sum(X, center, inv_scale, ZT, weights, pl, float(offset), kind,
                               mean, nt)
        return mean, None
    var = np.empty(m, dtype=dt)
    nt = threads_for_work(n_threads, m * n * (X.shape[1] + 8 + n), _GRAIN)
    _kernels.py_kernel_sum_var(X, center, inv_scale, ZT, weights, float(offset), kind, A,
                               float(prior_var), mean, var, nt)
    return mean, var


def mlp_predict(X, params, sizes, n_threads, out=None):
    """Forward pass of a tanh MLP (weights flattened layer by layer)."""
    m = X.shape[0]
    mean = np.empty(m, dtype=X.dtype) if out is None else out
    work = m * sum(int(sizes[i]) * int(sizes[i + 1]) for i in range(len(sizes) - 1))
    nt = threads_for_work(n_threads, work, 4 * _GRAIN)
    _kernels.py_mlp_forward(X, params, sizes, mean, nt)
    return mean
