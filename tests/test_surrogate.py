"""effai_fast.surrogate: designs, problems, surrogates and their compiled prediction."""

import numpy as np
import pytest
from conftest import tol
from scipy.spatial.distance import cdist

from effai_fast.surrogate import (
    PROBLEMS,
    DesignSpec,
    Domain,
    GaussianProcess,
    MLPSurrogate,
    NotFittedError,
    RBFInterpolant,
    _kernels,
    expected_improvement,
    get_problem,
    latin_hypercube,
    sobol,
    upper_confidence_bound,
)
from effai_fast.surrogate._mlp import _forward_np
from effai_fast.surrogate._predict import kernel_predict, mlp_predict
from effai_fast.surrogate._rbf import _phi


# ------------------------------------------------------------------ domains, designs
def test_domain_validation():
    with pytest.raises(ValueError, match="coordinate 1 .*lower=2.0 >= upper=2.0"):
        Domain([0, 2], [1, 2])
    with pytest.raises(ValueError, match="lower must be < upper"):
        Domain([1], [0])
    with pytest.raises(ValueError, match="same length"):
        Domain([0, 0], [1])
    with pytest.raises(ValueError, match="lower must not contain NaN"):
        Domain([np.nan], [1])
    with pytest.raises(ValueError, match="names must have 2"):
        Domain([0, 0], [1, 1], names=["a"])
    dom = Domain([0, -1], [1, 1], names=["a", "b"])
    assert dom.d == 2 and dom.names == ("a", "b")
    assert Domain.from_dict(dom.to_dict()) == dom


def test_designs_seeded_and_in_domain():
    dom = Domain([0, 10, -5], [1, 20, 5])
    a = latin_hypercube(dom, 50, seed=3)
    assert a.shape == (50, 3) and dom.contains(a).all()
    np.testing.assert_array_equal(a, latin_hypercube(dom, 50, seed=3))
    assert not np.array_equal(a, latin_hypercube(dom, 50, seed=4))
    # one point per stratum in every coordinate
    u = dom.to_unit(a)
    for k in range(3):
        np.testing.assert_array_equal(np.sort(np.floor(u[:, k] * 50)), np.arange(50))
    s = sobol(dom, 64, seed=1)
    assert dom.contains(s).all()
    np.testing.assert_array_equal(sobol(dom, 32, seed=1, start=32), s[32:])
    with pytest.raises(ValueError, match="n must be >= 1"):
        sobol(dom, 0)


@pytest.mark.parametrize("method", ["sobol", "uniform"])
def test_design_spec_chunks_independent_of_split(method):
    dom = Domain([0, 0], [1, 2])
    spec = DesignSpec(dom, 70_000, seed=5, method=method)
    full = spec.generate(0, 70_000)
    parts = np.vstack([x for _, x in spec.chunks(9_999)])
    np.testing.assert_array_equal(full, parts)
    np.testing.assert_array_equal(spec.generate(65_530, 65_540), full[65_530:65_540])
    # a stream that starts mid-way (one fast-forward, then sequential draws)
    mid = [(a, x) for a, x in spec.chunks(4_096, start=12_345, stop=50_001)]
    assert [a for a, _ in mid] == list(range(12_345, 50_001, 4_096))
    np.testing.assert_array_equal(np.vstack([x for _, x in mid]), full[12_345:50_001])
    assert dom.contains(full).all()
    with pytest.raises(ValueError, match="method"):
        DesignSpec(dom, 10, method="lhs")


# ------------------------------------------------------------------ problems
def test_branin_hartmann_known_minima():
    br = get_problem("branin")
    np.testing.assert_allclose(br(br.minimizers), 0.397887, atol=1e-5)
    assert br.minimum == 0.397887
    h6 = get_problem("hartmann6")
    np.testing.assert_allclose(h6(h6.minimizers[0]), -3.32237, atol=1e-5)
    rng = np.random.default_rng(0)
    assert (h6(rng.random((2000, 6))) > -3.32237).all()
    assert (br(br.domain.from_unit(rng.random((2000, 2)))) >= 0.397887 - 1e-6).all()


def test_problem_reference_values():
    # values computed by hand from the VLSE formulas at the domain centres/corners
    bh = get_problem("borehole")
    x = np.array([0.1, 25050, 89335, 1050, 89.55, 760, 1400, 10950])
    lnr = np.log(25050 / 0.1)
    ref = 2 * np.pi * 89335 * 290 / (lnr * (1 + 2 * 1400 * 89335 / (lnr * 0.01 * 10950)
                                            + 89335 / 89.55))
    assert bh(x) == pytest.approx(ref, rel=1e-14)
    ish = get_problem("ishigami")
    assert ish([np.pi / 2, np.pi / 2, np.pi]) == pytest.approx(1 + 7 + 0.1 * np.pi**4)
    for name, p in PROBLEMS.items():
        X = latin_hypercube(p.domain, 64, seed=0)
        y = p(X)
        assert y.shape == (64,) and np.isfinite(y).all(), name
        assert p(X[0]) == pytest.approx(y[0])
    with pytest.raises(ValueError, match="8 columns"):
        bh(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="problem must be one of"):
        get_problem("nope")


# ------------------------------------------------------------------ compiled kernels
def _kernel_ref(X, center, inv_scale, ZT, w, poly, offset, kind):
    Z = (X.astype(np.float64) - center) * inv_scale
    sq = cdist(Z, ZT.T, "sqeuclidean")
    name = {v: k for k, v in _kernels.KINDS.items()}[kind]
    if name == "se":
        phi = np.exp(-0.5 * sq)
    elif name == "matern32":
        r = np.sqrt(3 * sq)
        phi = (1 + r) * np.exp(-r)
    elif name == "matern52":
        r = np.sqrt(5 * sq)
        phi = (1 + r + r * r / 3) * np.exp(-r)
    else:
        phi = _phi(name, sq)
    out = offset + phi @ w
    if poly is not None:
        out += Z @ poly
    return out, phi


