"""Training and evaluation loops, parameter groups, batch-norm folding.

``fit`` runs mini-batch training of a :class:`~effai_fast.nn.Sequential` classifier with
softmax cross-entropy (or any ``loss(logits, y) -> (value, grad)``), one of the optimisers of
:mod:`effai_fast.optim`, an optional per-step learning-rate schedule, progress output and
evaluation on held-out data.  Everything random (initialisation, shuffling, dropout) comes from
explicit seeds, so a run is reproducible bit for bit; the kernels' reductions are in a fixed
order, so it is also the same at 1 and at 2 threads.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from effai_fast._threads import resolve_n_threads
from effai_fast._validation import as_float_array, check_int, check_rng
from effai_fast.nn import _functional_dense as FD
from effai_fast.nn._layers import (
    BatchNorm,
    Conv2d,
    DepthwiseConv2d,
    Dropout,
    Module,
    PointwiseConv2d,
    ReLU,
    ReLU6,
    Sequential,
)

__all__ = [
    "History",
    "blas_single_thread",
    "NonFiniteLossError",
    "evaluate",
    "fit",
    "fold_batchnorm",
    "leaf_layers",
    "param_groups",
    "predict",
]


class NonFiniteLossError(ValueError):
    """The training loss became NaN or infinite; the message names the step."""


@dataclass
class History:
    """Per-epoch figures recorded by :func:`fit`."""

    loss: list = field(default_factory=list)
    accuracy: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_accuracy: list = field(default_factory=list)
    epoch_seconds: list = field(default_factory=list)
    lr: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {k: list(v) for k, v in self.__dict__.items()}


def blas_single_thread():
    """A context in which BLAS libraries run single-threaded (when threadpoolctl is present).

    The layers run OpenMP-parallel kernels that call BLAS inside their parallel regions; a
    multi-threaded OpenBLAS called from an OpenMP region oversubscribes the cores and, on a
    busy machine, was measured to stall ~50 ms per call (OpenBLAS warns "Detect OpenMP
    Loop").  ``fit``, ``evaluate`` and ``predict`` therefore limit BLAS to one thread, as
    scikit-learn does around its OpenMP loops.  Without threadpoolctl, set
    ``OPENBLAS_NUM_THREADS=1`` in the environment.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl is a test/bench extra
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def leaf_layers(model: Module, prefix: str = ""):
    """Yield ``(name, layer)`` for every non-Sequential layer, depth first."""
    if isinstance(model, Sequential):
        for name, layer in zip(model.names, model.layers):
            yield from leaf_layers(layer, f"{prefix}{name}.")
    else:
        yield prefix.rstrip("."), model


def param_groups(model: Module, weight_decay: float = 0.0, *,
                 no_decay=("depthwise", "batchnorm", "bias")) -> list[dict]:
    """Parameter groups (with their gradient arrays) for an optimiser.

    Parameters
    ----------
    model : Module
    weight_decay : float
        Decay of the decayed group.
    no_decay : iterable of {"depthwise", "batchnorm", "bias"}
        Parameters exempt from decay: depthwise filters (the MobileNet paper puts "very
        little or no weight decay" on them, having so few parameters), batch-norm scales and
        shifts, and biases.

    Returns
    -------
    list of dict
        ``[{"params", "grads", "weight_decay", "name": "decay"}, {..., "name": "no_decay"}]``
        (empty groups left out), ready for ``SGD(param_groups(model, 4e-5), lr=...)``.
    """
    no_decay = set(no_decay)
    bad = no_decay - {"depthwise", "batchnorm", "bias"}
    if bad:
        raise ValueError(f"no_decay entries must be 'depthwise', 'batchnorm' or 'bias', got "
                         f"{sorted(bad)}")
    decay = ([], [])
    plain = ([], [])
    for _, layer in leaf_layers(model):
        for (pname, p), (_, g) in zip(layer.named_parameters(), layer.named_gradients()):
            exempt = (("batchnorm" in no_decay and isinstance(layer, BatchNorm))
                      or ("depthwise" in no_decay and isinstance(layer, DepthwiseConv2d))
                      or ("bias" in no_decay and pname == "bias"))
            target = plain if exempt else decay
            target[0].append(p)
            target[1].append(g)
    groups = []
    if decay[0]:
        groups.append({"params": decay[0], "grads": decay[1], "weight_decay": weight_decay,
                       "name": "decay"})
    if plain[0]:
        groups.append({"params": plain[0], "grads": plain[1], "weight_decay": 0.0,
                       "name": "no_decay"})
    return groups


def _check_xy(model, x, y, name_x="x", name_y="y"):
    x = as_float_array(x, name_x, dtype=model.dtype, ndim=(2, 4), finite=True)
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise TypeError(f"{name_y} must be a 1-D array of integer class labels, got dtype "
                        f"{y.dtype} and shape {y.shape}")
    if len(y) != len(x):
        raise ValueError(f"{name_x} has {len(x)} samples but {name_y} has {len(y)}")
    return x, y.astype(np.int64)


def _batches(n, batch_size, rng, shuffle, drop_last):
    order = rng.permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        if len(idx) < batch_size and (drop_last or len(idx) < 2):
            break
        yield idx


def predict(model: Sequential, x, *, batch_size: int = 256, n_threads=None) -> np.ndarray:
    """Model outputs (logits) for ``x`` in evaluation mode, batch by batch."""
    x = as_float_array(x, "x", dtype=model.dtype, ndim=(2, 4))
    batch_size = check_int(batch_size, "batch_size", min_value=1)
    old = model.n_threads
    if n_threads is not None:
        model.n_threads = n_threads
    try:
        with blas_single_thread():
            outs = [model.forward(x[i:i + batch_size], training=False)
                    for i in range(0, len(x), batch_size)]
    finally:
        model.n_threads = old
    return np.concatenate(outs)


def evaluate(model: Sequential, x, y, *, batch_size: int = 256, n_threads=None) -> dict:
    """Mean softmax cross-entropy and accuracy of ``model`` on ``(x, y)``.

    Returns
    -------
    dict
        ``{"loss": float, "accuracy": float (fraction)}``
    """
    x, y = _check_xy(model, x, y)
    logits = predict(model, x, batch_size=batch_size, n_threads=n_threads)
    loss, _ = FD.softmax_cross_entropy(logits, y, return_grad=False)
    return {"loss": loss, "accuracy": float(np.mean(np.argmax(logits, axis=1) == y))}


def _cosine(base_lr, total):
    def schedule(step):
        return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / max(1, total)))
    return schedule


