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


# The convolution kernels of effai_fast.nn, called without the GIL.
from effai_fast.nn._conv cimport ACT_RELU, depthwise_forward


def depthwise3x3_relu(const float[:, :, :, ::1] x, const float[:, :, ::1] w,
                      const float[::1] bias, float[:, :, :, ::1] out, int n_threads):
    """3x3 depthwise convolution, stride 1, padding 1 ("same"), fused ReLU."""
    with nogil:
        depthwise_forward(x, w, bias, out, 1, 1, 1, 1, 1, 1, ACT_RELU, n_threads)


def depthwise3x3_f64(const double[:, :, :, ::1] x, const double[:, :, ::1] w,
                     const double[::1] bias, double[:, :, :, ::1] out, int n_threads):
    """The float64 specialisation of the same kernel, no activation."""
    with nogil:
        depthwise_forward(x, w, bias, out, 1, 1, 1, 1, 1, 1, 0, n_threads)
