"""effai_fast.ad.Tape: the compiled batched sweep (SoA blocks, OpenMP, parameter reductions)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.optimize as so
from _ad_funcs import hill_model, random_program, rosen, run_program

from effai_fast import ad
from effai_fast.ad._lower import lower, reference_sweep


def hill_point(x, p):
    """Hill model per point: x = (dose, observed), p = (bottom, top, log-ec50, slope)."""
    r = hill_model(p, x[0]) - x[1]
    return r * r


def hill_data(rng, n):
    d = np.exp(rng.uniform(-4, 3, size=n))
    p = np.array([0.05, 1.0, 0.2, 1.3])
    y = hill_model(p, d) + 0.02 * rng.normal(size=n)
    return np.column_stack([d, y]), p + 0.1


def test_rosen_batched_value_and_grad(rng, dtype, n_threads):
    tape = ad.trace(rosen, 7)
    X = rng.uniform(-1.5, 1.5, size=(1003, 7)).astype(dtype)     # partial last block
    v, G = tape.value_and_grad(X, n_threads=n_threads)
    assert v.dtype == dtype and G.dtype == dtype and G.shape == X.shape
    X64 = X.astype(np.float64)
    ref_v = np.array([so.rosen(r) for r in X64])
    ref_g = np.array([so.rosen_der(r) for r in X64])
    rtol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(v, ref_v, rtol=rtol, atol=rtol * 100)
    np.testing.assert_allclose(G, ref_g, rtol=rtol, atol=rtol * np.abs(ref_g).max())
    np.testing.assert_array_equal(tape.value(X, n_threads=n_threads), v)


def test_threads_bitwise_identical(rng, dtype):
    X, p = hill_data(rng, 5000)
    X = X.astype(dtype)
    p = p.astype(dtype)
    tape = ad.trace(hill_point, 2, 4)
    r1 = tape.value_and_grad(X, p, wrt="all", n_threads=1)
    r2 = tape.value_and_grad(X, p, wrt="all", n_threads=2)
    np.testing.assert_array_equal(r1[0], r2[0])
    np.testing.assert_array_equal(r1[1][0], r2[1][0])
    np.testing.assert_array_equal(r1[1][1], r2[1][1])   # reduced in a fixed order


def test_parameter_gradients(rng, n_threads):
    X, p = hill_data(rng, 777)
    tape = ad.trace(hill_point, 2, 4)
    v, gp = tape.value_and_grad(X, p, wrt="params", n_threads=n_threads)
    v2, gpp = tape.value_and_grad(X, p, wrt="params", reduce=False, n_threads=n_threads)
    np.testing.assert_array_equal(v, v2)
    assert gp.shape == (4,) and gpp.shape == (777, 4)
    np.testing.assert_allclose(gp, gpp.sum(axis=0), rtol=1e-12)

    def rss(q):
        return np.sum((hill_model(q, X[:, 0]) - X[:, 1]) ** 2)

    h = 1e-6
    fd = np.array([(rss(p + h * e) - rss(p - h * e)) / (2 * h) for e in np.eye(4)])
    np.testing.assert_allclose(gp, fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(v.sum(), rss(p), rtol=1e-12)
    # the same value through the functional API on the whole data set
    np.testing.assert_allclose(ad.grad(rss)(p), gp, rtol=1e-10)
    v3, (gx, gp3) = tape.value_and_grad(X, p, wrt="all", n_threads=n_threads)
    np.testing.assert_allclose(gp3, gp, rtol=1e-14)
    per = np.array([ad.grad(lambda x: hill_point(x, p))(r) for r in X[:20]])
    np.testing.assert_allclose(gx[:20], per, rtol=1e-12)
    v4, (gx4, gp4) = tape.value_and_grad(X, p, wrt="all", reduce=False, n_threads=n_threads)
    np.testing.assert_allclose(gp4, gpp, rtol=1e-14)
    np.testing.assert_allclose(gx4, gx, rtol=1e-14)


@pytest.mark.parametrize("k", range(8))
def test_compiled_sweep_vs_numpy_reference(k, seed, dtype, n_threads):
    """The kernel against the slow obvious executor on random programs, many points."""
    rng = np.random.default_rng(seed * 100 + k)
    n = int(rng.integers(1, 6))
    prog = random_program(rng, n, int(rng.integers(2, 30)))
    tape = ad.trace(lambda x: run_program(prog, x), n)
    X = rng.uniform(-1, 1, size=(int(rng.integers(1, 700)), n))
    st = tape._program("inputs")
    out_ref, _ = reference_sweep(st, X, np.zeros(0))
    v, G = tape.value_and_grad(X.astype(dtype), n_threads=n_threads)
    got = np.column_stack([v, G])
    rtol = 2e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, out_ref, rtol=rtol, atol=rtol)


def test_reduced_outputs_vs_reference(rng):
    X, p = hill_data(rng, 300)
    tape = ad.trace(hill_point, 2, 4)
    st = tape._program("params")
    out_ref, red_ref = reference_sweep(st, X, p)
    v, gp = tape.value_and_grad(X, p, wrt="params")
    np.testing.assert_allclose(v, out_ref[:, 0], rtol=1e-13)
    np.testing.assert_allclose(gp, red_ref, rtol=1e-12)


def test_batched_jvp_hvp(rng, n_threads):
    tape = ad.trace(rosen, 5)
    X = rng.uniform(-1, 1, size=(300, 5))
    V = rng.normal(size=(300, 5))
    v, t = tape.jvp(X, V, n_threads=n_threads)
    G = tape.grad(X)
    np.testing.assert_allclose(t, np.sum(G * V, axis=1), rtol=1e-12, atol=1e-12)
    HV = tape.hvp(X, V, n_threads=n_threads)
    ref = np.array([so.rosen_hess_prod(x, u) for x, u in zip(X, V, strict=False)])
    np.testing.assert_allclose(HV, ref, rtol=1e-12, atol=1e-10)


def test_out_buffers(rng):
    tape = ad.trace(rosen, 4)
    X = rng.normal(size=(50, 4))
    out = np.empty(50)
    gout = np.empty((50, 4))
    v, G = tape.value_and_grad(X, out=out, grad_out=gout)
    assert v is out and G is gout
    np.testing.assert_allclose(G, [so.rosen_der(r) for r in X], rtol=1e-13)
    assert tape.value(X, out=out) is out
    with pytest.raises(ValueError, match="out must be"):
        tape.value(X, out=np.empty(49))
    with pytest.raises(ValueError, match="grad_out must be"):
        tape.value_and_grad(X, grad_out=np.empty((50, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="out must be"):
        tape.value(X, out=np.empty((100,))[::2])


def test_bad_batched_inputs(rng):
    tape = ad.trace(hill_point, 2, 4)
    X = rng.uniform(0.1, 1, size=(10, 2))
    p = np.ones(4)
    with pytest.raises(ValueError, match=r"X must have shape \(n_points, 2\)"):
        tape.value(np.ones((10, 3)), p)
    with pytest.raises(ValueError, match="params must have shape"):
        tape.value(X, np.ones(3))
    with pytest.raises(ValueError, match="params is required"):
        tape.value(X)
    with pytest.raises(TypeError, match="X must be a real array"):
        tape.value(np.array([["a", "b"]]), p)
    with pytest.raises(ValueError, match="wrt must be"):
        tape.value_and_grad(X, p, wrt="everything")
    with pytest.raises(ValueError, match="n_threads"):
        tape.value(X, p, n_threads=0)
    with pytest.raises(ValueError, match="no parameters"):
        ad.trace(rosen, 3).value_and_grad(np.ones((2, 3)), wrt="params")
    with pytest.raises(TypeError, match="scalar per point"):
        ad.trace(lambda x: x * 2, 3)
    with pytest.raises(ValueError, match="n_inputs"):
        ad.trace(rosen, 0)
    with pytest.raises(TypeError, match="n_params"):
        ad.trace(rosen, 3, 1.5)
    with pytest.raises(ad.TracingError, match="where"):
        ad.trace(lambda x: x[0] if x[1] > 0 else x[1], 2)
    # integers are fine for values (converted to float64), empty batches too
    np.testing.assert_allclose(tape.value(np.array([[1, 2]]), p), [1.0])
    assert tape.value(np.zeros((0, 2)), p).shape == (0,)


def test_nan_inputs_propagate_and_debug_names_op(rng):
    def f(x):
        return np.log(x[0]) + x[1]

    tape = ad.trace(f, 2)
    X = np.array([[1.0, 2.0], [np.nan, 1.0], [2.0, 3.0]])
    v, G = tape.value_and_grad(X)
    assert np.isnan(v[1]) and np.isfinite(v[[0, 2]]).all()
    tape.value(X, debug=True)      # NaN input propagates: not "produced" by an op
    X[1, 0] = -1.0
    with pytest.raises(FloatingPointError, match=r"'log'.*test_ad_tape.py"):
        tape.value(X, debug=True)
    X[1, 0] = 0.0
    with pytest.raises(FloatingPointError, match="'log'"):
        tape.value_and_grad(X, debug=True)
    # sqrt(0) is fine forward; its adjoint 0.5 / sqrt(0) is the first inf
    st = ad.trace(lambda x: np.sqrt(x[0]) + x[1], 2)
    with pytest.raises(FloatingPointError, match=r"reverse sweep of 'sqrt'.*test_ad_tape.py"):
        st.value_and_grad(np.array([[1.0, 1.0], [0.0, 2.0]]), debug=True)


def test_tape_shared_between_threads(rng):
    tape = ad.trace(hill_point, 2, 4)
    data = [hill_data(np.random.default_rng(k), 2000) for k in range(8)]
    serial = [tape.value_and_grad(X, p, wrt="all", n_threads=1) for X, p in data]

    def work(k):
        X, p = data[k]
        return tape.value_and_grad(X, p, wrt="all", n_threads=1 + k % 2)

    fresh = ad.trace(hill_point, 2, 4)   # programs built lazily by racing threads

    def work_fresh(k):
        X, p = data[k]
        return fresh.value_and_grad(X, p, wrt="all", n_threads=1)

    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(work, range(8)))
        got2 = list(ex.map(work_fresh, range(8)))
    for a, b, c in zip(serial, got, got2, strict=False):
        for x, y, z in ((a[0], b[0], c[0]), (a[1][0], b[1][0], c[1][0]),
                        (a[1][1], b[1][1], c[1][1])):
            np.testing.assert_array_equal(x, y)
            np.testing.assert_array_equal(x, z)


def test_optimiser_shrinks_tape():
    def f(x):
        a = np.exp(x[0]) * 2.0
        b = np.exp(x[0]) * 2.0          # common subexpression
        unused = np.sin(x[1]) ** 3      # dead code  # noqa: F841
        c = 3.0 * 4.0 + 0.0 * 1.0       # constant folding
        return a + b + c * x[1] + x[1] * 1.0

    tape = ad.trace(f, 2)
    st = tape._program("value")
    assert st.n_ops <= 6, st.code_names      # exp, 2x mulc, 3x add
    assert st.code_names.count("exp") == 1 and "sin" not in st.code_names
    g = ad.Graph()
    k = g.node("exp", [g.const(2.0)])        # folded at record time
    assert g.op[k] == "const" and g.value[k] == np.exp(2.0)
    np.testing.assert_allclose(tape.value(np.array([[0.5, 2.0]])),
                               [4 * np.exp(0.5) + 24.0 + 2.0], rtol=1e-14)
    # slots are reused: far fewer slots than instructions
    big = ad.trace(lambda x: np.sum(np.tanh(x) ** 2), 40)
    prog = big._program("inputs").program
    assert prog.n_slots < prog.n_ops


def test_lower_rejects_custom_primitives():
    from effai_fast.ad._lower import NotLowerable
    p = ad.primitive(lambda x: 2 * x)
    g = ad.Graph()
    x = g.input((3,))
    y = p(ad.Traced(g, x))
    with pytest.raises(NotLowerable):
        lower(g, [x], [], [y.id])


def _mlp_point(x, p):
    W1 = p[:12].reshape(3, 4)
    h = np.tanh(x @ W1 + p[12:16])
    return (h @ p[16:20] - 1.0) ** 2


@pytest.mark.parametrize("case", ["rosen", "mlp", "random0", "random1", "random2"])
def test_superinstructions_bitwise_equal_to_unfused(case, rng, dtype, n_threads):
    """Fused ops (x + y*q, (x - y)^2, ...) round exactly like the pairs they replace.

    Debug programs are lowered without fusion (one instruction per op), so the
    two sweeps must agree bit for bit; the fused program must also be shorter.
    """
    n_p = 0
    if case == "rosen":
        n, f = 10, rosen
    elif case == "mlp":
        n, n_p, f = 3, 20, _mlp_point
    else:
        r2 = np.random.default_rng(int(case[-1]) + 7)
        n = int(r2.integers(2, 6))
        prog = random_program(r2, n, 40)
        f = lambda x: run_program(prog, x)   # noqa: E731
    tape = ad.trace(f, n, n_p)
    X = rng.uniform(-1.2, 1.2, size=(203, n)).astype(dtype)
    P = rng.uniform(-1, 1, size=n_p).astype(dtype) if n_p else None
    wrt = "all" if n_p else "inputs"
    fast = tape.value_and_grad(X, P, wrt=wrt, reduce=False, n_threads=n_threads)
    slow = tape.value_and_grad(X, P, wrt=wrt, reduce=False, n_threads=n_threads, debug=True)
    np.testing.assert_array_equal(fast[0], slow[0])
    ga = fast[1] if not n_p else np.hstack(fast[1])
    gb = slow[1] if not n_p else np.hstack(slow[1])
    np.testing.assert_array_equal(ga, gb)
    if case in ("rosen", "mlp"):
        kind = "all_pp" if n_p else "inputs"
        fused = tape._program(kind)
        assert fused.n_ops < tape._program(kind, debug=True).n_ops
        assert any(c in fused.code_names for c in ("addmulc", "addmul", "sqsub", "subsq"))


@pytest.mark.parametrize("n_in", [1, 2, 3, 4, 5, 6, 8, 9])
def test_row_transposition_edges(n_in, rng):
    """Rows <-> slots moves in 4x4 tiles: column counts around 4 and partial blocks."""
    tape = ad.trace(lambda x: np.sum(x * x * np.arange(1, n_in + 1)), n_in)
    for n_pts in (1, 3, 4, 65, 130):
        X = rng.uniform(-1, 1, size=(n_pts, n_in))
        v, G = tape.value_and_grad(X)
        w = np.arange(1, n_in + 1)
        np.testing.assert_allclose(v, (X * X * w).sum(axis=1), rtol=1e-14)
        np.testing.assert_array_equal(G, 2 * X * w)


@pytest.mark.parametrize("wrt, reduce", [("inputs", True), ("params", False), ("all", True),
                                         ("all", False)])
def test_soa_layout_equals_transposed_rows(rng, dtype, n_threads, wrt, reduce):
    """layout="soa" writes the per-point gradients as (k, n_points), bit for bit the
    transpose of the default (n_points, k) rows, at any thread count."""
    X, p = hill_data(rng, 1000 + 37)    # a partial last block
    X, p = X.astype(dtype), p.astype(dtype)
    tape = ad.trace(hill_point, 2, 4)
    v1, g1 = tape.value_and_grad(X, p, wrt=wrt, reduce=reduce, n_threads=n_threads)
    v2, g2 = tape.value_and_grad(X, p, wrt=wrt, reduce=reduce, n_threads=n_threads,
                                 layout="soa")
    np.testing.assert_array_equal(v1, v2)
    g1 = g1 if isinstance(g1, tuple) else (g1,)
    g2 = g2 if isinstance(g2, tuple) else (g2,)
    for a, b in zip(g1, g2, strict=True):
        assert b.dtype == dtype
        if a.ndim == 2:
            assert b.shape == a.shape[::-1] and b.flags.c_contiguous
            np.testing.assert_array_equal(b, a.T)
        else:
            np.testing.assert_array_equal(b, a)
    if wrt == "params":
        buf = np.empty((4, X.shape[0]), dtype=dtype)
        _, g3 = tape.value_and_grad(X, p, wrt="params", reduce=False, layout="soa",
                                    grad_out=buf, n_threads=n_threads)
        assert g3 is buf
        np.testing.assert_array_equal(buf, g1[0].T)
        with pytest.raises(ValueError, match="grad_out"):
            tape.value_and_grad(X, p, wrt="params", reduce=False, layout="soa",
                                grad_out=np.empty((X.shape[0], 4), dtype=dtype))


def test_soa_layout_custom_primitive_fallback(rng):
    sq = ad.primitive(lambda x: x * x, vjp=lambda g, out, x: (2 * x * g,))
    tape = ad.trace(lambda x: sq(x[0]) + 3.0 * x[1], 2)
    X = rng.normal(size=(9, 2))
    _, g1 = tape.value_and_grad(X)
    _, g2 = tape.value_and_grad(X, layout="soa")
    np.testing.assert_array_equal(g2, g1.T)
    with pytest.raises(ValueError, match="layout"):
        tape.value_and_grad(X, layout="rows")


@pytest.mark.parametrize("n", [10, 60])
def test_schedule_keeps_few_slots(rng, n, n_threads):
    """The list schedule interleaves the reverse sweep with the forward one: a
    value+gradient block needs about n + a few slots (not one per forward value), and
    reordering changes no result bit (the debug program keeps the recorded order)."""
    tape = ad.trace(rosen, n)
    assert tape._program("value").program.n_slots <= n + 4
    assert tape._program("inputs").program.n_slots <= n + 10
    X = rng.uniform(-1, 1, size=(200, n))
    v, g = tape.value_and_grad(X, n_threads=n_threads)
    vd, gd = tape.value_and_grad(X, n_threads=n_threads, debug=True)
    np.testing.assert_array_equal(g, gd)
    np.testing.assert_array_equal(v, vd)
    np.testing.assert_allclose(g, np.array([so.rosen_der(r) for r in X]), rtol=1e-13,
                               atol=1e-11)


def _hill_exp_point(x, p):
    """The benchmark's Hill form: the slope times log-dose through exp."""
    r = p[0] + (p[1] - p[0]) / (1.0 + np.exp(p[3] * (x[0] - p[2]))) - x[1]
    return r * r


