"""Penalised cubic B-splines (P-splines) for additive models, in numpy/scipy.

Uniform cubic B-splines with ``K`` coefficients on ``[lo, lo + (K-3) h]`` --
the same basis the compiled kernel evaluates -- and Eilers & Marx's
second-difference penalty.  The smoothing parameters are chosen by
generalised cross-validation (GCV): one generalised eigendecomposition of
(Gram, penalty), after which every candidate smoothing parameter costs
O(p^2); then a few per-term sweeps let kinked and smooth shapes get their own
smoothing.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["bspline_design", "diff_penalty", "fit_penalized"]


def bspline_weights(t: np.ndarray, K: int):
    """First index and 4 weights of the uniform cubic B-spline at knot coordinate t."""
    nint = K - 3
    t = np.clip(t, 0.0, nint)
    i = np.minimum(np.floor(t).astype(np.int64), nint - 1)
    s = t - i
    r = 1.0 - s
    w = np.stack([r**3 / 6.0, (3 * s**3 - 6 * s**2 + 4) / 6.0,
                  (-3 * s**3 + 3 * s**2 + 3 * s + 1) / 6.0, s**3 / 6.0], axis=1)
    return i, w


def bspline_design(x: np.ndarray, lo: float, inv_h: float, K: int) -> np.ndarray:
    """Dense (n, K) design matrix of the uniform cubic B-spline basis at ``x``."""
    i, w = bspline_weights((np.asarray(x, dtype=np.float64) - lo) * inv_h, K)
    B = np.zeros((x.shape[0], K))
    rows = np.arange(x.shape[0])
    for a in range(4):
        B[rows, i + a] = w[:, a]
    return B


def tensor_design(xa, xb, map_a, map_b, K2: int) -> np.ndarray:
    """(n, K2*K2) row-wise tensor product of two B-spline designs (row-major a, b)."""
    Ba = bspline_design(xa, map_a[0], map_a[1], K2)
    Bb = bspline_design(xb, map_b[0], map_b[1], K2)
    return (Ba[:, :, None] * Bb[:, None, :]).reshape(xa.shape[0], K2 * K2)


def diff_penalty(K: int, order: int = 2) -> np.ndarray:
    """D^T D for the ``order``-th difference matrix D of size (K - order, K)."""
    D = np.diff(np.eye(K), order, axis=0)
    return D.T @ D


def tensor_penalty(K2: int, order: int = 2) -> np.ndarray:
    """Penalty of a tensor-product spline: differences along both directions."""
    P1 = diff_penalty(K2, order)
    eye = np.eye(K2)
    return np.kron(P1, eye) + np.kron(eye, P1)


def fit_penalized(Z: np.ndarray, y: np.ndarray, blocks: list[slice], penalties: list,
                  lambdas=None, per_term: bool = True, n_sweeps: int = 2):
    """Penalised least squares ``min |y - Z b|^2 + sum_j lam_j b_j' P_j b_j`` with GCV.

    Parameters
    ----------
    Z : (n, p) design (columns already centred), y : (n,) centred target.
    blocks : list of slices of the columns of each term; penalties : their P_j.
    lambdas : candidate shared smoothing parameters (default logspace(-6, 4, 21)).
    per_term : refine each term's smoothing by a few multiplicative sweeps.

    Returns
    -------
    beta : (p,), lam : (n_terms,) chosen smoothing, edf : effective degrees of freedom,
    gcv : the GCV score.
    """
    n, p = Z.shape
    G = Z.T @ Z
    b = Z.T @ y
    yy = float(y @ y)
    # scale each penalty to the size of its block of the Gram matrix
    scales = []
    P = np.zeros((p, p))
    for sl, Pj in zip(blocks, penalties):
        s = np.trace(G[sl, sl]) / max(np.trace(Pj), 1e-300)
        scales.append(s)
        P[sl, sl] = s * Pj
    eps = 1e-9 * np.trace(G) / p + 1e-12
    Geps = G + eps * np.eye(p)
    if lambdas is None:
        lambdas = np.logspace(-7, 3, 21)
    # shared smoothing: generalised eigenproblem P v = mu Geps v, V' Geps V = I
    mu, V = scipy.linalg.eigh(P, Geps)
    mu = np.maximum(mu, 0.0)
    Vb = V.T @ b
    best = None
    for lam in lambdas:
        d = 1.0 / (1.0 + lam * mu)
        beta = V @ (d * Vb)
        rss = max(yy - 2 * beta @ b + beta @ G @ beta, 0.0)
        edf = float(np.sum(d))
        gcv = n * rss / max(n - edf, 1.0) ** 2
        if best is None or gcv < best[0]:
            best = (gcv, lam, beta, edf)
    gcv, lam0, beta, edf = best
    lam = np.full(len(blocks), lam0)
    if not per_term or len(blocks) < 2:
        return beta, lam * np.asarray(scales), edf, gcv

    def solve(lams):
        A = Geps.copy()
        for sl, Pj, s, lj in zip(blocks, penalties, scales, lams):
            A[sl, sl] += lj * s * Pj
        try:
            c = scipy.linalg.cho_factor(A, check_finite=False)
        except np.linalg.LinAlgError:
            return np.inf, None, 0.0
        beta = scipy.linalg.cho_solve(c, b, check_finite=False)
        rss = max(yy - 2 * beta @ b + beta @ G @ beta, 0.0)
        edf = float(np.trace(scipy.linalg.cho_solve(c, G, check_finite=False)))
        return n * rss / max(n - edf, 1.0) ** 2, beta, edf

    for _ in range(n_sweeps):
        improved = False
        for j in range(len(blocks)):
            for f in (0.1, 10.0):
                trial = lam.copy()
                trial[j] *= f
                g2, b2, e2 = solve(trial)
                if g2 < gcv * (1 - 1e-6):
                    gcv, beta, edf, lam = g2, b2, e2, trial
                    improved = True
        if not improved:
            break
    return beta, lam * np.asarray(scales), edf, gcv
