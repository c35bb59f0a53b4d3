"""Temperature softmax and the knowledge-distillation loss (validated Python API).

The kernels live in :mod:`effai_fast.distill._kd` (design note there); this
module converts and checks the arguments, resolves the thread count once, and
turns the kernel's per-row results into the reduced loss.

Conventions, stated once because libraries disagree on them
------------------------------------------------------------
*Which weight is which.*  ``hard_weight`` multiplies the hard-label
cross-entropy, ``1 - hard_weight`` the soft (teacher) term::

    loss = (1 - hard_weight) * T**2 * KL(p_T || p_S) + hard_weight * CE(softmax(z_S), y)

with ``p = softmax(z / T)`` for both networks.  Hinton et al. (2015) and many
code bases call the soft weight "alpha"; others (e.g. some PyTorch tutorials)
call the hard weight "alpha".  We use neither name.  The issue's setup
"0.9 * T^2 * KL + 0.1 * CE" is ``hard_weight=0.1``.

*The T^2 factor* (Hinton, Vinyals & Dean 2015, "Distilling the knowledge in a
neural network", section 2).  The gradient of KL(p_T || p_S) with respect to a
student logit is ``(p_S - p_T) / T``, and for large T (logits centred) it is
about ``(z_S - z_T) / (C T^2)``: it shrinks like 1/T^2.  Multiplying the soft
term by T^2 keeps its gradient on the scale of the hard term's when T changes,
so ``hard_weight`` means the same at every temperature.  ``scale_t2=False``
drops the factor.

*Reduction.*  ``"batchmean"`` divides the summed per-sample KL by the batch
size B: this is the KL divergence averaged over samples, the quantity in the
paper.  PyTorch's ``F.kl_div(..., reduction="mean")`` divides by B*C (the
number of *elements*), which silently scales the soft term by 1/C - with 10
classes the teacher's signal is 10x weaker than intended; PyTorch warns about
it and recommends "batchmean".  We do not offer "mean": asking for it raises
ValueError.  ``"sum"`` sums over samples; ``"none"`` returns the per-sample
losses and, row by row, the gradient of each sample's own loss.

*Gradient.*  With ``scale_t2=True`` and ``"batchmean"`` the soft part of the
gradient with respect to the student logits is exactly
``(1 - hard_weight) * (T / B) * (p_S - p_T)``; the hard part is
``hard_weight / B * (softmax(z_S) - onehot(y))``.
"""

from __future__ import annotations

import importlib

import numpy as np

from effai_fast._threads import resolve_n_threads, threads_for_work
from effai_fast._validation import (
    as_float_array,
    check_out,
    check_real,
    result_float_dtype,
)
from effai_fast.distill import _kd as _kd_baseline


def _select_kernels():
    """The widest ISA build of the kernels that this CPU runs (bit-identical results)."""
    level = _kd_baseline._cpu_level()
    for lvl in (4, 3):
        if level >= lvl:
            try:
                return importlib.import_module(f"effai_fast.distill._kd_x86_64_v{lvl}")
            except ImportError:       # not built (other compiler / architecture)
                continue
    return _kd_baseline


_kd = _select_kernels()
_KD_LOSS = {np.dtype(np.float32): _kd._kd_loss_f32, np.dtype(np.float64): _kd._kd_loss_f64}
#: Name of the kernel build in use ("_kd", "_kd_x86_64_v3" or "_kd_x86_64_v4").
KERNEL_BUILD = _kd.__name__.rsplit(".", 1)[-1]

__all__ = ["cross_entropy", "kd_loss", "log_softmax", "softmax"]

# Elements per thread below which a second thread is not worth waking
# (about 50 microseconds of work on one core).
_GRAIN = 50_000

_REDUCTIONS = ("batchmean", "sum", "none")


def _rows(logits, name: str, dtype=None, allow_empty_batch: bool = True) -> np.ndarray:
    arr = as_float_array(logits, name, dtype=dtype, ndim=(1, 2), allow_empty=True)
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one class (last axis), got shape "
                         f"{arr.shape}")
    if arr.ndim == 2 and arr.shape[0] == 0 and not allow_empty_batch:
        raise ValueError(f"{name} is an empty batch (shape {arr.shape}); the loss of no "
                         f"samples is undefined")
    return arr


def _temperature(temperature) -> float:
    return check_real(temperature, "temperature", min_value=0.0, min_inclusive=False)


def _softmax_out(out, z: np.ndarray) -> np.ndarray:
    if out is None:
        return np.empty_like(z)
    out = check_out(out, "out", z.shape, z.dtype)
    if np.may_share_memory(out, z) and out.ctypes.data != z.ctypes.data:
        raise ValueError("out must be the logits array itself or not overlap it")
    return out