def test_hill_superinstructions_and_division_adjoint(rng, dtype, n_threads):
    """neg(mul0), mul0(x, neg), (x + y) - z are fused bit for bit; the division adjoint
    (one division shared by both operands) matches finite differences and JAX."""
    tape = ad.trace(_hill_exp_point, 2, 4)
    prog = tape._program("params_pp")
    assert {"negmul0", "addsub"} <= set(prog.code_names)
    assert sum(c in ("div", "rdivc", "divc") for c in prog.code_names) == 2
    assert prog.program.params_once        # parameter slots are never overwritten
    X = np.column_stack([rng.uniform(-4, 3, 517), rng.uniform(0, 1, 517)]).astype(dtype)
    P = np.array([0.05, 1.0, 0.2, 1.3], dtype=dtype)
    fast = tape.value_and_grad(X, P, wrt="params", reduce=False, n_threads=n_threads)
    slow = tape.value_and_grad(X, P, wrt="params", reduce=False, n_threads=n_threads,
                               debug=True)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])
    # central differences in float64
    X64, P64 = X.astype(np.float64), P.astype(np.float64)
    h = 1e-6
    fd = np.empty((len(X), 4))
    for k in range(4):
        e = np.zeros(4)
        e[k] = h
        fd[:, k] = (tape.value(X64, P64 + e) - tape.value(X64, P64 - e)) / (2 * h)
    tol = 1e-4 if dtype == np.float32 else 1e-7
    np.testing.assert_allclose(fast[1], fd, rtol=tol, atol=tol)
    jax = pytest.importorskip("jax")
    jnp = pytest.importorskip("jax.numpy")
    jax.config.update("jax_enable_x64", True)

    def fj(p, x):
        r = p[0] + (p[1] - p[0]) / (1.0 + jnp.exp(p[3] * (x[0] - p[2]))) - x[1]
        return r * r

    gj = np.asarray(jax.vmap(jax.grad(fj), in_axes=(None, 0))(jnp.asarray(P64),
                                                             jnp.asarray(X64)))
    g64 = tape.value_and_grad(X64, P64, wrt="params", reduce=False)[1]
    np.testing.assert_allclose(g64, gj, rtol=1e-12, atol=1e-14)


