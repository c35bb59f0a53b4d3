# Public C-level kernel of effai_fast.sparsegrid (see _kernels.pyx for the design).
from libc.stdint cimport int32_t, int64_t

ctypedef fused floating:
    float
    double

# basis kinds (keep in sync with effai_fast/sparsegrid/_basis.py)
cdef enum:
    KIND_HAT = 0
    KIND_MODLINEAR = 1
    KIND_BOUNDARY = 2
    KIND_NEWTON = 3

cdef int evaluate_subspaces(
    int kind,
    const floating[:, ::1] x,
    const floating[::1] alpha,
    const int32_t[:, ::1] sub_entry,
    const int32_t[:, ::1] sub_shift,
    const int64_t[::1] sub_off,
    const int32_t[::1] sub_first,
    const int32_t[::1] ent_level,
    const double[::1] nodes,
    const double[::1] coefs,
    floating[::1] out,
    int n_threads,
) noexcept nogil
