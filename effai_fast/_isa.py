"""Choose among the ISA builds of a compiled kernel module.

Hot kernels are compiled several times from one Cython source (baseline x86-64,
AVX2+FMA, AVX-512) and the import picks the widest build this CPU can run.  An
environment variable may force one build for tests and benchmarks; a build the
CPU cannot execute is refused with an error rather than loaded, because loading it
would end the process with an illegal instruction at the first kernel call.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

# Name -> minimum CPU level as reported by the kernels' ``_cpu_level()``
# (0 baseline, 1 AVX2+FMA, 2 AVX-512F/BW/VL), widest first.
ISA_LEVELS = {"avx512": 2, "avx2": 1, "baseline": 0}


def select_build(package: str, builds: dict[str, str], baseline: ModuleType, cpu_level: int,
                 env_var: str, isa: str | None = None) -> tuple[str, ModuleType]:
    """The widest build of a kernel module that this CPU runs.

    Parameters
    ----------
    package : str
        Package holding the builds, e.g. ``"effai_fast.nn"``.
    builds : dict
        ISA name (a key of :data:`ISA_LEVELS`) -> module name inside `package`.
    baseline : module
        The baseline build, already imported: the fallback when no wider build is
        installed.
    cpu_level : int
        What this CPU runs, on the scale of :data:`ISA_LEVELS` (the convolution
        kernels' ``_cpu_level()`` probes it).
    env_var : str
        Environment variable that may force one build (``auto`` or an ISA name).
    isa : str, optional
        Forces a build like `env_var` does; takes precedence over it.

    Returns
    -------
    name, module : str, module
        The ISA name and the imported module.

    Raises
    ------
    ValueError
        If the forced ISA is unknown or this CPU cannot execute it.
    """
    choice = (isa or os.environ.get(env_var, "auto")).lower()
    level = cpu_level
    order = [name for name in ISA_LEVELS if name in builds]
    if choice != "auto":
        if choice not in builds:
            raise ValueError(f"{env_var} must be auto or one of {', '.join(order)}, "
                             f"got {choice!r}")
        if level < ISA_LEVELS[choice]:
            raise ValueError(f"{env_var}={choice}: this CPU does not support it")
        order = [choice]
    for name in order:
        if level < ISA_LEVELS[name]:
            continue
        try:
            return name, importlib.import_module(f"{package}.{builds[name]}")
        except ImportError:   # not built (other compiler or architecture)
            continue
    return "baseline", baseline
