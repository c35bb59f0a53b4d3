"""Functional forms of the non-convolution layers: validation in Python, kernels in ``_dense``.

Every operation comes with its vector-Jacobian product (``*_vjp``), which the layers of
:mod:`effai_fast.nn` and the training loop call.  Activations are NHWC; batch norm normalises
the last axis.  Activation codes accepted everywhere: ``None``, ``"relu"``, ``"relu6"``.
"""

from __future__ import annotations

import numpy as np

from effai_fast._isa import select_build
from effai_fast._threads import resolve_n_threads, threads_for_work
from effai_fast._validation import as_float_array, check_out, check_real, check_rng
from effai_fast.nn import _conv as _conv_baseline
from effai_fast.nn import _dense as _dense_baseline

_DENSE_ISA_MODULES = {"baseline": "_dense", "avx2": "_dense_avx2", "avx512": "_dense_avx512"}


def _select_dense(isa: str | None = None):
    """The ``_dense`` build for the widest vector ISA this CPU runs (as the convolutions).

    ``EFFAI_DENSE_ISA=baseline|avx2|avx512`` overrides the choice (tests, benchmarks); the
    three builds give bit-identical results.
    """
    return select_build("effai_fast.nn", _DENSE_ISA_MODULES, _dense_baseline,
                        _conv_baseline._cpu_level(), "EFFAI_DENSE_ISA", isa)


DENSE_ISA, _dense = _select_dense()

__all__ = [
    "activation_vjp",
    "batch_norm",
    "batch_norm_vjp",
    "dropout",
    "global_avg_pool",
    "global_avg_pool_vjp",
    "linear",
    "linear_vjp",
    "log_softmax",
    "relu",
    "relu6",
    "softmax",
    "softmax_cross_entropy",
]

_ACT = {None: 0, "relu": 1, "relu6": 2}
_ROWS_PER_CHUNK = 256  # reduction chunk: depends on nothing but this constant
_GRAIN = 1 << 17       # elements per thread below which a kernel stays serial (~100 us)


def _act_code(activation) -> int:
    if activation not in _ACT:
        raise ValueError(f"activation must be None, 'relu' or 'relu6', got {activation!r}")
    return _ACT[activation]


def _threads(n_threads, work) -> int:
    return threads_for_work(resolve_n_threads(n_threads), work, _GRAIN)


def _out(out, name, shape, dtype, *inputs):
    if out is None:
        return np.empty(shape, dtype=dtype)
    return check_out(out, name, shape, dtype, *inputs)


def _same_dtype(arr, dtype, name, allow_empty=False):
    return as_float_array(arr, name, dtype=dtype, allow_empty=allow_empty)


# ----------------------------------------------------------------------- activations
def relu(x, *, out=None, n_threads=None) -> np.ndarray:
    """``max(x, 0)`` elementwise (NaN stays NaN)."""
    return _act_forward(x, 1, out, n_threads)


def relu6(x, *, out=None, n_threads=None) -> np.ndarray:
    """``min(max(x, 0), 6)`` elementwise."""
    return _act_forward(x, 2, out, n_threads)


def _act_forward(x, code, out, n_threads):
    x = as_float_array(x, "x", allow_empty=True)
    y = _out(out, "out", x.shape, x.dtype, x)
    nt = _threads(n_threads, x.size)      # validated even when there is nothing to do
    if x.size:
        _dense.act_forward(x.reshape(-1), y.reshape(-1), code, nt)
    return y


def activation_vjp(y, grad_out, activation, *, out=None, n_threads=None) -> np.ndarray:
    """Gradient through an activation, from its *output* ``y``.

    ReLU passes the gradient where ``y > 0``, ReLU6 where ``0 < y < 6`` (PyTorch's
    convention at the kinks); ``activation=None`` returns ``grad_out`` itself.
    """
    code = _act_code(activation)
    y = as_float_array(y, "y", allow_empty=True)
    g = _same_dtype(grad_out, y.dtype, "grad_out", allow_empty=True)
    if g.shape != y.shape:
        raise ValueError(f"grad_out has shape {g.shape}, y has {y.shape}")
    nt = _threads(n_threads, y.size)      # validated even when there is nothing to do
    if code == 0:
        return g
    dx = _out(out, "out", y.shape, y.dtype, y, g)
    if y.size:
        _dense.act_backward(g.reshape(-1), y.reshape(-1), dx.reshape(-1), code, nt)
    return dx


