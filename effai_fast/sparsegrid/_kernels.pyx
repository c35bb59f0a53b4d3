# cython: language_level=3
"""Batched evaluation of a hierarchical sparse-grid interpolant.

Design note
-----------
A sparse-grid interpolant is a sum over *subspaces*: for a multi-level
``l = (l_1, ..., l_d)`` the subspace ``W_l`` holds the tensor-product basis
functions whose 1-D factors have levels ``l_k``.  In every 1-D level of a local
basis (hat, modified linear) the supports of the functions are disjoint, so a
query point ``x`` meets exactly *one* function per (dimension, level): its
cell index ``j_k = floor(x_k 2^(l_k-1))`` and its value are found in O(1).
The contribution of ``W_l`` to ``f(x)`` is therefore one product of ``d``
precomputed 1-D values times one surplus, whose position in the surplus
array is ``offset[l] + row-major(j_1, ..., j_d)``: no search over grid points,
no hash table (the "compact subspace layout" of Murarasu & Pflüger).

The kernel walks the subspaces in lexicographic order of their 1-D *entries*
(see below) and keeps, per dimension ``k``, the partial product and partial
row-major index over dimensions ``0..k``.  Consecutive subspaces share a
prefix; only the dimensions from the first differing one on are recomputed
(``sub_first``), which is the depth-first walk of the subspace tree without
recursion; the last dimension feeds the sum directly.  Queries are processed
in blocks of ``_BLOCK`` so that every inner loop runs over the block
(contiguous, vectorisable, and many independent dependency chains instead of
one latency-bound chain per query) and the walk's bookkeeping is amortised;
blocks are distributed over threads with a static schedule.  Products are
formed in double precision whatever the input dtype; positions are int32
(function counts are powers of two, so ``idx * m + j`` is a shift-add).
Each query is computed by one thread in a fixed order, so results do not
depend on the thread count.

An *entry* is a 1-D basis function family per level: one per level for the
interior bases, two for the boundary level 0 (``1 - x`` and ``x``), and one
per point for the global Newton/Leja basis (where every "subspace" is one
point, ``m = 1``).  The caller expands subspaces into entry-tuples
("pseudo-subspaces"), sorts them and computes ``sub_first``.
"""

from cython.parallel cimport parallel, prange
from libc.math cimport fabs
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc

cdef enum:
    _BLOCK = 32


cdef inline double _entry_value(int kind, int e, int level, double xq,
                                double* omega, int64_t* jj) noexcept nogil:
    """Value at ``xq`` of the function of entry ``e`` whose support holds ``xq``; its index -> jj.

    Newton: ``omega`` holds prod_{i<e-1}(x - x_i) on entry (the caller passes
    entries in increasing order) and is updated by the caller.
    """
    cdef int64_t m, j
    cdef double scale, t
    if kind == KIND_BOUNDARY and level == 0:
        jj[0] = e
        return 1.0 - xq if e == 0 else xq
    if kind == KIND_MODLINEAR and level == 1:
        jj[0] = 0
        return 1.0
    m = (<int64_t>1) << (level - 1)
    scale = <double>(m * 2)
    j = <int64_t>(xq * m)  # xq in [0, 1]: truncation is floor (libm floor is a call on x86-64 v1)
    if j > m - 1:
        j = m - 1
    jj[0] = j
    t = xq * scale
    if kind == KIND_MODLINEAR and j == 0:
        t = 2.0 - t
    elif kind == KIND_MODLINEAR and j == m - 1:
        t = t - scale + 2.0
    else:
        t = 1.0 - fabs(t - <double>(2 * j + 1))
    return t if t > 0 else 0.0