def softmax(logits, temperature: float = 1.0, *, out: np.ndarray | None = None,
            n_threads: int | None = None) -> np.ndarray:
    """Softmax of ``logits / temperature`` along the last axis.

    Parameters
    ----------
    logits : array_like of shape (C,) or (B, C)
        Scores; float32 stays float32, everything else computes in float64.
    temperature : float, default=1.0
        T > 0.  Larger T gives softer probabilities.
    out : ndarray, optional
        C-contiguous buffer of the result's shape and dtype; may be the
        (already float32/float64, C-contiguous) ``logits`` array itself.
    n_threads : int, optional
        OpenMP threads over the rows (see :mod:`effai_fast._threads`).

    Returns
    -------
    ndarray
        Probabilities; each row sums to 1 (to rounding).

    Raises
    ------
    ValueError
        If ``temperature <= 0`` or there are no classes.

    Notes
    -----
    Computed as ``exp((z - max z) / T) / sum(...)``, so logits of any finite
    size are safe.  Non-finite logits are not checked: a NaN, or an infinity,
    in a row makes that row NaN (as in ``scipy.special.softmax``).

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.distill import softmax
    >>> p = softmax(np.array([1000.0, 0.0, -1000.0], dtype=np.float32), temperature=500)
    >>> p.dtype, np.round(p, 4)
    (dtype('float32'), array([0.8668, 0.1173, 0.0159], dtype=float32))
    """
    inv_t = 1.0 / _temperature(temperature)
    z = _rows(logits, "logits")
    res = _softmax_out(out, z)
    z2, r2 = z.reshape(-1, z.shape[-1]), res.reshape(-1, z.shape[-1])
    n = threads_for_work(resolve_n_threads(n_threads), z.size, _GRAIN)
    _kd._softmax(z2, inv_t, r2, n)
    return res


def log_softmax(logits, temperature: float = 1.0, *, out: np.ndarray | None = None,
                n_threads: int | None = None) -> np.ndarray:
    """Log-softmax of ``logits / temperature`` along the last axis.

    Parameters
    ----------
    logits : array_like of shape (C,) or (B, C)
        Scores; float32 stays float32, everything else computes in float64.
    temperature : float, default=1.0
        T > 0.
    out : ndarray, optional
        Output buffer (may be ``logits`` itself, see :func:`softmax`).
    n_threads : int, optional
        OpenMP threads over the rows.

    Returns
    -------
    ndarray
        ``(z - max z) / T - log(sum(exp((z - max z) / T)))``: finite for any
        finite logits (no ``log(0)``), NaN rows for non-finite ones.

    Raises
    ------
    ValueError
        If ``temperature <= 0`` or there are no classes.

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.distill import log_softmax
    >>> log_softmax(np.array([[0.0, 0.0]]))
    array([[-0.69314718, -0.69314718]])
    """
    inv_t = 1.0 / _temperature(temperature)
    z = _rows(logits, "logits")
    res = _softmax_out(out, z)
    z2, r2 = z.reshape(-1, z.shape[-1]), res.reshape(-1, z.shape[-1])
    n = threads_for_work(resolve_n_threads(n_threads), z.size, _GRAIN)
    _kd._log_softmax(z2, inv_t, r2, n)
    return res


