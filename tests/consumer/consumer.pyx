# A downstream library's module: it cimports effai_fast's public .pxd files
# and calls the compiled code without going through Python.
from cython.parallel cimport prange

from effai_fast._openmp cimport EFFAI_OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    return bool(EFFAI_OPENMP_ENABLED)


def max_threads():
    return omp_get_max_threads()


def parallel_sum(double[::1] x, int n_threads):
    cdef Py_ssize_t i
    cdef double s = 0
    for i in prange(x.shape[0], nogil=True, num_threads=n_threads, schedule="static"):
        s += x[i]
    return s
