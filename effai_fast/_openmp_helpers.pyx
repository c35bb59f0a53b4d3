"""Queries of the OpenMP runtime the kernels were compiled against."""

from cython.parallel cimport parallel

from effai_fast._openmp cimport (
    EFFAI_OPENMP_ENABLED,
    EFFAI_OPENMP_VERSION,
    omp_get_max_threads,
    omp_get_num_threads,
    omp_get_thread_num,
)


def openmp_enabled():
    """Return True when the extension modules were compiled with OpenMP."""
    return bool(EFFAI_OPENMP_ENABLED)


def openmp_version():
    """Return the ``_OPENMP`` date macro (e.g. 201511 for OpenMP 4.5), 0 without OpenMP."""
    return int(EFFAI_OPENMP_VERSION)


def max_threads():
    """Return ``omp_get_max_threads()`` for the calling thread.

    It reflects ``OMP_NUM_THREADS`` and any limit that threadpoolctl has set.
    """
    return omp_get_max_threads()


def team_size(int n_threads):
    """Open a parallel region asking for ``n_threads`` and return how many ran.

    Used by tests (and ``show_config``) to prove the kernels really run in
    parallel; it never changes OpenMP state.
    """
    # An array element is shared by the team, a scalar would be thread-private.
    cdef int[1] seen
    cdef int n = max(n_threads, 1)
    seen[0] = 1
    with nogil, parallel(num_threads=n):
        if omp_get_thread_num() == 0:
            seen[0] = omp_get_num_threads()
    return seen[0]
