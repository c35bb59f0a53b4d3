"""Teacher -> student training: :class:`Distiller`.

Design note
-----------
* **Teacher logits are computed once per training sample** (teacher in
  inference mode, ``forward(x, training=False)``), before the first epoch,
  and each step reads its rows of that cache.  A distillation step then costs
  a student forward + backward + the fused :func:`~effai_fast.distill.kd_loss`
  on (batch, classes) - the same as a hard-label step, whose loss is
  :func:`~effai_fast.distill.cross_entropy` on the same kernel.  The cache is
  valid only when the student sees exactly the inputs the teacher saw:
  stochastic augmentation (``augment=``) together with the cache is refused;
  pass ``cache_teacher_logits=False`` to run the teacher on every augmented
  batch instead (one teacher forward per step).
* **Models** are duck-typed, so the trainer works with the layers of
  :mod:`effai_fast.nn` / :mod:`effai_fast.mobilenet` and with any model that
  offers the same four methods::

      forward(x, training: bool) -> logits            # (B, C)
      backward(grad_logits) -> grad_x                 # fills the gradient buffers
      parameters() -> list[ndarray]                   # updated in place
      gradients() -> list[ndarray]                    # aligned with parameters()

  ``backward`` must *overwrite* (not accumulate into) the arrays that
  ``gradients()`` returned: the optimiser reads them after each backward.
  When ``backward`` accepts ``need_input_grad`` (the :mod:`effai_fast.nn`
  layers do) it is called with ``need_input_grad=False``: nothing needs the
  gradient of the images.  A model may also offer ``cost()`` (an object with
  ``.macs``) or ``macs(sample_shape)`` for reports.
* **Hard-label training** is the same loop with ``teacher=None`` and
  ``hard_weight=1``: comparisons of the two use identical batches, optimiser
  and schedule.
* Randomness (batch order) comes only from ``seed``; the same seed and data
  give the same student.
* **Checkpoints** (``fit(..., checkpoint=path)``): the student's state, the
  optimiser's buffers and the generator states go to one ``.npz`` (no pickle,
  written atomically) after every epoch or ``checkpoint_every`` steps; a killed
  run started again with the same call continues from it and ends with the
  same student bit for bit.
"""

from __future__ import annotations

import inspect
import math
import os
import time
import zlib
from pathlib import Path

import numpy as np

from effai_fast._validation import check_int, check_real, check_rng
from effai_fast.distill.losses import cross_entropy, kd_loss
from effai_fast.nn._checkpoint import (
    dropout_generators,
    get_rng_state,
    read_resumable,
    set_rng_state,
    write_checkpoint,
)
from effai_fast.optim import SGD, AdamW, Optimizer

__all__ = ["Distiller", "model_macs", "predict_logits"]

_MODEL_METHODS = ("forward", "backward", "parameters", "gradients")
_CHECKPOINT_FORMAT = "effai_fast.distill.Distiller/1"


def _check_model(model, name: str, *, trainable: bool):
    needed = _MODEL_METHODS if trainable else ("forward",)
    missing = [m for m in needed if not callable(getattr(model, m, None))]
    if missing:
        raise TypeError(f"{name} must provide {', '.join(needed)}; "
                        f"{type(model).__name__} lacks {', '.join(missing)}")
    return model


def predict_logits(model, x, *, batch_size: int = 512) -> np.ndarray:
    """Logits of ``model`` in inference mode (``forward(x, training=False)``), by batches.

    Parameters
    ----------
    model : object with ``forward(x, training)``
    x : ndarray of shape (N, ...)
    batch_size : int, default=512

    Returns
    -------
    ndarray of shape (N, C)
    """
    _check_model(model, "model", trainable=False)
    batch_size = check_int(batch_size, "batch_size", min_value=1)
    x = np.asarray(x)
    if x.ndim < 1 or len(x) == 0:
        raise ValueError(f"x must hold at least one sample, got shape {x.shape}")
    parts = []
    for start in range(0, len(x), batch_size):
        out = np.asarray(model.forward(x[start:start + batch_size], training=False))
        parts.append(np.array(out, copy=True))   # a model may reuse its output buffer
    return np.concatenate(parts, axis=0)


