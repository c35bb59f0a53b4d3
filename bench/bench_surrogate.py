"""Surrogate workflow: accuracy, fit time, prediction throughput, large screen, active learning.

Peers (same run): scikit-learn's GaussianProcessRegressor (RBF / Matern ARD) and
MLPRegressor.  ``python bench/bench_surrogate.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, have, md_table, timeit, write_result  # noqa: E402

from effai_fast.surrogate import (  # noqa: E402
    DesignSpec,
    GaussianProcess,
    MLPSurrogate,
    _kernels,
    get_problem,
    latin_hypercube,
    optimize,
    screen,
    sobol,
)


def one_blas_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


HAVE_ADDITIVE = have("effai_fast.additive") and hasattr(
    __import__("effai_fast.additive", fromlist=["x"]), "AdditiveNetwork")


def rel_rmse(pred, y):
    return float(np.sqrt(np.mean((pred - y) ** 2)) / np.std(y))


def sk_gp(kind, d, X, y, n_restarts):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern

    base = (RBF(np.full(d, 0.5), (1e-2, 1e2)) if kind == "se"
            else Matern(np.full(d, 0.5), (1e-2, 1e2), nu=2.5))
    kern = ConstantKernel(1.0, (1e-4, 1e4)) * base
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at the length-scale bounds
        return GaussianProcessRegressor(kern, alpha=1e-8, normalize_y=True,
                                        n_restarts_optimizer=n_restarts,
                                        random_state=0).fit(X, y)



def test_points(p, n_test):
    """The held-out set of every accuracy comparison: (X, y, X scaled to the unit cube)."""
    Xt = sobol(p.domain, n_test, seed=99)
    return Xt, p(Xt), p.domain.to_unit(Xt)


def design(p, n, seed):
    """One training design: n Latin-hypercube points and the simulator's values there."""
    X = latin_hypercube(p.domain, n, seed=seed)
    return X, p(X)


N_DESIGNS = 5
# scikit-learn at n = 1000 (~25-30 CPU s per fit with no restarts here): the first designs only
N_SK_DESIGNS_1000 = 2


