"""Tour step: Hill vs a line on saturating data, and bulk-fit speed."""

from __future__ import annotations

import time

import numpy as np

from effai_fast.hill._synthetic import make_curves
from effai_fast.hill.fit import fit
from effai_fast.hill.models import compare_models


def run(report, n_threads=None) -> None:
    report.section("hill: dose-response fitting (Hill vs linear, bulk speed)")
    # 1. inductive bias: 200 generated saturating curves, shared 9-dose series
    dose = np.array([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100.0])
    rng = np.random.default_rng(2026)
    ec50 = np.exp(rng.uniform(np.log(0.1), np.log(10), 200))
    n = rng.uniform(0.7, 2.5, 200)
    from effai_fast.hill.fit import hill
    y = hill(dose, 0.0, 100.0, ec50[:, None], n[:, None]) + rng.normal(0, 4, (200, dose.size))
    cmp = compare_models(dose, y, n_threads=n_threads)
    s = cmp.summary()
    rows = [[m, s[m]["median_aic"], s[m]["median_cv_rmse"], s[m]["wins_cv"]]
            for m in ("hill", "linear", "quadratic")]
    report.line("200 saturating curves (9 doses, noise sd 4 on a 0-100 scale); "
                "leave-one-dose-out:")
    report.table(["model", "median AIC", "median CV RMSE", "best CV (curves)"], rows)
    report.record("cv_rmse_hill", s["hill"]["median_cv_rmse"])
    report.record("cv_rmse_linear", s["linear"]["median_cv_rmse"])
    # 2. bulk speed on mixed synthetic curves (partial, flat, decreasing, ragged)
    n_curves = 20_000
    d, yy, _ = make_curves(n_curves, seed=7)
    fit(d[:100], yy[:100], n_threads=n_threads)
    t0 = time.perf_counter()
    res = fit(d, yy, n_threads=n_threads)
    dt = time.perf_counter() - t0
    counts = {v: int(np.sum(res.status == k)) for k, v in {0: "converged", 1: "flat",
                                                          2: "failed"}.items()}
    from scipy.optimize import curve_fit

    def f(x, a, b, m, h):
        return hill(x, a, b, np.exp(m), h)

    t0 = time.perf_counter()
    k_peer = 100
    for i in range(k_peer):
        _curve_fit_one(curve_fit, f, d[i], yy[i])
    peer = (time.perf_counter() - t0) / k_peer
    report.line(f"{n_curves} synthetic curves (8-12 doses) in {dt:.2f} s = "
                f"{n_curves / dt:,.0f} curves/s; {counts}")
    report.line(f"scipy curve_fit(method='lm') loop: {1 / peer:,.0f} curves/s "
                f"(timed on {k_peer} curves) -> {peer * n_curves / dt:.0f}x faster")
    report.record("curves_per_s", n_curves / dt)
    report.record("speedup_vs_curve_fit", peer * n_curves / dt)


def _curve_fit_one(curve_fit, f, d, y):
    import warnings

    ok = np.isfinite(d)
    p0 = [np.nanmin(y), np.nanmax(y), np.log(np.nanmedian(d[d > 0])), 1.0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            curve_fit(f, d[ok], y[ok], p0=p0, method="lm", maxfev=2000)
        except Exception:
            pass
