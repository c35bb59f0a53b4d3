"""Bulk Hill fitting: effai_fast.hill.fit vs a Python loop over scipy's curve_fit.

The peers are timed on a subsample of the same curves and extrapolated per
curve (a curve_fit loop over 10^6 curves would take hours).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import md_table, write_result  # noqa: E402

from effai_fast.hill import fit, hill  # noqa: E402
from effai_fast.hill._synthetic import make_curves  # noqa: E402


def _peer(d, y, bounded, k):
    from scipy.optimize import curve_fit

    def f(x, a, b, m, h):
        return hill(x, a, b, np.exp(m), h)

    t0 = time.perf_counter()
    fails = 0
    for i in range(k):
        ok = np.isfinite(d[i])
        x, yy = d[i][ok], y[i][ok]
        p0 = [yy.min(), yy.max(), np.log(np.median(x[x > 0])), 1.0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                if bounded:
                    lo = [yy.min() - 10 * np.ptp(yy), yy.min() - 10 * np.ptp(yy), -30, -20]
                    hi = [yy.max() + 10 * np.ptp(yy), yy.max() + 10 * np.ptp(yy), 30, 20]
                    curve_fit(f, x, yy, p0=p0, bounds=(lo, hi))
                else:
                    curve_fit(f, x, yy, p0=p0, method="lm", maxfev=4000)
            except Exception:
                fails += 1
    return (time.perf_counter() - t0) / k, fails / k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    sizes = [10**4, 10**5] if args.quick else [10**4, 10**6]
    rows, data = [], {}
    d_all, y_all, _ = make_curves(max(sizes), seed=0)
    k_lm, k_b = (200, 100) if args.quick else (500, 200)
    t_lm, f_lm = _peer(d_all, y_all, False, k_lm)
    t_b, f_b = _peer(d_all, y_all, True, k_b)
    for n in sizes:
        d, y = d_all[:n], y_all[:n]
        rate = {}
        for nt in (1, 2):
            fit(d[:1000], y[:1000], n_threads=nt)
            t0 = time.perf_counter()
            r = fit(d, y, n_threads=nt)
            rate[nt] = n / (time.perf_counter() - t0)
        st = np.bincount(r.status, minlength=3) / n
        rows.append([n, rate[1], rate[2], rate[2] / rate[1], rate[2] * t_lm, rate[2] * t_b,
                     f"{st[0]:.1%}/{st[1]:.1%}/{st[2]:.1%}"])
        data[n] = {"curves_per_s_1": rate[1], "curves_per_s_2": rate[2]}
    md = md_table(["curves", "ours 1 thr (curves/s)", "ours 2 thr (curves/s)", "2 thr / 1 thr",
                   "x curve_fit lm loop", "x curve_fit bounded loop",
                   "converged/flat/failed"], rows)
    md += (f"\n\nPeers (single process, timed on the first {k_lm} / {k_b} curves and "
           f"extrapolated per curve): curve_fit(method='lm') {1 / t_lm:.0f} curves/s "
           f"({f_lm:.0%} raised), curve_fit with bounds (trf) {1 / t_b:.0f} curves/s "
           f"({f_b:.0%} raised). Synthetic curves from effai_fast.hill._synthetic.make_curves: "
           "8-12 doses, increasing/decreasing, ~10% flat, many partial (EC50 up to 3x "
           "outside the dose range), noise 5% of the span. The machine was shared with "
           "other jobs (see load).")
    write_result("hill", "Bulk Hill dose-response fitting", md, data,
                 command="python bench/bench_hill.py" + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
