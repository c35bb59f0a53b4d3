"""``AdditiveNetwork``: an interpretable additive regressor (NAM / GAM) with a compiled core.

Design note
-----------
The model is ``f(x) = b + sum_j g_j(x_j) + sum_(a,b) g_ab(x_a, x_b)``.  Each
shape function ``g`` is either a small MLP (``shape="mlp"``, a Neural
Additive Model) or a penalised cubic B-spline (``shape="spline"``, pyGAM's
P-splines).  Both are evaluated by the compiled "sparse additive" kernels in
``_kernels.pyx``; the MLP's weight gradient is the kernel's hand-written VJP.

Training.  MLP units: full-batch L-BFGS (scipy) on ``0.5 mean(r^2) +
0.5 alpha |theta|^2`` -- on the small networks and sample sizes additive
models are used for it converges in far fewer passes than Adam.  Splines: the
penalised least-squares problem is linear; smoothing is chosen by GCV (shared,
then per term).  Inputs and target are standardised for training and the
affine maps are folded back into the stored parameters, so ``predict`` reads
``X`` without copying it.

Dimension adaptivity (``interactions="auto"``): after the main effects, every
pair of features is screened by fitting a small tensor-product spline to the
residuals; pairs whose F statistic is significant (Bonferroni over all pairs)
are added in decreasing order of F while the parameter budget allows, and the
model is refit.  ``interaction_scores_`` reports the screening.
"""

from __future__ import annotations

import inspect
import itertools
import numbers

import numpy as np

from effai_fast._threads import resolve_n_threads, threads_for_work
from effai_fast._validation import (
    as_float_array,
    check_consistent_length,
    check_int,
    check_real,
    check_rng,
)

from . import _kernels
from ._splines import (
    bspline_design,
    diff_penalty,
    fit_penalized,
    tensor_design,
    tensor_penalty,
)

__all__ = ["AdditiveNetwork"]

try:  # scikit-learn is optional: use its base classes (tags, clone, score) when present
    from sklearn.base import BaseEstimator as _Base
    from sklearn.base import RegressorMixin as _Regressor
    from sklearn.exceptions import NotFittedError as _NotFitted
except ImportError:  # pragma: no cover - exercised without scikit-learn
    class _NotFitted(ValueError, AttributeError):
        pass

    class _Base:
        @classmethod
        def _get_param_names(cls):
            sig = inspect.signature(cls.__init__)
            return sorted(p for p in sig.parameters if p != "self")

        def get_params(self, deep=True):
            return {k: getattr(self, k) for k in self._get_param_names()}

        def set_params(self, **params):
            valid = self._get_param_names()
            for k, v in params.items():
                if k not in valid:
                    raise ValueError(f"invalid parameter {k!r} for {type(self).__name__}")
                setattr(self, k, v)
            return self

    class _Regressor:
        def score(self, X, y, sample_weight=None):
            y = np.asarray(y, dtype=np.float64)
            r = y - self.predict(X)
            return 1.0 - float(r @ r) / float(((y - y.mean()) ** 2).sum())

_ACT = {"tanh": 0, "relu": 1}


def _unit_n_params(din: int, hidden) -> int:
    n, prev = 0, din
    for h in hidden:
        n += prev * h + h
        prev = h
    return n + prev