def accuracy(quick):
    """Paired comparison on several independent LHS designs per (problem, n): ours and
    scikit-learn fitted on the same design, scored on the same 10^5 Sobol' points."""
    rows, summary, data = [], [], []
    sizes = (50, 200) if quick else (50, 200, 1000)
    n_test = 20_000 if quick else 100_000
    n_designs = 2 if quick else N_DESIGNS
    anchors = {"borehole": {50: 1.4e-2, 200: 1.85e-3, 1000: 3.2e-4},
               "wing_weight": {50: 3.7e-2, 200: 3.2e-3, 1000: 2.6e-4}}
    for name in ("borehole", "wing_weight"):
        p = get_problem(name)
        Xt, yt, Ut = test_points(p, n_test)
        for n in sizes:
            per = {"ours": [], "const": [], "sk": [], "cpu": []}
            for k in range(n_designs):
                seed = n + k
                X, y = design(p, n, seed)
                with one_blas_thread():
                    c0 = time.thread_time()
                    gp = GaussianProcess(seed=0, n_threads=1).fit(X, y)
                    cpu = time.thread_time() - c0
                r = rel_rmse(gp.predict(Xt), yt)
                row = {"problem": name, "n": n, "design_seed": seed, "ours": r, "fit_cpu_s": cpu,
                       "mean": gp.mean_, "interpolating": bool(gp.interpolating_),
                       "loo_rmse": gp.loo_rmse_, "loo_log_density": gp.loo_log_density_}
                if gp.mean_ == "constant" and n > 256:
                    r_c = r      # the subset stage chose constant: the same model
                else:
                    with one_blas_thread():
                        gc = GaussianProcess(seed=0, n_threads=1, mean="constant").fit(X, y)
                    r_c = rel_rmse(gc.predict(Xt), yt)
                row["ours_constant_mean"] = r_c
                r_sk = None
                if have("sklearn") and (n <= 200 or k < N_SK_DESIGNS_1000):
                    with one_blas_thread():
                        c0 = time.thread_time()
                        sk = sk_gp("se", p.d, p.domain.to_unit(X), y,
                                   n_restarts=2 if n <= 200 else 0)
                        row["sklearn_fit_cpu_s"] = time.thread_time() - c0
                    r_sk = rel_rmse(sk.predict(Ut), yt)
                    per["sk"].append(r_sk)
                row["sklearn"] = r_sk
                per["ours"].append(r)
                per["const"].append(r_c)
                per["cpu"].append(cpu)
                data.append(row)
                label = gp.mean_ + (", interpolating" if gp.interpolating_ else "")
                rows.append([name, n, seed, r, label, r_c, "-" if r_sk is None else r_sk,
                             "-" if r_sk is None else r / r_sk, cpu])
                print(rows[-1], flush=True)
            o, c = np.array(per["ours"]), np.array(per["const"])
            if per["sk"]:
                sk_ = np.array(per["sk"])
                o_ = o[:len(sk_)]          # n = 1000: the designs scikit-learn was run on
                sk_mean, wins = float(sk_.mean()), f"{int((o_ <= sk_).sum())}/{len(o_)}"
                gratio = float(np.exp(np.mean(np.log(o_ / sk_))))
            else:
                sk_mean, wins, gratio = "-", "-", "-"
            summary.append([name, n, float(o.mean()), float(c.mean()), sk_mean, gratio, wins,
                            anchors[name][n], float(np.mean(per["cpu"]))])
    md = ("### Held-out accuracy (relative RMSE = RMSE / std of the test targets, "
          f"{n_test:,} Sobol test points; {n_designs} independent LHS designs per (problem, n), "
          "seeds n .. n + "
          f"{n_designs - 1}; one core)\n\n"
          "Paired: ours and scikit-learn are fitted on the same designs.  Ours: the default "
          "`GaussianProcess()` (SE ARD; `mean=\"auto\"` picks a constant or linear prior mean "
          "by the closed-form leave-one-out log predictive density, the linear-mean model "
          "fitted by restricted maximum likelihood (REML, `reml=True`); `interpolating`: the "
          "maximum-likelihood "
          "nugget was below 100 x interpolation_noise, so the nugget was fixed at 1e-9 and the "
          "hyperparameters refined).  `ours, constant mean`: `mean=\"constant\"` (the previous "
          "default; at n = 1000, when the subset stage chose the constant mean, it is the same "
          "model).  scikit-learn: GaussianProcessRegressor, ConstantKernel x RBF ARD, "
          "alpha = 1e-8, normalize_y, 2 restarts, fitted on inputs scaled to the unit cube "
          "(which helps it); at n = 1000 on the first "
          f"{N_SK_DESIGNS_1000} designs only, without restarts (its single start, "
          "length scales 0.5, is also ours; ~25-30 CPU s per fit here), and the n = 1000 "
          "`sklearn`, `ours/sklearn` and `ours <= sklearn` summary entries are over those "
          "designs (the `ours` mean is over all 5).  Issue "
          "anchors (best peer, measured elsewhere on one design): Borehole 1.4e-2 / 1.85e-3 / "
          "3.2e-4, Wing weight 3.7e-2 / 3.2e-3 / 2.6e-4 at n = 50 / 200 / 1000.  fit CPU s: "
          "CPU time of the calling thread (BLAS limited to 1 thread).\n\n"
          "Summary (means over the designs; `ours/sklearn`: geometric mean of the paired "
          "ratios; `ours <= sklearn`: designs on which ours is at least as accurate):\n\n"
          + md_table(["problem", "n", "ours", "ours, constant mean", "sklearn RBF ARD",
                      "ours/sklearn", "ours <= sklearn", "issue anchor", "ours fit CPU s"],
                     summary)
          + "\n\nPer design:\n\n"
          + md_table(["problem", "n", "design seed", "ours", "ours: mean chosen",
                      "ours, constant mean", "sklearn RBF ARD", "ours/sklearn",
                      "ours fit CPU s"], rows))
    return md, {"designs": data, "summary": summary}


