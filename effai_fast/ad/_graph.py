"""The traced graph: array-level nodes recorded by running user code on placeholders.

A :class:`Graph` is an append-only list of nodes.  Each node has an op name, a
tuple of argument node ids, a hashable ``attr`` and a shape; constants are nodes
whose value lives in the graph's constant table.  Recording folds constants
(an op whose arguments are all constants is computed at once with numpy and
never recorded), applies a few exact algebraic identities (``x + 0``, ``x * 1``
...) and shares common subexpressions (a node with the same op, arguments and
attr as an existing one is that node).  Derivative transforms (:mod:`._transforms`)
append to the same graph, so a gradient graph shares every forward value it uses.

User code sees :class:`Traced` values: numpy-style operators, ``__array_ufunc__``
(``np.exp(x)``), ``__array_function__`` (``np.sum``, ``np.dot``, ``np.where`` ...),
indexing and slicing.  Turning a traced value into a Python bool (``if x > 0:``)
raises a TypeError that suggests :func:`effai_fast.ad.where`.
"""

from __future__ import annotations

import numbers
import sys

import numpy as np

__all__ = ["Graph", "Traced", "TracingError", "ELEMENTWISE", "UNARY", "BINARY", "COMPARE"]

UNARY = ("neg", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sigmoid",
         "abs", "sign", "square")
BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "mul0")
COMPARE = ("lt", "le", "gt", "ge", "eq", "ne")
ELEMENTWISE = frozenset(UNARY + BINARY + COMPARE + ("where",))


class TracingError(TypeError):
    """A traced value was used in a way a recorded tape cannot represent."""


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _mul0(a, b):
    """``a * b`` except that the result is exactly 0 wherever ``a == 0`` (adjoint rule)."""
    with np.errstate(invalid="ignore"):
        return np.where(a == 0, 0.0, a * b)


NP_IMPL = {
    "neg": np.negative, "exp": np.exp, "log": np.log, "log1p": np.log1p,
    "expm1": np.expm1, "sqrt": np.sqrt, "sin": np.sin, "cos": np.cos, "tanh": np.tanh,
    "sigmoid": _sigmoid, "abs": np.abs, "sign": np.sign, "square": np.square,
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.true_divide,
    "pow": np.power, "maximum": np.maximum, "minimum": np.minimum, "mul0": _mul0,
    "lt": lambda a, b: np.less(a, b).astype(np.float64),
    "le": lambda a, b: np.less_equal(a, b).astype(np.float64),
    "gt": lambda a, b: np.greater(a, b).astype(np.float64),
    "ge": lambda a, b: np.greater_equal(a, b).astype(np.float64),
    "eq": lambda a, b: np.equal(a, b).astype(np.float64),
    "ne": lambda a, b: np.not_equal(a, b).astype(np.float64),
    "where": lambda c, a, b: np.where(c != 0, a, b),
}

_HERE = __file__.rsplit("/", 1)[0]


def _user_frame() -> str:
    """'file:line' of the innermost frame outside this package (for debug messages)."""
    f = sys._getframe(2)
    while f is not None and f.f_code.co_filename.startswith(_HERE):
        f = f.f_back
    if f is None:
        return "?"
    return f"{f.f_code.co_filename}:{f.f_lineno}"


# --------------------------------------------------------------------------- indices
def _index_attr(idx, shape):
    """A hashable description of a basic/integer-array index (or TracingError)."""
    if not isinstance(idx, tuple):
        idx = (idx,)
    out = []
    for it in idx:
        if isinstance(it, Traced):
            raise TracingError("indexing with a traced value is not supported: the tape has a "
                               "fixed structure; use effai_fast.ad.where(cond, a, b) to select")
        if isinstance(it, slice):
            out.append(("s", it.start, it.stop, it.step))
        elif it is None:
            out.append(("n",))
        elif it is Ellipsis:
            out.append(("e",))
        elif isinstance(it, (numbers.Integral, np.integer)) and not isinstance(it, bool):
            out.append(("i", int(it)))
        else:
            arr = np.asarray(it)
            if arr.dtype.kind not in "iu":
                raise TracingError(f"unsupported index {it!r}: use ints, slices or integer arrays")
            out.append(("a", tuple(arr.ravel().tolist()), arr.shape))
    attr = tuple(out)
    # Validate (and learn the result shape) on a dummy array.
    np.empty(shape)[_index_from_attr(attr)]
    return attr