@pytest.mark.parametrize("kind", sorted(_kernels.KINDS))
def test_kernel_sum_matches_numpy(kind, dtype, n_threads, rng):
    n, d, m = 37, 5, 301
    centres = rng.random((n, d))
    center = centres.mean(axis=0)
    inv_scale = 1 / rng.uniform(0.3, 1.0, d)
    ZT = np.ascontiguousarray(((centres - center) * inv_scale).T)
    w = rng.standard_normal(n)
    poly = rng.standard_normal(d)
    X = rng.random((m, d))
    X[:3] = centres[:3]  # distance exactly 0
    ref, _ = _kernel_ref(X, center, inv_scale, ZT, w, poly, 0.7, _kernels.KINDS[kind])
    c = [np.ascontiguousarray(a, dtype=dtype) for a in (X, center, inv_scale, ZT, w, poly)]
    got, _ = kernel_predict(c[0], c[1], c[2], c[3], c[4], c[5], 0.7, _kernels.KINDS[kind],
                            n_threads)
    assert got.dtype == dtype
    scale = np.abs(w).sum() + np.abs(poly).sum() * 3
    np.testing.assert_allclose(got, ref, rtol=0, atol=tol(dtype, 3e-5, 1e-12) * scale * 10)


def test_kernel_results_independent_of_threads(rng):
    n, d, m = 300, 4, 5000
    ZT = rng.standard_normal((d, n))
    args = [rng.random((m, d)), np.zeros(d), np.ones(d), ZT, rng.standard_normal(n), None]
    one, _ = kernel_predict(*[np.ascontiguousarray(a) if a is not None else None for a in args],
                            0.0, 0, 1)
    two, _ = kernel_predict(*[np.ascontiguousarray(a) if a is not None else None for a in args],
                            0.0, 0, 2)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("kind", ["se", "matern52"])
def test_kernel_variance_matches_numpy(kind, dtype, n_threads, rng):
    n, d, m = 45, 3, 77  # m not a multiple of the variance block
    centres = rng.random((n, d))
    ZT = np.ascontiguousarray(centres.T)
    w = rng.standard_normal(n)
    A = np.tril(rng.standard_normal((n, n))) * 0.1
    X = rng.random((m, d))
    k = _kernels.KINDS[kind]
    ref_mean, phi = _kernel_ref(X, np.zeros(d), np.ones(d), ZT, w, None, 0.0, k)
    ref_var = np.maximum(5.0 - ((A @ phi.T) ** 2).sum(axis=0), 0)
    c = [np.ascontiguousarray(a, dtype=dtype) for a in (X, np.zeros(d), np.ones(d), ZT, w, A)]
    mean, var = kernel_predict(c[0], c[1], c[2], c[3], c[4], None, 0.0, k, n_threads,
                               A=c[5], prior_var=5.0)
    t = tol(dtype, 2e-5, 1e-12)
    np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=t * np.abs(w).sum() * 10)
    np.testing.assert_allclose(var, ref_var, rtol=0, atol=t * 5.0 * 10 * n)


def test_mlp_forward_matches_numpy(dtype, n_threads, rng):
    sizes = (4, 9, 7, 1)
    Ws = [rng.standard_normal((a, b)) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
    bs = [rng.standard_normal(b) for b in sizes[1:]]
    X = rng.standard_normal((300, 4)) * 2  # 300: not a multiple of the row block
    ref, _ = _forward_np(X, Ws, bs)
    flat = np.concatenate([p for W, b in zip(Ws, bs, strict=True) for p in (W.ravel(), b)])
    got = mlp_predict(X.astype(dtype), flat.astype(dtype), np.asarray(sizes, np.intc),
                      n_threads)
    np.testing.assert_allclose(got, ref, rtol=tol(dtype, 1e-4, 1e-12),
                               atol=tol(dtype, 1e-4, 1e-12))


# ------------------------------------------------------------------ Gaussian process
@pytest.mark.parametrize("kernel,nu", [("se", None), ("matern52", 2.5), ("matern32", 1.5)])
def test_gp_matches_sklearn_fixed_hyperparameters(kernel, nu, rng):
    gpm = pytest.importorskip("sklearn.gaussian_process")
    K = gpm.kernels
    X = rng.random((60, 3))
    y = np.sin(3 * X).sum(axis=1) + 0.1 * X[:, 0]
    ls = np.array([0.3, 0.5, 0.7])
    base = K.RBF(ls, "fixed") if nu is None else K.Matern(ls, "fixed", nu=nu)
    sk = gpm.GaussianProcessRegressor(K.ConstantKernel(1.7, "fixed") * base, alpha=1e-6,
                                      normalize_y=True, optimizer=None).fit(X, y)
    ours = GaussianProcess(kernel=kernel, length_scale=ls, signal_variance=1.7, noise=1e-6,
                           optimizer=None).fit(X, y)
    Xt = rng.random((500, 3))
    m1, s1 = ours.predict(Xt, return_std=True)
    m2, s2 = sk.predict(Xt, return_std=True)
    np.testing.assert_allclose(m1, m2, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(s1, s2, rtol=1e-7, atol=1e-9)
    assert ours.log_marginal_likelihood_value_ == pytest.approx(
        sk.log_marginal_likelihood_value_, rel=1e-10)


@pytest.mark.parametrize("n_threads_", [1, 2])
def test_gp_fused_mean_matches_sklearn_near_training_points(n_threads_, rng):
    """The fused (|z|^2 + |z_j|^2 - 2 z.z_j) SE kernel against scikit-learn to 1e-10,
    with candidates on, 1e-9 away from, and far from the training points (where the
    expansion cancels, or the exponent is clamped at -708)."""
    gpm = pytest.importorskip("sklearn.gaussian_process")
    K = gpm.kernels
    d = 10
    X = rng.random((120, d)) * 4 - 2  # away from the origin: |z|^2 >> s near points
    y = np.sin(X @ rng.standard_normal(d)) + 0.1 * X[:, 0]
    ls = rng.uniform(0.5, 2.0, d)
    sk = gpm.GaussianProcessRegressor(K.ConstantKernel(1.3, "fixed") * K.RBF(ls, "fixed"),
                                      alpha=1e-8, normalize_y=True, optimizer=None).fit(X, y)
    ours = GaussianProcess(length_scale=ls, signal_variance=1.3, noise=1e-8,
                           optimizer=None).fit(X, y)
    Xt = np.concatenate([X[:20], X[20:40] + 1e-9 * rng.standard_normal((20, d)),
                         rng.random((301, d)) * 4 - 2, X[:3] + 200.0])
    ref = sk.predict(Xt)
    got = ours.predict(Xt, n_threads=n_threads_)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-10 * np.abs(y).max())
    np.testing.assert_allclose(got[:20], y[:20], atol=1e-4)  # nearly interpolates
    np.testing.assert_allclose(got[-3:], y.mean(), rtol=1e-12)  # far away: the prior mean
    # the fused and the direct (sum of squared differences) forms agree to rounding
    p = ours._params(np.float64)
    direct = np.empty(Xt.shape[0])
    _kernels.py_kernel_sum_direct(Xt, p["center"], p["inv_scale"], p["ZT"], p["weights"],
                                  np.empty(0), ours.y_mean_, _kernels.KINDS["se"], direct, 1)
    scale = np.abs(p["weights"]).sum()
    np.testing.assert_allclose(got, direct, rtol=0, atol=1e-13 * scale)


@pytest.mark.parametrize("kind", ["se", "gaussian"])
def test_fused_kernel_block_edges_and_padding(kind, rng):
    """m and n not multiples of the 4 x 4 register block; d = 1 and d = 13."""
    for n, d, m in ((1, 1, 1), (5, 13, 7), (37, 2, 9), (64, 3, 130)):
        centres = rng.standard_normal((n, d))
        ZT = np.ascontiguousarray(centres.T)
        w = rng.standard_normal(n)
        X = rng.standard_normal((m, d))
        X[0] = centres[0]
        ref, _ = _kernel_ref(X, np.zeros(d), np.ones(d), ZT, w, None, 0.3,
                             _kernels.KINDS[kind])
        for nt in (1, 2):
            got, _ = kernel_predict(X, np.zeros(d), np.ones(d), ZT, w, None, 0.3,
                                    _kernels.KINDS[kind], nt)
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-13 * (np.abs(w).sum() + 1))


