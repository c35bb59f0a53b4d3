"""Bulk Hill dose-response fitting: validation, dispatch to the compiled
Levenberg-Marquardt kernel, and the :class:`HillFit` result.

The model and its sign conventions
----------------------------------
``R(D) = rmin + (rmax - rmin) * D**n / (ec50**n + D**n)``

* ``n`` is a *signed* Hill slope: ``n > 0`` is an increasing curve, ``n < 0`` a
  decreasing one.  With both plateaus free the fit is reported in canonical
  form ``rmin <= rmax`` (the lower and the upper plateau); the response at zero
  dose is then ``rmin`` for increasing and ``rmax`` for decreasing curves.
  When a plateau is fixed (or the two have different bounds) the names keep
  their formula meaning: ``rmin`` is the response where ``D**n / (ec50**n +
  D**n) = 0``.
* R's drc ``LL.4`` view: ``b = -n`` (drc's ``b > 0`` is a *decreasing* curve),
  ``c = rmin``, ``d = rmax``, ``e = ec50``.
* GraphPad Prism's view: ``Bottom = rmin``, ``Top = rmax``,
  ``LogEC50 = log10(ec50)``, ``HillSlope = n`` (negative for decreasing).
* Weights multiply the squared residuals: the fit minimises
  ``sum(w * (y - R(D))**2)`` (``w = 1 / variance``; a weight of 0 drops the
  point, like a NaN response).
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np
from scipy import special

from effai_fast._threads import resolve_n_threads, threads_for_work
from effai_fast._validation import as_float_array, check_int, check_real
from effai_fast.hill import _lm

__all__ = ["HillFit", "fit", "hill", "PARAMS", "STATUS", "REASONS"]

#: Parameter names, in the order of :attr:`HillFit.cov`'s axes
#: (the covariance is for ``log_ec50`` in place of ``ec50``).
PARAMS = ("rmin", "rmax", "ec50", "n")

#: Status codes per curve.
STATUS = {0: "converged", 1: "flat", 2: "failed"}

#: Reason codes per curve (why a status was given).
REASONS = {
    0: "ok",
    1: "constant responses",
    2: "too few points for the free parameters",
    3: "not certified as a local optimum after the retries (best fit returned)",
    4: "non-finite values",
    5: "singular information matrix (standard errors undefined)",
    6: "no significant dose effect (F test against a flat model)",
    7: "least-squares optimum at infinity (partial, shallow or step-like curve): the "
       "parameters approximate that limit and EC50 is not identified",
}

CONVERGED, FLAT, FAILED = 0, 1, 2

# curves handed to an OpenMP thread at a time (dynamic schedule): ~0.5 ms of
# work, so load balancing is fine-grained and the scheduling cost negligible
_CHUNK = 32


def _real_array(v, name):
    """``v`` as a float64 array; TypeError naming ``name`` unless it holds real numbers."""
    arr = np.asarray(v)
    if arr.dtype.kind == "O":
        try:
            if not all(isinstance(u, numbers.Real) for u in arr.ravel().tolist()):
                raise TypeError
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} must hold real numbers, got {v!r:.60}") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real number or array, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def hill(dose, rmin, rmax, ec50, n):
    """Evaluate the Hill model ``rmin + (rmax - rmin) D^n / (ec50^n + D^n)``.

    Computed as a logistic in log-dose, so it is exact at ``D = 0`` and does not
    overflow for steep slopes.  Arguments broadcast against each other.
    """
    dose, rmin, rmax, ec50, n = (_real_array(v, name) for v, name in (
        (dose, "dose"), (rmin, "rmin"), (rmax, "rmax"), (ec50, "ec50"), (n, "n")))
    try:
        np.broadcast_shapes(dose.shape, rmin.shape, rmax.shape, ec50.shape, n.shape)
    except ValueError:
        raise ValueError("dose, rmin, rmax, ec50 and n must broadcast together, got shapes "
                         f"{dose.shape}, {rmin.shape}, {rmax.shape}, {ec50.shape}, "
                         f"{n.shape}") from None
    if (dose < 0).any():
        raise ValueError("dose must be >= 0 (NaN propagates)")
    if (ec50 <= 0).any():
        raise ValueError("ec50 must be > 0 (NaN propagates)")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        u = n * (np.log(dose) - np.log(ec50))
        s = special.expit(u)
        s = np.where(dose == 0, np.where(n > 0, 0.0, np.where(n < 0, 1.0, np.where(
            n == 0, 0.5, np.nan))), s)   # a NaN slope stays NaN at dose 0
        s = np.where(np.isnan(ec50), np.nan, s)   # so does a NaN ec50 (also at n = 0)
    return rmin + (rmax - rmin) * s


class HillFit:
    """Per-curve results of :func:`fit` (arrays of length ``n_curves``).

    Attributes
    ----------
    rmin, rmax, ec50, n : ndarray
        Fitted parameters (see the module docstring for the conventions).
        For a curve labelled flat, the flat model: ``rmin = rmax`` = the
        weighted mean, ``ec50 = nan``, ``n = 0``.
    log_ec50 : ndarray
        Natural log of ``ec50`` (the parameter actually fitted).
    se_rmin, se_rmax, se_ec50, se_n, se_log_ec50 : ndarray
        Standard errors (NaN for fixed parameters, flat or failed curves, or
        when there are no residual degrees of freedom).  ``se_ec50`` is the
        delta-method ``ec50 * se_log_ec50``.
    cov : ndarray, shape (n_curves, 4, 4)
        Covariance of ``(rmin, rmax, log_ec50, n)``.
    rss, tss : ndarray
        Weighted residual and total (about the weighted mean) sums of squares.
    loglik, aic, bic, r2, sigma : ndarray
        Gaussian log-likelihood (as R's ``logLik``), its AIC/BIC counting the
        residual variance as a parameter, R^2 and the residual standard error.
    n_obs, n_params, df_resid, n_iter : ndarray of int
        Points used, free parameters, ``n_obs - n_params`` and LM iterations.
    f_stat, p_flat : ndarray
        F statistic and p-value of the Hill fit against the flat model.
    status : ndarray of int8
        0 converged, 1 flat, 2 failed (see :data:`STATUS`); ``reason`` says why
        (see :data:`REASONS`).
    theta_hill : ndarray, shape (n_curves, 4)
        The Hill fit ``(rmin, rmax, ec50, n)`` even for curves labelled flat.
    se_mode : str
        ``"hessian"`` or ``"gauss-newton"``.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __len__(self) -> int:
        return self.rmin.shape[0]

    def __repr__(self) -> str:
        counts = ", ".join(f"{np.count_nonzero(self.status == k)} {v}"
                           for k, v in STATUS.items())
        return f"HillFit({len(self)} curves: {counts}; se={self.se_mode!r})"

    @property
    def status_name(self) -> np.ndarray:
        """Status as strings ("converged", "flat", "failed")."""
        return np.array([STATUS[int(s)] for s in self.status], dtype=object)

    def predict(self, dose) -> np.ndarray:
        """Fitted responses at ``dose``: shape (n_doses,) shared or (n_curves, n_doses)."""
        d = np.asarray(dose, dtype=float)
        if d.ndim == 0:
            d = d[None]
        if d.ndim == 1:
            d = d[None, :]
        if d.ndim != 2 or d.shape[0] not in (1, len(self)):
            raise ValueError(f"dose must have shape (n_doses,) or ({len(self)}, n_doses), "
                             f"got {np.shape(dose)}")
        col = (slice(None), None)
        n = np.where(self.status == FLAT, 0.0, self.n)[col]
        m = np.where(self.status == FLAT, 0.0, self.log_ec50)[col]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            s = special.expit(n * (np.log(d) - m))
            s = np.where(d == 0, np.where(n > 0, 0.0, np.where(n < 0, 1.0, 0.5)), s)
        return self.rmin[col] + (self.rmax - self.rmin)[col] * s

    def ec(self, x=50.0, level: float = 0.95):
        """ECx and its confidence interval (delta method on the log scale).

        ECx is the dose at which the response has moved ``x`` percent of the way
        from its zero-dose plateau to its infinite-dose plateau, for increasing
        and decreasing curves alike (drc's ``ED(..., type="relative")``):
        ``ECx = ec50 * (x / (100 - x)) ** (1 / |n|)``.

        Parameters
        ----------
        x : float or array_like, default=50
            Percent effect(s) in (0, 100).
        level : float, default=0.95
            Confidence level; the interval is ``exp(log ECx +- t * se)`` with
            Student's t on ``df_resid`` degrees of freedom.

        Returns
        -------
        estimate, lower, upper : ndarray
            Shape (n_curves,) for a scalar ``x``, else (n_curves, len(x)).
        """
        xs = np.asarray(x, dtype=float)
        if not np.all((xs > 0) & (xs < 100)):
            raise ValueError(f"x must lie strictly between 0 and 100, got {x!r}")
        level = check_real(level, "level", min_value=0, max_value=1,
                           min_inclusive=False, max_inclusive=False)
        xv = np.atleast_1d(xs)[None, :]
        m = self.log_ec50[:, None]
        h = self.n[:, None]
        c = np.log(xv / (100.0 - xv))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            ah = np.abs(h)
            log_ecx = m + c / ah
            gh = -c * np.sign(h) / (h * h)
            var = (self.cov[:, 2, 2][:, None] + gh * gh * self.cov[:, 3, 3][:, None]
                   + 2 * gh * self.cov[:, 2, 3][:, None])
            se = np.sqrt(var)
            # Student's t quantile once per distinct df (a handful: df <= n_doses),
            # not once per curve: the same values at a fraction of the cost
            dfu, inv = np.unique(self.df_resid, return_inverse=True)
            dfu = dfu.astype(float)
            t = special.stdtrit(np.where(dfu > 0, dfu, np.nan), 0.5 + level / 2)
            t = t[inv.reshape(-1)][:, None]
            est = np.exp(log_ecx)
            lo = np.exp(log_ecx - t * se)
            hi = np.exp(log_ecx + t * se)
        bad = (self.status == FLAT)[:, None] | (h == 0)
        est, lo, hi = (np.where(bad, np.nan, v) for v in (est, lo, hi))
        if xs.ndim == 0:
            return est[:, 0], lo[:, 0], hi[:, 0]
        return est, lo, hi

    def ec50_ci(self, level: float = 0.95):
        """Confidence interval of EC50: ``(lower, upper)``, see :meth:`ec`."""
        _, lo, hi = self.ec(50.0, level)
        return lo, hi

    def drc(self) -> dict:
        """R drc ``LL.4`` view: b = -n (b > 0 decreasing), c = rmin, d = rmax, e = ec50."""
        return {"b": -self.n, "c": self.rmin, "d": self.rmax, "e": self.ec50,
                "se_b": self.se_n, "se_c": self.se_rmin, "se_d": self.se_rmax,
                "se_e": self.se_ec50}

    def prism(self) -> dict:
        """GraphPad Prism view: Bottom, Top, LogEC50 (log10), HillSlope (= n)."""
        return {"Bottom": self.rmin, "Top": self.rmax, "LogEC50": self.log_ec50 / math.log(10),
                "HillSlope": self.n, "se_Bottom": self.se_rmin, "se_Top": self.se_rmax,
                "se_LogEC50": self.se_log_ec50 / math.log(10), "se_HillSlope": self.se_n}

    def to_dict(self) -> dict:
        """Per-curve columns (name -> ndarray), as written by ``effai hill fit``."""
        lo, hi = self.ec50_ci()
        return {
            "status": self.status_name, "rmin": self.rmin, "rmax": self.rmax,
            "ec50": self.ec50, "n": self.n, "se_rmin": self.se_rmin, "se_rmax": self.se_rmax,
            "se_ec50": self.se_ec50, "se_n": self.se_n, "ec50_lo": lo, "ec50_hi": hi,
            "rss": self.rss, "aic": self.aic, "r2": self.r2, "p_flat": self.p_flat,
            "n_obs": self.n_obs,
        }


# ---------------------------------------------------------------------------
# argument checking
# ---------------------------------------------------------------------------

def _check_names(d, name):
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise TypeError(f"{name} must be a dict mapping parameter names to values, "
                        f"got {type(d).__name__}")
    unknown = sorted(set(d) - set(PARAMS))
    if unknown:
        raise ValueError(f"{name} has unknown parameter(s) {unknown}; choose from {list(PARAMS)}")
    return d


def _internal(name, value):
    """User units -> kernel units (ec50 -> log ec50)."""
    if name == "ec50":
        with np.errstate(divide="ignore"):
            return np.log(value)
    return value


def _check_fixed(fixed, n_curves):
    fixed = _check_names(fixed, "fixed")
    vals = np.zeros((1, 4))
    mask = 0b1111
    per_curve = {}
    for k, name in enumerate(PARAMS):
        if name not in fixed:
            continue
        mask &= ~(1 << k)
        v = np.asarray(fixed[name])
        if v.dtype.kind not in "fiu" or v.ndim > 1:
            raise ValueError(f"fixed[{name!r}] must be a real number or an array of shape "
                             f"({n_curves},), got {fixed[name]!r}")
        v = v.astype(float)
        if v.ndim == 1 and v.shape[0] != n_curves:
            raise ValueError(f"fixed[{name!r}] must have shape ({n_curves},), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError(f"fixed[{name!r}] must be finite")
        if name == "ec50" and not (v > 0).all():
            raise ValueError(f"fixed['ec50'] must be > 0, got {fixed[name]!r}")
        per_curve[k] = _internal(name, v)
    if any(np.ndim(v) == 1 for v in per_curve.values()):
        vals = np.zeros((n_curves, 4))
    for k, v in per_curve.items():
        vals[:, k] = v
    return np.ascontiguousarray(vals), mask


def _check_bounds(bounds):
    bounds = _check_names(bounds, "bounds")
    lo = np.full(4, -np.inf)
    hi = np.full(4, np.inf)
    for k, name in enumerate(PARAMS):
        if name not in bounds:
            continue
        b = bounds[name]
        if not isinstance(b, (tuple, list)) or len(b) != 2:
            raise ValueError(f"bounds[{name!r}] must be a (low, high) pair, got {b!r}")
        pair = []
        for v, default in zip(b, (-np.inf, np.inf)):
            if v is None:
                pair.append(default)
            elif isinstance(v, numbers.Real) and not isinstance(v, bool) and not np.isnan(v):
                pair.append(float(v))
            else:
                raise ValueError(f"bounds[{name!r}] entries must be real numbers or None, "
                                 f"got {b!r}")
        if pair[0] > pair[1]:
            raise ValueError(f"bounds[{name!r}] has low > high: {b!r}")
        if name == "ec50":
            if pair[1] <= 0:
                raise ValueError(f"bounds['ec50'] must allow a positive ec50, got {b!r}")
            pair[0] = max(pair[0], 0.0)
        lo[k] = _internal(name, pair[0])
        hi[k] = _internal(name, pair[1])
    return lo, hi


def _as_rows(x, name, n_curves, n_doses):
    """(n_doses,) or (n_curves, n_doses) -> 2-D array with 1 or n_curves rows."""
    if x.ndim == 1:
        if x.shape[0] != n_doses:
            raise ValueError(f"{name} must have shape ({n_doses},) or ({n_curves}, {n_doses}) "
                             f"to match response, got {x.shape}")
        return x[None, :]
    if x.shape != (n_curves, n_doses) and x.shape != (1, n_doses):
        raise ValueError(f"{name} must have shape ({n_doses},) or ({n_curves}, {n_doses}) "
                         f"to match response, got {x.shape}")
    return x


def _validate(dose, response, weights):
    resp = as_float_array(response, "response", ndim=(1, 2))
    if resp.ndim == 1:
        resp = resp[None, :]
    n_curves, n_doses = resp.shape
    if np.isinf(resp).any():
        raise ValueError("response must not contain infinity (use NaN for a missing point)")
    d = as_float_array(dose, "dose", ndim=(1, 2))
    d = _as_rows(d, "dose", n_curves, n_doses)
    if np.isinf(d).any():
        raise ValueError("dose must not contain infinity (use NaN for a missing point)")
    if (d < 0).any():
        raise ValueError("dose must be non-negative (doses, not log-doses; NaN = missing)")
    if weights is None:
        w = np.ones((1, n_doses), dtype=resp.dtype)
    else:
        w = as_float_array(weights, "weights", ndim=(1, 2))
        w = _as_rows(w, "weights", n_curves, n_doses)
        if not np.isfinite(w).all():
            raise ValueError("weights must be finite (0 drops a point)")
        if (w < 0).any():
            raise ValueError("weights must be non-negative (they multiply squared residuals)")
    dt = np.float32 if all(a.dtype == np.float32 for a in (resp, d, w)) else np.float64
    return (np.ascontiguousarray(d, dtype=dt), np.ascontiguousarray(resp, dtype=dt),
            np.ascontiguousarray(w, dtype=dt))


@functools.lru_cache(maxsize=64)
def _fskip(p, n_doses, flat_alpha):
    """F values (by number of points) below which a doubtful fit is not
    searched further: its flat-model p-value is above max(0.5, flat_alpha), so
    the F test labels it flat whatever a wider search would find in practice.
    Cached (read-only): it depends on the call's shape and options only."""
    if flat_alpha is not None and p > 1:
        nn = np.arange(n_doses + 1)
        out = np.where(nn > p, special.fdtri(p - 1, np.maximum(nn - p, 1),
                                             1 - max(0.5, flat_alpha)), 0.0)
    else:
        out = np.zeros(1)
    out = np.ascontiguousarray(out, dtype=np.float64)
    out.flags.writeable = False
    return out


# ---------------------------------------------------------------------------
# the public entry point
# ---------------------------------------------------------------------------

def fit(dose, response, *, weights=None, fixed=None, bounds=None, se="hessian",
        flat_alpha=0.05, max_iter=200, n_threads=None) -> HillFit:
    """Fit the Hill model to one or many dose-response curves.

    Parameters
    ----------
    dose : array_like, shape (n_doses,) or (n_curves, n_doses)
        Non-negative doses (not log-doses), shared by all curves or one row per
        curve.  NaN marks a missing point; 0 is a valid (control) dose.
    response : array_like, shape (n_doses,) or (n_curves, n_doses)
        Responses; NaN marks a missing point, so ragged curves are padded with NaN.
    weights : array_like, optional
        Same shapes as ``dose``.  They multiply the squared residuals (use
        ``1 / variance``); 0 drops a point.
    fixed : dict, optional
        Parameters held fixed, e.g. ``{"rmin": 0, "rmax": 100}`` for a
        2-parameter fit; values are scalars or arrays of shape (n_curves,).
    bounds : dict, optional
        Box bounds ``{"n": (0, None), "ec50": (1e-3, 1e3)}``; None is unbounded.
    se : {"hessian", "gauss-newton"}, default="hessian"
        Standard errors from the full Hessian of the RSS (as R's drc) or from
        ``J^T W J`` (as scipy's ``curve_fit``), both scaled by RSS / df.
    flat_alpha : float or None, default=0.05
        Curves whose F test against a flat (constant) model has a p-value above
        this are labelled flat and reported as the flat model.  None disables
        the labelling (every curve keeps its Hill fit).
    max_iter : int, default=200
        Levenberg-Marquardt iterations per start.
    n_threads : int, optional
        OpenMP threads (see :func:`effai_fast.resolve_n_threads`).

    Returns
    -------
    HillFit

    Raises
    ------
    ValueError, TypeError
        For a malformed call (shapes, negative doses, infinite values, negative
        weights, unknown parameter names...).  Merely hard curves never raise:
        they get a ``status`` (and a ``reason``).

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast import hill
    >>> dose = np.array([0, 0.1, 0.3, 1, 3, 10, 30, 100.0])
    >>> y = hill.hill(dose, 5, 95, 2.0, 1.2) + np.array([.5, -.3, .2, -.4, .1, .3, -.2, .1])
    >>> res = hill.fit(dose, y)
    >>> bool(abs(res.ec50[0] - 2.0) < 0.3)
    True
    """
    call = _prepare(dose, response, weights, fixed, bounds, se, flat_alpha, max_iter,
                    n_threads)
    return _assemble(call, _run(call, _allocate(call)))


# fit() in its serial and parallel steps, so that bench/bench_hill.py can time
# each of them on exactly the code path of a call

def _prepare(dose, response, weights, fixed, bounds, se, flat_alpha, max_iter, n_threads):
    """Validate a call and build the kernel's arguments (serial, O(n_curves * n_doses)
    for the input checks only)."""
    d, r, w = _validate(dose, response, weights)
    n_curves, n_doses = r.shape
    if se not in ("hessian", "gauss-newton"):
        raise ValueError(f"se must be 'hessian' or 'gauss-newton', got {se!r}")
    if flat_alpha is not None:
        flat_alpha = check_real(flat_alpha, "flat_alpha", min_value=0, max_value=1)
    max_iter = check_int(max_iter, "max_iter", min_value=1)
    fixed_vals, mask = _check_fixed(fixed, n_curves)
    lo, hi = _check_bounds(bounds)
    canon = bool((mask & 0b11) == 0b11 and lo[0] == lo[1] and hi[0] == hi[1])
    nt = resolve_n_threads(n_threads)
    nt = threads_for_work(nt, n_curves * n_doses, 2000)
    fskip = _fskip(bin(mask).count("1"), n_doses, flat_alpha)
    return {"d": d, "r": r, "w": w, "fixed": fixed_vals, "mask": mask, "lo": lo, "hi": hi,
            "canon": canon, "se": se, "max_iter": max_iter, "fskip": fskip,
            "flat_alpha": flat_alpha, "n_threads": nt}


def _allocate(call):
    """The result arrays (uninitialised: the kernel writes every entry)."""
    n_curves = call["r"].shape[0]
    return {"cov": np.empty((n_curves, 4, 4)),
            "fout": np.empty((len(_lm.FOUT_FIELDS), n_curves)),
            "iout": np.empty((len(_lm.IOUT_FIELDS), n_curves), dtype=np.int64),
            "theta_hill": np.empty((n_curves, 4)),
            "status": np.empty(n_curves, dtype=np.int8),
            "reason": np.empty(n_curves, dtype=np.int8)}


def _run(call, out, timing=None):
    """The parallel kernel: every per-curve result (the F test, flat labels,
    likelihoods and standard errors included) is written inside its OpenMP
    loop, so nothing proportional to n_curves runs serially after it.
    ``timing``: optional (n_threads + 1, 8) array, see ``_lm.fit_batch``."""
    fa = call["flat_alpha"]
    _lm.fit_batch(call["d"], call["r"], call["w"], call["fixed"], call["mask"], call["lo"],
                  call["hi"], call["canon"], 1 if call["se"] == "hessian" else 0,
                  call["max_iter"], 1e-12, 1e-12, 1e-10, True,
                  call["fskip"], fa is not None, -1.0 if fa is None else fa,
                  out["cov"], out["fout"], out["iout"], out["theta_hill"], out["status"],
                  out["reason"], call["n_threads"], _CHUNK, timing)
    return out


def _assemble(call, out) -> HillFit:
    """The HillFit of a call (views of the kernel's output rows, no copies)."""
    fields = dict(zip(_lm.FOUT_FIELDS, out["fout"]))
    fields.update(zip(_lm.IOUT_FIELDS, out["iout"]))
    return HillFit(cov=out["cov"], theta_hill=out["theta_hill"], status=out["status"],
                   reason=out["reason"], se_mode=call["se"], **fields)