def test_division_adjoint_zero_and_nonfinite_rules():
    """0 * anything is 0: a masked 1/x branch gives a zero gradient at x = 0, and
    the fused neg/mul0 ops keep that rule; NaN still propagates where it is used."""
    tape = ad.trace(lambda x: np.where(x[0] > 0, 2.0 / x[0], 0.0) + x[1] / x[2], 3)
    X = np.array([[0.0, 1.0, 2.0], [4.0, 0.0, 0.0], [np.nan, 1.0, 1.0], [1.0, np.inf, 1.0],
                  [1.0, 1.0, np.nan]])
    with np.errstate(all="ignore"):
        v, G = tape.value_and_grad(X)
    assert G[0, 0] == 0.0 and G[0, 1] == 0.5 and G[0, 2] == -0.25
    assert G[1, 0] == -2.0 / 16 and G[1, 1] == np.inf and np.isnan(G[1, 2])
    # NaN in the masked branch: value and its adjoint stay clean
    assert v[2] == 1.0 and G[2, 0] == 0.0 and G[2, 1] == 1.0 and G[2, 2] == -1.0
    assert v[3] == np.inf and G[3, 0] == -2.0 and G[3, 1] == 1.0 and G[3, 2] == -np.inf
    assert np.isnan(v[4]) and G[4, 0] == -2.0 and np.isnan(G[4, 1]) and np.isnan(G[4, 2])


