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


EBM_SETTINGS = "outer_bags=1, max_rounds=3000, interactions=0, n_jobs=1"


def ebm_model():
    from interpret.glassbox import ExplainableBoostingRegressor

    # outer_bags=1 (default 14), max_rounds=3000 (default 50 000), one job: with the
    # defaults a d=10, n=500 fit took minutes on the shared machine of this session (60 s
    # wall with 1 bag and 50 000 rounds: rel. RMSE 0.043 vs 0.06 with 1 000 rounds)
    return ExplainableBoostingRegressor(interactions=0, outer_bags=1, max_rounds=3000,
                                        n_jobs=1, random_state=0)


WEAK = [(0, 1, 0.4), (2, 3, 0.3), (5, 8, 0.25)]   # weak pairwise terms c x_a x_b


def dense_mlp(d, p_target, quick):
    from sklearn.neural_network import MLPRegressor

    H = max(1, round((p_target - 1) / (d + 2)))
    return H, (lambda: MLPRegressor(hidden_layer_sizes=(H,), activation="tanh", solver="lbfgs",
                                    max_iter=300 if quick else 1000, random_state=0))


def accuracy(dims, n, quick, weak=False):
    rows, data = [], {}
    for d in dims:
        inter = WEAK if weak else ()
        X, y = make_additive(n, d, interactions=inter, seed=0)
        Xt, yt = make_additive(20_000, d, interactions=inter, seed=1)
        res = {}
        m, t = fit_timed(lambda: AdditiveNetwork(d, shape="spline"), X, y)  # noqa: B023
        res["ours: P-spline shapes"] = (m.n_params_, rel_rmse(m.predict(Xt), yt), t)
        if weak:
            m, t = fit_timed(lambda: AdditiveNetwork(d, shape="spline",  # noqa: B023
                                                     interactions="auto"), X, y)
            res[f"ours: P-spline + auto pairs {m.interactions_}"] = (
                m.n_params_, rel_rmse(m.predict(Xt), yt), t)
        mlp_iter = 150 if quick else 400
        m, t = fit_timed(lambda: AdditiveNetwork(d, hidden=(16,), shape="mlp", random_state=0,  # noqa: B023
                                                 max_iter=mlp_iter), X, y)  # noqa: B023
        p_nam = m.n_params_
        res["ours: MLP shapes (16,) (NAM)"] = (p_nam, rel_rmse(m.predict(Xt), yt), t)
        if have("sklearn"):
            H, mk = dense_mlp(d, p_nam, quick)
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
            res["InterpretML EBM (1 bag, 3000 rounds, no interactions)"] = (
                "-", rel_rmse(m.predict(Xt), yt), t)
        for name, (p, e, t) in res.items():
            rows.append([d, name, p, e, t])
            print(f"{'weak ' if weak else ''}d={d} {name}: params {p}, rel. RMSE {e:.3g}, "
                  f"fit {t:.2f} s", flush=True)
        data[d] = {k: {"params": v[0], "rel_rmse": v[1], "fit_s": v[2]} for k, v in res.items()}
    return rows, data


CURVE_KEYS = ("ours spline", "pyGAM", "EBM", "dense MLP")


