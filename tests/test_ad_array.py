"""The array-level executor: slices read in place, adjoint sums accumulated in place,
reused buffers, and Program.run_columns with offsets / accumulating outputs."""

import threading

import numpy as np
import pytest
import scipy.optimize as so

from effai_fast import ad
from effai_fast.ad import _api


def rosen(x):
    return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def stencil(x):
    # three overlapping slices of x: three contributions to most adjoint elements
    return np.sum(np.sin(x[2:]) * x[1:-1] - x[:-2] ** 3 + 0.5 * x[1:-1] ** 2)


def strided(x):
    # x[::2] is not a contiguous range: stays a scatter leaf of the adjoint sum
    return np.sum(np.exp(0.1 * x[::2]) * x[1::2]) + np.sum(x[3:7] ** 2)


def matrix_rows(X):
    # slices of a 2-D array: X[1:] is contiguous in C order, X[:, 1:] is not
    return np.sum((X[1:] - X[:-1]) ** 2) + np.sum(np.tanh(X[:, 1:]) * X[:, :-1])


def stencil_grad(x):
    g = np.zeros_like(x)
    g[2:] += np.cos(x[2:]) * x[1:-1]
    g[1:-1] += np.sin(x[2:]) + x[1:-1]
    g[:-2] += -3 * x[:-2] ** 2
    return g


def fd_grad(f, x, h=1e-6):
    g = np.zeros(x.size)
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = h
        g[i] = (f(x + e.reshape(x.shape)) - f(x - e.reshape(x.shape))) / (2 * h)
    return g.reshape(x.shape)


@pytest.fixture(params=["fused", "nodes"])
def executor(request, monkeypatch):
    """The array-level executor with elementwise runs fused (the fast path) or node by
    node (the reference)."""
    monkeypatch.setattr(_api, "SCALAR_LIMIT", -1)
    monkeypatch.setattr(_api, "FUSE_MIN", 1 if request.param == "fused" else 10**9)
    return request.param


def test_rosen_plan_has_no_slices_or_scatters(monkeypatch):
    monkeypatch.setattr(_api, "SCALAR_LIMIT", -1)
    x = np.linspace(-1, 1, 3000)
    for fn in (ad.grad(rosen), ad.value_and_grad(rosen)):
        r = fn(x)
        (plan,) = fn._cache.values()
        kinds = [k if k != "node" else it[1] for k, it in plan.items]
        assert kinds == ["fused", "accum"]          # one sweep, one zeroed buffer
        fused = plan.items[0][1]
        assert sorted(off for _, off in fused.in_src) == [0, 1]   # x[:-1], x[1:] in place
        assert len(fused.direct) == 2                # both slice adjoints added in place
        g = r[1] if isinstance(r, tuple) else r
        np.testing.assert_allclose(g, so.rosen_der(x), rtol=1e-13, atol=1e-10)


