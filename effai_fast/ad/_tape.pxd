# Compiled sweep of a flat scalar tape (see _tape.pyx for the format).
#
# A tape is a list of instructions  dst <- code(a, b, c; imm)  over "slots" of a
# structure-of-arrays block: slot s of a block of B points is v[s*B : s*B+B].
# Slots 0..n_x-1 hold the per-point inputs, n_x..n_x+n_p-1 the shared
# parameters; derivative tapes are tapes too, so one sweep serves values,
# adjoints (reverse mode) and tangents (forward mode).

cdef enum:
    OP_CONST = 0
    OP_COPY = 1
    OP_ADD = 2
    OP_SUB = 3
    OP_MUL = 4
    OP_DIV = 5
    OP_POW = 6
    OP_MAX = 7
    OP_MIN = 8
    OP_MUL0 = 9
    OP_ADDC = 10
    OP_MULC = 11
    OP_RSUBC = 12
    OP_RDIVC = 13
    OP_POWC = 14
    OP_CPOW = 15
    OP_MAXC = 16
    OP_MINC = 17
    OP_DIVC = 18
    OP_MUL0C = 19
    OP_NEG = 20
    OP_EXP = 21
    OP_LOG = 22
    OP_LOG1P = 23
    OP_EXPM1 = 24
    OP_SQRT = 25
    OP_SIN = 26
    OP_COS = 27
    OP_TANH = 28
    OP_SIGMOID = 29
    OP_ABS = 30
    OP_SIGN = 31
    OP_SQUARE = 32
    OP_LT = 33
    OP_LE = 34
    OP_EQ = 35
    OP_NE = 36
    OP_LTC = 37
    OP_LEC = 38
    OP_GTC = 39
    OP_GEC = 40
    OP_EQC = 41
    OP_NEC = 42
    OP_WHERE = 43
    OP_WHERE_VC = 44
    OP_WHERE_CV = 45
    N_OPCODES = 46

ctypedef fused real_t:
    float
    double

cdef Py_ssize_t sweep_block(const int* code, const int* dst, const int* a, const int* b,
                            const int* c, const double* imm, Py_ssize_t n_ops,
                            real_t* v, Py_ssize_t B, Py_ssize_t nb, bint debug) noexcept nogil
