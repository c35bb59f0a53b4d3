"""Generated additive ground truths for the tour, the benchmarks and the tests."""

from __future__ import annotations

import numpy as np

from effai_fast._validation import check_int, check_real, check_rng

__all__ = ["additive_truth", "make_additive"]

_SHAPES = ("sin", "exp", "quadratic", "abs", "tanh")


def additive_truth(X: np.ndarray, interactions=()) -> np.ndarray:
    """f(x) = sum_j g_j(x_j) (+ sum c x_a x_b) with g_j cycling sin, exp, x^2, |x|, tanh.

    Shapes of the same kind differ in frequency/slope and scale from feature
    to feature; inputs are meant to lie in [-1, 1].
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.zeros(X.shape[0])
    for j in range(X.shape[1]):
        x = X[:, j]
        r = 1.0 + 0.25 * (j // 5)          # varies between repeats of a shape
        amp = 1.0 / (1.0 + 0.05 * j)
        kind = _SHAPES[j % 5]
        if kind == "sin":
            g = np.sin(np.pi * r * x)
        elif kind == "exp":
            g = np.exp(r * x) - np.sinh(r) / r          # centred on [-1, 1]
        elif kind == "quadratic":
            g = r * (x**2 - 1.0 / 3.0)
        elif kind == "abs":
            g = 2 * (np.abs(x - 0.2 * (r - 1)) - 0.5)
        else:
            g = np.tanh(3 * r * x)
        y += amp * g
    for a, b, c in interactions:
        y += c * X[:, a] * X[:, b]
    return y


def make_additive(n_samples: int, n_features: int, *, noise: float = 0.0, interactions=(),
                  seed=None):
    """Uniform inputs on [-1, 1]^d and targets from :func:`additive_truth`.

    Parameters
    ----------
    n_samples, n_features : int
    noise : float, default=0
        Standard deviation of Gaussian noise added to the targets.
    interactions : sequence of (a, b, coef)
        Planted pairwise interactions ``coef * x_a * x_b``.
    seed : int, Generator or None

    Returns
    -------
    X : (n_samples, n_features), y : (n_samples,)
    """
    n = check_int(n_samples, "n_samples", min_value=1)
    d = check_int(n_features, "n_features", min_value=1)
    noise = check_real(noise, "noise", min_value=0.0)
    rng = check_rng(seed)
    X = rng.uniform(-1.0, 1.0, size=(n, d))
    y = additive_truth(X, interactions)
    if noise:
        y = y + noise * rng.standard_normal(n)
    return X, y