def _zeros(shape):
    """A read-only zero array of ``shape`` that allocates nothing (for shape inference)."""
    return np.broadcast_to(np.zeros((), dtype=np.float64), shape)


def _index_from_attr(attr):
    idx = []
    for it in attr:
        k = it[0]
        if k == "s":
            idx.append(slice(it[1], it[2], it[3]))
        elif k == "n":
            idx.append(None)
        elif k == "e":
            idx.append(Ellipsis)
        elif k == "i":
            idx.append(it[1])
        else:
            idx.append(np.array(it[1], dtype=np.intp).reshape(it[2]))
    return tuple(idx)


def eval_node(op, attr, shape, vals):
    """Evaluate one (non-input) node with numpy on argument values ``vals``."""
    if op in NP_IMPL:
        with np.errstate(all="ignore"):
            return np.asarray(NP_IMPL[op](*vals))
    if op == "sum":
        return np.asarray(np.sum(vals[0], axis=attr))
    if op == "sum_to":
        return _sum_to(vals[0], attr)
    if op == "broadcast_to":
        return np.broadcast_to(vals[0], attr)
    if op == "reshape":
        return np.reshape(vals[0], attr)
    if op == "transpose":
        return np.transpose(vals[0], attr)
    if op == "getitem":
        return np.asarray(vals[0][_index_from_attr(attr)])
    if op == "scatter":
        out = np.zeros(shape, dtype=vals[0].dtype)
        if any(it[0] == "a" for it in attr):     # integer arrays may repeat an index
            np.add.at(out, _index_from_attr(attr), vals[0])
        else:                                    # basic index: each element once
            out[_index_from_attr(attr)] = vals[0]
        return out
    if op == "matmul":
        return np.matmul(vals[0], vals[1])
    if op == "custom":
        prim, k = attr
        res = prim.impl(*vals)
        if prim.n_outputs > 1:
            res = res[k]
        return np.asarray(res, dtype=vals[0].dtype if vals else np.float64).reshape(shape)
    raise AssertionError(op)


def _sum_to(x, shape):
    """Sum ``x`` down to ``shape`` (the adjoint of broadcasting)."""
    if x.shape == tuple(shape):
        return x
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(
        i + lead for i, s in enumerate(shape) if s == 1 and x.shape[i + lead] != 1)
    return np.sum(x, axis=axes, keepdims=True).reshape(shape)