def fit_time(quick):
    p = get_problem("wing_weight")
    rows, data = [], {}
    n = 1000
    X = latin_hypercube(p.domain, n, seed=5)
    y = p(X)
    with one_blas_thread():
        t0, c0 = time.perf_counter(), time.thread_time()
        g = GaussianProcess(seed=0, n_threads=1).fit(X, y)
        t, c = time.perf_counter() - t0, time.thread_time() - c0
    data["effai_n1000_interpolating"] = bool(g.interpolating_)
    data["effai_n1000_s"] = t
    data["effai_n1000_cpu_s"] = c
    rows.append(["effai GP SE ARD", n, p.d, t, c])
    if have("sklearn"):
        n_sk = 200
        Xs, ys = X[:n_sk], y[:n_sk]
        with one_blas_thread():
            t0, c0 = time.perf_counter(), time.process_time()
            sk_gp("se", p.d, p.domain.to_unit(Xs), ys, n_restarts=2)
            t_sk, c_sk = time.perf_counter() - t0, time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            GaussianProcess(seed=0, n_threads=1).fit(Xs, ys)
            t_ours, c_ours = time.perf_counter() - t0, time.process_time() - c0
        data.update(sklearn_n200_s=t_sk, effai_n200_s=t_ours, sklearn_n200_cpu_s=c_sk,
                    effai_n200_cpu_s=c_ours)
        rows.append(["sklearn GPR RBF ARD (2 restarts)", n_sk, p.d, t_sk, c_sk])
        rows.append(["effai GP SE ARD", n_sk, p.d, t_ours, c_ours])
    md = ("### GP fit time (Wing weight, d = 10, one core: BLAS limited to 1 thread)\n\n"
          "Target: n = 1000 in at most 10 s (sklearn: 110-200 s per the issue; timed here "
          "only at n = 200).  Ours (the default `GaussianProcess()`): L-BFGS-B with the "
          "analytic gradient from 4 starts on a 256-point subset for the constant prior "
          "mean, one start (its optimum) for the linear mean; the mean with the larger "
          "closed-form leave-one-out log predictive density on the subset is kept and refined "
          "once on all "
          "points, then (noise-free data: the fitted nugget < 1e-7) a second refinement "
          "with the nugget fixed at interpolation_noise = 1e-9.  The refinements on all "
          "points stop when the likelihood is flat to its rounding noise (an iteration "
          "gaining < 2e-6 of |lml|, or 6 evaluations near the best without a 1e-5 gain).\n\n"
          + "CPU s is the CPU time of the calling thread (the fit runs on it): on this "
          "shared machine the wall time includes waiting for a core.\n\n"
          + md_table(["model", "n", "d", "wall s", "CPU s"], rows))
    return md, data


def cpu_rate(fn, m, reps=3):
    """Points per CPU-second of a single-threaded call (best of reps).

    The clock is the calling thread's CPU time: every call timed here runs on
    that thread (ours with n_threads=1, scikit-learn under threadpool_limits(1)).
    Process CPU time would also count other threads of the process, e.g. pool
    threads still spinning after the 2-thread rows timed just before."""
    fn()
    best = float("inf")
    for _ in range(reps):
        c0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - c0)
    return m / best if best > 0 else float("inf")