def fit(model: Sequential, x, y, *, epochs: int = 1, batch_size: int = 64, optimizer=None,
        loss: Callable | None = None, lr_schedule=None, validation_data=None, seed=0,
        shuffle: bool = True, drop_last: bool = False, verbose: int = 1,
        log: Callable[[str], None] = print, n_threads=None) -> History:
    """Train a classifier by mini-batch gradient descent.

    Parameters
    ----------
    model : Sequential
        Maps ``x`` batches to logits ``(batch, num_classes)``.
    x : ndarray (N, H, W, C) (or (N, features))
    y : ndarray (N,) of int labels
    epochs : int, default=1
    batch_size : int, default=64
    optimizer : effai_fast.optim.Optimizer, optional
        Built on ``param_groups(model, ...)`` (stored gradients).  Default:
        ``SGD(param_groups(model, 4e-5), lr=0.05, momentum=0.9, nesterov=True)``.
    loss : callable, optional
        ``loss(logits, y_batch, idx) -> (value, grad_logits)``; default softmax cross-entropy
        (``idx``, the batch's indices into ``x``, lets e.g. distillation look up teacher
        outputs).
    lr_schedule : None, "cosine" or callable
        ``"cosine"`` anneals the optimiser's learning rate to 0 over all steps; a callable
        ``f(step) -> lr`` sets it before each step (steps counted from 0).
    validation_data : (x_val, y_val), optional
        Evaluated after each epoch.
    seed : None, int or Generator, default=0
        Shuffling order.
    shuffle, drop_last : bool
        A final batch of a single sample is always skipped (batch norm needs two).
    verbose : int, default=1
        0 silent, 1 one line per epoch, 2 also every ~10 % of an epoch.
    log : callable, default=print
    n_threads : int, optional
        OpenMP threads of every layer during training.

    Returns
    -------
    History

    Raises
    ------
    NonFiniteLossError
        When the loss becomes NaN or infinite; the message names the epoch and step.
    ValueError, TypeError
        For inconsistent data or arguments.
    """
    from effai_fast.optim import SGD, Optimizer

    if not isinstance(model, Module):
        raise TypeError(f"model must be an effai_fast.nn Module, got {type(model).__name__}")
    x, y = _check_xy(model, x, y)
    epochs = check_int(epochs, "epochs", min_value=1)
    batch_size = check_int(batch_size, "batch_size", min_value=1)
    if len(x) < 2:
        raise ValueError(f"x must hold at least 2 samples, got {len(x)}")
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data must be a pair (x_val, y_val)")
        xv, yv = _check_xy(model, *validation_data, "validation_data[0]", "validation_data[1]")
    if optimizer is None:
        optimizer = SGD(param_groups(model, 4e-5), lr=0.05, momentum=0.9, nesterov=True)
    elif not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be an effai_fast.optim optimiser, got "
                        f"{type(optimizer).__name__}")
    if any(g["grads"] is None for g in optimizer.param_groups):
        raise ValueError("optimizer must be built on param_groups(model) (groups with stored "
                         "'grads') so that fit can call optimizer.step()")
    rng = check_rng(seed)
    steps_per_epoch = sum(1 for _ in _batches(len(x), batch_size, np.random.default_rng(0),
                                              False, drop_last))
    total = steps_per_epoch * epochs
    if lr_schedule == "cosine":
        lr_schedule = _cosine(optimizer.lr, total)
    elif lr_schedule is not None and not callable(lr_schedule):
        raise TypeError(f"lr_schedule must be None, 'cosine' or a callable, got "
                        f"{lr_schedule!r}")
    verbose = check_int(verbose, "verbose", min_value=0)
    old_threads = model.n_threads
    if n_threads is not None:
        resolve_n_threads(n_threads)
        model.n_threads = n_threads
    hist = History()
    step = 0
    guard = blas_single_thread()
    guard.__enter__()
    try:
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            seen = correct = 0
            loss_sum = 0.0
            report_every = max(1, steps_per_epoch // 10)
            for k, idx in enumerate(_batches(len(x), batch_size, rng, shuffle, drop_last)):
                if lr_schedule is not None:
                    optimizer.lr = lr_schedule(step)
                xb, yb = x[idx], y[idx]
                logits = model.forward(xb, training=True)
                if loss is None:
                    value, grad = FD.softmax_cross_entropy(logits, yb)
                else:
                    value, grad = loss(logits, yb, idx)
                    value = float(value)
                if not math.isfinite(value):
                    raise NonFiniteLossError(
                        f"training loss is {value} at epoch {epoch}, step {k + 1} of "
                        f"{steps_per_epoch} (global step {step + 1}); stopping. Lower the "
                        f"learning rate (now {optimizer.lr:g}) or check the inputs.")
                model.backward(grad, need_input_grad=False)
                optimizer.step()
                step += 1
                seen += len(idx)
                loss_sum += value * len(idx)
                correct += int(np.sum(np.argmax(logits, axis=1) == yb))
                if verbose >= 2 and (k + 1) % report_every == 0:
                    log(f"  epoch {epoch} step {k + 1}/{steps_per_epoch}: loss "
                        f"{loss_sum / seen:.4f}, accuracy {100 * correct / seen:.2f}%")
            hist.epoch_seconds.append(time.perf_counter() - t0)
            hist.loss.append(loss_sum / max(seen, 1))
            hist.accuracy.append(correct / max(seen, 1))
            hist.lr.append(optimizer.lr)
            line = (f"epoch {epoch}/{epochs}: loss {hist.loss[-1]:.4f}, accuracy "
                    f"{100 * hist.accuracy[-1]:.2f}%")
            if validation_data is not None:
                ev = evaluate(model, xv, yv)
                hist.val_loss.append(ev["loss"])
                hist.val_accuracy.append(ev["accuracy"])
                line += (f", val_loss {ev['loss']:.4f}, val_accuracy "
                         f"{100 * ev['accuracy']:.2f}%")
            line += f" ({hist.epoch_seconds[-1]:.2f} s)"
            if verbose >= 1:
                log(line)
    finally:
        guard.__exit__(None, None, None)
        model.n_threads = old_threads
    return hist


def fold_batchnorm(model: Sequential) -> Sequential:
    """An inference copy of ``model`` with every batch norm folded into its convolution.

    ``BN(conv(x)) = a * conv(x) + b`` with ``a = gamma / sqrt(running_var + eps)`` and
    ``b = beta - a * running_mean``: the convolution's output channels are scaled by ``a``
    and ``b`` becomes its bias.  The batch norm's fused activation (or a following ReLU /
    ReLU6 layer) moves into the convolution's store; dropout layers (identity at inference)
    are removed.  The copy computes ``model.forward(x, training=False)`` to rounding.
    """
    import copy

    leaves = list(leaf_layers(model))
    out_layers, out_names = [], []
    i = 0
    while i < len(leaves):
        name, layer = leaves[i]
        if isinstance(layer, Dropout):
            i += 1
            continue
        if (isinstance(layer, (Conv2d, DepthwiseConv2d, PointwiseConv2d))
                and i + 1 < len(leaves) and isinstance(leaves[i + 1][1], BatchNorm)
                and layer.activation is None):
            bn = leaves[i + 1][1]
            a, b = bn.scale_shift()
            new = copy.copy(layer)
            new._bufs = {}
            new._x = new._y = None
            w = layer.weight.astype(np.float64) * a  # output channels are the last axis
            bias = b if layer.bias is None else layer.bias * a + b
            new._new_param("weight", w)
            new._new_param("bias", bias)
            new.use_bias = True
            new.activation = bn.activation
            i += 2
            if new.activation is None and i < len(leaves) and isinstance(leaves[i][1],
                                                                         (ReLU, ReLU6)):
                new.activation = "relu" if isinstance(leaves[i][1], ReLU) else "relu6"
                i += 1
            out_layers.append(new)
            out_names.append(name)
            continue
        new = copy.deepcopy(layer)
        new._bufs = {}
        out_layers.append(new)
        out_names.append(name)
        i += 1
    folded = Sequential(*out_layers, names=out_names)
    folded.n_threads = model.n_threads
    return folded
