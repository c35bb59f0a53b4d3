"""Stateless convolution functions for NHWC tensors (forward and VJPs).

Every function validates its arguments here, in Python, then calls a compiled
kernel of :mod:`effai_fast.nn._conv` that releases the GIL and runs on OpenMP
threads.  Layouts follow TensorFlow's NHWC / HWIO conventions:

=====================  ==========================
activations ``x``      ``(N, H, W, C)``
depthwise filter       ``(KH, KW, C)``
pointwise filter       ``(C_in, C_out)``
dense filter           ``(KH, KW, C_in, C_out)``
=====================  ==========================

Padding is ``"same"`` (TensorFlow semantics: output size ``ceil(H / stride)``,
the odd pixel of padding goes to the bottom/right), ``"valid"``, an int, a
``(pad_h, pad_w)`` pair or a ``(top, bottom, left, right)`` tuple.  The
activation (``None``, ``"relu"`` or ``"relu6"``) is fused into the store; NaN
propagates through it.  Results do not depend on ``n_threads``.

Large outputs should be passed in through ``out=``: a fresh 50 MB array costs
more to page in than the convolution takes to fill it.
"""

from __future__ import annotations

import functools
import numbers
import os

import numpy as np

from effai_fast._isa import select_build
from effai_fast._threads import resolve_n_threads, threads_for_work
from effai_fast._validation import as_float_array, check_out, result_float_dtype
from effai_fast.nn import _conv as _conv_baseline

__all__ = [
    "conv2d",
    "conv2d_vjp",
    "conv_output_shape",
    "depthwise_conv2d",
    "depthwise_conv2d_vjp",
    "depthwise_separable_conv2d",
    "pointwise_conv2d",
    "pointwise_conv2d_vjp",
]

_INT_MAX = 2**31 - 1


# read-only 0-length arrays standing for "no bias" / "no buffer"
_EMPTY = {np.dtype(t): np.empty(0, dtype=t) for t in (np.float32, np.float64)}
_EMPTY4 = {d: e.reshape(0, 0, 0, 0) for d, e in _EMPTY.items()}
for _e in (*_EMPTY.values(), *_EMPTY4.values()):
    _e.flags.writeable = False

_ACTIVATIONS = {None: 0, "none": 0, "linear": 0, "relu": 1, "relu6": 2}

_ISA_MODULES = {"baseline": "_conv", "avx2": "_conv_avx2", "avx512": "_conv_avx512"}


def _select_kernels(isa: str | None = None):
    """The compiled kernel module for the widest vector ISA this CPU runs.

    The wheel carries the same Cython source compiled three times (baseline
    x86-64, AVX2+FMA, AVX-512); ``EFFAI_CONV_ISA=baseline|avx2|avx512``
    overrides the choice (for tests and benchmarks).
    """
    return select_build("effai_fast.nn", _ISA_MODULES, _conv_baseline, _conv_baseline._cpu_level(),
                        "EFFAI_CONV_ISA", isa)


KERNEL_ISA, _conv = _select_kernels()


class _SerialBLAS:
    """Hold scipy's OpenBLAS at one thread while our OpenMP team calls it.

    The pointwise and dense kernels split the pixels over OpenMP threads and
    call ``scipy.linalg.cython_blas`` GEMMs on small blocks from each of them;
    a BLAS that starts its own threads per block oversubscribes the cores and
    was measured 9-20x slower here (BUILD-NOTES pitfall 8).  OpenBLAS has no
    per-call thread count, so this context manager sets the process-wide one
    of the OpenBLAS that SciPy bundles (not numpy's, a separate library) to 1
    while any of our calls runs, and restores it when the last one leaves.  A
    SciPy linked to another BLAS is left alone (set ``OPENBLAS_NUM_THREADS=1``
    or use threadpoolctl there).
    """

    def __init__(self):
        import threading

        self._lock = threading.Lock()
        self._users = 0
        self._saved = None
        self._get = self._set = None
        try:
            import ctypes
            import glob

            import scipy

            root = os.path.dirname(scipy.__file__)
            libs = glob.glob(os.path.join(root, os.pardir, "scipy.libs", "*openblas*"))
            libs += glob.glob(os.path.join(root, ".dylibs", "*openblas*"))
            for path in libs:
                lib = ctypes.CDLL(path)
                for prefix in ("scipy_openblas", "openblas"):
                    get = getattr(lib, f"{prefix}_get_num_threads", None)
                    set_ = getattr(lib, f"{prefix}_set_num_threads", None)
                    if get is not None and set_ is not None:
                        get.restype = ctypes.c_int
                        set_.argtypes = [ctypes.c_int]
                        self._get, self._set = get, set_
                        return
        except Exception:  # pragma: no cover - exotic SciPy builds
            self._get = self._set = None

    def __enter__(self):
        if self._set is not None:
            with self._lock:
                if self._users == 0:
                    self._saved = self._get()
                    if self._saved != 1:
                        self._set(1)
                self._users += 1
        return self

    def __exit__(self, *exc):
        if self._set is not None:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._saved not in (None, 1):
                    self._set(self._saved)
        return False


