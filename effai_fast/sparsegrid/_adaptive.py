"""Dimension-adaptive sparse grids (Gerstner & Griebel 2003).

Design note
-----------
The grid is a downward-closed set of multi-levels ("indices"), split into the
*old* set (accepted) and the *active* set (its admissible forward neighbours
whose function values are already known).  Each step accepts the active index
with the largest error indicator and adds its admissible forward neighbours
``i + e_k`` (admissible: every backward neighbour ``i + e_k - e_j`` is old),
evaluating the function at their new points.  Because the hierarchical basis
functions of an index vanish at the points of every index that is not above
it componentwise, a new index's surpluses are simply ``f - I(f)`` at its
points, whatever else is active: the interpolant is the unique interpolant on
all evaluated points.  The indicator is the largest absolute surplus of the
index; refinement stops at the point budget or when every active indicator is
below ``tol`` times the largest absolute function value seen.

Two bases:

``newton`` (global polynomial): every index is one point, the nested Leja
    sequence on [0, 1] per dimension, with the Newton basis (zero at all
    earlier points).  On a downward-closed set this is the same polynomial
    space as Tasmanian's Lagrange-form Leja grids, so the same interpolant.
``modlinear`` (local): indices are hierarchical subspaces with
    ``2^(sum(l-1))`` points; the modified linear basis extrapolates to the
    boundary.
"""

from __future__ import annotations

import numpy as np

from effai_fast._validation import check_int, check_real

from ._basis import Basis1D, leja_points
from ._grid import _check_domain, _GridAPI, _SubspaceGrid

__all__ = ["DimensionAdaptiveSparseGrid"]

_BASES = {"leja": "newton", "modlinear": "modlinear"}


