"""effai_fast.ad: functional transforms vs finite differences, scipy and each other."""

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.optimize as so
from _ad_funcs import SUITE, point, random_program, rosen, run_program

from effai_fast import ad
from effai_fast.ad import _api


def fd_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        g.flat[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def fd_jac(f, x, h=1e-6):
    cols = []
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        cols.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.stack(cols, axis=-1)


@pytest.fixture(params=["scalar", "array", "fused"],
                ids=["scalar_tape", "array_level", "array_fused"])
def level(request, monkeypatch):
    """Run a test on the compiled scalar tape, on the array-level executor node by node,
    and on the array-level executor with elementwise runs fused into compiled sweeps."""
    if request.param != "scalar":
        monkeypatch.setattr(_api, "SCALAR_LIMIT", -1)
    monkeypatch.setattr(_api, "FUSE_MIN", 1 if request.param == "fused" else 10**9)
    return request.param


@pytest.mark.parametrize("name", sorted(SUITE))
def test_grad_matches_finite_differences(name, rng, level):
    f, _ = SUITE[name]
    x = point(name, rng)
    g = ad.grad(f)(x)
    np.testing.assert_allclose(g, fd_grad(f, x), rtol=1e-6, atol=1e-7)
    v, g2 = ad.value_and_grad(f)(x)
    np.testing.assert_allclose(v, f(x), rtol=1e-13)
    np.testing.assert_allclose(g2, g, rtol=1e-14)


@pytest.mark.parametrize("name", sorted(SUITE))
def test_hessian_hvp_jvp(name, rng, level):
    f, n = SUITE[name]
    x = point(name, rng)
    gf = ad.grad(f)
    H = ad.hessian(f)(x)
    np.testing.assert_allclose(H, fd_jac(gf, x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-12)
    v = rng.normal(size=n)
    np.testing.assert_allclose(ad.hvp(f)(x, v), H @ v, rtol=1e-10, atol=1e-10)
    val, t = ad.jvp(f, (x,), (v,))
    np.testing.assert_allclose(val, f(x), rtol=1e-13)
    np.testing.assert_allclose(t, gf(x) @ v, rtol=1e-10, atol=1e-12)


def test_rosen_exact_vs_scipy(rng, level):
    for n in (2, 5, 20):
        x = rng.uniform(-2, 2, size=n)
        np.testing.assert_allclose(ad.grad(rosen)(x), so.rosen_der(x), rtol=1e-13, atol=1e-12)
        np.testing.assert_allclose(ad.hessian(rosen)(x), so.rosen_hess(x), rtol=1e-13,
                                   atol=1e-11)
        p = rng.normal(size=n)
        np.testing.assert_allclose(ad.hvp(rosen)(x, p), so.rosen_hess_prod(x, p), rtol=1e-12,
                                   atol=1e-11)


def test_reverse_equals_stacked_forward(rng, level):
    """Property: the gradient is the stack of JVPs along unit vectors."""
    for name in sorted(SUITE):
        f, n = SUITE[name]
        x = point(name, rng)
        g = ad.grad(f)(x)
        fwd = np.array([ad.jvp(f, (x,), (e,))[1] for e in np.eye(n)])
        np.testing.assert_allclose(g, fwd, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(ad.jacobian(f, mode="forward")(x), g, rtol=1e-12,
                                   atol=1e-12)
        np.testing.assert_allclose(ad.jacobian(f, mode="reverse")(x), g, rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize("k", range(12))
def test_random_programs(k, seed, level):
    rng = np.random.default_rng(seed * 1000 + k)
    n = int(rng.integers(1, 6))
    prog = random_program(rng, n, int(rng.integers(1, 25)))

    def f(x):
        return run_program(prog, x)

    x = rng.uniform(-1, 1, size=n)
    np.testing.assert_allclose(ad.value_and_grad(f)(x)[0], f(x), rtol=1e-12)
    g = ad.grad(f)(x)
    np.testing.assert_allclose(g, fd_grad(f, x), rtol=1e-5, atol=1e-6)
    fwd = np.array([ad.jvp(f, (x,), (e,))[1] for e in np.eye(n)])
    np.testing.assert_allclose(g, fwd, rtol=1e-11, atol=1e-12)
    H = ad.hessian(f)(x)
    np.testing.assert_allclose(H, fd_jac(ad.grad(f), x), rtol=1e-4, atol=1e-5)


def test_jacobian_vector_function(rng, level):
    A = rng.normal(size=(4, 3))

    def f(x):
        return np.tanh(A @ x) * x[0]

    x = rng.normal(size=3)
    J = fd_jac(f, x)
    for mode in ("auto", "forward", "reverse"):
        np.testing.assert_allclose(ad.jacobian(f, mode=mode)(x), J, rtol=1e-6, atol=1e-8)
    out, vjp_fn = ad.vjp(f, x)
    np.testing.assert_allclose(out, f(x), rtol=1e-13)
    u = rng.normal(size=4)
    (xb,) = vjp_fn(u)
    np.testing.assert_allclose(xb, u @ J, rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="cotangent must have shape"):
        vjp_fn(np.ones(3))


def test_matrix_input_and_argnums(rng, level):
    W = rng.normal(size=(3, 2))
    b = rng.normal(size=2)

    def loss(W, b):
        return np.sum(np.tanh(np.array([[0.5, -1.0, 2.0]]) @ W + b) ** 2)

    gW, gb = ad.grad(loss, argnums=(0, 1))(W, b)
    assert gW.shape == W.shape and gb.shape == b.shape
    np.testing.assert_allclose(gW, fd_grad(lambda w: loss(w, b), W), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(gb, fd_grad(lambda c: loss(W, c), b), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(ad.grad(loss, argnums=1)(W, b), gb, rtol=1e-14)


def test_where_masked_branch_does_not_poison(level):
    """0 * anything = 0: log at a masked negative / zero argument gives no NaN."""
    def f(x):
        return np.sum(np.where(x > 0, np.log(x), x ** 2))

    x = np.array([-1.0, 0.0, 2.0])
    g = ad.grad(f)(x)
    np.testing.assert_allclose(g, [-2.0, 0.0, 0.5])
    h = ad.hessian(f)(x)
    assert np.all(np.isfinite(h))
    np.testing.assert_allclose(np.diag(h), [2.0, 2.0, -0.25])

    def g2(x):  # sqrt at 0 in a masked branch
        return ad.where(x[0] > 0, np.sqrt(x[0]), 0.0) + x[1]

    np.testing.assert_allclose(ad.grad(g2)(np.array([0.0, 1.0])), [0.0, 1.0])


def test_kink_conventions():
    f = ad.grad(lambda x: np.sum(np.maximum(x, 0.0)))
    np.testing.assert_array_equal(f(np.array([-1.0, 2.0])), [0.0, 1.0])
    f = ad.grad(lambda x: np.sum(np.abs(x)))
    np.testing.assert_array_equal(f(np.array([-3.0, 2.0, 0.0])), [-1.0, 1.0, 0.0])
    f = ad.grad(lambda x: np.minimum(x[0], x[1]))
    np.testing.assert_array_equal(f(np.array([1.0, 2.0])), [1.0, 0.0])


def test_numpy_functions_on_traced_values(rng):
    from scipy.special import expit

    def f(x):
        y = np.stack([x[0], x[1] * 2.0])
        z = np.concatenate([y, x[1:]])
        return (np.mean(z) + np.dot(x, x) + np.clip(x[0], -0.5, 0.5) + expit(x[1])
                + np.sum(x.reshape(1, 3).T) + np.reciprocal(2.0 + x[2]) + (x ** 3)[2]
                + np.maximum(x, 0.1).sum() + ad.sigmoid(x[0]) + ad.tanh(x)[1])

    x = np.array([0.2, -0.3, 0.4])
    np.testing.assert_allclose(ad.grad(f)(x), fd_grad(f, x), rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(ad.value_and_grad(f)(x)[0], f(x), rtol=1e-14)


def test_constant_and_independent_outputs():
    g = ad.grad(lambda x: 3.0)(np.ones(4))
    np.testing.assert_array_equal(g, np.zeros(4))
    g = ad.grad(lambda x: x[0] * 2.0)(np.ones(3))
    np.testing.assert_array_equal(g, [2.0, 0.0, 0.0])
    v, g = ad.value_and_grad(lambda x: x[1])(np.array([1.0, 5.0]))
    assert v == 5.0
    np.testing.assert_array_equal(g, [0.0, 1.0])


def test_float32_inputs_keep_dtype(rng):
    x = rng.normal(size=5).astype(np.float32)
    g = ad.grad(rosen)(x)
    assert g.dtype == np.float32
    np.testing.assert_allclose(g, so.rosen_der(x.astype(np.float64)), rtol=1e-6)


def test_large_vector_uses_array_level():
    x = np.linspace(-1, 1, 20000)
    vg = ad.value_and_grad(rosen)
    v, g = vg(x)
    np.testing.assert_allclose(g, so.rosen_der(x), rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(v, so.rosen(x), rtol=1e-12)
    (plan,) = vg._cache.values()
    assert plan.program is None          # executed on whole arrays ...
    assert any(kind == "fused" for kind, _ in plan.items)   # ... elementwise runs fused


# --------------------------------------------------------------------------- errors
def test_control_flow_error_suggests_where():
    def f(x):
        if x[0] > 0:
            return x[0]
        return -x[0]

    with pytest.raises(ad.TracingError, match="where"):
        ad.grad(f)(np.ones(2))
    with pytest.raises(ad.TracingError, match="where"):
        ad.grad(lambda x: float(x[0]))(np.ones(2))
    with pytest.raises(ad.TracingError):
        ad.grad(lambda x: np.asarray(x).sum())(np.ones(2))


def test_non_scalar_output_to_grad():
    with pytest.raises(TypeError, match="scalar output.*jacobian"):
        ad.grad(lambda x: x * 2)(np.ones(3))
    with pytest.raises(TypeError, match="scalar"):
        ad.hessian(lambda x: x * 2)(np.ones(3))
    with pytest.raises(TypeError, match="scalar"):
        ad.hvp(lambda x: x * 2)(np.ones(3), np.ones(3))


def test_bad_inputs():
    with pytest.raises(TypeError, match="integer"):
        ad.grad(rosen)(np.array([1, 2, 3]))
    with pytest.raises(TypeError, match="callable"):
        ad.grad(3)
    with pytest.raises(ValueError, match="argnums"):
        ad.grad(rosen, argnums=2)(np.ones(3))
    with pytest.raises(ValueError, match="broadcast"):
        ad.grad(lambda x: np.sum(x + np.ones(4)))(np.ones(3))
    with pytest.raises(TypeError, match="complex|floating"):
        ad.grad(rosen)(np.ones(3, dtype=complex))
    with pytest.raises(ValueError, match="tangents"):
        ad.jvp(rosen, (np.ones(3),), (np.ones(2),))
    with pytest.raises(ValueError, match="mode"):
        ad.jacobian(rosen, mode="sideways")


def test_nan_inputs_propagate():
    g = ad.grad(rosen)(np.array([np.nan, 1.0, 1.0]))
    assert np.isnan(g[0]) and np.isnan(g[1])
    assert g[2] == 0.0


# --------------------------------------------------------------------------- primitives
def _softplus_prim():
    @ad.primitive
    def softplus(x):
        return np.logaddexp(0.0, x)

    @softplus.defvjp
    def _(g, out, x):
        return (g * ad.sigmoid(x),)

    @softplus.defjvp
    def _(ts, out, x):
        return ts[0] * ad.sigmoid(x)

    return softplus


def test_custom_primitive_rules(rng):
    sp = _softplus_prim()

    def f(x):
        return np.sum(sp(x) * x)

    x = rng.normal(size=4)
    np.testing.assert_allclose(ad.grad(f)(x), fd_grad(f, x), rtol=1e-7)
    v = rng.normal(size=4)
    np.testing.assert_allclose(ad.jvp(f, (x,), (v,))[1], fd_grad(f, x) @ v, rtol=1e-7)
    # second order: the vjp rule is itself traced, so hvp works
    np.testing.assert_allclose(ad.hessian(f)(x), fd_jac(ad.grad(f), x), rtol=1e-5, atol=1e-7)


def test_custom_primitive_with_compiled_vjp_pair(rng):
    """A kernel and its VJP registered as two primitives (the convolution pattern)."""
    A = rng.normal(size=(3, 4))
    lin_t = ad.primitive(lambda g: g @ A, name="lin_t")
    lin_t.defvjp(lambda gg, out, g: (gg @ A.T,))
    lin_t.defjvp(lambda ts, out, g: lin_t(ts[0]))
    lin = ad.primitive(lambda x: A @ x, name="lin")
    lin.defvjp(lambda g, out, x: (lin_t(g),))
    lin.defjvp(lambda ts, out, x: lin(ts[0]))

    def f(x):
        return np.sum(np.tanh(lin(x)))

    x = rng.normal(size=4)
    np.testing.assert_allclose(ad.grad(f)(x), fd_grad(f, x), rtol=1e-7)
    np.testing.assert_allclose(ad.jacobian(lambda x: lin(x))(x), A, rtol=1e-14)
    np.testing.assert_allclose(ad.hessian(f)(x), fd_jac(ad.grad(f), x), rtol=1e-5, atol=1e-7)
    tape = ad.trace(f, 4)
    X = rng.normal(size=(5, 4))
    v, G = tape.value_and_grad(X)
    np.testing.assert_allclose(G, np.array([ad.grad(f)(r) for r in X]), rtol=1e-12)


def test_primitive_registry():
    sp = _softplus_prim()
    name = "test_softplus_registry"
    if name not in ad.registered():
        ad.register(name, sp)
    assert ad.get(name) is sp
    with pytest.raises(ValueError, match="already registered"):
        ad.register(name, _softplus_prim())
    with pytest.raises(KeyError, match="no primitive"):
        ad.get("nope")
    no_rule = ad.primitive(lambda x: x * 2.0)
    with pytest.raises(ad.TracingError, match="no reverse"):
        ad.grad(lambda x: np.sum(no_rule(x)))(np.ones(2))
    with pytest.raises(ad.TracingError, match="no forward"):
        ad.jvp(lambda x: np.sum(no_rule(x)), (np.ones(2),), (np.ones(2),))


# --------------------------------------------------------------------------- scipy / threads
def test_scipy_objective():
    obj = ad.ScipyObjective(rosen)
    x0 = np.array([-1.2, 1.0, 0.8, 1.1])
    res = so.minimize(obj.fun, x0, jac=obj.jac, hessp=obj.hessp, method="trust-ncg")
    ref = so.minimize(so.rosen, x0, jac=so.rosen_der, hessp=so.rosen_hess_prod,
                      method="trust-ncg")
    np.testing.assert_allclose(res.x, ref.x, atol=1e-8)   # n=4 has a second local minimum
    assert np.linalg.norm(obj.jac(res.x)) < 1e-4
    res = so.minimize(ad.value_and_grad(rosen), x0, jac=True, method="BFGS")
    ref = so.minimize(so.rosen, x0, jac=so.rosen_der, method="BFGS")
    np.testing.assert_allclose(res.x, ref.x, atol=1e-6)


def test_grad_function_shared_between_threads(rng):
    g = ad.grad(rosen)
    xs = [rng.normal(size=int(n)) for n in rng.integers(2, 12, size=40)]
    expect = [so.rosen_der(x) for x in xs]
    barrier = threading.Barrier(4)

    def work(k):
        barrier.wait()
        return [g(x) for x in xs[k::4]]

    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(work, range(4)))
    for k in range(4):
        for a, b in zip(got[k], expect[k::4], strict=False):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-12)