# --------------------------------------------------------------------------- graph
class Graph:
    """Append-only record of array-level operations (see the module docstring)."""

    def __init__(self):
        self.op: list[str] = []
        self.args: list[tuple] = []
        self.attr: list = []
        self.shape: list[tuple] = []
        self.src: list[str] = []
        self.value: dict[int, np.ndarray] = {}   # constants
        self._cse: dict = {}
        self.inputs: list[int] = []
        self.context: str | None = None   # set by derivative transforms (debug messages)

    def __len__(self):
        return len(self.op)

    # -- recording
    def _append(self, op, args, attr, shape, src=None):
        key = (op, args, attr)
        hit = self._cse.get(key)
        if hit is not None:
            return hit
        i = len(self.op)
        self.op.append(op)
        self.args.append(args)
        self.attr.append(attr)
        self.shape.append(tuple(shape))
        self.src.append(src if src is not None else (self.context or _user_frame()))
        self._cse[key] = i
        return i

    def input(self, shape, name="x"):
        i = len(self.op)
        self.op.append("input")
        self.args.append(())
        self.attr.append((name, len(self.inputs)))
        self.shape.append(tuple(shape))
        self.src.append(name)
        self.inputs.append(i)
        return i

    def const(self, value):
        v = np.asarray(value, dtype=np.float64)
        if v.ndim == 0:
            key = ("const", (), ("s", float(v) if not np.isnan(v) else "nan",
                                 bool(np.signbit(v))))
        else:
            key = ("const", (), ("a", v.shape, v.tobytes()))
        hit = self._cse.get(key)
        if hit is not None:
            return hit
        i = len(self.op)
        self.op.append("const")
        self.args.append(())
        self.attr.append(None)
        self.shape.append(v.shape)
        self.src.append("constant")
        self.value[i] = v
        self._cse[key] = i
        return i

    def is_const(self, i):
        return self.op[i] == "const"

    def const_scalar(self, i):
        """The value of node ``i`` if it is a constant with a single repeated value, else None."""
        if self.op[i] != "const":
            return None
        v = self.value[i]
        if v.size == 0:
            return None
        f = v.flat[0]
        if v.size == 1 or np.all(v == f):
            return float(f)
        return None

    def node(self, op, args, attr=None, shape=None):
        """Record ``op(args)`` with folding, identities and CSE; return the node id."""
        args = tuple(args)
        if shape is None:
            shape = self._infer_shape(op, args, attr)
        if all(self.op[a] == "const" for a in args) and op != "custom" and args:
            val = eval_node(op, attr, shape, [self.value[a] for a in args])
            return self.const(val)
        simp = self._simplify(op, args, shape)
        if simp is not None:
            return simp
        return self._append(op, args, attr, shape)

    def _infer_shape(self, op, args, attr):
        shapes = [self.shape[a] for a in args]
        if op in ELEMENTWISE:
            try:
                return np.broadcast_shapes(*shapes)
            except ValueError:
                raise ValueError(f"operands could not be broadcast together with shapes "
                                 f"{' '.join(map(str, shapes))}") from None
        if op == "sum":
            # zeros, not np.empty: arithmetic on stale memory can raise overflow warnings
            return _zeros(shapes[0]).sum(axis=attr).shape if shapes[0] else ()
        if op in ("sum_to", "broadcast_to", "reshape"):
            return tuple(attr)
        if op == "transpose":
            return tuple(shapes[0][k] for k in attr)
        if op == "getitem":
            return np.empty(shapes[0])[_index_from_attr(attr)].shape
        if op == "matmul":
            return np.matmul(_zeros(shapes[0]), _zeros(shapes[1])).shape
        raise AssertionError(op)

    def _simplify(self, op, args, shape):
        """Exact identities: return an existing node id, or None."""
        if op in ("add", "sub", "mul", "div", "pow") and len(args) == 2:
            a, b = args
            cb = self.const_scalar(b)
            ca = self.const_scalar(a)
            if op in ("add", "sub") and cb == 0.0 and self.shape[a] == shape:
                return a
            if op == "add" and ca == 0.0 and self.shape[b] == shape:
                return b
            if op in ("mul", "div", "pow") and cb == 1.0 and self.shape[a] == shape:
                return a
            if op == "mul" and ca == 1.0 and self.shape[b] == shape:
                return b
        if op == "mul0" and self.const_scalar(args[0]) == 0.0:
            return self.const(np.zeros(shape))
        if op == "mul0" and self.const_scalar(args[0]) == 1.0 and self.shape[args[1]] == shape:
            return args[1]
        if op in ("reshape", "broadcast_to", "sum_to") and self.shape[args[0]] == tuple(shape):
            return args[0]
        return None

    # -- structure
    def needed(self, outputs):
        """Sorted ids of the nodes ``outputs`` depend on (dead code elimination)."""
        seen = set()
        stack = [o for o in outputs]
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(self.args[i])
        return sorted(seen)

    def describe(self, i):
        return f"node {i} '{self.op[i]}' shape {self.shape[i]} (recorded at {self.src[i]})"


# --------------------------------------------------------------------------- traced values
def _as_id(g: Graph, x):
    if isinstance(x, Traced):
        if x.graph is not g:
            raise TracingError("a traced value from another trace was mixed into this one "
                               "(nested or leaked tracer)")
        return x.id
    if isinstance(x, (bool, np.bool_)):
        return g.const(float(x))
    arr = np.asarray(x)
    if arr.dtype == object:
        parts = [Traced(g, _as_id(g, e)) for e in arr.ravel()]
        return stack(parts).reshape(arr.shape).id if parts else g.const(np.zeros(arr.shape))
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"cannot use a value of dtype {arr.dtype} in a traced computation")
    return g.const(arr)