def throughput(quick):
    rows, data = [], []
    rng = np.random.default_rng(0)
    d = 10
    m = 100_000 if quick else 400_000
    Xc = rng.random((m, d))
    for n in (200, 1000):
        X = rng.random((n, d))
        y = np.sin(X @ rng.standard_normal(d))
        gp = GaussianProcess(optimizer=None, length_scale=np.full(d, 0.8)).fit(X, y)
        for nt in (1, 2):
            t = timeit(lambda gp=gp, nt=nt: gp.predict(Xc, n_threads=nt), repeat=3,
                       min_time=0.3)["best"]
            cr = cpu_rate(lambda gp=gp: gp.predict(Xc, n_threads=1), m) if nt == 1 else ""
            rows.append([f"GP mean, n={n}", f"effai float64 fused, {nt} thr", m / t, cr])
            data.append({"what": f"gp_mean_n{n}", "impl": f"effai_{nt}thr", "pts_per_s": m / t,
                         "pts_per_cpu_s": cr or None})
        # the previous kernel (direct sum of squared differences), same call otherwise
        p_ = gp._params(np.float64)
        out = np.empty(m)

        def direct(nt, gp=gp, p_=p_, out=out):
            _kernels.py_kernel_sum_direct(Xc, p_["center"], p_["inv_scale"], p_["ZT"],
                                          p_["weights"], np.empty(0), gp.y_mean_, 0, out, nt)

        for nt in (1, 2):
            t = timeit(lambda nt=nt: direct(nt), repeat=3, min_time=0.3)["best"]
            cr = cpu_rate(lambda: direct(1), m) if nt == 1 else ""
            rows.append([f"GP mean, n={n}", f"effai float64 direct form, {nt} thr",
                         m / t, cr])
            data.append({"what": f"gp_mean_n{n}", "impl": f"effai_direct_{nt}thr",
                         "pts_per_s": m / t, "pts_per_cpu_s": cr or None})
        t = timeit(lambda gp=gp: gp.predict(Xc[:20000], return_std=True, n_threads=1), repeat=3,
                   min_time=0.3)["best"]
        rows.append([f"GP mean+std, n={n}", "effai float64, 1 thr", 20000 / t, ""])
        if have("sklearn"):
            from sklearn.gaussian_process import GaussianProcessRegressor
            from sklearn.gaussian_process.kernels import RBF, ConstantKernel

            sk = GaussianProcessRegressor(ConstantKernel(1.0, "fixed") * RBF(0.8, "fixed"),
                                          optimizer=None, normalize_y=True).fit(X, y)
            ms = 20000
            with one_blas_thread():
                t = timeit(lambda sk=sk, ms=ms: sk.predict(Xc[:ms]), repeat=3,
                           min_time=0.3)["best"]
                cr = cpu_rate(lambda sk=sk, ms=ms: sk.predict(Xc[:ms]), ms)
            rows.append([f"GP mean, n={n}", "sklearn, 1 thr", ms / t, cr])
            data.append({"what": f"gp_mean_n{n}", "impl": "sklearn_1thr", "pts_per_s": ms / t})
    # MLP 10 -> 32 -> 32 -> 1
    X = rng.random((300, d))
    y = np.sin(X.sum(axis=1))
    mlp = MLPSurrogate(hidden=(32, 32), max_iter=200).fit(X, y)
    Xc32 = Xc.astype(np.float32)
    for dt, arr in (("float32", Xc32), ("float64", Xc)):
        for nt in (1, 2):
            t = timeit(lambda arr=arr, nt=nt: mlp.predict(arr, n_threads=nt), repeat=3,
                       min_time=0.3)["best"]
            cr = cpu_rate(lambda arr=arr: mlp.predict(arr, n_threads=1), m) if nt == 1 else ""
            rows.append(["MLP 10-32-32-1", f"effai {dt}, {nt} thr", m / t, cr])
            data.append({"what": "mlp", "impl": f"effai_{dt}_{nt}thr", "pts_per_s": m / t})
    if HAVE_ADDITIVE:
        # the screening path: AdditiveNetwork.predict (validation, the in-kernel finiteness
        # check, the AVX2 main-effect loop); "reference loop" is the previous Cython loop
        from effai_fast.additive import AdditiveNetwork
        from effai_fast.additive import _kernels as _akern

        Xa = rng.uniform(-1.0, 1.0, (300, d))
        ya = np.sin(2 * Xa[:, 0]) + Xa[:, 1] ** 2 + np.abs(Xa[:, 2]) + 0.3 * Xa[:, 3:].sum(axis=1)
        Xca = np.ascontiguousarray(rng.uniform(-1.0, 1.0, (m, d)))
        oa = np.empty(m)
        variants = [("AdditiveNetwork (spline, d=10)", None)]
        ya2 = ya + 0.5 * Xa[:, 0] * Xa[:, 1] + 0.4 * Xa[:, 2] * Xa[:, 3]
        variants.append(("AdditiveNetwork (spline, d=10, 2 pairs)", [(0, 1), (2, 3)]))
        for label, pairs in variants:
            for nt in (1, 2):
                am = AdditiveNetwork(d, shape="spline", interactions=pairs,
                                     n_threads=nt).fit(Xa, ya if pairs is None else ya2)
                t = timeit(lambda am=am: am.predict(Xca, out=oa), repeat=5,
                           min_time=0.3)["best"]
                cr = cpu_rate(lambda am=am: am.predict(Xca, out=oa), m, reps=15) \
                    if nt == 1 else ""
                rows.append([label, f"effai float64 predict, {nt} thr", m / t, cr])
                data.append({"what": "additive" if pairs is None else "additive_pairs",
                             "impl": f"effai_{nt}thr", "pts_per_s": m / t,
                             "pts_per_cpu_s": cr or None})
            if pairs is None:
                am.set_params(n_threads=1)   # the loop above left it at 2 threads
                Xca32 = Xca.astype(np.float32)
                oa32 = np.empty(m, np.float32)
                cr = cpu_rate(lambda am=am: am.predict(Xca32, out=oa32), m, reps=15)
                rows.append([label, "effai float32 predict, 1 thr", "", cr])
                args = (am._p_main_feat, am._p_main_coef, am._p_main_map, am._p_pair_feat,
                        am._p_pair_coef, am._p_pair_map, am._sp_K2, float(am._p_bias), oa, 1)
                cr = cpu_rate(lambda args=args: _akern.spline_forward(Xca, *args, 2), m,
                              reps=15)
                rows.append([label, "reference loop (previous kernel), 1 thr", "", cr])
                data.append({"what": "additive", "impl": "reference_1thr",
                             "pts_per_cpu_s": cr})
    if have("sklearn"):
        from sklearn.neural_network import MLPRegressor

        skm = MLPRegressor(hidden_layer_sizes=(32, 32), activation="tanh", max_iter=50)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: only predict is timed
            skm.fit(X, y)
        with one_blas_thread():
            t = timeit(lambda: skm.predict(Xc), repeat=3, min_time=0.3)["best"]
            cr = cpu_rate(lambda: skm.predict(Xc), m)
        rows.append(["MLP 10-32-32-1", "sklearn MLPRegressor float64, 1 thr", m / t, cr])
        data.append({"what": "mlp", "impl": "sklearn_1thr", "pts_per_s": m / t})
    md = ("### Prediction throughput (points/s; d = 10; per core unless 2 thr)\n\n"
          "Targets per core: GP mean n=1000 >= 5e5 (sklearn 5e4), n=200 >= 2e6 (sklearn "
          "1.6e5); MLP >= 5e6 (sklearn ~1e6); additive model >= 5e7.\n\n"
          + "points/CPU-s: the same single-threaded call per second of CPU time of the "
          "calling thread, on which every such call runs (process CPU time would also "
          "count pool threads still spinning after the 2-thread rows) "
          "(what a core delivers when it is not shared; best of 3 calls, best of 15 for the "
          "additive rows, whose calls take ~10 ms).  `fused`: the register-blocked "
          "|z|^2 + |z_j|^2 - 2 z.z_j kernel (the default for the SE GP), computing 2^e with "
          "log2(e) folded into the exponent, a degree-10 polynomial (relative error < 5e-16) "
          "and, on AVX2+FMA CPUs, an intrinsics version; `direct form`: the previous "
          "algorithm (d passes of squared differences, then exp and dot), kept for float32 "
          "and the sqrt-based kernels.  Additive model: `AdditiveNetwork.predict` on "
          "400,000 points (32 MB of float64, streamed from RAM), the call `screen` makes "
          "(validation; one pass over X: each group of 8 rows is checked for NaN/inf just "
          "before the AVX2 main-effect loop uses it, rows 8 groups (64 rows) ahead prefetched; "
          "8 points per pass in two registers, "
          "the 4 power-form coefficients of each point's interval by one aligned load and "
          "an in-register transpose, FMA Horner, the 10 components summed in registers); "
          "the float32 row reads float32 X (half the bytes; rows widened to float64 4 at a "
          "time in the register, float64 arithmetic); "
          "`reference loop` is the previous Cython kernel on the same data.  The pair "
          "row adds 2 bicubic tensor-product units (per point, scalar de Boor weights): "
          "their cost is the difference from the main-effects row.  This CPU has AVX2, "
          "not AVX-512.\n\n"
          + md_table(["model", "implementation", "points/s (wall)", "points/CPU-s"], rows))
    return md, data


