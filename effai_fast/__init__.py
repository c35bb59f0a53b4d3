"""effai_fast: efficient AI on ordinary multicore CPUs.

Small, fast, well-structured models instead of huge ones, on compiled
Cython + OpenMP kernels:

``effai_fast.nn``
    Depthwise / pointwise / dense convolutions and their VJPs, layers, training.
``effai_fast.mobilenet``
    MobileNet v1 with width and resolution multipliers, exact cost model,
    budget optimiser.
``effai_fast.ad``
    Reverse- and forward-mode automatic differentiation on compiled tapes.
``effai_fast.hill``
    Bulk Hill dose-response fitting.
``effai_fast.distill``
    Temperature softmax, knowledge-distillation loss and trainer.
``effai_fast.additive`` / ``effai_fast.sparsegrid``
    Additive networks, sparse grids and dimension-adaptive refinement.
``effai_fast.surrogate``
    Designs, surrogate models, screening and active learning.

Subpackages are imported on first access, so ``import effai_fast`` stays cheap.
"""

from __future__ import annotations

import importlib

from effai_fast._build_config import VERSION as __version__
from effai_fast._config import show_config
from effai_fast._threads import resolve_n_threads

__all__ = ["__version__", "resolve_n_threads", "show_config"]

_SUBPACKAGES = frozenset(
    {
        "nn",
        "optim",
        "datasets",
        "mobilenet",
        "ad",
        "hill",
        "distill",
        "additive",
        "sparsegrid",
        "surrogate",
    }
)


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        module = importlib.import_module(f"effai_fast.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'effai_fast' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _SUBPACKAGES)