def _graph_of(*xs):
    for x in xs:
        if isinstance(x, Traced):
            return x.graph
        if isinstance(x, (list, tuple)):
            g = _graph_of(*x)
            if g is not None:
                return g
    return None


def _apply(op, *xs, attr=None):
    g = _graph_of(*xs)
    if g is None:  # plain numpy
        vals = [np.asarray(x, dtype=np.float64) for x in xs]
        return eval_node(op, attr, None, vals)
    return Traced(g, g.node(op, [_as_id(g, x) for x in xs], attr))


_CONTROL_FLOW = ("a traced value has no concrete truth value: Python control flow "
                 "(if/while/and/or/bool()) on values that depend on the inputs cannot be "
                 "recorded on a tape. Use effai_fast.ad.where(cond, a, b) (or np.where), "
                 "ad.maximum / ad.minimum / ad.abs instead.")

_UFUNCS = {
    "add": "add", "subtract": "sub", "multiply": "mul", "true_divide": "div", "divide": "div",
    "power": "pow", "float_power": "pow", "maximum": "maximum", "minimum": "minimum",
    "fmax": "maximum", "fmin": "minimum",
    "negative": "neg", "exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1",
    "sqrt": "sqrt", "sin": "sin", "cos": "cos", "tanh": "tanh", "absolute": "abs", "fabs": "abs",
    "sign": "sign", "square": "square", "expit": "sigmoid",
    "less": "lt", "less_equal": "le", "greater": "gt", "greater_equal": "ge", "equal": "eq",
    "not_equal": "ne",
}


