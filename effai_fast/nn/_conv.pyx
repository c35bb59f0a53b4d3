"""Convolution kernels for MobileNet-style networks: NHWC, float32/float64, OpenMP.

Design note
-----------
Layout.  Activations are NHWC: the channel axis is contiguous, so every inner
loop of the depthwise kernels runs over channels (unit stride, vectorised by
the compiler) and a 1x1 convolution is a plain row-major GEMM over the N*H*W
pixels.  NCHW would make depthwise a 2-D stencil per channel (short rows,
poor vectorisation at 7x7/14x14) and would force a transpose before every
pointwise GEMM.

Depthwise forward.  Work is split over output rows (n, oh); each output
pixel is formed by accumulating its KH*KW taps into the output row (which
stays in L1) and the bias and activation are fused into the last pass.  For
3x3 filters the interior of each row runs the register-blocked C kernel of
_dw.h (four output pixels per step, channels inner: nine weights and four
accumulators in registers, each shared input vector loaded once) and the
other pixels the register-summing gather kernel with padded taps read from a
zero row.

Depthwise backward.  Input gradient in gather form over input rows (3x3 at
unit stride: the forward kernel on the masked grad_out rows with the flipped
filter); weight gradient split over (chunks of output rows) x (channel
ranges), fixed by the shape (see Determinism), for 3x3 filters on the
4-pixel, channels-inner kernel of _dw.h (sequential streams; see the note
there and in _dw_grad_w3_range).

Pointwise (1x1) convolutions run on the packed GEMM micro-kernels of
_gemm.h in the AVX2/AVX-512 builds (6x16 float / 6x8 double FMA register
tiles, weights packed into column panels, bias + activation in the register
epilogue; design note there), with OpenMP over blocks of pixels (or over
column groups when there are few pixels); the input gradient of a 1x1
convolution is the same kernel on the transposed weights.  The baseline
build, the dense stem convolution and the weight-gradient GEMMs use BLAS
(scipy.linalg.cython_blas, called without the GIL): OpenMP splits the pixels into blocks, each thread calls a
GEMM on its block and applies bias + activation while the block is still in
cache.  The dense stem convolution forms an im2col patch matrix per pixel
block (about 1 MiB) in per-thread scratch and does the same.

Determinism.  No result depends on the number of threads:

* outputs and input gradients are computed pixel by pixel (or by GEMM over
  pixel blocks, whose per-element summation over the reduction axis does not
  depend on how the other axis is blocked; the packed kernels of _gemm.h form
  every element as one FMA chain over the reduction axis in a fixed order);
* weight and bias gradients are split over output elements (channel ranges)
  and over chunks of the reduction axis (output rows, pixels) whose number and
  bounds depend on the shape only, never on the thread count: each chunk sums
  its pixels in order into its own partial sums (depthwise: per output row,
  then total), and the partials are added in chunk order.  A team of any size
  therefore forms every element by the same additions, and layers with few
  channels or few rows still give every thread work.

Separable block.  ``separable_forward`` computes a tile of depthwise output
(about 128 KiB, L2-resident) into per-thread scratch and immediately runs the
pointwise GEMM on it (the packed kernels; the pointwise weights packed once per
call when there are many pixels, block by block in each tile otherwise), so the
intermediate tensor never goes to memory.

All kernels trust their inputs: effai_fast.nn.functional validates shapes,
dtypes, paddings and output buffers, and resolves the thread count.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset
from scipy.linalg.cython_blas cimport dgemm, sgemm

from effai_fast._openmp cimport omp_get_thread_num

cdef extern from *:
    """
    static int effai_conv_cpu_level(void) {
    #if defined(__GNUC__) && defined(__x86_64__)
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
            return 2;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
            return 1;
    #endif
        return 0;
    }
    """
    int effai_conv_cpu_level() nogil


cdef extern from "_dw.h" nogil:
    # Depthwise 3x3 register-blocked kernels (design note there).
    void effai_dw3_blk4_f(const float* r0, const float* r1, const float* r2, const float* w,
                          Py_ssize_t ldw, const float* b, float* o, Py_ssize_t ldo,
                          Py_ssize_t R, Py_ssize_t s1, Py_ssize_t d1, int act)
    void effai_dw3_blk4_d(const double* r0, const double* r1, const double* r2,
                          const double* w, Py_ssize_t ldw, const double* b, double* o,
                          Py_ssize_t ldo, Py_ssize_t R, Py_ssize_t s1, Py_ssize_t d1, int act)
    void effai_dw3_gw4_f(const float* g, const float* y, Py_ssize_t ldg, const float* r0,
                         const float* r1, const float* r2, float* racc, Py_ssize_t ldr,
                         float* raccb, Py_ssize_t R, Py_ssize_t s1, Py_ssize_t d1, int act)
    void effai_dw3_gw4_d(const double* g, const double* y, Py_ssize_t ldg, const double* r0,
                         const double* r1, const double* r2, double* racc, Py_ssize_t ldr,
                         double* raccb, Py_ssize_t R, Py_ssize_t s1, Py_ssize_t d1, int act)
    void effai_dw3_gw1_f(const float* g, const float* y, const float** xs, float* racc,
                         Py_ssize_t ldr, float* raccb, Py_ssize_t R, int act)
    void effai_dw3_gw1_d(const double* g, const double* y, const double** xs, double* racc,
                         Py_ssize_t ldr, double* raccb, Py_ssize_t R, int act)
    void effai_dw_gather_f(float* dst, const float** xs, const float** ws, int n,
                           Py_ssize_t C, const float* b, int act)
    void effai_dw_gather_d(double* dst, const double** xs, const double** ws, int n,
                           Py_ssize_t C, const double* b, int act)
    void effai_dw_gx_row_f(float* gxr, const float** rows, Py_ssize_t KH, Py_ssize_t KW,
                           const float* w, Py_ssize_t C, Py_ssize_t W, const Py_ssize_t* ctab,
                           const float** xs, const float** ws)
    void effai_dw_gx_row_d(double* gxr, const double** rows, Py_ssize_t KH, Py_ssize_t KW,
                           const double* w, Py_ssize_t C, Py_ssize_t W, const Py_ssize_t* ctab,
                           const double** xs, const double** ws)


cdef inline void _dw_gather(floating* dst, const floating** xs, const floating** ws, int n,
                            Py_ssize_t C, const floating* b, int act) noexcept nogil:
    """dst[:C] = act(b + sum_k xs[k][:C] * ws[k][:C]) (b may be NULL; n may be 0)."""
    if floating is float:
        effai_dw_gather_f(dst, xs, ws, n, C, b, act)
    else:
        effai_dw_gather_d(dst, xs, ws, n, C, b, act)


cdef extern from "_gemm.h" nogil:
    # Packed GEMM micro-kernels (see the design note there).
    int EFFAI_GEMM_NATIVE
    int EFFAI_GEMM_NR_F
    int EFFAI_GEMM_NR_D
    size_t effai_packed_size(size_t k, size_t n, size_t nr)
    size_t effai_gemm_work_size(size_t nr)
    void effai_pack_b_f(size_t k, size_t n, const float* b, size_t ldb, float* bp,
                        size_t nr, size_t p0, size_t p1)
    void effai_pack_b_d(size_t k, size_t n, const double* b, size_t ldb, double* bp,
                        size_t nr, size_t p0, size_t p1)
    void effai_gemm_f(size_t m, size_t j0, size_t j1, size_t k, const float* a, size_t lda,
                      const float* bp, const float* b, size_t ldb, float* c, size_t ldc,
                      const float* bias, int act, float* work)
    void effai_gemm_d(size_t m, size_t j0, size_t j1, size_t k, const double* a,
                      size_t lda, const double* bp, const double* b, size_t ldb, double* c,
                      size_t ldc, const double* bias, int act, double* work)


def _cpu_level():
    """0 = baseline, 1 = AVX2+FMA, 2 = AVX-512 (F/BW/VL/DQ) on this CPU."""
    return effai_conv_cpu_level()


def _packed_gemm():
    """True when this build runs the 1x1 convolutions on the packed AVX2+FMA
    micro-kernels of _gemm.h, False when it calls BLAS (the baseline build)."""
    return bool(EFFAI_GEMM_NATIVE)


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------

cdef inline void _gemm(char transa, char transb, int m, int n, int k,
                       const floating* a, int lda, const floating* b, int ldb,
                       floating beta, floating* c, int ldc) noexcept nogil:
    """C = op(A) op(B) + beta C, column-major BLAS convention."""
    cdef floating one = 1
    cdef Py_ssize_t j
    cdef char ta = transa
    cdef char tb = transb
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        # BLAS would scale C by beta; do it here so that lda/ldb never matter.
        if beta == 0:
            for j in range(n):
                memset(c + j * <Py_ssize_t> ldc, 0, <size_t> m * sizeof(floating))
        return
    if floating is float:
        sgemm(&ta, &tb, &m, &n, &k, &one, <float*> a, &lda, <float*> b, &ldb,
              &beta, c, &ldc)
    else:
        dgemm(&ta, &tb, &m, &n, &k, &one, <double*> a, &lda, <double*> b, &ldb,
              &beta, c, &ldc)


cdef inline void _finish(floating* row, Py_ssize_t n, const floating* b,
                         int act) noexcept nogil:
    """row[:n] = act(row[:n] + b) in place (b may be NULL).  NaN propagates."""
    cdef Py_ssize_t c
    cdef floating v
    if b != NULL:
        if act == ACT_NONE:
            for c in range(n):
                row[c] = row[c] + b[c]
        elif act == ACT_RELU:
            for c in range(n):
                v = row[c] + b[c]
                row[c] = 0 if v < 0 else v
        else:
            for c in range(n):
                v = row[c] + b[c]
                row[c] = 0 if v < 0 else (6 if v > 6 else v)
    else:
        if act == ACT_RELU:
            for c in range(n):
                v = row[c]
                row[c] = 0 if v < 0 else v
        elif act == ACT_RELU6:
            for c in range(n):
                v = row[c]
                row[c] = 0 if v < 0 else (6 if v > 6 else v)


cdef inline void _mask(floating* dst, const floating* g, const floating* y,
                       Py_ssize_t n, int act) noexcept nogil:
    """dst = g * act'(y): the gradient before the activation."""
    cdef Py_ssize_t c
    if act == ACT_RELU:
        for c in range(n):
            dst[c] = g[c] if y[c] > 0 else 0
    elif act == ACT_RELU6:
        for c in range(n):
            dst[c] = g[c] if (y[c] > 0 and y[c] < 6) else 0
    else:
        memcpy(dst, g, n * sizeof(floating))


cdef inline Py_ssize_t _split(Py_ssize_t n_blocks, Py_ssize_t n_parts,
                              Py_ssize_t i) noexcept nogil:
    """Start of part i when n_blocks are split into n_parts contiguous parts."""
    return (i * n_blocks) // n_parts


