# Kernels of knowledge distillation: temperature softmax, log-softmax and the
# fused KD loss + gradient.
#
# Design note
# -----------
# * One row (sample) is the unit of work: rows are independent, so `prange`
#   runs over the batch with a static schedule and each thread owns a scratch
#   row (malloc'ed inside the parallel block).  A row of 1000 classes is 4 KB
#   (float32), so the few passes a row needs (max, exponentials, sums, the
#   gradient) all run out of L1; the arrays are read from memory once.
# * Stability: every exponent is (z_j - max_j z) / T <= 0, so exp never
#   overflows; the log-sum-exp is max + log(sum).  Logits of +-1000 in float32
#   are harmless.
# * exp: glibc's exp is a scalar call that stops the loops from vectorising
#   (libmvec needs -ffast-math, which we do not use).  `_exp_neg` below is an
#   exp for arguments <= 0 written so that gcc vectorises it: Cody-Waite
#   reduction x = n ln2 + r (|r| <= ln2/2, n by the 1.5*2^p rounding trick),
#   a Taylor polynomial (degree 7 for float32: truncation < 6e-9 relative;
#   degree 13 for float64: < 5e-18), and 2^n assembled in the exponent bits.
#   Results are within ~2 ulp of the correctly rounded exp.  Arguments below
#   the smallest normal (-87.3 for float32, -708 for float64) give 0: such
#   terms are < 1e-37 of a sum that is >= 1, so no result changes.
# * Sums are accumulated in double in 16 fixed lanes (lane k takes the
#   elements j = k mod 16), then the lanes are added in order.  That order
#   does not depend on the thread count, and gcc vectorises the lane loop
#   without -ffast-math.  Per-row losses go to a buffer that the caller sums
#   in a fixed order, so the loss is bit-identical at any thread count.
# * KL(p_T || p_S) per row is computed without forming the log-probabilities:
#       KL = sum_j e^T_j d_j / (T S_T) + log(S_S / S_T),
#       d_j = (t_j - max t) - (s_j - max s),
#   with e^X_j = exp((x_j - max x)/T) and S_X = sum_j e^X_j.  Mathematically
#   KL >= 0; rounding can leave -1e-16, so the row value is clamped at 0
#   (identical inputs give exactly 0 even before the clamp: d = 0, S_S = S_T).
# * Non-finite input is not checked element by element: a NaN or infinity in
#   a row always makes that row's loss NaN or inf (see kd_loss_rows), and the
#   Python wrapper checks the B row losses instead of the B*C inputs.
# * ISA dispatch: this file is compiled three times - here for the baseline
#   x86-64 (SSE2, what a wheel may assume), and as _kd_x86_64_v3 (AVX2) and
#   _kd_x86_64_v4 (AVX-512) - from the same _kd_impl.pxi; losses.py imports the
#   widest one the CPU supports (`_cpu_level()` below).  Results are
#   bit-identical across the three: every operation is elementwise or summed
#   in the same 16 explicit lanes, and C11 mode keeps gcc from contracting
#   a*b+c into FMAs (-ffp-contract=off).

include "_kd_impl.pxi"


cdef extern from *:
    """
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(_M_X64))
    static int effai_kd_cpu_level(void)
    {
        __builtin_cpu_init();
    #if __GNUC__ >= 12
        if (__builtin_cpu_supports("x86-64-v4")) return 4;
        if (__builtin_cpu_supports("x86-64-v3")) return 3;
    #else
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 4;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
            && __builtin_cpu_supports("bmi2")) return 3;
    #endif
        return 1;
    }
    #else
    static int effai_kd_cpu_level(void) { return 1; }
    #endif
    """
    int effai_kd_cpu_level() noexcept nogil


def _cpu_level():
    """x86-64 micro-architecture level of this CPU: 4 (AVX-512), 3 (AVX2+FMA) or 1."""
    return effai_kd_cpu_level()
