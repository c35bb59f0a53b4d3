"""Additive models on an additive truth: accuracy at equal parameters, fit time, throughput.

Compares effai_fast.additive.AdditiveNetwork (P-spline and MLP shape functions)
with a dense MLP of equal parameter count (scikit-learn MLPRegressor, L-BFGS),
pyGAM's LinearGAM and InterpretML's EBM (when installed), on
``make_additive`` (sums of sin, exp, quadratic, |x|, tanh shapes; noiseless
targets; inputs uniform on [-1, 1]^d), n = 500 training points, 20 000
held-out points; then prediction throughput against a dense PyTorch MLP of
equal parameter count and pyGAM's predict.

    python bench/bench_additive.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import have, md_table, timeit, write_result  # noqa: E402

from effai_fast.additive import AdditiveNetwork, make_additive  # noqa: E402

ANCHORS = {10: "pyGAM 0.0041, NAM 0.019, EBM 0.027, MLP 0.20",
           30: "NAM 0.044, pyGAM 0.058, EBM 0.099, MLP 0.72"}


def rel_rmse(p, y):
    return float(np.sqrt(np.mean((p - y) ** 2)) / np.std(y))


def fit_timed(make, X, y):
    t0 = time.perf_counter()
    m = make().fit(X, y)
    return m, time.perf_counter() - t0


def pygam_model(d):
    from pygam import LinearGAM, s

    terms = s(0)
    for j in range(1, d):
        terms = terms + s(j)
    return LinearGAM(terms)


def ebm_model():
    from interpret.glassbox import ExplainableBoostingRegressor

    # outer_bags=2 (default 14) and one job: the default did not finish a d=10 fit in
    # 5 minutes on the shared machine of this session; fewer bags cost EBM some accuracy
    return ExplainableBoostingRegressor(interactions=0, outer_bags=2, n_jobs=1, random_state=0)


def accuracy(dims, n, quick):
    rows, data = [], {}
    for d in dims:
        X, y = make_additive(n, d, seed=0)
        Xt, yt = make_additive(20_000, d, seed=1)
        res = {}
        m, t = fit_timed(lambda: AdditiveNetwork(d, shape="spline"), X, y)  # noqa: B023
        res["ours: P-spline shapes"] = (m.n_params_, rel_rmse(m.predict(Xt), yt), t)
        mlp_iter = 150 if quick else 400
        m, t = fit_timed(lambda: AdditiveNetwork(d, hidden=(16,), shape="mlp", random_state=0,  # noqa: B023
                                                 max_iter=mlp_iter), X, y)  # noqa: B023
        p_nam = m.n_params_
        res["ours: MLP shapes (16,) (NAM)"] = (p_nam, rel_rmse(m.predict(Xt), yt), t)
        if have("sklearn"):
            from sklearn.neural_network import MLPRegressor

            H = max(1, round((p_nam - 1) / (d + 2)))
            mk = lambda: MLPRegressor(hidden_layer_sizes=(H,), activation="tanh",  # noqa: E731, B023
                                      solver="lbfgs", max_iter=300 if quick else 1000,
                                      random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m, t = fit_timed(mk, X, y)
            res[f"dense MLP ({H},) sklearn L-BFGS"] = ((d + 2) * H + 1,
                                                       rel_rmse(m.predict(Xt), yt), t)
        if have("pygam"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m, t = fit_timed(lambda: pygam_model(d), X, y)  # noqa: B023
            res["pyGAM LinearGAM (20 splines/term)"] = (20 * d + 1, rel_rmse(m.predict(Xt), yt), t)
        if have("interpret") and not (quick and d > 10):
            m, t = fit_timed(ebm_model, X, y)
            res["InterpretML EBM (outer_bags=2, no interactions)"] = (
                "-", rel_rmse(m.predict(Xt), yt), t)
        for name, (p, e, t) in res.items():
            rows.append([d, name, p, e, t])
            print(f"d={d} {name}: params {p}, rel. RMSE {e:.3g}, fit {t:.2f} s", flush=True)
        data[d] = {k: {"params": v[0], "rel_rmse": v[1], "fit_s": v[2]} for k, v in res.items()}
    return rows, data


def sample_curves(d, ns, quick):
    Xt, yt = make_additive(20_000, d, seed=1)
    rows, data = [], {}
    for n in ns:
        X, y = make_additive(n, d, seed=0)
        r = {"ours spline": rel_rmse(AdditiveNetwork(d, shape="spline").fit(X, y).predict(Xt), yt)}
        if have("pygam"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r["pyGAM"] = rel_rmse(pygam_model(d).fit(X, y).predict(Xt), yt)
        if have("interpret") and not quick:
            r["EBM"] = rel_rmse(ebm_model().fit(X, y).predict(Xt), yt)
        print(f"n={n}: {r}", flush=True)
        rows.append([n] + [r.get(k, float("nan")) for k in ("ours spline", "pyGAM", "EBM")])
        data[n] = r
    return rows, data


def throughput(d, n_threads):
    X, y = make_additive(500, d, seed=0)
    Xb = np.ascontiguousarray(make_additive(200_000, d, seed=5)[0])
    out = np.empty(len(Xb))
    rows, data = [], {}
    spline = AdditiveNetwork(d, shape="spline", n_threads=n_threads).fit(X, y)
    nam = AdditiveNetwork(d, hidden=(16,), shape="mlp", max_iter=20, random_state=0,
                          n_threads=n_threads).fit(X, y)
    for name, m in [("ours P-spline", spline), ("ours MLP shapes (16,)", nam)]:
        t = timeit(lambda: m.predict(Xb, out=out), min_time=0.3, repeat=5)["best"]  # noqa: B023
        data[name] = {"params": m.n_params_, "points_per_s": len(Xb) / t}
    if have("torch"):
        import torch

        torch.set_num_threads(n_threads)
        Xtorch = torch.from_numpy(Xb)
        for name in list(data):
            p = data[name]["params"]
            H = max(1, round((p - 1) / (d + 2)))
            net = torch.nn.Sequential(torch.nn.Linear(d, H), torch.nn.Tanh(),
                                      torch.nn.Linear(H, 1)).double()
            with torch.inference_mode():
                t = timeit(lambda: net(Xtorch), min_time=0.3, repeat=5)["best"]  # noqa: B023
            data[name]["torch_params"] = (d + 2) * H + 1
            data[name]["torch_points_per_s"] = len(Xb) / t
    if have("pygam"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            g = pygam_model(d).fit(X, y)
        Xs = Xb[:50_000]
        t = timeit(lambda: g.predict(Xs), min_time=0.3, repeat=3)["best"]
        data["pyGAM predict"] = len(Xs) / t
    for name in ("ours P-spline", "ours MLP shapes (16,)"):
        r = data[name]
        tp = r.get("torch_points_per_s")
        gp = data.get("pyGAM predict")
        rows.append([name, r["params"], r["points_per_s"],
                     f"{tp:.3g} ({r['torch_params']} params)" if tp else "n/a",
                     f"{r['points_per_s'] / tp:.1f}x" if tp else "n/a",
                     f"{gp:.3g}" if gp else "n/a",
                     f"{r['points_per_s'] / gp:.1f}x" if gp else "n/a"])
    return rows, data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    dims = [10, 30] if args.quick else [10, 30, 100]
    acc_rows, acc = accuracy(dims, 500, args.quick)
    ns = [100, 250, 500, 1000] if args.quick else [100, 250, 500, 1000, 2000]
    curve_rows, curves = sample_curves(10, ns, args.quick)
    tp_rows, tp = throughput(10, args.threads)
    md = ["Held-out relative RMSE (RMSE / std of y on 20 000 points), n = 500 noiseless "
          "training points on `make_additive(n, d)`; fit wall time in seconds. Issue "
          "anchors (measured elsewhere on a similar truth): "
          + "; ".join(f"d={d}: {a}" for d, a in ANCHORS.items()) + ".",
          "",
          md_table(["d", "model", "params", "rel. RMSE", "fit s"], acc_rows),
          "",
          "Samples to reach an error, d = 10 (held-out relative RMSE vs training size):",
          "",
          md_table(["n", "ours spline", "pyGAM", "EBM"], curve_rows),
          "",
          f"Prediction throughput, d = 10, 200 000 points, {args.threads} threads "
          "(torch: dense tanh MLP with the same parameter count, float64, inference mode; "
          "pyGAM predict on 50 000 points):",
          "",
          md_table(["ours", "params", "points/s", "torch dense MLP points/s", "vs torch",
                    "pyGAM points/s", "vs pyGAM"], tp_rows),
          "",
          "The machine was shared with other jobs while measuring (2 cores); ratios are from "
          "one run."]
    write_result("additive", "Additive models vs dense MLP, pyGAM, EBM", "\n".join(md),
                 data={"accuracy": acc, "curves": curves, "throughput": tp},
                 command="python bench/bench_additive.py" + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
