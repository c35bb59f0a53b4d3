"""The one place that turns a user's ``n_threads`` into an OpenMP team size.

Every parallel entry point of the package takes ``n_threads=None`` and passes
it through :func:`resolve_n_threads` once, in Python; the integer it returns is
handed to the kernel, whose ``prange`` uses it as ``num_threads``.  Nothing in
the package calls ``omp_set_num_threads`` (process-global state), so two
libraries embedding effai_fast cannot step on each other.

Conventions (the same as scikit-learn's ``n_jobs``):

``None``
    All usable cores, but never more than ``omp_get_max_threads()``: that
    number honours ``OMP_NUM_THREADS`` and a ``threadpoolctl.threadpool_limits``
    block (threadpoolctl sets the OpenMP runtime's per-thread limit).
``-1``
    All usable cores (CPU affinity of the process), whatever those limits say.
``-k`` (k > 1)
    All usable cores but ``k - 1``.
``k > 0``
    Exactly ``k`` threads.
``0``
    A ValueError.

Small problems lose more to waking a team than they gain from it, so kernels
also call :func:`threads_for_work`, which caps the team by the amount of work.
"""

from __future__ import annotations

import numbers
import os

from effai_fast import _openmp_helpers

__all__ = ["resolve_n_threads", "threads_for_work", "usable_cpu_count"]


def usable_cpu_count() -> int:
    """Return the number of CPUs this process may run on."""
    if hasattr(os, "process_cpu_count"):  # Python >= 3.13
        n = os.process_cpu_count()
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS / Windows
        n = os.cpu_count()
    return max(1, n or 1)


def resolve_n_threads(n_threads: int | None = None) -> int:
    """Return the number of OpenMP threads a kernel call should use.

    Parameters
    ----------
    n_threads : int or None, default=None
        See the module docstring for the conventions.

    Returns
    -------
    int
        A positive thread count (1 when the package was built without OpenMP).

    Raises
    ------
    TypeError
        If ``n_threads`` is not an integer or None.
    ValueError
        If ``n_threads`` is 0.
    """
    if n_threads is not None and (
        isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral)
    ):
        raise TypeError(
            f"n_threads must be an int or None, got {type(n_threads).__name__} {n_threads!r}"
        )
    if not _openmp_helpers.openmp_enabled():
        if n_threads == 0:
            raise ValueError("n_threads must be a non-zero integer or None, got 0")
        return 1
    if n_threads is not None and n_threads > 0:
        # An explicit count is returned as is; skipping the CPU-affinity
        # system call (~5 us) matters for per-layer calls at batch 1.
        return int(n_threads)
    n_cpus = usable_cpu_count()
    if n_threads is None:
        return max(1, min(n_cpus, _openmp_helpers.max_threads()))
    n_threads = int(n_threads)
    if n_threads == 0:
        raise ValueError("n_threads must be a non-zero integer or None, got 0")
    return max(1, n_cpus + 1 + n_threads)


def threads_for_work(n_threads: int, work: float, grain: float) -> int:
    """Cap a resolved thread count so that each thread gets at least ``grain`` work.

    Parameters
    ----------
    n_threads : int
        A count already resolved by :func:`resolve_n_threads`.
    work : float
        The call's total work in any unit (flops, bytes, elements).
    grain : float
        The least work worth a thread of its own in the same unit.  On a busy
        machine, a libgomp team costs tens of microseconds to wake; ``grain``
        should be several times that in work.

    Returns
    -------
    int
        A count between 1 and ``n_threads``.
    """
    if n_threads <= 1 or grain <= 0:
        return max(1, n_threads)
    return int(max(1, min(n_threads, work // grain)))