@pytest.mark.parametrize("kernel", ["se", "matern52", "matern32"])
def test_gp_lml_gradient_finite_differences(kernel, rng):
    X = rng.random((40, 3))
    y = np.cos(4 * X[:, 0]) + X[:, 1] ** 2
    gp = GaussianProcess(kernel=kernel, optimizer=None, length_scale=[0.4, 0.6, 0.9],
                         signal_variance=1.3, noise=1e-3).fit(X, y)
    theta = np.log([1.3, 0.4, 0.6, 0.9, 1e-3])
    lml, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    h = 1e-6
    fd = np.array([(gp.log_marginal_likelihood(theta + h * e)
                    - gp.log_marginal_likelihood(theta - h * e)) / (2 * h)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6)


def test_gp_fit_improves_lml_and_predicts(rng):
    p = get_problem("branin")
    X = latin_hypercube(p.domain, 40, seed=1)
    y = p(X)
    gp = GaussianProcess(seed=0, n_restarts=2).fit(X, y)
    fixed = GaussianProcess(optimizer=None).fit(X, y)
    assert gp.log_marginal_likelihood_value_ > fixed.log_marginal_likelihood_value_
    Xt = latin_hypercube(p.domain, 2000, seed=2)
    rel = np.sqrt(np.mean((gp.predict(Xt) - p(Xt)) ** 2)) / np.std(p(Xt))
    assert rel < 0.05
    # interpolates (std ~ 0, mean ~ y) at the training points
    m, s = gp.predict(X, return_std=True)
    np.testing.assert_allclose(m, y, atol=1e-3 * np.std(y))
    assert s.max() < 1e-2 * np.std(y)
    # float32 input is predicted in float64 (the weights cancel)
    np.testing.assert_allclose(gp.predict(Xt.astype(np.float32)),
                               gp.predict(Xt.astype(np.float32).astype(np.float64)), rtol=1e-14)
    # deterministic for a seed
    np.testing.assert_array_equal(GaussianProcess(seed=0, n_restarts=2).fit(X, y).predict(Xt),
                                  gp.predict(Xt))


def test_gp_subset_starts_path(rng):
    X = rng.random((120, 2))
    y = np.sin(5 * X[:, 0]) * X[:, 1]
    gp = GaussianProcess(n_subset=40, n_restarts=1, max_iter=30).fit(X, y)
    assert np.sqrt(np.mean((gp.predict(X) - y) ** 2)) < 1e-3


def test_gp_duplicates_and_bad_input(rng):
    X = rng.random((20, 2))
    X = np.vstack([X, X[:5]])  # exact duplicates
    y = np.sin(X).sum(axis=1)
    for noise in (1e-6, 0.0):
        gp = GaussianProcess(optimizer=None, noise=noise).fit(X, y)
        m, s = gp.predict(X, return_std=True)
        assert np.isfinite(m).all() and np.isfinite(s).all()
    assert np.isfinite(GaussianProcess(seed=1).fit(X, y).predict(X)).all()
    y_nan = y.copy()
    y_nan[3] = np.nan
    with pytest.raises(ValueError, match="y must not contain NaN.*first at index 3"):
        GaussianProcess().fit(X, y_nan)
    with pytest.raises(ValueError, match="X must not contain NaN"):
        GaussianProcess().fit(np.where(X > 0.5, np.nan, X), y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        GaussianProcess().fit(X, y[:-1])
    with pytest.raises(ValueError, match="kernel must be one of"):
        GaussianProcess(kernel="rq").fit(X, y)
    with pytest.raises(ValueError, match="length_scale must be a scalar or have 2 entries"):
        GaussianProcess(length_scale=[1, 2, 3]).fit(X, y)
    with pytest.raises(ValueError, match="length_scale must be positive"):
        GaussianProcess(length_scale=-1.0).fit(X, y)
    with pytest.raises(TypeError, match="reml must be a bool"):
        GaussianProcess(reml="no").fit(X, y)
    with pytest.raises(TypeError, match="normalize_y must be a bool"):
        GaussianProcess(normalize_y=None).fit(X, y)
    with pytest.raises(NotFittedError):
        GaussianProcess().predict(X)
    gp = GaussianProcess(optimizer=None).fit(X, y)
    with pytest.raises(ValueError, match="X has 3 features, but GaussianProcess is expecting 2"):
        gp.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="n_threads must be a non-zero"):
        gp.predict(X, n_threads=0)
    assert gp.predict(np.empty((0, 2))).shape == (0,)


# ------------------------------------------------------------------ RBF
@pytest.mark.parametrize("kernel", ["cubic", "thin_plate_spline", "linear"])
def test_rbf_matches_scipy_and_interpolates(kernel, rng):
    from scipy.interpolate import RBFInterpolator

    X = rng.random((80, 3)) * [1, 2, 3]
    y = np.sin(X).sum(axis=1)
    ours = RBFInterpolant(kernel=kernel, degree=1, scale="isotropic").fit(X, y)
    ref = RBFInterpolator(X, y, kernel=kernel, degree=1)
    np.testing.assert_allclose(ours.predict(X), y, atol=1e-9)
    Xt = rng.random((400, 3)) * [1, 2, 3]
    np.testing.assert_allclose(ours.predict(Xt), ref(Xt), atol=1e-8)
    got32 = ours.predict(Xt.astype(np.float32))
    np.testing.assert_allclose(got32, ref(Xt.astype(np.float32).astype(np.float64)), atol=1e-8)


def test_rbf_gaussian_and_box_scaling(rng):
    from scipy.interpolate import RBFInterpolator

    X = rng.random((50, 2))
    y = np.cos(3 * X[:, 0]) * X[:, 1]
    ours = RBFInterpolant(kernel="gaussian", epsilon=2.0, degree=0, scale="isotropic").fit(X, y)
    # scipy: phi(eps * r); ours scales by 1/max half-range first: match epsilon accordingly
    half = 0.5 * (X.max(axis=0) - X.min(axis=0)).max()
    ref = RBFInterpolator(X, y, kernel="gaussian", epsilon=2.0 / half, degree=0)
    Xt = rng.random((100, 2))
    np.testing.assert_allclose(ours.predict(Xt), ref(Xt), atol=1e-6)
    box = RBFInterpolant().fit(X * [1, 1000], y)
    np.testing.assert_allclose(box.predict(X * [1, 1000]), y, atol=1e-9)


def test_rbf_duplicates_and_singular(rng):
    X = rng.random((30, 2))
    Xd = np.vstack([X, X[:4]])
    yd = np.concatenate([np.sin(X[:, 0]), np.sin(X[:4, 0]) + 0.2])
    rbf = RBFInterpolant().fit(Xd, yd)
    assert rbf.n_duplicates_ == 4
    pred = rbf.predict(X[:4])
    np.testing.assert_allclose(pred, np.sin(X[:4, 0]) + 0.1, atol=1e-9)  # averaged
    with pytest.raises(ValueError, match="at least 3 distinct samples"):
        RBFInterpolant().fit(X[:2], X[:2, 0])
    line = np.column_stack([np.linspace(0, 1, 10), np.linspace(0, 1, 10)])
    with pytest.raises(ValueError, match="singular"):
        RBFInterpolant(scale="isotropic").fit(line, line[:, 0])
    with pytest.raises(ValueError, match="degree must be >= 1"):
        RBFInterpolant(kernel="cubic", degree=0).fit(X, X[:, 0])


# ------------------------------------------------------------------ MLP
def test_mlp_fits_smooth_function(rng):
    X = rng.random((200, 3))
    y = np.sin(3 * X[:, 0]) + X[:, 1] * X[:, 2]
    mlp = MLPSurrogate(hidden=(12, 12), max_iter=300, seed=1).fit(X, y)
    Xt = rng.random((500, 3))
    yt = np.sin(3 * Xt[:, 0]) + Xt[:, 1] * Xt[:, 2]
    assert mlp.score(Xt, yt) > 0.99
    ref, _ = _forward_np(Xt, mlp.coefs_, mlp.intercepts_)
    np.testing.assert_allclose(mlp.predict(Xt), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mlp.predict(Xt.astype(np.float32)), ref, atol=1e-4)
    np.testing.assert_array_equal(MLPSurrogate(hidden=(12, 12), max_iter=300, seed=1)
                                  .fit(X, y).predict(Xt), mlp.predict(Xt))


def test_get_set_params():
    gp = GaussianProcess(kernel="matern32", n_restarts=1)
    assert gp.get_params()["kernel"] == "matern32"
    gp.set_params(noise=1e-4)
    assert gp.noise == 1e-4
    with pytest.raises(ValueError, match="Invalid parameter 'foo'"):
        gp.set_params(foo=1)
    assert "GaussianProcess(" in repr(gp)


# ------------------------------------------------------------------ acquisition
def test_expected_improvement_against_integral(rng):
    from scipy import integrate, stats

    for mean, std, best in [(0.3, 0.5, 0.0), (-1.0, 0.2, 0.0), (2.0, 1.5, 0.5)]:
        ref, _ = integrate.quad(lambda v, b=best, m=mean, s=std: max(b - v, 0)
                                * stats.norm.pdf(v, m, s),
                                mean - 12 * std, mean + 12 * std, points=[best], limit=200)
        assert expected_improvement(mean, std, best) == pytest.approx(ref, rel=1e-7, abs=1e-14)
        assert np.exp(expected_improvement(mean, std, best, log=True)) == pytest.approx(
            ref, rel=1e-7, abs=1e-14)
    # far below the incumbent: EI underflows, log EI still ranks
    le = expected_improvement([50.0, 60.0], [1.0, 1.0], 0.0, log=True)
    assert np.isfinite(le).all() and le[0] > le[1]
    assert expected_improvement(1.0, 0.0, 2.0) == pytest.approx(1.0)
    assert expected_improvement(3.0, 0.0, 2.0) == 0.0
    assert upper_confidence_bound(1.0, 0.5, beta=2, maximize=True) == 2.0
    assert upper_confidence_bound(1.0, 0.5, beta=2) == 0.0


@pytest.mark.parametrize("kind", ["se", "gaussian"])
def test_fused_kernel_generic_and_avx2_loops_agree(kind, n_threads, rng):
    """Both inner loops of the fused kernel (generic C vector extensions and, where the
    CPU has it, AVX2+FMA intrinsics) against the direct form, including exponents far
    below the clamp (the 2^-1020 floor must add nothing visible)."""
    for n, d, m in ((1, 1, 3), (6, 13, 9), (203, 10, 131)):
        centres = rng.standard_normal((n, d)) * 2
        ZT = np.ascontiguousarray(centres.T)
        w = rng.standard_normal(n) * 1e3
        X = rng.standard_normal((m, d)) * 2
        X[0] = centres[0]
        X[-1] = centres[-1] + 100.0          # exponent << -1020: the prior mean
        ref = np.empty(m)
        _kernels.py_kernel_sum_direct(X, np.zeros(d), np.ones(d), ZT, w, np.empty(0), 0.3,
                                      _kernels.KINDS[kind], ref, 1)
        impls = [0, -1] + ([1] if _kernels.have_avx2() else [])
        outs = []
        for impl in impls:
            out = np.empty(m)
            _kernels.py_kernel_sum_fused(X, np.zeros(d), np.ones(d), ZT, w, np.empty(0), 0.3,
                                         _kernels.KINDS[kind], out, n_threads, impl)
            np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13 * (np.abs(w).sum() + 1))
            assert out[-1] == 0.3
            outs.append(out)
        # one thread or two: the same bits
        again = np.empty(m)
        _kernels.py_kernel_sum_fused(X, np.zeros(d), np.ones(d), ZT, w, np.empty(0), 0.3,
                                     _kernels.KINDS[kind], again, 3 - n_threads, -1)
        np.testing.assert_array_equal(again, outs[1])
    with pytest.raises(ValueError, match="impl"):
        _kernels.py_kernel_sum_fused(X, np.zeros(d), np.ones(d), ZT, w, np.empty(0), 0.3,
                                     _kernels.KINDS[kind], out, 1, 5)


