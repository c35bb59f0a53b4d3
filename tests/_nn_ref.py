"""Helpers for the nn tests: finite differences and small reference implementations."""

import numpy as np


def numeric_grad(f, x, eps=1e-6, idx=None):
    """Central-difference gradient of the scalar f() w.r.t. array x (in place), at idx."""
    g = np.zeros_like(x)
    flat = x.reshape(-1)
    gflat = g.reshape(-1)
    indices = range(flat.size) if idx is None else idx
    for i in indices:
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return g


def sample_indices(rng, size, k=25):
    return rng.choice(size, size=min(size, k), replace=False)


def check_grad(f, x, analytic, rng, rtol=1e-6, atol=1e-8, k=25):
    idx = sample_indices(rng, x.size, k)
    num = numeric_grad(f, x, idx=idx).reshape(-1)[idx]
    np.testing.assert_allclose(np.asarray(analytic).reshape(-1)[idx], num, rtol=rtol, atol=atol)


def bn_reference(x, gamma, beta, eps, act=None):
    x2 = x.reshape(-1, x.shape[-1]).astype(np.float64)
    mean = x2.mean(0)
    var = x2.var(0)
    y = (x2 - mean) / np.sqrt(var + eps) * gamma + beta
    if act == "relu":
        y = np.maximum(y, 0)
    elif act == "relu6":
        y = np.clip(y, 0, 6)
    return y.reshape(x.shape), mean, x2.var(0, ddof=1)
