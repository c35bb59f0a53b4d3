"""Sparse grids: counts, hierarchisation, evaluation kernel and quadrature vs dense references."""

import itertools
import math

import numpy as np
import pytest

from effai_fast.sparsegrid import DimensionAdaptiveSparseGrid, SparseGrid, n_points
from effai_fast.sparsegrid._basis import Basis1D, leja_points
from effai_fast.sparsegrid._functions import WING_WEIGHT_DOMAIN, additive_8d, wing_weight

BASES = [("hat", False), ("modlinear", False), ("hat", True)]
IDS = ["hat", "modlinear", "boundary"]


# ----------------------------------------------------------------- references
def dense_matrix(grid, u):
    """B[i, p] = phi_p(u_i): every basis function evaluated by its textbook formula."""
    g = grid._grid
    B = np.ones((u.shape[0], g.n_points))
    for p in range(g.n_points):
        for k in range(g.dim):
            B[:, p] *= g.basis.phi(int(g.point_levels[p, k]), int(g.J[p, k]), u[:, k])
    return B


def brute_force_points(d, n, boundary):
    """Points of the regular grid, enumerated from the full grid of level n."""
    h = 2**n
    coords = list(range(0 if boundary else 1, h + (1 if boundary else 0)))

    def level(c):  # 1-D level of the dyadic point c / 2^n (boundary points count as 1)
        if c in (0, h):
            return 1
        return n - (c & -c).bit_length() + 1

    lev = {c: level(c) for c in coords}
    pts = [p for p in itertools.product(coords, repeat=d)
           if sum(lev[c] for c in p) <= n + d - 1]
    return np.array(sorted(pts)) / h


def smooth(x):
    return np.exp(0.5 * x.sum(axis=1)) * np.cos(x[:, 0] - 0.3 * x[:, -1])


# --------------------------------------------------------------------- counts
def test_closed_form_count_examples():
    assert n_points(2, 3) == 17
    assert SparseGrid(2, 3).n_points == 17
    assert n_points(1, 5) == 31
    assert n_points(3, 1) == 1
    assert n_points(1, 4, boundary=True) == 17          # 2^n + 1
    assert n_points(2, 1, boundary=True) == 9           # 3 x 3
    assert n_points(8, 5) == 6401


def _n_points_by_definition(d, n, boundary):
    if not boundary:
        return sum((1 << i) * math.comb(d - 1 + i, d - 1) for i in range(n))
    total = 3**d
    for m in range(1, d + 1):
        total += math.comb(d, m) * 3 ** (d - m) * sum(math.comb(s - 1, m - 1) << s
                                                      for s in range(m, n))
    return total


@pytest.mark.parametrize("boundary", [False, True], ids=["interior", "boundary"])
def test_n_points_recurrences_equal_the_defining_sums(boundary):
    for d in (1, 2, 3, 4, 7, 12, 30):
        for n in (1, 2, 3, 5, 8, 13, 40):
            assert n_points(d, n, boundary) == _n_points_by_definition(d, n, boundary), (d, n)


def test_n_points_huge_arguments_refused_or_exact_at_once():
    # used to loop 10**30 times; now a ValueError (the count would have ~10**30 bits) ...
    for d, n, b in [(3, 10**30, False), (2, 10**30, True), (10**30, 1, True),
                    (10**6, 10**4, False)]:
        with pytest.raises(ValueError, match="n_points computes exact counts below"):
            n_points(d, n, b)
    # ... or exact without a long loop when the count itself is small
    assert n_points(10**30, 1) == 1
    assert n_points(10**30, 2) == 2 * 10**30 + 1      # centre + 2 points per dimension
    assert n_points(1, 60000) == 2**60000 - 1
    assert n_points(2, 50000) == _n_points_by_definition(2, 50000, False)
    big = n_points(20000, 3, boundary=True)
    assert big.bit_length() > 31000 and big % 3 == 0
    with pytest.raises(ValueError, match="dim=3, level=1000"):
        SparseGrid(3, 10**30)


