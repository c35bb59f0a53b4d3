# Public, cimportable convolution kernels (NHWC, float32/float64).
#
# Every kernel is `noexcept nogil`, trusts its inputs (shapes, padding and the
# output size were checked by effai_fast.nn.functional) and writes only into
# the buffers it is given.  Layouts:
#
#   x        (N, H, W, C)          input, C contiguous
#   dw       (KH, KW, C)           depthwise filter
#   pw       (C_in, C_out)         pointwise (1x1) filter
#   dense    (KH, KW, C_in, C_out) dense filter (HWIO)
#   bias     (C_out,) or a 0-length view for "no bias"
#   out      (N, OH, OW, C_out)
#
# activation: ACT_NONE, ACT_RELU or ACT_RELU6 (fused into the store; NaN
# propagates).  The backward kernels take the forward *output* `y` to form the
# activation mask (pass a 0-length view when activation is ACT_NONE).
# pad_top/pad_left are the leading paddings; the trailing ones follow from the
# output size.  Results do not depend on n_threads.

from cython cimport floating

cdef enum:
    ACT_NONE = 0
    ACT_RELU = 1
    ACT_RELU6 = 2

cdef void depthwise_forward(
    const floating[:, :, :, ::1] x,      # IN  (N, H, W, C)
    const floating[:, :, ::1] weight,    # IN  (KH, KW, C)
    const floating[::1] bias,            # IN  (C,) or (0,)
    floating[:, :, :, ::1] out,          # OUT (N, OH, OW, C)
    int stride_h, int stride_w, int dil_h, int dil_w,
    int pad_top, int pad_left, int activation, int n_threads,
) noexcept nogil

cdef void depthwise_backward(
    const floating[:, :, :, ::1] x,      # IN  (N, H, W, C)
    const floating[:, :, ::1] weight,    # IN  (KH, KW, C)
    const floating[:, :, :, ::1] grad_out,  # IN (N, OH, OW, C)
    const floating[:, :, :, ::1] y,      # IN  forward output (mask) or (0,0,0,0)
    floating[:, :, :, ::1] grad_x,       # OUT (N, H, W, C) or (0,0,0,0) to skip
    floating[:, :, ::1] grad_weight,     # OUT (KH, KW, C)
    floating[::1] grad_bias,             # OUT (C,) or (0,) to skip
    int stride_h, int stride_w, int dil_h, int dil_w,
    int pad_top, int pad_left, int activation, int n_threads,
) noexcept nogil

cdef void pointwise_forward(
    const floating[:, ::1] x,            # IN  (P, C_in) pixels
    const floating[:, ::1] weight,       # IN  (C_in, C_out)
    const floating[::1] bias,            # IN  (C_out,) or (0,)
    floating[:, ::1] out,                # OUT (P, C_out)
    int activation, int n_threads,
) noexcept nogil

cdef void pointwise_backward(
    const floating[:, ::1] x,            # IN  (P, C_in)
    const floating[:, ::1] weight,       # IN  (C_in, C_out)
    const floating[:, ::1] grad_out,     # IN  (P, C_out)
    const floating[:, ::1] y,            # IN  forward output (mask) or (0, 0)
    floating[:, ::1] grad_masked,        # SCRATCH (P, C_out) when activation, else (0, 0)
    floating[:, ::1] grad_x,             # OUT (P, C_in) or (0, 0) to skip
    floating[:, ::1] grad_weight,        # OUT (C_in, C_out)
    floating[::1] grad_bias,             # OUT (C_out,) or (0,) to skip
    int activation, int n_threads,
) noexcept nogil

cdef void conv2d_forward(
    const floating[:, :, :, ::1] x,      # IN  (N, H, W, C_in)
    const floating[:, :, :, ::1] weight, # IN  (KH, KW, C_in, C_out)
    const floating[::1] bias,            # IN  (C_out,) or (0,)
    floating[:, :, :, ::1] out,          # OUT (N, OH, OW, C_out)
    int stride_h, int stride_w, int dil_h, int dil_w,
    int pad_top, int pad_left, int activation, int n_threads,
) noexcept nogil

cdef void conv2d_backward(
    const floating[:, :, :, ::1] x,      # IN  (N, H, W, C_in)
    const floating[:, :, :, ::1] weight, # IN  (KH, KW, C_in, C_out)
    const floating[:, :, :, ::1] grad_out,  # IN (N, OH, OW, C_out)
    const floating[:, :, :, ::1] y,      # IN  forward output (mask) or (0,0,0,0)
    floating[:, :, :, ::1] grad_masked,  # SCRATCH like grad_out when activation, else (0,0,0,0)
    floating[:, :, :, ::1] grad_x,       # OUT (N, H, W, C_in) or (0,0,0,0) to skip
    floating[:, :, :, ::1] grad_weight,  # OUT (KH, KW, C_in, C_out)
    floating[::1] grad_bias,             # OUT (C_out,) or (0,) to skip
    int stride_h, int stride_w, int dil_h, int dil_w,
    int pad_top, int pad_left, int activation, int n_threads,
) noexcept nogil

cdef void separable_forward(
    const floating[:, :, :, ::1] x,      # IN  (N, H, W, C)
    const floating[:, :, ::1] dw_weight, # IN  (KH, KW, C)
    const floating[::1] dw_bias,         # IN  (C,) or (0,)
    const floating[:, ::1] pw_weight,    # IN  (C, C_out)
    const floating[::1] pw_bias,         # IN  (C_out,) or (0,)
    floating[:, :, :, ::1] out,          # OUT (N, OH, OW, C_out)
    int stride_h, int stride_w, int dil_h, int dil_w,
    int pad_top, int pad_left, int dw_activation, int pw_activation, int n_threads,
) noexcept nogil