cdef void _eval_block(
    int kind,
    const floating* x,          # IN (nb, d) row-major, unit cube
    Py_ssize_t nb, int d, int n_ent,
    const int32_t* ent_level,   # IN (n_ent,)
    const double* nodes,        # IN (n_ent,) Newton nodes
    const double* coefs,        # IN (n_ent,) Newton normalisation
    const floating* alpha,      # IN (N,)
    const int32_t* sub_entry,   # IN (S, d)
    const int32_t* sub_shift,   # IN (S, d) log2 of the functions per dimension
    const int64_t* sub_off,     # IN (S,)
    const int32_t* sub_first,   # IN (S,)
    Py_ssize_t S,
    double* V,                  # scratch (d, n_ent, _BLOCK)
    int32_t* J,                 # scratch (d, n_ent, _BLOCK)
    double* P,                  # scratch (d, _BLOCK)
    int32_t* I,                 # scratch (d, _BLOCK)
    double* acc,                # scratch (_BLOCK,)
    floating* out,              # OUT (nb,)
) noexcept nogil:
    cdef Py_ssize_t q, s
    cdef int k, e, k0, sh
    cdef double xq, omega
    cdef const double* Vk
    cdef const int32_t* Jk
    cdef double* Pk
    cdef const double* Pp
    cdef int32_t* Ik
    cdef const int32_t* Ip
    cdef int64_t jj
    cdef const floating* a
    # every 1-D function met by each query of the block, once
    for k in range(d):
        for q in range(nb):
            xq = x[q * d + k]
            if kind == KIND_NEWTON:
                omega = 1.0
                for e in range(n_ent):
                    if e > 0:
                        omega = omega * (xq - nodes[e - 1])
                    V[(k * n_ent + e) * _BLOCK + q] = omega * coefs[e]
                    J[(k * n_ent + e) * _BLOCK + q] = 0
            else:
                for e in range(n_ent):
                    V[(k * n_ent + e) * _BLOCK + q] = _entry_value(
                        kind, e, ent_level[e], xq, &omega, &jj)
                    J[(k * n_ent + e) * _BLOCK + q] = <int32_t>jj
    for q in range(nb):
        acc[q] = 0.0
    # depth-first walk over the subspaces, the block of queries in the inner loops
    for s in range(S):
        k0 = sub_first[s]
        for k in range(k0, d - 1):
            e = k * n_ent + sub_entry[s * d + k]
            sh = sub_shift[s * d + k]
            Vk = &V[e * _BLOCK]
            Jk = &J[e * _BLOCK]
            Pk = &P[k * _BLOCK]
            Ik = &I[k * _BLOCK]
            if k == 0:
                for q in range(nb):
                    Pk[q] = Vk[q]
                    Ik[q] = Jk[q]
            else:
                Pp = &P[(k - 1) * _BLOCK]
                Ip = &I[(k - 1) * _BLOCK]
                for q in range(nb):
                    Pk[q] = Pp[q] * Vk[q]
                    Ik[q] = (Ip[q] << sh) + Jk[q]
        # the last dimension goes straight into the sum (no partial stored)
        k = d - 1
        e = k * n_ent + sub_entry[s * d + k]
        sh = sub_shift[s * d + k]
        Vk = &V[e * _BLOCK]
        Jk = &J[e * _BLOCK]
        a = &alpha[sub_off[s]]
        if k == 0:
            for q in range(nb):
                acc[q] += Vk[q] * a[Jk[q]]
        else:
            Pp = &P[(k - 1) * _BLOCK]
            Ip = &I[(k - 1) * _BLOCK]
            for q in range(nb):
                acc[q] += Pp[q] * Vk[q] * a[(Ip[q] << sh) + Jk[q]]
    for q in range(nb):
        out[q] = <floating>acc[q]


cdef int evaluate_subspaces(
    int kind,
    const floating[:, ::1] x,        # IN (n, d) points in the unit cube
    const floating[::1] alpha,       # IN (N,) hierarchical surpluses
    const int32_t[:, ::1] sub_entry, # IN (S, d) entry of each dimension, lexicographically sorted
    const int32_t[:, ::1] sub_shift, # IN (S, d) log2(functions per dimension) of the subspace
    const int64_t[::1] sub_off,      # IN (S,) offset of the subspace in alpha
    const int32_t[::1] sub_first,    # IN (S,) first dimension differing from the previous row
    const int32_t[::1] ent_level,    # IN (n_ent,) level of each 1-D entry
    const double[::1] nodes,         # IN (n_ent,) Newton nodes (unused by local bases)
    const double[::1] coefs,         # IN (n_ent,) Newton normalisation (unused by local bases)
    floating[::1] out,               # OUT (n,)
    int n_threads,
) noexcept nogil:
    """Evaluate the interpolant at every row of ``x``; returns 0, or -1 if out of memory.

    Subspaces must have fewer than 2^31 points (the callers check).
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef int d = <int>x.shape[1]
    cdef int n_ent = <int>ent_level.shape[0]
    cdef Py_ssize_t S = sub_entry.shape[0]
    cdef Py_ssize_t n_blocks = (n + _BLOCK - 1) // _BLOCK
    cdef Py_ssize_t b, q0, nb
    cdef double* V
    cdef int32_t* J
    cdef double* P
    cdef int32_t* I
    cdef double* acc
    cdef int failed = 0
    cdef int* failp = &failed
    if n == 0:
        return 0
    with parallel(num_threads=n_threads):
        V = <double*>malloc(sizeof(double) * d * n_ent * _BLOCK)
        J = <int32_t*>malloc(sizeof(int32_t) * d * n_ent * _BLOCK)
        P = <double*>malloc(sizeof(double) * d * _BLOCK)
        I = <int32_t*>malloc(sizeof(int32_t) * d * _BLOCK)
        acc = <double*>malloc(sizeof(double) * _BLOCK)
        if V == NULL or J == NULL or P == NULL or I == NULL or acc == NULL:
            failp[0] = 1
        else:
            for b in prange(n_blocks, schedule="static"):
                q0 = b * _BLOCK
                nb = n - q0
                if nb > _BLOCK:
                    nb = _BLOCK
                _eval_block(kind, &x[q0, 0], nb, d, n_ent, &ent_level[0], &nodes[0],
                            &coefs[0], &alpha[0], &sub_entry[0, 0], &sub_shift[0, 0],
                            &sub_off[0], &sub_first[0], S, V, J, P, I, acc, &out[q0])
        free(V)
        free(J)
        free(P)
        free(I)
        free(acc)
    return -1 if failed else 0


def evaluate(int kind, const floating[:, ::1] x, const floating[::1] alpha,
             const int32_t[:, ::1] sub_entry, const int32_t[:, ::1] sub_shift,
             const int64_t[::1] sub_off, const int32_t[::1] sub_first,
             const int32_t[::1] ent_level, const double[::1] nodes,
             const double[::1] coefs, floating[::1] out, int n_threads):
    """Python entry point of :func:`evaluate_subspaces` (inputs validated by the caller)."""
    cdef int rc
    with nogil:
        rc = evaluate_subspaces(kind, x, alpha, sub_entry, sub_shift, sub_off, sub_first,
                                ent_level, nodes, coefs, out, n_threads)
    if rc != 0:
        raise MemoryError("sparse-grid evaluation could not allocate its scratch")
