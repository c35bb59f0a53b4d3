"""Sparse grids as sets of hierarchical subspaces; the regular ``SparseGrid``.

Design note
-----------
A grid here is a downward-closed set of multi-levels ``l`` (subspaces), each
owning ``prod_k m(l_k)`` points stored contiguously (row-major over the
per-dimension function index ``j_k``) from ``offset[l]``.  Everything is
generic over that set, so the regular grid and the dimension-adaptive grid
share the code:

* points: the tensor product of the 1-D points of each subspace;
* hierarchisation by the *unidirectional principle*: for each dimension ``k``
  in turn, every point's value becomes its 1-D surplus along ``k``,
  ``a_p <- a_p - sum_{coarser levels l'} phi_{l'}(x_pk) a_{anc(p, l')}``,
  processed coarse to fine so the ancestors already hold surpluses.  The
  ancestor of ``p`` at level ``l'`` in dimension ``k`` lives in subspace
  ``l`` with ``l_k := l'`` at index ``j'`` = the cell of ``x_pk``; its
  position is computed, not searched.  Cost O(N d L) with L levels -- no
  dense solve;
* quadrature weights: the transpose of the same operator applied to the
  integrals of the basis functions (fine to coarse, dimensions reversed);
* evaluation: the compiled kernel (``_kernels.pyx``).
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np

from effai_fast._threads import resolve_n_threads, threads_for_work
from effai_fast._validation import as_float_array, check_int, check_out

from . import _kernels
from ._basis import Basis1D

__all__ = ["SparseGrid", "n_points"]


#: n_points computes exact counts below 2**N_POINTS_MAX_BITS (~19,700 decimal digits)
N_POINTS_MAX_BITS = 1 << 16


def _log2_comb(n: int, k: int) -> float:
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def n_points(dim: int, level: int, boundary: bool = False) -> int:
    """Closed-form number of points of a regular sparse grid.

    Without boundary points, ``N(d, n) = sum_{i<n} 2^i C(d-1+i, d-1)`` (level 1
    is the single centre point).  With the boundary (level-0 functions ``1-x``
    and ``x`` counted as level 1 in the constraint, SG++'s ``linearBoundary``
    with boundary level 1), each dimension at constraint level 1 carries 3
    points: ``N_b(d, n) = sum_{m=0}^{d} C(d, m) 3^(d-m) S_m(n)`` with
    ``S_m(n) = sum_{s=m}^{n-1} C(s-1, m-1) 2^s`` (``m`` dimensions above
    level 1, their level excesses summing to ``s``).

    Both are partial sums of the coefficients of a generating function,
    ``N = sum_{s<n} [z^s] g(z)^d`` with ``g = 1 / (1 - 2z)`` (interior) or
    ``g = (3 - 4z) / (1 - 2z)`` (boundary); the coefficients obey a two-term
    recurrence (from ``(1 - 2z) g' = 2 g`` and ``(3 - 4z)(1 - 2z) g' = 2 g``),
    so the count costs at most ``level`` big-integer by small-integer products
    (``dim`` of them for the interior count when ``dim < level``, through
    ``N(d, n) = 2^n C(n+d-2, d-1) - N(d-1, n)``).

    Parameters
    ----------
    dim, level : int
        Dimension >= 1 and level >= 1.
    boundary : bool, default=False

    Returns
    -------
    int
        Exact count (a Python int).

    Raises
    ------
    ValueError
        When the count is at least ``2**N_POINTS_MAX_BITS`` (``2**65536``): a
        cheap lower bound on its size is checked first, so a huge ``level`` or
        ``dim`` is refused at once instead of computing a number with billions
        of digits.
    """
    d = check_int(dim, "dim", min_value=1)
    n = check_int(level, "level", min_value=1)
    # log2 of a lower bound: the largest interior term 2^(n-1) C(d+n-2, n-1) and,
    # with the boundary, the 3^d points of level 1 (N_b >= N and N_b >= 3^d)
    bits = (n - 1) + _log2_comb(d + n - 2, n - 1)
    if boundary:
        bits = max(bits, d * math.log2(3))
    if bits >= N_POINTS_MAX_BITS:
        raise ValueError(
            f"a sparse grid of dim={d}, level={level}{' with boundary' if boundary else ''} "
            f"has about 2**{bits:.4g} points; n_points computes exact counts below "
            f"2**{N_POINTS_MAX_BITS}: lower the level or dim")
    total = 0
    if not boundary and d < n:
        # N(k, n) = 2^n C(n+k-2, k-1) - N(k-1, n), N(1, n) = 2^n - 1 (Pascal's rule)
        c, total = 1, (1 << n) - 1              # c = C(n+k-2, k-1)
        for k in range(2, d + 1):
            c = c * (n + k - 2) // (k - 1)
            total = (c << n) - total
        return total
    if not boundary:
        a = 1                                   # a_s = 2^s C(d-1+s, s)
        for s_ in range(n):
            total += a
            a = a * 2 * (d + s_) // (s_ + 1)
        return total
    a_prev, a = 0, 3**d                         # a_s = [z^s] ((3 - 4z) / (1 - 2z))^d
    for s_ in range(n):
        total += a
        # 3 (s+1) a_{s+1} = (10 s + 2 d) a_s - 8 (s - 1) a_{s-1}
        a_prev, a = a, ((10 * s_ + 2 * d) * a - 8 * (s_ - 1) * a_prev) // (3 * (s_ + 1))
    return total


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return 8 * 2**30


class _SubspaceGrid:
    """A downward-closed set of subspaces with its points (see the module note)."""

    def __init__(self, dim: int, basis: Basis1D, levels):
        self.dim = dim
        self.basis = basis
        self._set_levels(np.asarray(levels, dtype=np.int32).reshape(-1, dim))

    # ------------------------------------------------------------------ layout
    def _set_levels(self, levels: np.ndarray) -> None:
        d, b = self.dim, self.basis
        self.levels = levels                                   # (S, d)
        m = b.m(levels).astype(np.int64)                       # (S, d)
        sizes = np.prod(m, axis=1)
        if sizes.size and sizes.max() >= 2**31:
            raise ValueError(f"a subspace with {int(sizes.max())} points exceeds the kernel's "
                             "int32 positions")
        self.offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.sizes = sizes
        self.n_points = int(sizes.sum())
        strides = np.ones_like(m)
        for k in range(d - 2, -1, -1):
            strides[:, k] = strides[:, k + 1] * m[:, k + 1]
        self.strides = strides
        self.m = m
        self.index = {row: s for s, row in enumerate(map(tuple, levels.tolist()))}
        # per point: subspace id and function index j per dimension
        sid = np.repeat(np.arange(len(levels)), sizes)
        local = np.arange(self.n_points, dtype=np.int64) - self.offsets[sid]
        J = np.empty((self.n_points, d), dtype=np.int64)
        rem = local
        for k in range(d):
            J[:, k] = rem // strides[sid, k]
            rem = rem - J[:, k] * strides[sid, k]
        self.sid = sid
        self.J = J
        self.point_levels = levels[sid]                        # (N, d)
        self.unit_points = b.point(self.point_levels, J)       # (N, d) in [0, 1]
        self._tables = None

    def position(self, levels_rows: np.ndarray, J: np.ndarray) -> np.ndarray:
        """Positions in the point array of (multi-level, multi-index) rows."""
        s = np.fromiter((self.index[tuple(r)] for r in levels_rows.tolist()),
                        dtype=np.int64, count=len(levels_rows))
        return self.offsets[s] + np.sum(J * self.strides[s], axis=1)

    def _ancestors(self, k: int):
        """Yield (points P, values phi_{l'}(x_Pk), ancestor positions) for the k-step.

        Grouped by the level of the points in dimension ``k``, coarse to fine.
        """
        b = self.basis
        lk = self.point_levels[:, k]
        xk = self.unit_points[:, k]
        for lev in np.unique(lk):
            P = np.nonzero(lk == lev)[0]
            if lev == b.min_level:
                continue
            L = self.point_levels[P].copy()
            JP = self.J[P].copy()
            steps = []
            for lp in range(b.min_level, int(lev)):
                for e in b.entries_of_level(lp):
                    val, jj = b.cell(lp, xk[P], entry=e)
                    L[:, k] = lp
                    JP[:, k] = jj
                    steps.append((val, self._position_fast(L, JP, k, lp, P)))
            yield P, steps

    def _position_fast(self, L, JP, k, lp, P):
        # subspace id of each row after replacing level k by lp: via the per-subspace table
        table = self._anc_table()
        s = table[self.sid[P], k, lp]
        return self.offsets[s] + np.sum(JP * self.strides[s], axis=1)

    def _anc_table(self):
        if getattr(self, "_anc", None) is None or self._anc.shape[0] != len(self.levels):
            S, d = self.levels.shape
            lmax = int(self.levels.max()) + 1
            table = np.full((S, d, lmax), -1, dtype=np.int64)
            for s, row in enumerate(self.levels.tolist()):
                for k in range(d):
                    r = list(row)
                    for lp in range(self.basis.min_level, row[k]):
                        r[k] = lp
                        table[s, k, lp] = self.index[tuple(r)]
            self._anc = table
        return self._anc

    # ------------------------------------------------------------- operators
    def hierarchize(self, values: np.ndarray) -> np.ndarray:
        """Nodal values (N,) or (N, q) -> hierarchical surpluses, same shape."""
        a = np.array(values, dtype=np.float64, copy=True)
        for k in range(self.dim):
            for P, steps in self._ancestors(k):
                corr = 0.0
                for val, pos in steps:
                    corr = corr + (val[:, None] * a[pos] if a.ndim == 2 else val * a[pos])
                a[P] -= corr
        return a

    def dehierarchize(self, surplus: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`hierarchize` (fine to coarse per dimension, reversed)."""
        a = np.array(surplus, dtype=np.float64, copy=True)
        for k in range(self.dim - 1, -1, -1):
            for P, steps in reversed(list(self._ancestors(k))):
                corr = 0.0
                for val, pos in steps:
                    corr = corr + (val[:, None] * a[pos] if a.ndim == 2 else val * a[pos])
                a[P] += corr
        return a

    def basis_integrals(self) -> np.ndarray:
        """Integral over the unit cube of every basis function (N,)."""
        w = np.ones(self.n_points)
        for k in range(self.dim):
            w *= self.basis.integral(self.point_levels[:, k], self.J[:, k])
        return w

    def quadrature_weights_unit(self) -> np.ndarray:
        """Weights w with sum_p w_p f(x_p) = integral of the interpolant over [0,1]^d."""
        w = self.basis_integrals()
        for k in range(self.dim - 1, -1, -1):
            for P, steps in reversed(list(self._ancestors(k))):
                wP = w[P].copy()
                for val, pos in steps:
                    np.add.at(w, pos, -val * wP)
        return w

    # ----------------------------------------------------------- kernel tables
    def kernel_tables(self):
        """Entry-expanded, lexicographically sorted subspace tables for the kernel."""
        if self._tables is not None:
            return self._tables
        b, d = self.basis, self.dim
        if b.name == "boundary":
            rows, offs, ms = [], [], []
            for s, lev in enumerate(self.levels.tolist()):
                choices = [b.entries_of_level(lk) for lk in lev]
                for ent in itertools.product(*choices):
                    rows.append(ent)
                    offs.append(self.offsets[s])
                    ms.append(self.m[s])
        else:  # one entry per level: entry = level - first level
            rows = self.levels - b.min_level
            offs, ms = self.offsets, self.m
        ent = np.asarray(rows, dtype=np.int32).reshape(-1, d)
        order = np.lexsort(ent.T[::-1])
        ent = np.ascontiguousarray(ent[order])
        off = np.ascontiguousarray(np.asarray(offs, dtype=np.int64)[order])
        m = np.asarray(ms, dtype=np.int64).reshape(-1, d)[order]
        m = np.ascontiguousarray(np.round(np.log2(m)).astype(np.int32))  # m is a power of 2
        first = np.zeros(len(ent), dtype=np.int32)
        if len(ent) > 1:
            diff = ent[1:] != ent[:-1]
            first[1:] = np.argmax(diff, axis=1)
        self._tables = (ent, m, off, first,
                        np.ascontiguousarray(b.entry_level(), dtype=np.int32),
                        np.ascontiguousarray(b.nodes, dtype=np.float64),
                        np.ascontiguousarray(b.coefs, dtype=np.float64))
        return self._tables

    def evaluate_unit(self, u: np.ndarray, surplus: np.ndarray, out: np.ndarray,
                      n_threads: int) -> np.ndarray:
        ent, m, off, first, el, nodes, coefs = self.kernel_tables()
        work = float(u.shape[0]) * max(len(ent), 1)
        nt = threads_for_work(n_threads, work, 2e5)
        _kernels.evaluate(self.basis.kind, u, surplus, ent, m, off, first, el, nodes, coefs,
                          out, nt)
        return out


def _check_domain(domain, dim: int) -> np.ndarray:
    if domain is None:
        return np.tile(np.array([0.0, 1.0]), (dim, 1))
    dom = as_float_array(domain, "domain", dtype=np.float64, finite=True)
    if dom.shape == (2,):
        dom = np.tile(dom, (dim, 1))
    if dom.shape != (dim, 2):
        raise ValueError(f"domain must have shape ({dim}, 2) or (2,), got {dom.shape}")
    if not np.all(dom[:, 1] > dom[:, 0]):
        raise ValueError("domain must have lower < upper in every dimension")
    return dom


class _GridAPI:
    """Shared public API: mapping to the domain, evaluation, quadrature."""

    _grid: _SubspaceGrid
    dim: int
    domain_: np.ndarray

    @property
    def points(self) -> np.ndarray:
        """Grid points in the domain, shape (n_points, dim) (a fresh array)."""
        lo, hi = self.domain_[:, 0], self.domain_[:, 1]
        return lo + self._grid.unit_points * (hi - lo)

    @property
    def n_points(self) -> int:
        return self._grid.n_points

    def _to_unit(self, x, name: str, outside: str) -> np.ndarray:
        x = as_float_array(x, name, ndim=(1, 2), finite=True, allow_empty=True)
        if x.ndim == 1:
            if x.shape[0] != self.dim:
                raise ValueError(f"{name} must have {self.dim} columns, got shape {x.shape}")
            x = x[None, :]
        if x.shape[1] != self.dim:
            raise ValueError(f"{name} must have shape (n, {self.dim}), got {x.shape}")
        lo = self.domain_[:, 0].astype(x.dtype)
        width = (self.domain_[:, 1] - self.domain_[:, 0]).astype(x.dtype)
        u = (x - lo) / width
        if outside not in ("raise", "clip"):
            raise ValueError(f"outside must be 'raise' or 'clip', got {outside!r}")
        eps = 8 * np.finfo(x.dtype).eps
        if u.size and (u.min() < -eps or u.max() > 1 + eps):
            if outside == "raise":
                bad = np.nonzero((u < -eps) | (u > 1 + eps))
                raise ValueError(
                    f"{name} has {len(np.unique(bad[0]))} point(s) outside the domain "
                    f"(first: row {bad[0][0]}, dimension {bad[1][0]}); pass outside='clip' "
                    "to evaluate at the nearest point of the domain")
        return np.ascontiguousarray(np.clip(u, 0.0, 1.0), dtype=x.dtype)

    def hierarchize(self, values) -> np.ndarray:
        """Hierarchical surpluses of nodal ``values`` (shape (n_points,) or (n_points, q)).

        Uses the unidirectional principle: O(n_points * dim * levels), no solve.
        """
        v = as_float_array(values, "values", ndim=(1, 2), finite=True)
        if v.shape[0] != self.n_points:
            raise ValueError(f"values must have {self.n_points} rows (one per grid point), "
                             f"got {v.shape[0]}")
        return self._grid.hierarchize(v).astype(v.dtype, copy=False)

    def evaluate(self, x, surplus=None, *, outside: str = "raise", out=None,
                 n_threads: int | None = None) -> np.ndarray:
        """Evaluate the interpolant at the rows of ``x``.

        Parameters
        ----------
        x : array_like, shape (n, dim)
            Query points in the domain (float32 computes in float32).
        surplus : array_like, shape (n_points,), optional
            Hierarchical surpluses; default: those set by :meth:`fit`.
        outside : {"raise", "clip"}, default="raise"
            Points outside the domain raise ValueError, or are clipped to it
            (the interpolant is constant-extended along the normal).
        out : ndarray, shape (n,), optional
            Output buffer of the dtype of ``x``.
        n_threads : int, optional
            OpenMP threads (see :func:`effai_fast.resolve_n_threads`).

        Returns
        -------
        ndarray, shape (n,)
        """
        nt = resolve_n_threads(n_threads)
        u = self._to_unit(x, "x", outside)
        if surplus is None:
            if getattr(self, "surplus_", None) is None:
                raise ValueError("no surpluses: call fit(values) first or pass surplus=")
            surplus = self.surplus_
        a = as_float_array(surplus, "surplus", ndim=1, finite=True)
        if a.shape[0] != self.n_points:
            raise ValueError(f"surplus must have {self.n_points} entries, got {a.shape[0]}")
        a = np.ascontiguousarray(a, dtype=u.dtype)
        if out is None:
            out = np.empty(u.shape[0], dtype=u.dtype)
        else:
            check_out(out, "out", (u.shape[0],), u.dtype, u, a)
        if u.shape[0]:
            self._grid.evaluate_unit(u, a, out, nt)
        return out

    def __call__(self, x, **kwargs) -> np.ndarray:
        return self.evaluate(x, **kwargs)

    @property
    def quadrature_weights(self) -> np.ndarray:
        """Weights ``w`` with ``w @ f(points)`` = integral of the interpolant over the domain."""
        if getattr(self, "_weights", None) is None:
            vol = float(np.prod(self.domain_[:, 1] - self.domain_[:, 0]))
            self._weights = self._grid.quadrature_weights_unit() * vol
        return self._weights.copy()

    def integrate(self, values=None) -> float:
        """Integral of the interpolant of nodal ``values`` (default: fitted) over the domain."""
        if values is None:
            if getattr(self, "values_", None) is None:
                raise ValueError("no values: call fit(values) first or pass values")
            values = self.values_
        v = as_float_array(values, "values", ndim=1, finite=True)
        if v.shape[0] != self.n_points:
            raise ValueError(f"values must have {self.n_points} entries, got {v.shape[0]}")
        return float(self.quadrature_weights @ v.astype(np.float64))


class SparseGrid(_GridAPI):
    """Regular sparse grid with a hierarchical piecewise-linear basis.

    The grid of level ``n`` holds the hierarchical subspaces ``W_l`` with
    ``sum_k max(l_k, 1) <= n + d - 1``; level 1 is the single centre point,
    and without boundary points the count is
    ``N(d, n) = sum_{i<n} 2^i C(d-1+i, d-1)`` (d=2, n=3: 17 points).

    Parameters
    ----------
    dim : int
        Number of dimensions (>= 1).
    level : int
        Sparse-grid level (>= 1).
    domain : array_like, shape (dim, 2) or (2,), optional
        Box ``[lower, upper]`` per dimension; default the unit cube.
    basis : {"hat", "modlinear"}, default="hat"
        ``hat``: the classical hierarchical hat functions (zero on the
        boundary: only for functions that vanish there, or with
        ``boundary=True``).  ``modlinear``: SG++'s modified linear basis, the
        same points, with the level-1 function constant and the outermost
        functions of each level extrapolating linearly to the boundary.
    boundary : bool, default=False
        Add boundary points (only with ``basis="hat"``): level 0 carries
        ``1 - x`` and ``x`` (points 0 and 1) and counts as level 1 in the
        constraint; see :func:`n_points` for the count.
    max_points : int, optional
        Refuse grids with more points (default: what fits comfortably in the
        machine's memory); the ValueError states the count.

    Attributes
    ----------
    points : ndarray (n_points, dim)
    surplus_ : ndarray (n_points,) after :meth:`fit`.

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.sparsegrid import SparseGrid
    >>> g = SparseGrid(2, 3)
    >>> g.n_points
    17
    >>> f = lambda x: np.prod(4 * x * (1 - x), axis=1)
    >>> g = SparseGrid(2, 6).fit(f(SparseGrid(2, 6).points))
    >>> abs(g.evaluate([[0.3, 0.6]])[0] - f(np.array([[0.3, 0.6]]))[0]) < 1e-2
    True
    """

    def __init__(self, dim: int, level: int, domain=None, basis: str = "hat",
                 boundary: bool = False, max_points: int | None = None):
        self.dim = check_int(dim, "dim", min_value=1)
        self.level = check_int(level, "level", min_value=1)
        if basis not in ("hat", "modlinear"):
            raise ValueError(f"basis must be 'hat' or 'modlinear', got {basis!r}")
        if boundary and basis != "hat":
            raise ValueError("boundary=True is only available with basis='hat' "
                             "(modlinear already extrapolates to the boundary)")
        self.basis = basis
        self.boundary = bool(boundary)
        if max_points is None:
            # points (d floats) + J (d ints) + levels + work arrays: ~ 6 d words each
            limit = _memory_bytes() // (8 * 6 * (self.dim + 2))
        else:
            limit = check_int(max_points, "max_points", min_value=1)
        # a cheap lower bound on the count first: the exact sum loops over the
        # levels, so a huge level (or dim) would hang before the limit is checked
        lower = 1 << min(self.level - 1, 256)
        if self.level >= 2:
            lower = max(lower, 1 + 2 * self.dim)
        if lower > limit:
            raise ValueError(
                f"a sparse grid of dim={self.dim}, level={self.level} has at least {lower} "
                f"points, more than the limit of {limit} (memory); lower the level or dim, "
                "or raise max_points")
        self.domain_ = _check_domain(domain, self.dim)
        count = n_points(self.dim, self.level, self.boundary)
        if count > limit:
            raise ValueError(
                f"a sparse grid of dim={self.dim}, level={self.level}"
                f"{' with boundary' if self.boundary else ''} has {count} points, more than "
                f"the limit of {limit} (memory); lower the level or raise max_points")
        name = "boundary" if self.boundary else basis
        b = Basis1D(name, self.level)
        self._grid = _SubspaceGrid(self.dim, b, _regular_levels(self.dim, self.level, b))
        assert self._grid.n_points == count
        self.surplus_ = None
        self.values_ = None

    def fit(self, values) -> SparseGrid:
        """Set nodal ``values`` at :attr:`points` (shape (n_points,)); hierarchise them."""
        v = as_float_array(values, "values", ndim=1, finite=True)
        if v.shape[0] != self.n_points:
            raise ValueError(f"values must have {self.n_points} entries (one per grid point), "
                             f"got {v.shape[0]}")
        self.values_ = v.astype(np.float64)
        self.surplus_ = self._grid.hierarchize(self.values_)
        return self

    def fit_function(self, f) -> SparseGrid:
        """Evaluate ``f`` (a vectorised callable (n, dim) -> (n,)) at the points and fit."""
        return self.fit(np.asarray(f(self.points), dtype=np.float64).reshape(-1))

    def __repr__(self) -> str:
        return (f"SparseGrid(dim={self.dim}, level={self.level}, basis={self.basis!r}, "
                f"boundary={self.boundary}, n_points={self.n_points})")


def _regular_levels(d: int, n: int, b: Basis1D) -> list[tuple[int, ...]]:
    """Multi-levels l (l_k >= min_level) with sum max(l_k, 1) <= n + d - 1, lexicographic."""
    budget = n + d - 1
    out: list[tuple[int, ...]] = []
    lo = b.min_level

    def rec(prefix, used, k):
        if k == d:
            out.append(tuple(prefix))
            return
        rest = d - k - 1  # each later dimension needs at least 1
        for lev in range(lo, budget - used - rest + 1):
            rec(prefix + [lev], used + max(lev, 1), k + 1)

    rec([], 0, 0)
    return out