def test_gp_interpolation_noise_rule(rng):
    """Noise-free data whose maximum-likelihood nugget is tiny are refitted with the nugget
    at interpolation_noise; noisy data and conflicting duplicates keep the ML nugget."""
    p = get_problem("branin")
    X = latin_hypercube(p.domain, 60, seed=3)
    y = p(X)
    ml = GaussianProcess(seed=0, interpolation_noise=None).fit(X, y)
    assert ml.interpolating_ is False
    # a cap 10x below the ML nugget: the rule (ML nugget < 100 cap) fires
    cap = ml.noise_ / 10
    gp = GaussianProcess(seed=0, interpolation_noise=cap).fit(X, y)
    assert gp.interpolating_ is True and gp.noise_ == pytest.approx(cap)
    np.testing.assert_allclose(gp.predict(X), y, atol=1e-4 * np.std(y))
    np.testing.assert_array_equal(
        GaussianProcess(seed=0, interpolation_noise=cap).fit(X, y).predict(X), gp.predict(X))
    # a cap 1000x below: the ML nugget is real noise for this rule, kept as it is
    g2 = GaussianProcess(seed=0, interpolation_noise=ml.noise_ / 1000).fit(X, y)
    assert g2.interpolating_ is False and g2.noise_ == ml.noise_
    # noisy targets: the ML nugget is the noise, far above the threshold
    Xn = rng.random((150, 2))
    yn = np.sin(4 * Xn[:, 0]) + Xn[:, 1] + 0.05 * rng.standard_normal(150)
    gn = GaussianProcess(seed=0).fit(Xn, yn)
    assert gn.interpolating_ is False
    assert 0.3 < gn.noise_ * gn.y_std_**2 / 0.05**2 < 3.0
    # conflicting duplicates (same x, different y) force a nugget: no interpolation
    Xd = np.vstack([Xn[:40], Xn[:40]])
    yd = np.concatenate([yn[:40], yn[:40] + 0.1])
    gd = GaussianProcess(seed=0).fit(Xd, yd)
    assert gd.interpolating_ is False and np.isfinite(gd.predict(Xd)).all()
    # exact duplicates of a deterministic function: interpolating is safe (jitter if needed)
    Xe = np.vstack([X, X[:10]])
    ge = GaussianProcess(seed=0).fit(Xe, p(Xe))
    m, s = ge.predict(X, return_std=True)
    assert np.isfinite(m).all() and np.isfinite(s).all()
    np.testing.assert_allclose(m, y, atol=1e-3 * np.std(y))
    # the subset path (n > n_subset) takes the same rule
    gs = GaussianProcess(seed=0, n_subset=30, n_restarts=1).fit(X, y)
    assert np.isfinite(gs.predict(X)).all()
    with pytest.raises(ValueError, match="interpolation_noise"):
        GaussianProcess(interpolation_noise=0.0).fit(X, y)
    with pytest.raises(ValueError, match="interpolation_noise"):
        GaussianProcess(interpolation_noise=-1e-9).fit(X, y)


