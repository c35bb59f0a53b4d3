"""Tour step: additive models vs a dense MLP at equal parameters on an additive truth."""

from __future__ import annotations

import time

import numpy as np

from effai_fast._threads import resolve_n_threads

from ._model import AdditiveNetwork
from ._truth import make_additive


def _rel_rmse(p, y):
    return float(np.sqrt(np.mean((p - y) ** 2)) / np.std(y))


def run(report, n_threads=None) -> None:
    nt = resolve_n_threads(n_threads)
    d, n = 10, 500
    X, y = make_additive(n, d, seed=0)
    Xt, yt = make_additive(20_000, d, seed=1)
    report.section(f"Additive models: d={d}, n={n} training points, sum of sin/exp/x^2/|x|/tanh")
    rows = []
    models = {}
    for name, kw in [("AdditiveNetwork, P-spline shapes", dict(shape="spline")),
                     ("AdditiveNetwork, MLP shapes (16,)", dict(shape="mlp", hidden=(16,), max_iter=150))]:
        t0 = time.perf_counter()
        m = AdditiveNetwork(d, n_threads=nt, random_state=0, **kw).fit(X, y)
        fit_s = time.perf_counter() - t0
        models[name] = m
        rows.append([name, m.n_params_, _rel_rmse(m.predict(Xt), yt), fit_s])
    p_add = models["AdditiveNetwork, MLP shapes (16,)"].n_params_
    try:
        from sklearn.neural_network import MLPRegressor
    except ImportError:
        report.line("(scikit-learn not installed: the dense-MLP comparison is skipped)")
    else:
        H = max(1, round((p_add - 1) / (d + 2)))
        t0 = time.perf_counter()
        mlp = MLPRegressor(hidden_layer_sizes=(H,), activation="tanh", solver="lbfgs", max_iter=300,
                           random_state=0).fit(X, y)
        fit_s = time.perf_counter() - t0
        rows.append([f"dense MLP ({H},) tanh, 300 L-BFGS its (sklearn)", (d + 2) * H + 1,
                     _rel_rmse(mlp.predict(Xt), yt), fit_s])
    report.table(["model", "params", "held-out rel. RMSE", "fit s"], rows)
    report.line("(MLP shapes: 150 L-BFGS iterations here; bench/bench_additive.py trains longer)")
    report.record("accuracy_d10", rows)

    # interpretability + dimension adaptivity: a planted interaction is found
    Xi, yi = make_additive(800, 8, interactions=[(2, 5, 1.5)], seed=3)
    m = AdditiveNetwork(8, shape="spline", interactions="auto", n_threads=nt).fit(Xi, yi)
    top = ", ".join(f"{p} F={F:.0f}" for p, F, _ in m.interaction_scores_[:3])
    report.line(f"interactions='auto' on a truth with a planted x2*x5 term: chose "
                f"{m.interactions_} (top screening scores: {top})")
    report.record("auto_interactions", [list(p) for p in m.interactions_])

    # evaluation throughput of the fitted models (compiled sparse additive kernels)
    Xb = np.ascontiguousarray(make_additive(200_000, d, seed=5)[0])
    out = np.empty(len(Xb))
    rows = []
    for name, m in models.items():
        m.predict(Xb[:1000])
        best = np.inf
        for _ in range(3):
            t0 = time.perf_counter()
            m.predict(Xb, out=out)
            best = min(best, time.perf_counter() - t0)
        rows.append([name, nt, len(Xb) / best])
    report.line("Prediction throughput:")
    report.table(["model", "threads", "points/s"], rows)
    report.record("throughput", rows)