class Traced:
    """A placeholder for an array (or scalar) while a function is being traced.

    Supports ``+ - * / ** @``, comparisons (giving 0/1 indicators), numpy ufuncs
    (``np.exp(x)``), ``np.sum / np.dot / np.where / np.stack`` ..., indexing and
    slicing.  It has no concrete value: ``bool(x)``, ``float(x)`` raise
    :class:`TracingError`.
    """

    __slots__ = ("graph", "id")
    __array_priority__ = 1000

    def __init__(self, graph: Graph, id: int):
        self.graph = graph
        self.id = id

    # -- metadata
    @property
    def shape(self):
        return self.graph.shape[self.id]

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return int(np.prod(self.shape))

    @property
    def dtype(self):
        return np.dtype(np.float64)

    @property
    def T(self):
        return self.transpose()

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d traced value")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d traced value")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self):
        return f"Traced(shape={self.shape}, {self.graph.op[self.id]})"

    # -- no concrete values
    def __bool__(self):
        raise TracingError(_CONTROL_FLOW)

    def __float__(self):
        raise TracingError("float() of a traced value: " + _CONTROL_FLOW)

    def __int__(self):
        raise TracingError("int() of a traced value: " + _CONTROL_FLOW)

    def __index__(self):
        raise TracingError("a traced value cannot be used as an index or size")

    def __array__(self, dtype=None, copy=None):
        raise TracingError("a traced value cannot be converted to a numpy array (np.asarray, "
                           "np.array, float()): keep it symbolic, or use effai_fast.ad functions")

    __hash__ = object.__hash__

    # -- arithmetic
    def __add__(self, o): return _apply("add", self, o)
    def __radd__(self, o): return _apply("add", o, self)
    def __sub__(self, o): return _apply("sub", self, o)
    def __rsub__(self, o): return _apply("sub", o, self)
    def __mul__(self, o): return _apply("mul", self, o)
    def __rmul__(self, o): return _apply("mul", o, self)
    def __truediv__(self, o): return _apply("div", self, o)
    def __rtruediv__(self, o): return _apply("div", o, self)

    def __pow__(self, o):
        if not isinstance(o, Traced):
            c = float(o)
            if c == 2.0:
                return _apply("square", self)
            if c == 0.5:
                return _apply("sqrt", self)
        return _apply("pow", self, o)

    def __rpow__(self, o): return _apply("pow", o, self)
    def __neg__(self): return _apply("neg", self)
    def __pos__(self): return self
    def __abs__(self): return _apply("abs", self)
    def __lt__(self, o): return _apply("lt", self, o)
    def __le__(self, o): return _apply("le", self, o)
    def __gt__(self, o): return _apply("gt", self, o)
    def __ge__(self, o): return _apply("ge", self, o)
    def __eq__(self, o): return _apply("eq", self, o)   # noqa: PLE0307
    def __ne__(self, o): return _apply("ne", self, o)
    def __matmul__(self, o): return matmul(self, o)
    def __rmatmul__(self, o): return matmul(o, self)

    # -- methods
    def sum(self, axis=None, keepdims=False):
        return sum_(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims=False):
        return mean(self, axis=axis, keepdims=keepdims)

    def dot(self, o):
        return dot(self, o)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return reshape(self, shape)

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return transpose(self, axes or None)

    def ravel(self):
        return reshape(self, (self.size,))

    def flatten(self):
        return self.ravel()

    def __getitem__(self, idx):
        g = self.graph
        attr = _index_attr(idx, self.shape)
        return Traced(g, g.node("getitem", (self.id,), attr))

    # -- numpy protocols
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__":
            if ufunc.__name__ == "add" and method == "reduce":
                return sum_(inputs[0], axis=kwargs.get("axis", 0))
            return NotImplemented
        if kwargs.get("out") is not None:
            raise TracingError(f"np.{ufunc.__name__}(..., out=) is not supported on traced values")
        name = ufunc.__name__
        if name == "matmul":
            return matmul(*inputs)
        if name == "reciprocal":
            return _apply("div", 1.0, inputs[0])
        if name == "positive":
            return inputs[0]
        op = _UFUNCS.get(name)
        if op is None:
            raise TracingError(f"numpy ufunc {name!r} has no rule on traced values; "
                               "write it with supported operations or define a custom "
                               "primitive (effai_fast.ad.primitive)")
        if op == "pow" and not isinstance(inputs[1], Traced):
            return inputs[0] ** inputs[1]
        return _apply(op, *inputs)

    def __array_function__(self, func, types, args, kwargs):
        impl = _ARRAY_FUNCTIONS.get(func)
        if impl is None:
            raise TracingError(f"np.{func.__name__} is not supported on traced values")
        return impl(*args, **kwargs)


# --------------------------------------------------------------------------- functions
def where(cond, a, b):
    """``a`` where ``cond`` is true (non-zero), else ``b``: the traceable ``if``."""
    return _apply("where", cond, a, b)


def _norm_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (numbers.Integral, np.integer)):
        axis = (int(axis),)
    return tuple(sorted(a % ndim if ndim else a for a in axis))


def sum_(x, axis=None, keepdims=False, **kw):
    if not isinstance(x, Traced):
        return np.sum(x, axis=axis, keepdims=keepdims)
    g = x.graph
    axes = _norm_axes(axis, x.ndim)
    out = Traced(g, g.node("sum", (x.id,), axes)) if axes else x
    if keepdims:
        shape = tuple(1 if i in axes else s for i, s in enumerate(x.shape))
        out = reshape(out, shape)
    return out


def mean(x, axis=None, keepdims=False, **kw):
    if not isinstance(x, Traced):
        return np.mean(x, axis=axis, keepdims=keepdims)
    axes = _norm_axes(axis, x.ndim)
    n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    return sum_(x, axis=axis, keepdims=keepdims) * (1.0 / n)


def reshape(x, shape, **kw):
    if not isinstance(x, Traced):
        return np.reshape(x, shape)
    if isinstance(shape, (numbers.Integral, np.integer)):
        shape = (int(shape),)
    shape = np.empty(x.shape).reshape(shape).shape
    g = x.graph
    return Traced(g, g.node("reshape", (x.id,), tuple(shape)))


