"""Training and evaluation loops, parameter groups, batch-norm folding.

``fit`` runs mini-batch training of a :class:`~effai_fast.nn.Sequential` classifier with
softmax cross-entropy (or any ``loss(logits, y) -> (value, grad)``), one of the optimisers of
:mod:`effai_fast.optim`, an optional per-step learning-rate schedule, progress output and
evaluation on held-out data.  Everything random (initialisation, shuffling, dropout) comes from
explicit seeds, so a run is reproducible bit for bit; the kernels' reductions are in a fixed
order, so it is also the same at 1 and at 2 threads.

With ``checkpoint=path`` the run writes its whole state (weights, batch-norm statistics,
optimiser buffers, generator states, the epoch's batch order) atomically after every epoch
(and every ``checkpoint_every`` steps); started again with the same arguments after being
killed, it restores that state and continues, ending with the same weights bit for bit as a
run that was never interrupted.
"""

from __future__ import annotations

import math
import os
import threading
import time
import zlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from effai_fast._threads import resolve_n_threads
from effai_fast._validation import as_float_array, check_int, check_out, check_rng
from effai_fast.nn import _functional_dense as FD
from effai_fast.nn._checkpoint import (
    dropout_generators,
    get_rng_state,
    read_resumable,
    set_rng_state,
    write_checkpoint,
)
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
    "InferencePlan",
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
    yield from _order_batches(order, batch_size, drop_last)


def _order_batches(order, batch_size, drop_last):
    for start in range(0, len(order), batch_size):
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


_FIT_FORMAT = "effai_fast.nn.fit/1"


def _fit_fingerprint(x, y, epochs, batch_size, shuffle, drop_last, steps_per_epoch) -> dict:
    """What a checkpoint must agree on with the run that resumes from it."""
    return {"epochs": int(epochs), "n_samples": int(len(x)),
            "sample_shape": list(x.shape[1:]), "dtype": x.dtype.str,
            "labels_crc32": zlib.crc32(np.ascontiguousarray(y).tobytes()),
            "batch_size": int(batch_size), "shuffle": bool(shuffle),
            "drop_last": bool(drop_last), "steps_per_epoch": int(steps_per_epoch)}


def _save_fit_checkpoint(path, model, optimizer, rng, fingerprint, base_lr, hist, *, epoch,
                         batch, step, order=None, partial=None):
    """``epoch`` complete epochs plus ``batch`` steps of epoch ``epoch + 1``."""
    arrays = {f"model.{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"optim.{k}": v for k, v in optimizer.state_dict().items()})
    if order is not None:
        arrays["order"] = np.asarray(order, dtype=np.int64)
    meta = {"format": _FIT_FORMAT, "fingerprint": fingerprint, "epoch": epoch,
            "batch": batch, "step": step, "base_lr": base_lr, "history": hist.as_dict(),
            "partial": partial, "rng": get_rng_state(rng),
            "dropout_rngs": [get_rng_state(g) for g in dropout_generators(model)]}
    write_checkpoint(path, arrays, meta)


def _load_fit_checkpoint(path, model, optimizer, rng, fingerprint):
    arrays, meta, gens = read_resumable(path, _FIT_FORMAT, fingerprint, model)
    model.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model.")})
    optimizer.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("optim.")})
    set_rng_state(rng, meta["rng"])
    for g, st in zip(gens, meta["dropout_rngs"]):
        set_rng_state(g, st)
    hist = History(**{k: list(v) for k, v in meta["history"].items()})
    return meta, arrays.get("order"), hist


