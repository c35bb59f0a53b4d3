"""Reverse-mode automatic differentiation on a recorded tape, swept by compiled code.

Design note
-----------
*Record once, replay many.*  A Python function is traced once per input shape
on placeholder values (:class:`~effai_fast.ad._graph.Traced`: numpy operators,
ufuncs via ``__array_ufunc__``, ``np.sum``/``np.dot``/``np.where`` via
``__array_function__``).  The record is an array-level graph (``_graph.py``):
folding constants, applying exact identities and sharing common
subexpressions as it is recorded.

*Derivatives are graphs.*  Reverse mode (adjoints) and forward mode
(tangents) are transforms that append derivative nodes to the same graph,
written with the same traced operations (``_transforms.py``, one table of
local rules each).  Hence gradients share the forward values they need,
``hvp`` is the tangent transform of the adjoint graph (forward-over-reverse),
and every derivative is optimised like the function itself.  Adjoint
contributions use ``mul0`` (``0 * anything == 0``), so a masked ``where``
branch cannot leak NaN/inf into a gradient.

*One compiled sweep.*  A graph of modest size is lowered (``_lower.py``) to a
flat scalar tape: op codes, argument slots and an immediate constant per
instruction (constants take no slots), dead code removed, instructions
scheduled so that few values are alive at once (the reverse ops of a term run
as soon as its forward values exist), slots reused by liveness.  ``_tape.pyx``
sweeps it nogil in typed Cython, float32 or float64,
over blocks of 64 points laid out structure-of-arrays (one vectorisable loop per
instruction per block, the block's slots in L1; common pairs of instructions
fused into superinstructions; an AVX2 clone of the sweep chosen at load time),
blocks over OpenMP threads with per-thread scratch.
Per-point inputs vs shared parameters are separate; parameter adjoints are
reduced inside the sweep per block and summed over blocks in a fixed order,
so results are identical at any thread count.  The same sweep serves values,
reverse-mode gradients, forward-mode tangents, HVPs, and (with unit seeds as
the points) Jacobians and Hessians.  A single point (``grad(f)(x)``) goes
through ``Program.run1``: one call, no thread team, a stack scratch buffer.

*Array level.*  Large graphs (n = 10^4 vectors, matrix products, neural
networks) and graphs with custom primitives are not lowered to scalars: the
array-level executor (``_api``) runs each node as one numpy / BLAS call,
except that runs of elementwise nodes become one compiled sweep over the
array's elements which reads contiguous slices in place and adds the adjoints
of slices straight into one zeroed gradient buffer (no ``scatter`` of zeros and
``add``); intermediate buffers are reused across calls.  Custom primitives
(``_primitives.py``) carry forward, reverse and
forward-mode rules; a compiled kernel and its compiled VJP register as a pair.

*Thread safety.*  Tapes, plans and programs are immutable after construction
(lazy builds happen under a lock); each sweep mallocs its own scratch.

Public API: :func:`grad`, :func:`value_and_grad`, :func:`vjp`, :func:`jvp`,
:func:`jacobian`, :func:`hvp`, :func:`hessian`, :func:`trace` -> :class:`Tape`,
:func:`primitive`, :class:`ScipyObjective`, and traceable math
(:func:`where`, :func:`sigmoid`, :func:`exp` ...).  Guide: ``docs/autodiff.md``.
"""

from ._api import (
    ScipyObjective,
    Tape,
    execute,
    grad,
    hessian,
    hvp,
    jacobian,
    jvp,
    trace,
    value_and_grad,
    vjp,
)
from ._graph import (
    Graph,
    Traced,
    TracingError,
    _apply,
    broadcast_to,
    concatenate,
    dot,
    matmul,
    mean,
    reshape,
    stack,
    where,
)
from ._graph import sum_ as sum  # noqa: A001
from ._primitives import Primitive, get, primitive, register, registered

__all__ = [
    "grad", "value_and_grad", "vjp", "jvp", "jacobian", "hvp", "hessian", "trace", "Tape",
    "ScipyObjective", "primitive", "Primitive", "register", "get", "registered",
    "TracingError", "Traced", "Graph", "execute",
    "where", "sigmoid", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "abs",
    "sign", "square", "maximum", "minimum", "sum", "mean", "dot", "matmul", "reshape", "stack",
    "concatenate", "broadcast_to",
]


def _elementwise(op, doc):
    def fn(*args):
        return _apply(op, *args)
    fn.__name__ = op
    fn.__qualname__ = op
    fn.__doc__ = doc + " (works on numpy arrays and traced values)."
    return fn


sigmoid = _elementwise("sigmoid", "Logistic sigmoid 1 / (1 + exp(-x))")
exp = _elementwise("exp", "Elementwise exp")
log = _elementwise("log", "Elementwise natural log")
log1p = _elementwise("log1p", "Elementwise log(1 + x)")
expm1 = _elementwise("expm1", "Elementwise exp(x) - 1")
sqrt = _elementwise("sqrt", "Elementwise square root")
sin = _elementwise("sin", "Elementwise sine")
cos = _elementwise("cos", "Elementwise cosine")
tanh = _elementwise("tanh", "Elementwise tanh")
abs = _elementwise("abs", "Elementwise absolute value")  # noqa: A001
sign = _elementwise("sign", "Elementwise sign")
square = _elementwise("square", "Elementwise square")
maximum = _elementwise("maximum", "Elementwise maximum")
minimum = _elementwise("minimum", "Elementwise minimum")
