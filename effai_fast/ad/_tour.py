"""`effai tour` step: the cheap gradient — reverse vs forward mode cost as n grows.

Rosenbrock in n dimensions, traced once, evaluated at a few thousand points by
the compiled batched sweep: the reverse sweep gives all n partial derivatives
for a small constant multiple of the function's cost; forward mode needs one
tangent sweep per input, so its cost grows with n.  Also checks the gradient
against scipy's closed form and times one single-point ``grad`` call.
"""

# ruff: noqa: B023  (the timing lambdas are called inside the loop that defines them)
from __future__ import annotations

import time

import numpy as np


def _rosen(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _best(fn, repeat=9):
    """Best process CPU time of one call (fair when other jobs share the cores)."""
    fn()
    ts = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        ts.append(time.process_time() - t0)
    return min(ts)


def run(report, n_threads=None) -> None:
    from scipy.optimize import rosen_der

    from effai_fast import ad

    report.section("autodiff: reverse vs forward mode (Rosenbrock, batched compiled sweep)")
    # Timed on one thread, in process CPU time: cost ratios between sweeps are what
    # this step shows, and a 2-thread team on a busy machine adds stalls that would
    # blur them.
    del n_threads
    rng = np.random.default_rng(0)
    rows = []
    worst = 0.0
    for n in (2, 8, 32, 128):
        n_pts = 10_000
        X = rng.uniform(-1.5, 1.5, size=(n_pts, n))
        tape = ad.trace(_rosen, n)
        tv = _best(lambda: tape.value(X, n_threads=1))
        tg = _best(lambda: tape.value_and_grad(X, n_threads=1))
        V = np.zeros_like(X)
        V[:, 0] = 1.0
        tj = _best(lambda: tape.jvp(X, V, n_threads=1))
        _, G = tape.value_and_grad(X[:50])
        ref = np.array([rosen_der(x) for x in X[:50]])
        worst = max(worst, float(np.max(np.abs(G - ref) / (1.0 + np.abs(ref)))))
        rows.append([n, n_pts, f"{tv / n_pts * 1e9:.0f}", f"{tg / tv:.2f}x",
                     f"{n * tj / tv:.1f}x", f"{n * tj / tg:.1f}x"])
    report.table(["n", "points", "value ns/point", "reverse grad / value",
                  "forward grad (n JVPs) / value", "forward / reverse"], rows)
    report.line(f"max relative gradient error vs scipy.optimize.rosen_der: {worst:.1e}")
    report.record("reverse_over_value", [r[3] for r in rows])
    report.record("forward_over_reverse", [r[5] for r in rows])
    report.record("max_rel_error", worst)

    x = rng.uniform(-1, 1, size=10)
    g = ad.grad(_rosen)
    g(x)
    n_calls = 20000
    t0 = time.process_time()
    for _ in range(n_calls):
        g(x)
    us = (time.process_time() - t0) / n_calls * 1e6
    report.line(f"single call ad.grad(rosen)(x), n=10: {us:.2f} µs (CPU) per call from Python")
    report.record("single_call_us", round(us, 3))