def screen_stages(gp, domain, chunk):
    """CPU seconds per chunk of each stage of a screen (one thread)."""
    from effai_fast.surrogate._screen import _score_chunk, _TopK

    spec = DesignSpec(domain, 40 * chunk, seed=2)
    stream = spec.chunks(chunk)
    next(stream)
    c0 = time.process_time()
    for _ in range(8):
        _, X = next(stream)
    gen = (time.process_time() - c0) / 8
    c0 = time.process_time()
    for _ in range(3):
        spec.generate(20 * chunk, 21 * chunk)
    gen_ff = (time.process_time() - c0) / 3
    c0 = time.process_time()
    for _ in range(4):
        gp.predict(X, n_threads=1)
    pred = (time.process_time() - c0) / 4
    top = _TopK(10)
    c0 = time.process_time()
    for i in range(4):
        top.push(*_score_chunk(gp, X, i * chunk, need_std=False, maximize=True, score=None,
                               n_threads=1))
    rest = (time.process_time() - c0) / 4 - pred
    return {"generate_stream": gen, "generate_fast_forward_at_20_chunks": gen_ff,
            "predict_1thr": pred, "validate_topk": max(rest, 0.0)}


def large_screen(quick, n_screen=None):
    p = get_problem("borehole")
    X = latin_hypercube(p.domain, 200, seed=1)
    gp = GaussianProcess(seed=0, n_restarts=1).fit(X, p(X))
    chunk = 1 << 16
    stages = screen_stages(gp, p.domain, chunk)
    n = n_screen or ((1 << 22) if quick else 10**8)
    load0 = os.getloadavg()[0]
    c0 = time.process_time()
    res = screen(gp, DesignSpec(p.domain, n, seed=2), top_k=10, chunk_size=chunk,
                 progress=None)
    cpu = time.process_time() - c0
    load1 = os.getloadavg()[0]
    t1e9 = 1e9 / res.rate
    t1e9_cpu = 1e9 / n * cpu / 2  # two cores given to the screen alone
    srows = [[k.replace("_", " "), 1e3 * v, chunk / v if v > 0 else float("inf")]
             for k, v in stages.items()]
    md = (f"### Large screen (Borehole GP from 200 runs, {n:,} scrambled-Sobol candidates "
          "generated chunk by chunk, top-10, 2 threads)\n\n"
          f"Load average {load0:.1f} before and {load1:.1f} after the screen (2 cores shared "
          "with other helpers' builds and tests).  The issue's target: 10^9 candidates in at "
          "most 10 minutes on 2 cores.\n\n"
          + "`CPU s`: process CPU time of the screen (both threads); `10^9 on 2 free cores` "
          "= 10^9/n x CPU s / 2, the wall time if the two cores were not shared (an "
          "extrapolation, not a measurement).\n\n"
          + md_table(["candidates", "wall s", "candidates/s (wall)", "CPU s",
                      "10^9 at this wall rate (min)", "10^9 on 2 free cores (min)",
                      "best predicted", "simulator at best"],
                     [[n, res.seconds, res.rate, cpu, t1e9 / 60, t1e9_cpu / 60,
                       float(res.mean[0]), float(p(res.X[0]))]])
          + "\n\nStages per chunk of 65,536 candidates (CPU time, one thread).  In the "
          "screen, generation runs in a helper thread while the kernels predict the "
          "previous chunk.  `generate fast forward` is the previous way (a fresh "
          "Sobol' engine fast-forwarded to each chunk, O(offset) in scipy), timed at "
          "chunk 20: at chunk 15,000 of a 10^9 screen it costs ~750x more.\n\n"
          + md_table(["stage", "ms per chunk", "candidates/CPU-s"], srows))
    return md, {"n": n, "seconds": res.seconds, "rate": res.rate, "t_1e9_s": t1e9,
                "cpu_s": cpu, "t_1e9_two_free_cores_s": t1e9_cpu,
                "load_before": load0, "load_after": load1, "stages_cpu_s": stages}