def sample_curves(d, ns, quick):
    Xt, yt = make_additive(20_000, d, seed=1)
    rows, data = [], {}
    for n in ns:
        X, y = make_additive(n, d, seed=0)
        sp = AdditiveNetwork(d, shape="spline").fit(X, y)
        r = {"ours spline": rel_rmse(sp.predict(Xt), yt)}
        if have("sklearn"):
            _, mk = dense_mlp(d, sp.n_params_, quick)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r["dense MLP"] = rel_rmse(mk().fit(X, y).predict(Xt), yt)
        if have("pygam"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r["pyGAM"] = rel_rmse(pygam_model(d).fit(X, y).predict(Xt), yt)
        if have("interpret"):
            r["EBM"] = rel_rmse(ebm_model().fit(X, y).predict(Xt), yt)
        print(f"n={n}: {r}", flush=True)
        rows.append([n] + [r.get(k, float("nan")) for k in CURVE_KEYS])
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
    nets = {}
    if have("torch"):
        import torch

        torch.set_num_threads(n_threads)
        Xtorch = torch.from_numpy(Xb)
    for name, m in [("ours P-spline", spline), ("ours MLP shapes (16,)", nam)]:
        data[name] = {"params": m.n_params_}
        if have("torch"):
            p = m.n_params_
            H = max(1, round((p - 1) / (d + 2)))
            nets[name] = torch.nn.Sequential(torch.nn.Linear(d, H), torch.nn.Tanh(),
                                             torch.nn.Linear(H, 1)).double()
            data[name]["torch_params"] = (d + 2) * H + 1
    # interleave ours and the peer: each timed twice, best of both rounds
    for _round in range(2):
        for name, m in [("ours P-spline", spline), ("ours MLP shapes (16,)", nam)]:
            t = timeit(lambda: m.predict(Xb, out=out), min_time=0.3, repeat=5)["best"]  # noqa: B023
            r = data[name]
            r["points_per_s"] = max(r.get("points_per_s", 0.0), len(Xb) / t)
            if name in nets:
                import torch

                with torch.inference_mode():
                    t = timeit(lambda: nets[name](Xtorch), min_time=0.3,  # noqa: B023
                               repeat=5)["best"]
                r["torch_points_per_s"] = max(r.get("torch_points_per_s", 0.0), len(Xb) / t)
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
        rows.append([n_threads, name, r["params"], r["points_per_s"],
                     f"{tp:.3g} ({r['torch_params']} params)" if tp else "n/a",
                     f"{r['points_per_s'] / tp:.1f}x" if tp else "n/a",
                     f"{gp:.3g}" if gp else "n/a",
                     f"{r['points_per_s'] / gp:.1f}x" if gp else "n/a"])
    return rows, data


def train_step(d, n_threads, batch=256, hidden=16, n_steps=200):
    """Seconds per AdamW step of the MLP-shape model: ours (kernels + effai_fast.optim)
    vs the same NAM in PyTorch (per-feature weights as batched tensors, torch.optim.AdamW)."""
    X, y = make_additive(batch * 8, d, seed=0)
    m = AdditiveNetwork(d, hidden=(hidden,), solver="adamw", batch_size=batch, max_iter=1,
                        random_state=0, n_threads=n_threads)
    # one epoch = 8 steps; time epochs and divide (includes shuffling and batch gathers)
    t_ours = timeit(lambda: m.fit(X, y), min_time=0.5, repeat=3)["best"]
    # subtract the fixed cost of fit() outside the steps (validation, init, final loss)
    m0 = AdditiveNetwork(d, hidden=(hidden,), solver="adamw", batch_size=batch, max_iter=1,
                         random_state=0, n_threads=n_threads)
    m0.set_params(max_iter=9)
    t9 = timeit(lambda: m0.fit(X, y), min_time=0.5, repeat=3)["best"]
    ours = (t9 - t_ours) / (8 * 8)
    res = {"ours_s_per_step": ours, "batch": batch, "d": d, "hidden": hidden,
           "threads": n_threads}
    if have("torch"):
        import torch

        torch.set_num_threads(n_threads)
        g = torch.Generator().manual_seed(0)
        W0 = (torch.randn(d, hidden, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
        b0 = (torch.rand(d, hidden, generator=g, dtype=torch.float64) * 4 - 2).requires_grad_()
        w1 = (torch.randn(d, hidden, generator=g, dtype=torch.float64) * 0.1).requires_grad_()
        bias = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.AdamW([W0, b0, w1, bias], lr=1e-2, weight_decay=0.0)
        Xt = torch.from_numpy(X)
        yt = torch.from_numpy((y - y.mean()) / y.std())

        def steps():
            perm = torch.randperm(Xt.shape[0], generator=g)
            for s0 in range(0, Xt.shape[0], batch):
                idx = perm[s0: s0 + batch]
                xb = Xt[idx]
                h = torch.tanh(xb[:, :, None] * W0 + b0)
                f = (h * w1).sum((1, 2)) + bias
                loss = 0.5 * ((f - yt[idx]) ** 2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()

        t = timeit(steps, min_time=0.5, repeat=3)["best"]
        res["torch_s_per_step"] = t / 8
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    dims = [10, 30] if args.quick else [10, 30, 100]
    t_start = time.perf_counter()
    tp_rows, tp = [], {}
    for nt in sorted({1, args.threads}):
        r, dd = throughput(10, nt)
        tp_rows += r
        tp[nt] = dd
    steps = [train_step(10, nt) for nt in sorted({1, args.threads})]
    acc_rows, acc = accuracy(dims, 500, args.quick)
    weak_rows, weak = accuracy([10, 30], 500, args.quick, weak=True)
    ns = [100, 250, 500, 1000] if args.quick else [100, 250, 500, 1000, 2000]
    curve_rows, curves = sample_curves(10, ns, args.quick)
    step_rows = [[s["threads"], s["batch"], f"{s['ours_s_per_step'] * 1e3:.3g}",
                  f"{s['torch_s_per_step'] * 1e3:.3g}" if "torch_s_per_step" in s else "n/a",
                  f"{s['torch_s_per_step'] / s['ours_s_per_step']:.2f}x"
                  if "torch_s_per_step" in s else "n/a"] for s in steps]
    import os

    load = os.getloadavg()[0]
    md = ["Held-out relative RMSE (RMSE / std of y on 20 000 points), n = 500 noiseless "
          "training points on `make_additive(n, d)`; fit wall time in seconds. Issue "
          "anchors (measured elsewhere on a similar truth): "
          + "; ".join(f"d={d}: {a}" for d, a in ANCHORS.items()) + f". EBM: {EBM_SETTINGS}.",
          "",
          md_table(["d", "model", "params", "rel. RMSE", "fit s"], acc_rows),
          "",
          "Weak-interaction variant: the same truth plus "
          + ", ".join(f"{c} x{a} x{b}" for a, b, c in WEAK) + " (n = 500):",
          "",
          md_table(["d", "model", "params", "rel. RMSE", "fit s"], weak_rows),
          "",
          "Samples to reach an error, d = 10 (held-out relative RMSE vs training size; the "
          "dense MLP has the spline model's parameter count):",
          "",
          md_table(["n", *CURVE_KEYS], curve_rows),
          "",
          "Prediction throughput, d = 10, 200 000 points, float64 (torch: dense tanh MLP with "
          "the same parameter count, inference mode, same thread count, timed interleaved "
          "with ours; pyGAM predict on 50 000 points):",
          "",
          md_table(["threads", "ours", "params", "points/s", "torch dense MLP points/s",
                    "vs torch", "pyGAM points/s", "vs pyGAM"], tp_rows),
          "",
          "Training step of the MLP-shape model (d = 10, hidden 16, AdamW, float64): ours "
          "(`solver=\"adamw\"`: the kernels' forward + VJP and `effai_fast.optim.AdamW`, "
          "including the batch gather) vs the same NAM in PyTorch (batched per-feature "
          "weights, autograd, `torch.optim.AdamW`):",
          "",
          md_table(["threads", "batch", "ours ms/step", "torch ms/step", "torch/ours"],
                   step_rows),
          "",
          f"The machine was shared with other jobs while measuring (2 cores, 1-min load "
          f"{load:.1f} at the end, run took {time.perf_counter() - t_start:.0f} s); ratios "
          "are from one run, ours and the peer timed interleaved."]
    write_result("additive", "Additive models vs dense MLP, pyGAM, EBM", "\n".join(md),
                 data={"accuracy": acc, "weak_interactions": weak, "curves": curves,
                       "throughput": tp, "train_step": steps},
                 command="python bench/bench_additive.py" + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