@pytest.mark.parametrize("n_in", [1, 2, 3, 4, 5, 8])
def test_streaming_stores_bitwise_equal(n_in, rng, dtype, n_threads):
    """Large outputs go out with streaming stores: the same bits as normal stores,
    including partial blocks, odd column counts and buffers not 16-byte aligned."""
    from effai_fast.ad import _tape
    tape = ad.trace(lambda x, p: np.sum(np.exp(p[0] * x) * x) + p[1], n_in, 2)
    P = np.array([0.3, -1.0], dtype=dtype)
    for n_pts in (1, 67, 1000):
        X = rng.uniform(-1, 1, size=(n_pts, n_in)).astype(dtype)
        res = []
        for sb in (1 << 62, 0):
            old = _tape._set_stream_bytes(sb)
            try:
                raw = np.empty(n_pts * n_in + 1, dtype=dtype)
                gout = raw[1:].reshape(n_pts, n_in)          # not 16-byte aligned
                out = np.empty(n_pts + 1, dtype=dtype)[1:]
                v, (gx, gp) = tape.value_and_grad(X, P, wrt="all", reduce=False,
                                                  n_threads=n_threads, out=out)
                v2, g2 = tape.value_and_grad(X, P, wrt="params", reduce=False,
                                             n_threads=n_threads)
                v3, g3 = tape.value_and_grad(X, P, wrt="inputs", n_threads=n_threads,
                                             grad_out=gout)
                g3 = g3.copy()
                res.append((v.copy(), gx, gp, v2, g2, v3, g3))
            finally:
                _tape._set_stream_bytes(old)
        for a, b in zip(res[0], res[1], strict=True):
            np.testing.assert_array_equal(a, b)
        e = np.exp(P[0].astype(np.float64) * X.astype(np.float64))
        tol = 1e-5 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(res[1][6], e * (1 + P[0] * X), rtol=tol)
        np.testing.assert_allclose(res[1][4][:, 0], (e * X * X).sum(axis=1), rtol=tol,
                                   atol=tol)