_serial_blas = _SerialBLAS()

# Thread threshold.  A call gets one thread per ``_GRAIN_MACS`` multiply-adds
# of *GEMM-equivalent* work (capped at the requested count): below that, waking
# a second libgomp thread (5-30 us on an idle machine, far more when the cores
# are shared and the worker has to be scheduled) costs more than it saves.
# Depthwise work is memory-bound and runs at a fraction of the GEMM's
# multiply-add rate, so each of its multiply-adds weighs ``_DW_WEIGHT`` GEMM
# ones.  Measured on a 2-core AVX2 EPYC (bench/bench_conv.py, per layer at 1
# and 2 threads): 2 threads pay off from ~200 us of single-thread work,
# which is ~2M GEMM multiply-adds or ~1M depthwise ones.
_GRAIN_MACS = 2_000_000
_DW_WEIGHT = 2


# ---------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------

def _activation(activation, name: str = "activation") -> int:
    if activation is not None and not isinstance(activation, str):
        raise TypeError(f"{name} must be None, 'relu' or 'relu6', got {activation!r}")
    key = activation.lower() if isinstance(activation, str) else None
    if key not in _ACTIVATIONS:
        raise ValueError(f"{name} must be None, 'relu' or 'relu6', got {activation!r}")
    return _ACTIVATIONS[key]


def _pair(value, name: str, min_value: int) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = tuple(value)
    else:
        pair = (value, value)
    out = []
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
        if v < min_value:
            raise ValueError(f"{name} must be >= {min_value}, got {value!r}")
        if v > _INT_MAX:  # the kernels take C ints
            raise ValueError(f"{name} must be <= {_INT_MAX}, got {value!r}")
        out.append(int(v))
    return out[0], out[1]


