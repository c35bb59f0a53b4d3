r"""Choosing the width and resolution multipliers under a compute budget.

The problem
-----------
A MobileNet with width multiplier ``alpha`` and resolution multiplier ``rho`` (input side
``rho * 224``) costs, to a very good approximation, ``C(alpha, rho) = C_base alpha^2 rho^2``
multiply-adds: 95 % of the work is pointwise convolution, whose cost is
``H W C_in C_out`` with ``H, W`` scaling with ``rho`` and both channel counts with ``alpha``.
Given a budget ``B`` we want the most accurate network that fits::

    maximise  A(alpha, rho)   subject to   C(alpha, rho) <= B,   alpha, rho in their ranges.

Lagrangian derivation (the idealised problem)
---------------------------------------------
Take ``C = C_base alpha^2 rho^2`` and a *symmetric* accuracy ``A = f(alpha) + f(rho)`` with
``f`` increasing and concave.  Since ``A`` increases in both arguments the constraint is
active.  With ``L = f(alpha) + f(rho) - lambda (C_base alpha^2 rho^2 - B)``::

    dL/dalpha = f'(alpha) - 2 lambda C_base alpha rho^2 = 0
    dL/drho   = f'(rho)   - 2 lambda C_base alpha^2 rho = 0

Multiplying the first by ``alpha`` and the second by ``rho`` gives
``alpha f'(alpha) = rho f'(rho) = 2 lambda B``; for the usual concave ``f`` the map
``t -> t f'(t)`` is monotone, so ``alpha = rho``, and the active constraint
``C_base alpha^4 = B`` gives::

    alpha* = rho* = (B / C_base)^(1/4).

E.g. ``B / C_base = 125 / 500``: ``alpha = rho = 0.25^(1/4) = 0.7071``, and the cost is
``500 * 0.7071^4 = 125`` exactly.  The often-quoted ``(B / C_base)^(1/2)`` is wrong: it makes
``alpha rho = B / C_base`` and costs ``C_base (B / C_base)^2`` - here 31.25, a quarter of the
budget.  The multiplier ``lambda = f'(alpha*) / (2 C_base alpha* rho*^2)`` is the accuracy
bought by one more multiply-add.

The real problem
----------------
The exact count is not ``C_base alpha^2 rho^2``: the first convolution has 3 input channels
(cost ``~ alpha rho^2``), the depthwise convolutions are ``~ alpha rho^2`` and the classifier
``~ alpha`` (no spatial extent).  With ``P, D, S, F`` the pointwise, depthwise, stem and
classifier mult-adds of the base network (:func:`effai_fast.mobilenet.cost`)::

    C(alpha, rho) = rho^2 (P alpha^2 + (D + S) alpha) + F alpha,

and channels and sides are integers.  Accuracy is not symmetric either: the paper's ImageNet
results lose accuracy faster with width than with resolution.  :func:`optimal_multipliers`
therefore solves, with ``scipy.optimize``:

* ``method="ideal"``: the closed form above;
* ``method="continuous"``: maximise an accuracy model over continuous ``(alpha, rho)`` subject
  to the cost polynomial (SLSQP from the best point of a feasible grid; reported as
  ``continuous`` with the multiplier ``lambda`` of ``grad A = lambda grad C``), then solve the
  real problem on the exact integer count: for every integer input side in the range, the
  widest ``alpha`` (channels ``round(alpha c)``) whose exact count fits, by bisection, and the
  most accurate of those.  (Feature maps are ``ceil(n / 2)`` after each stride, so the exact
  count can exceed the polynomial by several per cent: rounding the continuous optimum is not
  enough.)
* ``method="menu"``: the best network of a discrete menu (default
  ``alpha in {0.25, 0.5, 0.75, 1}``, side in ``{128, 160, 192, 224}``) whose exact count fits.

The accuracy model is a callable ``A(alpha, rho)`` supplied by the user, or an
:class:`AccuracyModel` fitted (``scipy.optimize.least_squares``) to measured
``(alpha, rho, accuracy)`` points - by default the paper's seven ImageNet top-1 results
(Tables 6 and 7).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from effai_fast._validation import check_int, check_real
from effai_fast.mobilenet._arch import (
    BASE_RESOLUTION,
    check_alpha,
    check_resolution,
    paper_accuracy_points,
)
from effai_fast.mobilenet._cost import cost

__all__ = ["AccuracyModel", "BudgetSolution", "fit_accuracy_model", "optimal_multipliers"]


@dataclass(frozen=True)
class AccuracyModel:
    r"""A separable power-law accuracy model fitted to measured points.

    ``A(alpha, rho) = a - b (alpha^-p - 1) - c (rho^-q - 1)``: ``a`` is the accuracy of the
    full network, ``b, c >= 0`` and ``p, q > 0`` say how fast accuracy falls with width and
    resolution.  Increasing and concave in both multipliers.
    """

    a: float
    b: float
    p: float
    c: float
    q: float
    rmse: float = float("nan")
    n_points: int = 0

    def __call__(self, alpha, rho):
        alpha = np.asarray(alpha, dtype=float)
        rho = np.asarray(rho, dtype=float)
        return self.a - self.b * (alpha ** -self.p - 1.0) - self.c * (rho ** -self.q - 1.0)

    def gradient(self, alpha: float, rho: float) -> tuple[float, float]:
        """``(dA/dalpha, dA/drho)``."""
        return (self.b * self.p * alpha ** (-self.p - 1.0),
                self.c * self.q * rho ** (-self.q - 1.0))

    def __str__(self) -> str:
        return (f"A(alpha, rho) = {self.a:.2f} - {self.b:.2f} (alpha^-{self.p:.2f} - 1) "
                f"- {self.c:.2f} (rho^-{self.q:.2f} - 1)   (rmse {self.rmse:.2f} on "
                f"{self.n_points} points)")


def fit_accuracy_model(points=None) -> AccuracyModel:
    """Fit :class:`AccuracyModel` to ``(alpha, rho, accuracy)`` points by least squares.

    Parameters
    ----------
    points : array_like of shape (n, 3), optional
        Measured ``(alpha, rho, accuracy)``; default the paper's ImageNet top-1 (%) results.
        With fewer than 5 points the exponents are fixed to ``p = q = 1`` (needs >= 3 points).

    Returns
    -------
    AccuracyModel

    Raises
    ------
    ValueError
        For too few points, non-finite values or multipliers outside (0, 1.5].
    """
    from scipy.optimize import least_squares

    pts = np.asarray(paper_accuracy_points() if points is None else points, dtype=float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (n, 3) = (alpha, rho, accuracy), got "
                         f"{pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points must not contain NaN or infinity")
    if len(pts) < 3:
        raise ValueError(f"points must hold at least 3 measurements, got {len(pts)}")
    al, rh, acc = pts.T
    if (al <= 0).any() or (rh <= 0).any() or (al > 1.5).any() or (rh > 1.5).any():
        raise ValueError("points: alpha and rho must lie in (0, 1.5]")
    free_exponents = len(pts) >= 5

    def unpack(theta):
        if free_exponents:
            return theta
        a, b, c = theta
        return a, b, 1.0, c, 1.0

    def resid(theta):
        a, b, p, c, q = unpack(theta)
        return a - b * (al ** -p - 1.0) - c * (rh ** -q - 1.0) - acc

    if free_exponents:
        x0 = [acc.max(), 5.0, 1.0, 5.0, 1.0]
        bounds = ([-np.inf, 0.0, 1e-3, 0.0, 1e-3], [np.inf, np.inf, 10.0, np.inf, 10.0])
    else:
        x0 = [acc.max(), 5.0, 5.0]
        bounds = ([-np.inf, 0.0, 0.0], [np.inf, np.inf, np.inf])
    sol = least_squares(resid, x0, bounds=bounds, method="trf")
    a, b, p, c, q = (float(v) for v in unpack(sol.x))
    rmse = float(np.sqrt(np.mean(resid(sol.x) ** 2)))
    return AccuracyModel(a, b, p, c, q, rmse, len(pts))


@dataclass(frozen=True)
class BudgetSolution:
    """The multipliers chosen for a budget (see :func:`optimal_multipliers`).

    Attributes
    ----------
    alpha, rho : float
        The chosen multipliers (for ``method="ideal"`` the closed form, otherwise those of the
        realised network: ``rho = resolution / base_resolution``, 224 by default).
    resolution : int
        Input side of the realised network.
    macs : float
        Cost of the solution: the idealised ``C_base alpha^2 rho^2`` for ``"ideal"``, the exact
        integer count of the realised network otherwise.
    params : int or None
        Trainable parameters of the realised network.
    accuracy : float or None
        Predicted accuracy (None without an accuracy model, i.e. for ``"ideal"``).
    budget : float
    method : str
    continuous : tuple of float or None
        ``(alpha, rho)`` of the continuous optimum before rounding (``"continuous"`` only).
    lagrange_multiplier : float or None
        Marginal accuracy per multiply-add at the continuous optimum.
    candidates : list
        For ``"menu"``: every ``(alpha, resolution, macs, accuracy)`` of the menu that fits.
    """

    alpha: float
    rho: float
    resolution: int
    macs: float
    params: int | None
    accuracy: float | None
    budget: float
    method: str
    continuous: tuple | None = None
    lagrange_multiplier: float | None = None
    candidates: list = field(default_factory=list, repr=False)

    def __str__(self) -> str:
        acc = "" if self.accuracy is None else f", predicted accuracy {self.accuracy:.2f}"
        if self.lagrange_multiplier is not None:
            acc += f" (+{self.lagrange_multiplier * 1e6:.4f} per extra million mult-adds)"
        return (f"[{self.method}] alpha={self.alpha:.4f}, rho={self.rho:.4f} "
                f"(resolution {self.resolution}): {self.macs / 1e6:.2f} M mult-adds of a "
                f"{self.budget / 1e6:.2f} M budget{acc}")


def _cost_coefficients(num_classes: int, in_channels: int, base: int = BASE_RESOLUTION):
    """(P, D + S, F): pointwise, depthwise + stem, classifier mult-adds of the base network."""
    by = cost(1.0, base, num_classes, in_channels).by_type()
    return (by["Conv 1x1"]["macs"], by["Conv DW 3x3"]["macs"] + by["Conv 3x3"]["macs"],
            by["Fully Connected"]["macs"])


def _as_accuracy(accuracy) -> Callable | None:
    if accuracy is None or (isinstance(accuracy, str) and accuracy == "paper"):
        return fit_accuracy_model()
    if callable(accuracy):
        return accuracy
    return fit_accuracy_model(accuracy)


def _check_range(rng, name, lo_allowed, hi_allowed):
    if not isinstance(rng, Sequence) or len(rng) != 2:
        raise TypeError(f"{name} must be a (low, high) pair, got {rng!r}")
    lo = check_real(rng[0], f"{name}[0]", min_value=lo_allowed, min_inclusive=False,
                    max_value=hi_allowed)
    hi = check_real(rng[1], f"{name}[1]", min_value=lo_allowed, min_inclusive=False,
                    max_value=hi_allowed)
    if lo > hi:
        raise ValueError(f"{name} must have low <= high, got {rng!r}")
    return lo, hi


def optimal_multipliers(budget: float, *, method: str = "continuous", accuracy=None,
                        alpha_range=(0.25, 1.0), rho_range=(128 / 224, 1.0),
                        alphas=(0.25, 0.5, 0.75, 1.0), resolutions=(128, 160, 192, 224),
                        num_classes: int = 1000, in_channels: int = 3,
                        base_macs: float | None = None,
                        base_resolution: int = BASE_RESOLUTION) -> BudgetSolution:
    r"""The width and resolution multipliers that maximise accuracy within a MAC budget.

    See the module docstring for the Lagrangian derivation.

    Parameters
    ----------
    budget : float
        Multiply-adds allowed per image (e.g. ``125e6``).
    method : {"continuous", "menu", "ideal"}, default="continuous"
        ``"ideal"``: closed form ``alpha = rho = (budget / base_macs)^(1/4)``.
        ``"continuous"``: exact per-layer count, continuous ``(alpha, rho)`` in the ranges.
        ``"menu"``: best of the discrete ``alphas x resolutions`` menu.
    accuracy : None, "paper", callable or array_like of shape (n, 3)
        Accuracy model: a callable ``f(alpha, rho)``, or measured ``(alpha, rho, accuracy)``
        points to fit an :class:`AccuracyModel` to.  None / "paper": fitted to the paper's
        ImageNet top-1 results.  Ignored by ``"ideal"``.
    alpha_range, rho_range : (float, float)
        Search ranges for ``"ideal"`` and ``"continuous"`` (default: the paper's range,
        alpha in [0.25, 1], side in [128, 224]).
    alphas, resolutions : sequence
        The menu for ``"menu"``.
    num_classes, in_channels : int
        Of the network (they change the classifier's and stem's cost).
    base_macs : float, optional
        ``C_base`` for ``"ideal"`` (default: the exact count at alpha = 1, ``base_resolution``).
    base_resolution : int, default=224
        The input side of ``rho = 1``: ``rho = side / base_resolution`` everywhere (in the
        ranges, in the accuracy model's argument and in the result).  The paper's networks
        use 224; e.g. 28 for Fashion-MNIST networks whose accuracy model was fitted with
        ``rho = side / 28``.

    Returns
    -------
    BudgetSolution

    Raises
    ------
    ValueError
        If the budget is not positive, below the cheapest network of the search space, or
        above the cost of the largest one (the budget then does not constrain anything:
        take alpha = rho = 1); for an unknown method or bad ranges.

    Examples
    --------
    >>> from effai_fast.mobilenet import optimal_multipliers
    >>> s = optimal_multipliers(125, method="ideal", base_macs=500, alpha_range=(0.1, 1),
    ...                         rho_range=(0.1, 1))
    >>> round(s.alpha, 4), round(s.rho, 4), round(s.macs, 9)
    (0.7071, 0.7071, 125.0)
    """
    budget = check_real(budget, "budget", min_value=0.0, min_inclusive=False)
    if method not in ("continuous", "menu", "ideal"):
        raise ValueError(f"method must be 'continuous', 'menu' or 'ideal', got {method!r}")
    num_classes = check_int(num_classes, "num_classes", min_value=1)
    in_channels = check_int(in_channels, "in_channels", min_value=1)
    base = check_resolution(base_resolution, "base_resolution")
    if method == "menu":
        return _solve_menu(budget, accuracy, alphas, resolutions, num_classes, in_channels,
                           base)
    a_lo, a_hi = _check_range(alpha_range, "alpha_range", 0.0, 1.0)
    r_lo, r_hi = _check_range(rho_range, "rho_range", 0.0, 1.0)
    if method == "ideal":
        return _solve_ideal(budget, base_macs, (a_lo, a_hi), (r_lo, r_hi), num_classes,
                            in_channels, base)
    return _solve_continuous(budget, accuracy, (a_lo, a_hi), (r_lo, r_hi), num_classes,
                             in_channels, base)


def _solve_ideal(budget, base_macs, a_rng, r_rng, num_classes, in_channels,
                 base=BASE_RESOLUTION):
    c_base = float(cost(1.0, base, num_classes, in_channels).macs
                   if base_macs is None else
                   check_real(base_macs, "base_macs", min_value=0.0, min_inclusive=False))
    lo = c_base * a_rng[0] ** 2 * r_rng[0] ** 2
    hi = c_base * a_rng[1] ** 2 * r_rng[1] ** 2
    if budget < lo:
        raise ValueError(f"budget {budget:.4g} is below the cheapest network of the search "
                         f"space ({lo:.4g} mult-adds at alpha={a_rng[0]:g}, rho={r_rng[0]:g})")
    if budget > hi:
        raise ValueError(f"budget {budget:.4g} exceeds the cost of the largest network "
                         f"({hi:.4g} mult-adds at alpha={a_rng[1]:g}, rho={r_rng[1]:g}): it "
                         f"does not constrain the choice")
    t = (budget / c_base) ** 0.25
    alpha = min(max(t, a_rng[0]), a_rng[1])
    rho = min(max(np.sqrt(budget / (c_base * alpha ** 2)), r_rng[0]), r_rng[1])
    if alpha == t and rho != t:  # pragma: no cover - only when the ranges cut the diagonal
        alpha = min(max(np.sqrt(budget / (c_base * rho ** 2)), a_rng[0]), a_rng[1])
    macs = c_base * alpha ** 2 * rho ** 2
    resolution = max(1, int(round(rho * base)))
    params = cost(alpha, resolution, num_classes, in_channels).params if base_macs is None \
        else None
    return BudgetSolution(float(alpha), float(rho), resolution, float(macs), params, None,
                          budget, "ideal")


def _solve_continuous(budget, accuracy, a_rng, r_rng, num_classes, in_channels,
                      base=BASE_RESOLUTION):
    from scipy.optimize import minimize

    acc = _as_accuracy(accuracy)
    p_coef, ds_coef, f_coef = _cost_coefficients(num_classes, in_channels, base)

    def macs(a, r):
        return r * r * (p_coef * a * a + ds_coef * a) + f_coef * a

    lo, hi = macs(a_rng[0], r_rng[0]), macs(a_rng[1], r_rng[1])
    if budget < lo:
        raise ValueError(f"budget {budget:.4g} is below the cheapest network of the search "
                         f"space ({lo:.4g} mult-adds at alpha={a_rng[0]:g}, "
                         f"rho={r_rng[0]:.4g})")
    if budget > hi:
        raise ValueError(f"budget {budget:.4g} exceeds the cost of the largest network "
                         f"({hi:.4g} mult-adds at alpha={a_rng[1]:g}, rho={r_rng[1]:.4g}): it "
                         f"does not constrain the choice")
    # Best feasible point of a grid, then SLSQP on the smooth problem (scaled to O(1)).
    ga, gr = np.meshgrid(np.linspace(*a_rng, 61), np.linspace(*r_rng, 61), indexing="ij")
    feasible = macs(ga, gr) <= budget
    values = np.where(feasible, np.vectorize(lambda a, r: float(acc(a, r)))(ga, gr), -np.inf)
    k = np.unravel_index(np.argmax(values), values.shape)
    x0 = np.array([ga[k], gr[k]])
    res = minimize(lambda x: -float(acc(x[0], x[1])), x0, method="SLSQP",
                   bounds=[a_rng, r_rng],
                   constraints=[{"type": "ineq",
                                 "fun": lambda x: 1.0 - macs(x[0], x[1]) / budget}],
                   options={"ftol": 1e-12, "maxiter": 200})
    a_c, r_c = (float(v) for v in (res.x if res.success and
                                   macs(*res.x) <= budget * (1 + 1e-9) else x0))
    if float(acc(a_c, r_c)) < float(acc(*x0)):  # SLSQP never makes it worse than the grid
        a_c, r_c = float(x0[0]), float(x0[1])
    # Lagrange multiplier of the cost constraint: dA/dalpha = lambda dC/dalpha.
    h = 1e-6
    da = (float(acc(min(a_c + h, 1.0), r_c)) - float(acc(min(a_c + h, 1.0) - h, r_c))) / h
    dca = r_c * r_c * (2 * p_coef * a_c + ds_coef) + f_coef
    lam = da / dca
    # The real problem on the exact count: for every integer side in the range, the widest
    # alpha whose exact (rounded channels, ceil'd feature maps) count fits, by bisection; the
    # best of these by the accuracy model.
    best = None
    side_lo = max(1, int(np.ceil(r_rng[0] * base - 1e-9)))
    side_hi = int(np.floor(r_rng[1] * base + 1e-9))
    for side in range(side_lo, side_hi + 1):
        if cost(a_rng[0], side, num_classes, in_channels).macs > budget:
            break  # larger sides cost more still
        lo_a, hi_a = a_rng[0], a_rng[1]
        if cost(hi_a, side, num_classes, in_channels).macs > budget:
            for _ in range(24):  # alpha to ~5e-8: far below a channel's step
                mid = 0.5 * (lo_a + hi_a)
                if cost(mid, side, num_classes, in_channels).macs <= budget:
                    lo_a = mid
                else:
                    hi_a = mid
        else:
            lo_a = hi_a
        value = float(acc(lo_a, side / base))
        if best is None or value > best[0]:
            best = (value, lo_a, side)
    if best is None:
        raise ValueError(f"budget {budget:.4g} is below the exact cost of every network of the "
                         f"search space (rounded channels and feature maps)")
    value, alpha, resolution = best
    c = cost(alpha, resolution, num_classes, in_channels)
    return BudgetSolution(alpha, resolution / base, resolution, c.macs, c.params,
                          value, budget, "continuous", (a_c, r_c), float(lam))


def _solve_menu(budget, accuracy, alphas, resolutions, num_classes, in_channels,
                base=BASE_RESOLUTION):
    acc = _as_accuracy(accuracy)
    alphas = [check_alpha(a, f"alphas[{i}]") for i, a in enumerate(alphas)]
    resolutions = [check_resolution(r, f"resolutions[{i}]") for i, r in enumerate(resolutions)]
    if not alphas or not resolutions:
        raise ValueError("the menu (alphas, resolutions) must not be empty")
    rows = []
    for a in alphas:
        for r in resolutions:
            c = cost(a, r, num_classes, in_channels)
            rows.append((a, r, c.macs, c.params, float(acc(a, r / base))))
    smallest = min(rows, key=lambda t: t[2])
    largest = max(rows, key=lambda t: t[2])
    if budget < smallest[2]:
        raise ValueError(f"budget {budget:.4g} is below the cheapest network of the menu "
                         f"({smallest[2]:,} mult-adds at alpha={smallest[0]:g}, "
                         f"resolution {smallest[1]})")
    if budget > largest[2]:
        raise ValueError(f"budget {budget:.4g} exceeds the cost of the largest network of the "
                         f"menu ({largest[2]:,} mult-adds at alpha={largest[0]:g}, resolution "
                         f"{largest[1]}): it does not constrain the choice")
    fits = [t for t in rows if t[2] <= budget]
    best = max(fits, key=lambda t: (t[4], -t[2]))
    a, r, m, p, value = best
    return BudgetSolution(a, r / base, r, m, p, value, budget, "menu",
                          candidates=[(t[0], t[1], t[2], t[4]) for t in fits])
