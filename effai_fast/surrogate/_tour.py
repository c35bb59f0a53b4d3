"""Tour step: the surrogate loop end to end on embedded problems."""

from __future__ import annotations

import time

import numpy as np


def run(report, n_threads=None) -> None:
    from effai_fast.surrogate import (
        DesignSpec,
        GaussianProcess,
        get_problem,
        latin_hypercube,
        optimize,
        screen,
    )

    report.section("surrogate: fit on few simulator runs, screen many candidates")
    # 1. active learning on Hartmann-6 (published minimum -3.32237)
    prob = get_problem("hartmann6")
    t0 = time.perf_counter()
    hist = optimize(prob, prob.domain, n_initial=14, n_rounds=9, batch_size=4, seed=0,
                    n_candidates=4096, n_threads=n_threads)
    t_opt = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    rand = prob(prob.domain.from_unit(rng.random((hist.n_calls, prob.d)))).min()
    report.line(f"Hartmann-6 active learning (GP Matern-5/2 + expected improvement, "
                f"kriging-believer batches of 4): {hist.n_calls} simulator calls, "
                f"{t_opt:.1f} s")
    report.table(["method", "simulator calls", "best found", "true optimum"],
                 [["surrogate loop", hist.n_calls, hist.best_y, prob.minimum],
                  ["random search", hist.n_calls, float(rand), prob.minimum]])
    report.record("hartmann6_calls", hist.n_calls)
    report.record("hartmann6_best", hist.best_y)
    report.record("hartmann6_random_best", float(rand))
    # 2. screening throughput: GP on 200 Borehole runs, Sobol candidates generated on the fly
    bh = get_problem("borehole")
    X = latin_hypercube(bh.domain, 200, seed=1)
    t0 = time.perf_counter()
    gp = GaussianProcess(seed=0, n_restarts=1, n_threads=n_threads).fit(X, bh(X))
    t_fit = time.perf_counter() - t0
    n = 1 << 20
    res = screen(gp, DesignSpec(bh.domain, n, seed=2), top_k=10, n_threads=n_threads,
                 progress=False)
    Xt = latin_hypercube(bh.domain, 20000, seed=3)
    yt = bh(Xt)
    rel = float(np.sqrt(np.mean((gp.predict(Xt) - yt) ** 2)) / np.std(yt))
    report.line(f"Borehole GP from 200 runs: fit {t_fit:.1f} s, held-out relative RMSE "
                f"{rel:.2e}; screened {n:,} generated candidates in {res.seconds:.2f} s "
                f"= {res.rate:.3g} candidates/s (10^9 would take {1e9 / res.rate / 60:.1f} min)")
    report.line(f"  best predicted flow {res.mean[0]:.4g} m^3/yr, simulator says "
                f"{bh(res.X[0]):.4g}")
    report.record("borehole_relrmse_n200", rel)
    report.record("screen_candidates_per_s", res.rate)