cdef inline void _pw_finish_block(floating* o, Py_ssize_t npix, Py_ssize_t C,
                                  const floating* b, int act) noexcept nogil:
    cdef Py_ssize_t p
    if b == NULL:
        _finish(o, npix * C, b, act)
    else:
        for p in range(npix):
            _finish(o + p * C, C, b, act)


cdef enum:
    _CB = 64    # channels per register-blocked sweep of the 3x3 path


cdef inline void _store(floating* dst, const floating* src, const floating* b,
                        Py_ssize_t n, int act) noexcept nogil:
    """dst[:n] = act(src[:n] + b[:n]) (b may be NULL).  NaN propagates."""
    cdef Py_ssize_t c
    cdef floating v
    if b != NULL:
        if act == ACT_NONE:
            for c in range(n):
                dst[c] = src[c] + b[c]
        elif act == ACT_RELU:
            for c in range(n):
                v = src[c] + b[c]
                dst[c] = 0 if v < 0 else v
        else:
            for c in range(n):
                v = src[c] + b[c]
                dst[c] = 0 if v < 0 else (6 if v > 6 else v)
    else:
        if act == ACT_NONE:
            for c in range(n):
                dst[c] = src[c]
        elif act == ACT_RELU:
            for c in range(n):
                v = src[c]
                dst[c] = 0 if v < 0 else v
        else:
            for c in range(n):
                v = src[c]
                dst[c] = 0 if v < 0 else (6 if v > 6 else v)


# ---------------------------------------------------------------------------
# depthwise forward
# ---------------------------------------------------------------------------

cdef inline void _dw3x3_block4(const floating* r0, const floating* r1, const floating* r2,
                              const floating* w, const floating* b, floating* op,
                              Py_ssize_t C, Py_ssize_t sw, Py_ssize_t dw, int act,
                              floating* acc) noexcept nogil:
    """Four adjacent output pixels of a 3x3 depthwise filter, all taps valid.

    r0, r1, r2 point at the input rows (a zero row for taps in the padding),
    already offset to the first tap's column.  The C kernel effai_dw3_blk4
    (_dw.h) keeps the nine weights and the four accumulators of a channel
    vector in registers and applies the bias and activation before the only
    store.  Taps are summed in (kh, kw) order, as in the general path.
    ``acc`` is unused (kept for the callers' signature).
    """
    if floating is float:
        effai_dw3_blk4_f(r0, r1, r2, w, C, b, op, C, C, sw * C, dw * C, act)
    else:
        effai_dw3_blk4_d(r0, r1, r2, w, C, b, op, C, C, sw * C, dw * C, act)


cdef inline void _dw3x3_px1(const floating* r0, const floating* r1, const floating* r2,
                           Py_ssize_t i0, Py_ssize_t i1, Py_ssize_t i2,
                           const floating* zrow, const floating* w, const floating* b,
                           floating* op, Py_ssize_t C, int act,
                           floating* acc) noexcept nogil:
    """One output pixel of a 3x3 depthwise filter, taps in the padding included.

    ``r0..r2`` are the three input rows (``zrow`` for rows in the padding) and
    ``i0..i2`` the element offsets of the three tap columns in a row, or -1 for
    a column in the padding (read from ``zrow`` instead).  Every tap is summed,
    padded ones as ``0 * w``, in the (kh, kw) order of :func:`_dw3x3_block4`
    (effai_dw_gather: the sums stay in registers, bias and activation applied
    on the way out).  ``acc`` is unused.
    """
    cdef const floating* xs[9]
    cdef const floating* ws[9]
    cdef int k
    xs[0] = (r0 + i0) if i0 >= 0 else zrow
    xs[1] = (r0 + i1) if i1 >= 0 else zrow
    xs[2] = (r0 + i2) if i2 >= 0 else zrow
    xs[3] = (r1 + i0) if i0 >= 0 else zrow
    xs[4] = (r1 + i1) if i1 >= 0 else zrow
    xs[5] = (r1 + i2) if i2 >= 0 else zrow
    xs[6] = (r2 + i0) if i0 >= 0 else zrow
    xs[7] = (r2 + i1) if i1 >= 0 else zrow
    xs[8] = (r2 + i2) if i2 >= 0 else zrow
    for k in range(9):
        ws[k] = w + k * C
    _dw_gather(op, xs, ws, 9, C, b, act)


cdef void _dw_pixels(const floating* xn, const floating* w, const floating* b,
                     floating* o, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                     Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t ih0,
                     Py_ssize_t ow0, Py_ssize_t ow1, Py_ssize_t sw,
                     Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pl,
                     int act, const floating* zrow,
                     const floating** rowp) noexcept nogil:
    """Output pixels ow0..ow1-1 of one output row; ``o`` points at pixel ow0.

    ``xn`` is the start of the input image, ``ih0 = oh*stride_h - pad_top``,
    ``zrow`` a row of W*C zeros that stands in for rows in the padding.
    ``rowp``, if not NULL, gives the KH (= 3) input rows directly (already
    resolved to ``zrow`` outside the image); ``xn`` and ``ih0`` are then unused.
    3x3 filters (with ``zrow``): the columns whose taps are all inside the
    image run four pixels at a time; the border columns and the last few
    interior ones run one pixel at a time with the padded taps read from
    ``zrow`` (no branch, no read-modify-write of the output).  Other filters
    take the general path.
    """
    cdef Py_ssize_t ow, kh, kw, c, ih, iw, iw0
    cdef Py_ssize_t ow_lo = 0, ow_hi = 0
    cdef floating* op
    cdef const floating* xp
    cdef const floating* wp
    cdef const floating* r0 = NULL
    cdef const floating* r1 = NULL
    cdef const floating* r2 = NULL
    cdef bint fast = False
    cdef const floating* xr
    cdef floating acc[4 * _CB]
    cdef Py_ssize_t i0, i1, i2

    if KH == 3 and KW == 3 and zrow != NULL:
        # first ow with ow*sw - pl >= 0
        ow_lo = (pl + sw - 1) // sw
        if ow_lo < ow0:
            ow_lo = ow0
        # last ow (exclusive) with ow*sw - pl + 2*dw <= W-1
        ow_hi = W - 1 - 2 * dw + pl
        ow_hi = ow_hi // sw + 1 if ow_hi >= 0 else 0
        if ow_hi > ow1:
            ow_hi = ow1
        if ow_hi < ow_lo:
            ow_hi = ow_lo
        fast = True
        if rowp != NULL:
            r0 = rowp[0]
            r1 = rowp[1]
            r2 = rowp[2]
        else:
            ih = ih0
            r0 = (xn + ih * W * C) if 0 <= ih < H else zrow
            ih = ih0 + dh
            r1 = (xn + ih * W * C) if 0 <= ih < H else zrow
            ih = ih0 + 2 * dh
            r2 = (xn + ih * W * C) if 0 <= ih < H else zrow

    ow = ow0
    while ow < ow1:
        if fast:
            if ow_lo <= ow and ow + 4 <= ow_hi:
                iw0 = (ow * sw - pl) * C
                _dw3x3_block4(r0 + iw0, r1 + iw0, r2 + iw0, w, b, o + (ow - ow0) * C,
                              C, sw, dw, act, acc)
                ow = ow + 4
                continue
            iw = ow * sw - pl
            i0 = iw * C if 0 <= iw < W else -1
            iw = iw + dw
            i1 = iw * C if 0 <= iw < W else -1
            iw = iw + dw
            i2 = iw * C if 0 <= iw < W else -1
            _dw3x3_px1(r0, r1, r2, i0, i1, i2, zrow, w, b, o + (ow - ow0) * C, C, act, acc)
            ow = ow + 1
            continue
        # general path: one pixel, taps accumulated in the output row
        op = o + (ow - ow0) * C
        memset(op, 0, C * sizeof(floating))
        iw0 = ow * sw - pl
        for kh in range(KH):
            if rowp != NULL:
                xr = rowp[kh]
            else:
                ih = ih0 + kh * dh
                if ih < 0 or ih >= H:
                    continue
                xr = xn + ih * W * C
            for kw in range(KW):
                iw = iw0 + kw * dw
                if iw < 0 or iw >= W:
                    continue
                xp = xr + iw * C
                wp = w + (kh * KW + kw) * C
                for c in range(C):
                    op[c] = op[c] + xp[c] * wp[c]
        if b != NULL or act != ACT_NONE:
            _finish(op, C, b, act)
        ow = ow + 1


