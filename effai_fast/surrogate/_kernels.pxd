# Public C-level prediction kernels of effai_fast.surrogate (see _kernels.pyx).
#
# All take typed memoryviews, trust their inputs (validated by the Python
# layer), release the GIL and run row blocks in parallel with `n_threads`
# OpenMP threads (resolved by the caller; never a global setting).

from cython cimport floating

# Kernel kinds (match _simd.h)
cdef enum:
    KIND_SE = 0
    KIND_MATERN32 = 1
    KIND_MATERN52 = 2
    KIND_LINEAR = 3
    KIND_CUBIC = 4
    KIND_QUINTIC = 5
    KIND_TPS = 6
    KIND_GAUSSIAN = 7

cdef void kernel_sum(
    const floating[:, ::1] X,        # IN  (m, d) raw candidates
    const floating[::1] center,      # IN  (d,)
    const floating[::1] inv_scale,   # IN  (d,)
    const floating[:, ::1] ZT,       # IN  (d, n) scaled, centred centres, transposed
    const floating[::1] weights,     # IN  (n,)
    const floating[::1] poly,        # IN  (d,) linear tail on scaled inputs, or empty
    floating offset,                 # IN  constant added to every output
    int kind,
    floating[::1] out,               # OUT (m,)
    int n_threads,
) noexcept nogil

cdef void kernel_sum_var(
    const floating[:, ::1] X,
    const floating[::1] center,
    const floating[::1] inv_scale,
    const floating[:, ::1] ZT,
    const floating[::1] weights,
    floating offset,
    int kind,
    const floating[:, ::1] A,        # IN  (n, n) lower triangular: var = prior - |A k|^2
    floating prior_var,              # IN  k(x, x) (signal variance)
    floating[::1] out_mean,          # OUT (m,)
    floating[::1] out_var,           # OUT (m,)  clipped at >= 0
    int n_threads,
) noexcept nogil

cdef void mlp_forward(
    const floating[:, ::1] X,        # IN  (m, d) raw inputs
    const floating[::1] params,      # IN  flat weights, layer by layer: W (in, out) then b
    const int[::1] sizes,            # IN  layer widths [d, h1, ..., 1]
    floating[::1] out,               # OUT (m,)
    int n_threads,
) noexcept nogil