@pytest.mark.parametrize("kernel", ["se", "matern52", "matern32"])
def test_gp_lml_against_dense_formulas(kernel, rng):
    """The triangle-only gradient against the textbook dense formulas (numpy inverse,
    slogdet, 0.5 tr((a a^T - K^-1) dK/dtheta) with dK formed explicitly)."""
    from effai_fast.surrogate._gp import _lml

    n, d = 70, 3
    Z0 = rng.random((n, d))
    y = rng.standard_normal(n)
    theta = np.array([np.log(1.7), np.log(0.3), np.log(0.5), np.log(0.8), np.log(1e-3)])
    s2, ls, tau = np.exp(theta[0]), np.exp(theta[1:4]), np.exp(theta[4])
    diff = (Z0[:, None, :] - Z0[None, :, :]) / ls
    sq = (diff ** 2).sum(-1)
    if kernel == "se":
        R = np.exp(-0.5 * sq)
        dR = [R * diff[..., k] ** 2 for k in range(d)]
    else:
        c = 3.0 if kernel == "matern32" else 5.0
        r = np.sqrt(c * sq)
        if kernel == "matern32":
            R, Gw = (1 + r) * np.exp(-r), 3.0 * np.exp(-r)
        else:
            R, Gw = (1 + r + c * sq / 3) * np.exp(-r), (5.0 / 3.0) * (1 + r) * np.exp(-r)
        dR = [Gw * diff[..., k] ** 2 for k in range(d)]
    K = s2 * R + tau * np.eye(n)
    Ki = np.linalg.inv(K)
    a = Ki @ y
    lml_ref = -0.5 * y @ a - 0.5 * np.linalg.slogdet(K)[1] - 0.5 * n * np.log(2 * np.pi)
    W = np.outer(a, a) - Ki
    dKs = [s2 * R] + [s2 * g for g in dR] + [tau * np.eye(n)]
    g_ref = np.array([0.5 * np.sum(W * dK) for dK in dKs])
    lml, g = _lml(theta, Z0, y, kernel, True)
    np.testing.assert_allclose(lml, lml_ref, rtol=1e-10)
    np.testing.assert_allclose(g, g_ref, rtol=1e-8, atol=1e-8 * np.abs(g_ref).max())


