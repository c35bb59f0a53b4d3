"""Embedded test problems with published formulas.

From Surjanovic & Bingham, *Virtual Library of Simulation Experiments: Test
Functions and Datasets* (https://www.sfu.ca/~ssurjano/), which gives each
formula, its input domain and, for the optimisation problems, the global
minimum.  They serve as cheap stand-ins for an expensive simulator in the
tests, the benchmarks, the tour and the CLI.

Every problem is vectorised: ``problem(X)`` with ``X`` of shape (n, d) returns
shape (n,); a single point of shape (d,) returns a float.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from effai_fast._validation import as_float_array
from effai_fast.surrogate._design import Domain

__all__ = ["Problem", "PROBLEMS", "get_problem",
           "borehole", "otl_circuit", "wing_weight", "piston", "hartmann6", "branin",
           "ishigami"]


@dataclass(frozen=True)
class Problem:
    """A test function with its domain and, where published, its global minimum.

    Attributes
    ----------
    name : str
    func : callable
        Vectorised over rows: (n, d) float64 -> (n,).
    domain : Domain
    minimum : float or None
        The published global minimum value (None where none is published).
    minimizers : ndarray of shape (k, d) or None
        Published minimisers.
    reference : str
    """

    name: str
    func: object = field(repr=False)
    domain: Domain
    minimum: float | None = None
    minimizers: np.ndarray | None = field(default=None, repr=False)
    reference: str = ""

    @property
    def d(self) -> int:
        return self.domain.d

    def __call__(self, x):
        arr = as_float_array(x, "x", dtype=np.float64, ndim=(1, 2), finite=True)
        if arr.shape[-1] != self.d:
            raise ValueError(f"x must have {self.d} columns for {self.name}, "
                             f"got shape {arr.shape}")
        if arr.ndim == 1:
            return float(self.func(arr[None, :])[0])
        return self.func(arr)


_VLSE = "Surjanovic & Bingham, Virtual Library of Simulation Experiments, sfu.ca/~ssurjano/"


def _borehole(x):
    rw, r, tu, hu, tl, hl, length, kw = x.T
    lnr = np.log(r / rw)
    return 2 * np.pi * tu * (hu - hl) / (
        lnr * (1 + 2 * length * tu / (lnr * rw**2 * kw) + tu / tl))


def _otl(x):
    rb1, rb2, rf, rc1, rc2, beta = x.T
    vb1 = 12 * rb2 / (rb1 + rb2)
    b = beta * (rc2 + 9)
    return ((vb1 + 0.74) * b / (b + rf) + 11.35 * rf / (b + rf)
            + 0.74 * rf * b / ((b + rf) * rc1))


def _wing(x):
    sw, wfw, a, lam, q, taper, tc, nz, wdg, wp = x.T
    c = np.cos(np.deg2rad(lam))
    return (0.036 * sw**0.758 * wfw**0.0035 * (a / c**2) ** 0.6 * q**0.006 * taper**0.04
            * (100 * tc / c) ** (-0.3) * (nz * wdg) ** 0.49 + sw * wp)


def _piston(x):
    m, s, v0, k, p0, ta, t0 = x.T
    a = p0 * s + 19.62 * m - k * v0 / s
    v = s / (2 * k) * (np.sqrt(a**2 + 4 * k * p0 * v0 * ta / t0) - a)
    return 2 * np.pi * np.sqrt(m / (k + s**2 * p0 * v0 * ta / (t0 * v**2)))


_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8],
                  [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8],
                  [17, 8, 0.05, 10, 0.1, 14]], dtype=np.float64)
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886],
                         [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650],
                         [4047, 8828, 8732, 5743, 1091, 381]], dtype=np.float64)


def _hartmann6(x):
    inner = ((x[:, None, :] - _H6_P[None]) ** 2 * _H6_A[None]).sum(axis=2)
    return -(np.exp(-inner) @ _H6_ALPHA)


def _branin(x):
    x1, x2 = x.T
    b = 5.1 / (4 * np.pi**2)
    c = 5 / np.pi
    t = 1 / (8 * np.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10


def _ishigami(x):
    x1, x2, x3 = x.T
    return np.sin(x1) + 7 * np.sin(x2) ** 2 + 0.1 * x3**4 * np.sin(x1)


borehole = Problem(
    "borehole", _borehole,
    Domain([0.05, 100, 63070, 990, 63.1, 700, 1120, 9855],
           [0.15, 50000, 115600, 1110, 116, 820, 1680, 12045],
           ["rw", "r", "Tu", "Hu", "Tl", "Hl", "L", "Kw"]),
    reference=_VLSE + " (borehole.html): water flow rate through a borehole, m^3/yr")
otl_circuit = Problem(
    "otl_circuit", _otl,
    Domain([50, 25, 0.5, 1.2, 0.25, 50], [150, 70, 3, 2.5, 1.2, 300],
           ["Rb1", "Rb2", "Rf", "Rc1", "Rc2", "beta"]),
    reference=_VLSE + " (otlcircuit.html): midpoint voltage of an OTL push-pull circuit, V")
wing_weight = Problem(
    "wing_weight", _wing,
    Domain([150, 220, 6, -10, 16, 0.5, 0.08, 2.5, 1700, 0.025],
           [200, 300, 10, 10, 45, 1, 0.18, 6, 2500, 0.08],
           ["Sw", "Wfw", "A", "Lambda", "q", "lambda", "tc", "Nz", "Wdg", "Wp"]),
    reference=_VLSE + " (wingweight.html): light aircraft wing weight, lb")
piston = Problem(
    "piston", _piston,
    Domain([30, 0.005, 0.002, 1000, 90000, 290, 340],
           [60, 0.020, 0.010, 5000, 110000, 296, 360],
           ["M", "S", "V0", "k", "P0", "Ta", "T0"]),
    reference=_VLSE + " (piston.html): cycle time of a piston, s")
hartmann6 = Problem(
    "hartmann6", _hartmann6, Domain(np.zeros(6), np.ones(6)),
    minimum=-3.32237,
    minimizers=np.array([[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]]),
    reference=_VLSE + " (hart6.html)")
branin = Problem(
    "branin", _branin, Domain([-5, 0], [10, 15]),
    minimum=0.397887,
    minimizers=np.array([[-np.pi, 12.275], [np.pi, 2.275], [9.42478, 2.475]]),
    reference=_VLSE + " (branin.html), a=1, b=5.1/(4 pi^2), c=5/pi, r=6, s=10, t=1/(8 pi)")
ishigami = Problem(
    "ishigami", _ishigami, Domain(np.full(3, -np.pi), np.full(3, np.pi)),
    reference=_VLSE + " (ishigami.html), a=7, b=0.1")

PROBLEMS = {p.name: p for p in (borehole, otl_circuit, wing_weight, piston, hartmann6,
                                branin, ishigami)}


def get_problem(name: str) -> Problem:
    """Return an embedded problem by name (see ``PROBLEMS``)."""
    try:
        return PROBLEMS[name]
    except KeyError:
        raise ValueError(f"problem must be one of {sorted(PROBLEMS)}, got {name!r}") from None