@pytest.mark.parametrize("d,n", [(1, 1), (1, 6), (2, 1), (2, 4), (3, 3), (4, 4), (6, 3)])
@pytest.mark.parametrize("boundary", [False, True], ids=["interior", "boundary"])
def test_points_match_brute_force_enumeration(d, n, boundary):
    g = SparseGrid(d, n, boundary=boundary)
    ref = brute_force_points(d, n, boundary)
    assert g.n_points == len(ref) == n_points(d, n, boundary)
    got = np.array(sorted(map(tuple, g.points)))
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("d", [1, 2, 3, 5, 10, 20])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_closed_form_equals_subspace_sum(d, n):
    # interior: sum over |l|_1 <= n + d - 1 of 2^(|l|_1 - d)
    direct = sum(2**(s - d) * math.comb(s - 1, d - 1) for s in range(d, n + d))
    assert n_points(d, n) == direct


# --------------------------------------------------- hierarchisation & kernel
@pytest.mark.parametrize("basis,boundary", BASES, ids=IDS)
@pytest.mark.parametrize("d,n", [(1, 5), (2, 4), (3, 3)])
def test_hierarchisation_equals_dense_solve(basis, boundary, d, n):
    g = SparseGrid(d, n, basis=basis, boundary=boundary)
    u = g._grid.unit_points
    v = smooth(g.points)
    alpha_ref = np.linalg.solve(dense_matrix(g, u), v)
    alpha = g.hierarchize(v)
    np.testing.assert_allclose(alpha, alpha_ref, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(g._grid.dehierarchize(alpha), v, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("basis,boundary", BASES, ids=IDS)
def test_evaluation_matches_dense_reference(basis, boundary, dtype, n_threads, rng):
    g = SparseGrid(3, 4, basis=basis, boundary=boundary, domain=[(-1, 2), (0, 1), (3, 5)])
    g.fit(smooth(g.points))
    x = g.domain_[:, 0] + rng.random((300, 3)) * (g.domain_[:, 1] - g.domain_[:, 0])
    x = np.vstack([x, g.points])          # grid points lie on support boundaries
    x = x.astype(dtype).astype(np.float64)  # the reference sees the same rounded queries
    ref = dense_matrix(g, (x - g.domain_[:, 0]) / (g.domain_[:, 1] - g.domain_[:, 0])) @ g.surplus_
    got = g.evaluate(x.astype(dtype), n_threads=n_threads)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)
    # interpolation property
    np.testing.assert_allclose(g.evaluate(g.points, n_threads=n_threads), g.values_,
                               rtol=1e-12, atol=1e-12)


def test_evaluation_independent_of_thread_count(rng):
    g = SparseGrid(5, 4, basis="modlinear")
    g.fit(smooth(g.points))
    x = rng.random((5000, 5))
    np.testing.assert_array_equal(g.evaluate(x, n_threads=1), g.evaluate(x, n_threads=2))


def test_out_buffer_and_1d_query(rng):
    g = SparseGrid(2, 3, basis="modlinear").fit(smooth(SparseGrid(2, 3).points))
    out = np.empty(4)
    x = rng.random((4, 2))
    assert g.evaluate(x, out=out) is out
    assert g.evaluate(x[0]).shape == (1,)
    np.testing.assert_allclose(g(x), out)


def test_interpolation_error_decreases_with_level(rng):
    f = lambda x: np.prod(np.sin(np.pi * x), axis=1)  # noqa: E731 - zero on the boundary
    x = rng.random((2000, 3))
    errs = []
    for n in (3, 5, 7):
        g = SparseGrid(3, n).fit_function(f)
        errs.append(np.abs(g.evaluate(x) - f(x)).max())
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 5e-3


# ------------------------------------------------------------------ quadrature
@pytest.mark.parametrize("basis,boundary", BASES, ids=IDS)
def test_quadrature_weights_match_dense_reference(basis, boundary):
    g = SparseGrid(3, 4, basis=basis, boundary=boundary, domain=[(0, 2), (0, 1), (-1, 1)])
    B = dense_matrix(g, g._grid.unit_points)
    ints = g._grid.basis_integrals() * 4.0
    w_ref = np.linalg.solve(B.T, ints)
    np.testing.assert_allclose(g.quadrature_weights, w_ref, rtol=1e-10, atol=1e-13)
    v = smooth(g.points)
    assert g.integrate(v) == pytest.approx(ints @ g.hierarchize(v), rel=1e-12)


def test_quadrature_exact_cases():
    # boundary hat grids integrate multilinear functions exactly, modlinear constants
    g = SparseGrid(3, 3, boundary=True, domain=[(0, 2), (1, 3), (0, 1)])
    f = lambda x: 1 + x[:, 0] * x[:, 1] - 2 * x[:, 2]  # noqa: E731
    assert g.integrate(f(g.points)) == pytest.approx(4 + 2 * 4 - 2 * 0.5 * 4, rel=1e-13)
    g = SparseGrid(4, 3, basis="modlinear", domain=(0, 3))
    assert g.integrate(np.full(g.n_points, 2.0)) == pytest.approx(2 * 81, rel=1e-13)
    # hat-basis quadrature converges for a smooth function vanishing on the boundary
    f = lambda x: np.prod(np.sin(np.pi * x), axis=1)  # noqa: E731
    g = SparseGrid(2, 7).fit_function(f)
    assert g.integrate() == pytest.approx((2 / np.pi) ** 2, rel=2e-3)


# ------------------------------------------------------------------- bad input
def test_bad_input():
    with pytest.raises(ValueError, match="dim"):
        SparseGrid(0, 3)
    with pytest.raises(ValueError, match="level"):
        SparseGrid(2, 0)
    with pytest.raises(TypeError, match="level"):
        SparseGrid(2, 2.5)
    with pytest.raises(ValueError, match="basis"):
        SparseGrid(2, 2, basis="cubic")
    with pytest.raises(ValueError, match="boundary"):
        SparseGrid(2, 2, basis="modlinear", boundary=True)
    with pytest.raises(ValueError, match="domain"):
        SparseGrid(2, 2, domain=[(0, 1)] * 3)
    with pytest.raises(ValueError, match="lower < upper"):
        SparseGrid(2, 2, domain=[(0, 1), (1, 1)])
    # refuse grids that do not fit, stating the count
    with pytest.raises(ValueError, match=str(n_points(30, 12))):
        SparseGrid(30, 12)
    with pytest.raises(ValueError, match="has 17 points"):
        SparseGrid(2, 3, max_points=10)
    g = SparseGrid(2, 3, basis="modlinear")
    with pytest.raises(ValueError, match="fit"):
        g.evaluate([[0.5, 0.5]])
    with pytest.raises(ValueError, match="values"):
        g.fit(np.ones(5))
    with pytest.raises(ValueError, match="values"):
        g.fit(np.full(17, np.nan))
    g.fit(np.ones(17))
    with pytest.raises(ValueError, match="x"):
        g.evaluate(np.ones((3, 3)))
    with pytest.raises(ValueError, match="x"):
        g.evaluate([[np.nan, 0.5]])
    with pytest.raises(ValueError, match="outside the domain"):
        g.evaluate([[0.5, 1.5]])
    np.testing.assert_allclose(g.evaluate([[0.5, 1.5], [-3, 0.2]], outside="clip"), 1.0)
    with pytest.raises(ValueError, match="outside"):
        g.evaluate([[0.5, 0.5]], outside="wrap")
    with pytest.raises(TypeError, match="out"):
        g.evaluate([[0.5, 0.5]], out=np.empty(1, np.float32))
    assert g.evaluate(np.empty((0, 2))).shape == (0,)


# -------------------------------------------------------- dimension adaptivity
def dense_newton_reference(grid, f, u_query):
    """Solve the interpolation problem on the adaptive grid's points with a dense matrix."""
    B = dense_matrix(grid, grid._grid.unit_points)
    alpha = np.linalg.solve(B, f(grid.points))
    return dense_matrix(grid, u_query) @ alpha


@pytest.mark.parametrize("basis", ["leja", "modlinear"])
def test_adaptive_interpolant_matches_dense_solve(basis, dtype, n_threads, rng):
    f = lambda x: np.exp(x[:, 0] - 0.5 * x[:, 1]) + x[:, 2] ** 2  # noqa: E731
    g = DimensionAdaptiveSparseGrid(3, basis=basis, max_points=40).fit(f)
    assert g.n_points <= 40
    u = rng.random((50, 3))
    ref = dense_newton_reference(g, f, u)
    got = g.evaluate(u.astype(dtype), n_threads=n_threads)
    np.testing.assert_allclose(got, ref, rtol=1e-5 if dtype == np.float32 else 1e-10,
                               atol=1e-5 if dtype == np.float32 else 1e-10)
    np.testing.assert_allclose(g.surplus_, g.hierarchize(g.values_), rtol=1e-9, atol=1e-12)


def test_adaptive_spends_points_on_important_dimensions():
    # x0 matters a lot, x1 a little, x2..x5 not at all
    f = lambda x: np.exp(2 * x[:, 0]) + 0.01 * np.sin(3 * x[:, 1])  # noqa: E731
    g = DimensionAdaptiveSparseGrid(6, basis="leja", max_points=300, tol=1e-6).fit(f)
    ppd = g.points_per_dimension_
    assert ppd[0] > ppd[1] > 0
    assert np.all(ppd[2:] <= 1)  # irrelevant: only the first refinement (a zero surplus)
    assert g.n_points < 25
    g = DimensionAdaptiveSparseGrid(6, basis="modlinear", max_points=150).fit(f)
    ppd = g.points_per_dimension_
    assert ppd[0] >= 5 * ppd[1] > 0
    assert np.all(ppd[2:] <= 2)


def test_adaptive_finds_additive_structure():
    g = DimensionAdaptiveSparseGrid(8, max_points=293).fit(additive_8d)
    mixed = (g.indices_ > 0).sum(axis=1) >= 2
    # interaction indices are evaluated (admissible) but their surpluses vanish
    assert np.all(g.indicators_[mixed] < 1e-12)
    x = np.random.default_rng(1).random((2000, 8))
    y = additive_8d(x)
    rel = np.sqrt(np.mean((g.evaluate(x) - y) ** 2) / np.mean(y ** 2))
    assert rel < 3.6e-8


def test_adaptive_wing_weight_anchor():
    g = DimensionAdaptiveSparseGrid(10, domain=WING_WEIGHT_DOMAIN, max_points=446)
    g.fit(wing_weight)
    assert g.n_points <= 446
    rng = np.random.default_rng(2)
    lo, hi = WING_WEIGHT_DOMAIN.T
    x = lo + rng.random((5000, 10)) * (hi - lo)
    y = wing_weight(x)
    err = g.evaluate(x) - y
    assert np.sqrt(np.mean(err ** 2) / np.mean(y ** 2)) < 2.2e-4
    # Wp (last) enters linearly: refined no further than needed for degree 1
    assert g.points_per_dimension_[-1] <= 20


def test_adaptive_tolerance_stops_early_and_integrates():
    f = lambda x: 1 + x[:, 0] * x[:, 1] ** 2  # noqa: E731 - a polynomial of degree (1, 2)
    g = DimensionAdaptiveSparseGrid(2, max_points=100, tol=1e-12, domain=(0, 2)).fit(f)
    assert g.n_points < 20
    assert g.integrate() == pytest.approx(4 + 2 * 8 / 3, rel=1e-12)


def test_adaptive_bad_input():
    with pytest.raises(ValueError, match="basis"):
        DimensionAdaptiveSparseGrid(2, basis="hat")
    with pytest.raises(ValueError, match="max_points"):
        DimensionAdaptiveSparseGrid(2, max_points=0)
    with pytest.raises(TypeError, match="callable"):
        DimensionAdaptiveSparseGrid(2).fit(np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        DimensionAdaptiveSparseGrid(2).fit(lambda x: np.full(len(x), np.nan))
    with pytest.raises(ValueError, match="one value per point"):
        DimensionAdaptiveSparseGrid(2).fit(lambda x: np.ones(len(x) + 1))


def test_leja_points_are_nested_and_distinct():
    p = leja_points(12)
    assert p[:3].tolist() == [0.5, 1.0, 0.0]
    assert len(np.unique(np.round(p, 12))) == 12
    np.testing.assert_array_equal(leja_points(6), p[:6])
    b = Basis1D("newton", 11)
    for e in range(12):  # Newton basis: 0 at earlier points, 1 at its own
        np.testing.assert_allclose(b.phi(e, 0, p[: e + 1]), np.eye(e + 1)[e], atol=1e-12)


# ------------------------------------------------------------ peer helpers
def _match_rows(a, b):
    """Permutation p with a[p] == b (rows of equal point sets, up to rounding)."""
    ka = np.lexsort(np.round(a, 12).T[::-1])
    kb = np.lexsort(np.round(b, 12).T[::-1])
    np.testing.assert_allclose(a[ka], b[kb], rtol=0, atol=1e-14)
    p = np.empty(len(a), dtype=np.int64)
    p[kb] = ka
    return p



# ----------------------------------------------------------------- peer: SG++
def _sgpp_grid(sg, basis, boundary, d, n):
    if boundary:
        g = sg.Grid.createLinearBoundaryGrid(d, 1)
    elif basis == "modlinear":
        g = sg.Grid.createModLinearGrid(d)
    else:
        g = sg.Grid.createLinearGrid(d)
    g.getGenerator().regular(n)
    return g


def _sgpp_vector(sg, a):
    # element-wise: the numpy typemaps of the pysgpp 3.3.1 wheel crash under numpy >= 1.26
    v = sg.DataVector(len(a))
    for i, x in enumerate(a):
        v.set(i, float(x))
    return v


@pytest.mark.parametrize("basis,boundary", BASES, ids=IDS)
@pytest.mark.parametrize("d,n", [(1, 5), (2, 3), (3, 4), (4, 3)])
def test_grid_agrees_with_sgpp(basis, boundary, d, n, rng):
    """SG++ (pysgpp): same level convention (level 1 = centre point), same points, the same
    interpolant to ~1e-14 and the same quadrature weights, for linear (hat), modlinear and
    linearBoundary (boundary level 1) grids."""
    sg = pytest.importorskip("pysgpp")
    g = SparseGrid(d, n, basis=basis, boundary=boundary)
    sgg = _sgpp_grid(sg, basis, boundary, d, n)
    st = sgg.getStorage()
    N = st.getSize()
    assert N == g.n_points == n_points(d, n, boundary)
    sp = np.array([[st.getPoint(i).getStandardCoordinate(k) for k in range(d)]
                   for i in range(N)])
    p = _match_rows(g.points, sp)
    vals = smooth(sp)
    g.fit(smooth(g.points))
    hier = sg.createOperationHierarchisation(sgg)
    alpha = _sgpp_vector(sg, vals)
    hier.doHierarchisation(alpha)
    np.testing.assert_allclose(g.surplus_[p], [alpha.get(i) for i in range(N)], rtol=1e-13,
                               atol=1e-13)
    op = sg.createOperationEval(sgg)
    x = rng.random((60, d))
    ref = np.array([op.eval(alpha, _sgpp_vector(sg, xi)) for xi in x])
    np.testing.assert_allclose(g.evaluate(x), ref, rtol=1e-14, atol=1e-14)
    # quadrature weights: SG++ integrates the interpolant of each unit vector of values
    quad = sg.createOperationQuadrature(sgg)
    w = np.empty(N)
    for i in range(N):
        e = _sgpp_vector(sg, np.eye(1, N, i)[0])
        hier.doHierarchisation(e)
        w[i] = quad.doQuadrature(e)
    np.testing.assert_allclose(g.quadrature_weights[p], w, rtol=1e-13, atol=1e-15)