# ----------------------------------------------------------------------- batch norm
def batch_norm(x, gamma, beta, running_mean=None, running_var=None, *, training: bool,
               momentum: float = 0.1, eps: float = 1e-5, activation=None, out=None,
               n_threads=None):
    """Batch normalisation over all axes but the last (channels), with a fused activation.

    Parameters
    ----------
    x : ndarray of shape (..., C)
        NHWC activations (or ``(N, C)``).
    gamma, beta : ndarray of shape (C,)
        Scale and shift.
    running_mean, running_var : ndarray of shape (C,), optional
        Running statistics.  In training they are updated in place
        (``r <- (1 - momentum) r + momentum * batch``, the variance unbiased, as PyTorch);
        in evaluation they normalise.
    training : bool
        Batch statistics (True) or running statistics (False).
    momentum, eps : float
    activation : {None, "relu", "relu6"}
        Applied to the normalised output in the same pass.
    out : ndarray, optional
        Output buffer of ``x``'s shape and dtype.

    Returns
    -------
    y : ndarray
        ``act(gamma * (x - mean) / sqrt(var + eps) + beta)``.
    saved : tuple (mean, invstd)
        float64 ``(C,)`` arrays that :func:`batch_norm_vjp` needs.
    """
    code = _act_code(activation)
    x = as_float_array(x, "x", ndim=(2, 3, 4))
    C = x.shape[-1]
    dt = x.dtype
    gamma = as_float_array(gamma, "gamma", shape=(C,), dtype=dt)
    beta = as_float_array(beta, "beta", shape=(C,), dtype=dt)
    eps = check_real(eps, "eps", min_value=0.0, min_inclusive=False)
    momentum = check_real(momentum, "momentum", min_value=0.0, max_value=1.0)
    x2 = x.reshape(-1, C)
    M = x2.shape[0]
    nt = _threads(n_threads, x.size)
    for name, arr in (("running_mean", running_mean), ("running_var", running_var)):
        if arr is not None and (not isinstance(arr, np.ndarray) or arr.shape != (C,)):
            raise ValueError(f"{name} must be an ndarray of shape ({C},)")
    if training:
        if M < 2:
            raise ValueError(f"x: batch norm in training needs more than one value per channel, "
                             f"got input shape {x.shape}")
        y = _out(out, "out", x.shape, dt, x)
        mean, invstd = _bn_train(x2, gamma, beta, running_mean, running_var, momentum, eps,
                                 y.reshape(-1, C), code, nt)
        return y, (mean, invstd)
    if running_mean is None or running_var is None:
        raise ValueError("batch norm in evaluation needs running_mean and running_var")
    mean = np.asarray(running_mean, dtype=np.float64)
    var = np.asarray(running_var, dtype=np.float64)
    invstd = 1.0 / np.sqrt(var + eps)
    a = (gamma * invstd).astype(dt)
    b = (beta - mean * gamma * invstd).astype(dt)
    y = _out(out, "out", x.shape, dt, x)
    _dense.affine_act(x2, a, b, y.reshape(-1, C), code, nt)
    return y, (mean, invstd)


def _bn_train(x2, gamma, beta, running_mean, running_var, momentum, eps, y2, code, nt):
    """The training forward on validated ``(M, C)`` arrays (M >= 2): fills ``y2``, updates
    the running statistics in place, returns ``(mean, invstd)`` (float64)."""
    C = x2.shape[1]
    mean, invstd, uvar = np.empty(C), np.empty(C), np.empty(C)
    _dense.bn_train_forward(x2, gamma, beta, eps, mean, invstd, uvar, y2, code,
                            _ROWS_PER_CHUNK, nt)
    if running_mean is not None:
        running_mean *= 1.0 - momentum
        running_mean += momentum * mean
    if running_var is not None:
        running_var *= 1.0 - momentum
        running_var += momentum * uvar
    return mean, invstd