cdef void depthwise_forward(
    const floating[:, :, :, ::1] x,
    const floating[:, :, ::1] weight,
    const floating[::1] bias,
    floating[:, :, :, ::1] out,
    int stride_h, int stride_w, int dil_h, int dil_w,
    int pad_top, int pad_left, int activation, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t KH = weight.shape[0], KW = weight.shape[1]
    cdef Py_ssize_t OH = out.shape[1], OW = out.shape[2]
    cdef Py_ssize_t r, n, oh
    cdef const floating* b = &bias[0] if bias.shape[0] > 0 else NULL
    if N == 0 or OH == 0 or OW == 0 or C == 0:
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef const floating* wp = &weight[0, 0, 0]
    cdef floating* op = &out[0, 0, 0, 0]
    # A row of zeros stands in for input rows in the padding (3x3 fast path).
    cdef floating* zrow = <floating*> calloc(W * C, sizeof(floating))
    # guided: a thread that the OS schedules late (a shared machine) finds the
    # rows taken by the others instead of holding the whole call up.
    for r in prange(N * OH, schedule="guided", num_threads=n_threads):
        n = r // OH
        oh = r - n * OH
        _dw_pixels(xp + n * H * W * C, wp, b, op + r * OW * C, H, W, C, KH, KW,
                   oh * stride_h - pad_top, 0, OW, stride_w, dil_h, dil_w,
                   pad_left, activation, zrow, NULL)
    free(zrow)


# ---------------------------------------------------------------------------
# depthwise backward
# ---------------------------------------------------------------------------

cdef void _dw_gx_row(const floating* g, const floating* y, const floating* w,
                    const floating* wflip, const floating* zrow,
                    floating* gxr, floating* mbuf, Py_ssize_t* keys,
                    const floating** rowsg, const floating** taps, Py_ssize_t n,
                    Py_ssize_t ih, Py_ssize_t H, Py_ssize_t W, Py_ssize_t C,
                    Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW,
                    Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw,
                    Py_ssize_t pt, Py_ssize_t pl, int act,
                    const Py_ssize_t* ctab) noexcept nogil:
    """Input gradient of input row ``ih`` of image ``n`` (gather form).

    ``g``/``y`` are the whole grad_out / forward output, ``gxr`` the grad_x
    row.  With an activation, ``mbuf`` is a ring of KH masked grad_out rows
    whose (image, row) keys are ``keys[:KH]`` (``keys[KH:]`` is scratch); rows
    already in the ring are not masked again.  ``rowsg`` (KH) and ``taps``
    (2*KH*KW) are scratch.  For 3x3 filters at unit stride, ``wflip`` (the
    filter flipped in both axes) and ``zrow`` (OW*C zeros) run the row as a
    forward convolution of the masked rows on the register-blocked 3x3 path
    (four pixels per sweep, sharing loads); otherwise they may be NULL.  The
    other cases gather the taps of each input pixel in C (effai_dw_gx_row)
    from ``ctab``, the column taps of every input column (computed once per
    call).
    """
    cdef Py_ssize_t kh, kw, t, u, oh, ow, iw, s, j, m, key
    cdef Py_ssize_t* need = keys + KH
    cdef bint free_slot
    cdef int k
    cdef const floating** ws = taps + KH * KW
    for kh in range(KH):
        need[kh] = -1
        rowsg[kh] = NULL
        t = ih + pt - kh * dh
        if t < 0 or t % sh != 0:
            continue
        oh = t // sh
        if oh >= OH:
            continue
        need[kh] = n * OH + oh
        if act == ACT_NONE:
            rowsg[kh] = g + need[kh] * OW * C
    if act != ACT_NONE:
        for kh in range(KH):
            key = need[kh]
            if key < 0:
                continue
            m = -1
            for s in range(KH):
                if keys[s] == key:
                    m = s
                    break
            if m < 0:
                # a slot whose row this input row does not need
                for s in range(KH):
                    free_slot = True
                    for j in range(KH):
                        if need[j] >= 0 and need[j] == keys[s]:
                            free_slot = False
                            break
                    if free_slot:
                        m = s
                        break
                _mask(mbuf + m * OW * C, g + key * OW * C, y + key * OW * C, OW * C, act)
                keys[m] = key
            rowsg[kh] = mbuf + m * OW * C
    if wflip != NULL and KH == 3 and KW == 3 and sh == 1 and sw == 1:
        # flipped filter: forward tap k reads grad_out row of kh = 2 - k
        for k in range(3):
            taps[k] = rowsg[2 - k] if rowsg[2 - k] != NULL else zrow
        _dw_pixels(g, wflip, <const floating*> NULL, gxr, OH, OW, C, 3, 3, 0, 0, W, 1, dh,
                   dw, 2 * dw - pl, ACT_NONE, zrow, taps)
        return
    if floating is float:
        effai_dw_gx_row_f(gxr, rowsg, KH, KW, w, C, W, ctab, taps, ws)
    else:
        effai_dw_gx_row_d(gxr, rowsg, KH, KW, w, C, W, ctab, taps, ws)


cdef inline void _dw_gw4(const floating* g, const floating* y, Py_ssize_t ldg,
                         const floating* r0, const floating* r1, const floating* r2,
                         floating* racc, Py_ssize_t ldr, floating* raccb, Py_ssize_t R,
                         Py_ssize_t s1, Py_ssize_t d1, int act) noexcept nogil:
    """3x3 weight/bias gradient of four interior output pixels (effai_dw3_gw4)."""
    if floating is float:
        effai_dw3_gw4_f(g, y, ldg, r0, r1, r2, racc, ldr, raccb, R, s1, d1, act)
    else:
        effai_dw3_gw4_d(g, y, ldg, r0, r1, r2, racc, ldr, raccb, R, s1, d1, act)


cdef inline void _dw_gw1(const floating* g, const floating* y, const floating** xs,
                         floating* racc, Py_ssize_t ldr, floating* raccb, Py_ssize_t R,
                         int act) noexcept nogil:
    """3x3 weight/bias gradient of one output pixel, NULL taps skipped (effai_dw3_gw1)."""
    if floating is float:
        effai_dw3_gw1_f(g, y, xs, racc, ldr, raccb, R, act)
    else:
        effai_dw3_gw1_d(g, y, xs, racc, ldr, raccb, R, act)


cdef void _dw_grad_w3_range(const floating* x, const floating* g, const floating* y,
                            floating* gw, floating* gb, floating* scratch,
                            Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t H, Py_ssize_t W,
                            Py_ssize_t C, Py_ssize_t OH, Py_ssize_t OW,
                            Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t sh, Py_ssize_t sw,
                            Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl,
                            int act) noexcept nogil:
    """:func:`_dw_grad_w_range` for 3x3 filters (any stride, dilation, padding).

    Channels go in chunks of 1 KiB (the per-row sums of a chunk stay in L1);
    within a chunk, rows in order (n, oh), and within a row the interior
    columns four pixels at a time (effai_dw3_gw4, input rows in the padding
    skipped), then the other pixels one at a time (effai_dw3_gw1, taps in the
    padding skipped).  The per-row sums are added to the total in row order.
    The summation order of a channel depends on the shape only (not on the
    chunking, nor on the channel range a thread was given).
    """
    cdef Py_ssize_t R = c1 - c0
    cdef Py_ssize_t CH = 1024 // sizeof(floating)
    # Per-row sums of a chunk, tap rows LDR apart: one cache line more than the
    # chunk, so that the nine rows do not share their address bits 0-11 (with
    # a 4 KiB row stride every store to them stalled the loads of the input
    # rows that alias them: "4K aliasing", 3x slower at 7x7x1024).
    cdef Py_ssize_t LDR = CH + 64 // sizeof(floating)
    cdef floating* acc = scratch                  # 9*R   total
    cdef floating* accb = scratch + 9 * R         # R
    cdef floating* racc = scratch + 10 * R        # 9*LDR this row, this chunk
    cdef floating* raccb = racc + 9 * LDR         # LDR
    cdef Py_ssize_t q0, Rc, r, n, oh, ow, kh, kw, ih, iw, iw0, ih0, c, k, t, ow_lo, ow_hi
    cdef const floating* gr
    cdef const floating* yr
    cdef const floating* rows3[3]
    cdef const floating* xs[9]
    ow_lo = (pl + sw - 1) // sw             # interior columns: all three taps inside
    ow_hi = W - 1 - 2 * dw + pl
    ow_hi = ow_hi // sw + 1 if ow_hi >= 0 else 0
    if ow_hi > OW:
        ow_hi = OW
    if ow_hi < ow_lo:
        ow_hi = ow_lo
    ow_hi = ow_lo + (ow_hi - ow_lo) // 4 * 4  # whole blocks of four; the rest go singly
    memset(acc, 0, 10 * R * sizeof(floating))
    q0 = 0
    while q0 < R:
        Rc = R - q0
        if Rc > CH:
            Rc = CH
        for r in range(r0, r1):
            n = r // OH
            oh = r - n * OH
            memset(racc, 0, 10 * LDR * sizeof(floating))
            ih0 = oh * sh - pt
            gr = g + (n * OH + oh) * OW * C + c0 + q0
            yr = (y + (n * OH + oh) * OW * C + c0 + q0) if act != ACT_NONE else NULL
            for kh in range(3):
                ih = ih0 + kh * dh
                rows3[kh] = (x + (n * H + ih) * W * C + c0 + q0) if 0 <= ih < H else NULL
            ow = ow_lo
            while ow < ow_hi:
                k = (ow * sw - pl) * C
                _dw_gw4(gr + ow * C, (yr + ow * C) if yr != NULL else NULL, C,
                        (rows3[0] + k) if rows3[0] != NULL else NULL,
                        (rows3[1] + k) if rows3[1] != NULL else NULL,
                        (rows3[2] + k) if rows3[2] != NULL else NULL,
                        racc, LDR, raccb, Rc, sw * C, dw * C, act)
                ow = ow + 4
            for ow in range(OW):
                if ow_lo <= ow < ow_hi:
                    continue
                iw0 = ow * sw - pl
                for kh in range(3):
                    for kw in range(3):
                        iw = iw0 + kw * dw
                        xs[3 * kh + kw] = (rows3[kh] + iw * C) if (
                            rows3[kh] != NULL and 0 <= iw < W) else NULL
                _dw_gw1(gr + ow * C, (yr + ow * C) if yr != NULL else NULL, xs,
                        racc, LDR, raccb, Rc, act)
            for t in range(9):
                for c in range(Rc):
                    acc[t * R + q0 + c] = acc[t * R + q0 + c] + racc[t * LDR + c]
            for c in range(Rc):
                accb[q0 + c] = accb[q0 + c] + raccb[c]
        q0 = q0 + Rc
    for t in range(9):
        memcpy(gw + t * C + c0, acc + t * R, R * sizeof(floating))
    if gb != NULL:
        memcpy(gb + c0, accb, R * sizeof(floating))


cdef void _dw_grad_w_range(const floating* x, const floating* g, const floating* y,
                           floating* gw, floating* gb, floating* scratch,
                           Py_ssize_t r0, Py_ssize_t r1, Py_ssize_t H, Py_ssize_t W,
                           Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW, Py_ssize_t OH,
                           Py_ssize_t OW,
                           Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t sh, Py_ssize_t sw,
                           Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt, Py_ssize_t pl,
                           int act) noexcept nogil:
    """Weight (and bias) gradient for channels c0..c1-1, summed over the output
    rows r0..r1-1 (row r = n * OH + oh), written to gw[t * C + c], gb[c].

    Pixel order is fixed (n, oh, ow); sums are formed per output row and then
    added to the total, which keeps float32 error small on large batches.
    """
    cdef Py_ssize_t R = c1 - c0
    cdef Py_ssize_t T = KH * KW
    cdef floating* acc = scratch                  # T*R   total
    cdef floating* racc = scratch + T * R         # T*R   this row
    cdef floating* accb = scratch + 2 * T * R     # R
    cdef floating* raccb = scratch + 2 * T * R + R  # R
    cdef floating* gml = scratch + 2 * T * R + 2 * R  # R
    cdef Py_ssize_t r, n, oh, ow, kh, kw, ih, iw, iw0, ih0, c, k, ow_lo, ow_hi
    cdef const floating* gp
    cdef const floating* xp
    cdef const floating* xr
    cdef floating* ap
    if KH == 3 and KW == 3:
        _dw_grad_w3_range(x, g, y, gw, gb, scratch, r0, r1, H, W, C, OH, OW, c0, c1, sh,
                          sw, dh, dw, pt, pl, act)
        return
    memset(acc, 0, (2 * T * R + 2 * R) * sizeof(floating))
    for r in range(r0, r1):
        n = r // OH
        oh = r - n * OH
        memset(racc, 0, T * R * sizeof(floating))
        memset(raccb, 0, R * sizeof(floating))
        ih0 = oh * sh - pt
        ow_lo = 0
        ow_hi = 0
        for ow in range(OW):
            if ow_lo <= ow < ow_hi:
                continue
            gp = g + ((n * OH + oh) * OW + ow) * C + c0
            if act != ACT_NONE:
                _mask(gml, gp, y + ((n * OH + oh) * OW + ow) * C + c0, R, act)
                gp = gml
            for c in range(R):
                raccb[c] = raccb[c] + gp[c]
            iw0 = ow * sw - pl
            for kh in range(KH):
                ih = ih0 + kh * dh
                if ih < 0 or ih >= H:
                    continue
                for kw in range(KW):
                    iw = iw0 + kw * dw
                    if iw < 0 or iw >= W:
                        continue
                    xp = x + ((n * H + ih) * W + iw) * C + c0
                    ap = racc + (kh * KW + kw) * R
                    for c in range(R):
                        ap[c] = ap[c] + gp[c] * xp[c]
        for k in range(T * R):
            acc[k] = acc[k] + racc[k]
        for c in range(R):
            accb[c] = accb[c] + raccb[c]
    for k in range(T):
        memcpy(gw + k * C + c0, acc + k * R, R * sizeof(floating))
    if gb != NULL:
        memcpy(gb + c0, accb, R * sizeof(floating))


cdef void _dw_sum_partials(const floating* part, floating* dst, Py_ssize_t k0,
                           Py_ssize_t n, Py_ssize_t n_parts,
                           Py_ssize_t ld) noexcept nogil:
    """dst[k] = part[0][k] + part[1][k] + ... (in that order), k0 <= k < k0 + 1024, k < n."""
    cdef Py_ssize_t k1 = k0 + 1024 if k0 + 1024 < n else n
    cdef Py_ssize_t j, k
    if k1 <= k0:
        return
    memcpy(dst + k0, part + k0, (k1 - k0) * sizeof(floating))
    for j in range(1, n_parts):
        for k in range(k0, k1):
            dst[k] = dst[k] + part[j * ld + k]


cdef void depthwise_backward(
    const floating[:, :, :, ::1] x,
    const floating[:, :, ::1] weight,
    const floating[:, :, :, ::1] grad_out,
    const floating[:, :, :, ::1] y,
    floating[:, :, :, ::1] grad_x,
    floating[:, :, ::1] grad_weight,
    floating[::1] grad_bias,
    int stride_h, int stride_w, int dil_h, int dil_w,
    int pad_top, int pad_left, int activation, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t KH = weight.shape[0], KW = weight.shape[1]
    cdef Py_ssize_t OH = grad_out.shape[1], OW = grad_out.shape[2]
    cdef Py_ssize_t r, n, ih, i, j, c0, c1, n_blocks, align, NR, n_rc, n_cp, n_items, T
    cdef int act = activation
    cdef floating* scratch
    cdef floating* partial
    cdef floating* gb = &grad_bias[0] if grad_bias.shape[0] > 0 else NULL
    cdef floating* gwp = &grad_weight[0, 0, 0]
    if C == 0:
        return
    if N == 0 or OH == 0 or OW == 0:
        memset(gwp, 0, KH * KW * C * sizeof(floating))
        if gb != NULL:
            memset(gb, 0, C * sizeof(floating))
        if grad_x.shape[0] > 0 and N > 0:
            memset(&grad_x[0, 0, 0, 0], 0, N * H * W * C * sizeof(floating))
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef const floating* wp = &weight[0, 0, 0]
    cdef const floating* gp = &grad_out[0, 0, 0, 0]
    cdef const floating* yp = &y[0, 0, 0, 0] if act != ACT_NONE else NULL
    cdef floating* gxp
    cdef floating* mbuf
    cdef floating* wflip
    cdef floating* zrow
    cdef Py_ssize_t* keys
    cdef Py_ssize_t* ctab
    cdef Py_ssize_t* e
    cdef Py_ssize_t iw, kw, u
    cdef const floating** rowsg
    cdef const floating** taps
    cdef Py_ssize_t k

    if grad_x.shape[0] > 0:
        # Gather form: every grad_x element is written once, by one thread, as
        # a sum over its valid taps in (kh, kw) order (effai_dw_gather keeps
        # the sums in registers).  With a fused activation the grad_out rows
        # are masked once into a per-thread ring of KH rows: a thread's input
        # rows are contiguous (static schedule), so consecutive input rows
        # reuse the masked output rows of the previous ones.
        gxp = &grad_x[0, 0, 0, 0]
        wflip = NULL
        zrow = NULL
        if KH == 3 and KW == 3 and stride_h == 1 and stride_w == 1:
            wflip = <floating*> malloc(9 * C * sizeof(floating))
            zrow = <floating*> calloc(OW * C, sizeof(floating))
            if wflip == NULL or zrow == NULL:
                free(wflip)
                free(zrow)
                wflip = NULL
                zrow = NULL
            else:
                for k in range(9):
                    memcpy(wflip + k * C, wp + (8 - k) * C, C * sizeof(floating))
        # column taps of every input column: count, then (kw, ow) pairs
        ctab = <Py_ssize_t*> malloc(W * (1 + 2 * KW) * sizeof(Py_ssize_t))
        if ctab != NULL:
            for iw in range(W):
                e = ctab + iw * (1 + 2 * KW)
                e[0] = 0
                for kw in range(KW):
                    u = iw + pad_left - kw * dil_w
                    if u < 0 or u % stride_w != 0 or u // stride_w >= OW:
                        continue
                    e[1 + 2 * e[0]] = kw
                    e[2 + 2 * e[0]] = u // stride_w
                    e[0] = e[0] + 1
        with parallel(num_threads=n_threads):
            mbuf = <floating*> malloc(KH * OW * C * sizeof(floating)) if act != ACT_NONE \
                else NULL
            keys = <Py_ssize_t*> malloc(2 * KH * sizeof(Py_ssize_t))
            rowsg = <const floating**> malloc(KH * sizeof(floating*))
            taps = <const floating**> malloc(2 * KH * KW * sizeof(floating*))
            if keys != NULL:
                for k in range(KH):
                    keys[k] = -1
            for r in prange(N * H, schedule="static"):
                if keys == NULL or rowsg == NULL or taps == NULL or ctab == NULL or (
                        act != ACT_NONE and mbuf == NULL):
                    continue
                n = r // H
                ih = r - n * H
                _dw_gx_row(gp, yp, wp, wflip, zrow, gxp + r * W * C, mbuf, keys, rowsg, taps,
                           n, ih,
                           H, W, C, KH, KW, OH, OW, stride_h, stride_w, dil_h, dil_w,
                           pad_top, pad_left, act, ctab)
            free(mbuf)
            free(keys)
            free(rowsg)
            free(taps)
        free(wflip)
        free(zrow)
        free(ctab)

    # Weight gradient: work items are (chunk of output rows) x (range of channels).
    # The rows are cut into at most 8 chunks and the channels into cache-line-
    # aligned ranges such that there are about 8 items, both fixed by the shape
    # (never by the thread count).  Each item sums its rows (per row, then in row
    # order) into the chunk's partial sums; the partials are then added in chunk
    # order.  Every element is thus summed in an order that depends on the shape
    # only, and a batch-1 layer (few channel blocks, or few rows) or a layer with
    # few channels (16-32 channels of a small student) still gives every thread
    # work.
    align = 64 // sizeof(floating)
    n_blocks = (C + align - 1) // align
    NR = N * OH
    n_rc = NR if NR < 8 else 8
    n_cp = (8 + n_rc - 1) // n_rc
    if n_cp > n_blocks:
        n_cp = n_blocks
    T = KH * KW
    partial = NULL
    if n_rc > 1:
        partial = <floating*> malloc(n_rc * (T + 1) * C * sizeof(floating))
        if partial == NULL:
            n_rc = 1
    n_items = n_rc * n_cp
    if n_threads > n_items:
        n_threads = <int> n_items
    with parallel(num_threads=n_threads):
        # general path: 2*T+3 rows of the range; 3x3 path: 10 rows of the range
        # plus 10 padded rows of a 1 KiB chunk (_dw_grad_w3_range)
        scratch = <floating*> malloc(
            ((2 * T + 3) * (n_blocks // n_cp + 1) * align
             + 10 * ((1024 + 64) // sizeof(floating))) * sizeof(floating))
        for i in prange(n_items, schedule="dynamic"):
            j = i // n_cp
            c0 = _split(n_blocks, n_cp, i % n_cp) * align
            c1 = _split(n_blocks, n_cp, i % n_cp + 1) * align
            if c1 > C:
                c1 = C
            if scratch != NULL and c1 > c0:
                if partial == NULL:
                    _dw_grad_w_range(xp, gp, yp, gwp, gb, scratch, 0, NR, H, W, C, KH, KW,
                                     OH, OW, c0, c1, stride_h, stride_w, dil_h, dil_w,
                                     pad_top, pad_left, act)
                else:
                    _dw_grad_w_range(xp, gp, yp, partial + j * (T + 1) * C,
                                     (partial + j * (T + 1) * C + T * C) if gb != NULL
                                     else NULL, scratch,
                                     _split(NR, n_rc, j), _split(NR, n_rc, j + 1), H, W, C,
                                     KH, KW, OH, OW, c0, c1, stride_h, stride_w, dil_h,
                                     dil_w, pad_top, pad_left, act)
        free(scratch)
        if partial != NULL:
            # the chunks' partial sums, added in chunk order, over ranges of elements
            for i in prange((T * C + 1023) // 1024 + (C + 1023) // 1024, schedule="static"):
                if i < (T * C + 1023) // 1024:
                    _dw_sum_partials(partial, gwp, i * 1024, T * C, n_rc, (T + 1) * C)
                elif gb != NULL:
                    _dw_sum_partials(partial + T * C, gb, (i - (T * C + 1023) // 1024) * 1024,
                                     C, n_rc, (T + 1) * C)
    free(partial)


# ---------------------------------------------------------------------------
# pointwise (1x1): GEMM over pixels
# ---------------------------------------------------------------------------

cdef inline Py_ssize_t _block(Py_ssize_t P, Py_ssize_t bytes_per_row,
                              Py_ssize_t budget) noexcept nogil:
    """Rows per GEMM block: about ``budget`` bytes, a multiple of 64 rows.

    Depends on the shape only, never on the thread count: BLAS kernels treat
    the edges of a matrix with other micro-kernels (another summation order),
    so a blocking that moved with n_threads would move the rounding too.
    """
    cdef Py_ssize_t pb = (budget // (bytes_per_row + 1)) // 64 * 64
    if pb < 64:
        pb = 64
    if pb > P:
        pb = P
    if pb < 1:
        pb = 1
    return pb


# BLAS takes 32-bit ints (LP64): a reduction longer than this is cut into
# chunks accumulated in order (beta = 1 after the first), so a GEMM over more
# than 2^31 pixels stays exact in its indexing.  Shorter reductions are one
# call, bit for bit as before.
cdef Py_ssize_t _GEMM_K_MAX = 1 << 30


cdef inline void _gemm_long_k(char transa, char transb, int m, int n, Py_ssize_t k,
                              const floating* a, int lda, const floating* b, int ldb,
                              floating* c, int ldc, Py_ssize_t k_max) noexcept nogil:
    """C = op(A) op(B) for a reduction length ``k`` that may exceed INT_MAX.

    Only the 'N','T' and 'T','N' forms used here: for transa = 'N' the k index
    of A runs over its columns (stride lda), for transa = 'T' over its rows
    (unit stride per column, i.e. offset k0); likewise for B.
    """
    cdef Py_ssize_t k0 = 0, kc
    cdef Py_ssize_t a_step = lda if transa == c'N' else 1
    cdef Py_ssize_t b_step = 1 if transb == c'N' else ldb
    if k <= 0:
        _gemm(transa, transb, m, n, 0, a, lda, b, ldb, 0, c, ldc)
        return
    while k0 < k:
        kc = k - k0
        if kc > k_max:
            kc = k_max
        _gemm(transa, transb, m, n, <int> kc, a + k0 * a_step, lda, b + k0 * b_step, ldb,
              0 if k0 == 0 else 1, c, ldc)
        k0 += kc


cdef void _col_sums(const floating* g, floating* out, Py_ssize_t P, Py_ssize_t C,
                    int n_threads) noexcept nogil:
    """out[j] = sum_p g[p, j]: split over columns, pixel order fixed, two-level sum."""
    cdef Py_ssize_t align = 64 // sizeof(floating)
    cdef Py_ssize_t n_blocks = (C + align - 1) // align
    cdef Py_ssize_t n_parts = n_threads if n_threads < n_blocks else n_blocks
    cdef Py_ssize_t i, j, p, p0, p1, c0, c1
    cdef floating* part
    cdef const floating* row
    if n_parts < 1:
        return
    with parallel(num_threads=n_parts):
        part = <floating*> malloc(C * sizeof(floating))
        for i in prange(n_parts, schedule="static"):
            c0 = _split(n_blocks, n_parts, i) * align
            c1 = _split(n_blocks, n_parts, i + 1) * align
            if c1 > C:
                c1 = C
            if part != NULL and c1 > c0:
                memset(out + c0, 0, (c1 - c0) * sizeof(floating))
                p0 = 0
                while p0 < P:
                    p1 = p0 + 256
                    if p1 > P:
                        p1 = P
                    memset(part, 0, (c1 - c0) * sizeof(floating))
                    for p in range(p0, p1):
                        row = g + p * C + c0
                        for j in range(c1 - c0):
                            part[j] = part[j] + row[j]
                    for j in range(c1 - c0):
                        out[c0 + j] = out[c0 + j] + part[j]
                    p0 = p1
        free(part)


cdef inline Py_ssize_t _nr(floating dummy) noexcept nogil:
    """Columns per packed panel of B: 16 floats / 8 doubles (two AVX2 vectors)."""
    if floating is float:
        return EFFAI_GEMM_NR_F
    else:
        return EFFAI_GEMM_NR_D


cdef inline void* _align64(void* raw) noexcept nogil:
    return <void*> ((<size_t> raw + 63) & ~(<size_t> 63))


cdef inline void _pack_b(const floating* w, Py_ssize_t K, Py_ssize_t N, floating* bp,
                         Py_ssize_t p0, Py_ssize_t p1) noexcept nogil:
    """Panels [p0, p1) of the (K, N) row-major matrix w into bp (see _gemm.h)."""
    if floating is float:
        effai_pack_b_f(K, N, w, N, bp, EFFAI_GEMM_NR_F, p0, p1)
    else:
        effai_pack_b_d(K, N, w, N, bp, EFFAI_GEMM_NR_D, p0, p1)


cdef inline void _pgemm(Py_ssize_t m, Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t K,
                        const floating* a, Py_ssize_t lda, const floating* bp,
                        floating* c, Py_ssize_t ldc, const floating* bias, int act,
                        floating* work) noexcept nogil:
    """c[:m, j0:j1] = act(a[:m] @ B[:, j0:j1] + bias[j0:j1]) on packed B (_gemm.h)."""
    if floating is float:
        effai_gemm_f(m, j0, j1, K, a, lda, bp, NULL, 0, c, ldc, bias, act, work)
    else:
        effai_gemm_d(m, j0, j1, K, a, lda, bp, NULL, 0, c, ldc, bias, act, work)


cdef void _gemm_pixel_blocks(char transw, const floating* xp, const floating* wp,
                             const floating* b, floating* op, Py_ssize_t P,
                             Py_ssize_t n_in, Py_ssize_t n_out, int activation,
                             int n_threads) noexcept nogil:
    """The BLAS path: op (P, n_out) = xp (P, n_in) @ W, one GEMM per block of pixels
    (about 256 KiB of output each, OpenMP over blocks), then bias + activation.
    W is (n_in, n_out) for ``transw`` 'N'; for 'T' it is stored (n_out, n_in) and
    used transposed (the input gradient of a 1x1 convolution)."""
    cdef Py_ssize_t pb, nb, i, p0, p1
    cdef int ldw = <int> (n_out if transw == c'N' else n_in)
    pb = _block(P, n_out * sizeof(floating), 256 * 1024)
    nb = (P + pb - 1) // pb
    for i in prange(nb, schedule="static", num_threads=n_threads):
        p0 = i * pb
        p1 = p0 + pb
        if p1 > P:
            p1 = P
        _gemm(transw, c'N', <int> n_out, <int> (p1 - p0), <int> n_in, wp, ldw,
              xp + p0 * n_in, <int> n_in, 0, op + p0 * n_out, <int> n_out)
        if b != NULL or activation != ACT_NONE:
            _pw_finish_block(op + p0 * n_out, p1 - p0, n_out, b, activation)


cdef void _pw_item(const floating* xp, const floating* wp, const floating* b,
                   floating* op, Py_ssize_t P, Py_ssize_t Ci, Py_ssize_t Co,
                   Py_ssize_t it, Py_ssize_t n_cols, Py_ssize_t rows, Py_ssize_t n_pan,
                   Py_ssize_t nr, int activation, const floating* bp,
                   void* wraw) noexcept nogil:
    """Work item ``it`` of pointwise_forward: a block of ``rows`` pixels times a
    group of column panels, on the packed kernels (BLAS if scratch is missing).
    ``bp``: the weights packed whole, or NULL to pack them here block by block."""
    cdef Py_ssize_t r0 = (it // n_cols) * rows, r1, c0, c1, p
    r1 = r0 + rows
    if r1 > P:
        r1 = P
    c0 = _split(n_pan, n_cols, it % n_cols) * nr
    c1 = _split(n_pan, n_cols, it % n_cols + 1) * nr
    if c1 > Co:
        c1 = Co
    if r1 <= r0 or c1 <= c0:
        return
    if wraw != NULL:
        if floating is float:
            effai_gemm_f(r1 - r0, c0, c1, Ci, xp + r0 * Ci, Ci, <const float*> bp, wp, Co,
                         op + r0 * Co,
                         Co, b, activation, <float*> _align64(wraw))
        else:
            effai_gemm_d(r1 - r0, c0, c1, Ci, xp + r0 * Ci, Ci, <const double*> bp, wp, Co,
                         op + r0 * Co,
                         Co, b, activation, <double*> _align64(wraw))
        return
    _gemm(c'N', c'N', <int> (c1 - c0), <int> (r1 - r0), <int> Ci, wp + c0, <int> Co,
          xp + r0 * Ci, <int> Ci, 0, op + r0 * Co + c0, <int> Co)
    if b != NULL or activation != ACT_NONE:
        for p in range(r0, r1):
            _finish(op + p * Co + c0, c1 - c0, b + c0 if b != NULL else NULL, activation)


cdef void _pointwise_core(const floating* xp, const floating* wp, const floating* bpk,
                          const floating* b, floating* op, Py_ssize_t P, Py_ssize_t Ci,
                          Py_ssize_t Co, int activation, int n_threads) noexcept nogil:
    """out (P, Co) = act(x (P, Ci) @ w (Ci, Co) + b) on the packed kernels.

    ``bpk``: the weights already packed by _pack_b (all panels), or NULL to pack
    them here (whole, or block by block inside each work item).
    """
    cdef Py_ssize_t nr = _nr(op[0])
    cdef Py_ssize_t n_pan = (Co + nr - 1) // nr
    cdef Py_ssize_t n_rows, n_cols, rows, it, q, g
    cdef void* wraw
    cdef void* raw = NULL
    cdef floating* bp = <floating*> bpk
    if n_threads <= 1 and bp != NULL:
        # One thread and weights packed in advance (an InferencePlan): one call of
        # the blocked driver, no OpenMP region and no work items.
        wraw = malloc(effai_gemm_work_size(nr) * sizeof(floating) + 64)
        if wraw != NULL:
            _pgemm(P, 0, Co, Ci, xp, Ci, bp, op, Co, b, activation,
                   <floating*> _align64(wraw))
            free(wraw)
            return
    # Work items: row blocks (a multiple of the 6-row micro-tile) x column groups,
    # one row block per thread and ~2K pixels; few pixels (7x7, 14x14 at batch 1)
    # are split over the columns instead.  Any split gives the same bits (each
    # element is one FMA chain over C_in, see _gemm.h).
    # With several threads there are two items per thread, taken dynamically: a
    # thread that starts late (the OS did not schedule it at once, as on a shared
    # machine) finds the work done by the others instead of holding the call up.
    g = n_threads if n_threads == 1 else 2 * n_threads
    n_rows = P // 2048
    if n_rows < 1:
        n_rows = 1
    n_rows = ((n_rows + g - 1) // g) * g
    n_cols = 1
    if P < 6 * 48 * n_threads:
        n_rows = 1
        n_cols = g if g < n_pan else n_pan
    rows = (P + n_rows - 1) // n_rows
    rows = (rows + 5) // 6 * 6
    # Many pixels: pack the weights once, shared by all items, and let each
    # 144-pixel chunk run over all of them (its outputs stay in L2 across the K
    # blocks).  Few pixels: each item packs its KC x 128 weight blocks itself,
    # reading every weight once, with no weight-sized buffer.
    if bp == NULL and P >= 4096:
        raw = malloc(effai_packed_size(Ci, Co, nr) * sizeof(floating) + 64)
        if raw != NULL:
            bp = <floating*> _align64(raw)
    with parallel(num_threads=n_threads):
        if raw != NULL:
            for q in prange(n_pan, schedule="static"):
                _pack_b(wp, Ci, Co, bp, q, q + 1)
        wraw = malloc(effai_gemm_work_size(nr) * sizeof(floating) + 64)
        for it in prange(n_rows * n_cols, schedule="dynamic"):
            _pw_item(xp, wp, b, op, P, Ci, Co, it, n_cols, rows, n_pan, nr, activation,
                     bp, wraw)
        free(wraw)
    free(raw)


cdef void pointwise_forward(
    const floating[:, ::1] x,
    const floating[:, ::1] weight,
    const floating[::1] bias,
    floating[:, ::1] out,
    int activation, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t P = x.shape[0], Ci = x.shape[1], Co = weight.shape[1]
    cdef const floating* b = &bias[0] if bias.shape[0] > 0 else NULL
    if P == 0 or Co == 0:
        return
    cdef const floating* xp = &x[0, 0]
    cdef const floating* wp = &weight[0, 0]
    cdef floating* op = &out[0, 0]
    if not EFFAI_GEMM_NATIVE or Ci == 0:
        _gemm_pixel_blocks(c'N', xp, wp, b, op, P, Ci, Co, activation, n_threads)
        return
    _pointwise_core(xp, wp, NULL, b, op, P, Ci, Co, activation, n_threads)


cdef void _pw_add_partials(floating* dst, const floating* part, Py_ssize_t k0,
                           Py_ssize_t n, Py_ssize_t n_parts) noexcept nogil:
    """dst[k] += part[0][k], then part[1][k], ... (that order), k0 <= k < k0 + 1024, k < n."""
    cdef Py_ssize_t k1 = k0 + 1024 if k0 + 1024 < n else n
    cdef Py_ssize_t j, k
    for j in range(n_parts):
        for k in range(k0, k1):
            dst[k] = dst[k] + part[j * n + k]


cdef bint _pw_grad_x_packed(const floating* gm, const floating* wp, floating* gxp,
                            Py_ssize_t P, Py_ssize_t Ci, Py_ssize_t Co,
                            int n_threads) noexcept nogil:
    """grad_x = gm @ W^T on the packed kernels; False (nothing done) without them."""
    cdef Py_ssize_t nr = _nr(gm[0])
    cdef Py_ssize_t i, o
    cdef floating* wt
    cdef void* raw
    if not EFFAI_GEMM_NATIVE or Ci == 0 or Co == 0:
        return False
    wt = <floating*> malloc(Ci * Co * sizeof(floating))
    raw = malloc(effai_packed_size(Co, Ci, nr) * sizeof(floating) + 64)
    if wt == NULL or raw == NULL:
        free(wt)
        free(raw)
        return False
    for o in range(Co):
        for i in range(Ci):
            wt[o * Ci + i] = wp[i * Co + o]
    _pack_b(wt, Co, Ci, <floating*> _align64(raw), 0, (Ci + nr - 1) // nr)
    _pointwise_core(gm, wt, <floating*> _align64(raw), NULL, gxp, P, Co, Ci, ACT_NONE,
                    n_threads)
    free(raw)
    free(wt)
    return True


cdef void pointwise_backward(
    const floating[:, ::1] x,
    const floating[:, ::1] weight,
    const floating[:, ::1] grad_out,
    const floating[:, ::1] y,
    floating[:, ::1] grad_masked,
    floating[:, ::1] grad_x,
    floating[:, ::1] grad_weight,
    floating[::1] grad_bias,
    int activation, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t P = x.shape[0], Ci = x.shape[1], Co = weight.shape[1]
    cdef Py_ssize_t pb, nb, i, j, p0, p1, p, c0, c1, n_rb, n_pc
    cdef floating* partial
    cdef const floating* gm
    cdef floating* gmw
    cdef floating* gwp = &grad_weight[0, 0]
    if P == 0:
        memset(gwp, 0, Ci * Co * sizeof(floating))
        if grad_bias.shape[0] > 0:
            memset(&grad_bias[0], 0, Co * sizeof(floating))
        return
    cdef const floating* xp = &x[0, 0]
    cdef const floating* wp = &weight[0, 0]
    cdef const floating* yp
    gm = &grad_out[0, 0]
    if activation != ACT_NONE:
        yp = &y[0, 0]
        gmw = &grad_masked[0, 0]
        for p in prange(P, schedule="static", num_threads=n_threads):
            _mask(gmw + p * Co, gm + p * Co, yp + p * Co, Co, activation)
        gm = gmw
    if grad_x.shape[0] > 0:
        # grad_x (P, Ci) = gm (P, Co) @ W^T (Co, Ci): the forward's packed GEMM with
        # the transposed weights packed once (a 1x1 convolution from Co to Ci
        # channels), split over pixel blocks or column groups like the forward.
        # BLAS's transposed-operand GEMM on pixel blocks took 1.3-2x its time on
        # the thin matrices of small students (C_in 16-128).
        if not _pw_grad_x_packed(gm, wp, &grad_x[0, 0], P, Ci, Co, n_threads):
            _gemm_pixel_blocks(c'T', gm, wp, NULL, &grad_x[0, 0], P, Co, Ci, ACT_NONE,
                               n_threads)
    # grad_weight (C_in, C_out) = x^T gm: work items are (at most 128 rows of C_in)
    # x (a chunk of the pixels), both fixed by the shape, never by the thread
    # count.  Layers with few input channels (a student's 16-128) have a single
    # row block: their pixels are cut into up to 4 chunks of at least 1024, each
    # chunk's product (one full-width BLAS call) goes to its own partial, and the
    # partials are added in chunk order.  Every element is thus the same sum
    # whatever the team, and every thread gets work.
    n_rb = (Ci + 127) // 128
    n_pc = (4 + n_rb - 1) // n_rb
    if n_pc > P // 1024:
        n_pc = P // 1024
    if n_pc < 1:
        n_pc = 1
    partial = NULL
    if n_pc > 1:
        partial = <floating*> malloc((n_pc - 1) * Ci * Co * sizeof(floating))
        if partial == NULL:
            n_pc = 1
    for i in prange(n_rb * n_pc, schedule="dynamic", num_threads=n_threads):
        c0 = (i // n_pc) * 128
        c1 = c0 + 128
        if c1 > Ci:
            c1 = Ci
        j = i % n_pc
        p0 = _split(P, n_pc, j)
        p1 = _split(P, n_pc, j + 1)
        if c1 > c0:
            # chunk 0 writes grad_weight itself, chunk j > 0 partial j - 1
            _gemm_long_k(c'N', c'T', <int> Co, <int> (c1 - c0), p1 - p0, gm + p0 * Co,
                         <int> Co, xp + p0 * Ci + c0, <int> Ci,
                         (gwp if j == 0 else partial + (j - 1) * Ci * Co) + c0 * Co,
                         <int> Co, _GEMM_K_MAX)
    if partial != NULL:
        nb = (Ci * Co + 1023) // 1024
        for i in prange(nb, schedule="static", num_threads=n_threads):
            _pw_add_partials(gwp, partial, i * 1024, Ci * Co, n_pc - 1)
        free(partial)
    if grad_bias.shape[0] > 0:
        _col_sums(gm, &grad_bias[0], P, Co, n_threads)


# ---------------------------------------------------------------------------
# dense convolution (im2col + GEMM)
# ---------------------------------------------------------------------------

cdef inline void _copy_small(floating* dst, const floating* src, Py_ssize_t n) noexcept nogil:
    """dst[:n] = src[:n] for short runs (the stem's 3-channel taps): fixed-size
    32-byte copies the compiler inlines as vector moves, never a libc call per tap."""
    cdef char* d = <char*> dst
    cdef const char* s = <const char*> src
    cdef Py_ssize_t left = n * <Py_ssize_t> sizeof(floating)
    # constant sizes only: a copy loop (or a variable-size tail) becomes a libc
    # memcpy call, which cost ~15 ns per kernel row of the stem
    while left >= 32:
        memcpy(d, s, 32)
        d += 32
        s += 32
        left -= 32
    if left >= 16:
        memcpy(d, s, 16)
        d += 16
        s += 16
        left -= 16
    if left >= 8:
        memcpy(d, s, 8)
        d += 8
        s += 8
        left -= 8
    if left >= 4:
        memcpy(d, s, 4)


cdef void _im2col(const floating* x, floating* patch, Py_ssize_t p0, Py_ssize_t p1,
                  Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t KH, Py_ssize_t KW,
                  Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh, Py_ssize_t sw,
                  Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt,
                  Py_ssize_t pl) noexcept nogil:
    """Patch rows (KH*KW*C each, HWC order) for flat output pixels p0..p1-1.

    With dilation 1 the KW taps of a kernel row that lie inside the image are
    one contiguous run of the input row: one copy per kernel row, not per tap
    (for the 3-channel stem, a 12-byte memcpy call per tap was most of the
    convolution's time).
    """
    cdef Py_ssize_t K = KH * KW * C
    cdef Py_ssize_t p, n, rem, oh, ow, kh, kw, ih, iw, k0, k1
    cdef floating* dst
    # (n, oh, ow) of pixel p counted along, not divided out per pixel: two integer
    # divisions per pixel were a sizeable part of the stem's im2col (3 taps of 3 floats)
    n = p0 // (OH * OW)
    rem = p0 - n * OH * OW
    oh = rem // OW
    ow = rem - oh * OW
    for p in range(p0, p1):
        if p > p0:
            ow += 1
            if ow == OW:
                ow = 0
                oh += 1
                if oh == OH:
                    oh = 0
                    n += 1
        for kh in range(KH):
            ih = oh * sh - pt + kh * dh
            dst = patch + (p - p0) * K + kh * KW * C
            if ih < 0 or ih >= H:
                memset(dst, 0, KW * C * sizeof(floating))
                continue
            if dw == 1:
                # taps k0..k1-1 inside the row, zeros on either side
                iw = ow * sw - pl
                k0 = -iw if iw < 0 else 0
                k1 = W - iw if W - iw < KW else KW
                if k1 < k0:
                    k1 = k0
                if k0 > 0:
                    memset(dst, 0, k0 * C * sizeof(floating))
                if k1 > k0:
                    _copy_small(dst + k0 * C, x + ((n * H + ih) * W + iw + k0) * C,
                                (k1 - k0) * C)
                if k1 < KW:
                    memset(dst + k1 * C, 0, (KW - k1) * C * sizeof(floating))
                continue
            for kw in range(KW):
                iw = ow * sw - pl + kw * dw
                if iw < 0 or iw >= W:
                    memset(dst + kw * C, 0, C * sizeof(floating))
                else:
                    memcpy(dst + kw * C, x + ((n * H + ih) * W + iw) * C,
                           C * sizeof(floating))


cdef void _col2im_add(const floating* patch, floating* gx, Py_ssize_t p0, Py_ssize_t p1,
                      Py_ssize_t H, Py_ssize_t W, Py_ssize_t C, Py_ssize_t KH,
                      Py_ssize_t KW, Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t sh,
                      Py_ssize_t sw, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t pt,
                      Py_ssize_t pl) noexcept nogil:
    """The adjoint of _im2col: scatter-add patch rows back into the image."""
    cdef Py_ssize_t K = KH * KW * C
    cdef Py_ssize_t p, n, rem, oh, ow, kh, kw, ih, iw, c
    cdef const floating* src
    cdef floating* dst
    for p in range(p0, p1):
        n = p // (OH * OW)
        rem = p - n * OH * OW
        oh = rem // OW
        ow = rem - oh * OW
        for kh in range(KH):
            ih = oh * sh - pt + kh * dh
            if ih < 0 or ih >= H:
                continue
            for kw in range(KW):
                iw = ow * sw - pl + kw * dw
                if iw < 0 or iw >= W:
                    continue
                src = patch + (p - p0) * K + (kh * KW + kw) * C
                dst = gx + ((n * H + ih) * W + iw) * C
                for c in range(C):
                    dst[c] = dst[c] + src[c]


cdef bint _conv2d_forward_packed(
        const floating* xp, const floating* wp, const floating* b, floating* op,
        Py_ssize_t N, Py_ssize_t H, Py_ssize_t W, Py_ssize_t Ci, Py_ssize_t KH,
        Py_ssize_t KW, Py_ssize_t Co, Py_ssize_t OH, Py_ssize_t OW, int stride_h,
        int stride_w, int dil_h, int dil_w, int pad_top, int pad_left, int activation,
        int n_threads) noexcept nogil:
    """The dense convolution on the packed kernels of _gemm.h (AVX2 builds).

    The (KH*KW*C_in, C_out) filter is packed once per call (for the MobileNet
    stem 27 x 32: 3.5 KiB), then each work item forms the im2col rows of a block
    of pixels (about 32 KiB, L1/L2-resident) and runs the packed GEMM on them with
    bias and activation in the register epilogue.  BLAS was slow on this shape
    (C_out = 32, K = 27: small edge kernels, ~2x slower than torch at batch 1).
    Every output element is one FMA chain over K in order whatever the block,
    so the result does not depend on the thread count.  Returns False (nothing
    written) when scratch memory is missing; the caller then takes the BLAS path.
    """
    cdef Py_ssize_t K = KH * KW * Ci
    cdef Py_ssize_t P = N * OH * OW
    cdef Py_ssize_t nr = _nr(op[0])
    cdef Py_ssize_t n_pan = (Co + nr - 1) // nr
    cdef Py_ssize_t pb, nb, i, q, p0, p1
    cdef floating* patch
    cdef void* wraw
    cdef int failed = 0
    cdef int* pfailed = &failed
    cdef void* raw = malloc(effai_packed_size(K, Co, nr) * sizeof(floating) + 64)
    cdef floating* bp
    if raw == NULL:
        return False
    bp = <floating*> _align64(raw)
    # Rows per block: ~32 KiB of patch, a multiple of the 6-row micro-tile; fixed
    # by the shape (any blocking gives the same bits, this one keeps the patch in
    # L1/L2 and gives a 2-thread team enough blocks to balance).
    pb = (32 * 1024 // (K * sizeof(floating) + 1)) // 6 * 6
    if pb < 6:
        pb = 6
    if pb > P:
        pb = P
    nb = (P + pb - 1) // pb
    if n_threads > nb:
        n_threads = <int> nb
    with parallel(num_threads=n_threads):
        for q in prange(n_pan, schedule="static"):
            _pack_b(wp, K, Co, bp, q, q + 1)
        patch = <floating*> malloc(pb * K * sizeof(floating))
        wraw = malloc(effai_gemm_work_size(nr) * sizeof(floating) + 64)
        if patch == NULL or wraw == NULL:
            pfailed[0] = 1          # shared flag (a plain assignment would be private)
        for i in prange(nb, schedule="dynamic"):
            if patch != NULL and wraw != NULL:
                p0 = i * pb
                p1 = p0 + pb
                if p1 > P:
                    p1 = P
                _im2col(xp, patch, p0, p1, H, W, Ci, KH, KW, OH, OW, stride_h, stride_w,
                        dil_h, dil_w, pad_top, pad_left)
                _pgemm(p1 - p0, 0, Co, K, patch, K, bp, op + p0 * Co, Co, b, activation,
                       <floating*> _align64(wraw))
        free(wraw)
        free(patch)
    free(raw)
    return failed == 0


cdef void conv2d_forward(
    const floating[:, :, :, ::1] x,
    const floating[:, :, :, ::1] weight,
    const floating[::1] bias,
    floating[:, :, :, ::1] out,
    int stride_h, int stride_w, int dil_h, int dil_w,
    int pad_top, int pad_left, int activation, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], Ci = x.shape[3]
    cdef Py_ssize_t KH = weight.shape[0], KW = weight.shape[1], Co = weight.shape[3]
    cdef Py_ssize_t OH = out.shape[1], OW = out.shape[2]
    cdef Py_ssize_t K = KH * KW * Ci
    cdef Py_ssize_t P = N * OH * OW
    cdef Py_ssize_t pb, nb, i, p0, p1
    cdef floating* patch
    cdef const floating* b = &bias[0] if bias.shape[0] > 0 else NULL
    if P == 0 or Co == 0:
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef const floating* wp = &weight[0, 0, 0, 0]
    cdef floating* op = &out[0, 0, 0, 0]
    if EFFAI_GEMM_NATIVE and K > 0:
        if _conv2d_forward_packed(xp, wp, b, op, N, H, W, Ci, KH, KW, Co, OH, OW,
                                  stride_h, stride_w, dil_h, dil_w, pad_top, pad_left,
                                  activation, n_threads):
            return
    pb = _block(P, K * sizeof(floating), 1024 * 1024)
    nb = (P + pb - 1) // pb
    with parallel(num_threads=n_threads):
        patch = <floating*> malloc(pb * K * sizeof(floating))
        for i in prange(nb, schedule="guided"):
            if patch != NULL:
                p0 = i * pb
                p1 = p0 + pb
                if p1 > P:
                    p1 = P
                _im2col(xp, patch, p0, p1, H, W, Ci, KH, KW, OH, OW, stride_h, stride_w,
                        dil_h, dil_w, pad_top, pad_left)
                _gemm(c'N', c'N', <int> Co, <int> (p1 - p0), <int> K, wp, <int> Co,
                      patch, <int> K, 0, op + p0 * Co, <int> Co)
                if b != NULL or activation != ACT_NONE:
                    _pw_finish_block(op + p0 * Co, p1 - p0, Co, b, activation)
        free(patch)


cdef void conv2d_backward(
    const floating[:, :, :, ::1] x,
    const floating[:, :, :, ::1] weight,
    const floating[:, :, :, ::1] grad_out,
    const floating[:, :, :, ::1] y,
    floating[:, :, :, ::1] grad_masked,
    floating[:, :, :, ::1] grad_x,
    floating[:, :, :, ::1] grad_weight,
    floating[::1] grad_bias,
    int stride_h, int stride_w, int dil_h, int dil_w,
    int pad_top, int pad_left, int activation, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], Ci = x.shape[3]
    cdef Py_ssize_t KH = weight.shape[0], KW = weight.shape[1], Co = weight.shape[3]
    cdef Py_ssize_t OH = grad_out.shape[1], OW = grad_out.shape[2]
    cdef Py_ssize_t K = KH * KW * Ci
    cdef Py_ssize_t P = N * OH * OW
    cdef Py_ssize_t HW = OH * OW
    cdef Py_ssize_t pb, nb, i, j, p, p0, p1, q0, q1, n, c0, c1, n_parts, n_blocks, align
    cdef floating* patch
    cdef floating* partial
    cdef floating* gmw = NULL
    cdef const floating* gm
    cdef floating* gwp = &grad_weight[0, 0, 0, 0]
    cdef floating* gxp
    if P == 0:
        memset(gwp, 0, K * Co * sizeof(floating))
        if grad_bias.shape[0] > 0:
            memset(&grad_bias[0], 0, Co * sizeof(floating))
        if grad_x.shape[0] > 0 and N > 0 and H * W * Ci > 0:
            memset(&grad_x[0, 0, 0, 0], 0, N * H * W * Ci * sizeof(floating))
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef const floating* wp = &weight[0, 0, 0, 0]
    cdef const floating* yp
    gm = &grad_out[0, 0, 0, 0]
    if activation != ACT_NONE:
        gmw = &grad_masked[0, 0, 0, 0]
        yp = &y[0, 0, 0, 0]
        for p in prange(P, schedule="static", num_threads=n_threads):
            _mask(gmw + p * Co, gm + p * Co, yp + p * Co, Co, activation)
        gm = gmw

    pb = _block(P, K * sizeof(floating), 1024 * 1024)
    nb = (P + pb - 1) // pb

    # grad_weight (K, C_out) = patches^T gm.  The pixels are cut into at most
    # 8 chunks fixed by the shape; each chunk sums its blocks in order into its
    # own partial, and the partials are added in chunk order at the end.
    n_parts = nb if nb < 8 else 8
    partial = <floating*> malloc(n_parts * K * Co * sizeof(floating))
    if partial == NULL:
        return
    with parallel(num_threads=n_threads):
        patch = <floating*> malloc(pb * K * sizeof(floating))
        for i in prange(n_parts, schedule="static"):
            if patch != NULL:
                for j in range(_split(nb, n_parts, i), _split(nb, n_parts, i + 1)):
                    p0 = j * pb
                    p1 = p0 + pb
                    if p1 > P:
                        p1 = P
                    _im2col(xp, patch, p0, p1, H, W, Ci, KH, KW, OH, OW, stride_h,
                            stride_w, dil_h, dil_w, pad_top, pad_left)
                    _gemm(c'N', c'T', <int> Co, <int> K, <int> (p1 - p0),
                          gm + p0 * Co, <int> Co, patch, <int> K,
                          0 if j == _split(nb, n_parts, i) else 1,
                          partial + i * K * Co, <int> Co)
        free(patch)
    memcpy(gwp, partial, K * Co * sizeof(floating))
    for i in range(1, n_parts):
        for j in range(K * Co):
            gwp[j] = gwp[j] + partial[i * K * Co + j]
    free(partial)

    if grad_bias.shape[0] > 0:
        _col_sums(gm, &grad_bias[0], P, Co, n_threads)

    # grad_x: per image (scatter-add stays inside one image), blocks of pixels.
    if grad_x.shape[0] > 0:
        gxp = &grad_x[0, 0, 0, 0]
        if pb > HW:
            pb = HW
        with parallel(num_threads=n_threads if n_threads < N else N):
            patch = <floating*> malloc(pb * K * sizeof(floating))
            for n in prange(N, schedule="static"):
                if patch != NULL:
                    memset(gxp + n * H * W * Ci, 0, H * W * Ci * sizeof(floating))
                    q0 = n * HW
                    while q0 < (n + 1) * HW:
                        q1 = q0 + pb
                        if q1 > (n + 1) * HW:
                            q1 = (n + 1) * HW
                        _gemm(c'T', c'N', <int> K, <int> (q1 - q0), <int> Co, wp,
                              <int> Co, gm + q0 * Co, <int> Co, 0, patch, <int> K)
                        _col2im_add(patch, gxp, q0, q1, H, W, Ci, KH, KW, OH, OW,
                                    stride_h, stride_w, dil_h, dil_w, pad_top, pad_left)
                        q0 = q1
            free(patch)


# ---------------------------------------------------------------------------
# fused depthwise -> pointwise
# ---------------------------------------------------------------------------

cdef void separable_forward(
    const floating[:, :, :, ::1] x,
    const floating[:, :, ::1] dw_weight,
    const floating[::1] dw_bias,
    const floating[:, ::1] pw_weight,
    const floating[::1] pw_bias,
    floating[:, :, :, ::1] out,
    int stride_h, int stride_w, int dil_h, int dil_w,
    int pad_top, int pad_left, int dw_activation, int pw_activation, int n_threads,
) noexcept nogil:
    cdef Py_ssize_t N = x.shape[0], H = x.shape[1], W = x.shape[2], C = x.shape[3]
    cdef Py_ssize_t KH = dw_weight.shape[0], KW = dw_weight.shape[1]
    cdef Py_ssize_t Co = pw_weight.shape[1]
    cdef Py_ssize_t OH = out.shape[1], OW = out.shape[2]
    cdef Py_ssize_t P = N * OH * OW
    cdef Py_ssize_t tp, nt, i, p, p0, p1, seg, n, rem, oh, ow, q
    cdef floating* tile
    cdef const floating* db = &dw_bias[0] if dw_bias.shape[0] > 0 else NULL
    cdef const floating* pbias = &pw_bias[0] if pw_bias.shape[0] > 0 else NULL
    if P == 0 or Co == 0:
        return
    cdef const floating* xp = &x[0, 0, 0, 0]
    cdef const floating* dwp = &dw_weight[0, 0, 0]
    cdef const floating* pwp = &pw_weight[0, 0]
    cdef floating* op = &out[0, 0, 0, 0]
    cdef Py_ssize_t nr = _nr(op[0])
    cdef Py_ssize_t n_pan = (Co + nr - 1) // nr
    cdef void* raw = NULL
    cdef void* wraw
    cdef floating* bp = NULL
    # Tile of depthwise output: about 128 KiB (fixed by the shape), L2-resident
    # while the packed GEMM (or BLAS in the baseline build) consumes it.
    tp = _block(P, C * sizeof(floating), 128 * 1024)
    nt = (P + tp - 1) // tp
    # Many pixels: pack the pointwise weights once, shared by every tile.  Few
    # pixels (the 28x28 ... 7x7 blocks at batch 1: one to a few tiles): each tile
    # packs L2-sized blocks of them itself, as pointwise_forward does; a whole
    # packed copy (up to 4 MiB) cost more than the block's arithmetic there.
    if EFFAI_GEMM_NATIVE and C > 0 and P >= 4096:
        raw = malloc(effai_packed_size(C, Co, nr) * sizeof(floating) + 64)
        if raw != NULL:
            bp = <floating*> _align64(raw)
    cdef floating* zrow = <floating*> calloc(W * C, sizeof(floating))
    with parallel(num_threads=n_threads):
        if bp != NULL:
            for q in prange(n_pan, schedule="static"):
                _pack_b(pwp, C, Co, bp, q, q + 1)
        tile = <floating*> malloc(tp * C * sizeof(floating))
        wraw = malloc(effai_gemm_work_size(nr) * sizeof(floating) + 64)
        for i in prange(nt, schedule="guided"):
            if tile != NULL:
                p0 = i * tp
                p1 = p0 + tp
                if p1 > P:
                    p1 = P
                p = p0
                while p < p1:
                    n = p // (OH * OW)
                    rem = p - n * OH * OW
                    oh = rem // OW
                    ow = rem - oh * OW
                    seg = OW - ow
                    if seg > p1 - p:
                        seg = p1 - p
                    _dw_pixels(xp + n * H * W * C, dwp, db, tile + (p - p0) * C, H, W,
                               C, KH, KW, oh * stride_h - pad_top, ow, ow + seg,
                               stride_w, dil_h, dil_w, pad_left, dw_activation, zrow,
                               NULL)
                    p = p + seg
                if bp != NULL and wraw != NULL:
                    _pgemm(p1 - p0, 0, Co, C, tile, C, bp, op + p0 * Co, Co, pbias,
                           pw_activation, <floating*> _align64(wraw))
                elif EFFAI_GEMM_NATIVE and C > 0 and wraw != NULL:
                    if floating is float:
                        effai_gemm_f(p1 - p0, 0, Co, C, tile, C, NULL, pwp, Co,
                                     op + p0 * Co, Co, pbias, pw_activation,
                                     <float*> _align64(wraw))
                    else:
                        effai_gemm_d(p1 - p0, 0, Co, C, tile, C, NULL, pwp, Co,
                                     op + p0 * Co, Co, pbias, pw_activation,
                                     <double*> _align64(wraw))
                else:
                    _gemm(c'N', c'N', <int> Co, <int> (p1 - p0), <int> C, pwp, <int> Co,
                          tile, <int> C, 0, op + p0 * Co, <int> Co)
                    if pbias != NULL or pw_activation != ACT_NONE:
                        _pw_finish_block(op + p0 * Co, p1 - p0, Co, pbias, pw_activation)
        free(wraw)
        free(tile)
    free(zrow)
    free(raw)


# ---------------------------------------------------------------------------
# Python entry points (called by effai_fast.nn.functional after validation)
# ---------------------------------------------------------------------------

def _depthwise_forward(const floating[:, :, :, ::1] x, const floating[:, :, ::1] weight,
                       const floating[::1] bias, floating[:, :, :, ::1] out,
                       int sh, int sw, int dh, int dw, int pt, int pl, int act, int nt):
    with nogil:
        depthwise_forward(x, weight, bias, out, sh, sw, dh, dw, pt, pl, act, nt)


def _depthwise_backward(const floating[:, :, :, ::1] x, const floating[:, :, ::1] weight,
                        const floating[:, :, :, ::1] grad_out,
                        const floating[:, :, :, ::1] y, floating[:, :, :, ::1] grad_x,
                        floating[:, :, ::1] grad_weight, floating[::1] grad_bias,
                        int sh, int sw, int dh, int dw, int pt, int pl, int act, int nt):
    with nogil:
        depthwise_backward(x, weight, grad_out, y, grad_x, grad_weight, grad_bias,
                           sh, sw, dh, dw, pt, pl, act, nt)


def _pointwise_forward(const floating[:, ::1] x, const floating[:, ::1] weight,
                       const floating[::1] bias, floating[:, ::1] out, int act, int nt):
    with nogil:
        pointwise_forward(x, weight, bias, out, act, nt)


def _pointwise_packed_len(Py_ssize_t Ci, Py_ssize_t Co, bint is_double):
    """Elements of a (Ci, Co) pointwise weight packed for _pointwise_forward_packed
    (0 when this build has no packed kernels: the weights are then used as they are)."""
    if not EFFAI_GEMM_NATIVE or Ci == 0 or Co == 0:
        return 0
    return effai_packed_size(Ci, Co, EFFAI_GEMM_NR_D if is_double else EFFAI_GEMM_NR_F)


def _pack_pointwise(const floating[:, ::1] weight, floating[::1] packed):
    """Pack ``weight`` (Ci, Co) into ``packed`` (``_pointwise_packed_len`` elements)."""
    cdef Py_ssize_t Ci = weight.shape[0], Co = weight.shape[1]
    cdef Py_ssize_t nr
    if packed.shape[0] == 0:
        return
    nr = _nr(packed[0])
    with nogil:
        _pack_b(&weight[0, 0], Ci, Co, &packed[0], 0, (Co + nr - 1) // nr)


def _pointwise_forward_packed(const floating[:, ::1] x, const floating[:, ::1] weight,
                              const floating[::1] packed, const floating[::1] bias,
                              floating[:, ::1] out, int act, int nt):
    """_pointwise_forward with the weights packed in advance by _pack_pointwise
    (``packed`` empty: as _pointwise_forward).  Same bits as _pointwise_forward."""
    cdef Py_ssize_t P = x.shape[0], Ci = x.shape[1], Co = weight.shape[1]
    with nogil:
        if packed.shape[0] == 0 or P == 0 or Co == 0 or Ci == 0 or not EFFAI_GEMM_NATIVE:
            pointwise_forward(x, weight, bias, out, act, nt)
        else:
            _pointwise_core(&x[0, 0], &weight[0, 0], &packed[0],
                            &bias[0] if bias.shape[0] > 0 else NULL, &out[0, 0], P, Ci,
                            Co, act, nt)


def _pointwise_backward(const floating[:, ::1] x, const floating[:, ::1] weight,
                        const floating[:, ::1] grad_out, const floating[:, ::1] y,
                        floating[:, ::1] grad_masked, floating[:, ::1] grad_x,
                        floating[:, ::1] grad_weight, floating[::1] grad_bias,
                        int act, int nt):
    with nogil:
        pointwise_backward(x, weight, grad_out, y, grad_masked, grad_x, grad_weight,
                           grad_bias, act, nt)


def _conv2d_forward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                    const floating[::1] bias, floating[:, :, :, ::1] out,
                    int sh, int sw, int dh, int dw, int pt, int pl, int act, int nt):
    with nogil:
        conv2d_forward(x, weight, bias, out, sh, sw, dh, dw, pt, pl, act, nt)


def _conv2d_backward(const floating[:, :, :, ::1] x, const floating[:, :, :, ::1] weight,
                     const floating[:, :, :, ::1] grad_out,
                     const floating[:, :, :, ::1] y, floating[:, :, :, ::1] grad_masked,
                     floating[:, :, :, ::1] grad_x,
                     floating[:, :, :, ::1] grad_weight, floating[::1] grad_bias,
                     int sh, int sw, int dh, int dw, int pt, int pl, int act, int nt):
    with nogil:
        conv2d_backward(x, weight, grad_out, y, grad_masked, grad_x, grad_weight, grad_bias,
                        sh, sw, dh, dw, pt, pl, act, nt)


def _separable_forward(const floating[:, :, :, ::1] x, const floating[:, :, ::1] dw_weight,
                       const floating[::1] dw_bias, const floating[:, ::1] pw_weight,
                       const floating[::1] pw_bias, floating[:, :, :, ::1] out,
                       int sh, int sw, int dh, int dw, int pt, int pl, int dw_act,
                       int pw_act, int nt):
    with nogil:
        separable_forward(x, dw_weight, dw_bias, pw_weight, pw_bias, out, sh, sw, dh, dw,
                          pt, pl, dw_act, pw_act, nt)


def _gemm_long_k_check(const floating[:, ::1] x, const floating[:, ::1] g,
                       floating[:, ::1] out, Py_ssize_t k_max):
    """out (Ci, Co) = x^T g for x (P, Ci), g (P, Co) through the chunked-reduction GEMM
    of the pointwise weight gradient, with chunks of ``k_max`` pixels (a test hook:
    the index arithmetic of reductions longer than INT_MAX, exercised on small arrays)."""
    cdef Py_ssize_t P = x.shape[0], Ci = x.shape[1], Co = g.shape[1]
    with nogil:
        _gemm_long_k(c'N', c'T', <int> Co, <int> Ci, P, &g[0, 0], <int> Co, &x[0, 0],
                     <int> Ci, &out[0, 0], <int> Co, k_max)