def model_macs(model, sample_shape: tuple | None = None) -> int | None:
    """Multiply-accumulates of one forward pass of one sample, when the model reports them.

    Uses ``model.cost().macs`` (MobileNet models) or ``model.macs(sample_shape)``
    (:mod:`effai_fast.nn` layers); None when the model offers neither.
    """
    cost = getattr(model, "cost", None)
    if callable(cost):
        c = cost()
        macs = getattr(c, "macs", c)
        return int(macs) if macs is not None else None
    macs = getattr(model, "macs", None)
    if callable(macs) and sample_shape is not None:
        return int(macs(tuple(sample_shape)))
    return None


def _takes_need_input_grad(model) -> bool:
    try:
        return "need_input_grad" in inspect.signature(model.backward).parameters
    except (TypeError, ValueError):
        return False


class Distiller:
    """Train a student network from a teacher's softened outputs (Hinton et al. 2015).

    Each step minimises ``(1 - hard_weight) * T^2 * KL(p_T || p_S) +
    hard_weight * CE(student, y)`` on a mini-batch (see
    :func:`~effai_fast.distill.kd_loss`), with the teacher's logits cached once
    per training sample.

    Parameters
    ----------
    teacher : model or None
        Trained teacher (``forward(x, training=False)`` is all it needs).  None
        trains the student on hard labels alone (requires ``hard_weight=1``).
    student : model
        The network to train (see the module docstring for the interface).
    temperature : float, default=4.0
        Softmax temperature T > 0 of the soft term.
    hard_weight : float in [0, 1], default=0.1
        Weight of the hard-label cross-entropy; ``1 - hard_weight`` weights the
        soft term.  The default is the common "0.9 T^2 KL + 0.1 CE".
    scale_t2 : bool, default=True
        Multiply the soft term by T^2 (keeps its gradient scale as T changes).
    optimizer : {"adamw", "sgd"} or effai_fast.optim.Optimizer, default="adamw"
        A name builds the optimiser on the student's parameters and stored
        gradients with ``lr``, ``weight_decay`` (and ``momentum`` for SGD); an
        :class:`~effai_fast.optim.Optimizer` instance (built by you, e.g. with
        parameter groups that exclude depthwise filters from weight decay) is
        used as is - it must update the student's parameters.
    lr : float, default=1e-3
    weight_decay : float, default=0.0
    momentum : float, default=0.9
        SGD only.
    epochs : int, default=10
    batch_size : int, default=64
    lr_schedule : {"cosine", "constant"}, default="cosine"
        "cosine" anneals the learning rate from ``lr`` to 0 over all steps.
    augment : callable, optional
        ``augment(x_batch, rng) -> x_batch``, a stochastic augmentation.  Not
        allowed with ``cache_teacher_logits=True`` (the cached logits would
        belong to other inputs).
    cache_teacher_logits : bool, default=True
        Compute the teacher's logits once per sample before training.
    eval_batch_size : int, default=512
        Batch size of the teacher pass and of :meth:`predict_logits`.
    seed : None, int or numpy.random.Generator
        Batch order (and the ``rng`` given to ``augment``).
    n_threads : int, optional
        OpenMP threads of the loss kernel (the models use their own setting).
    verbose : bool, default=False
        Print one line per epoch.

    Attributes
    ----------
    teacher_logits_ : ndarray of shape (N, C) or None
        The cache (None for hard-label training or without caching).
    teacher_seconds_ : float
        Time spent computing the cache.
    optimizer_ : effai_fast.optim.Optimizer
    history_ : list of dict
        Per epoch: ``epoch``, ``loss`` (mean over steps), ``seconds``, ``lr``
        and, with validation data, ``val_accuracy``.
    n_steps_ : int

    Examples
    --------
    >>> distiller = Distiller(teacher, student, temperature=4.0, hard_weight=0.1,
    ...                       epochs=30, seed=0)                     # doctest: +SKIP
    >>> distiller.fit(x_train, y_train).score(x_test, y_test)        # doctest: +SKIP
    """

    def __init__(self, teacher, student, temperature: float = 4.0, hard_weight: float = 0.1,
                 *, scale_t2: bool = True, optimizer="adamw", lr: float = 1e-3,
                 weight_decay: float = 0.0, momentum: float = 0.9, epochs: int = 10,
                 batch_size: int = 64, lr_schedule: str = "cosine", augment=None,
                 cache_teacher_logits: bool = True, eval_batch_size: int = 512,
                 seed=None, n_threads: int | None = None, verbose: bool = False):
        self.teacher = teacher
        self.student = student
        self.temperature = temperature
        self.hard_weight = hard_weight
        self.scale_t2 = scale_t2
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr_schedule = lr_schedule
        self.augment = augment
        self.cache_teacher_logits = cache_teacher_logits
        self.eval_batch_size = eval_batch_size
        self.seed = seed
        self.n_threads = n_threads
        self.verbose = verbose

    # ---------------------------------------------------------------- checks
    def _validate(self):
        check_real(self.temperature, "temperature", min_value=0.0, min_inclusive=False)
        check_real(self.hard_weight, "hard_weight", min_value=0.0, max_value=1.0)
        _check_model(self.student, "student", trainable=True)
        if self.teacher is None:
            if self.hard_weight != 1.0:
                raise ValueError("teacher=None trains on hard labels only and needs "
                                 f"hard_weight=1.0, got {self.hard_weight}")
        else:
            _check_model(self.teacher, "teacher", trainable=False)
            if self.teacher is self.student:
                raise ValueError("teacher and student must be different models")
        check_int(self.epochs, "epochs", min_value=0)
        check_int(self.batch_size, "batch_size", min_value=1)
        check_int(self.eval_batch_size, "eval_batch_size", min_value=1)
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule must be 'cosine' or 'constant', got "
                             f"{self.lr_schedule!r}")
        if self.augment is not None:
            if not callable(self.augment):
                raise TypeError("augment must be a callable augment(x_batch, rng) or None")
            if self.cache_teacher_logits and self.teacher is not None:
                raise ValueError(
                    "augment= with cache_teacher_logits=True would distil the teacher's "
                    "outputs on un-augmented images into a student that sees augmented ones; "
                    "pass cache_teacher_logits=False (the teacher then runs on every batch)")

    def _make_optimizer(self) -> Optimizer:
        params = list(self.student.parameters())
        grads = list(self.student.gradients())
        if isinstance(self.optimizer, Optimizer):
            own = {id(p) for p in params}
            if not self.optimizer.params or any(id(p) not in own
                                                for p in self.optimizer.params):
                raise ValueError("optimizer must be built on the student's parameters")
            return self.optimizer
        if len(params) != len(grads):
            raise ValueError(f"student.parameters() has {len(params)} arrays but "
                             f"student.gradients() has {len(grads)}")
        group = [{"params": params, "grads": grads}]
        lr = check_real(self.lr, "lr", min_value=0.0)
        if self.optimizer == "adamw":
            return AdamW(group, lr=lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return SGD(group, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay)
        raise ValueError(f"optimizer must be 'adamw', 'sgd' or an effai_fast.optim.Optimizer, "
                         f"got {self.optimizer!r}")

    # -------------------------------------------------------------- training
    def fit(self, x, y, *, teacher_logits=None, validation_data=None, checkpoint=None,
            resume: bool = True, checkpoint_every: int | None = None) -> Distiller:
        """Train the student; return ``self``.

        Parameters
        ----------
        x : ndarray of shape (N, ...)
            Training inputs in the models' layout.
        y : array_like of int, shape (N,)
            Labels in ``[0, C)``.
        teacher_logits : ndarray of shape (N, C), optional
            Precomputed teacher logits for exactly these ``x`` (e.g. shared by
            several students); skips the teacher pass.
        validation_data : tuple (x_val, y_val), optional
            Evaluated after every epoch (``history_[i]["val_accuracy"]``).
        checkpoint : str or path-like, optional
            A ``.npz`` file written atomically (temporary file +
            :func:`os.replace`; arrays and a JSON string, no pickle) after
            every epoch and, with ``checkpoint_every``, every that many steps:
            the student's state (``state_dict()`` when the student has one -
            parameters and batch-norm statistics for :mod:`effai_fast.nn`
            models - else its ``parameters()``), the optimiser's state, the
            batch-order generator and any Dropout generators of the student,
            the epoch's batch order, the step count and ``history_``.
        resume : bool, default=True
            When ``checkpoint`` exists, restore that state and continue after
            its last step: a run killed and started again with the same
            settings ends with the same student, bit for bit, as an
            uninterrupted run.  (The teacher's logits are recomputed, not
            stored; ``augment`` must be the same function.)  A checkpoint of
            a finished run returns at once.  ``resume=False`` starts afresh
            and overwrites it.
        checkpoint_every : int, optional
            Also checkpoint every this many steps (default: epoch ends only).

        Raises
        ------
        ValueError
            Mismatched lengths, labels out of range, bad settings (see the
            class docstring), a student that diverged (the message names
            the epoch and step), or a checkpoint written for another run.
        """
        self._validate()
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(f"x must have shape (n_samples, ...) with n_samples >= 1, "
                             f"got {x.shape}")
        if x.dtype not in (np.float32, np.float64):
            raise TypeError(f"x must be float32 or float64 (the models' dtype), got {x.dtype}")
        if y.shape != (len(x),):
            raise ValueError(f"y must have shape ({len(x)},) to match x, got {y.shape}")
        if y.dtype.kind not in "iu":
            raise TypeError(f"y must hold integer class labels, got dtype {y.dtype}")
        if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a path (str or os.PathLike), got "
                            f"{type(checkpoint).__name__}")
        if checkpoint_every is not None:
            checkpoint_every = check_int(checkpoint_every, "checkpoint_every", min_value=1)
        rng = check_rng(self.seed)
        self.optimizer_ = self._make_optimizer()
        self.history_ = []
        self.n_steps_ = 0
        self.teacher_seconds_ = 0.0
        self.teacher_logits_ = None
        distil = self.teacher is not None
        if distil and teacher_logits is not None:
            tl = np.asarray(teacher_logits)
            if tl.ndim != 2 or len(tl) != len(x):
                raise ValueError(f"teacher_logits must have shape ({len(x)}, n_classes), got "
                                 f"{tl.shape}")
            if self.augment is not None:
                raise ValueError("teacher_logits= (a cache) cannot be combined with augment=")
            self.teacher_logits_ = tl
        elif distil and self.cache_teacher_logits:
            t0 = time.perf_counter()
            self.teacher_logits_ = predict_logits(self.teacher, x,
                                                  batch_size=self.eval_batch_size)
            self.teacher_seconds_ = time.perf_counter() - t0
        n_classes = None if self.teacher_logits_ is None else self.teacher_logits_.shape[1]
        if n_classes is not None and (y.min() < 0 or y.max() >= n_classes):
            raise ValueError(f"y must lie in [0, {n_classes}) (the teacher's classes)")

        n = len(x)
        steps_per_epoch = math.ceil(n / self.batch_size)
        total_steps = max(1, steps_per_epoch * self.epochs)
        base_lr = self.optimizer_.lr
        fingerprint = {"n_samples": int(n), "sample_shape": list(x.shape[1:]),
                       "labels_crc32": zlib.crc32(np.ascontiguousarray(y).tobytes()),
                       "batch_size": int(self.batch_size), "epochs": int(self.epochs),
                       "distil": distil, "temperature": float(self.temperature),
                       "hard_weight": float(self.hard_weight),
                       "lr_schedule": self.lr_schedule}
        meta = None
        if checkpoint is not None and resume and Path(checkpoint).exists():
            meta, saved_order = self._load_checkpoint(checkpoint, rng, fingerprint)
            base_lr = meta["base_lr"]
        grad_buf: dict[tuple, np.ndarray] = {}
        first_epoch = 0 if meta is None else meta["epoch"]
        for epoch in range(first_epoch, self.epochs):
            t0 = time.perf_counter()
            if meta is not None and meta["batch"] > 0 and epoch == first_epoch:
                order, k0 = saved_order, meta["batch"]      # resume inside this epoch
                losses = list(meta["losses"])
                t0 -= meta["seconds"]
            else:
                order = rng.permutation(n)
                k0, losses = 0, []
            for k in range(k0, steps_per_epoch):
                if self.lr_schedule == "cosine":
                    self.optimizer_.lr = 0.5 * base_lr * (
                        1.0 + math.cos(math.pi * self.n_steps_ / total_steps))
                idx = order[k * self.batch_size:(k + 1) * self.batch_size]
                xb = x[idx]
                if self.augment is not None:
                    xb = np.asarray(self.augment(xb, rng), dtype=x.dtype)
                if not distil:
                    tb = None
                elif self.teacher_logits_ is not None:
                    tb = self.teacher_logits_[idx]
                else:
                    tb = self.teacher.forward(xb, training=False)
                try:
                    loss = self.train_step(xb, y[idx], tb, _buffers=grad_buf)
                except ValueError as exc:
                    if "NaN or infinity" in str(exc) and "student" in str(exc):
                        raise ValueError(
                            f"training diverged at epoch {epoch + 1}, step {k + 1}: the "
                            f"student's logits became NaN/inf (lower lr?)") from exc
                    raise
                losses.append(loss)
                if (checkpoint is not None and checkpoint_every is not None
                        and self.n_steps_ % checkpoint_every == 0
                        and k + 1 < steps_per_epoch):
                    self._save_checkpoint(checkpoint, rng, fingerprint, base_lr, epoch=epoch,
                                          batch=k + 1, order=order, losses=losses,
                                          seconds=time.perf_counter() - t0)
            rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)),
                   "seconds": time.perf_counter() - t0, "lr": self.optimizer_.lr}
            if validation_data is not None:
                rec["val_accuracy"] = self.score(*validation_data)
            self.history_.append(rec)
            if self.verbose:
                extra = (f"  val acc {rec['val_accuracy']:.4f}"
                         if "val_accuracy" in rec else "")
                print(f"  epoch {epoch + 1:3d}/{self.epochs}  loss {rec['loss']:.4f}  "
                      f"{rec['seconds']:.2f} s{extra}", flush=True)
            if checkpoint is not None:
                self._save_checkpoint(checkpoint, rng, fingerprint, base_lr, epoch=epoch + 1,
                                      batch=0)
        if self.lr_schedule == "cosine":
            self.optimizer_.lr = base_lr
        return self

    # ----------------------------------------------------------- checkpoints
    def _student_state(self) -> dict[str, np.ndarray]:
        if callable(getattr(self.student, "state_dict", None)) and \
                callable(getattr(self.student, "load_state_dict", None)):
            return {f"student.{k}": np.asarray(v)
                    for k, v in self.student.state_dict().items()}
        return {f"param.{i}": np.array(p, copy=True)
                for i, p in enumerate(self.student.parameters())}

    def _save_checkpoint(self, path, rng, fingerprint, base_lr, *, epoch, batch, order=None,
                         losses=(), seconds=0.0):
        """``epoch`` complete epochs plus ``batch`` steps of the next one."""
        arrays = self._student_state()
        arrays.update({f"optim.{k}": v for k, v in self.optimizer_.state_dict().items()})
        if order is not None:
            arrays["order"] = np.asarray(order, dtype=np.int64)
        meta = {"format": _CHECKPOINT_FORMAT, "fingerprint": fingerprint, "epoch": epoch,
                "batch": batch, "n_steps": self.n_steps_, "base_lr": base_lr,
                "losses": [float(v) for v in losses], "seconds": seconds,
                "history": self.history_, "rng": get_rng_state(rng),
                "dropout_rngs": [get_rng_state(g) for g in dropout_generators(self.student)]}
        write_checkpoint(path, arrays, meta)

    def _load_checkpoint(self, path, rng, fingerprint):
        arrays, meta, gens = read_resumable(path, _CHECKPOINT_FORMAT, fingerprint,
                                            self.student, "student")
        own = self._student_state()
        if sorted(own) != sorted(k for k in arrays if k.startswith(("student.", "param."))):
            raise ValueError(f"checkpoint {path} holds another student's state")
        if any(k.startswith("student.") for k in own):
            self.student.load_state_dict({k[8:]: arrays[k] for k in own})
        else:
            for i, p in enumerate(self.student.parameters()):
                value = arrays[f"param.{i}"]
                if value.shape != p.shape:
                    raise ValueError(f"checkpoint {path}: parameter {i} has shape "
                                     f"{value.shape}, the student's has {p.shape}")
                p[...] = value
        self.optimizer_.load_state_dict({k[6:]: v for k, v in arrays.items()
                                         if k.startswith("optim.")})
        set_rng_state(rng, meta["rng"])
        for g, st in zip(gens, meta["dropout_rngs"]):
            set_rng_state(g, st)
        self.history_ = list(meta["history"])
        self.n_steps_ = int(meta["n_steps"])
        if self.verbose:
            print(f"  resuming from {path}: {meta['epoch']} epoch(s) and {meta['batch']} "
                  f"step(s) done", flush=True)
        return meta, arrays.get("order")

    def train_step(self, xb, yb, teacher_logits_b=None, *, _buffers=None) -> float:
        """One optimisation step on a batch; return its loss.

        ``teacher_logits_b`` are the teacher's logits of ``xb`` (None: hard
        labels only).  Used by :meth:`fit`; public so that a distillation step
        and a hard-label step can be timed on the same batch.
        """
        if not hasattr(self, "optimizer_"):
            self._validate()
            self.optimizer_ = self._make_optimizer()
            self.n_steps_ = 0
        logits = self.student.forward(xb, training=True)
        key = (logits.shape, logits.dtype.str)
        out = None
        if _buffers is not None:
            out = _buffers.get(key)
            if out is None:
                out = _buffers[key] = np.empty(logits.shape, logits.dtype)
        if teacher_logits_b is None:
            loss, grad = cross_entropy(logits, yb, out=out, n_threads=self.n_threads)
        else:
            loss, grad = kd_loss(logits, teacher_logits_b.astype(logits.dtype, copy=False),
                                 temperature=self.temperature, labels=yb,
                                 hard_weight=self.hard_weight, scale_t2=self.scale_t2,
                                 out=out, n_threads=self.n_threads)
        if getattr(self, "_skip_input_grad", None) is None:
            self._skip_input_grad = _takes_need_input_grad(self.student)
        if self._skip_input_grad:       # the student's input needs no gradient
            self.student.backward(grad, need_input_grad=False)
        else:
            self.student.backward(grad)
        self.optimizer_.step()
        self.n_steps_ += 1
        return loss

    # ------------------------------------------------------------ evaluation
    def predict_logits(self, x) -> np.ndarray:
        """The student's logits in inference mode."""
        return predict_logits(self.student, x, batch_size=self.eval_batch_size)

    def predict(self, x) -> np.ndarray:
        """The student's predicted classes."""
        return np.argmax(self.predict_logits(x), axis=1)

    def score(self, x, y) -> float:
        """The student's accuracy on ``(x, y)``."""
        y = np.asarray(y)
        return float(np.mean(self.predict(x) == y))
