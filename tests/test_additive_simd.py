"""The SIMD main-effect loop of the spline additive model (``_simd.h``) against the
reference Cython loop, the portable C loop and dense B-spline design matrices."""

import numpy as np
import pytest

from effai_fast.additive import AdditiveNetwork, _kernels, make_additive
from effai_fast.additive._splines import bspline_design, tensor_design

IMPLS = (0, 1, 2)   # fastest for this CPU, portable C, reference Cython


def _model(rng, d, M, K, feats=None):
    feats = rng.integers(0, d, M).astype(np.int32) if feats is None else feats
    coef = rng.standard_normal((M, K))
    lo = rng.uniform(-1.0, -0.5, M)
    hi = rng.uniform(0.5, 1.0, M)
    maps = np.column_stack([lo, (K - 3) / (hi - lo)])
    return feats, coef, maps


def _design_ref(X, feats, coef, maps, bias):
    X64 = X.astype(np.float64)
    K = coef.shape[1]
    return bias + sum(bspline_design(X64[:, j], *maps[u], K) @ coef[u]
                      for u, j in enumerate(feats))


NO_PAIRS = (np.zeros((0, 2), np.int32), np.zeros((0, 25)), np.zeros((0, 4)))


@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 17, 255, 256, 257, 531])
def test_main_effects_match_reference_every_tail(n, dtype, n_threads, rng):
    d, M, K = 6, 9, 12
    feats, coef, maps = _model(rng, d, M, K)
    X = rng.uniform(-1.3, 1.3, (n, d)).astype(dtype)          # some points outside the knots
    X[0, 0] = np.float32(maps[0, 0])                          # a knot end exactly
    outs = []
    for impl in IMPLS:
        out = np.empty(n, dtype)
        bad = _kernels.spline_forward(X, feats, coef, maps, *NO_PAIRS, 5, -0.3, out, n_threads,
                                      impl, True)
        assert bad is False
        outs.append(out)
    ref = _design_ref(X, feats, coef, maps, -0.3)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for out in outs:
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)
    # the fast loop against the existing reference loop, not only against numpy
    np.testing.assert_allclose(outs[0], outs[2], rtol=tol, atol=tol)


def test_results_bitwise_independent_of_threads_and_position(dtype, rng):
    d, M, K = 10, 10, 30
    feats, coef, maps = _model(rng, d, M, K, np.arange(10, dtype=np.int32))
    X = rng.uniform(-1, 1, (1000, d)).astype(dtype)
    o1, o2 = np.empty(1000, dtype), np.empty(1000, dtype)
    _kernels.spline_forward(X, feats, coef, maps, *NO_PAIRS, 5, 0.1, o1, 1)
    _kernels.spline_forward(X, feats, coef, maps, *NO_PAIRS, 5, 0.1, o2, 2)
    np.testing.assert_array_equal(o1, o2)
    # a point gives the same bits in a full group, in a short tail group, or alone
    for lo, hi in [(997, 1000), (5, 6), (0, 1), (256, 263)]:
        sub = np.empty(hi - lo, dtype)
        _kernels.spline_forward(np.ascontiguousarray(X[lo:hi]), feats, coef, maps, *NO_PAIRS,
                                5, 0.1, sub, 1)
        np.testing.assert_array_equal(sub, o1[lo:hi])


def test_many_units_span_several_unit_chunks(n_threads, rng):
    """More units than one SoA pass holds (64): the chunks keep the unit order."""
    d, M, K = 80, 150, 7
    feats, coef, maps = _model(rng, d, M, K)
    X = rng.uniform(-1.1, 1.1, (77, d))
    ref = _design_ref(X, feats, coef, maps, 2.0)
    for impl in IMPLS:
        out = np.empty(77)
        _kernels.spline_forward(X, feats, coef, maps, *NO_PAIRS, 5, 2.0, out, n_threads, impl)
        np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


