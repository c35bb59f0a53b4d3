"""Test functions for the tour, the benchmarks and the tests (vectorised, (n, d) -> (n,))."""

from __future__ import annotations

import numpy as np

__all__ = ["WING_WEIGHT_DOMAIN", "additive_8d", "wing_weight"]

#: Sw, Wfw, A, Lambda (degrees), q, lambda, tc, Nz, Wdg, Wp (Forrester et al. 2008)
WING_WEIGHT_DOMAIN = np.array([
    [150.0, 200.0], [220.0, 300.0], [6.0, 10.0], [-10.0, 10.0], [16.0, 45.0],
    [0.5, 1.0], [0.08, 0.18], [2.5, 6.0], [1700.0, 2500.0], [0.025, 0.08]])


def wing_weight(x: np.ndarray) -> np.ndarray:
    """The 10-D light-aircraft wing weight function on :data:`WING_WEIGHT_DOMAIN`."""
    x = np.asarray(x, dtype=np.float64)
    sw, wfw, a, lam, q, taper, tc, nz, wdg, wp = x.T
    c = np.cos(np.deg2rad(lam))
    return (0.036 * sw**0.758 * wfw**0.0035 * (a / c**2) ** 0.6 * q**0.006 * taper**0.04
            * (100.0 * tc / c) ** -0.3 * (nz * wdg) ** 0.49 + sw * wp)


def additive_8d(x: np.ndarray) -> np.ndarray:
    """An 8-D additive function on [0, 1]^8: smooth 1-D shapes of decreasing strength."""
    x = np.asarray(x, dtype=np.float64)
    return (np.exp(x[:, 0]) + np.sin(5 * x[:, 1] + 0.5) + 1.0 / (1.0 + 4 * x[:, 2] ** 2)
            + np.cos(3 * x[:, 3]) + 0.5 * np.tanh(2 * x[:, 4] - 0.3) + 0.3 * x[:, 5] ** 3
            + 0.1 * np.sqrt(1.0 + x[:, 6]) + 0.05 * np.log(2.0 + x[:, 7]))
