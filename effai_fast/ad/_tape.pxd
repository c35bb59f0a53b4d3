# Compiled sweep of a flat scalar tape (see _tape.pyx for the format).
#
# A tape is a list of instructions  dst <- code(a, b, c; imm)  over "slots" of a
# structure-of-arrays block: slot s of a block of B points is v[s*B : s*B+B].
# Slots 0..n_x-1 hold the per-point inputs, n_x..n_x+n_p-1 the shared
# parameters; derivative tapes are tapes too, so one sweep serves values,
# adjoints (reverse mode) and tangents (forward mode).

cdef extern from "_simd.h" nogil:
    enum:
        OP_CONST
        OP_COPY
        OP_ADD
        OP_SUB
        OP_MUL
        OP_DIV
        OP_POW
        OP_MAX
        OP_MIN
        OP_MUL0
        OP_ADDC
        OP_MULC
        OP_RSUBC
        OP_RDIVC
        OP_POWC
        OP_CPOW
        OP_MAXC
        OP_MINC
        OP_DIVC
        OP_MUL0C
        OP_NEG
        OP_EXP
        OP_LOG
        OP_LOG1P
        OP_EXPM1
        OP_SQRT
        OP_SIN
        OP_COS
        OP_TANH
        OP_SIGMOID
        OP_ABS
        OP_SIGN
        OP_SQUARE
        OP_LT
        OP_LE
        OP_EQ
        OP_NE
        OP_LTC
        OP_LEC
        OP_GTC
        OP_GEC
        OP_EQC
        OP_NEC
        OP_WHERE
        OP_WHERE_VC
        OP_WHERE_CV
        OP_ADDMULC
        OP_ADD3
        OP_MULCMUL0
        OP_MUL0MULC
        OP_SQSUB
        OP_SQMULC
        OP_ADDSQ
        OP_ADDMUL0
        OP_ADDMUL
        OP_SUBSQ
        OP_NEGMUL0
        OP_MUL0NEG
        OP_ADDSUB
        N_OPCODES

    enum:
        EFFAI_BW
        EFFAI_HAVE_CLONES
        EFFAI_VECTOR_MATH

    void effai_aos_to_soa_d(const double* X, Py_ssize_t ldx, Py_ssize_t ncols,
                            Py_ssize_t npts, double* v, Py_ssize_t B)
    void effai_soa_to_aos_d(const double* v, Py_ssize_t B, const int* slots, Py_ssize_t ncols,
                            Py_ssize_t npts, double* O, Py_ssize_t ldo, int nt)
    void effai_copy_d(double* o, const double* s, Py_ssize_t n, int nt)
    void effai_sfence()
    void effai_prefetch(const void* p, size_t nbytes, int rw)
    void effai_op1_d(int op, double* o, const double* x, const double* y, const double* z,
                     double q, Py_ssize_t n)
    void effai_op1_f(int op, float* o, const float* x, const float* y, const float* z,
                     float q, Py_ssize_t n)
    void effai_sweep_d(const int* code, const int* dst, const int* a, const int* b,
                       const int* c, const double* imm, Py_ssize_t n_ops, double* v,
                       Py_ssize_t B, Py_ssize_t nb)
    void effai_sweep_f(const int* code, const int* dst, const int* a, const int* b,
                       const int* c, const double* imm, Py_ssize_t n_ops, float* v,
                       Py_ssize_t B, Py_ssize_t nb)

ctypedef fused real_t:
    float
    double

cdef Py_ssize_t sweep_block(const int* code, const int* dst, const int* a, const int* b,
                            const int* c, const double* imm, Py_ssize_t n_ops,
                            real_t* v, Py_ssize_t B, Py_ssize_t nb, bint debug) noexcept nogil