def _labels(labels, n_samples: int, n_classes: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu" or arr.dtype == np.bool_:
        raise TypeError(f"labels must be an array of integer class indices, got dtype "
                        f"{arr.dtype}")
    if arr.shape != (n_samples,):
        raise ValueError(f"labels must have shape ({n_samples},) to match "
                         f"student_logits, got {arr.shape}")
    if n_samples and (arr.min() < 0 or arr.max() >= n_classes):
        bad = int(arr[(arr < 0) | (arr >= n_classes)][0])
        raise ValueError(f"labels must lie in [0, {n_classes}) (the number of classes), "
                         f"found {bad}")
    return np.ascontiguousarray(arr, dtype=np.int64)


_NO_LABELS = np.empty(0, dtype=np.int64)


def kd_loss(student_logits, teacher_logits, *, temperature: float, labels=None,
            hard_weight: float = 0.0, scale_t2: bool = True, reduction: str = "batchmean",
            out: np.ndarray | None = None, n_threads: int | None = None):
    """Knowledge-distillation loss and its gradient in one fused pass.

    ``loss = (1 - hard_weight) * s * KL(p_T || p_S) + hard_weight * CE(softmax(z_S), y)``,
    per sample, with ``p_X = softmax(z_X / T)``, ``s = T**2`` (or 1 when
    ``scale_t2=False``), then reduced over the batch.

    Parameters
    ----------
    student_logits : array_like of shape (B, C)
        The student's logits z_S (the variable of the gradient).
    teacher_logits : array_like of shape (B, C)
        The teacher's logits z_T (constants; e.g. cached once per sample).
    temperature : float
        T > 0, applied to both networks in the soft term (not in the CE term).
    labels : array_like of int, shape (B,), optional
        Hard labels in ``[0, C)``; required when ``hard_weight > 0``.
    hard_weight : float in [0, 1], default=0.0
        Weight of the hard-label cross-entropy; the soft term gets
        ``1 - hard_weight``.  "0.9 T^2 KL + 0.1 CE" is ``hard_weight=0.1``.
    scale_t2 : bool, default=True
        Multiply the soft term by T^2 (Hinton et al. 2015, section 2) so that
        its gradient keeps its size as T changes.
    reduction : {"batchmean", "sum", "none"}, default="batchmean"
        "batchmean" divides the sum over samples by B (the true mean KL);
        "sum" does not divide; "none" returns the B per-sample losses, and
        row i of the gradient is then the gradient of sample i's loss.
        PyTorch's "mean" (a division by B*C) is refused on purpose.
    out : ndarray of shape (B, C), optional
        Buffer for the gradient (dtype of the computation, C-contiguous, not
        overlapping the inputs).
    n_threads : int, optional
        OpenMP threads over the batch.  The result does not depend on it.

    Returns
    -------
    loss : float, or ndarray of shape (B,) for ``reduction="none"``
        Never negative; exactly 0 for identical student and teacher logits
        when ``hard_weight == 0``.
    grad : ndarray of shape (B, C)
        d loss / d student_logits:
        ``(1 - hard_weight) * (s / T) * (p_S - p_T) / B
        + hard_weight * (softmax(z_S) - onehot(y)) / B`` for "batchmean"
        (no ``/ B`` for "sum" and "none").  With ``scale_t2`` and
        "batchmean" the soft part is ``(T / B) (p_S - p_T)``.

    Raises
    ------
    ValueError
        ``temperature <= 0``; shapes of the two logits differ; an empty
        batch or no classes; ``labels`` out of range, of the wrong length or
        missing when ``hard_weight > 0``; ``hard_weight`` outside [0, 1];
        an unknown ``reduction`` (including "mean"); a NaN or infinity in
        either logits array (found inside the fused pass at no extra cost;
        ``out`` then holds garbage).  With ``hard_weight=1`` the teacher
        term vanishes and ``teacher_logits`` is neither read nor checked.
    TypeError
        Non-numeric logits, non-integer labels.

    Notes
    -----
    The computation runs in the inputs' precision (float32 when both are
    float32, else float64) with all sums in double, and the loss is reduced
    over samples in a fixed order: results are bit-identical at any thread
    count.  Logits of +-1000 in float32 are fine.  Inputs are float32/64;
    ``student_logits`` and ``teacher_logits`` of mixed precision compute in
    float64.

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.distill import kd_loss
    >>> zs = np.array([[2.0, 0.5, -1.0]]); zt = np.array([[3.0, 0.0, -2.0]])
    >>> loss, grad = kd_loss(zs, zt, temperature=4.0)
    >>> round(loss, 6), bool(abs(grad.sum()) < 1e-15)   # a gradient row sums to 0
    (0.369921, True)
    """
    inv_t = 1.0 / _temperature(temperature)
    t = 1.0 / inv_t
    hard_weight = check_real(hard_weight, "hard_weight", min_value=0.0, max_value=1.0)
    if not isinstance(scale_t2, (bool, np.bool_)):
        raise TypeError(f"scale_t2 must be a bool, got {type(scale_t2).__name__}")
    if reduction == "mean":
        raise ValueError(
            'reduction="mean" is not offered: in PyTorch it divides the KL by B*C (batch '
            'size times number of classes), shrinking the soft term by 1/C; use '
            '"batchmean" (the mean KL per sample), "sum" or "none"')
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    dt = result_float_dtype(student_logits, teacher_logits)
    zs = _rows(student_logits, "student_logits", dt, allow_empty_batch=False)
    zt = _rows(teacher_logits, "teacher_logits", dt, allow_empty_batch=False)
    if zs.ndim != 2:
        raise ValueError(f"student_logits must have shape (n_samples, n_classes), got "
                         f"{zs.shape}")
    if zt.shape != zs.shape:
        raise ValueError(f"teacher_logits must have the shape of student_logits "
                         f"{zs.shape}, got {zt.shape}")
    n_samples, n_classes = zs.shape
    if hard_weight > 0.0 and labels is None:
        raise ValueError("labels are required when hard_weight > 0")
    y = _NO_LABELS
    if labels is not None:
        y = _labels(labels, n_samples, n_classes)
        if hard_weight == 0.0:
            y = _NO_LABELS
    if out is None:
        grad = np.empty_like(zs)
    else:
        grad = check_out(out, "out", zs.shape, zs.dtype, student_logits, teacher_logits,
                         zs, zt)
    n = threads_for_work(resolve_n_threads(n_threads), zs.size, _GRAIN)

    soft = (1.0 - hard_weight) * (t * t if scale_t2 else 1.0)
    r = 1.0 / n_samples if reduction == "batchmean" else 1.0
    row_loss = np.empty(n_samples, dtype=np.float64)
    _KD_LOSS[zs.dtype](zs, zt, y, inv_t, soft, soft * inv_t * r, hard_weight,
                       hard_weight * r, grad, row_loss, n)
    total = _kd._sum_ordered(row_loss)
    if not np.isfinite(total):
        _raise_non_finite(zs, zt, row_loss)
    if reduction == "none":
        return row_loss, grad
    return total * r, grad


def cross_entropy(logits, labels, *, reduction: str = "batchmean",
                  out: np.ndarray | None = None, n_threads: int | None = None):
    """Softmax cross-entropy with integer labels and its gradient, in one pass.

    The hard-label loss of :func:`kd_loss` on its own (``hard_weight=1``,
    without a teacher): the baseline that distillation is compared with.

    Parameters
    ----------
    logits : array_like of shape (B, C)
    labels : array_like of int, shape (B,)
        Class indices in ``[0, C)``.
    reduction : {"batchmean", "sum", "none"}, default="batchmean"
        "batchmean" is the mean over samples (PyTorch's ``cross_entropy``
        default ``"mean"``; here the word is the same as in :func:`kd_loss`).
    out : ndarray of shape (B, C), optional
        Buffer for the gradient.
    n_threads : int, optional
        OpenMP threads over the batch.

    Returns
    -------
    loss : float, or ndarray of shape (B,) for ``reduction="none"``
        ``-log softmax(logits)[y]``, reduced.
    grad : ndarray of shape (B, C)
        ``(softmax(logits) - onehot(y)) / B`` for "batchmean".

    Raises
    ------
    ValueError
        Empty batch, labels out of range or of the wrong length, unknown
        reduction, non-finite logits.

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.distill import cross_entropy
    >>> loss, grad = cross_entropy(np.zeros((2, 4)), [0, 3])
    >>> round(loss, 6)                     # log(4)
    1.386294
    """
    if reduction == "mean":
        reduction = "batchmean"
    if not isinstance(reduction, str) or reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    z = _rows(logits, "logits", allow_empty_batch=False)
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (n_samples, n_classes), got {z.shape}")
    n_samples, n_classes = z.shape
    if labels is None:
        raise TypeError("labels must be an array of integer class indices, got None")
    y = _labels(labels, n_samples, n_classes)
    grad = np.empty_like(z) if out is None else check_out(out, "out", z.shape, z.dtype,
                                                          logits, z)
    n = threads_for_work(resolve_n_threads(n_threads), z.size, _GRAIN)
    r = 1.0 / n_samples if reduction == "batchmean" else 1.0
    row_loss = np.empty(n_samples, dtype=np.float64)
    _KD_LOSS[z.dtype](z, z, y, 1.0, 0.0, 0.0, 1.0, r, grad, row_loss, n)
    total = _kd._sum_ordered(row_loss)
    if not np.isfinite(total):
        row = int(np.flatnonzero(~np.isfinite(row_loss))[0])
        raise ValueError(f"logits contains NaN or infinity (first in row {row})")
    if reduction == "none":
        return row_loss, grad
    return total * r, grad


def _raise_non_finite(zs: np.ndarray, zt: np.ndarray, row_loss: np.ndarray):
    row = int(np.flatnonzero(~np.isfinite(row_loss))[0])
    for name, z in (("student_logits", zs), ("teacher_logits", zt)):
        if not np.isfinite(z[row]).all():
            raise ValueError(f"{name} contains NaN or infinity (first in row {row}); "
                             f"kd_loss needs finite logits")
    raise FloatingPointError(  # pragma: no cover - only for logits near the float maximum
        f"kd_loss overflowed in row {row}: logits of magnitude near the float maximum; "
        f"compute in float64 or rescale them")
