# Public kernels of effai_fast.distill, for other Cython libraries.
#
# All take C-contiguous (B, C) rows of logits and a team size n_threads > 0
# (never 0; resolve it in Python).  They do no validation: shapes must agree,
# labels must lie in [0, C), temperature > 0.  See _kd.pyx for the numerics.

from libc.stdint cimport int64_t
from cython cimport floating

# out[i] = softmax(z[i] * inv_t); out may alias z.
cdef void softmax_rows(const floating[:, ::1] z, double inv_t,
                       floating[:, ::1] out, int n_threads) noexcept nogil

# out[i] = log_softmax(z[i] * inv_t); out may alias z.  0, or -1 on malloc failure.
cdef int log_softmax_rows(const floating[:, ::1] z, double inv_t,
                          floating[:, ::1] out, int n_threads) noexcept nogil

# row_loss[i] = soft_loss_w * KL(p_T || p_S) + hard_loss_w * CE(q_S, labels[i])
# grad[i]     = soft_grad_w * (p_S - p_T)    + hard_grad_w * (q_S - onehot(labels[i]))
# p = softmax(z * inv_t), q = softmax(z); hard terms skipped when labels has length 0.
# A non-finite input in row i gives a non-finite row_loss[i].  0, or -1 on malloc failure.
cdef int kd_loss_rows(const floating[:, ::1] student, const floating[:, ::1] teacher,
                      const int64_t[::1] labels, double inv_t,
                      double soft_loss_w, double soft_grad_w,
                      double hard_loss_w, double hard_grad_w,
                      floating[:, ::1] grad, double[::1] row_loss,
                      int n_threads) noexcept nogil
