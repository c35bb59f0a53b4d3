"""One-dimensional hierarchical bases on the unit interval, in numpy.

Every basis is described by *levels* and *entries*.  A level is the unit of
the sparse-grid sum constraint; an entry is one family of 1-D functions with
disjoint supports inside a level (so a point meets exactly one function of an
entry).  ``m(level)`` is the number of functions (points) of the level.

=============  ======================  ==========================  ==========
basis          levels                  functions of level l        m(l)
=============  ======================  ==========================  ==========
``hat``        1, 2, ...               hats at odd i / 2^l          2^(l-1)
``modlinear``  1, 2, ...               level 1: constant 1;         2^(l-1)
                                       outermost hats of level
                                       l >= 2 extrapolate linearly
                                       to the boundary (SG++)
``boundary``   0, 1, 2, ...            level 0: ``1 - x`` and       2 at l=0
               (hat + boundary)        ``x`` (points 0, 1);         else
                                       then the hats                2^(l-1)
``newton``     0, 1, 2, ...            one point per level (nested  1
(global)                               Leja sequence); the Newton
                                       basis psi_l, zero at every
                                       earlier point, 1 at x_l
=============  ======================  ==========================  ==========

This module is also the slow, obvious reference of the compiled kernel: the
functions below evaluate one basis function at a time (``phi``) and are used
by the tests to build dense basis matrices.
"""

from __future__ import annotations

import functools

import numpy as np

KINDS = {"hat": 0, "modlinear": 1, "boundary": 2, "newton": 3}


@functools.lru_cache(maxsize=4)
def _leja_cached(n: int) -> tuple:
    return tuple(_leja(n))


def leja_points(n: int) -> np.ndarray:
    """The first ``n`` points of the Leja sequence on [0, 1] starting 0.5, 1, 0.

    Each new point maximises ``prod_j |x - x_j|`` over [0, 1] (searched on a
    fine grid, then polished by golden-section search); the sequence is
    Tasmanian's ``leja`` rule mapped from [-1, 1].
    """
    return np.asarray(_leja_cached(int(n)), dtype=np.float64)


def _leja(n: int) -> np.ndarray:
    pts = [0.5, 1.0, 0.0][: max(n, 0)]
    grid = np.linspace(0.0, 1.0, 4001)
    while len(pts) < n:
        p = np.asarray(pts)

        def logprod(x):
            return np.sum(np.log(np.abs(np.subtract.outer(np.atleast_1d(x), p)) + 1e-300),
                          axis=-1)

        v = logprod(grid)
        i = int(np.argmax(v))
        lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
        g = (np.sqrt(5.0) - 1) / 2
        for _ in range(40):
            a = hi - g * (hi - lo)
            b = lo + g * (hi - lo)
            if logprod(a)[0] > logprod(b)[0]:
                hi = b
            else:
                lo = a
        pts.append(float(0.5 * (lo + hi)))
    return np.asarray(pts, dtype=np.float64)