def test_main_effects_with_pairs_against_designs(dtype, n_threads, rng):
    d, M, K, K2 = 5, 5, 10, 6
    feats, coef, maps = _model(rng, d, M, K, np.arange(5, dtype=np.int32))
    pf = np.array([[0, 3], [2, 4]], np.int32)
    pc = rng.standard_normal((2, K2 * K2))
    pm = np.array([[-1.0, (K2 - 3) / 2.0, -1.0, (K2 - 3) / 2.0]] * 2)
    X = rng.uniform(-1.2, 1.2, (203, d)).astype(dtype)
    ref = _design_ref(X, feats, coef, maps, 0.5)
    X64 = X.astype(np.float64)
    for u, (a, b) in enumerate(pf):
        ref += tensor_design(X64[:, a], X64[:, b], pm[u, :2], pm[u, 2:], K2) @ pc[u]
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for impl in IMPLS:
        out = np.empty(203, dtype)
        _kernels.spline_forward(X, feats, coef, maps, pf, pc, pm, K2, 0.5, out, n_threads, impl)
        np.testing.assert_allclose(out, ref, rtol=tol, atol=tol)


@pytest.mark.parametrize("d", [3, 4])   # 3: 8 d values per group are not whole registers
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_inputs_are_flagged_and_never_index_out_of_range(bad, d, dtype, n_threads,
                                                                   rng):
    M, K = 3, 9
    feats, coef, maps = _model(rng, d, M, K, np.array([0, 1, 2], np.int32) % d)
    # the fused check of the C loops sees each group of 8 rows: first row, a full group in
    # the second block, the tail group's last row, the last column
    for row, col in [(0, 0), (130, 1), (263, d - 1), (299, d - 1)]:
        X = rng.uniform(-1, 1, (300, d)).astype(dtype)
        X[row, col] = bad
        for impl in IMPLS:
            out = np.empty(300, dtype)
            flagged = _kernels.spline_forward(X, feats, coef, maps, *NO_PAIRS, 5, 0.0, out,
                                              n_threads, impl, True)
            assert flagged is True
            ok = np.delete(np.arange(300), row)
            ref = _design_ref(X[ok], feats, coef, maps, 0.0)
            tol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(out[ok], ref, rtol=tol, atol=tol)
    # without the check nothing is flagged (direct kernel callers validate themselves)
    assert _kernels.spline_forward(X, feats, coef, maps, *NO_PAIRS, 5, 0.0, out, 1) is False


def test_nonfinite_flagged_without_main_effects(dtype, n_threads, rng):
    """Pairs only (M = 0): the block check still runs."""
    d, K2 = 3, 6
    pf = np.array([[0, 2]], np.int32)
    pc = rng.standard_normal((1, K2 * K2))
    pm = np.array([[-1.0, (K2 - 3) / 2.0, -1.0, (K2 - 3) / 2.0]])
    empty = (np.zeros(0, np.int32), np.zeros((0, 7)), np.zeros((0, 2)))
    X = rng.uniform(-1, 1, (100, d)).astype(dtype)
    out = np.empty(100, dtype)
    for impl in IMPLS:
        assert _kernels.spline_forward(X, *empty, pf, pc, pm, K2, 0.0, out, n_threads, impl,
                                       True) is False
    X[57, 1] = np.inf
    for impl in IMPLS:
        assert _kernels.spline_forward(X, *empty, pf, pc, pm, K2, 0.0, out, n_threads, impl,
                                       True) is True


def test_impl_argument_is_checked(rng):
    feats, coef, maps = _model(rng, 2, 2, 7)
    X = rng.uniform(-1, 1, (5, 2))
    with pytest.raises(ValueError, match="impl"):
        _kernels.spline_forward(X, feats, coef, maps, *NO_PAIRS, 5, 0.0, np.empty(5), 1, 3)
    assert isinstance(_kernels.have_avx2(), bool)


def test_estimator_predict_uses_the_fast_loop_and_rejects_nonfinite(dtype, n_threads):
    X, y = make_additive(400, 6, seed=0)
    m = AdditiveNetwork(6, shape="spline", n_threads=n_threads).fit(X, y)
    Xt = make_additive(1001, 6, seed=1)[0].astype(dtype)
    pred = m.predict(Xt)
    ref = np.empty(1001, dtype)
    _kernels.spline_forward(Xt, m._p_main_feat, m._p_main_coef, m._p_main_map,
                            m._p_pair_feat, m._p_pair_coef, m._p_pair_map, m._sp_K2,
                            float(m._p_bias), ref, 1, 2)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(pred, ref, rtol=tol, atol=tol * np.abs(ref).max())
    Xt[500, 5] = np.nan
    with pytest.raises(ValueError, match="X must not contain NaN or infinity"):
        m.predict(Xt)