def transpose(x, axes=None):
    if not isinstance(x, Traced):
        return np.transpose(x, axes)
    axes = tuple(range(x.ndim))[::-1] if axes is None else tuple(a % x.ndim for a in axes)
    if axes == tuple(range(x.ndim)):
        return x
    g = x.graph
    return Traced(g, g.node("transpose", (x.id,), axes))


def broadcast_to(x, shape):
    g = _graph_of(x)
    if g is None:
        return np.broadcast_to(x, shape)
    shape = tuple(shape)
    return Traced(g, g.node("broadcast_to", (_as_id(g, x),), shape))


def matmul(a, b):
    g = _graph_of(a, b)
    if g is None:
        return np.matmul(a, b)
    a = Traced(g, _as_id(g, a))
    b = Traced(g, _as_id(g, b))
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: operands must not be scalars")
    if a.ndim > 2 or b.ndim > 2:
        raise TracingError("matmul of arrays with more than 2 dimensions is not supported")
    a2 = a.reshape(1, a.shape[0]) if a.ndim == 1 else a
    b2 = b.reshape(b.shape[0], 1) if b.ndim == 1 else b
    if a2.shape[1] != b2.shape[0]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} are not aligned")
    out = Traced(g, g.node("matmul", (a2.id, b2.id), None))
    if a.ndim == 1 and b.ndim == 1:
        return out.reshape(())
    if a.ndim == 1:
        return out.reshape(b2.shape[1])
    if b.ndim == 1:
        return out.reshape(a2.shape[0])
    return out


def dot(a, b, out=None):
    ga = a.ndim if isinstance(a, Traced) else np.ndim(a)
    gb = b.ndim if isinstance(b, Traced) else np.ndim(b)
    if ga == 0 or gb == 0:
        return a * b
    return matmul(a, b)


def stack(arrays, axis=0):
    arrays = list(arrays)
    g = _graph_of(*arrays)
    if g is None:
        return np.stack(arrays, axis=axis)
    parts = [Traced(g, _as_id(g, a)) for a in arrays]
    shp = parts[0].shape
    if any(p.shape != shp for p in parts):
        raise ValueError("stack: all input arrays must have the same shape")
    expanded = [p.reshape(shp[:axis % (len(shp) + 1)] + (1,) + shp[axis % (len(shp) + 1):])
                for p in parts]
    return concatenate(expanded, axis=axis)


def concatenate(arrays, axis=0, **kw):
    arrays = list(arrays)
    g = _graph_of(*arrays)
    if g is None:
        return np.concatenate(arrays, axis=axis)
    parts = [Traced(g, _as_id(g, a)) for a in arrays]
    nd = parts[0].ndim
    axis = axis % nd
    total = sum(p.shape[axis] for p in parts)
    shape = list(parts[0].shape)
    shape[axis] = total
    shape = tuple(shape)
    out = None
    start = 0
    for p in parts:
        idx = (slice(None),) * axis + (slice(start, start + p.shape[axis]),)
        attr = _index_attr(idx, shape)
        s = Traced(g, g.node("scatter", (p.id,), attr, shape=shape))
        out = s if out is None else out + s
        start += p.shape[axis]
    return out


def _np_where(cond, x=None, y=None):
    if x is None or y is None:
        raise TracingError("np.where(cond) with one argument is not supported on traced values")
    return where(cond, x, y)


def _clip(a, a_min=None, a_max=None, **kw):
    if a_min is not None:
        a = _apply("maximum", a, a_min)
    if a_max is not None:
        a = _apply("minimum", a, a_max)
    return a


_ARRAY_FUNCTIONS = {
    np.sum: sum_, np.mean: mean, np.dot: dot, np.where: _np_where, np.stack: stack,
    np.concatenate: concatenate, np.reshape: reshape, np.transpose: transpose,
    np.broadcast_to: broadcast_to, np.clip: _clip, np.ravel: lambda a, **k: reshape(a, (-1,)),
    np.vdot: lambda a, b: sum_(a.ravel() * b.ravel()),
    np.inner: lambda a, b: dot(a, b),
    np.shape: lambda a: a.shape, np.ndim: lambda a: a.ndim, np.size: lambda a, axis=None: a.size,
}