def batch_norm_vjp(x, y, grad_out, gamma, saved, *, training: bool = True, activation=None,
                   out=None, n_threads=None):
    """Gradients of :func:`batch_norm` (and its fused activation).

    Parameters
    ----------
    x : ndarray (..., C)
        The forward input.
    y : ndarray (..., C)
        The forward output (masks the gradient for the fused activation).
    grad_out : ndarray (..., C)
    gamma : ndarray (C,)
    saved : (mean, invstd)
        As returned by :func:`batch_norm`.
    training : bool
        Whether the forward used batch statistics (their dependence on ``x`` is then part of
        the gradient) or running statistics (a per-channel affine map).

    Returns
    -------
    grad_x, grad_gamma, grad_beta : ndarray
    """
    code = _act_code(activation)
    x = as_float_array(x, "x", ndim=(2, 3, 4))
    dt = x.dtype
    C = x.shape[-1]
    y = _same_dtype(y, dt, "y")
    g = _same_dtype(grad_out, dt, "grad_out")
    if y.shape != x.shape or g.shape != x.shape:
        raise ValueError(f"x {x.shape}, y {y.shape} and grad_out {g.shape} must have the same "
                         f"shape")
    gamma = as_float_array(gamma, "gamma", shape=(C,), dtype=dt)
    mean, invstd = (np.asarray(s, dtype=np.float64) for s in saved)
    if mean.shape != (C,) or invstd.shape != (C,):
        raise ValueError(f"saved must be the (mean, invstd) pair of shape ({C},) arrays that "
                         f"batch_norm returned")
    dx = _out(out, "out", x.shape, dt, x, y, g)
    dgamma, dbeta = _bn_vjp(x.reshape(-1, C), y.reshape(-1, C), g.reshape(-1, C), gamma,
                            mean, invstd, dx.reshape(-1, C), training, code,
                            _threads(n_threads, x.size))
    return dx, dgamma.astype(dt), dbeta.astype(dt)


def _bn_vjp(x2, y2, g2, gamma, mean, invstd, dx2, training, code, nt):
    """The backward on validated ``(M, C)`` arrays: fills ``dx2``, returns float64
    ``(dgamma, dbeta)``."""
    C = x2.shape[1]
    dgamma, dbeta = np.empty(C), np.empty(C)
    _dense.bn_backward(g2, y2, x2, gamma, np.ascontiguousarray(mean, dtype=np.float64),
                       np.ascontiguousarray(invstd, dtype=np.float64), dx2, dgamma, dbeta,
                       bool(training), code, _ROWS_PER_CHUNK, nt)
    return dgamma, dbeta


# ----------------------------------------------------------------------- pooling
def global_avg_pool(x, *, out=None, n_threads=None) -> np.ndarray:
    """Mean over the spatial axes of an NHWC batch: ``(N, H, W, C) -> (N, C)``."""
    x = as_float_array(x, "x", ndim=4)
    N, H, W, C = x.shape
    y = _out(out, "out", (N, C), x.dtype, x)
    _dense.global_avg_pool(x.reshape(N, H * W, C), y, _threads(n_threads, x.size))
    return y


def global_avg_pool_vjp(grad_out, input_shape, *, out=None, n_threads=None) -> np.ndarray:
    """Gradient of :func:`global_avg_pool`: ``grad / (H W)`` broadcast over the pixels."""
    g = as_float_array(grad_out, "grad_out", ndim=2)
    if len(input_shape) != 4 or tuple(input_shape[::3]) != g.shape:
        raise ValueError(f"input_shape {tuple(input_shape)} does not match grad_out {g.shape}")
    N, H, W, C = (int(s) for s in input_shape)
    dx = _out(out, "out", (N, H, W, C), g.dtype, g)
    _dense.global_avg_pool_backward(g, dx.reshape(N, H * W, C), _threads(n_threads, dx.size))
    return dx


# ----------------------------------------------------------------------- linear
def linear(x, weight, bias=None, *, out=None) -> np.ndarray:
    """``x @ weight + bias`` with ``weight`` of shape ``(in_features, out_features)``."""
    x = as_float_array(x, "x", ndim=2)
    weight = as_float_array(weight, "weight", ndim=2, dtype=x.dtype)
    if weight.shape[0] != x.shape[1]:
        raise ValueError(f"weight has {weight.shape[0]} input features, x has {x.shape[1]}")
    y = _out(out, "out", (x.shape[0], weight.shape[1]), x.dtype, x)
    np.matmul(x, weight, out=y)
    if bias is not None:
        y += as_float_array(bias, "bias", shape=(weight.shape[1],), dtype=x.dtype)
    return y