def fit(model: Sequential, x, y, *, epochs: int = 1, batch_size: int = 64, optimizer=None,
        loss: Callable | None = None, lr_schedule=None, validation_data=None, seed=0,
        shuffle: bool = True, drop_last: bool = False, verbose: int = 1,
        log: Callable[[str], None] = print, n_threads=None, checkpoint=None,
        resume: bool = True, checkpoint_every: int | None = None) -> History:
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
    checkpoint : str or path-like, optional
        A ``.npz`` file written (atomically: temporary file + :func:`os.replace`; arrays plus
        a JSON string, no pickle) after every epoch and, with ``checkpoint_every``, every
        that many steps.  It holds the model's parameters and buffers, the optimiser's state,
        the state of the shuffling generator and of every Dropout generator, the current
        epoch's batch order, the step count and the history.
    resume : bool, default=True
        When ``checkpoint`` exists, continue from it: the model, optimiser and generators are
        restored and training goes on after the last saved step, so a run that was killed
        and restarted with the same arguments ends with the same weights, bit for bit, as
        an uninterrupted run.  A checkpoint of a finished run returns its history at once.
        ``resume=False`` starts afresh and overwrites the file.  The data, ``epochs``,
        ``batch_size``, ``shuffle`` and ``drop_last`` must match the checkpoint's
        (ValueError otherwise); ``loss`` and a callable ``lr_schedule`` must be the same
        functions (they are not stored).
    checkpoint_every : int, optional
        Also checkpoint every this many optimiser steps (default: only at epoch ends).

    Returns
    -------
    History

    Raises
    ------
    NonFiniteLossError
        When the loss becomes NaN or infinite; the message names the epoch and step.
    ValueError, TypeError
        For inconsistent data or arguments, or a checkpoint written by another run.

    Examples
    --------
    >>> hist = fit(model, x, y, epochs=30, lr_schedule="cosine",
    ...            checkpoint="run.npz")      # doctest: +SKIP

    Killed and started again with the same call, it continues from ``run.npz``.
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
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path (str or os.PathLike), got "
                        f"{type(checkpoint).__name__}")
    if checkpoint_every is not None:
        checkpoint_every = check_int(checkpoint_every, "checkpoint_every", min_value=1)
    rng = check_rng(seed)
    steps_per_epoch = sum(1 for _ in _batches(len(x), batch_size, np.random.default_rng(0),
                                              False, drop_last))
    total = steps_per_epoch * epochs
    base_lr = optimizer.lr
    fingerprint = _fit_fingerprint(x, y, epochs, batch_size, shuffle, drop_last, steps_per_epoch)
    meta = saved_order = None
    hist = History()
    if checkpoint is not None and resume and Path(checkpoint).exists():
        meta, saved_order, hist = _load_fit_checkpoint(checkpoint, model, optimizer, rng,
                                                       fingerprint)
        base_lr = meta["base_lr"]
    if lr_schedule == "cosine":
        lr_schedule = _cosine(base_lr, total)
    elif lr_schedule is not None and not callable(lr_schedule):
        raise TypeError(f"lr_schedule must be None, 'cosine' or a callable, got "
                        f"{lr_schedule!r}")
    verbose = check_int(verbose, "verbose", min_value=0)
    old_threads = model.n_threads
    if n_threads is not None:
        resolve_n_threads(n_threads)
        model.n_threads = n_threads
    step = 0 if meta is None else int(meta["step"])
    first_epoch = 1 if meta is None else int(meta["epoch"]) + 1
    if meta is not None and verbose >= 1:
        log(f"resuming from {checkpoint}: {meta['epoch']} epoch(s) and {meta['batch']} "
            f"step(s) done (global step {step})")

    def save(epoch_done, batch_done, order=None, partial=None):
        _save_fit_checkpoint(checkpoint, model, optimizer, rng, fingerprint, base_lr, hist,
                             epoch=epoch_done, batch=batch_done, step=step, order=order,
                             partial=partial)

    guard = blas_single_thread()
    guard.__enter__()
    try:
        for epoch in range(first_epoch, epochs + 1):
            t0 = time.perf_counter()
            if meta is not None and meta["batch"] > 0 and epoch == first_epoch:
                order, k0 = saved_order, int(meta["batch"])   # resume inside this epoch
                part = meta["partial"]
                seen, correct, loss_sum = part["seen"], part["correct"], part["loss_sum"]
                t0 -= part["seconds"]
            else:
                order = rng.permutation(len(x)) if shuffle else np.arange(len(x))
                k0 = seen = correct = 0
                loss_sum = 0.0
            report_every = max(1, steps_per_epoch // 10)
            for k, idx in enumerate(_order_batches(order, batch_size, drop_last)):
                if k < k0:
                    continue
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
                if (checkpoint is not None and checkpoint_every is not None
                        and step % checkpoint_every == 0 and k + 1 < steps_per_epoch):
                    save(epoch - 1, k + 1, order,
                         {"seen": seen, "correct": correct, "loss_sum": loss_sum,
                          "seconds": time.perf_counter() - t0})
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
            if checkpoint is not None:
                save(epoch, 0)
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


class InferencePlan:
    """A prepared, validated inference pass of a model for one input shape.

    ``Sequential.forward`` validates every argument of every layer on every call (dtypes,
    shapes, paddings, buffers, thread counts): about 10-30 us per layer, which at batch 1 is a
    sizeable part of a 27-layer MobileNet.  A plan does all of that once: it walks the leaf
    layers, resolves each convolution's geometry, allocates the intermediate outputs (two
    arenas of the largest output, used in turn: the activations stay in cache from one layer
    to the next, which at batch 1 made the whole pass ~1.4x faster than one buffer per
    layer), picks
    each layer's thread count from its amount of work (small layers stay on one thread, see
    ``effai_fast.nn.functional._GRAIN_MACS``) and then calls the compiled kernels directly.
    A call checks only the input (and that no layer's parameter array was replaced).

    Parameters
    ----------
    model : Module
        Usually a :class:`Sequential` (e.g. ``fold_batchnorm(mobilenet_v1())``).  Convolutions,
        batch norm (inference statistics), ReLU/ReLU6, global average pooling, linear and
        dropout (identity) run through the plan; any other layer through its ``forward``.
    input_shape : tuple of int
        The full input shape, batch included, e.g. ``(1, 224, 224, 3)``.
    n_threads : int, optional
        Threads for the whole pass (default: the model's ``n_threads``, else all cores).
    pack_weights : bool, default=True
        Pack the weights of the pointwise and linear layers once, when the plan is built,
        into the panel layout of the GEMM micro-kernels (as ONNX Runtime does at session
        creation), instead of on every call.  At batch 1 the 14x14 and 7x7 layers have
        few pixels per weight, and packing their weights (1-4 MiB each) on every call cost
        about a quarter of their time.  The results are the same bits either way.  The
        packed copy is a snapshot: after updating those weights *in place*, call
        :meth:`refresh` (or build the plan with ``pack_weights=False``).
    batch_chunk : int, optional
        Run a batch this many images at a time, every layer on one chunk before the next
        chunk starts (all layers must work image by image, which every layer the plan knows
        does; another layer turns chunking off).  Default: as many images as keep the two
        activation arenas within about 8 MiB (the L2/L3 caches), e.g. 1 for MobileNet at
        224x224.  At batch 32 the whole-batch activations (100 MB per layer) went through
        memory between every two layers, which made the pass ~1.3x slower than 32 passes
        at batch 1.  On the AVX2/AVX-512 builds the results are the same bits for any
        chunk size (every output is computed per image, in the same order); the baseline
        build runs the stem and 1x1 convolutions on OpenBLAS, whose rounding depends on
        the matrix sizes, so there chunk sizes agree to rounding.

    Notes
    -----
    The plan keeps references to the layers' parameter arrays: in-place updates (optimiser
    steps, ``load_state_dict``) are seen by the layers it does not pack, and by all of them
    after :meth:`refresh` (at once with ``pack_weights=False``); a parameter *replaced* by a
    new array makes the next call rebuild the plan.  Changing a layer's settings (stride,
    activation, ...) needs a new plan.  The returned array is fresh unless ``out`` is given;
    a plan is not thread-safe (its buffers are shared by calls), use one plan per thread.

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.nn import InferencePlan, Sequential, DepthwiseConv2d, GlobalAvgPool
    >>> net = Sequential(DepthwiseConv2d(4, activation="relu", seed=0), GlobalAvgPool())
    >>> plan = InferencePlan(net, (2, 8, 8, 4), n_threads=1)
    >>> x = np.ones((2, 8, 8, 4), np.float32)
    >>> bool(np.allclose(plan(x), net.forward(x)))
    True
    """

    def __init__(self, model: Module, input_shape, *, n_threads=None,
                 pack_weights: bool = True, batch_chunk=None):
        if not isinstance(model, Module):
            raise TypeError(f"model must be an effai_fast.nn Module, got {type(model).__name__}")
        if (not isinstance(input_shape, (tuple, list)) or len(input_shape) not in (2, 4)
                or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                       for v in input_shape)):
            raise ValueError(f"input_shape must be a tuple of 2 or 4 positive ints, "
                             f"got {input_shape!r}")
        self.model = model
        self.input_shape = tuple(int(v) for v in input_shape)
        self.dtype = model.dtype
        if n_threads is None:
            n_threads = getattr(model, "n_threads", None)
        self.n_threads = resolve_n_threads(n_threads)
        if not isinstance(pack_weights, (bool, np.bool_)):
            raise TypeError(f"pack_weights must be a bool, got {type(pack_weights).__name__}")
        self.pack_weights = bool(pack_weights)
        if batch_chunk is not None:
            batch_chunk = check_int(batch_chunk, "batch_chunk", min_value=1)
        self.batch_chunk = batch_chunk
        self._build()

    def refresh(self) -> None:
        """Re-read every layer's parameters (re-pack the packed weights).

        Needed after in-place updates of pointwise or linear weights when the plan packs
        them (``pack_weights=True``); harmless otherwise.
        """
        self._build()

    # ----------------------------------------------------------------- build
    _ARENA_BUDGET = 8 << 20    # bytes of the two arenas of one chunk (L2/L3-resident)

    def _build(self):
        from effai_fast.nn._layers import GlobalAvgPool, Linear

        layers = [(name, layer) for name, layer in leaf_layers(self.model)
                  if not isinstance(layer, Dropout)]
        N = self.input_shape[0]
        per_image = isinstance(self.model, Sequential) and all(
            isinstance(layer, (DepthwiseConv2d, Conv2d, PointwiseConv2d, BatchNorm, ReLU,
                               ReLU6, GlobalAvgPool, Linear)) for _, layer in layers)
        chunk = N
        if per_image and N > 1:
            if self.batch_chunk is not None:
                chunk = min(self.batch_chunk, N)
            else:
                shape, big = (1,) + self.input_shape[1:], 0
                for _, layer in layers:
                    shape = tuple(layer.output_shape(shape))
                    big = max(big, int(np.prod(shape)))
                item = np.dtype(self.dtype).itemsize
                chunk = int(max(1, min(N, self._ARENA_BUDGET // max(1, 2 * big * item))))
        self.chunk = chunk
        # With several threads and several chunks, the chunks are shared out between
        # worker threads that each run whole chunks on one core (their own arenas, the
        # packed weights shared): one image per core instead of a team of threads
        # meeting at a barrier in every layer, whose small per-image layers scale badly.
        n_chunks = -(-N // chunk)
        workers = min(self.n_threads, n_chunks) if chunk < N else 1
        layer_nt = 1 if workers > 1 else self.n_threads
        self._packed = {}
        self._plans = [{size: self._build_for(layers, (size,) + self.input_shape[1:],
                                              layer_nt)
                        for size in {chunk, N % chunk or chunk}} for _ in range(workers)]
        self._packed = {}
        self._steps, self._checks, self.layer_threads, out_shape = self._plans[0][chunk]
        self.workers = workers
        self.output_shape = (N,) + tuple(out_shape[1:])

    def _build_for(self, layers, input_shape, nt):
        from effai_fast.nn import _functional_dense as FDm
        from effai_fast.nn import functional as F
        from effai_fast.nn._layers import GlobalAvgPool, Linear

        kern = F._conv
        dt = self.dtype
        steps, checks, layer_threads = [], [], []
        # Two arenas, used in turn: layer i writes into arena i % 2 and reads the other
        # one, so the activations of the whole pass occupy two buffers of the largest
        # output (3.2 MB at batch 1) instead of one buffer per layer (15 MB): they stay
        # in the L2/L3 cache from one layer to the next.  A layer never writes where it
        # reads (the kernels require it).
        shapes, shape = [], input_shape
        for _, layer in layers:
            shape = tuple(layer.output_shape(shape))
            shapes.append(shape)
        size = max((int(np.prod(s)) for s in shapes), default=0)
        arenas = [np.empty(size, dtype=dt), np.empty(size, dtype=dt)]
        shape = input_shape
        for i, (name, layer) in enumerate(layers):
            out_shape = shapes[i]
            buf = arenas[i % 2][:int(np.prod(out_shape))].reshape(out_shape)
            t = 1
            if isinstance(layer, (DepthwiseConv2d, Conv2d)):
                k = layer.kernel_size
                if isinstance(layer, DepthwiseConv2d):
                    w_shape = (k, k, layer.channels)
                else:
                    w_shape = (k, k, layer.in_channels, layer.out_channels)
                w, b = self._params(layer, w_shape, out_shape[-1])
                sh, sw, dh, dw, pads, OH, OW = F._geometry(shape, k, k, layer.stride,
                                                           layer.padding, 1)
                act = F._activation(layer.activation)
                macs = int(np.prod(out_shape[:-1])) * k * k * (
                    layer.channels if isinstance(layer, DepthwiseConv2d)
                    else layer.in_channels * layer.out_channels)
                if isinstance(layer, DepthwiseConv2d):
                    t = F._dw_threads(nt, macs)
                    fn = kern._depthwise_forward
                else:
                    t = F._threads(nt, macs)
                    fn = kern._conv2d_forward
                steps.append((0, fn, (w, b, buf, sh, sw, dh, dw, pads[0], pads[2], act, t),
                              buf))
                checks.append((layer, layer.weight, layer.bias))
            elif isinstance(layer, PointwiseConv2d):
                w, b = self._params(layer, (layer.in_channels, layer.out_channels),
                                    layer.out_channels)
                P = int(np.prod(out_shape[:-1]))
                t = F._threads(nt, P * layer.in_channels * layer.out_channels)
                steps.append((1, kern._pointwise_forward_packed,
                               (w, self._pack(kern, w), b,
                                buf.reshape(P, layer.out_channels),
                                F._activation(layer.activation), t), buf))
                checks.append((layer, layer.weight, layer.bias))
            elif isinstance(layer, BatchNorm):
                a, c = layer.scale_shift()
                t = FDm._threads(nt, int(np.prod(shape)))
                steps.append((2, FDm.batch_norm, dict(
                    gamma=layer.weight, beta=layer.bias, running_mean=layer.running_mean,
                    running_var=layer.running_var, training=False, eps=layer.eps,
                    activation=layer.activation, out=buf, n_threads=t), buf))
            elif isinstance(layer, (ReLU, ReLU6)):
                t = FDm._threads(nt, int(np.prod(shape)))
                steps.append((3, FDm._act_forward, (layer._code, buf, t), buf))
            elif isinstance(layer, GlobalAvgPool):
                t = FDm._threads(nt, int(np.prod(shape)))
                steps.append((4, FDm.global_avg_pool, dict(out=buf, n_threads=t), buf))
            elif isinstance(layer, Linear) and F._ready(layer.weight, dt, 2) and (
                    layer.bias is None or F._ready(layer.bias, dt, 1)):
                # A linear layer is a 1x1 convolution over N pixels: it runs on the same
                # packed GEMM kernel, with this plan's thread count.  (numpy's matmul
                # would wake numpy's own BLAS threads, whose spin-waiting after the call
                # competed with the next pass's OpenMP threads for the cores.)
                w, b = self._params(layer, (layer.in_features, layer.out_features),
                                    layer.out_features)
                t = F._threads(nt, shape[0] * layer.in_features * layer.out_features)
                steps.append((1, kern._pointwise_forward_packed,
                              (w, self._pack(kern, w), b, buf, 0, t), buf))
                checks.append((layer, layer.weight, layer.bias))
            elif isinstance(layer, Linear):
                steps.append((5, FDm.linear, (layer, buf), buf))
            else:
                # its own forward; the result is copied into the arena (a view of the
                # input, e.g. a reshape, must not be overwritten by the next layer)
                steps.append((6, layer, None, buf))
            layer_threads.append((name, type(layer).__name__, t))
            shape = out_shape
        return steps, checks, layer_threads, shape

    def _pack(self, kern, w):
        """The GEMM weight ``w`` packed for the micro-kernels (empty: packed per call)."""
        if id(w) in self._packed:       # the same weight in the plan of another chunk size
            return self._packed[id(w)]
        n = kern._pointwise_packed_len(w.shape[0], w.shape[1], w.dtype == np.float64)
        packed = np.empty(n if self.pack_weights else 0, dtype=w.dtype)
        if packed.size:
            kern._pack_pointwise(w, packed)
        self._packed[id(w)] = packed
        return packed

    def _params(self, layer, w_shape, n_out):
        w = layer.weight
        if (not isinstance(w, np.ndarray) or w.dtype != self.dtype or w.shape != w_shape
                or not w.flags.c_contiguous):
            raise ValueError(f"{type(layer).__name__}.weight must be a C-contiguous "
                             f"{self.dtype} array of shape {w_shape}")
        b = layer.bias
        if b is None:
            b = np.empty(0, dtype=self.dtype)
        elif (not isinstance(b, np.ndarray) or b.dtype != self.dtype or b.shape != (n_out,)
              or not b.flags.c_contiguous):
            raise ValueError(f"{type(layer).__name__}.bias must be a C-contiguous "
                             f"{self.dtype} array of shape ({n_out},)")
        return w, b

    # ------------------------------------------------------------------ call
    def __call__(self, x, *, out=None) -> np.ndarray:
        """Run the pass on ``x`` (shape ``input_shape``); returns the model's output."""
        from effai_fast.nn import functional as F

        if not F._ready(x, self.dtype, len(self.input_shape)) or x.shape != self.input_shape:
            x = as_float_array(x, "x", dtype=self.dtype, shape=self.input_shape)
        for layer, w, b in self._checks:
            if layer.weight is not w or layer.bias is not b:
                self._build()
                break
        N, chunk = self.input_shape[0], self.chunk
        if chunk < N:
            res = np.empty(self.output_shape, self.dtype) if out is None else check_out(
                out, "out", self.output_shape, self.dtype)
            starts = list(range(0, N, chunk))
            errors = []

            def work(w):
                try:
                    plans = self._plans[w]
                    for i in starts[w::self.workers]:
                        res[i:i + chunk] = self._run(plans[min(chunk, N - i)][0],
                                                     x[i:i + chunk])
                except BaseException as e:      # re-raised in the calling thread
                    errors.append(e)

            threads = [threading.Thread(target=work, args=(w,))
                       for w in range(1, self.workers)]
            for t in threads:
                t.start()
            work(0)
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            return res
        x = self._run(self._steps, x)
        if out is None:
            return x.copy()
        out = check_out(out, "out", x.shape, x.dtype)
        out[...] = x
        return out

    @staticmethod
    def _run(steps, x):
        from effai_fast.nn import functional as F

        with F._serial_blas:
            for kind, fn, args, buf in steps:
                if kind == 0:
                    fn(x, *args)
                elif kind == 1:
                    fn(x.reshape(-1, x.shape[-1]), *args)
                elif kind == 2:
                    fn(x, **args)
                elif kind == 3:
                    fn(x, *args)
                elif kind == 4:
                    fn(x, **args)
                elif kind == 5:
                    layer = args[0]
                    fn(x, layer.weight, layer.bias, out=args[1])
                else:
                    buf[...] = fn.forward(x, training=False)
                x = buf
        return x
