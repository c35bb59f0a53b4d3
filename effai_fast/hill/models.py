"""Hill against a line and a parabola on the same data: AIC and held-out error.

The claim being measured is the inductive-bias one: a saturating model fits
saturating data with fewer effective degrees of freedom than a polynomial and,
above all, *predicts* unseen doses better.  :func:`compare_models` fits all
three models to every curve and reports

* AIC (Gaussian likelihood, residual variance counted as a parameter), and
* the leave-one-dose-out cross-validated RMSE: each distinct dose level of a
  curve is held out in turn (all its replicates), every model is refitted on
  the remaining levels and scored on the held-out points.  The Hill refits of
  all folds of all curves go through one batched :func:`~effai_fast.hill.fit`.

The line and parabola are in dose (``x_scale="dose"``, the default: what a
"linear model" of the raw data means) or in log-dose (``x_scale="log"``,
curves with a zero dose then use log of half the lowest positive dose for it).
"""

from __future__ import annotations

import numpy as np

from effai_fast.hill.fit import _validate, fit

__all__ = ["MODELS", "ModelComparison", "compare_models"]

#: Model names, in the order of the columns of :class:`ModelComparison` arrays.
MODELS = ("hill", "linear", "quadratic")


class ModelComparison:
    """Results of :func:`compare_models`; arrays have one column per model in :data:`MODELS`.

    Attributes
    ----------
    aic : ndarray, shape (n_curves, 3)
    rss : ndarray, shape (n_curves, 3)
    cv_rmse : ndarray, shape (n_curves, 3)
        Leave-one-dose-out RMSE (NaN when a curve has fewer than 5 dose levels).
    n_params : tuple of int
        Free parameters of each model.
    hill : HillFit
        The full-data Hill fit.
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def best(self, criterion: str = "cv_rmse") -> np.ndarray:
        """Name of the best model per curve by ``"aic"`` or ``"cv_rmse"``."""
        if criterion not in ("aic", "cv_rmse"):
            raise ValueError(f"criterion must be 'aic' or 'cv_rmse', got {criterion!r}")
        vals = getattr(self, criterion)
        ok = np.isfinite(vals).any(axis=1)
        idx = np.argmin(np.where(np.isfinite(vals), vals, np.inf), axis=1)
        return np.where(ok, np.array(MODELS, dtype=object)[idx], None)

    def summary(self) -> dict:
        """Median AIC and CV-RMSE per model and how often each model wins."""
        out = {}
        for j, name in enumerate(MODELS):
            out[name] = {
                "median_aic": _nanmedian(self.aic[:, j]),
                "median_cv_rmse": _nanmedian(self.cv_rmse[:, j]),
                "wins_aic": int(np.sum(self.best("aic") == name)),
                "wins_cv": int(np.sum(self.best("cv_rmse") == name)),
            }
        return out


def _nanmedian(v) -> float:
    """Median of the non-NaN values; NaN (without numpy's All-NaN warning) if none."""
    v = v[~np.isnan(v)]
    return float(np.median(v)) if v.size else float("nan")


def _poly_fit(x, y, w, degree):
    """Weighted polynomial fits of every row (NaN / zero weight = missing).

    Returns coefficients (n, degree + 1) in a centred/scaled x and the centre
    and scale used, so that predictions are well conditioned.
    """
    ok = np.isfinite(x) & np.isfinite(y) & (w > 0)
    ww = np.where(ok, w, 0.0)
    xz = np.where(ok, x, 0.0)
    sw = ww.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        c = (ww * xz).sum(axis=1) / sw
        sd = np.sqrt((ww * (xz - c[:, None]) ** 2).sum(axis=1) / sw)
    sd = np.where(sd > 0, sd, 1.0)
    c = np.where(np.isfinite(c), c, 0.0)
    t = (xz - c[:, None]) / sd[:, None]
    V = np.stack([t ** k for k in range(degree + 1)], axis=2)          # (n, d, p)
    yz = np.where(ok, y, 0.0)
    G = np.einsum("nd,ndi,ndj->nij", ww, V, V)
    b = np.einsum("nd,ndi,nd->ni", ww, V, yz)
    tr = np.trace(G, axis1=1, axis2=2)
    # a row without a usable point (all NaN / zero weight) has G = 0: solve I c = 0 there
    # instead of raising LinAlgError (its prediction is never scored)
    G = G + np.eye(degree + 1) * np.where(tr > 0, 1e-12 * tr, 1.0)[:, None, None]
    coef = np.linalg.solve(G, b[..., None])[..., 0]
    return coef, c, sd


def _poly_predict(coef, c, sd, x):
    t = (x - c[:, None]) / sd[:, None]
    return sum(coef[:, k, None] * t ** k for k in range(coef.shape[1]))


def _levels(dose):
    """Index of each point's distinct dose level within its row (NaN -> -1)."""
    order = np.argsort(np.where(np.isnan(dose), np.inf, dose), axis=1, kind="stable")
    ds = np.take_along_axis(dose, order, axis=1)
    new = np.ones_like(ds, dtype=bool)
    new[:, 1:] = ds[:, 1:] != ds[:, :-1]
    lev_sorted = np.cumsum(new, axis=1) - 1
    lev = np.empty_like(lev_sorted)
    np.put_along_axis(lev, order, lev_sorted, axis=1)
    return np.where(np.isnan(dose), -1, lev)


def _aic(rss, nobs, p, sum_logw):
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = -0.5 * nobs * (np.log(2 * np.pi) + np.log(rss / nobs) + 1) + 0.5 * sum_logw
    return -2 * ll + 2 * (p + 1)


def compare_models(dose, response, *, weights=None, x_scale: str = "dose",
                   n_threads=None) -> ModelComparison:
    """Compare Hill, linear and quadratic models on every curve (AIC and CV error).

    Parameters
    ----------
    dose, response, weights
        As for :func:`effai_fast.hill.fit`.
    x_scale : {"dose", "log"}, default="dose"
        The variable the line and parabola are polynomials in.
    n_threads : int, optional
        Threads for the batched Hill fits.

    Returns
    -------
    ModelComparison

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast import hill
    >>> dose = np.array([0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100])
    >>> rng = np.random.default_rng(0)
    >>> y = hill.hill(dose, 0, 100, 1.0, 1.0) + rng.normal(0, 3, (20, dose.size))
    >>> cmp = hill.compare_models(dose, y)
    >>> cmp.summary()["hill"]["wins_cv"] > 15
    True
    """
    d, r, w = _validate(dose, response, weights)
    if x_scale not in ("dose", "log"):
        raise ValueError(f"x_scale must be 'dose' or 'log', got {x_scale!r}")
    n_curves, n_doses = r.shape
    d = np.broadcast_to(d, r.shape).astype(float)
    w = np.broadcast_to(w, r.shape).astype(float)
    r = r.astype(float)
    valid = np.isfinite(d) & np.isfinite(r) & (w > 0)
    y = np.where(valid, r, np.nan)
    if x_scale == "log":
        pos = np.where(valid & (d > 0), d, np.nan)
        with np.errstate(all="ignore"):
            m = np.min(np.where(np.isnan(pos), np.inf, pos), axis=1)   # no All-NaN warning
            low = np.where(np.isfinite(m), m / 2, np.nan)
            x = np.log(np.where(d > 0, d, low[:, None]))
    else:
        x = d
    x = np.where(valid, x, np.nan)
    nobs = valid.sum(axis=1)
    with np.errstate(divide="ignore"):
        sum_logw = np.where(valid, np.log(np.where(valid, w, 1.0)), 0.0).sum(axis=1)

    h = fit(d, y, weights=w, flat_alpha=None, n_threads=n_threads)
    rss = np.empty((n_curves, 3))
    rss[:, 0] = h.rss
    for j, deg in ((1, 1), (2, 2)):
        coef, c, sd = _poly_fit(x, y, w, deg)
        res = np.where(valid, y - _poly_predict(coef, c, sd, np.where(valid, x, 0.0)), 0.0)
        rss[:, j] = (w * res ** 2).sum(axis=1)
    n_params = (int(h.n_params.max()) if len(h) else 4, 2, 3)
    aic = np.stack([_aic(rss[:, j], nobs, n_params[j], sum_logw) for j in range(3)], axis=1)

    # leave-one-dose-out: fold k hides dose level k of every curve
    lev = np.where(valid, _levels(d), -1)
    n_lev = lev.max(axis=1) + 1
    L = int(n_lev.max()) if n_curves else 0
    sq = np.zeros((n_curves, 3))
    cnt = np.zeros(n_curves)
    if L >= 2:
        yk = np.repeat(y[None], L, axis=0)                     # (L, n, nd)
        held = lev[None, :, :] == np.arange(L)[:, None, None]
        yk[held] = np.nan
        hk = fit(np.broadcast_to(d, (L,) + d.shape).reshape(L * n_curves, n_doses),
                 yk.reshape(L * n_curves, n_doses),
                 weights=np.broadcast_to(w, (L,) + w.shape).reshape(L * n_curves, n_doses),
                 flat_alpha=None, n_threads=n_threads)
        pred_h = hk.predict(np.broadcast_to(d, (L,) + d.shape).reshape(L * n_curves, n_doses))
        pred_h = pred_h.reshape(L, n_curves, n_doses)
        xk = np.where(held, np.nan, x[None])
        preds = [pred_h]
        for deg in (1, 2):
            coef, c, sd = _poly_fit(xk.reshape(L * n_curves, n_doses),
                                    yk.reshape(L * n_curves, n_doses),
                                    np.broadcast_to(w, (L,) + w.shape).reshape(L * n_curves,
                                                                              n_doses), deg)
            xx = np.broadcast_to(np.where(valid, x, 0.0), (L,) + x.shape)
            preds.append(_poly_predict(coef, c, sd, xx.reshape(L * n_curves, n_doses))
                         .reshape(L, n_curves, n_doses))
        for j, p in enumerate(preds):
            e = np.where(held, w[None] * (y[None] - p) ** 2, 0.0)
            sq[:, j] = e.sum(axis=(0, 2))
        cnt = (held * w[None]).sum(axis=(0, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.sqrt(sq / cnt[:, None])
    cv[n_lev < 5] = np.nan
    return ModelComparison(aic=aic, rss=rss, cv_rmse=cv, n_params=n_params, hill=h,
                           models=MODELS)