def active_learning(quick):
    rows, data = [], []
    seeds = (0, 1) if quick else (0, 1, 2)
    for name, budget, n0, batch in (("branin", 30, 8, 2), ("hartmann6", 60, 14, 4)):
        p = get_problem(name)
        res = {"EI loop": [], "random search": [], "LHS + GP (one shot)": []}
        for s in seeds:
            n_rounds = (budget - n0) // batch
            h = optimize(p, p.domain, n_initial=n0, n_rounds=n_rounds, batch_size=batch,
                         seed=s, n_candidates=4096)
            res["EI loop"].append(h.best_y)
            rng = np.random.default_rng(100 + s)
            res["random search"].append(float(p(p.domain.from_unit(
                rng.random((budget, p.d)))).min()))
            Xl = latin_hypercube(p.domain, budget - 1, seed=200 + s)
            yl = p(Xl)
            gp = GaussianProcess(kernel="matern52", seed=s).fit(Xl, yl)
            top = screen(gp, DesignSpec(p.domain, 1 << 16, seed=s), top_k=1, maximize=False)
            res["LHS + GP (one shot)"].append(float(min(yl.min(), p(top.X[0]))))
            print(name, s, {k: v[-1] for k, v in res.items()}, flush=True)
        for method, vals in res.items():
            vals = np.array(vals)
            gap = vals - p.minimum
            rows.append([name, budget, method, float(np.mean(vals)), float(np.median(gap)),
                         float(np.max(gap))])
            data.append({"problem": name, "budget": budget, "method": method,
                         "best": vals.tolist(), "optimum": p.minimum})
    md = ("### Active learning: best value after a simulator budget "
          f"({len(seeds)} seeds; minimisation)\n\n"
          "EI loop: GP Matern-5/2 + expected improvement, kriging-believer batches (Branin "
          "batches of 2, Hartmann-6 of 4). LHS + GP: an LHS of budget-1 points, the GP's "
          "predicted minimum over 65,536 Sobol candidates as the last call.\n\n"
          + md_table(["problem", "calls", "method", "mean best", "median gap", "worst gap"],
                     rows))
    return md, data