class AdditiveNetwork(_Regressor, _Base):
    """Additive regressor: one small subnetwork (or spline) per feature and per selected pair.

    Parameters
    ----------
    n_features : int, optional
        Expected number of features (checked at fit); None infers it.
    hidden : tuple of int, default=(16,)
        Hidden layer sizes of every subnetwork (``shape="mlp"``).
    interactions : None, "auto" or list of (int, int), default=None
        Pairwise interaction units: none, chosen by residual screening, or given.
    shape : {"mlp", "spline"}, default="mlp"
        Subnetworks (a Neural Additive Model) or penalised cubic B-splines
        (P-splines, pyGAM's approach; smoothing by GCV) -- the splines are more
        accurate and much faster to fit on smooth truths (see docs/additive.md).
    activation : {"tanh", "relu"}, default="tanh"
    n_splines : int or "auto", default="auto"
        B-spline coefficients per feature (``shape="spline"``); "auto" uses
        ``clip(0.6 n_samples / n_features, 10, 40)``.
    pair_splines : int, default=6
        Coefficients per side of a pair's tensor-product spline.
    alpha : float, default=1e-5
        L2 weight decay of the MLP weights (on standardised data).
    max_iter : int, default=400
        L-BFGS iterations (``solver="lbfgs"``) or epochs (``"adamw"``, ``"sgd"``).
    max_interactions : int, default=10
        Most pairs ``interactions="auto"`` may add.
    interaction_budget : int, optional
        Most parameters the added pairs may use in total (default: unlimited
        up to ``max_interactions``).
    dtype : {"float64", "float32"}, default="float64"
        Precision of the MLP kernels during training.
    solver : {"lbfgs", "adamw", "sgd"}, default="lbfgs"
        Trainer of the MLP units: full-batch L-BFGS (scipy), or minibatch
        :class:`effai_fast.optim.AdamW` / :class:`effai_fast.optim.SGD`
        (momentum 0.9) on the same objective, the gradient from the kernels' VJP.
    learning_rate : float, default=1e-2
        Step size of ``"adamw"`` / ``"sgd"``.
    batch_size : int, default=256
        Minibatch size of ``"adamw"`` / ``"sgd"`` (capped at n_samples).
    n_threads : int, optional
        OpenMP threads for the kernels.
    random_state : int, Generator or None
        Seeds the initial weights.

    Attributes
    ----------
    n_features_in_ : int
    features_ : ndarray of int -- features with a unit (constant features have none)
    constant_features_ : ndarray of int -- zero-variance features (absent from the model)
    interactions_ : list of (int, int) -- the pair units
    interaction_scores_ : list of (pair, F statistic, p-value), best first ("auto" only)
    n_params_ : int -- trainable parameters
    n_iter_ : int -- optimiser iterations (MLP: L-BFGS iterations or epochs)

    Examples
    --------
    >>> from effai_fast.additive import AdditiveNetwork, make_additive
    >>> X, y = make_additive(400, 5, seed=0)
    >>> model = AdditiveNetwork(5, shape="spline").fit(X, y)
    >>> round(model.score(X, y), 3) > 0.99
    True
    """

    def __init__(self, n_features=None, hidden=(16,), interactions=None, *, shape="mlp",
                 activation="tanh", n_splines="auto", pair_splines=6, alpha=1e-5, max_iter=400,
                 max_interactions=10, interaction_budget=None, dtype="float64",
                 solver="lbfgs", learning_rate=1e-2, batch_size=256,
                 n_threads=None, random_state=None):
        self.n_features = n_features
        self.hidden = hidden
        self.interactions = interactions
        self.shape = shape
        self.activation = activation
        self.n_splines = n_splines
        self.pair_splines = pair_splines
        self.alpha = alpha
        self.max_iter = max_iter
        self.max_interactions = max_interactions
        self.interaction_budget = interaction_budget
        self.dtype = dtype
        self.solver = solver
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_threads = n_threads
        self.random_state = random_state

    # ------------------------------------------------------------- validation
    def _check_params(self):
        if self.shape not in ("mlp", "spline"):
            raise ValueError(f"shape must be 'mlp' or 'spline', got {self.shape!r}")
        if self.activation not in _ACT:
            raise ValueError(f"activation must be 'tanh' or 'relu', got {self.activation!r}")
        hidden = self.hidden
        if isinstance(hidden, numbers.Integral):
            hidden = (hidden,)
        hidden = tuple(hidden)
        if not hidden:
            raise ValueError("hidden must have at least one layer")
        for h in hidden:
            check_int(h, "hidden", min_value=1)
        if not (isinstance(self.n_splines, str) and self.n_splines == "auto"):
            check_int(self.n_splines, "n_splines", min_value=4)
        check_int(self.pair_splines, "pair_splines", min_value=4)
        check_real(self.alpha, "alpha", min_value=0.0)
        check_int(self.max_iter, "max_iter", min_value=1)
        check_int(self.max_interactions, "max_interactions", min_value=0)
        if self.interaction_budget is not None:
            check_int(self.interaction_budget, "interaction_budget", min_value=0)
        if self.solver not in ("lbfgs", "adamw", "sgd"):
            raise ValueError(f"solver must be 'lbfgs', 'adamw' or 'sgd', got {self.solver!r}")
        check_real(self.learning_rate, "learning_rate", min_value=0.0, min_inclusive=False)
        check_int(self.batch_size, "batch_size", min_value=1)
        dt = np.dtype(self.dtype)
        if dt not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dt}")
        return tuple(int(h) for h in hidden), dt

    def _validate_X(self, X, fitting: bool, finite: bool = True):
        if X is None:
            raise TypeError("X must be an array, got None")
        if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
            raise TypeError("X: sparse input is not supported (dense data is required); "
                            "pass X.toarray()")
        X = np.asarray(X)
        if X.dtype == object:
            try:
                X = X.astype(np.float64)
            except (TypeError, ValueError):
                raise TypeError("X must be a real numeric array, got dtype object") from None
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {X.shape}. "
                             "Reshape your data: X.reshape(-1, 1) for a single feature or "
                             "X.reshape(1, -1) for a single sample")
        if X.shape[0] == 0 or X.shape[1] == 0:
            raise ValueError(f"X: found array with {X.shape[0]} sample(s) and {X.shape[1]} "
                             f"feature(s) (shape={X.shape}) while a minimum of 1 is required; "
                             f"0 feature(s) (shape={X.shape}) while a minimum of 1 is required"
                             if X.shape[1] == 0 else
                             f"X: found array with 0 sample(s) (shape={X.shape}) while a "
                             "minimum of 1 is required")
        X = as_float_array(X, "X", ndim=2, finite=finite)
        if fitting:
            if self.n_features is not None:
                nf = check_int(self.n_features, "n_features", min_value=1)
                if X.shape[1] != nf:
                    raise ValueError(f"X has {X.shape[1]} features but n_features={nf}")
        elif X.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {X.shape[1]} features, but {type(self).__name__} is "
                             f"expecting {self.n_features_in_} features as input")
        return X

    def _resolve_pairs(self, d: int, active: np.ndarray):
        inter = self.interactions
        if inter is None or (isinstance(inter, str) and inter == "auto"):
            return []
        if isinstance(inter, str):
            raise ValueError("interactions must be None, 'auto' or a list of pairs, "
                             f"got {inter!r}")
        pairs = []
        act = set(active.tolist())
        for p in inter:
            if len(p) != 2:
                raise ValueError(f"interactions must contain pairs of feature indices, got {p!r}")
            a, b = (check_int(v, "interactions", min_value=0, max_value=d - 1) for v in p)
            if a == b:
                raise ValueError(f"interactions pair {p!r} repeats a feature")
            pair = (min(a, b), max(a, b))
            if pair not in pairs and a in act and b in act:
                pairs.append(pair)
        return pairs

    # -------------------------------------------------------------------- fit
    def fit(self, X, y):
        """Fit the additive model.

        Parameters
        ----------
        X : array_like (n_samples, n_features)
        y : array_like (n_samples,)

        Returns
        -------
        self

        Raises
        ------
        ValueError
            NaN/inf in X or y, mismatched lengths, fewer than 2 samples, wrong
            number of features.
        """
        hidden, dt = self._check_params()
        X = self._validate_X(X, fitting=True)
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None")
        y = as_float_array(y, "y", ndim=(1, 2), finite=True)
        if y.ndim == 2:
            if y.shape[1] != 1:
                raise ValueError(f"y must be 1-D (or a single column), got shape {y.shape}")
            import warnings

            try:
                from sklearn.exceptions import DataConversionWarning as _W
            except ImportError:  # pragma: no cover
                _W = UserWarning
            warnings.warn("A column-vector y was passed when a 1d array was expected; it is "
                          "used as a 1-D array of shape (n_samples,)", _W, stacklevel=2)
            y = y[:, 0]
        check_consistent_length(("X", X), ("y", y))
        n, d = X.shape
        if n < 2:
            raise ValueError(f"AdditiveNetwork needs at least 2 samples, got n_samples={n}")
        self.n_features_in_ = d
        X64 = X.astype(np.float64, copy=False)
        lo, hi = X64.min(axis=0), X64.max(axis=0)
        const = hi - lo <= 1e-12 * np.maximum(1.0, np.abs(hi))
        self.constant_features_ = np.nonzero(const)[0]
        self.features_ = np.nonzero(~const)[0]
        self._lo, self._hi = lo, hi
        y64 = y.astype(np.float64)
        self._y_mean = float(y64.mean())
        y_std = float(y64.std())
        self._y_std = y_std if y_std > 0 else 1.0
        ys = (y64 - self._y_mean) / self._y_std
        pairs = self._resolve_pairs(d, self.features_)
        self.interaction_scores_ = []
        self.n_iter_ = 0
        self._fit_units(X64, ys, pairs, hidden, dt)
        if isinstance(self.interactions, str) and self.interactions == "auto" and \
                len(self.features_) >= 2 and self.max_interactions > 0:
            resid = ys - (self._predict_std(X64))
            chosen = self._screen_pairs(X64, resid, hidden)
            if chosen:
                self._fit_units(X64, ys, chosen, hidden, dt, warm=True)
        self._finalize()
        return self

    def _fit_units(self, X64, ys, pairs, hidden, dt, warm=False):
        self.interactions_ = list(pairs)
        if self.shape == "spline":
            self._fit_spline(X64, ys, pairs)
        else:
            self._fit_mlp(X64, ys, pairs, hidden, dt, warm)

    # ---- splines
    def _spline_maps(self, K):
        lo, hi = self._lo, self._hi
        width = np.where(hi > lo, hi - lo, 1.0)
        return np.stack([lo, (K - 3) / width], axis=1)

    def _fit_spline(self, X64, ys, pairs):
        K2 = int(self.pair_splines)
        if isinstance(self.n_splines, str):
            K = int(np.clip(0.6 * X64.shape[0] / max(len(self.features_), 1), 10, 40))
        else:
            K = int(self.n_splines)
        feats = self.features_
        maps, maps2 = self._spline_maps(K), self._spline_maps(K2)
        cols, blocks, pens, means = [], [], [], []
        start = 0
        for j in feats:
            B = bspline_design(X64[:, j], maps[j, 0], maps[j, 1], K)
            cols.append(B)
            blocks.append(slice(start, start + K))
            pens.append(diff_penalty(K))
            start += K
        for a, b in pairs:
            T = tensor_design(X64[:, a], X64[:, b], maps2[a], maps2[b], K2)
            cols.append(T)
            blocks.append(slice(start, start + K2 * K2))
            pens.append(tensor_penalty(K2))
            start += K2 * K2
        self._sp_K, self._sp_K2 = K, K2
        if not cols:
            self._sp_coef = np.zeros((0, K))
            self._sp_pcoef = np.zeros((0, K2 * K2))
            self._bias_std = 0.0
            self.n_iter_ = 1
            return
        Z = np.hstack(cols)
        means = Z.mean(axis=0)
        Zc = Z - means
        try:  # small dense solves: BLAS threads only spin (see BUILD-NOTES, pitfall 8)
            from threadpoolctl import threadpool_limits
            limit = threadpool_limits(1, user_api="blas") if Zc.shape[1] < 1500 else None
        except ImportError:  # pragma: no cover
            limit = None
        try:
            beta, lam, edf, _ = fit_penalized(Zc, ys, blocks, pens, per_term=False)
            self.n_iter_ = 1  # one penalised least-squares solve
        finally:
            if limit is not None:
                limit.restore_original_limits()
        nm = len(feats)
        self._sp_coef = beta[: nm * K].reshape(nm, K).copy()
        self._sp_pcoef = beta[nm * K:].reshape(len(pairs), K2 * K2).copy()
        self._bias_std = float(-means @ beta)
        self.smoothing_ = lam
        self.edf_ = edf

    # ---- MLP units
    def _mlp_layout(self, pairs, hidden):
        units = [(int(j), -1) for j in self.features_] + [(int(a), int(b)) for a, b in pairs]
        uf = np.asarray(units, dtype=np.int32).reshape(-1, 2)
        sizes = [_unit_n_params(1 if b < 0 else 2, hidden) for _, b in units]
        uo = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if units else \
            np.zeros(0, dtype=np.int64)
        return uf, uo, int(sum(sizes))

    def _init_unit(self, rng, din, hidden):
        parts = []
        prev = din
        for li, h in enumerate(hidden):
            W = rng.standard_normal((prev, h)) * (1.5 if li == 0 else 1.0) / np.sqrt(prev)
            b = rng.uniform(-2.0, 2.0, h) if li == 0 else np.zeros(h)
            parts += [W.ravel(), b]
            prev = h
        parts.append(rng.standard_normal(prev) * 0.1 / np.sqrt(prev))
        return np.concatenate(parts)

    def _fit_mlp(self, X64, ys, pairs, hidden, dt, warm):
        import scipy.optimize

        rng = check_rng(self.random_state)
        nt = resolve_n_threads(self.n_threads)
        uf, uo, P = self._mlp_layout(pairs, hidden)
        self._uf, self._uo, self._hidden = uf, uo, np.asarray(hidden, dtype=np.int32)
        self._act = _ACT[self.activation]
        # standardised inputs for training
        self._x_mean = X64.mean(axis=0)
        sd = X64.std(axis=0)
        self._x_scale = np.where(sd > 0, sd, 1.0)
        Xs = np.ascontiguousarray((X64 - self._x_mean) / self._x_scale, dtype=dt)
        theta0 = np.concatenate([self._init_unit(rng, 1 if b < 0 else 2, hidden)
                                 for _, b in uf.tolist()] + [np.zeros(1)]) if P else np.zeros(1)
        if warm and getattr(self, "_theta_std", None) is not None:
            old = self._theta_std
            n_main = len(self.features_)
            main_len = int(uo[n_main]) if n_main < len(uo) else P
            theta0[:main_len] = old[:main_len]
            theta0[-1] = old[-1]
        n = Xs.shape[0]
        out = np.empty(n, dtype=dt)
        grad_u = np.empty(max(P, 1), dtype=dt)
        alpha = float(self.alpha)
        hid = self._hidden
        nt_f = threads_for_work(nt, n * max(P, 1), 2e5)
        nt_b = min(nt_f, max(len(uf), 1))

        def fun(theta):
            th = np.ascontiguousarray(theta[:P], dtype=dt)
            if P:
                _kernels.mlp_forward(Xs, th, uf, uo, hid, self._act, float(theta[P]), out, nt_f)
                r = out.astype(np.float64) - ys
            else:
                r = theta[0] - ys
            loss = 0.5 * float(r @ r) / n + 0.5 * alpha * float(theta[:P] @ theta[:P])
            g = np.empty_like(theta)
            if P:
                gr = (r / n).astype(dt)
                _kernels.mlp_backward(Xs, th, uf, uo, hid, self._act, gr, grad_u, nt_b)
                g[:P] = grad_u[:P] + alpha * theta[:P]
            g[P] = r.sum() / n
            return loss, g

        if self.solver != "lbfgs":
            self._fit_mlp_minibatch(Xs, ys, theta0, P, dt, nt, rng)
            return
        res = scipy.optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B",
                                      options={"maxiter": int(self.max_iter),
                                               "maxfun": 2 * int(self.max_iter),
                                               "ftol": 1e-13, "gtol": 1e-9})
        self._theta_std = res.x
        self.n_iter_ += int(res.nit)
        self.loss_ = float(res.fun)

    def _fit_mlp_minibatch(self, Xs, ys, theta0, P, dt, nt, rng):
        """Minibatch AdamW/SGD (effai_fast.optim) on the L-BFGS objective, in place."""
        from effai_fast.optim import SGD, AdamW

        n = Xs.shape[0]
        bs = min(int(self.batch_size), n)
        alpha, lr = float(self.alpha), float(self.learning_rate)
        theta = np.ascontiguousarray(theta0, dtype=dt)          # trained in place
        grad = np.zeros_like(theta)
        group = [{"params": [theta], "grads": [grad]}]
        opt = (AdamW(group, lr=lr, weight_decay=0.0) if self.solver == "adamw"
               else SGD(group, lr=lr, momentum=0.9))
        th, g_u = theta[:P], grad[:P]                            # views: the units' slice
        hid, uf, uo = self._hidden, self._uf, self._uo
        xb = np.empty((bs, Xs.shape[1]), dtype=dt)
        outb = np.empty(bs, dtype=dt)
        ysd = ys.astype(dt)
        rb = np.empty(bs, dtype=dt)
        nt_f = threads_for_work(nt, bs * max(P, 1), 2e5)
        nt_b = min(threads_for_work(nt, bs * max(P, 1), 1e5), max(len(uf), 1))
        for _epoch in range(int(self.max_iter)):
            perm = rng.permutation(n)
            for start in range(0, n, bs):
                idx = perm[start: start + bs]
                m = idx.shape[0]
                xm, om, rm = xb[:m], outb[:m], rb[:m]
                np.take(Xs, idx, axis=0, out=xm)
                if P:
                    _kernels.mlp_forward(xm, th, uf, uo, hid, self._act, float(theta[P]), om,
                                         nt_f)
                else:
                    om.fill(theta[0])
                np.subtract(om, ysd[idx], out=rm)
                grad[P] = rm.sum() / m
                if P:
                    rm *= dt.type(1.0 / m)
                    _kernels.mlp_backward(xm, th, uf, uo, hid, self._act, rm, g_u, nt_b)
                    if alpha:
                        g_u += dt.type(alpha) * th
                opt.step()
        self._theta_std = theta.astype(np.float64)
        self.n_iter_ += int(self.max_iter)
        out = np.empty(n, dtype=dt)
        if P:
            _kernels.mlp_forward(Xs, th, uf, uo, hid, self._act, float(theta[P]), out, nt)
        else:
            out.fill(theta[0])
        r = out.astype(np.float64) - ys
        self.loss_ = 0.5 * float(r @ r) / n + 0.5 * alpha * float(self._theta_std[:P] @
                                                                  self._theta_std[:P])

    # ------------------------------------------------------------ screening
    def _screen_pairs(self, X64, resid, hidden):
        from scipy import stats

        feats = self.features_.tolist()
        K2 = 5
        maps = self._spline_maps(K2)
        n = X64.shape[0]
        rss0 = float(resid @ resid)
        cand = list(itertools.combinations(feats, 2))
        df = K2 * K2
        if n <= df + 2:
            return []
        # every pair's small least-squares fit at once: per-feature B-spline designs, the
        # pairs' centred tensor designs in chunks, normal equations solved as one batch
        # (a per-pair lstsq spent most of its time in BLAS/LAPACK threads on this size)
        Bf = {j: bspline_design(X64[:, j], maps[j, 0], maps[j, 1], K2) for j in feats}
        Fs = np.empty(len(cand))
        chunk = max(1, int(4e6 // (n * df)))
        eye = np.eye(df)
        for c0 in range(0, len(cand), chunk):
            part = cand[c0: c0 + chunk]
            A = np.stack([Bf[a] for a, _ in part])
            B = np.stack([Bf[b] for _, b in part])
            T = (A[:, :, :, None] * B[:, :, None, :]).reshape(len(part), n, df)
            T -= T.mean(axis=1, keepdims=True)
            G = np.einsum("mni,mnj->mij", T, T)
            bv = np.einsum("mni,n->mi", T, resid)
            # the centred design has rank df - 1: a tiny ridge picks the LS solution
            ridge = 1e-10 * np.trace(G, axis1=1, axis2=2)[:, None, None] / df + 1e-300
            coef = np.linalg.solve(G + ridge * eye, bv[..., None])[..., 0]
            rss = np.maximum(rss0 - np.sum(coef * bv, axis=1), 1e-300)
            Fs[c0: c0 + len(part)] = ((rss0 - rss) / df) / (rss / (n - df - 1))
        ps = stats.f.sf(Fs, df, n - df - 1)
        scores = [(pair, float(F), float(pv)) for pair, F, pv in zip(cand, Fs, ps, strict=True)]
        scores.sort(key=lambda t: -t[1])
        self.interaction_scores_ = scores
        cost = (int(self.pair_splines) ** 2 if self.shape == "spline"
                else _unit_n_params(2, hidden))
        budget = self.interaction_budget
        chosen, used = [], 0
        alpha = 1e-3 / max(len(cand), 1)
        for pair, _F, p in scores:
            if p >= alpha or len(chosen) >= self.max_interactions:
                break
            if budget is not None and used + cost > budget:
                break
            chosen.append(pair)
            used += cost
        return chosen

    # ------------------------------------------------------------- finalize
    def _finalize(self):
        """Fold the standardisation into the parameters used by predict."""
        ys, ym = self._y_std, self._y_mean
        if self.shape == "spline":
            K, K2 = self._sp_K, self._sp_K2
            self._p_main_feat = np.ascontiguousarray(self.features_, dtype=np.int32)
            self._p_main_coef = np.ascontiguousarray(self._sp_coef * ys)
            maps, maps2 = self._spline_maps(K), self._spline_maps(K2)
            self._p_main_map = np.ascontiguousarray(maps[self.features_])
            pf = np.asarray(self.interactions_, dtype=np.int32).reshape(-1, 2)
            self._p_pair_feat = np.ascontiguousarray(pf)
            self._p_pair_coef = np.ascontiguousarray(self._sp_pcoef * ys)
            self._p_pair_map = np.ascontiguousarray(
                np.hstack([maps2[pf[:, 0]], maps2[pf[:, 1]]]) if len(pf) else np.zeros((0, 4)))
            self._p_bias = ym + ys * self._bias_std
            self.n_params_ = int(len(self.features_) * K + len(pf) * K2 * K2 + 1)
            return
        hidden = self._hidden
        th = self._theta_std.copy()
        P = th.shape[0] - 1
        for u, (a, b) in enumerate(self._uf.tolist()):
            off = int(self._uo[u])
            feats = [a] if b < 0 else [a, b]
            din, h0 = len(feats), int(hidden[0])
            W0 = th[off: off + din * h0].reshape(din, h0)
            b0 = th[off + din * h0: off + din * h0 + h0]
            mean = self._x_mean[feats]
            scale = self._x_scale[feats]
            b0 -= (mean / scale) @ W0
            W0 /= scale[:, None]
            npar = _unit_n_params(din, hidden)
            th[off + npar - hidden[-1]: off + npar] *= ys
        self._p_theta = th[:P].copy()
        self._p_bias = ym + ys * th[P]
        self.n_params_ = int(P + 1)

    # --------------------------------------------------------------- predict
    def _check_fitted(self):
        if not hasattr(self, "_p_bias"):
            raise _NotFitted(f"This {type(self).__name__} instance is not fitted yet; "
                             "call fit first")

    def _predict_std(self, X64):
        """Standardised prediction during fit (before _finalize)."""
        if self.shape == "spline":
            self._finalize()
            return (self._raw_predict(X64, 1) - self._y_mean) / self._y_std
        dt = np.float64
        Xs = np.ascontiguousarray((X64 - self._x_mean) / self._x_scale, dtype=dt)
        P = self._theta_std.shape[0] - 1
        out = np.empty(X64.shape[0])
        if P:
            _kernels.mlp_forward(Xs, np.ascontiguousarray(self._theta_std[:P]), self._uf,
                                 self._uo, self._hidden, self._act,
                                 float(self._theta_std[P]), out, 1)
        else:
            out[:] = self._theta_std[0]
        return out

    def _raw_predict(self, X, nt, out=None, check_finite=False):
        n = X.shape[0]
        if out is None:
            out = np.empty(n, dtype=X.dtype)
        if n == 0:
            return out
        if self.shape == "spline":
            mf, mc, mm = self._p_main_feat, self._p_main_coef, self._p_main_map
            pf, pc, pm = self._p_pair_feat, self._p_pair_coef, self._p_pair_map
            ntw = threads_for_work(nt, n * (len(mf) + 4 * len(pf)), 2e5)
            bad = _kernels.spline_forward(X, mf, mc, mm, pf, pc, pm, self._sp_K2,
                                          float(self._p_bias), out, ntw, 0, check_finite)
            if bad:
                raise ValueError("X must not contain NaN or infinity")
            return out
        P = self._p_theta.shape[0]
        if P == 0:
            out[:] = self._p_bias
            return out
        ntw = threads_for_work(nt, n * P, 2e5)
        _kernels.mlp_forward(X, self._p_theta.astype(X.dtype), self._uf, self._uo,
                             self._hidden, self._act, float(self._p_bias), out, ntw)
        return out

    def predict(self, X, *, out=None):
        """Predict targets for the rows of ``X`` (float32 input computes in float32).

        Parameters
        ----------
        X : array_like (n_samples, n_features)
        out : ndarray (n_samples,), optional
            Output buffer of X's dtype.

        Returns
        -------
        ndarray (n_samples,)
        """
        self._check_fitted()
        # the spline kernel checks finiteness while it streams X (one pass instead of
        # numpy's isfinite mask over the whole array, which cost as much as the model)
        spline = self.shape == "spline"
        X = self._validate_X(X, fitting=False, finite=not spline)
        nt = resolve_n_threads(self.n_threads)
        if out is not None:
            from effai_fast._validation import check_out
            check_out(out, "out", (X.shape[0],), X.dtype, X)
        return self._raw_predict(X, nt, out, check_finite=spline)

    # ------------------------------------------------------ interpretability
    def shape_function(self, feature: int, x) -> np.ndarray:
        """Values of the shape function ``g_feature`` at the 1-D points ``x`` (target units).

        Constant features return zeros.  Shape functions are centred on the
        training data only approximately (the bias absorbs the offsets).
        """
        self._check_fitted()
        j = check_int(feature, "feature", min_value=0, max_value=self.n_features_in_ - 1)
        x = as_float_array(x, "x", ndim=1, finite=True, dtype=np.float64)
        if j not in set(self.features_.tolist()):
            return np.zeros_like(x)
        Xq = np.zeros((x.shape[0], self.n_features_in_))
        Xq[:, j] = x
        if self.shape == "spline":
            u = int(np.nonzero(self.features_ == j)[0][0])
            lo, ih = self._p_main_map[u]
            return bspline_design(x, lo, ih, self._sp_K) @ self._p_main_coef[u]
        u = int(np.nonzero(self._uf[:, 0] == j)[0][0])
        sub_off = self._uo[u: u + 1] * 0
        npar = _unit_n_params(1, self._hidden)
        th = np.ascontiguousarray(self._p_theta[self._uo[u]: self._uo[u] + npar])
        out = np.empty(x.shape[0])
        _kernels.mlp_forward(Xq, th, np.ascontiguousarray(self._uf[u: u + 1]), sub_off,
                             self._hidden, self._act, 0.0, out, 1)
        return out

    def shape_functions(self, n_grid: int = 100) -> dict:
        """{feature: (grid over the training range, g_feature(grid))} for every feature."""
        self._check_fitted()
        n_grid = check_int(n_grid, "n_grid", min_value=2)
        return {j: (g, self.shape_function(j, g)) for j in range(self.n_features_in_)
                for g in [np.linspace(self._lo[j], self._hi[j], n_grid)]}

    def plot_shapes(self, features=None, n_grid: int = 100):
        """Plot shape functions with matplotlib (optional dependency); returns the figure."""
        from effai_fast._extras import require

        plt = require("matplotlib.pyplot", "plotting shape functions")
        shapes = self.shape_functions(n_grid)
        feats = list(shapes) if features is None else list(features)
        ncol = min(5, len(feats))
        nrow = (len(feats) + ncol - 1) // ncol
        fig, axes = plt.subplots(nrow, ncol, figsize=(3 * ncol, 2.4 * nrow), squeeze=False)
        for ax, j in zip(axes.ravel(), feats, strict=False):
            g, v = shapes[j]
            ax.plot(g, v)
            ax.set_title(f"x{j}")
        for ax in axes.ravel()[len(feats):]:
            ax.axis("off")
        fig.tight_layout()
        return fig

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