def linear_vjp(x, weight, grad_out, *, need_input_grad: bool = True):
    """Gradients of :func:`linear`: ``(grad_x, grad_weight, grad_bias)`` (grad_x may be None)."""
    x = as_float_array(x, "x", ndim=2)
    weight = as_float_array(weight, "weight", ndim=2, dtype=x.dtype)
    g = as_float_array(grad_out, "grad_out", shape=(x.shape[0], weight.shape[1]),
                       dtype=x.dtype)
    gx = g @ weight.T if need_input_grad else None
    return gx, x.T @ g, g.sum(axis=0)


# ----------------------------------------------------------------------- dropout
def dropout(x, p: float, seed=None, *, training: bool = True):
    """Inverted dropout: zero each entry with probability ``p``, scale the rest by 1/(1-p).

    Returns ``(y, mask)`` where ``mask`` (the scale applied to each entry, or None when
    nothing was dropped) is what :func:`dropout_vjp`-style backward multiplies by.
    """
    x = as_float_array(x, "x", allow_empty=True)
    p = check_real(p, "p", min_value=0.0, max_value=1.0, max_inclusive=False)
    if not training or p == 0.0:
        return x, None
    rng = check_rng(seed)
    mask = (rng.random(x.shape) >= p).astype(x.dtype)
    mask *= x.dtype.type(1.0 / (1.0 - p))
    return x * mask, mask


# ----------------------------------------------------------------------- softmax / loss
def log_softmax(logits) -> np.ndarray:
    """Row-wise ``z - logsumexp(z)`` (stable)."""
    z = as_float_array(logits, "logits", ndim=2)
    m = z.max(axis=1, keepdims=True)
    return z - (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))


def softmax(logits) -> np.ndarray:
    """Row-wise softmax (stable)."""
    return np.exp(log_softmax(logits))


def softmax_cross_entropy(logits, target, *, reduction: str = "mean", return_grad: bool = True,
                          n_threads=None):
    """Softmax cross-entropy with the log-sum-exp trick, and its gradient.

    Parameters
    ----------
    logits : ndarray of shape (N, K)
    target : ndarray of shape (N,) of int labels in [0, K), or (N, K) of probabilities
        Soft targets (e.g. a teacher's tempered softmax) need not be one-hot.
    reduction : {"mean", "sum", "none"}
    return_grad : bool, default=True

    Returns
    -------
    loss : float (or ndarray (N,) for ``reduction="none"``)
        ``logsumexp(z) - z[label]`` per sample, reduced.
    grad : ndarray (N, K) or None
        d loss / d logits: ``(softmax(z) - onehot) / N`` for ``"mean"``.
    """
    z = as_float_array(logits, "logits", ndim=2)
    N, K = z.shape
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    t = np.asarray(target)
    loss = np.empty(N)
    grad = np.empty_like(z) if return_grad else np.empty((1, 1), z.dtype)
    scale = 1.0 / N if reduction == "mean" else 1.0
    nt = _threads(n_threads, z.size * 8)
    if t.ndim == 1:
        if t.dtype.kind not in "iu":
            raise TypeError(f"target labels must be integers, got dtype {t.dtype}")
        if t.shape[0] != N:
            raise ValueError(f"target has {t.shape[0]} labels for {N} rows of logits")
        if N and (t.min() < 0 or t.max() >= K):
            raise ValueError(f"target labels must lie in [0, {K}), got range "
                             f"[{t.min()}, {t.max()}]")
        labels = np.ascontiguousarray(t, dtype=np.int64)
        _dense.softmax_xent_labels(z, labels, loss, grad, scale, bool(return_grad), nt)
    elif t.ndim == 2:
        probs = as_float_array(t, "target", shape=(N, K), dtype=z.dtype)
        _dense.softmax_xent_probs(z, probs, loss, grad, scale, bool(return_grad), nt)
    else:
        raise ValueError(f"target must be (N,) labels or (N, K) probabilities, got shape "
                         f"{t.shape}")
    if reduction == "none":
        value = loss
    else:
        value = float(loss.sum() * scale)
    return value, (grad if return_grad else None)
