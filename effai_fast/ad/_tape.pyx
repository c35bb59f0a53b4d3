# cython: language_level=3
"""Compiled sweeps of a flat scalar tape, batched over points.

Design
------
A *program* is a flat instruction list produced by :mod:`effai_fast.ad._lower`::

    for k in range(n_ops):  v[dst[k]] <- code[k](v[a[k]], v[b[k]], v[c[k]]; imm[k])

``code`` is one of the ``OP_*`` codes of ``_tape.pxd``; constants never take a
slot, they are the ``imm`` operand of a ``*C`` variant (``ADDC``: ``a + imm``).
Slots are reused once their value is dead (linear-scan allocation), so a tape
of thousands of instructions may need only tens of slots.

Many points (the batched mode) are evaluated in blocks of ``B`` points laid out
structure-of-arrays: slot ``s`` of a block is the contiguous run
``v[s*B : s*B + B]``, so every instruction is one tight loop over the block
that the compiler vectorises, and the ``switch`` on the op code is paid once
per block rather than once per point.

What made it fast (measured, Rosenbrock n=10 gradient, 10^5 points, 1 thread,
106 -> ~40 ns per point; see docs/autodiff.md):

* ``B = 64`` (``BLOCK``): a small tape's slots stay in L1, and a full block
  takes ``effai_sweep_d``'s path with a compile-time loop length (no remainder
  loops).  Blocks of 512 had spilled to L2; blocks of 16 are dispatch-bound.
* The whole block sweep is one C function (``_simd.h``) compiled twice,
  baseline and AVX2, chosen at load time (``target_clones``): four doubles per
  vector and libmvec's 4-wide exp/log/sin/cos on the CPUs that have AVX2,
  while wheels stay baseline x86-64.  No FMA: both clones round identically.
* ``-fno-trapping-math``: without it gcc kept ``mul0`` (the adjoint
  accumulation), max/min/where and the comparisons scalar with a branch.
* Superinstructions (``_lower._fuse``): an op whose only use is the next op of
  a common pair is fused into it (``x + y*q``, ``(x - y)^2``, ``x + mul0(y, z)``
  ...), bitwise equal to the pair, saving a store, a reload and a dispatch:
  133 -> 76 instructions for the Rosenbrock n=10 value+gradient.  ``-mul0``,
  ``mul0(x, -y)`` and ``(x + y) - z`` (the negated adjoints of ``sub``/``div``
  and a residual) took the Hill per-point gradient from 20 to 16 instructions,
  together with the division adjoint sharing ``g / b`` between both operands.
* Rows <-> slots moves in 4x4 register transposes (the row-major ``X`` and
  gradient are most of the memory traffic), four rows at a time left to right
  so that rows stream sequentially, and 2x2 pair transposes for the last
  columns (n_x = 2, 3: the Hill data's ``(dose, y)`` rows had been moved one
  element at a time, 16% of that sweep); the next block's rows are prefetched
  during the sweep while they are small (a prefetch loop over wide rows
  stalled, 8% of the Rosenbrock n=200 sweep).
* Per-point output buffers of 2 MiB and more leave through streaming (non-temporal)
  stores when whole rows come out of the 4x4 tiles: a normal store first reads
  the line it overwrites, doubling the traffic of an output that is written
  once (Hill per-point gradient at 10^6 points 11.3 -> 9.6 ns per point;
  Rosenbrock n=200 gradient about 15% faster; n=10 at 10^6 points 35.5 -> 30.5
  ms, its two columns beyond the 4x4 tiles written in the same pass).  Rows
  finished in two passes would go out as partial lines, which measured 2x
  slower: normal stores there, and for the ``soa`` layout's separate rows.
* Parameter slots are never reused by the slot allocator, so each thread
  broadcasts the parameters into its scratch once, not once per block.
* Blocks are distributed over OpenMP
threads (``prange``, static schedule); each thread mallocs its own slot array
inside the parallel region, so a program (and the :class:`Program` holding it)
is read-only during sweeps and may be used from several Python threads at once.

Outputs are either per-point (written to ``OUT[p, k]``) or *reduced*: summed
over the points of a block into ``PART[block, k]`` (in point order, in double),
after which the caller sums ``PART`` over blocks.  The block size does not
depend on the thread count, so reduced outputs (parameter gradients) are
bitwise identical at any number of threads.

There is one sweep: reverse-mode adjoints and forward-mode tangents are
programs too (the adjoint and tangent transforms of :mod:`._transforms` write
them as graphs, which are lowered like any other), so ``value_and_grad`` is
one sweep over the forward+adjoint program with the forward values shared.

``MUL0`` (``a == 0 ? 0 : a*b``) is the adjoint accumulation primitive: an
adjoint of exactly zero times an infinite or NaN local derivative is zero.

In debug mode the sweep stops at the first instruction that turns finite
arguments into a NaN/inf and returns its index (+1), which the Python layer
maps back to the op and source line that recorded it.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport isfinite
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release, PyBUF_C_CONTIGUOUS,
                             PyBUF_FORMAT, PyBUF_WRITABLE)

import numpy as np

_np_empty = np.empty

cimport effai_fast._openmp  # noqa: F401  (the package's OpenMP shim)

# A per-point output buffer of at least this many bytes is written with streaming stores.
cdef Py_ssize_t STREAM_BYTES = 2 << 20
# Rows of the next block are prefetched while they take at most this many bytes.
cdef Py_ssize_t PREFETCH_MAX = 8 << 10

BLOCK = EFFAI_BW            # points per block with the fixed-length sweep loops
HAVE_CLONES = bool(EFFAI_HAVE_CLONES)   # an AVX2 clone of the sweep, chosen at load time
VECTOR_MATH = bool(EFFAI_VECTOR_MATH)   # exp/log/sin/cos through libmvec

OPCODES = {
    "const": OP_CONST, "copy": OP_COPY, "add": OP_ADD, "sub": OP_SUB, "mul": OP_MUL,
    "div": OP_DIV, "pow": OP_POW, "maximum": OP_MAX, "minimum": OP_MIN, "mul0": OP_MUL0,
    "addc": OP_ADDC, "mulc": OP_MULC, "rsubc": OP_RSUBC, "rdivc": OP_RDIVC, "powc": OP_POWC,
    "cpow": OP_CPOW, "maxc": OP_MAXC, "minc": OP_MINC, "divc": OP_DIVC, "mul0c": OP_MUL0C,
    "neg": OP_NEG, "exp": OP_EXP, "log": OP_LOG, "log1p": OP_LOG1P, "expm1": OP_EXPM1,
    "sqrt": OP_SQRT, "sin": OP_SIN, "cos": OP_COS, "tanh": OP_TANH, "sigmoid": OP_SIGMOID,
    "abs": OP_ABS, "sign": OP_SIGN, "square": OP_SQUARE, "lt": OP_LT, "le": OP_LE,
    "eq": OP_EQ, "ne": OP_NE, "ltc": OP_LTC, "lec": OP_LEC, "gtc": OP_GTC, "gec": OP_GEC,
    "eqc": OP_EQC, "nec": OP_NEC, "where": OP_WHERE, "where_vc": OP_WHERE_VC,
    "where_cv": OP_WHERE_CV,
    "addmulc": OP_ADDMULC, "add3": OP_ADD3, "mulcmul0": OP_MULCMUL0, "mul0mulc": OP_MUL0MULC,
    "sqsub": OP_SQSUB, "sqmulc": OP_SQMULC, "addsq": OP_ADDSQ, "addmul0": OP_ADDMUL0,
    "addmul": OP_ADDMUL, "subsq": OP_SUBSQ, "negmul0": OP_NEGMUL0, "mul0neg": OP_MUL0NEG,
    "addsub": OP_ADDSUB,
}


cdef inline int _arity(int op) noexcept nogil:
    if op == OP_CONST:
        return 0
    if (op == OP_WHERE or op == OP_ADD3 or op == OP_ADDMUL0 or op == OP_ADDMUL
            or op == OP_ADDSUB):
        return 3
    if op == OP_SQMULC:
        return 1
    if op == OP_WHERE_VC or op == OP_WHERE_CV:
        return 2
    if (op == OP_ADD or op == OP_SUB or op == OP_MUL or op == OP_DIV or op == OP_POW
            or op == OP_MAX or op == OP_MIN or op == OP_MUL0 or op == OP_LT or op == OP_LE
            or op == OP_EQ or op == OP_NE or op == OP_ADDMULC or op == OP_MULCMUL0
            or op == OP_MUL0MULC or op == OP_SQSUB or op == OP_ADDSQ or op == OP_SUBSQ
            or op == OP_NEGMUL0 or op == OP_MUL0NEG):
        return 2
    return 1


cdef Py_ssize_t _first_bad(int op, real_t* o, real_t* x, real_t* y, real_t* z,
                           Py_ssize_t nb) noexcept nogil:
    """1 + the lane where ``o`` went non-finite from finite arguments, or 0."""
    cdef Py_ssize_t j
    cdef int ar = _arity(op)
    for j in range(nb):
        if not isfinite(o[j]):
            if ar >= 1 and not isfinite(x[j]):
                continue
            if ar >= 2 and not isfinite(y[j]):
                continue
            if ar >= 3 and not isfinite(z[j]):
                continue
            return j + 1
    return 0


cdef Py_ssize_t sweep_block(const int* code, const int* dst, const int* a, const int* b,
                            const int* c, const double* imm, Py_ssize_t n_ops,
                            real_t* v, Py_ssize_t B, Py_ssize_t nb, bint debug) noexcept nogil:
    """Run the program on one block of ``nb <= B`` points; 0, or 1 + the first bad op."""
    cdef Py_ssize_t k
    cdef int op
    cdef real_t* o
    cdef real_t* x
    cdef real_t* y
    cdef real_t* z
    if not debug:
        if real_t is double:
            effai_sweep_d(code, dst, a, b, c, imm, n_ops, v, B, nb)
        else:
            effai_sweep_f(code, dst, a, b, c, imm, n_ops, v, B, nb)
        return 0
    for k in range(n_ops):
        op = code[k]
        o = v + dst[k] * B
        x = v + a[k] * B
        y = v + b[k] * B
        z = v + c[k] * B
        if real_t is double:
            effai_op1_d(op, o, x, y, z, imm[k], nb)
        else:
            effai_op1_f(op, o, x, y, z, <float>imm[k], nb)
        if _first_bad(op, o, x, y, z, nb):
            return k + 1
    return 0


cdef void sweep_scalar(const int* code, const int* dst, const int* a, const int* b,
                       const int* c, const double* imm, Py_ssize_t n_ops,
                       double* v) noexcept nogil:
    """One point, float64: the same instructions without the block loops."""
    cdef Py_ssize_t k
    cdef int op
    cdef double x, q, t
    for k in range(n_ops):
        x = v[a[k]]
        q = imm[k]
        op = code[k]
        if op == OP_ADD:
            v[dst[k]] = x + v[b[k]]
        elif op == OP_SUB:
            v[dst[k]] = x - v[b[k]]
        elif op == OP_MUL:
            v[dst[k]] = x * v[b[k]]
        elif op == OP_MUL0:
            v[dst[k]] = 0 if x == 0 else x * v[b[k]]
        elif op == OP_ADDC:
            v[dst[k]] = x + q
        elif op == OP_MULC:
            v[dst[k]] = x * q
        elif op == OP_RSUBC:
            v[dst[k]] = q - x
        elif op == OP_SQUARE:
            v[dst[k]] = x * x
        elif op == OP_NEG:
            v[dst[k]] = -x
        elif op == OP_DIV:
            v[dst[k]] = x / v[b[k]]
        elif op == OP_ADDMULC:
            t = v[b[k]] * q
            v[dst[k]] = x + t
        elif op == OP_ADD3:
            t = x + v[b[k]]
            v[dst[k]] = t + v[c[k]]
        elif op == OP_MULCMUL0:
            t = x * q
            v[dst[k]] = 0 if t == 0 else t * v[b[k]]
        elif op == OP_MUL0MULC:
            t = v[b[k]] * q
            v[dst[k]] = 0 if x == 0 else x * t
        elif op == OP_SQSUB:
            t = v[b[k]] * v[b[k]]
            v[dst[k]] = x - t
        elif op == OP_SQMULC:
            t = x * x
            v[dst[k]] = t * q
        elif op == OP_ADDSQ:
            t = v[b[k]] * v[b[k]]
            v[dst[k]] = x + t
        elif op == OP_ADDMUL0:
            t = v[b[k]]
            t = 0 if t == 0 else t * v[c[k]]
            v[dst[k]] = x + t
        elif op == OP_ADDMUL:
            t = v[b[k]] * v[c[k]]
            v[dst[k]] = x + t
        elif op == OP_SUBSQ:
            t = x - v[b[k]]
            v[dst[k]] = t * t
        elif op == OP_NEGMUL0:
            t = 0 if x == 0 else x * v[b[k]]
            v[dst[k]] = -t
        elif op == OP_MUL0NEG:
            t = -v[b[k]]
            v[dst[k]] = 0 if x == 0 else x * t
        elif op == OP_ADDSUB:
            t = x + v[b[k]]
            v[dst[k]] = t - v[c[k]]
        else:
            effai_op1_d(op, v + dst[k], v + a[k], v + b[k], v + c[k], q, 1)


cdef void _load(real_t* v, Py_ssize_t B, Py_ssize_t nb, const real_t[:, ::1] X, Py_ssize_t p0,
                Py_ssize_t n_x, const real_t[::1] P, Py_ssize_t n_p) noexcept nogil:
    """Block inputs: the rows of ``X`` to slots ``0..n_x-1``; with ``n_p``, the
    parameters broadcast to slots ``n_x..`` (0 when they are already there)."""
    cdef Py_ssize_t i, j
    if real_t is double:
        if n_x:
            effai_aos_to_soa_d(&X[p0, 0], n_x, n_x, nb, v, B)
    else:
        for j in range(nb):
            for i in range(n_x):
                v[i * B + j] = X[p0 + j, i]
    if n_p:
        _fill_params(v, B, n_x, P, n_p)


cdef void _fill_params(real_t* v, Py_ssize_t B, Py_ssize_t n_x, const real_t[::1] P,
                       Py_ssize_t n_p) noexcept nogil:
    cdef Py_ssize_t i, j
    cdef real_t pv
    for i in range(n_p):
        pv = P[i]
        for j in range(B):
            v[(n_x + i) * B + j] = pv


cdef Py_ssize_t _run(const int* code, const int* dst, const int* a, const int* b, const int* c,
                     const double* imm, Py_ssize_t n_ops, Py_ssize_t n_slots,
                     const real_t[:, ::1] X, const real_t[::1] P,
                     const int* out_s, Py_ssize_t n_out, real_t[:, ::1] OUT,
                     Py_ssize_t n_out2, real_t[:, ::1] OUT2,
                     const int* red_s, Py_ssize_t n_red, double[:, ::1] PART,
                     Py_ssize_t B, int n_threads, bint debug, Py_ssize_t[::1] bad,
                     bint soa2=False, bint params_once=False, int nt=0) noexcept nogil:
    """Sweep all points; returns 0 on success, -1 if scratch could not be allocated.

    With ``soa2``, ``OUT2`` is ``(n_out2, n_points)``: a block's slot is copied to
    its row as is (no transpose to row-major points).  With ``params_once`` (no
    instruction writes a parameter slot), each thread broadcasts the parameters
    into its scratch once instead of once per block.  With ``nt``, float64 outputs
    are written with streaming stores (see ``effai_soa_to_aos_d``).
    """
    cdef Py_ssize_t n_pts = X.shape[0]
    cdef Py_ssize_t n_x = X.shape[1]
    cdef Py_ssize_t n_p = P.shape[0]
    cdef Py_ssize_t n_blocks = (n_pts + B - 1) // B
    cdef Py_ssize_t blk, p0, nb, j, k, s
    cdef double acc
    cdef real_t* v = NULL
    with parallel(num_threads=n_threads):
        v = <real_t*>malloc(n_slots * B * sizeof(real_t))
        if v != NULL and params_once:
            _fill_params(v, B, n_x, P, n_p)
        for blk in prange(n_blocks, schedule="static"):
            if v == NULL:
                bad[blk] = -1
                continue
            p0 = blk * B
            nb = B if p0 + B <= n_pts else n_pts - p0
            _load(v, B, nb, X, p0, n_x, P, 0 if params_once else n_p)
            # software prefetch of the next block's rows only while they are small
            # (wide rows: the prefetch loop itself stalled, 8% of the Rosenbrock
            # n=200 sweep, and evicted the block's slots from L1; the hardware
            # prefetcher follows the four sequential row streams of _load anyway)
            if p0 + B < n_pts and n_x * B * <Py_ssize_t>sizeof(real_t) <= PREFETCH_MAX:
                effai_prefetch(&X[p0 + B, 0], min(B, n_pts - p0 - B) * n_x * sizeof(real_t), 0)
            bad[blk] = sweep_block(code, dst, a, b, c, imm, n_ops, v, B, nb, debug)
            if soa2:
                for k in range(n_out2):
                    if real_t is double:
                        effai_copy_d(&OUT2[k, p0], v + out_s[n_out + k] * B, nb, 0)
                    else:
                        memcpy(&OUT2[k, p0], v + out_s[n_out + k] * B, nb * sizeof(real_t))
            if real_t is double:
                if n_out:
                    effai_soa_to_aos_d(v, B, out_s, n_out, nb, &OUT[p0, 0], n_out, nt & 1)
                if n_out2 and not soa2:
                    effai_soa_to_aos_d(v, B, out_s + n_out, n_out2, nb, &OUT2[p0, 0], n_out2,
                                       nt >> 1)
            else:
                # row by row: each output row is written once, contiguously
                for j in range(nb):
                    for k in range(n_out):
                        OUT[p0 + j, k] = v[out_s[k] * B + j]
                    if not soa2:
                        for k in range(n_out2):
                            OUT2[p0 + j, k] = v[out_s[n_out + k] * B + j]
            for k in range(n_red):
                s = red_s[k] * B
                acc = 0
                for j in range(nb):
                    acc = acc + v[s + j]
                PART[blk, k] = acc
        if nt:
            effai_sfence()
        free(v)
    return 0



cdef void _run_soa(const int* code, const int* dst, const int* a, const int* b, const int* c,
                   const double* imm, Py_ssize_t n_ops, Py_ssize_t n_slots,
                   const size_t* ins, Py_ssize_t n_x, const double* P, Py_ssize_t n_p,
                   const int* out_s, const size_t* outs, const char* acc, Py_ssize_t n_out,
                   const int* red_s, Py_ssize_t n_red, double* PART,
                   Py_ssize_t n_pts, Py_ssize_t B, int n_threads) noexcept nogil:
    """Like _run, float64, with inputs and outputs as separate contiguous columns.

    ``outs[i]`` is stored to, or added to when ``acc[i]`` (in-place adjoint
    accumulation: the caller runs accumulating sweeps on one thread, since two
    outputs may add into overlapping ranges of one buffer).
    """
    cdef Py_ssize_t n_blocks = (n_pts + B - 1) // B
    cdef Py_ssize_t blk, p0, nb, i, j
    cdef double* v = NULL
    cdef double* o
    cdef const double* src
    cdef double pv, acc_
    with parallel(num_threads=n_threads):
        v = <double*>malloc(n_slots * B * sizeof(double))
        for blk in prange(n_blocks, schedule="static"):
            if v == NULL:
                continue
            p0 = blk * B
            nb = B if p0 + B <= n_pts else n_pts - p0
            for i in range(n_x):
                memcpy(v + i * B, (<const double*>ins[i]) + p0, nb * sizeof(double))
            for i in range(n_p):
                pv = P[i]
                for j in range(nb):
                    v[(n_x + i) * B + j] = pv
            sweep_block(code, dst, a, b, c, imm, n_ops, v, B, nb, False)
            for i in range(n_out):
                o = (<double*>outs[i]) + p0
                src = v + out_s[i] * B
                if acc[i]:
                    for j in range(nb):
                        o[j] = o[j] + src[j]
                else:
                    memcpy(o, src, nb * sizeof(double))
            for i in range(n_red):
                acc_ = 0
                for j in range(nb):
                    acc_ = acc_ + v[red_s[i] * B + j]
                PART[blk * n_red + i] = acc_
        free(v)


cdef int _get_column(object arr, Py_buffer* view, bint writable, Py_ssize_t off,
                     Py_ssize_t n, size_t* ptr) except -1:
    """Acquire a C-contiguous float64 buffer holding ``[off, off + n)``; set ``ptr``."""
    cdef int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT
    if writable:
        flags |= PyBUF_WRITABLE
    PyObject_GetBuffer(arr, view, flags)
    if (view.itemsize != 8 or view.format == NULL or view.format[0] != b'd'
            or view.format[1] != 0 or off < 0 or off + n > view.len // 8):
        PyBuffer_Release(view)
        raise ValueError("Program.run_columns: arrays must be C-contiguous float64 "
                         "holding [offset, offset + n)")
    ptr[0] = <size_t>((<double*>view.buf) + off)
    return 0


cdef class Program:
    """An immutable compiled tape (see the module docstring); safe to share between threads."""

    cdef readonly object code, dst, a, b, c, imm, out_slots, red_slots
    cdef readonly Py_ssize_t n_ops, n_slots, n_x, n_p, block
    cdef const int* _code
    cdef const int* _dst
    cdef const int* _a
    cdef const int* _b
    cdef const int* _c
    cdef const double* _imm
    cdef const int* _out
    cdef const int* _red
    cdef Py_ssize_t n_out, n_red
    cdef readonly bint params_once

    def __init__(self, code, dst, a, b, c, imm, Py_ssize_t n_slots, Py_ssize_t n_x,
                 Py_ssize_t n_p, out_slots, red_slots, Py_ssize_t block):
        cdef const int[::1] mv
        cdef const double[::1] md
        self.code = np.ascontiguousarray(code, dtype=np.intc)
        self.dst = np.ascontiguousarray(dst, dtype=np.intc)
        self.a = np.ascontiguousarray(a, dtype=np.intc)
        self.b = np.ascontiguousarray(b, dtype=np.intc)
        self.c = np.ascontiguousarray(c, dtype=np.intc)
        self.imm = np.ascontiguousarray(imm, dtype=np.float64)
        self.out_slots = np.ascontiguousarray(out_slots, dtype=np.intc)
        self.red_slots = np.ascontiguousarray(red_slots, dtype=np.intc)
        for arr in (self.code, self.dst, self.a, self.b, self.c, self.imm, self.out_slots,
                    self.red_slots):
            arr.setflags(write=False)
        n = self.code.shape[0]
        for arr in (self.dst, self.a, self.b, self.c, self.imm):
            if arr.shape[0] != n:
                raise ValueError("program arrays must have the same length")
        if n_slots < 1 or block < 1:
            raise ValueError("n_slots and block must be positive")
        for arr in (self.dst, self.a, self.b, self.c, self.out_slots, self.red_slots):
            if arr.shape[0] and (arr.min() < 0 or arr.max() >= n_slots):
                raise ValueError("slot index out of range")
        if n and (self.code.min() < 0 or self.code.max() >= N_OPCODES):
            raise ValueError("unknown op code")
        if n_x + n_p > n_slots:
            raise ValueError("n_slots too small for the inputs")
        self.n_ops = n
        # no instruction overwrites a parameter slot: broadcast them once per thread
        self.params_once = not bool(n and n_p and np.any((self.dst >= n_x)
                                                         & (self.dst < n_x + n_p)))
        self.n_slots = n_slots
        self.n_x = n_x
        self.n_p = n_p
        self.block = block
        self.n_out = self.out_slots.shape[0]
        self.n_red = self.red_slots.shape[0]
        self._code = <const int*><size_t>self.code.ctypes.data
        self._dst = <const int*><size_t>self.dst.ctypes.data
        self._a = <const int*><size_t>self.a.ctypes.data
        self._b = <const int*><size_t>self.b.ctypes.data
        self._c = <const int*><size_t>self.c.ctypes.data
        self._imm = <const double*><size_t>self.imm.ctypes.data
        self._out = <const int*><size_t>self.out_slots.ctypes.data
        self._red = <const int*><size_t>self.red_slots.ctypes.data

    @property
    def n_outputs(self):
        return self.n_out

    @property
    def n_reduced(self):
        return self.n_red

    def run(self, real_t[:, ::1] X, const real_t[::1] P, real_t[:, ::1] OUT,
            real_t[:, ::1] OUT2, double[:, ::1] PART, int n_threads, bint debug=False,
            bint soa2=False):
        """Sweep all rows of ``X``; returns the (block, op) of the first bad op or None.

        ``X (n, n_x)``, ``P (n_p,)``; the per-point outputs go to the columns of
        ``OUT (n, k1)`` then ``OUT2 (n, k2)`` with ``k1 + k2 = n_outputs`` — or,
        with ``soa2``, to the rows of ``OUT2 (k2, n)`` (one output per row, as the
        block holds them: no transpose); ``PART (n_blocks, n_reduced)`` receives
        the per-block sums of the reduced outputs (sum it over axis 0, in order).
        """
        cdef Py_ssize_t n_blocks = (X.shape[0] + self.block - 1) // self.block
        cdef Py_ssize_t[::1] bad = np.zeros(max(n_blocks, 1), dtype=np.intp)
        cdef Py_ssize_t r
        cdef Py_ssize_t k2 = OUT2.shape[0] if soa2 else OUT2.shape[1]
        # streaming stores when the per-point outputs are well beyond the caches
        # (row-major outputs only: the soa layout writes k2 + 1 separate streams,
        # more than the write-combining buffers keep open; measured slower there)
        # (decided per buffer: bit 0 for OUT, bit 1 for OUT2; a small output that
        # stays in the caches between calls measured 1.6x slower streamed)
        cdef int nt = 0
        if real_t is double:
            nt = ((X.shape[0] * OUT.shape[1] * <Py_ssize_t>sizeof(real_t) >= STREAM_BYTES)
                  | (2 * (not soa2 and X.shape[0] * k2 * <Py_ssize_t>sizeof(real_t)
                          >= STREAM_BYTES)))
        cdef Py_ssize_t n2 = OUT2.shape[1] if soa2 else OUT2.shape[0]
        if X.shape[0] == 0:
            return None
        if X.shape[1] != self.n_x or P.shape[0] != self.n_p \
                or OUT.shape[1] + k2 != self.n_out \
                or OUT.shape[0] != X.shape[0] or n2 != X.shape[0] \
                or PART.shape[0] != n_blocks or PART.shape[1] != self.n_red:
            raise ValueError("Program.run: inconsistent array shapes")
        with nogil:
            r = _run(self._code, self._dst, self._a, self._b, self._c, self._imm, self.n_ops,
                     self.n_slots, X, P, self._out, OUT.shape[1], OUT, k2, OUT2,
                     self._red, self.n_red,
                     PART, self.block, n_threads, debug, bad, soa2, self.params_once, nt)
        cdef Py_ssize_t blk, first = -1
        cdef bint oom = False
        with nogil:
            for blk in range(n_blocks):
                if bad[blk] < 0:
                    oom = True
                elif bad[blk] > 0 and first < 0:
                    first = blk
        if oom:
            raise MemoryError("could not allocate the sweep's scratch")
        if first >= 0:
            return first, bad[first] - 1
        return None

    def run_columns(self, list inputs, const double[::1] P, list outputs, int n_threads,
                    double[:, ::1] PART=None, Py_ssize_t n=-1, in_offsets=None,
                    out_offsets=None, accumulate=None):
        """float64 sweep with per-point inputs and outputs as separate columns.

        Used by the array-level executor to run a fused elementwise group with the
        array's elements as the points.  Column ``i`` of the inputs is
        ``inputs[i]`` (any C-contiguous float64 buffer) from element
        ``in_offsets[i]`` (default 0) on, for ``n`` points (default: the length
        of the first output, else of the first input); likewise the outputs,
        which are stored to, or added to where ``accumulate[i]`` is true (such a
        sweep runs on one thread: accumulated ranges may overlap).  Reduced
        outputs go to ``PART (n_blocks, n_reduced)`` as in :meth:`run`.  The
        caller keeps inputs and outputs from overlapping.
        """
        cdef Py_ssize_t n_x = len(inputs), n_o = len(outputs), i, n_acc = 0
        if n_x != self.n_x or n_o != self.n_out or P.shape[0] != self.n_p:
            raise ValueError("Program.run_columns: wrong number of arrays")
        if n < 0:
            if n_o:
                n = len(outputs[0])
            elif n_x:
                n = len(inputs[0])
            else:
                n = 0
        cdef Py_ssize_t n_blocks = (n + self.block - 1) // self.block
        cdef double* partp = NULL
        if self.n_red:
            if PART is None or PART.shape[0] != n_blocks or PART.shape[1] != self.n_red:
                raise ValueError("Program.run_columns: PART must be (n_blocks, n_reduced)")
            partp = &PART[0, 0] if n_blocks else NULL
        if n == 0:
            return
        cdef const double* pp = &P[0] if P.shape[0] else NULL
        cdef Py_buffer* views = <Py_buffer*>malloc((n_x + n_o + 1) * sizeof(Py_buffer))
        cdef size_t* ptrs = <size_t*>malloc((n_x + n_o + 1) * sizeof(size_t))
        cdef char* acc = <char*>malloc(n_o + 1)
        cdef Py_ssize_t held = 0
        if views == NULL or ptrs == NULL or acc == NULL:
            free(views)
            free(ptrs)
            free(acc)
            raise MemoryError()
        try:
            for i in range(n_x):
                _get_column(inputs[i], &views[held], False,
                            0 if in_offsets is None else in_offsets[i], n, &ptrs[i])
                held += 1
            for i in range(n_o):
                _get_column(outputs[i], &views[held], True,
                            0 if out_offsets is None else out_offsets[i], n, &ptrs[n_x + i])
                held += 1
                acc[i] = 0 if accumulate is None or not accumulate[i] else 1
                n_acc += acc[i]
            if n_acc:
                n_threads = 1
            with nogil:
                _run_soa(self._code, self._dst, self._a, self._b, self._c, self._imm,
                         self.n_ops, self.n_slots, ptrs, self.n_x, pp, self.n_p, self._out,
                         ptrs + n_x, acc, self.n_out, self._red, self.n_red, partp, n,
                         self.block, n_threads)
        finally:
            for i in range(held):
                PyBuffer_Release(&views[i])
            free(views)
            free(ptrs)
            free(acc)

    def run1(self, const double[::1] x, const double[::1] p):
        """One point, float64, no threads.

        Returns a new float64 array with the per-point outputs followed by the
        reduced ones (which, for one point, are just values).
        """
        cdef double stack_buf[512]
        cdef double* v = stack_buf
        cdef Py_ssize_t i, n_out = self.n_out, n_red = self.n_red
        if x.shape[0] != self.n_x or p.shape[0] != self.n_p:
            raise ValueError(f"expected {self.n_x} inputs and {self.n_p} parameters")
        res = _np_empty(n_out + n_red)
        cdef double[::1] r = res
        if self.n_slots > 512:
            v = <double*>malloc(self.n_slots * sizeof(double))
            if v == NULL:
                raise MemoryError()
        with nogil:
            for i in range(self.n_x):
                v[i] = x[i]
            for i in range(self.n_p):
                v[self.n_x + i] = p[i]
            sweep_scalar(self._code, self._dst, self._a, self._b, self._c, self._imm,
                         self.n_ops, v)
            for i in range(n_out):
                r[i] = v[self._out[i]]
            for i in range(n_red):
                r[n_out + i] = v[self._red[i]]
        if v != stack_buf:
            free(v)
        return res

    def call1(self, x, bint split_first):
        """The single-call fast path of ``grad(f)(x)``: None unless ``x`` is a 1-D float64
        C-contiguous buffer of ``n_x`` values (and the program has no parameters).

        Returns the outputs as a new array, or ``(float(out[0]), array(out[1:]))``
        when ``split_first`` (``value_and_grad``).
        """
        cdef Py_buffer bx
        cdef Py_buffer br
        cdef double stack_buf[512]
        cdef double* v = stack_buf
        cdef double* xp
        cdef double* rp
        cdef Py_ssize_t i, n_res
        if self.n_p != 0 or self.n_red != 0 or self.n_slots > 512:
            return None
        if PyObject_GetBuffer(x, &bx, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0:
            return None
        try:
            if (bx.ndim != 1 or bx.shape[0] != self.n_x or bx.format == NULL
                    or bx.format[0] != b'd' or bx.format[1] != 0):
                return None
            xp = <double*>bx.buf
            for i in range(self.n_x):
                v[i] = xp[i]
        finally:
            PyBuffer_Release(&bx)
        sweep_scalar(self._code, self._dst, self._a, self._b, self._c, self._imm,
                     self.n_ops, v)
        n_res = self.n_out - 1 if split_first else self.n_out
        res = _np_empty(n_res)
        PyObject_GetBuffer(res, &br, PyBUF_WRITABLE)
        rp = <double*>br.buf
        for i in range(n_res):
            rp[i] = v[self._out[i + split_first]]
        PyBuffer_Release(&br)
        if split_first:
            return v[self._out[0]], res
        return res


def _set_stream_bytes(Py_ssize_t n):
    """Set the output size from which float64 outputs are streamed; returns the old one
    (for benchmarks and tests of both store paths)."""
    global STREAM_BYTES
    old = STREAM_BYTES
    STREAM_BYTES = n
    return old
