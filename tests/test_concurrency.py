"""Kernels called from several Python threads at once, and at 1, 2 and 4 OpenMP threads.

The kernels release the GIL and keep no shared mutable state, so concurrent
calls must give exactly the serial results; their reductions run in a fixed
order, so the OpenMP thread count must not change a single bit either.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest


def _conv_case(rng):
    from effai_fast.nn import functional as F

    x = rng.standard_normal((2, 19, 17, 24)).astype(np.float32)
    w = rng.standard_normal((3, 3, 24)).astype(np.float32)
    pw = rng.standard_normal((24, 40)).astype(np.float32)
    g = rng.standard_normal((2, 10, 9, 24)).astype(np.float32)

    def run(n):
        y = F.depthwise_conv2d(x, w, stride=2, activation="relu6", n_threads=n)
        z = F.pointwise_conv2d(y, pw, n_threads=n)
        gx, gw, gb = F.depthwise_conv2d_vjp(x, w, g, stride=2, n_threads=n)
        return [y, z, gx, gw, gb]
    return run


def _tape_case(rng):
    from effai_fast import ad

    def rosen(x):
        return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    tape = ad.trace(rosen, n_inputs=6)
    X = rng.standard_normal((5000, 6))

    def run(n):
        v, g = tape.value_and_grad(X, n_threads=n)
        return [v, g]
    return run


def _hill_case(rng):
    from effai_fast import hill

    dose = np.array([0, 0.03, 0.1, 0.3, 1, 3, 10, 30])
    y = hill.hill(dose, 5, 95, rng.uniform(0.1, 3, (300, 1)), 1.3) + rng.normal(0, 3, (300, 8))

    def run(n):
        r = hill.fit(dose, y, n_threads=n)
        return [r.rmin, r.rmax, r.ec50, r.n, r.rss]
    return run


def _kd_case(rng):
    from effai_fast.distill import kd_loss

    zs = rng.standard_normal((300, 50)).astype(np.float32)
    zt = rng.standard_normal((300, 50)).astype(np.float32)
    labels = rng.integers(0, 50, 300)

    def run(n):
        loss, grad = kd_loss(zs, zt, temperature=3.0, labels=labels, hard_weight=0.2,
                             n_threads=n)
        return [np.asarray(loss), grad]
    return run


def _sparsegrid_case(rng):
    from effai_fast.sparsegrid import SparseGrid

    g = SparseGrid(5, 4, basis="modlinear", domain=[(0, 1)] * 5)
    g.fit(np.sin(g.points.sum(axis=1)))
    x = rng.random((3000, 5))

    def run(n):
        return [g.evaluate(x, n_threads=n)]
    return run


def _gp_case(rng):
    from effai_fast.surrogate import GaussianProcess, get_problem, latin_hypercube

    prob = get_problem("branin")
    X = latin_hypercube(prob.domain, 40, seed=0)
    gp = GaussianProcess(kernel="se", seed=0, n_threads=1).fit(X, prob(X))
    Xq = latin_hypercube(prob.domain, 4000, seed=1)

    def run(n):
        gp.set_params(n_threads=n)
        mean, std = gp.predict(Xq, return_std=True)
        return [mean, std]
    return run


CASES = {
    "conv": _conv_case,
    "tape": _tape_case,
    "hill": _hill_case,
    "kd_loss": _kd_case,
    "sparsegrid": _sparsegrid_case,
    "gp": _gp_case,
}


def _same(a, b):
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize("name", [k for k in CASES if k != "gp"])
def test_bitwise_identical_at_1_2_4_threads(name, rng):
    run = CASES[name](rng)
    ref = run(1)
    _same(ref, run(2))
    _same(ref, run(4))


@pytest.mark.parametrize("name", [k for k in CASES if k != "gp"])
def test_concurrent_python_threads_match_serial(name, rng):
    run = CASES[name](rng)
    ref = run(1)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda n: run(n), [1, 2, 1, 2, 1, 2, 1, 2]))
    for res in results:
        _same(ref, res)


def test_gp_prediction_thread_count_and_concurrency(rng):
    # set_params mutates the estimator, so the concurrent part uses one
    # fitted model per thread count; prediction itself shares the fitted state.
    run = _gp_case(rng)
    ref = run(1)
    for n in (2, 4):
        out = run(n)
        np.testing.assert_allclose(out[0], ref[0], rtol=1e-13, atol=1e-12)
        np.testing.assert_allclose(out[1], ref[1], rtol=1e-10, atol=1e-12)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: run(2), range(4)))
    for res in results:
        np.testing.assert_allclose(res[0], ref[0], rtol=1e-13, atol=1e-12)