# ------------------------------------------------- GP prior mean: linear trend, auto choice
def _dense_uk(X, y, Xt, ls, s2, tau):
    """Universal kriging by the textbook dense formulas (numpy inverse)."""
    def k(A, B):
        return s2 * np.exp(-0.5 * cdist(A / ls, B / ls, "sqeuclidean"))

    K = k(X, X) + tau * np.eye(len(X))
    Ki = np.linalg.inv(K)
    H = np.c_[np.ones(len(X)), X]
    beta = np.linalg.solve(H.T @ Ki @ H, H.T @ Ki @ y)
    mean = np.c_[np.ones(len(Xt)), Xt] @ beta + k(Xt, X) @ Ki @ (y - H @ beta)
    r = y - H @ beta
    lml = -0.5 * r @ Ki @ r - 0.5 * np.linalg.slogdet(K)[1] - 0.5 * len(y) * np.log(2 * np.pi)
    return mean, lml, beta


@pytest.mark.parametrize("n_threads_", [1, 2])
def test_gp_linear_mean_matches_dense_universal_kriging(n_threads_, rng):
    X = rng.random((60, 3)) * [1.0, 2.0, 5.0] + [0.0, -1.0, 10.0]
    y = np.sin(3 * X[:, 0]) + 2.0 * X[:, 1] - 0.3 * X[:, 2]
    ls, s2, tau = np.array([0.5, 1.1, 3.0]), 1.4, 1e-4
    gp = GaussianProcess(optimizer=None, mean="linear", length_scale=ls, signal_variance=s2,
                         noise=tau, n_threads=n_threads_).fit(X, y)
    assert gp.mean_ == "linear"
    Xt = rng.random((300, 3)) * [1.0, 2.0, 5.0] + [0.0, -1.0, 10.0]
    ys = y.std()
    ref, lml_ref, beta = _dense_uk(X, (y - y.mean()) / ys, Xt, ls, s2, tau)
    np.testing.assert_allclose(gp.predict(Xt), y.mean() + ys * ref, rtol=0, atol=1e-9 * ys)
    np.testing.assert_allclose(gp.trend_coef_, ys * beta[1:], rtol=1e-8)
    np.testing.assert_allclose(gp.log_marginal_likelihood_value_, lml_ref, rtol=1e-9)
    # the variance path adds the same trend
    m, s = gp.predict(Xt, return_std=True)
    np.testing.assert_allclose(m, gp.predict(Xt), rtol=0, atol=1e-10 * ys)
    assert np.isfinite(s).all() and (s >= 0).all()
    # one thread or two: the same bits
    np.testing.assert_array_equal(gp.predict(Xt, n_threads=1), gp.predict(Xt, n_threads=2))