@pytest.mark.parametrize("f, ref", [(rosen, so.rosen_der), (stencil, stencil_grad)])
def test_slices_match_closed_form(f, ref, rng, executor):
    x = rng.uniform(-1, 1, size=2500)
    v, g = ad.value_and_grad(f)(x)
    np.testing.assert_allclose(g, ref(x), rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(v, f(x), rtol=1e-13)
    x32 = x.astype(np.float32)
    g32 = ad.grad(f)(x32)
    assert g32.dtype == np.float32
    np.testing.assert_allclose(g32, ref(x32.astype(np.float64)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("f, shape", [(strided, (40,)), (matrix_rows, (9, 7)),
                                      (stencil, (31,)), (rosen, (17,))])
def test_slices_match_finite_differences(f, shape, rng, executor):
    x = rng.uniform(-1, 1, size=shape)
    g = ad.grad(f)(x)
    np.testing.assert_allclose(g, fd_grad(f, x), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("f", [rosen, stencil, strided, matrix_rows])
def test_fused_equals_node_by_node(f, rng, monkeypatch):
    x = rng.uniform(-1, 1, size=(12, 10)) if f is matrix_rows else rng.uniform(-1, 1, 120)
    monkeypatch.setattr(_api, "SCALAR_LIMIT", -1)
    monkeypatch.setattr(_api, "FUSE_MIN", 10**9)
    ref = ad.value_and_grad(f)(x)
    monkeypatch.setattr(_api, "FUSE_MIN", 1)
    got = ad.value_and_grad(f)(x)
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-14)
    np.testing.assert_allclose(got[1], ref[1], rtol=1e-14, atol=1e-15)


def test_results_are_not_reused_buffers(rng, executor):
    """Intermediate buffers are reused across calls; returned arrays never are."""
    def f(x):
        h = np.tanh(x[1:] * x[:-1])
        return np.sum(h * h) + np.sum(np.exp(-x))
    vg = ad.value_and_grad(f)
    xs = [rng.uniform(-1, 1, 600) for _ in range(3)]
    first = [vg(x) for x in xs]
    snap = [(v.copy(), g.copy()) for v, g in first]
    again = [vg(x) for x in xs[::-1]][::-1]
    for (v, g), (v0, g0), (v2, g2) in zip(first, snap, again, strict=True):
        np.testing.assert_array_equal(g, g0)
        np.testing.assert_array_equal(v, v0)
        np.testing.assert_array_equal(g2, g0)
        np.testing.assert_array_equal(v2, v0)


def test_concurrent_calls(rng, executor):
    """One transformed function used from several Python threads at once."""
    g = ad.grad(stencil)
    xs = [rng.uniform(-1, 1, 3000) for _ in range(8)]
    res = [None] * len(xs)

    def work(k):
        for _ in range(5):
            res[k] = g(xs[k])

    th = [threading.Thread(target=work, args=(k,)) for k in range(len(xs))]
    for t in th:
        t.start()
    for t in th:
        t.join()
    for x, r in zip(xs, res, strict=True):
        np.testing.assert_allclose(r, stencil_grad(x), rtol=1e-13, atol=1e-12)


def test_run_columns_offsets_and_accumulate(rng, n_threads):
    """Program.run_columns against numpy: offsets into longer arrays, stored and
    accumulated outputs, reductions; results independent of the thread count."""
    tape = ad.trace(lambda x: x[0] * x[0] - 3.0 * x[1], 2)
    st = tape._program("inputs")
    prog = st.program
    n = 1000
    base = rng.normal(size=n + 5)
    a, b = base[2:2 + n], base[:n]
    assert prog.n_x == 2 and prog.n_outputs == 3
    outs = [np.empty(n + 3), np.zeros(n + 3), np.full(n + 3, 1.5)]
    prog.run_columns([base, base], np.zeros(0), outs, n_threads, None, n, [2, 0], [3, 0, 1],
                     [False, True, True])
    np.testing.assert_array_equal(outs[0][3:], a * a - 3.0 * b)
    np.testing.assert_array_equal(outs[1][:n], 2.0 * a)
    np.testing.assert_array_equal(outs[2][1:n + 1], 1.5 - 3.0)
    assert outs[1][n:].tolist() == [0.0] * 3 and outs[2][0] == 1.5
    # two outputs accumulating into overlapping ranges of one buffer
    acc = np.zeros(n + 1)
    prog.run_columns([a.copy(), b.copy()], np.zeros(0), [np.empty(n), acc, acc], n_threads,
                     None, n, None, [0, 0, 1], [False, True, True])
    ref = np.zeros(n + 1)
    ref[:n] += 2.0 * a
    ref[1:] += -3.0
    np.testing.assert_array_equal(acc, ref)


def test_run_columns_bad_buffers(rng):
    prog = ad.trace(lambda x: x[0] * x[1], 2)._program("value").program
    x = np.zeros(10)
    with pytest.raises(ValueError, match="offset"):
        prog.run_columns([x, x], np.zeros(0), [np.empty(10)], 1, None, 10, [0, 1])
    with pytest.raises(ValueError, match="float64"):
        prog.run_columns([x.astype(np.float32), x], np.zeros(0), [np.empty(10)], 1)
    with pytest.raises((ValueError, BufferError)):
        prog.run_columns([x[::2], x[::2]], np.zeros(0), [np.empty(5)], 1)
    with pytest.raises(ValueError, match="number"):
        prog.run_columns([x], np.zeros(0), [np.empty(10)], 1)
    ro = np.empty(10)
    ro.setflags(write=False)
    with pytest.raises((ValueError, BufferError)):
        prog.run_columns([x, x], np.zeros(0), [ro], 1)


def test_jax_agrees_on_large_slices(rng):
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    x = rng.uniform(-1, 1, 5000)
    ref = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(x[2:]) * x[1:-1] - x[:-2] ** 3
                                             + 0.5 * x[1:-1] ** 2)))(x)
    np.testing.assert_allclose(ad.grad(stencil)(x), ref, rtol=1e-13, atol=1e-12)
