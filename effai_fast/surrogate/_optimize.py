"""The active-learning loop: design, fit, screen an acquisition, simulate, refit.

Design note
-----------
Round 0 runs a Latin hypercube of ``n_initial`` points through the simulator.
Every later round fits a fresh surrogate on the finite results, screens
``n_candidates`` candidates (scrambled Sobol' over the domain plus Gaussian
perturbations of the best points so far) with the acquisition, and picks a batch
of ``batch_size`` among the best ``pool`` of them:

* ``"ei"`` / ``"ucb"`` with a model that has a predictive std (the GP): the
  *kriging believer* -- after each pick the posterior covariance of the pool is
  updated as if the pick had been observed at its predicted mean (a rank-one
  update, hyperparameters fixed), which lowers the std around it, and the
  acquisition is recomputed; EI uses the believed incumbent.
* ``"greedy"`` (mean only), or a model without std: a distance penalty -- no two
  picks closer than ``0.1 * sqrt(d)`` in the unit cube (relaxed if the pool runs out).

The simulator is a Python callable on one point ``x`` of shape (d,) returning a
float.  Exceptions and NaN/inf results are recorded (status ``"error"`` /
``"nan"`` with the message) and the loop goes on; failed points are not used
for fitting.  With ``n_jobs > 1`` the batch runs in a process pool started with
the *spawn* method: after OpenMP threads ran in the parent, a forked child can
deadlock in libgomp, and spawn avoids that (the simulator must then be
picklable: a module-level function or a :class:`Problem`).

The history is written after every round to ``checkpoint`` (one ``.npz``: the
arrays plus a JSON string of the metadata; no pickle), atomically.  Calling
``optimize`` again with the same checkpoint resumes after the last complete
round; every round's randomness derives from ``(seed, round)``, so a resumed run
gives the same result as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from effai_fast._validation import check_int
from effai_fast.surrogate._acquisition import expected_improvement, upper_confidence_bound
from effai_fast.surrogate._base import clone, has_std
from effai_fast.surrogate._design import DesignSpec, _check_domain, latin_hypercube
from effai_fast.surrogate._gp import GaussianProcess, _corr_and_grad_weight
from effai_fast.surrogate._screen import screen

__all__ = ["History", "optimize"]

_FORMAT = "effai_fast.surrogate.History/1"


class History:
    """Everything an :func:`optimize` run did, in simulator-call order.

    Attributes
    ----------
    X : ndarray of shape (N, d)
        Points sent to the simulator.
    y : ndarray of shape (N,)
        Results (NaN where the call failed or returned a non-finite value).
    round : ndarray of shape (N,)
        Round of each call (0 = initial design).
    status : ndarray of str, shape (N,)
        ``"ok"``, ``"nan"`` or ``"error"``.
    errors : dict of int -> str
        Error message per failed call index.
    rounds : list of dict
        Per-round figures: evaluations, best so far, fit/screen/simulate seconds,
        candidates screened and rate.
    maximize : bool
    domain : Domain
    """

    def __init__(self, domain, maximize: bool = False, meta: dict | None = None):
        self.domain = domain
        self.maximize = bool(maximize)
        d = domain.d
        self.X = np.empty((0, d))
        self.y = np.empty(0)
        self.round = np.empty(0, dtype=np.int64)
        self.status = np.empty(0, dtype="<U5")
        self.errors: dict[int, str] = {}
        self.rounds: list[dict] = []
        self.meta = dict(meta or {})

    # --------------------------------------------------------------- contents
    def _append(self, X, y, rnd, status, errors):
        base = self.X.shape[0]
        self.X = np.vstack([self.X, X])
        self.y = np.concatenate([self.y, y])
        self.round = np.concatenate([self.round, np.full(len(y), rnd, dtype=np.int64)])
        self.status = np.concatenate([self.status, np.asarray(status, dtype="<U5")])
        for i, msg in errors.items():
            self.errors[base + i] = msg

    @property
    def n_calls(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_failed(self) -> int:
        return int((self.status != "ok").sum())

    @property
    def ok(self) -> np.ndarray:
        return self.status == "ok"

    def _best_index(self):
        ok = np.flatnonzero(self.ok)
        if not ok.size:
            return None
        vals = self.y[ok]
        return int(ok[np.argmax(vals) if self.maximize else np.argmin(vals)])

    @property
    def best_x(self):
        i = self._best_index()
        return None if i is None else self.X[i].copy()

    @property
    def best_y(self) -> float:
        i = self._best_index()
        return float("nan") if i is None else float(self.y[i])

    def best_so_far(self) -> np.ndarray:
        """Best finite value after each simulator call (NaN before the first success)."""
        y = np.where(self.ok, self.y, -np.inf if self.maximize else np.inf)
        acc = np.maximum.accumulate(y) if self.maximize else np.minimum.accumulate(y)
        return np.where(np.isfinite(acc), acc, np.nan)

    # ------------------------------------------------------------ persistence
    def save(self, path) -> Path:
        """Write the history to ``path`` (.npz: arrays + a JSON metadata string), atomically."""
        path = Path(path)
        meta = {"format": _FORMAT, "maximize": self.maximize, "domain": self.domain.to_dict(),
                "errors": {str(k): v for k, v in self.errors.items()},
                "rounds": self.rounds, "meta": self.meta}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, X=self.X, y=self.y, round=self.round, status=self.status,
                 meta=np.array(json.dumps(meta, default=float)))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path) -> History:
        """Read a history written by :meth:`save`."""
        from effai_fast.surrogate._design import Domain

        with np.load(Path(path), allow_pickle=False) as f:
            meta = json.loads(str(f["meta"]))
            if meta.get("format") != _FORMAT:
                raise ValueError(f"{path} is not an effai_fast optimize() checkpoint")
            h = cls(Domain.from_dict(meta["domain"]), meta["maximize"], meta.get("meta"))
            h.X = f["X"].astype(np.float64)
            h.y = f["y"].astype(np.float64)
            h.round = f["round"].astype(np.int64)
            h.status = f["status"].astype("<U5")
        h.errors = {int(k): v for k, v in meta["errors"].items()}
        h.rounds = meta["rounds"]
        return h

    def __repr__(self) -> str:
        return (f"History(n_calls={self.n_calls}, n_failed={self.n_failed}, "
                f"rounds={len(self.rounds)}, best_y={self.best_y:.6g})")


# ------------------------------------------------------------------- simulation
def _safe_call(simulator, x):
    try:
        v = simulator(x)
        v = float(np.asarray(v, dtype=np.float64).reshape(()))
    except Exception as exc:  # noqa: BLE001 - any simulator failure is recorded
        return float("nan"), "error", f"{type(exc).__name__}: {exc}"
    if not math.isfinite(v):
        return float("nan"), "nan", f"simulator returned {v}"
    return v, "ok", ""


def _evaluate(simulator, X, n_jobs):
    out = []
    if n_jobs == 1 or len(X) == 1:
        out = [_safe_call(simulator, x) for x in X]
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(n_jobs, len(X)), mp_context=ctx) as ex:
            futs = [ex.submit(_safe_call, simulator, x) for x in X]
            for f in futs:
                try:
                    out.append(f.result())
                except Exception as exc:  # noqa: BLE001 - e.g. unpicklable, dead worker
                    out.append((float("nan"), "error", f"{type(exc).__name__}: {exc}"))
    y = np.array([o[0] for o in out], dtype=np.float64)
    status = [o[1] for o in out]
    errors = {i: o[2] for i, o in enumerate(out) if o[1] != "ok"}
    return y, status, errors


# ------------------------------------------------------------------ batch choice
def _gp_pool_cov(gp: GaussianProcess, C: np.ndarray) -> np.ndarray:
    """Posterior covariance of the latent function at the pool points (units of y)."""
    Zc = (C - gp._center) * gp._inv_scale
    Zt = gp._ZT.T
    sq_ct = ((Zc[:, None, :] - Zt[None, :, :]) ** 2).sum(axis=2)
    sq_cc = ((Zc[:, None, :] - Zc[None, :, :]) ** 2).sum(axis=2)
    s2 = gp.signal_variance_
    Rct, _ = _corr_and_grad_weight(gp.kernel, sq_ct, False)
    Rcc, _ = _corr_and_grad_weight(gp.kernel, sq_cc, False)
    V = gp._A @ Rct.T  # (n, M) = sigma2 L^{-1} r
    cov = s2 * Rcc - V.T @ V
    return cov * gp.y_std_**2


def _pick_believer(gp, C, mean, acq, best, maximize, batch, beta):
    cov = _gp_pool_cov(gp, C)
    noise = gp.noise_ * gp.y_std_**2
    chosen = []
    alive = np.ones(len(C), dtype=bool)
    for _ in range(min(batch, len(C))):
        std = np.sqrt(np.maximum(np.diag(cov), 0.0))
        if acq == "ei":
            s = expected_improvement(mean, std, best, maximize=maximize, log=True)
        else:
            s = upper_confidence_bound(mean, std, beta=beta, maximize=maximize)
        s = np.where(alive, s, -np.inf)
        j = int(np.argmax(s))
        if not np.isfinite(s[j]) and not alive[j]:
            break
        chosen.append(j)
        alive[j] = False
        cj = cov[:, j].copy()
        cov -= np.outer(cj, cj) / (cj[j] + noise + 1e-300)
        best = max(best, mean[j]) if maximize else min(best, mean[j])
    return chosen


def _pick_distance(U, order, batch, radius):
    chosen = []
    for r in (radius, radius / 4, 0.0):
        for j in order:
            if len(chosen) >= batch:
                return chosen
            if j in chosen:
                continue
            if all(np.linalg.norm(U[j] - U[c]) > r for c in chosen):
                chosen.append(int(j))
    return chosen


# ------------------------------------------------------------------ main loop
def optimize(simulator, domain, *, n_initial: int | None = None, n_rounds: int = 10,
             batch_size: int = 4, acquisition: str = "ei", seed: int = 0, n_jobs: int = 1,
             checkpoint=None, model=None, maximize: bool = False, n_candidates: int = 8192,
             beta: float = 2.0, n_threads: int | None = None, callback=None) -> History:
    """Optimise an expensive simulator with a surrogate (Bayesian optimisation).

    Parameters
    ----------
    simulator : callable
        ``simulator(x) -> float`` for one point ``x`` of shape (d,).  Exceptions and
        non-finite results are recorded and the loop continues.
    domain : Domain (or a Problem)
    n_initial : int, optional
        Size of the initial Latin hypercube (default ``max(2 * (d + 1), 6)``).
    n_rounds : int, default=10
        Rounds after the initial design (the budget is ``n_initial + n_rounds * batch_size``).
    batch_size : int, default=4
        Simulator calls per round.
    acquisition : {"ei", "ucb", "greedy"}, default="ei"
    seed : int, default=0
    n_jobs : int, default=1
        Processes running the simulator (spawn start method when > 1).
    checkpoint : path, optional
        ``.npz`` file written after every round; if it exists the run resumes from it.
    model : estimator, optional
        Template cloned every round (default
        ``GaussianProcess(kernel="matern52", mean="constant")``).
    maximize : bool, default=False
    n_candidates : int, default=8192
        Candidates screened per round.
    beta : float, default=2.0
        UCB exploration weight.
    n_threads : int or None
        OpenMP threads for the surrogate's prediction.
    callback : callable, optional
        ``callback(history)`` after every round.

    Returns
    -------
    History
    """
    domain = _check_domain(domain)
    d = domain.d
    if not callable(simulator):
        raise TypeError(f"simulator must be callable, got {type(simulator).__name__}")
    n_initial = max(2 * (d + 1), 6) if n_initial is None else check_int(
        n_initial, "n_initial", min_value=1)
    n_rounds = check_int(n_rounds, "n_rounds", min_value=0)
    batch_size = check_int(batch_size, "batch_size", min_value=1)
    seed = check_int(seed, "seed", min_value=0)
    n_jobs = check_int(n_jobs, "n_jobs", min_value=1)
    n_candidates = check_int(n_candidates, "n_candidates", min_value=batch_size)
    if acquisition not in ("ei", "ucb", "greedy"):
        raise ValueError(f"acquisition must be 'ei', 'ucb' or 'greedy', got {acquisition!r}")
    # constant prior mean: the loop's benchmarks (bench/results/surrogate.md) were measured
    # with it, and mean="auto" would fit every round twice
    template = GaussianProcess(kernel="matern52", n_restarts=2, seed=seed, mean="constant") \
        if model is None else model
    if acquisition != "greedy" and not has_std(template):
        raise ValueError(f"acquisition={acquisition!r} needs a model with a predictive std "
                         f"(predict(X, return_std=True)); {type(template).__name__} has none: "
                         "use acquisition='greedy'")

    hist = None
    if checkpoint is not None and Path(checkpoint).exists():
        hist = History.load(checkpoint)
        if hist.domain != domain:
            raise ValueError(f"checkpoint {checkpoint} was written for another domain "
                             f"({hist.domain!r})")
        if hist.maximize != bool(maximize):
            raise ValueError(f"checkpoint {checkpoint} has maximize={hist.maximize}")
    if hist is None:
        hist = History(domain, maximize, meta={"seed": seed, "acquisition": acquisition,
                                               "batch_size": batch_size,
                                               "n_initial": n_initial})

    def finish_round(rnd, X, info):
        t1 = time.perf_counter()
        y, status, errors = _evaluate(simulator, X, n_jobs)
        info["simulate_seconds"] = time.perf_counter() - t1
        hist._append(X, y, rnd, status, errors)
        info.update({"round": rnd, "n_evals": len(y), "n_failed": len(errors),
                     "best": hist.best_y, "n_calls": hist.n_calls})
        hist.rounds.append(info)
        if checkpoint is not None:
            hist.save(checkpoint)
        if callback is not None:
            callback(hist)

    if not hist.rounds:
        t0 = time.perf_counter()
        X0 = latin_hypercube(domain, n_initial, seed=np.random.default_rng([seed, 0]))
        info = {"design_seconds": time.perf_counter() - t0}
        finish_round(0, X0, info)

    for rnd in range(len(hist.rounds), n_rounds + 1):
        rng = np.random.default_rng([seed, rnd])
        ok = hist.ok
        info: dict = {}
        t0 = time.perf_counter()
        if ok.sum() < 2:
            # too few successes to fit anything: more space filling
            Xb = latin_hypercube(domain, batch_size, seed=rng)
            info["note"] = "fewer than 2 successful calls: random design"
        else:
            mdl = clone(template)
            mdl.fit(hist.X[ok], hist.y[ok])
            info["fit_seconds"] = time.perf_counter() - t0
            Xb, sinfo = _propose(mdl, hist, domain, rng, acquisition, batch_size,
                                 n_candidates, beta, maximize, n_threads)
            info.update(sinfo)
        finish_round(rnd, Xb, info)
    return hist


def _propose(mdl, hist, domain, rng, acquisition, batch_size, n_candidates, beta, maximize,
             n_threads):
    d = domain.d
    best = hist.best_y
    n_local = n_candidates // 4
    spec_seed = int(rng.integers(2**31))
    cands = DesignSpec(domain, n_candidates - n_local, seed=spec_seed).generate(
        0, n_candidates - n_local)
    # local candidates around the best few points
    ok = np.flatnonzero(hist.ok)
    order = ok[np.argsort(hist.y[ok])]
    if maximize:
        order = order[::-1]
    centers = hist.X[order[:max(1, min(5, len(order)))]]
    U = domain.to_unit(centers[rng.integers(len(centers), size=n_local)])
    U = U + rng.normal(scale=rng.choice([0.01, 0.05, 0.15], size=(n_local, 1)),
                       size=(n_local, d))
    local = domain.from_unit(np.clip(U, 0.0, 1.0))
    cands = np.vstack([cands, local])
    use_std = acquisition != "greedy"
    if acquisition == "ei":
        def score(m, s):
            return expected_improvement(m, s, best, maximize=maximize, log=True)
    elif acquisition == "ucb":
        def score(m, s):
            return upper_confidence_bound(m, s, beta=beta, maximize=maximize)
    else:
        score = None
    pool = min(len(cands), max(20 * batch_size, 256))
    t0 = time.perf_counter()
    res = screen(mdl, cands, top_k=pool, maximize=maximize, score=score,
                 return_std=use_std, n_threads=n_threads, progress=False)
    info = {"screen_seconds": time.perf_counter() - t0, "n_screened": res.n_screened}
    # drop candidates that repeat an evaluated point
    Ux = domain.to_unit(hist.X)
    Up = domain.to_unit(res.X)
    dmin = np.sqrt(((Up[:, None, :] - Ux[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    fresh = np.flatnonzero(dmin > 1e-9)
    if fresh.size < batch_size:
        fresh = np.arange(len(Up))
    C = res.X[fresh]
    if use_std and isinstance(mdl, GaussianProcess):
        chosen = _pick_believer(mdl, C, res.mean[fresh], acquisition, best, maximize,
                                batch_size, beta)
        info["batch_rule"] = "kriging believer"
    else:
        chosen = _pick_distance(Up[fresh], range(len(fresh)), batch_size, 0.1 * math.sqrt(d))
        info["batch_rule"] = "distance penalty"
    return C[chosen], info