@pytest.mark.parametrize("kernel", ["se", "matern52"])
def test_gp_linear_mean_lml_gradient(kernel, rng):
    """The likelihood profiled over the GLS trend: value against the dense formula,
    gradient (envelope theorem) against central finite differences."""
    from effai_fast.surrogate._gp import _lml

    n, d = 50, 3
    Z0 = rng.random((n, d))
    y = Z0 @ [1.0, -2.0, 0.5] + np.cos(5 * Z0[:, 0])
    H = np.c_[np.ones(n), Z0]
    theta = np.log([1.2, 0.3, 0.7, 0.9, 1e-3])
    lml, g = _lml(theta, Z0, y, kernel, True, H)
    if kernel == "se":
        _, lml_ref, _ = _dense_uk(Z0, y, Z0[:2], np.exp(theta[1:4]), 1.2, 1e-3)
        np.testing.assert_allclose(lml, lml_ref, rtol=1e-10)
    h = 1e-6
    fd = np.array([(_lml(theta + h * e, Z0, y, kernel, False, H)[0]
                    - _lml(theta - h * e, Z0, y, kernel, False, H)[0]) / (2 * h)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())
    # the trend is projected out: adding any linear function of the inputs to y changes
    # neither the value nor the gradient
    lml2, g2 = _lml(theta, Z0, y + H @ [3.0, -1.0, 2.0, 0.5], kernel, True, H)
    np.testing.assert_allclose(lml2, lml, rtol=1e-9)
    np.testing.assert_allclose(g2, g, rtol=1e-7, atol=1e-9 * np.abs(g).max())


@pytest.mark.parametrize("kernel", ["se", "matern52", "matern32"])
def test_gp_reml_against_dense_formula_and_finite_differences(kernel, rng):
    """The restricted likelihood (linear mean, reml=True): value against the dense
    formula -0.5 r'K^-1 r - 0.5 log|K| - 0.5 log|H'K^-1 H| + 0.5 log|H'H|
    - (n - p)/2 log 2 pi, gradient against central differences; a rank-deficient
    basis (a duplicated column) gives the same value as the full-rank one."""
    from scipy.spatial.distance import cdist

    from effai_fast.surrogate._gp import _lml

    n, d = 40, 3
    Z0 = rng.random((n, d))
    y = Z0 @ [1.0, -2.0, 0.5] + np.cos(5 * Z0[:, 0])
    H = np.c_[np.ones(n), Z0]
    theta = np.log([1.2, 0.3, 0.7, 0.9, 1e-3])
    lml, g = _lml(theta, Z0, y, kernel, True, H, reml=True)
    if kernel == "se":
        ls = np.exp(theta[1:4])
        K = 1.2 * np.exp(-0.5 * cdist(Z0 / ls, Z0 / ls, "sqeuclidean")) + 1e-3 * np.eye(n)
        Ki = np.linalg.inv(K)
        A = H.T @ Ki @ H
        r = y - H @ np.linalg.solve(A, H.T @ Ki @ y)
        ref = (-0.5 * r @ Ki @ r - 0.5 * np.linalg.slogdet(K)[1] - 0.5 * np.linalg.slogdet(A)[1]
               + 0.5 * np.linalg.slogdet(H.T @ H)[1] - 0.5 * (n - 4) * np.log(2 * np.pi))
        np.testing.assert_allclose(lml, ref, rtol=1e-9)
    h = 1e-6
    fd = np.array([(_lml(theta + h * e, Z0, y, kernel, False, H, reml=True)[0]
                    - _lml(theta - h * e, Z0, y, kernel, False, H, reml=True)[0]) / (2 * h)
                   for e in np.eye(theta.size)])
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())
    # REML differs from the profiled likelihood, but not in how it sees the span of H
    assert abs(lml - _lml(theta, Z0, y, kernel, False, H)[0]) > 1e-3
    lml2, g2 = _lml(theta, Z0, y, kernel, True, np.c_[H, 2.0 * H[:, 1]], reml=True)
    np.testing.assert_allclose(lml2, lml, rtol=1e-9)
    np.testing.assert_allclose(g2, g, rtol=1e-7, atol=1e-9 * np.abs(g).max())
    # without a trend reml changes nothing
    assert _lml(theta, Z0, y, kernel, False, None, reml=True)[0] == \
        _lml(theta, Z0, y, kernel, False)[0]


def test_gp_reml_option_fits(rng):
    """reml=True/False give different linear-mean fits (both valid; the constant mean
    is unaffected), and log_marginal_likelihood stays the profiled value."""
    X = rng.random((30, 3))
    y = X @ [2.0, -1.0, 0.5] + 0.3 * np.sin(5 * X[:, 0])
    a = GaussianProcess(mean="linear", seed=0).fit(X, y)
    b = GaussianProcess(mean="linear", seed=0, reml=False).fit(X, y)
    assert not np.allclose(a.length_scale_, b.length_scale_)
    for gp in (a, b):
        np.testing.assert_allclose(gp.predict(X), y, atol=1e-3 * y.std())
        assert gp.log_marginal_likelihood() == pytest.approx(
            gp.log_marginal_likelihood_value_, rel=1e-8, abs=1e-8)
    c1 = GaussianProcess(mean="constant", seed=0).fit(X, y)
    c2 = GaussianProcess(mean="constant", seed=0, reml=False).fit(X, y)
    np.testing.assert_array_equal(c1.predict(X), c2.predict(X))


def test_gp_full_data_refinement_stops_on_a_flat_noisy_likelihood(monkeypatch):
    """Above n_subset points the refinement ends when the likelihood stops improving by
    more than 1e-5 of its size (rounding noise) and returns the best point evaluated."""
    import effai_fast.surrogate._gp as gpm

    calls = []
    noise = np.random.default_rng(0)

    def fake_lml(theta, Z0, y, kind, need_grad, H=None, reml=False):
        # a flat top (lml ~ 5e3) with noise of 1e-7 relative and a useless gradient
        v = 5000.0 - 1e-6 * np.sum(theta ** 2) + 5e-4 * noise.standard_normal()
        calls.append((theta.copy(), v))
        return v, noise.standard_normal(theta.size)

    monkeypatch.setattr(gpm, "_lml", fake_lml)
    gp = GaussianProcess(n_subset=10, max_iter=200)
    U = np.random.default_rng(1).random((20, 2))
    t0 = np.zeros(4)
    bounds = gp._bounds(2)
    x, lml = gp._run_lbfgs(t0, U, U[:, 0], bounds, maxls=4)
    assert len(calls) <= 12
    best_t, best_v = max(calls, key=lambda c: c[1])
    np.testing.assert_array_equal(x, best_t)
    assert lml == pytest.approx(best_v, rel=1e-12)