def smt_krg(X_unit, y):
    """SMT's kriging (KRG: squared-exponential ARD correlation, constant trend, its own
    likelihood optimiser and defaults), fitted on inputs scaled to the unit cube."""
    from smt.surrogate_models import KRG

    m = KRG(theta0=[1e-2] * X_unit.shape[1], corr="squar_exp", poly="constant",
            print_global=False)
    m.set_training_values(X_unit, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m.train()
    return m


def smt(quick):
    """Paired comparison with SMT's kriging on the accuracy section's designs (n = 50 and
    200; SMT's fit at n = 1000 took 1136 s per the issue, too slow to repeat here)."""
    if not have("smt"):
        return ("### SMT kriging (paired designs)\n\nNot run: SMT is not installed "
                "(`pip install smt`)."), None
    sizes = (50,) if quick else (50, 200)
    n_designs = 2 if quick else N_DESIGNS
    n_test = 20_000 if quick else 100_000
    rows, summary, data = [], [], []
    for name in ("borehole", "wing_weight"):
        p = get_problem(name)
        Xt, yt, Ut = test_points(p, n_test)
        for n in sizes:
            ours, peer = [], []
            for k in range(n_designs):
                seed = n + k
                X, y = design(p, n, seed)
                with one_blas_thread():
                    r = rel_rmse(GaussianProcess(seed=0, n_threads=1).fit(X, y).predict(Xt), yt)
                    c0 = time.thread_time()
                    m = smt_krg(p.domain.to_unit(X), y)
                    cpu = time.thread_time() - c0
                    r_smt = rel_rmse(m.predict_values(Ut).ravel(), yt)
                ours.append(r)
                peer.append(r_smt)
                rows.append([name, n, seed, r, r_smt, r / r_smt, cpu])
                data.append({"problem": name, "n": n, "design_seed": seed, "ours": r,
                             "smt": r_smt, "smt_fit_cpu_s": cpu})
                print(rows[-1], flush=True)
            o, q = np.array(ours), np.array(peer)
            summary.append([name, n, float(o.mean()), float(q.mean()),
                            float(np.exp(np.mean(np.log(o / q)))),
                            f"{int((o <= q).sum())}/{len(o)}"])
    import smt as smt_pkg
    md = ("### SMT kriging (paired designs)\n\n"
          f"SMT {smt_pkg.__version__} `KRG` (squared-exponential ARD correlation, constant "
          "trend, its default optimiser and bounds, theta0 = 0.01, inputs scaled to the unit "
          "cube) against our default `GaussianProcess()` on the accuracy section's designs "
          f"(seeds n .. n + {n_designs - 1}) and its {n_test:,} Sobol test points; relative "
          "RMSE.  n = 1000 is not run: the issue measured 1136 s for one SMT fit there.  "
          "`smt fit CPU s`: CPU time of the calling thread, BLAS on 1 thread.\n\n"
          + md_table(["problem", "n", "ours", "SMT KRG", "ours/SMT (geometric mean)",
                      "ours <= SMT"], summary)
          + "\n\nPer design:\n\n"
          + md_table(["problem", "n", "design seed", "ours", "SMT KRG", "ours/SMT",
                      "SMT fit CPU s"], rows))
    return md, {"designs": data, "summary": summary}


SECTIONS = {"accuracy": "### Held-out accuracy", "fit_time": "### GP fit time",
            "throughput": "### Prediction throughput", "large_screen": "### Large screen",
            "active_learning": "### Active learning", "smt": "### SMT kriging"}


def _previous_sections():
    """(markdown per section, data per section, sections not produced here) of the
    existing results, so that ``--only`` re-runs a part and keeps the rest."""
    md_path, js_path = RESULTS / "surrogate.md", RESULTS / "surrogate.json"
    if not md_path.exists():
        return {}, {}, ""
    text = md_path.read_text()
    chunks = ["### " + c for c in text.split("\n### ")[1:]]
    md, extra = {}, []
    for c in chunks:
        name = next((k for k, h in SECTIONS.items() if c.startswith(h)), None)
        if name is None:
            extra.append(c.strip())
        else:
            md[name] = c.strip()
    data = json.loads(js_path.read_text())["data"] if js_path.exists() else {}
    return md, data, "\n\n".join(extra)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--screen-n", type=int, default=None,
                    help="candidates of the large screen (default 1e8, 2^22 with --quick)")
    ap.add_argument("--only", default=None,
                    help="comma-separated sections to re-run (" + ", ".join(SECTIONS)
                    + "); the others are kept from the existing results/surrogate.md/.json")
    args = ap.parse_args()
    only = None if args.only is None else set(args.only.split(","))
    if only is not None and not only <= set(SECTIONS):
        ap.error(f"--only must name sections among {', '.join(SECTIONS)}")
    load = os.getloadavg()[0]
    old_md, old_data, extra = _previous_sections() if only is not None else ({}, {}, "")
    parts, data = [], {}
    for name, fn in (("accuracy", accuracy), ("fit_time", fit_time),
                     ("throughput", throughput), ("large_screen", large_screen),
                     ("active_learning", active_learning), ("smt", smt)):
        if only is not None and name not in only:
            parts.append(old_md.get(name, ""))
            data[name] = old_data.get(name)
            continue
        t0 = time.perf_counter()
        md, dat = fn(args.quick, args.screen_n) if fn is large_screen else fn(args.quick)
        parts.append(md)
        data[name] = dat
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", flush=True)
    if only is not None:
        parts = [p for p in parts if p]
        if extra:
            parts.append(extra)
    head = (f"2-core machine, load {load:.1f} at the start of this run; ratios within a "
            "section are from one run.  "
            + ("" if only is None else
               f"This run re-ran {', '.join(sorted(only))}; the other sections are kept "
               "from earlier runs (the header's commit and load are this run's).  ")
            + ("`--quick` run: smaller sizes.\n\n" if args.quick else "\n\n"))
    write_result("surrogate", "Surrogate workflow (effai_fast.surrogate)",
                 head + "\n\n".join(parts), data,
                 command="python bench/bench_surrogate.py" + (" --quick" if args.quick else "")
                 + (f" --screen-n {args.screen_n}" if args.screen_n else ""))


if __name__ == "__main__":
    main()
