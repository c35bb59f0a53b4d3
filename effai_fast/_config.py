"""``show_config()``: what this build of effai_fast is and how it will run."""

from __future__ import annotations

import os
import platform
import sys

from effai_fast import _build_config, _openmp_helpers
from effai_fast._threads import resolve_n_threads, usable_cpu_count

__all__ = ["config_dict", "show_config"]

_ENV_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND")


def _openmp_version_name(date: int) -> str:
    names = {201107: "3.1", 201307: "4.0", 201511: "4.5", 201811: "5.0", 202011: "5.1",
             202111: "5.2"}
    return names.get(date, str(date)) if date else "none"


def config_dict() -> dict:
    """Return the build and runtime configuration as a dictionary."""
    import numpy
    import scipy

    info = {
        "effai_fast": _build_config.VERSION,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "compiler": f"{_build_config.C_COMPILER} {_build_config.C_COMPILER_VERSION}",
        "cython": _build_config.CYTHON_VERSION,
        "buildtype": _build_config.BUILDTYPE,
        "native_arch": _build_config.NATIVE,
        "boundscheck": _build_config.BOUNDSCHECK,
        "sanitizers": _build_config.SANITIZE,
        "openmp_build": _build_config.OPENMP_BUILD,
        "openmp_enabled": _openmp_helpers.openmp_enabled(),
        "openmp_version": _openmp_version_name(_openmp_helpers.openmp_version()),
        "usable_cpus": usable_cpu_count(),
        "omp_max_threads": _openmp_helpers.max_threads(),
        "default_n_threads": resolve_n_threads(None),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "env": {k: os.environ.get(k) for k in _ENV_VARS},
    }
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["threadpools"] = None
    else:
        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "num_threads", "version",
                                   "filepath")}
            for p in threadpool_info()
        ]
    return info


def show_config(file=None) -> None:
    """Print versions, compiler, OpenMP and thread settings.

    Parameters
    ----------
    file : file-like, optional
        Where to print (default: ``sys.stdout``).

    Examples
    --------
    >>> import effai_fast
    >>> effai_fast.show_config()  # doctest: +SKIP
    """
    file = sys.stdout if file is None else file
    info = config_dict()
    w = max(len(k) for k in info)
    print("effai_fast configuration", file=file)
    for key, value in info.items():
        if key in ("env", "threadpools"):
            continue
        print(f"  {key:<{w}} : {value}", file=file)
    print("  environment:", file=file)
    for key, value in info["env"].items():
        print(f"    {key} = {value if value is not None else '(unset)'}", file=file)
    pools = info["threadpools"]
    if pools is None:
        print("  threadpools: (install threadpoolctl to list them)", file=file)
    else:
        print("  threadpools:", file=file)
        for p in pools:
            print(f"    {p['user_api']:<7} {p['internal_api']:<10} threads={p['num_threads']}"
                  f"  {p['filepath']}", file=file)
    if not info["openmp_enabled"]:
        print("  WARNING: built without OpenMP; every kernel runs on one thread.", file=file)