@pytest.mark.parametrize("with_trend", [False, True])
def test_gp_loo_residuals_against_refits(with_trend, rng):
    """Closed-form LOO residuals and predictive variances = conditioning on the other
    n - 1 points explicitly (re-estimating the GLS trend without the left-out point;
    its uncertainty enters the variance)."""
    from effai_fast.surrogate._gp import loo_residuals

    n, d = 30, 2
    Z0 = rng.random((n, d))
    y = np.sin(4 * Z0[:, 0]) + Z0[:, 1]
    theta = np.log([1.5, 0.4, 0.6, 1e-4])
    H = np.c_[np.ones(n), Z0] if with_trend else None
    got, got_var = loo_residuals(theta, Z0, y, "se", H)
    K = 1.5 * np.exp(-0.5 * cdist(Z0 / [0.4, 0.6], Z0 / [0.4, 0.6], "sqeuclidean"))
    K += 1e-4 * np.eye(n)
    ref, ref_var = np.empty(n), np.empty(n)
    for i in range(n):
        o = np.delete(np.arange(n), i)
        Ki = np.linalg.inv(K[np.ix_(o, o)])
        k = K[i, o]
        ref_var[i] = K[i, i] - k @ Ki @ k
        if with_trend:
            Ho = H[o]
            A = Ho.T @ Ki @ Ho
            beta = np.linalg.solve(A, Ho.T @ Ki @ y[o])
            mu = H[i] @ beta + k @ Ki @ (y[o] - Ho @ beta)
            u = H[i] - Ho.T @ Ki @ k
            ref_var[i] += u @ np.linalg.solve(A, u)
        else:
            mu = k @ Ki @ y[o]
        ref[i] = y[i] - mu
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(got_var, ref_var, rtol=1e-6)


def test_gp_mean_auto_choice(rng):
    """mean="auto" keeps the prior mean with the larger LOO log predictive density;
    deterministic for a
    seed; the subset path chooses on the subset; bad values raise."""
    # a strong linear trend plus a small wiggle, few points: the linear mean wins
    X = rng.random((25, 4))
    y = X @ [3.0, -2.0, 1.0, 0.5] + 0.05 * np.sin(6 * X[:, 0])
    gp = GaussianProcess(seed=0).fit(X, y)
    assert set(gp.loo_rmse_) == set(gp.loo_log_density_) == {"constant", "linear"}
    assert gp.mean_ == max(gp.loo_log_density_, key=gp.loo_log_density_.get) == "linear"
    lin = GaussianProcess(seed=0, mean="linear").fit(X, y)
    np.testing.assert_array_equal(gp.predict(X[:5]), lin.predict(X[:5]))
    np.testing.assert_array_equal(GaussianProcess(seed=0).fit(X, y).predict(X), gp.predict(X))
    # the LOO figure is the closed form at the kept hyperparameters
    from effai_fast.surrogate._gp import loo_residuals

    U = (X - X.min(0)) / (X.max(0) - X.min(0))
    r, v = loo_residuals(gp._theta, U, (y - y.mean()) / y.std(), "se", np.c_[np.ones(25), U])
    assert np.sqrt(np.mean(r * r)) == pytest.approx(gp.loo_rmse_["linear"], rel=1e-6)
    lpd = np.mean(-0.5 * np.log(2 * np.pi * v) - 0.5 * r * r / v)
    assert lpd == pytest.approx(gp.loo_log_density_["linear"], rel=1e-6)
    # the constant model is what mean="constant" fits
    con = GaussianProcess(seed=0, mean="constant").fit(X, y)
    assert con.mean_ == "constant" and con.loo_rmse_ == {}
    np.testing.assert_array_equal(con.trend_coef_, np.zeros(4))
    # fewer than d + 2 points: auto falls back to the constant mean, linear raises
    assert GaussianProcess(seed=0).fit(X[:5], y[:5]).mean_ == "constant"
    with pytest.raises(ValueError, match="mean='linear' needs at least"):
        GaussianProcess(mean="linear").fit(X[:5], y[:5])
    with pytest.raises(ValueError, match="mean must be one of"):
        GaussianProcess(mean="quadratic").fit(X, y)
    # fixed hyperparameters: no choice, constant mean
    assert GaussianProcess(optimizer=None).fit(X, y).mean_ == "constant"
    # subset path (n > n_subset): the choice is made on the subset fits
    Xs = rng.random((90, 2))
    ys = 2 * Xs[:, 0] + np.sin(5 * Xs[:, 1])
    gs = GaussianProcess(seed=1, n_subset=40, n_restarts=1).fit(Xs, ys)
    assert gs.mean_ in ("constant", "linear") and len(gs.loo_log_density_) == 2
    np.testing.assert_allclose(gs.predict(Xs), ys, atol=1e-3 * ys.std())
    np.testing.assert_array_equal(
        GaussianProcess(seed=1, n_subset=40, n_restarts=1).fit(Xs, ys).predict(Xs),
        gs.predict(Xs))


def test_gp_linear_mean_degenerate_inputs(rng):
    """A constant input column (singular GLS system), the fewest points the linear mean
    accepts (n = d + 2) and duplicate points: finite fits, no warnings (filterwarnings
    = error), the training data reproduced."""
    X = rng.random((30, 3))
    X[:, 1] = 2.0
    y = np.sin(3 * X[:, 0]) + X[:, 2]
    for mean in ("auto", "linear"):
        gp = GaussianProcess(seed=0, mean=mean).fit(X, y)
        m, s = gp.predict(X, return_std=True)
        np.testing.assert_allclose(m, y, atol=1e-4)
        assert np.isfinite(s).all()
    Xs = rng.random((5, 3))
    ys = Xs.sum(axis=1) + np.sin(Xs[:, 0])
    for mean in ("auto", "linear"):
        gp = GaussianProcess(seed=0, mean=mean).fit(Xs, ys)
        assert np.isfinite(gp.predict(rng.random((20, 3)))).all()
    Xd = np.vstack([X[:, [0, 2]], X[:10, [0, 2]]])
    gd = GaussianProcess(seed=0, mean="linear").fit(Xd, np.sin(4 * Xd[:, 0]) + Xd[:, 1])
    assert np.isfinite(gd.predict(Xd, return_std=True)[1]).all()