class DimensionAdaptiveSparseGrid(_GridAPI):
    """Greedy dimension-adaptive sparse-grid interpolant of a black-box function.

    Parameters
    ----------
    dim : int
        Number of dimensions.
    domain : array_like, shape (dim, 2) or (2,), optional
        Box per dimension; default the unit cube.
    basis : {"leja", "modlinear"}, default="leja"
        ``leja``: global polynomials on nested Leja points (best for smooth
        functions); ``modlinear``: local piecewise-linear (robust for kinks).
    max_points : int, default=500
        Point budget (function evaluations); refinement stops before an index
        that would exceed it.
    tol : float, default=0.0
        Stop when every active indicator is <= ``tol * max|f|``.
    max_level : int, optional
        Highest 1-D level (default 64 for ``leja``, 20 for ``modlinear``).

    Attributes
    ----------
    indices_ : ndarray (n_indices, dim)
        Every multi-level of the grid, in the order added.
    accepted_ : ndarray of bool (n_indices,)
        Which indices were refined (the old set).
    indicators_ : ndarray (n_indices,)
        Error indicator of each index.
    points_per_dimension_ : ndarray (dim,)
        Number of points whose level in that dimension is above the first:
        where the budget went.
    interaction_points_ : dict
        Number of points by how many dimensions they refine (0: the root, 1:
        main effects, 2: pairwise interactions, ...).
    history_ : list of (n_points, largest active indicator)

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.sparsegrid import DimensionAdaptiveSparseGrid
    >>> f = lambda x: np.exp(x[:, 0]) + np.sin(3 * x[:, 1]) + 0.01 * x[:, 2]
    >>> g = DimensionAdaptiveSparseGrid(4, max_points=60).fit(f)
    >>> x = np.random.default_rng(0).random((100, 4))
    >>> bool(np.abs(g.evaluate(x) - f(x)).max() < 1e-6)
    True
    """

    def __init__(self, dim: int, domain=None, basis: str = "leja", max_points: int = 500,
                 tol: float = 0.0, max_level: int | None = None):
        self.dim = check_int(dim, "dim", min_value=1)
        if basis not in _BASES:
            raise ValueError(f"basis must be one of {sorted(_BASES)}, got {basis!r}")
        self.basis = basis
        self.domain_ = _check_domain(domain, self.dim)
        self.max_points = check_int(max_points, "max_points", min_value=1)
        self.tol = check_real(tol, "tol", min_value=0.0)
        default = 64 if basis == "leja" else 20
        self.max_level = check_int(default if max_level is None else max_level, "max_level",
                                   min_value=1, max_value=200 if basis == "leja" else 30)
        self._nodes = leja_points(self.max_level + 1) if basis == "leja" else None
        self._grid = None
        self.surplus_ = None
        self.values_ = None

    # ------------------------------------------------------------------ helpers
    def _make_grid(self, levels) -> _SubspaceGrid:
        lv = np.asarray(levels, dtype=np.int32).reshape(-1, self.dim)
        b = Basis1D(_BASES[self.basis], max(int(lv.max()), 1), nodes=self._nodes)
        return _SubspaceGrid(self.dim, b, lv)

    def _eval_f(self, f, unit_pts: np.ndarray) -> np.ndarray:
        lo, hi = self.domain_[:, 0], self.domain_[:, 1]
        y = np.asarray(f(lo + unit_pts * (hi - lo)), dtype=np.float64).reshape(-1)
        if y.shape[0] != unit_pts.shape[0]:
            raise ValueError(f"f must return one value per point: got {y.shape[0]} values for "
                             f"{unit_pts.shape[0]} points")
        if not np.all(np.isfinite(y)):
            raise ValueError("f returned NaN or infinity")
        return y

    # ---------------------------------------------------------------------- fit
    def fit(self, f) -> DimensionAdaptiveSparseGrid:
        """Refine greedily on the vectorised callable ``f: (n, dim) -> (n,)``.

        Returns
        -------
        self
        """
        if not callable(f):
            raise TypeError("f must be a callable taking an (n, dim) array")
        d = self.dim
        lo = 0 if self.basis == "leja" else 1
        root = (lo,) * d
        levels = [root]
        grid = self._make_grid(levels)
        values = self._eval_f(f, grid.unit_points)
        surplus = values.copy()
        indicators = [float(np.abs(surplus).max())]
        old: set[tuple[int, ...]] = set()
        active = {root: 0}
        scale = max(float(np.abs(values).max()), np.finfo(float).tiny)
        history = [(grid.n_points, indicators[0])]
        budget_hit = False
        while active and not budget_hit:
            best = max(active, key=lambda t: indicators[active[t]])
            if indicators[active[best]] <= self.tol * scale:
                break
            del active[best]
            old.add(best)
            cands = []
            for k in range(d):
                c = list(best)
                c[k] += 1
                if c[k] > self.max_level:
                    continue
                ct = tuple(c)
                if ct in active or any(
                        c[j] > lo and tuple(c[:j] + [c[j] - 1] + c[j + 1:]) not in old
                        for j in range(d)):
                    continue
                cands.append(ct)
            # keep the candidates that fit the budget (sizes are known in closed form)
            m = grid.basis.m
            n_new = grid.n_points
            kept = []
            for ct in cands:
                size = int(np.prod(m(np.asarray(ct))))
                if n_new + size > self.max_points:
                    budget_hit = True
                    continue
                kept.append((ct, size))
                n_new += size
            if kept:
                trial = self._make_grid(levels + [ct for ct, _ in kept])
                new_pts = np.ascontiguousarray(trial.unit_points[grid.n_points:])
                y = self._eval_f(f, new_pts)
                interp = np.empty(new_pts.shape[0])
                # the new indices' surpluses do not depend on each other (module note)
                grid.evaluate_unit(new_pts, surplus, interp, 1)
                a = y - interp
                start = 0
                for ct, size in kept:
                    levels.append(ct)
                    active[ct] = len(levels) - 1
                    indicators.append(float(np.abs(a[start:start + size]).max()))
                    start += size
                values = np.concatenate([values, y])
                surplus = np.concatenate([surplus, a])
                grid = trial
                scale = max(scale, float(np.abs(y).max()))
            history.append((grid.n_points, max((indicators[i] for i in active.values()),
                                               default=0.0)))
        self._grid = grid
        self.values_ = values
        self.surplus_ = surplus
        self._weights = None
        self.indices_ = np.asarray(levels, dtype=np.int32)
        self.accepted_ = np.array([tuple(t) in old for t in levels])
        self.indicators_ = np.asarray(indicators)
        self.history_ = history
        pl = grid.point_levels
        refined = pl > lo
        self.points_per_dimension_ = refined.sum(axis=0)
        orders = refined.sum(axis=1)
        self.interaction_points_ = {int(o): int((orders == o).sum()) for o in np.unique(orders)}
        return self

    @property
    def n_points(self) -> int:
        if self._grid is None:
            return 0
        return self._grid.n_points

    @property
    def points(self) -> np.ndarray:
        if self._grid is None:
            raise ValueError("call fit(f) first")
        return super().points

    def __repr__(self) -> str:
        return (f"DimensionAdaptiveSparseGrid(dim={self.dim}, basis={self.basis!r}, "
                f"n_points={self.n_points})")
