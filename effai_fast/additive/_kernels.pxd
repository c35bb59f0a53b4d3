# Public C-level kernels of effai_fast.additive (see _kernels.pyx for the design).
from libc.stdint cimport int32_t, int64_t

ctypedef fused floating:
    float
    double

cdef int mlp_forward_c(
    const floating[:, ::1] X, const floating[::1] theta, const int32_t[:, ::1] unit_feat,
    const int64_t[::1] unit_off, const int32_t[::1] hidden, int act, double bias,
    floating[::1] out, int n_threads) noexcept nogil

cdef int mlp_backward_c(
    const floating[:, ::1] X, const floating[::1] theta, const int32_t[:, ::1] unit_feat,
    const int64_t[::1] unit_off, const int32_t[::1] hidden, int act, const floating[::1] g,
    floating[::1] grad, int n_threads) noexcept nogil

cdef int spline_forward_c(
    const floating[:, ::1] X, const int32_t[::1] main_feat, const double[:, ::1] main_coef,
    const double[:, ::1] main_map, const int32_t[:, ::1] pair_feat,
    const double[:, ::1] pair_coef, const double[:, ::1] pair_map, int K2, double bias,
    floating[::1] out, int n_threads) noexcept nogil