class Basis1D:
    """A 1-D hierarchical basis on [0, 1] (see the module docstring).

    Parameters
    ----------
    name : {"hat", "modlinear", "boundary", "newton"}
    max_level : int
        Highest level the grid uses (sizes the entry tables).
    nodes : ndarray, optional
        ``newton`` only: precomputed Leja points (at least ``max_level + 1``).
    """

    def __init__(self, name: str, max_level: int, nodes: np.ndarray | None = None):
        if name not in KINDS:
            raise ValueError(f"basis must be one of {sorted(KINDS)}, got {name!r}")
        self.name = name
        self.kind = KINDS[name]
        self.max_level = int(max_level)
        self.min_level = 1 if name in ("hat", "modlinear") else 0
        if name == "newton":
            if nodes is None:
                nodes = leja_points(self.max_level + 1)
            self.nodes = np.asarray(nodes[: self.max_level + 1], dtype=np.float64)
            c = np.ones(self.max_level + 1)
            for e in range(1, self.max_level + 1):
                c[e] = 1.0 / np.prod(self.nodes[e] - self.nodes[:e])
            self.coefs = c
        else:
            self.nodes = np.zeros(self.n_entries)
            self.coefs = np.ones(self.n_entries)

    # --- levels and entries -------------------------------------------------
    def m(self, level):
        """Number of functions of a level (vectorised)."""
        level = np.asarray(level, dtype=np.int64)
        if self.name == "newton":
            return np.ones_like(level)
        out = np.left_shift(np.int64(1), np.maximum(level - 1, 0))
        if self.name == "boundary":
            out = np.where(level == 0, 2, out)
        return out

    def sum_level(self, level):
        """A level's weight in the sparse-grid constraint (level 0 counts as 1)."""
        return np.maximum(np.asarray(level), 1)

    @property
    def n_entries(self) -> int:
        if self.name == "boundary":
            return self.max_level + 2
        if self.name == "newton":
            return self.max_level + 1
        return self.max_level

    def entries_of_level(self, level: int) -> list[int]:
        if self.name == "boundary":
            return [0, 1] if level == 0 else [level + 1]
        if self.name == "newton":
            return [level]
        return [level - 1]

    def entry_level(self) -> np.ndarray:
        if self.name == "boundary":
            return np.array([0, 0] + list(range(1, self.max_level + 1)), dtype=np.int32)
        if self.name == "newton":
            return np.arange(self.max_level + 1, dtype=np.int32)
        return np.arange(1, self.max_level + 1, dtype=np.int32)

    # --- points ---------------------------------------------------------------
    def point(self, level, j):
        """Coordinate of function ``j`` of ``level`` (vectorised)."""
        level = np.asarray(level, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        if self.name == "newton":
            return self.nodes[level]
        x = (2 * j + 1) / np.ldexp(1.0, level)
        if self.name == "boundary":
            x = np.where(level == 0, j.astype(np.float64), x)
        return x

    # --- the function met by x in a level (what the kernel computes) ------------
    def cell(self, level: int, x: np.ndarray, entry: int | None = None):
        """(value, j) of the function of ``level`` (or boundary ``entry``) whose support holds x."""
        x = np.asarray(x, dtype=np.float64)
        if self.name == "newton":
            return self.phi(level, 0, x), np.zeros(x.shape, dtype=np.int64)
        if self.name == "boundary" and level == 0:
            j = 0 if entry in (None, 0) else 1
            return self.phi(0, j, x), np.full(x.shape, j, dtype=np.int64)
        m = 1 << (level - 1)
        j = np.clip(np.floor(x * m).astype(np.int64), 0, m - 1)
        return self.phi(level, j, x), j

    def phi(self, level: int, j, x):
        """Function ``j`` of ``level`` at ``x``: the textbook definitions, one at a time."""
        x = np.asarray(x, dtype=np.float64)
        j = np.asarray(j)
        if self.name == "newton":
            v = np.full(x.shape, self.coefs[level])
            for i in range(level):
                v = v * (x - self.nodes[i])
            return v
        if self.name == "boundary" and level == 0:
            return np.where(j == 0, 1.0 - x, x)
        i = 2 * j + 1
        h = np.ldexp(1.0, level)
        hat = np.maximum(0.0, 1.0 - np.abs(h * x - i))
        if self.name != "modlinear":
            return hat
        if level == 1:
            return np.ones_like(x)
        left = np.where(x <= 2.0 / h, np.maximum(0.0, 2.0 - h * x), 0.0)
        right = np.where(x >= 1.0 - 2.0 / h, np.maximum(0.0, 2.0 - h * (1.0 - x)), 0.0)
        return np.where(i == 1, left, np.where(i == h - 1, right, hat))

    def integral(self, level, j) -> np.ndarray:
        """Integral over [0, 1] of function ``j`` of ``level`` (vectorised)."""
        level = np.asarray(level, dtype=np.int64)
        j = np.asarray(j, dtype=np.int64)
        if self.name == "newton":
            gx, gw = np.polynomial.legendre.leggauss(self.max_level // 2 + 2)
            gx = 0.5 * (gx + 1.0)
            table = np.array([0.5 * np.sum(gw * self.phi(e, 0, gx))
                              for e in range(self.max_level + 1)])
            return table[level]
        h = np.ldexp(1.0, -level)
        w = h.copy()
        if self.name == "boundary":
            w = np.where(level == 0, 0.5, w)
        if self.name == "modlinear":
            m = np.left_shift(np.int64(1), np.maximum(level - 1, 0))
            outer = (j == 0) | (j == m - 1)
            w = np.where(level == 1, 1.0, np.where(outer, 2.0 * h, h))
        return w
