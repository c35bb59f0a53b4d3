"""A small multilayer perceptron surrogate (tanh hidden layers, linear output).

Training is full-batch L-BFGS-B (scipy) on the mean squared error plus an L2
penalty, with analytic gradients by backpropagation in numpy: for the few
hundred to few thousand points of a surrogate workflow, full-batch
quasi-Newton converges in far fewer passes than a stochastic optimiser and has
no learning rate to tune.  (``effai_fast.optim`` from the ``nn`` branch did not
exist when this was written; scipy's L-BFGS-B is the documented fallback.)

Inputs and target are standardised for training; the standardisation is folded
into the first and last layer afterwards, so the compiled forward pass
(``_kernels.mlp_forward``: gemm + vectorised tanh per block of rows) takes raw
inputs.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy.optimize import minimize

from effai_fast._validation import check_int, check_real
from effai_fast.surrogate._base import SurrogateMixin, blas_threads
from effai_fast.surrogate._predict import mlp_predict

__all__ = ["MLPSurrogate"]


def _unpack(theta, sizes):
    Ws, bs, off = [], [], 0
    for fin, fout in zip(sizes[:-1], sizes[1:], strict=True):
        Ws.append(theta[off:off + fin * fout].reshape(fin, fout))
        off += fin * fout
        bs.append(theta[off:off + fout])
        off += fout
    return Ws, bs


def _forward_np(X, Ws, bs):
    """Reference forward pass (numpy); returns output and the activations."""
    acts = [X]
    h = X
    for k, (W, b) in enumerate(zip(Ws, bs, strict=True)):
        h = h @ W + b
        if k < len(Ws) - 1:
            h = np.tanh(h)
        acts.append(h)
    return h[:, 0], acts


def _loss_grad(theta, X, y, sizes, alpha):
    Ws, bs = _unpack(theta, sizes)
    n = X.shape[0]
    out, acts = _forward_np(X, Ws, bs)
    r = out - y
    loss = 0.5 * (r @ r) / n + 0.5 * alpha * sum((W * W).sum() for W in Ws) / n
    grads = []
    delta = (r / n)[:, None]
    for k in range(len(Ws) - 1, -1, -1):
        gW = acts[k].T @ delta + alpha * Ws[k] / n
        gb = delta.sum(axis=0)
        grads.append((gW, gb))
        if k:
            delta = (delta @ Ws[k].T) * (1.0 - acts[k] ** 2)
    flat = []
    for gW, gb in reversed(grads):
        flat.append(gW.ravel())
        flat.append(gb)
    return loss, np.concatenate(flat)


class MLPSurrogate(SurrogateMixin):
    """Tanh MLP regressor trained by full-batch L-BFGS-B.

    Parameters
    ----------
    hidden : tuple of int, default=(32, 32)
        Widths of the hidden layers.
    alpha : float, default=1e-4
        L2 penalty on the weights (per sample, on standardised data).
    max_iter : int, default=3000
        L-BFGS-B iterations.
    seed : int, default=0
        Seeds the initial weights.
    n_threads : int or None

    Attributes
    ----------
    n_iter_ : int
    loss_ : float
        Final training loss (standardised units).
    n_features_in_ : int
    """

    def __init__(self, hidden=(32, 32), alpha: float = 1e-4, max_iter: int = 3000,
                 seed: int = 0, n_threads: int | None = None):
        self.hidden = hidden
        self.alpha = alpha
        self.max_iter = max_iter
        self.seed = seed
        self.n_threads = n_threads

    def fit(self, X, y):
        """Train the network; returns self."""
        X, y = self._validate_fit(X, y)
        if isinstance(self.hidden, (str, bytes)) or not isinstance(self.hidden, Iterable):
            raise TypeError(f"hidden must be a sequence of layer widths, got {self.hidden!r}")
        hidden = tuple(check_int(h, "hidden", min_value=1) for h in self.hidden)
        alpha = check_real(self.alpha, "alpha", min_value=0)
        max_iter = check_int(self.max_iter, "max_iter", min_value=1)
        n, d = X.shape
        xm, xs = X.mean(axis=0), X.std(axis=0)
        xs = np.where(xs > 0, xs, 1.0)
        ym, ys = float(y.mean()), float(y.std())
        ys = ys if ys > 0 else 1.0
        Xs = (X - xm) / xs
        yn = (y - ym) / ys
        sizes = (d, *hidden, 1)
        rng = np.random.default_rng(self.seed)
        parts = []
        for fin, fout in zip(sizes[:-1], sizes[1:], strict=True):
            lim = np.sqrt(6.0 / (fin + fout))
            parts.append(rng.uniform(-lim, lim, size=fin * fout))
            parts.append(np.zeros(fout))
        theta0 = np.concatenate(parts)
        with blas_threads(1 if n <= 20000 else self._threads(None)):
            res = minimize(_loss_grad, theta0, args=(Xs, yn, sizes, alpha), jac=True,
                           method="L-BFGS-B",
                           options={"maxiter": max_iter, "maxfun": 2 * max_iter,
                                    "ftol": 1e-12, "gtol": 1e-9})
        self.n_iter_ = int(res.nit)
        self.loss_ = float(res.fun)
        Ws, bs = _unpack(res.x.copy(), sizes)
        # fold the standardisation into the first and the last layer
        Ws[0] = Ws[0] / xs[:, None]
        bs[0] = bs[0] - xm @ Ws[0]
        Ws[-1] = Ws[-1] * ys
        bs[-1] = bs[-1] * ys + ym
        self.coefs_ = Ws
        self.intercepts_ = bs
        flat = []
        for W, b in zip(Ws, bs, strict=True):
            flat.append(np.ascontiguousarray(W).ravel())
            flat.append(b)
        self._params64 = np.concatenate(flat)
        self._params32 = self._params64.astype(np.float32)
        self._sizes = np.asarray(sizes, dtype=np.intc)
        self.n_features_in_ = d
        return self

    def predict(self, X, *, n_threads: int | None = None):
        """Network output at X (float32 input is evaluated in float32)."""
        X = self._validate_predict(X)
        params = self._params64 if X.dtype == np.float64 else self._params32
        return mlp_predict(X, params, self._sizes, self._threads(n_threads))