def _padding(padding, H, W, KH, KW, sh, sw, dh, dw):
    """Return (top, bottom, left, right) for a padding specification."""
    ekh = (KH - 1) * dh + 1
    ekw = (KW - 1) * dw + 1
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return 0, 0, 0, 0
        if mode == "same":
            oh = -(-H // sh)
            ow = -(-W // sw)
            th = max((oh - 1) * sh + ekh - H, 0)
            tw = max((ow - 1) * sw + ekw - W, 0)
            return th // 2, th - th // 2, tw // 2, tw - tw // 2
        raise ValueError(
            f"padding must be 'same', 'valid', an int or a tuple, got {padding!r}")
    if isinstance(padding, (tuple, list)):
        vals = tuple(padding)
        if len(vals) == 2:
            vals = (vals[0], vals[0], vals[1], vals[1])
        if len(vals) != 4:
            raise ValueError(
                "padding must be an int, a (pad_h, pad_w) pair or a "
                f"(top, bottom, left, right) tuple, got {padding!r}")
    else:
        vals = (padding,) * 4
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(
                f"padding must be 'same', 'valid', an int or a tuple of ints, got {padding!r}")
        if v < 0:
            raise ValueError(f"padding must be non-negative, got {padding!r}")
        if v > _INT_MAX:  # the kernels take C ints
            raise ValueError(f"padding must be <= {_INT_MAX}, got {padding!r}")
    return tuple(int(v) for v in vals)


def _geometry(x_shape, KH, KW, stride, padding, dilation, kernel_name="weight"):
    """Resolve stride/dilation/padding; return (sh, sw, dh, dw, pads, OH, OW)."""
    sh, sw = _pair(stride, "stride", 1)
    dh, dw = _pair(dilation, "dilation", 1)
    H, W = x_shape[1], x_shape[2]
    pads = _padding(padding, H, W, KH, KW, sh, sw, dh, dw)
    ekh = (KH - 1) * dh + 1
    ekw = (KW - 1) * dw + 1
    hp = H + pads[0] + pads[1]
    wp = W + pads[2] + pads[3]
    if ekh > hp or ekw > wp:
        raise ValueError(
            f"{kernel_name} spans {ekh}x{ekw} pixels (kernel {KH}x{KW}, dilation {dh}x{dw}), "
            f"larger than the padded input {hp}x{wp}")
    OH = (hp - ekh) // sh + 1
    OW = (wp - ekw) // sw + 1
    return sh, sw, dh, dw, pads, OH, OW


def conv_output_shape(input_shape, kernel_size, *, stride=1, padding="same", dilation=1):
    """Output ``(N, OH, OW)`` of a convolution of an NHWC input (without channels).

    Parameters
    ----------
    input_shape : tuple of int
        ``(N, H, W)`` or ``(N, H, W, C)``.
    kernel_size : int or (int, int)
    stride, padding, dilation
        As in :func:`depthwise_conv2d`.

    Returns
    -------
    tuple of int
        ``(N, OH, OW)``.
    """
    kh, kw = _pair(kernel_size, "kernel_size", 1)
    _, _, _, _, _, oh, ow = _geometry(tuple(input_shape), kh, kw, stride, padding, dilation)
    return (int(input_shape[0]), oh, ow)


def _as_x(x, dtype, name="x"):
    arr = as_float_array(x, name, dtype=dtype, ndim=4, allow_empty=True)
    if arr.shape[1] == 0 or arr.shape[2] == 0 or arr.shape[3] == 0:
        raise ValueError(f"{name} must have non-zero height, width and channels, "
                         f"got shape {arr.shape}")
    return arr


def _dtype_of(**arrays):
    for name, a in arrays.items():
        if a is not None:
            k = np.asarray(a).dtype.kind
            if k == "c":
                raise TypeError(f"{name}: complex input is not supported, got dtype "
                                f"{np.asarray(a).dtype}")
    return result_float_dtype(*arrays.values())


def _bias(bias, C, dtype, name="bias"):
    if bias is None:
        return np.empty(0, dtype=dtype)
    return as_float_array(bias, name, dtype=dtype, shape=(C,))


def _empty(dtype, ndim):
    return np.empty((0,) * ndim, dtype=dtype)


def _output(out, name, shape, dtype, *inputs):
    if out is None:
        return np.empty(shape, dtype=dtype)
    return check_out(out, name, shape, dtype, *inputs)


def _grad_outs(out, shapes, dtype, inputs):
    """Validate the ``out=(grad_x, grad_weight, grad_bias)`` tuple of a VJP."""
    if out is None:
        out = (None,) * len(shapes)
    if not isinstance(out, (tuple, list)) or len(out) != len(shapes):
        raise TypeError(f"out must be None or a tuple of {len(shapes)} arrays/None, "
                        f"got {type(out).__name__}")
    names = ("out[0] (grad_x)", "out[1] (grad_weight)", "out[2] (grad_bias)")
    res = []
    for i, (buf, shape) in enumerate(zip(out, shapes)):
        if shape is None:
            res.append(None)
        elif buf is None:
            res.append(np.empty(shape, dtype=dtype))
        else:
            res.append(check_out(buf, names[i], shape, dtype, *inputs))
    for i in range(len(res)):
        for j in range(i):
            if res[i] is not None and res[j] is not None and np.may_share_memory(res[i], res[j]):
                raise ValueError(f"{names[i]} must not share memory with {names[j]}")
    return res


def _threads(n_threads, macs):
    return threads_for_work(resolve_n_threads(n_threads), macs, _GRAIN_MACS)


def _dw_threads(n_threads, macs):
    """Thread count for a depthwise call of ``macs`` multiply-adds."""
    return threads_for_work(resolve_n_threads(n_threads), macs * _DW_WEIGHT, _GRAIN_MACS)


# --- fast argument path -----------------------------------------------------
# A depthwise layer at 7x7 or 14x14 runs in ~50-150 us, so the ~30 us that the
# general validation (array conversion, dtype resolution, padding parsing,
# three overlap checks) costs per call would eat a third of it.  When every
# argument already is what the kernel needs (ndarrays of one float dtype,
# C-contiguous and aligned; stride/padding/dilation plain ints, strings or
# tuples of ints), the checks below are the same checks done directly, and the
# geometry comes from a cache keyed on the shapes; anything else takes the
# general path, which gives the error messages.

_FAST_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _plain(v) -> bool:
    t = type(v)
    if t is int or t is str:
        return True
    return t is tuple and all(type(e) is int for e in v)


def _ready(a, dtype, ndim) -> bool:
    """``a`` is an aligned C-contiguous ndarray of ``dtype`` and ``ndim``."""
    if type(a) is not np.ndarray or a.dtype != dtype or a.ndim != ndim:
        return False
    f = a.flags
    return f.c_contiguous and f.aligned


@functools.lru_cache(maxsize=512)
def _geometry_cached(x_shape, KH, KW, stride, padding, dilation):
    return _geometry(x_shape, KH, KW, stride, padding, dilation)


def _ready_out(out, shape, dtype, inputs) -> bool:
    if not _ready(out, dtype, len(shape)) or out.shape != shape or not out.flags.writeable:
        return False
    for a in inputs:
        if a is not None and np.may_share_memory(out, a):
            return False
    return True


def _check_grad_out(grad_out, dtype, shape):
    return as_float_array(grad_out, "grad_out", dtype=dtype, shape=shape, allow_empty=True)


def _check_output(output, act, dtype, shape):
    if act == 0:
        return _empty(dtype, len(shape))
    if output is None:
        raise ValueError("output (the forward result) is required to differentiate "
                         "through a fused activation")
    return as_float_array(output, "output", dtype=dtype, shape=shape, allow_empty=True)


# ---------------------------------------------------------------------------
# depthwise
# ---------------------------------------------------------------------------

def depthwise_conv2d(x, weight, bias=None, *, stride=1, padding="same", dilation=1,
                     activation=None, n_threads=None, out=None) -> np.ndarray:
    """Depthwise 2-D convolution of an NHWC tensor (one filter per channel).

    Parameters
    ----------
    x : array_like, shape (N, H, W, C)
        Input.  Integers are cast to float64; float32 stays float32.
    weight : array_like, shape (KH, KW, C)
        One KHxKW filter per channel.
    bias : array_like, shape (C,), optional
    stride : int or (int, int), default=1
    padding : {"same", "valid"} or int or tuple, default="same"
        "same" follows TensorFlow: output ``ceil(H / stride)``, extra padding at
        the bottom/right.  An int pads all sides; ``(pad_h, pad_w)`` or
        ``(top, bottom, left, right)`` give explicit paddings.
    dilation : int or (int, int), default=1
    activation : {None, "relu", "relu6"}, default=None
        Applied in the same pass as the store.
    n_threads : int, optional
        OpenMP threads (see :func:`effai_fast.resolve_n_threads`); small
        problems run on one thread whatever is asked.
    out : ndarray, shape (N, OH, OW, C), optional
        Output buffer (C-contiguous, the result dtype).

    Returns
    -------
    ndarray, shape (N, OH, OW, C)

    Raises
    ------
    TypeError
        For complex or non-numeric input, a wrong ``out`` dtype.
    ValueError
        For wrong shapes, a channel mismatch, stride or dilation < 1, a kernel
        larger than the padded input.

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.nn.functional import depthwise_conv2d
    >>> x = np.ones((1, 5, 5, 2), dtype=np.float32)
    >>> w = np.ones((3, 3, 2), dtype=np.float32)
    >>> depthwise_conv2d(x, w, stride=2)[0, :, :, 0]
    array([[4., 6., 4.],
           [6., 9., 6.],
           [4., 6., 4.]], dtype=float32)
    """
    res = _depthwise_fast(x, weight, bias, stride, padding, dilation, activation,
                          n_threads, out)
    if res is not None:
        return res
    dtype = _dtype_of(x=x, weight=weight, bias=bias)
    x = _as_x(x, dtype)
    C = x.shape[3]
    weight = as_float_array(weight, "weight", dtype=dtype, ndim=3)
    if weight.shape[2] != C:
        raise ValueError(f"weight has {weight.shape[2]} channels but x has {C} "
                         f"(weight shape {weight.shape}, x shape {x.shape})")
    KH, KW = weight.shape[:2]
    b = _bias(bias, C, dtype)
    act = _activation(activation)
    sh, sw, dh, dw, pads, OH, OW = _geometry(x.shape, KH, KW, stride, padding, dilation)
    shape = (x.shape[0], OH, OW, C)
    res = _output(out, "out", shape, dtype, x, weight, b)
    nt = _dw_threads(n_threads, x.shape[0] * OH * OW * C * KH * KW)
    _conv._depthwise_forward(x, weight, b, res, sh, sw, dh, dw, pads[0], pads[2], act, nt)
    return res


def _depthwise_ready(x, weight, stride, padding, dilation, activation):
    """The checks both depthwise fast paths share: ``(dtype, act, geometry)`` or None.

    ``geometry`` is ``(N, C, KH, KW, sh, sw, dh, dw, pads, OH, OW)``.
    """
    if not (_plain(stride) and _plain(padding) and _plain(dilation)):
        return None
    if activation is not None and type(activation) is not str:
        return None
    dtype = getattr(x, "dtype", None)
    if dtype not in _FAST_DTYPES or not _ready(x, dtype, 4) or not _ready(weight, dtype, 3):
        return None
    N, H, W, C = x.shape
    if H == 0 or W == 0 or C == 0 or weight.shape[2] != C:
        return None
    act = _ACTIVATIONS.get(activation if activation is None else activation.lower())
    if act is None:
        return None
    KH, KW = weight.shape[0], weight.shape[1]
    sh, sw, dh, dw, pads, OH, OW = _geometry_cached(x.shape, KH, KW, stride, padding,
                                                    dilation)
    return dtype, act, (N, C, KH, KW, sh, sw, dh, dw, pads, OH, OW)


def _depthwise_fast(x, weight, bias, stride, padding, dilation, activation, n_threads, out):
    """:func:`depthwise_conv2d` for ready arguments, or None (take the general path)."""
    ready = _depthwise_ready(x, weight, stride, padding, dilation, activation)
    if ready is None:
        return None
    dtype, act, (N, C, KH, KW, sh, sw, dh, dw, pads, OH, OW) = ready
    if bias is None:
        b = _EMPTY[dtype]
    elif not _ready(bias, dtype, 1) or bias.shape[0] != C:
        return None
    else:
        b = bias
    shape = (N, OH, OW, C)
    if out is None:
        out = np.empty(shape, dtype=dtype)
    elif not _ready_out(out, shape, dtype, (x, weight, bias)):
        return None
    nt = _dw_threads(n_threads, N * OH * OW * C * KH * KW)
    _conv._depthwise_forward(x, weight, b, out, sh, sw, dh, dw, pads[0], pads[2], act, nt)
    return out


def depthwise_conv2d_vjp(x, weight, grad_out, *, stride=1, padding="same", dilation=1,
                         activation=None, output=None, need_input_grad=True,
                         n_threads=None, out=None):
    """Vector-Jacobian product of :func:`depthwise_conv2d`.

    Parameters
    ----------
    x, weight : array_like
        The forward inputs, shapes ``(N, H, W, C)`` and ``(KH, KW, C)``.
    grad_out : array_like, shape (N, OH, OW, C)
        Gradient of the loss with respect to the forward output.
    stride, padding, dilation, activation
        As in the forward call.
    output : array_like, shape (N, OH, OW, C), optional
        The forward output; required when ``activation`` is set (its sign and
        the relu6 clip give the activation's derivative).
    need_input_grad : bool, default=True
        False skips ``grad_x`` (returned as None), e.g. for a network's input.
    n_threads : int, optional
    out : tuple (grad_x, grad_weight, grad_bias) of ndarray or None, optional
        Buffers for the results; None entries are allocated.

    Returns
    -------
    grad_x : ndarray, shape (N, H, W, C), or None
    grad_weight : ndarray, shape (KH, KW, C)
    grad_bias : ndarray, shape (C,)
        Gradients with respect to the input, the filter and the bias (the
        bias gradient is returned whether or not the forward used a bias).

    Notes
    -----
    The weight and bias gradients are split over channels, never over pixels,
    so the result does not depend on ``n_threads``.
    """
    res = _depthwise_vjp_fast(x, weight, grad_out, stride, padding, dilation, activation,
                              output, need_input_grad, n_threads, out)
    if res is not None:
        return res
    dtype = _dtype_of(x=x, weight=weight, grad_out=grad_out)
    x = _as_x(x, dtype)
    C = x.shape[3]
    weight = as_float_array(weight, "weight", dtype=dtype, ndim=3)
    if weight.shape[2] != C:
        raise ValueError(f"weight has {weight.shape[2]} channels but x has {C}")
    KH, KW = weight.shape[:2]
    act = _activation(activation)
    sh, sw, dh, dw, pads, OH, OW = _geometry(x.shape, KH, KW, stride, padding, dilation)
    oshape = (x.shape[0], OH, OW, C)
    g = _check_grad_out(grad_out, dtype, oshape)
    y = _check_output(output, act, dtype, oshape)
    gx, gw, gb = _grad_outs(out, (x.shape if need_input_grad else None, weight.shape, (C,)),
                            dtype, (x, weight, g, y))
    nt = _dw_threads(n_threads, 2 * x.shape[0] * OH * OW * C * KH * KW)
    _conv._depthwise_backward(x, weight, g, y, gx if gx is not None else _empty(dtype, 4),
                              gw, gb, sh, sw, dh, dw, pads[0], pads[2], act, nt)
    return gx, gw, gb


def _depthwise_vjp_fast(x, weight, grad_out, stride, padding, dilation, activation, output,
                        need_input_grad, n_threads, out):
    """:func:`depthwise_conv2d_vjp` for ready arguments, or None (general path)."""
    if type(need_input_grad) is not bool:
        return None
    ready = _depthwise_ready(x, weight, stride, padding, dilation, activation)
    if ready is None:
        return None
    dtype, act, (N, C, KH, KW, sh, sw, dh, dw, pads, OH, OW) = ready
    oshape = (N, OH, OW, C)
    if not _ready(grad_out, dtype, 4) or grad_out.shape != oshape:
        return None
    if act:
        if not _ready(output, dtype, 4) or output.shape != oshape:
            return None
        y = output
    else:
        y = _EMPTY4[dtype]
    if out is None:
        out = (None, None, None)
    elif type(out) is not tuple or len(out) != 3:
        return None
    inputs = (x, weight, grad_out, y if act else None)
    shapes = (x.shape if need_input_grad else None, weight.shape, (C,))
    bufs = []
    for buf, shape in zip(out, shapes):
        if shape is None:
            bufs.append(None)
        elif buf is None:
            bufs.append(np.empty(shape, dtype=dtype))
        elif _ready_out(buf, shape, dtype, inputs + tuple(bufs)):
            bufs.append(buf)
        else:
            return None
    gx, gw, gb = bufs
    nt = _dw_threads(n_threads, 2 * N * OH * OW * C * KH * KW)
    _conv._depthwise_backward(x, weight, grad_out, y,
                              gx if gx is not None else np.empty((0, 0, 0, 0), dtype),
                              gw, gb, sh, sw, dh, dw, pads[0], pads[2], act, nt)
    return gx, gw, gb


# ---------------------------------------------------------------------------
# pointwise
# ---------------------------------------------------------------------------

def _pw_x(x, dtype):
    arr = as_float_array(x, "x", dtype=dtype, ndim=(2, 4), allow_empty=True)
    if arr.shape[-1] == 0:
        raise ValueError(f"x must have at least one channel, got shape {arr.shape}")
    return arr


def pointwise_conv2d(x, weight, bias=None, *, activation=None, n_threads=None,
                     out=None) -> np.ndarray:
    """1x1 convolution of an NHWC tensor: a GEMM over the N*H*W pixels.

    Parameters
    ----------
    x : array_like, shape (N, H, W, C_in) or (P, C_in)
    weight : array_like, shape (C_in, C_out)
    bias : array_like, shape (C_out,), optional
    activation : {None, "relu", "relu6"}, default=None
    n_threads : int, optional
    out : ndarray, shape (..., C_out), optional

    Returns
    -------
    ndarray, shape (N, H, W, C_out) (or (P, C_out))

    Raises
    ------
    TypeError, ValueError
        As for :func:`depthwise_conv2d`.

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.nn.functional import pointwise_conv2d
    >>> x = np.ones((1, 2, 2, 3))
    >>> pointwise_conv2d(x, np.ones((3, 4)), bias=np.arange(4.0))[0, 0, 0]
    array([3., 4., 5., 6.])
    """
    dtype = _dtype_of(x=x, weight=weight, bias=bias)
    x = _pw_x(x, dtype)
    Ci = x.shape[-1]
    weight = as_float_array(weight, "weight", dtype=dtype, ndim=2)
    if weight.shape[0] != Ci:
        raise ValueError(f"weight has {weight.shape[0]} input channels but x has {Ci} "
                         f"(weight shape {weight.shape}, x shape {x.shape})")
    Co = weight.shape[1]
    b = _bias(bias, Co, dtype)
    act = _activation(activation)
    shape = x.shape[:-1] + (Co,)
    res = _output(out, "out", shape, dtype, x, weight, b)
    x2 = x.reshape(-1, Ci)
    nt = _threads(n_threads, x2.shape[0] * Ci * Co)
    with _serial_blas:
        _conv._pointwise_forward(x2, weight, b, res.reshape(-1, Co), act, nt)
    return res


def pointwise_conv2d_vjp(x, weight, grad_out, *, activation=None, output=None,
                         need_input_grad=True, n_threads=None, out=None):
    """Vector-Jacobian product of :func:`pointwise_conv2d`.

    Parameters
    ----------
    x : array_like, shape (N, H, W, C_in) or (P, C_in)
    weight : array_like, shape (C_in, C_out)
    grad_out : array_like, shape (..., C_out)
    activation : {None, "relu", "relu6"}, default=None
    output : array_like, optional
        The forward output, required with an activation.
    need_input_grad : bool, default=True
    n_threads : int, optional
    out : tuple (grad_x, grad_weight, grad_bias), optional

    Returns
    -------
    grad_x, grad_weight, grad_bias : ndarray (grad_x None if not needed)
    """
    dtype = _dtype_of(x=x, weight=weight, grad_out=grad_out)
    x = _pw_x(x, dtype)
    Ci = x.shape[-1]
    weight = as_float_array(weight, "weight", dtype=dtype, ndim=2)
    if weight.shape[0] != Ci:
        raise ValueError(f"weight has {weight.shape[0]} input channels but x has {Ci}")
    Co = weight.shape[1]
    act = _activation(activation)
    oshape = x.shape[:-1] + (Co,)
    g = _check_grad_out(grad_out, dtype, oshape)
    y = _check_output(output, act, dtype, oshape)
    gx, gw, gb = _grad_outs(out, (x.shape if need_input_grad else None, weight.shape, (Co,)),
                            dtype, (x, weight, g, y))
    P = int(np.prod(x.shape[:-1]))
    gm = np.empty((P, Co), dtype=dtype) if act else _empty(dtype, 2)
    nt = _threads(n_threads, 2 * P * Ci * Co)
    with _serial_blas:
        _conv._pointwise_backward(x.reshape(P, Ci), weight, g.reshape(P, Co),
                                  y.reshape(P, Co) if act else _empty(dtype, 2), gm,
                                  gx.reshape(P, Ci) if gx is not None else _empty(dtype, 2),
                                  gw, gb, act, nt)
    return gx, gw, gb


# ---------------------------------------------------------------------------
# dense
# ---------------------------------------------------------------------------

def conv2d(x, weight, bias=None, *, stride=1, padding="same", dilation=1, activation=None,
           n_threads=None, out=None) -> np.ndarray:
    """Dense 2-D convolution of an NHWC tensor (e.g. MobileNet's 3x3/2 stem).

    Parameters
    ----------
    x : array_like, shape (N, H, W, C_in)
    weight : array_like, shape (KH, KW, C_in, C_out)
        HWIO layout (TensorFlow's).  A PyTorch OIHW filter ``w`` is
        ``w.transpose(2, 3, 1, 0)``.
    bias : array_like, shape (C_out,), optional
    stride, padding, dilation, activation, n_threads, out
        As in :func:`depthwise_conv2d`.

    Returns
    -------
    ndarray, shape (N, OH, OW, C_out)

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.nn.functional import conv2d
    >>> x = np.ones((1, 4, 4, 3))
    >>> conv2d(x, np.ones((3, 3, 3, 2)), stride=2, padding="valid").shape
    (1, 1, 1, 2)
    """
    dtype = _dtype_of(x=x, weight=weight, bias=bias)
    x = _as_x(x, dtype)
    Ci = x.shape[3]
    weight = as_float_array(weight, "weight", dtype=dtype, ndim=4)
    if weight.shape[2] != Ci:
        raise ValueError(f"weight has {weight.shape[2]} input channels but x has {Ci} "
                         f"(weight shape {weight.shape}, x shape {x.shape})")
    KH, KW, _, Co = weight.shape
    b = _bias(bias, Co, dtype)
    act = _activation(activation)
    sh, sw, dh, dw, pads, OH, OW = _geometry(x.shape, KH, KW, stride, padding, dilation)
    shape = (x.shape[0], OH, OW, Co)
    res = _output(out, "out", shape, dtype, x, weight, b)
    nt = _threads(n_threads, x.shape[0] * OH * OW * KH * KW * Ci * Co)
    with _serial_blas:
        _conv._conv2d_forward(x, weight, b, res, sh, sw, dh, dw, pads[0], pads[2], act, nt)
    return res


def conv2d_vjp(x, weight, grad_out, *, stride=1, padding="same", dilation=1, activation=None,
               output=None, need_input_grad=True, n_threads=None, out=None):
    """Vector-Jacobian product of :func:`conv2d`.

    Parameters and returns as in :func:`depthwise_conv2d_vjp`, with
    ``weight`` of shape ``(KH, KW, C_in, C_out)``.
    """
    dtype = _dtype_of(x=x, weight=weight, grad_out=grad_out)
    x = _as_x(x, dtype)
    Ci = x.shape[3]
    weight = as_float_array(weight, "weight", dtype=dtype, ndim=4)
    if weight.shape[2] != Ci:
        raise ValueError(f"weight has {weight.shape[2]} input channels but x has {Ci}")
    KH, KW, _, Co = weight.shape
    act = _activation(activation)
    sh, sw, dh, dw, pads, OH, OW = _geometry(x.shape, KH, KW, stride, padding, dilation)
    oshape = (x.shape[0], OH, OW, Co)
    g = _check_grad_out(grad_out, dtype, oshape)
    y = _check_output(output, act, dtype, oshape)
    gx, gw, gb = _grad_outs(out, (x.shape if need_input_grad else None, weight.shape, (Co,)),
                            dtype, (x, weight, g, y))
    gm = np.empty(oshape, dtype=dtype) if act else _empty(dtype, 4)
    nt = _threads(n_threads, 2 * x.shape[0] * OH * OW * KH * KW * Ci * Co)
    with _serial_blas:
        _conv._conv2d_backward(x, weight, g, y, gm,
                               gx if gx is not None else _empty(dtype, 4), gw, gb,
                               sh, sw, dh, dw, pads[0], pads[2], act, nt)
    return gx, gw, gb


# ---------------------------------------------------------------------------
# fused depthwise -> pointwise
# ---------------------------------------------------------------------------

def depthwise_separable_conv2d(x, dw_weight, pw_weight, dw_bias=None, pw_bias=None, *,
                               stride=1, padding="same", dilation=1, dw_activation=None,
                               activation=None, n_threads=None, out=None) -> np.ndarray:
    """A MobileNet block in one pass: depthwise conv -> activation -> 1x1 conv -> activation.

    Equal to ``pointwise_conv2d(depthwise_conv2d(x, dw_weight, dw_bias, ...,
    activation=dw_activation), pw_weight, pw_bias, activation=activation)``,
    but the depthwise result is produced one L2-sized tile of pixels at a
    time and consumed by the pointwise GEMM straight away, so the
    intermediate tensor never travels to memory.

    Parameters
    ----------
    x : array_like, shape (N, H, W, C)
    dw_weight : array_like, shape (KH, KW, C)
    pw_weight : array_like, shape (C, C_out)
    dw_bias : array_like, shape (C,), optional
    pw_bias : array_like, shape (C_out,), optional
    stride, padding, dilation
        Of the depthwise convolution.
    dw_activation, activation : {None, "relu", "relu6"}
        After the depthwise and after the pointwise convolution.
    n_threads : int, optional
    out : ndarray, shape (N, OH, OW, C_out), optional

    Returns
    -------
    ndarray, shape (N, OH, OW, C_out)
    """
    dtype = _dtype_of(x=x, dw_weight=dw_weight, pw_weight=pw_weight,
                      dw_bias=dw_bias, pw_bias=pw_bias)
    x = _as_x(x, dtype)
    C = x.shape[3]
    dw_weight = as_float_array(dw_weight, "dw_weight", dtype=dtype, ndim=3)
    if dw_weight.shape[2] != C:
        raise ValueError(f"dw_weight has {dw_weight.shape[2]} channels but x has {C}")
    pw_weight = as_float_array(pw_weight, "pw_weight", dtype=dtype, ndim=2)
    if pw_weight.shape[0] != C:
        raise ValueError(f"pw_weight has {pw_weight.shape[0]} input channels but x has {C}")
    KH, KW = dw_weight.shape[:2]
    Co = pw_weight.shape[1]
    db = _bias(dw_bias, C, dtype, "dw_bias")
    pb = _bias(pw_bias, Co, dtype, "pw_bias")
    a1 = _activation(dw_activation, "dw_activation")
    a2 = _activation(activation)
    sh, sw, dh, dw, pads, OH, OW = _geometry(x.shape, KH, KW, stride, padding, dilation,
                                             "dw_weight")
    shape = (x.shape[0], OH, OW, Co)
    res = _output(out, "out", shape, dtype, x, dw_weight, pw_weight, db, pb)
    nt = _threads(n_threads, x.shape[0] * OH * OW * C * (KH * KW + Co))
    with _serial_blas:
        _conv._separable_forward(x, dw_weight, db, pw_weight, pb, res, sh, sw, dh, dw,
                                 pads[0], pads[2], a1, a2, nt)
    return res


# Non-convolution operations (batch norm, activations, pooling, linear, loss) live in
# effai_fast.nn._functional_dense; re-exported here so that one module holds the functional API.
from effai_fast.nn._functional_dense import (  # noqa: E402
    activation_vjp,
    batch_norm,
    batch_norm_vjp,
    dropout,
    global_avg_pool,
    global_avg_pool_vjp,
    linear,
    linear_vjp,
    log_softmax,
    relu,
    relu6,
    softmax,
    softmax_cross_entropy,
)

__all__ += [
    "activation_vjp", "batch_norm", "batch_norm_vjp", "dropout", "global_avg_pool",
    "global_avg_pool_vjp", "linear", "linear_vjp", "log_softmax", "relu", "relu6", "softmax",
    "softmax_cross_entropy",
]
