"""Validation at the Python boundary: one helper per concern.

Kernels trust their inputs, so every public function converts and checks its
arguments here first and names the argument in every error.  The helpers follow
``scipy._lib._util._asarray_validated``: convert, check dtype / shape /
finiteness, make C-contiguous, then hand the array to the kernel.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "as_float_array",
    "check_consistent_length",
    "check_int",
    "check_out",
    "check_real",
    "check_rng",
    "float_dtype",
    "result_float_dtype",
]

_FLOATS = (np.float32, np.float64)


def float_dtype(dtype, name: str = "dtype") -> np.dtype:
    """Return float32 or float64 for a requested dtype, or raise TypeError."""
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise TypeError(f"{name} must be float32 or float64, got {dt}")
    return dt


def _kernel_dtype(arr: np.ndarray, name: str) -> np.dtype:
    """The float type a kernel runs an array in: floats keep theirs, ints go to float64."""
    kind = arr.dtype.kind
    if kind == "f":
        if arr.dtype.itemsize <= 4:  # float16 computes in float32
            return np.dtype(np.float32)
        if arr.dtype.itemsize == 8:
            return np.dtype(np.float64)
        raise TypeError(f"{name} has dtype {arr.dtype}; only float16/32/64 are supported")
    if kind in "iub":
        return np.dtype(np.float64)
    if kind == "c":
        raise TypeError(f"{name} must be real, got complex dtype {arr.dtype}")
    raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")


def result_float_dtype(*arrays) -> np.dtype:
    """float32 when every floating array is float32 (or smaller), float64 otherwise."""
    dts = [np.asarray(a).dtype for a in arrays if a is not None]
    floats = [d for d in dts if d.kind == "f"]
    if floats and all(d.itemsize <= 4 for d in floats):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


def as_float_array(
    x,
    name: str,
    *,
    dtype=None,
    ndim: int | Sequence[int] | None = None,
    shape: Sequence[int | None] | None = None,
    allow_empty: bool = False,
    finite: bool = False,
    copy: bool = False,
) -> np.ndarray:
    """Convert ``x`` to a C-contiguous float32/float64 array and check it.

    Parameters
    ----------
    x : array_like
        The argument.
    name : str
        Its name, used in every error message.
    dtype : {None, float32, float64}, default=None
        None keeps float32/float64 (float16 becomes float32, integers and
        booleans float64); otherwise cast to this dtype.
    ndim : int or sequence of int, optional
        Allowed numbers of dimensions.
    shape : sequence of (int or None), optional
        Expected shape; None entries match any size.  Implies ``ndim``.
    allow_empty : bool, default=False
        Whether an array with no elements is acceptable.
    finite : bool, default=False
        Reject NaN and infinity.
    copy : bool, default=False
        Always return a fresh array (safe to modify).

    Returns
    -------
    numpy.ndarray
        C-contiguous, aligned, of a float dtype.

    Raises
    ------
    TypeError
        For complex, object, string or otherwise non-real input.
    ValueError
        For a wrong shape, an empty array, or non-finite values.
    """
    if x is None:
        raise TypeError(f"{name} must be an array, got None")
    try:
        arr = np.asarray(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} could not be converted to an array: {exc}") from None
    target = _kernel_dtype(arr, name) if dtype is None else float_dtype(dtype, "dtype")
    if dtype is not None and arr.dtype.kind not in "fiub":
        _kernel_dtype(arr, name)  # raises the clear TypeError
    if shape is not None:
        ndim = len(shape)
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, numbers.Integral) else tuple(ndim)
        if arr.ndim not in allowed:
            want = " or ".join(str(a) for a in allowed)
            raise ValueError(
                f"{name} must have {want} dimension(s), got shape {arr.shape} ({arr.ndim}-D)"
            )
    if shape is not None:
        for axis, (got, want) in enumerate(zip(arr.shape, shape)):
            if want is not None and got != want:
                raise ValueError(
                    f"{name} must have shape {tuple('*' if s is None else s for s in shape)}, "
                    f"got {arr.shape} (axis {axis} is {got}, expected {want})"
                )
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    out = np.array(arr, dtype=target, order="C", copy=True) if copy else (
        np.ascontiguousarray(arr, dtype=target)
    )
    if finite and out.size and not np.isfinite(out).all():
        raise ValueError(f"{name} must not contain NaN or infinity")
    return out


def check_int(
    value,
    name: str,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
) -> int:
    """Check that ``value`` is an integer (not a bool) within bounds and return it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if min_value is not None and value < min_value:
        raise ValueError(f"{name} must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ValueError(f"{name} must be <= {max_value}, got {value}")
    return value


def check_real(
    value,
    name: str,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_inclusive: bool = True,
    max_inclusive: bool = True,
) -> float:
    """Check that ``value`` is a finite real number within bounds and return it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if min_value is not None:
        bad = value < min_value if min_inclusive else value <= min_value
        if bad:
            op = ">=" if min_inclusive else ">"
            raise ValueError(f"{name} must be {op} {min_value}, got {value}")
    if max_value is not None:
        bad = value > max_value if max_inclusive else value >= max_value
        if bad:
            op = "<=" if max_inclusive else "<"
            raise ValueError(f"{name} must be {op} {max_value}, got {value}")
    return value


def check_consistent_length(*pairs: tuple[str, object]) -> int:
    """Check that named arrays share their first dimension and return it."""
    lengths = [(name, len(a)) for name, a in pairs if a is not None]
    if len({n for _, n in lengths}) > 1:
        desc = ", ".join(f"{name}: {n}" for name, n in lengths)
        raise ValueError(f"inconsistent numbers of samples ({desc})")
    return lengths[0][1] if lengths else 0


def check_out(out, name: str, shape: tuple[int, ...], dtype, *inputs) -> np.ndarray:
    """Validate a caller-supplied output buffer.

    The buffer must be a writeable, C-contiguous ndarray of exactly ``shape``
    and ``dtype`` that shares no memory with any of ``inputs``.
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != np.dtype(dtype):
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {out.shape}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    for arr in inputs:
        if arr is not None and np.may_share_memory(out, arr):
            raise ValueError(f"{name} must not share memory with an input array")
    return out


def check_rng(seed) -> np.random.Generator:
    """Return a numpy Generator from None, an int seed, a SeedSequence or a Generator."""
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(seed, bool):
            raise TypeError("seed must be None, an int, a SeedSequence or a Generator, got bool")
        return np.random.default_rng(seed)
    raise TypeError(
        f"seed must be None, an int, a SeedSequence or a numpy Generator, got "
        f"{type(seed).__name__}"
    )
