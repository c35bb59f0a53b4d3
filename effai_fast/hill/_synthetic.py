"""Synthetic dose-response curves for tests, benchmarks and the tour."""

from __future__ import annotations

import numpy as np

from effai_fast._validation import check_int, check_rng

__all__ = ["make_curves"]


def make_curves(n_curves: int, *, min_doses: int = 8, max_doses: int = 12,
                flat_fraction: float = 0.1, noise: float = 0.05, shared_doses: bool = False,
                seed=None):
    """Random Hill curves: increasing and decreasing, full and partial, flat, noisy.

    Doses are a dilution series (factor 2-4, 8-12 points, half of the curves
    with a zero-dose control); EC50 is log-uniform over the dose range widened
    by a factor of 3 each side (so some curves are partial); ``|n|`` is
    log-uniform in [0.5, 4] with a random sign; a ``flat_fraction`` of curves
    has no dose effect; Gaussian noise of ``noise`` times the span (or of 1 for
    flat curves).  Curves with fewer doses are padded with NaN.

    Returns
    -------
    dose, response : ndarray, shape (n_curves, max_doses) (dose (max_doses,) if shared)
    truth : dict of ndarray
        ``rmin, rmax, ec50, n, flat`` used to generate each curve.
    """
    n_curves = check_int(n_curves, "n_curves", min_value=1)
    rng = check_rng(seed)
    nd = max_doses
    if shared_doses:
        k = np.arange(nd)
        dose = np.concatenate([[0.0], 0.01 * 3.0 ** k[:-1]])
        doses = np.broadcast_to(dose, (n_curves, nd))
        n_dose = np.full(n_curves, nd)
    else:
        n_dose = rng.integers(min_doses, max_doses + 1, n_curves)
        factor = rng.uniform(2.0, 4.0, n_curves)
        start = 10.0 ** rng.uniform(-3, 0, n_curves)
        k = np.arange(nd)[None, :]
        doses = start[:, None] * factor[:, None] ** k
        control = rng.random(n_curves) < 0.5
        doses[control, 0] = 0.0
        doses = np.where(k < n_dose[:, None], doses, np.nan)
    lo = np.nanmin(np.where(doses > 0, doses, np.nan), axis=1)
    hi = np.nanmax(doses, axis=1)
    ec50 = np.exp(rng.uniform(np.log(lo / 3), np.log(hi * 3)))
    n = np.exp(rng.uniform(np.log(0.5), np.log(4.0), n_curves)) * rng.choice([-1.0, 1.0],
                                                                             n_curves)
    rmin = rng.uniform(-10, 10, n_curves)
    span = np.exp(rng.uniform(np.log(5), np.log(100), n_curves))
    flat = rng.random(n_curves) < flat_fraction
    rmax = np.where(flat, rmin, rmin + span)
    with np.errstate(divide="ignore", invalid="ignore"):
        from effai_fast.hill.fit import hill
        y = hill(doses, rmin[:, None], rmax[:, None], ec50[:, None], n[:, None])
    sd = np.where(flat, 1.0, noise * span)
    y = y + sd[:, None] * rng.standard_normal(y.shape)
    y = np.where(np.isnan(doses), np.nan, y)
    dose_out = doses[0].copy() if shared_doses else doses
    return dose_out, y, {"rmin": rmin, "rmax": rmax, "ec50": ec50, "n": n, "flat": flat}
