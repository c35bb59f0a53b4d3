"""Public functional API (grad, vjp, jvp, hessian ...) and the batched :class:`Tape`.

Each transformed function traces the user's function once per input shape
(cached), builds the derivative graph with :mod:`._transforms`, and compiles a
*plan*: the scalar :class:`~._tape.Program` when the graph lowers to a modest
number of scalar instructions, else the array-level executor (numpy / BLAS per
node) — the right choice for large vectors, matrices and custom primitives.
"""

from __future__ import annotations

import numbers
import threading

import numpy as np

from .._threads import resolve_n_threads, threads_for_work
from ._graph import Graph, Traced, TracingError, eval_node
from ._lower import NotLowerable, lower
from ._transforms import adjoints, tangents

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "jacobian", "hvp", "hessian", "trace",
           "Tape", "ScipyObjective", "execute"]

# Above this many estimated scalar instructions the array-level executor is used.
SCALAR_LIMIT = 30_000
_EMPTY = np.zeros(0)


# --------------------------------------------------------------------------- helpers
def _as_input(x, name):
    arr = np.asarray(x)
    if arr.dtype.kind in "iub":
        raise TypeError(f"{name} has integer/bool dtype {arr.dtype}: derivatives are taken "
                        "with respect to floating-point inputs; pass a float array")
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a real floating-point array, got dtype {arr.dtype}")
    return arr


def _as_real64(x, name):
    """A float64 array of the real numbers in ``x`` (tangents, cotangents); named error."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    return arr.astype(np.float64, copy=False)


def _trace(f, shapes, names=None):
    """Run ``f`` on placeholders of ``shapes``; return (graph, input ids, output id)."""
    g = Graph()
    ins = [g.input(s, (names[k] if names else f"arg{k}")) for k, s in enumerate(shapes)]
    out = f(*[Traced(g, i) for i in ins])
    return g, ins, _out_id(g, out)


def _out_id(g, out):
    if isinstance(out, Traced):
        if out.graph is not g:
            raise TracingError("the function returned a traced value of another trace")
        return out.id
    if isinstance(out, (tuple, list, dict)):
        raise TypeError("the function must return a single array or scalar, got "
                        f"{type(out).__name__}")
    arr = np.asarray(out)
    if arr.dtype == object:
        from ._graph import _as_id
        return _as_id(g, arr)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"the function returned a value of dtype {arr.dtype}")
    return g.const(arr)


def _estimate(g, outputs):
    """Estimated scalar instruction count of lowering the nodes ``outputs`` need."""
    total = 0
    for i in g.needed(outputs):
        op = g.op[i]
        if op == "custom":
            return None
        if op == "matmul":
            (m, k), (_, n) = g.shape[g.args[i][0]], g.shape[g.args[i][1]]
            total += 2 * m * n * k
        elif op == "sum" or op == "sum_to" or op == "scatter":
            total += int(np.prod(g.shape[g.args[i][0]]))
        elif op not in ("input", "const", "reshape", "transpose", "getitem", "broadcast_to"):
            total += int(np.prod(g.shape[i]))
    return total


def _eval_step(g, vals, multi, i, op, attr, shape, args):
    """Evaluate node ``i`` into ``vals``; ``multi`` caches multi-output primitives."""
    if op == "const":
        vals[i] = g.value[i]
    elif op == "custom" and attr[0].n_outputs > 1:
        # a multi-output primitive runs once for all its outputs
        key = (attr[0], args)
        if key not in multi:
            multi[key] = attr[0].impl(*[vals[a] for a in args])
        vals[i] = np.asarray(multi[key][attr[1]])
    else:
        vals[i] = eval_node(op, attr, shape, [vals[a] for a in args])


def execute(g: Graph, feeds: dict, outputs, steps=None):
    """Array-level executor: evaluate ``outputs`` of ``g`` with numpy, one node at a time.

    ``steps`` (from :func:`schedule`) skips the dependency walk on repeated calls.
    """
    if steps is None:
        steps = schedule(g, outputs, feeds)
    vals = dict(feeds)
    multi = {}
    with np.errstate(all="ignore"):
        for step in steps:
            _eval_step(g, vals, multi, *step)
    return [np.asarray(vals[o]) for o in outputs]


def schedule(g: Graph, outputs, feeds):
    """The nodes to evaluate, in order, to get ``outputs`` from the fed inputs."""
    steps = []
    for i in g.needed(list(outputs)):
        if i in feeds:
            continue
        if g.op[i] == "input":
            raise ValueError(f"no value fed for input node {i} ({g.attr[i][0]})")
        steps.append((i, g.op[i], g.attr[i], g.shape[i], g.args[i]))
    return steps


# Elementwise runs over arrays of at least this many elements are fused into one
# compiled sweep (the elements are the points); smaller ones run node by node.
FUSE_MIN = 512


class _FusedGroup:
    """A run of elementwise nodes of one shape, lowered to a Program over its elements.

    Full reductions of run members (``sum`` to a scalar, the adjoint of a broadcast
    parameter) are computed inside the same sweep as reduced outputs.  After
    :func:`_compile_items`, an input may be read in place from a contiguous range
    of another array (``x[1:]`` is ``x`` from element 1 on: ``in_src``), and an
    output whose only use is a contiguous slice of an adjoint sum is added straight
    into that sum's buffer (``direct``), so neither the slice nor the scatter of its
    adjoint is ever materialised.
    """

    def __init__(self, g, run, reds, users, plan_outputs):
        from ._graph import Graph
        self.shape = run[0][3]
        self.n = int(np.prod(self.shape))
        members = {st[0] for st in run}
        red_ids = {st[0] for st in reds}
        g2 = Graph()
        m = {}
        self.x_ext, self.p_ext = [], []
        x_in, p_in = [], []
        for i, op, attr, _shape, args in run:
            mapped = []
            for a in args:
                if a in m:
                    mapped.append(m[a])
                    continue
                if g.op[a] == "const" and g.const_scalar(a) is not None:
                    m[a] = g2.const(g.const_scalar(a))   # uniform constant: an immediate
                elif g.shape[a] == ():
                    m[a] = g2.input((), "p")
                    self.p_ext.append(a)
                    p_in.append(m[a])
                else:
                    m[a] = g2.input((), "x")
                    self.x_ext.append(a)
                    x_in.append(m[a])
                mapped.append(m[a])
            m[i] = g2.node(op, mapped, attr, shape=())
        self.outs = [i for i, *_ in run
                     if i in plan_outputs
                     or any(u not in members and u not in red_ids for u in users.get(i, ()))]
        self.reds = [st[0] for st in reds]
        self.st = lower(g2, x_in, p_in, [m[o] for o in self.outs],
                        [m[st[4][0]] for st in reds])
        self.program = self.st.program
        prog = self.program
        self.in_src = [(a, 0) for a in self.x_ext]     # (node, element offset)
        self.direct: dict[int, tuple] = {}             # out node -> (sum node, offset)
        self.pooled: set = set()                       # outs held in reused buffers
        self.n_blocks = (self.n + prog.block - 1) // prog.block
        # below this much work the sweep stays on one thread (no team to wake)
        self.work = self.n * max(prog.n_ops, 1)
        self.serial = self.work < 2_000_000

    def run(self, g, vals, nt=None, bufs=None, accs=None):
        """Sweep; results into ``vals``.  ``bufs``: reused buffers (a pool entry),
        ``accs``: the zeroed buffers of adjoint sums that outputs add into."""
        n = self.n
        ins = [np.ascontiguousarray(vals[a], dtype=np.float64) for a, _ in self.in_src]
        ioff = [off for _, off in self.in_src]
        P = np.array([float(vals[a]) for a in self.p_ext], dtype=np.float64) \
            if self.p_ext else _EMPTY
        if bufs is None:
            bufs = {}
        outs, ooff, acc = [], [], []
        for o in self.outs:
            d = self.direct.get(o)
            if d is not None and accs is not None:
                r, off = d
                buf = accs.get(r)
                if buf is None:
                    buf = accs[r] = _zeroed(bufs, r, g.shape[r])
                outs.append(buf)
                ooff.append(off)
                acc.append(True)
                continue
            buf = bufs.get(o) if o in self.pooled else None
            if buf is None:
                buf = np.empty(n)
                if o in self.pooled:
                    bufs[o] = buf
            outs.append(buf)
            ooff.append(0)
            acc.append(False)
            vals[o] = buf.reshape(self.shape)
        part = None
        if self.reds:
            part = bufs.get(("part", id(self)))
            if part is None:
                part = bufs[("part", id(self))] = np.empty((self.n_blocks, len(self.reds)))
        if self.serial:
            nt = 1
        else:
            nt = threads_for_work(resolve_n_threads(None) if nt is None else nt, self.work,
                                  2_000_000)
        self.program.run_columns(ins, P, outs, nt, part, n, ioff, ooff, acc)
        if self.reds:
            tot = part.sum(axis=0)
            for k, r in enumerate(self.reds):
                vals[r] = np.asarray(tot[k])


def _zeroed(bufs, key, shape):
    """A zero-filled float64 array of ``shape``, reused from ``bufs`` when pooled."""
    buf = bufs.get(("acc", key))
    if buf is None:
        return np.zeros(shape)
    buf.fill(0.0)
    return buf


def _contiguous_range(shape, attr):
    """Offset of a basic index into C-contiguous ``shape`` if the selected elements,
    in C order, are one contiguous run (``x[1:]``, ``x[2:5]``, ``X[3]``); else None."""
    from ._graph import _index_from_attr
    if any(it[0] == "a" for it in attr):
        return None
    size = int(np.prod(shape))
    pos = np.arange(size).reshape(shape)[_index_from_attr(attr)].ravel()
    if pos.size == 0 or pos[-1] - pos[0] != pos.size - 1 or np.any(np.diff(pos) != 1):
        return None
    return int(pos[0])


def _accumulations(g, steps, outputs):
    """Rewrite trees of ``add`` over slices' adjoints (``scatter``) as accumulations.

    Reverse mode turns every slice ``x[a:b]`` into ``scatter`` (zeros with the slice's
    adjoint in it), and the adjoints of one variable are summed with ``add``: for
    Rosenbrock ``x[1:]`` and ``x[:-1]`` that is two zero-filled arrays and a sum.  An
    ``("accum", leaves)`` step instead zeroes one buffer and adds each leaf into its
    range; a leaf is ``(node, offset)`` (a contiguous slice's adjoint) or
    ``(node, None)`` (a whole term).  Returns the rewritten steps.
    """
    users: dict[int, list] = {}
    for i, _op, _attr, _shape, args in steps:
        for a in args:
            users.setdefault(a, []).append(i)
    outset = set(outputs)
    by_id = {st[0]: st for st in steps}
    absorbed: set = set()
    accum: dict[int, tuple] = {}

    def private(i, parent):
        return i not in outset and users.get(i, []) == [parent]

    for st in reversed(steps):
        r, op, _attr, shape, args = st
        if op != "add" or r in absorbed:
            continue
        leaves, inner, stack = [], [], [(a, r) for a in args]
        while stack:
            c, parent = stack.pop()
            cs = by_id.get(c)
            if cs is not None and cs[1] == "add" and cs[3] == shape and private(c, parent):
                inner.append(c)
                stack.extend((a, c) for a in cs[4])
                continue
            if (cs is not None and cs[1] == "scatter" and cs[3] == shape
                    and private(c, parent)):
                off = _contiguous_range(shape, cs[2])
                if off is not None:
                    inner.append(c)
                    leaves.append((cs[4][0], off))
                    continue
            leaves.append((c, None))
        if not any(off is not None for _, off in leaves):
            continue
        absorbed.update(inner)
        accum[r] = tuple(reversed(leaves))
    if not accum:
        return steps
    out = []
    for st in steps:
        i = st[0]
        if i in absorbed:
            continue
        if i in accum:
            leaves = accum[i]
            out.append((i, "accum", leaves, st[3], tuple(src for src, _ in leaves)))
        else:
            out.append(st)
    return out


_ALLOCATING = frozenset(("sum", "scatter", "matmul", "accum")) | frozenset(
    ("neg", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sigmoid", "abs",
     "sign", "square", "add", "sub", "mul", "div", "pow", "maximum", "minimum", "mul0",
     "lt", "le", "gt", "ge", "eq", "ne", "where"))


def _compile_items(g, steps, outputs, fuse=True):
    """Schedule for the array-level executor: fused groups, accumulations, nodes.

    Beyond :func:`_fuse`: slices read in place by fused groups, adjoint sums
    accumulated in place, dead steps dropped, and the buffers of intermediate
    values that never escape (every user allocates its own result) marked for
    reuse across calls.
    """
    steps = _accumulations(g, steps, outputs)
    items = _fuse(g, steps, outputs) if fuse else [("node", st) for st in steps]
    accum_steps = {it[0]: it for kind, it in items if kind == "node" and it[1] == "accum"}
    users: dict[int, list] = {}
    for kind, it in items:
        if kind == "fused":
            for a in it.x_ext + it.p_ext:
                users.setdefault(a, []).append(it)
        else:
            for a in it[4]:
                users.setdefault(a, []).append(it)
    outset = set(outputs)
    node_of = {it[0]: it for kind, it in items if kind == "node"}
    for kind, it in items:
        if kind != "fused":
            continue
        # inputs that are contiguous slices of another array: read in place
        src = []
        for a, _ in it.in_src:
            st = node_of.get(a)
            off = None
            if st is not None and st[1] == "getitem":
                off = _contiguous_range(g.shape[st[4][0]], st[2])
            src.append((st[4][0], off) if off is not None else (a, 0))
        it.in_src = src
        # outputs used only as one slice's adjoint in an accumulation: add in place
        for o in it.outs:
            us = users.get(o, [])
            if o in outset or len(us) != 1 or isinstance(us[0], _FusedGroup) \
                    or us[0][1] != "accum":
                continue
            r = us[0][0]
            hits = [off for s, off in accum_steps[r][2] if s == o]
            if len(hits) == 1 and hits[0] is not None:
                it.direct[o] = (r, hits[0])
    # drop dead steps (slices now read in place), walking backwards
    needed = set(outset)
    kept = []
    for kind, it in reversed(items):
        if kind == "fused":
            needed.update(a for a, _ in it.in_src)
            needed.update(it.p_ext)
            needed.update(r for r, _ in it.direct.values())
        elif it[0] not in needed:
            continue
        elif it[1] == "accum":
            direct = {(o, d[1]) for kf, f in items if kf == "fused"
                      for o, d in f.direct.items() if d[0] == it[0]}
            needed.update(s for s, off in it[2] if (s, off) not in direct)
        else:
            needed.update(it[4])
        kept.append((kind, it))
    kept.reverse()
    # intermediate results that never escape: reused buffers
    readers: dict[int, list] = {}
    for kind, it in kept:
        if kind == "fused":
            for a, _ in it.in_src:
                readers.setdefault(a, []).append("fused")
            for a in it.p_ext:
                readers.setdefault(a, []).append("fused")
        else:
            for a in it[4]:
                readers.setdefault(a, []).append(it[1])
    for kind, it in kept:
        if kind == "fused":
            it.pooled = {o for o in it.outs if o not in outset and o not in it.direct
                         and all(r in _ALLOCATING or r == "fused" for r in readers.get(o, ()))}
    final = []
    for kind, it in kept:
        if kind == "node" and it[1] == "accum":
            direct = {(o, d[1]) for kf, f in kept if kf == "fused"
                      for o, d in f.direct.items() if d[0] == it[0]}
            leaves = tuple((s, off) for s, off in it[2] if (s, off) not in direct)
            pooled = it[0] not in outset and all(
                r in _ALLOCATING or r == "fused" for r in readers.get(it[0], ()))
            final.append(("accum", (it[0], it[3], leaves, pooled)))
        else:
            final.append((kind, it))
    return final


def _is_full_reduction(g, st):
    i, op, attr, shape, args = st
    if shape != () or len(args) != 1:
        return False
    return op in ("sum", "sum_to")


def _fuse(g, steps, outputs):
    """Group elementwise steps of one (large) shape into _FusedGroups.

    Runs stay open while independent work is scheduled around them: a full
    reduction of a member joins its run (reduced in the sweep), a node that reads a
    run's results is deferred until the run is emitted, and a run is emitted
    (flushed) only when a later step needs one of its results to continue.
    """
    from ._graph import ELEMENTWISE
    users: dict[int, set] = {}
    for i, _op, _attr, _shape, args in steps:
        for a in args:
            users.setdefault(a, set()).add(i)
    outset = set(outputs)
    items = []
    runs: dict[tuple, dict] = {}     # shape -> {"run", "reds", "after", "members"}
    owner: dict[int, tuple] = {}     # node id -> shape of the open run that produces it

    def flush(shape):
        r = runs.pop(shape)
        for i in list(owner):
            if owner[i] == shape:
                del owner[i]
        if len(r["run"]) >= 2 or r["reds"]:
            items.append(("fused", _FusedGroup(g, r["run"], r["reds"], users, outset)))
        else:
            items.extend(("node", st) for st in r["run"])
        items.extend(("node", st) for st in r["after"])

    for st in steps:
        i, op, attr, shape, args = st
        if op == "const":
            items.append(("node", st))
            continue
        fusable = (op in ELEMENTWISE and len(shape) >= 1 and int(np.prod(shape)) >= FUSE_MIN
                   and all(g.shape[a] in (shape, ()) for a in args))
        if fusable:
            # results of other runs, or non-member results of this run, must exist first
            for shp in {owner[a] for a in args if a in owner
                        and (owner[a] != shape or a not in runs[shape]["members"])}:
                flush(shp)
            r = runs.setdefault(shape, {"run": [], "reds": [], "after": [], "members": set()})
            r["run"].append(st)
            r["members"].add(i)
            owner[i] = shape
            continue
        owners = {owner[a] for a in args if a in owner}
        if (len(owners) == 1 and _is_full_reduction(g, st)
                and args[0] in runs[next(iter(owners))]["members"]):
            shp = next(iter(owners))
            runs[shp]["reds"].append(st)
            owner[i] = shp
            continue
        if len(owners) == 1:
            shp = next(iter(owners))
            runs[shp]["after"].append(st)
            owner[i] = shp
            continue
        for shp in owners:
            flush(shp)
        items.append(("node", st))
    for shp in list(runs):
        flush(shp)
    return items


def _execute_items(g, feeds, outputs, items, pool=None):
    """Run a schedule from :func:`_compile_items`; ``pool`` is a list of reusable
    buffer sets (one is taken for the call and given back: thread-safe under the GIL)."""
    vals = dict(feeds)
    multi = {}
    bufs = None
    if pool is not None:
        try:
            bufs = pool.pop()
        except IndexError:
            bufs = {}
    accs = {}
    with np.errstate(all="ignore"):
        for kind, it in items:
            if kind == "fused":
                it.run(g, vals, None, bufs, accs)
            elif kind == "accum":
                r, shape, leaves, pooled = it
                acc = accs.pop(r, None)
                if acc is None:
                    acc = _zeroed(bufs, r, shape) if pooled and bufs is not None \
                        else np.zeros(shape)
                if pooled and bufs is not None:
                    bufs[("acc", r)] = acc
                flat = acc.reshape(-1)
                for src, off in leaves:
                    v = g.value[src] if g.op[src] == "const" else vals[src]
                    if off is None:
                        acc += v
                    else:
                        v = np.ravel(v)
                        flat[off:off + v.size] += v
                vals[r] = acc
            else:
                _eval_step(g, vals, multi, *it)
    res = [np.asarray(vals[o]) for o in outputs]
    if pool is not None:
        pool.append(bufs)
    return res


class _Plan:
    """Evaluate fixed output nodes of a graph from fixed input nodes (one point)."""

    def __init__(self, g, inputs, outputs, force_array=False, fuse=True):
        self.g = g
        self.fuse = fuse
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.out_shapes = [g.shape[o] for o in self.outputs]
        self.out_sizes = [int(np.prod(s)) for s in self.out_shapes]
        self.scalar = None
        est = None if force_array else _estimate(g, self.outputs)
        if est is not None and est <= SCALAR_LIMIT:
            try:
                self.scalar = lower(g, self.inputs, [], self.outputs, block=1)
            except NotLowerable:
                self.scalar = None
        self.program = self.scalar.program if self.scalar is not None else None
        self.steps = None
        self.items = None
        self._pool: list = []     # reusable intermediate buffers (see _execute_items)

    def __call__(self, *arrays):
        """Outputs as float64 arrays (a flat concatenation when ``flat``)."""
        if self.program is not None:
            x = np.concatenate([np.ravel(a) for a in arrays]) if len(arrays) != 1 else \
                np.ravel(arrays[0])
            r = self.program.run1(np.ascontiguousarray(x, dtype=np.float64), _EMPTY)
            res, pos = [], 0
            for s, n in zip(self.out_shapes, self.out_sizes, strict=False):
                res.append(r[pos:pos + n].reshape(s))
                pos += n
            return res
        feeds = {i: np.asarray(a, dtype=np.float64).reshape(self.g.shape[i])
                 for i, a in zip(self.inputs, arrays, strict=False)}
        items = self.items
        if items is None:
            steps = schedule(self.g, self.outputs, feeds)
            items = _compile_items(self.g, steps, self.outputs, self.fuse)
            self.steps, self.items = steps, items
        return _execute_items(self.g, feeds, self.outputs, items, self._pool)


def _argnums_tuple(argnums, n):
    t = (argnums,) if isinstance(argnums, numbers.Integral) else tuple(argnums)
    for a in t:
        if not -n <= a < n:
            raise ValueError(f"argnums {a} out of range for a function of {n} argument(s)")
    return tuple(a % n for a in t)


class _Transformed:
    """A function transform with a per-shape cache of compiled plans (thread-safe)."""

    kind = ""

    def __init__(self, f, argnums=0):
        if not callable(f):
            raise TypeError(f"f must be callable, got {type(f).__name__}")
        self.f = f
        self.argnums = argnums
        self._cache = {}
        self._lock = threading.Lock()
        self.__wrapped__ = f
        self.__doc__ = getattr(f, "__doc__", None)
        self.__name__ = f"{self.kind}({getattr(f, '__name__', 'f')})"

    def _plan(self, arrays):
        key = tuple(a.shape for a in arrays)
        plan = self._cache.get(key)
        if plan is None:
            with self._lock:
                plan = self._cache.get(key)
                if plan is None:
                    plan = self._build(key)
                    self._cache[key] = plan
        return plan

    def _convert(self, args):
        if not args:
            raise TypeError(f"{self.__name__} needs at least one argument")
        return [_as_input(a, f"argument {k}") for k, a in enumerate(args)]


class _GradFn(_Transformed):
    def __init__(self, f, argnums=0, with_value=False, has_aux=False):
        self.kind = "value_and_grad" if with_value else "grad"
        super().__init__(f, argnums)
        self.with_value = with_value
        self._fast = None   # (shape, program, n) for the single-array float64 fast path

    def _build(self, shapes):
        argn = _argnums_tuple(self.argnums, len(shapes))
        g, ins, out = _trace(self.f, shapes)
        if g.shape[out] != ():
            raise TypeError(f"{self.kind} requires a function with a scalar output, got shape "
                            f"{g.shape[out]}; use jacobian() or vjp() for non-scalar outputs")
        gr = adjoints(g, [out], [g.const(1.0)], [ins[a] for a in argn])
        outs = ([out] if self.with_value else []) + gr
        plan = _Plan(g, ins, outs)
        plan.argn = argn
        if len(shapes) == 1 and plan.program is not None and len(shapes[0]) == 1:
            self._fast = plan.program.call1
        return plan

    def __call__(self, *args):
        fast = self._fast
        # the compiled fast path reads a C-contiguous float64 ndarray buffer only; lists,
        # strided views etc. take the validated path (a buffer error would name nothing)
        if (fast is not None and len(args) == 1 and isinstance(args[0], np.ndarray)
                and args[0].flags.c_contiguous):
            r = fast(args[0], self.with_value)
            if r is not None:
                return r
        arrays = self._convert(args)
        plan = self._plan(arrays)
        res = plan(*arrays)
        dt = np.result_type(*[arrays[a].dtype for a in plan.argn])
        grads = [r.astype(arrays[a].dtype, copy=False) for r, a in
                 zip(res[1:] if self.with_value else res, plan.argn, strict=False)]
        g = grads[0] if isinstance(self.argnums, numbers.Integral) else tuple(grads)
        if self.with_value:
            return res[0].astype(dt, copy=False)[()], g
        return g


def grad(f, argnums=0):
    """Gradient of a scalar-valued function (reverse mode).

    Parameters
    ----------
    f : callable
        ``f(*arrays) -> scalar``, written with numpy operators and functions
        (``np.exp``, ``np.sum`` ...) or those of :mod:`effai_fast.ad`; traced
        once per input shape.  Python ``if`` on values that depend on the inputs
        is not allowed (use :func:`where`).
    argnums : int or tuple of int, default=0
        Which positional argument(s) to differentiate with respect to.

    Returns
    -------
    callable
        ``g(*arrays)`` returning the gradient (same shape as the argument), or a
        tuple of gradients when ``argnums`` is a tuple.

    Raises
    ------
    TypeError
        At call time, if ``f`` returns a non-scalar, or an argument is an integer array.

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast import ad
    >>> def rosen(x):
    ...     return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)
    >>> ad.grad(rosen)(np.array([1.0, 1.0, 1.0]))
    array([0., 0., 0.])
    """
    return _GradFn(f, argnums, with_value=False)


def value_and_grad(f, argnums=0):
    """Like :func:`grad` but returns ``(f(x), grad)`` from one forward+reverse sweep.

    The result can be passed to ``scipy.optimize.minimize(..., jac=True)``.
    """
    return _GradFn(f, argnums, with_value=True)


# --------------------------------------------------------------------------- vjp / jvp
class _VJPFn(_Transformed):
    kind = "vjp"

    def _build(self, shapes):
        g, ins, out = _trace(self.f, shapes)
        ct = g.input(g.shape[out], "cotangent")
        adj = adjoints(g, [out], [ct], ins)
        return _Plan(g, ins, [out]), _Plan(g, ins + [ct], adj), g.shape[out]


def vjp(f, *primals):
    """Reverse mode: ``(f(*primals), vjp_fn)`` with ``vjp_fn(cotangent) -> tuple``.

    ``vjp_fn(ct)`` returns one array per primal: ``ct`` contracted with the
    Jacobian of ``f`` at ``primals`` (the sweep is compiled once and reused).
    """
    t = _VJPFn(f)
    arrays = t._convert(primals)
    fplan, bplan, oshape = t._plan(arrays)
    value = fplan(*arrays)[0]

    def vjp_fn(cotangent):
        c = _as_real64(cotangent, "cotangent")
        if c.shape != oshape:
            raise ValueError(f"cotangent must have shape {oshape} (the output's), got {c.shape}")
        res = bplan(*arrays, c)
        return tuple(r.astype(a.dtype, copy=False) for r, a in zip(res, arrays, strict=True))

    return value.astype(np.result_type(*arrays), copy=False)[()], vjp_fn


class _JVPFn(_Transformed):
    kind = "jvp"

    def _build(self, shapes):
        g, ins, out = _trace(self.f, shapes)
        tins = [g.input(s, f"tangent{k}") for k, s in enumerate(shapes)]
        (tan,) = tangents(g, [out], dict(zip(ins, tins, strict=False)))
        return _Plan(g, ins + tins, [out, tan])


def jvp(f, primals, tangents_):
    """Forward mode: ``(f(*primals), J @ tangents)`` from one tangent sweep.

    Parameters
    ----------
    f : callable
    primals, tangents_ : tuple of arrays
        Points and tangent vectors (same shapes), one per argument of ``f``.
    """
    primals = tuple(primals) if isinstance(primals, (tuple, list)) else (primals,)
    tangents_ = tuple(tangents_) if isinstance(tangents_, (tuple, list)) else (tangents_,)
    if len(primals) != len(tangents_):
        raise ValueError("primals and tangents must have the same number of entries")
    t = _JVPFn(f)
    arrays = t._convert(primals)
    tans = [_as_real64(v, f"tangents[{k}]") for k, v in enumerate(tangents_)]
    for k, (a, v) in enumerate(zip(arrays, tans, strict=False)):
        if a.shape != v.shape:
            raise ValueError(f"tangents[{k}] must have shape {a.shape}, got {v.shape}")
    val, tan = t._plan(arrays)(*arrays, *tans)
    dt = np.result_type(*arrays)
    return val.astype(dt, copy=False)[()], tan.astype(dt, copy=False)[()]


# --------------------------------------------------------------------------- jacobian / hessian
class _SeededFn(_Transformed):
    """Jacobian / Hessian: one derivative graph evaluated at many unit seeds.

    The seeds are the *points* of a batched sweep and the primal point is its
    shared parameter vector, so all ``n`` (or ``m``) sweeps run in one compiled
    call (SoA blocks over seeds), or row by row on the array-level executor.
    """

    def __init__(self, f, mode, kind):
        self.kind = kind
        super().__init__(f, 0)
        self.mode = mode

    def _build(self, shapes):
        (shape,) = shapes
        g, ins, out = _trace(self.f, shapes)
        (x,) = ins
        n_in = int(np.prod(shape))
        if self.kind == "hessian":
            if g.shape[out] != ():
                raise TypeError(f"hessian requires a scalar output, got shape {g.shape[out]}")
            (gr,) = adjoints(g, [out], [g.const(1.0)], [x])
            v = g.input(shape, "tangent")
            (res,) = tangents(g, [gr], {x: v})
            seed, m, reverse = v, n_in, False
        else:
            n_out = int(np.prod(g.shape[out]))
            reverse = self.mode == "reverse" or (self.mode == "auto" and n_out <= n_in)
            if reverse:
                seed = g.input(g.shape[out], "cotangent")
                (res,) = adjoints(g, [out], [seed], [x])
                m = n_out
            else:
                seed = g.input(shape, "tangent")
                (res,) = tangents(g, [out], {x: seed})
                m = n_in
        est = _estimate(g, [res])
        st = None
        if est is not None and est <= SCALAR_LIMIT:
            try:
                st = lower(g, [seed], [x], [res])
            except NotLowerable:
                st = None
        plan = None if st is not None else _Plan(g, [x, seed], [res], force_array=True)
        return (g, out, seed, res, m, reverse, st, plan)

    def __call__(self, x, *, n_threads=None):
        (arr,) = self._convert((x,))
        g, out, seed, res, m, reverse, st, plan = self._plan([arr])
        shape = arr.shape
        eye = np.eye(m)
        if st is not None:
            nt = threads_for_work(resolve_n_threads(n_threads), m * st.n_ops, 200_000)
            rows = np.empty((m, st.program.n_outputs))
            st.program.run(eye, np.ascontiguousarray(arr, dtype=np.float64).ravel(), rows,
                           np.empty((m, 0)), np.empty(((m + st.program.block - 1)
                                                       // st.program.block, 0)), nt)
        else:
            rows = np.stack([np.ravel(plan(arr, e.reshape(g.shape[seed]))[0]) for e in eye])
        oshape = g.shape[out]
        if self.kind == "hessian":
            J = rows.reshape(shape + shape)
        elif reverse:                 # rows[i] = d out_i / dx
            J = rows.reshape(oshape + shape)
        else:                         # rows[j] = d out / dx_j
            J = np.moveaxis(rows.reshape(shape + oshape), list(range(len(shape))),
                            list(range(len(oshape), len(oshape) + len(shape)))) \
                if oshape else rows.reshape(shape)
        return J.astype(arr.dtype, copy=False)


def jacobian(f, mode="auto"):
    """Jacobian ``J[out_idx..., in_idx...]`` of ``f(x)`` (one array argument).

    ``mode="auto"`` uses reverse mode (one adjoint sweep per output) when the
    output has no more elements than the input, forward mode (one tangent sweep
    per input) otherwise; all sweeps run as one batched call.
    """
    if mode not in ("auto", "forward", "reverse"):
        raise ValueError(f"mode must be 'auto', 'forward' or 'reverse', got {mode!r}")
    return _SeededFn(f, mode, "jacobian")


def hessian(f):
    """Hessian of a scalar function of one array (forward-over-reverse, n seeds batched)."""
    return _SeededFn(f, "forward", "hessian")


class _HVPFn(_Transformed):
    kind = "hvp"

    def _build(self, shapes):
        g, ins, out = _trace(self.f, shapes[:1])
        if g.shape[out] != ():
            raise TypeError(f"hvp requires a scalar output, got shape {g.shape[out]}")
        (x,) = ins
        (gr,) = adjoints(g, [out], [g.const(1.0)], [x])
        v = g.input(shapes[0], "tangent")
        (hv,) = tangents(g, [gr], {x: v})
        return _Plan(g, [x, v], [hv])

    def __call__(self, x, v):
        (arr,) = self._convert((x,))
        vv = _as_real64(v, "v")
        if vv.shape != arr.shape:
            raise ValueError(f"v must have the shape of x {arr.shape}, got {vv.shape}")
        plan = self._plan([arr, vv])
        return plan(arr, vv)[0].astype(arr.dtype, copy=False)


def hvp(f):
    """Hessian-vector product ``hvp(f)(x, v) = H(x) @ v`` (forward-over-reverse).

    One sweep over the tangent transform of the gradient graph: about 4x the cost
    of ``f``, whatever the dimension, and the Hessian is never formed.
    """
    return _HVPFn(f, 0)


# --------------------------------------------------------------------------- scipy
class ScipyObjective:
    """Adapters for :func:`scipy.optimize.minimize`: ``fun``, ``jac``, ``hessp``.

    ``fun`` and ``jac`` share one forward+reverse sweep (the last point is
    remembered), ``hessp`` is a compiled Hessian-vector product.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy.optimize import minimize
    >>> from effai_fast import ad
    >>> obj = ad.ScipyObjective(lambda x: np.sum((x - 3.0) ** 2))
    >>> res = minimize(obj.fun, np.zeros(4), jac=obj.jac, hessp=obj.hessp, method="trust-ncg")
    >>> np.allclose(res.x, 3.0)
    True
    """

    def __init__(self, f):
        self.f = f
        self._vg = value_and_grad(f)
        self._hvp = hvp(f)
        self._last = None
        self._lock = threading.Lock()

    def _eval(self, x):
        x = np.asarray(x, dtype=np.float64)
        with self._lock:
            last = self._last
        if last is not None and last[0].shape == x.shape and np.array_equal(last[0], x):
            return last[1], last[2]
        v, gr = self._vg(x)
        with self._lock:
            self._last = (x.copy(), float(v), np.array(gr))
        return float(v), np.array(gr)

    def fun(self, x):
        return self._eval(x)[0]

    def jac(self, x):
        return self._eval(x)[1]

    def fun_and_jac(self, x):
        return self._eval(x)

    def hessp(self, x, p):
        return self._hvp(np.asarray(x, dtype=np.float64), np.asarray(p, dtype=np.float64))


# --------------------------------------------------------------------------- batched tape
_WRT = ("inputs", "params", "all")


class Tape:
    """A function traced once, evaluated (and differentiated) at many points.

    Build it with :func:`trace`.  Every method takes ``X`` of shape
    ``(n_points, n_inputs)`` (per-point inputs; float32 or float64 — the sweep
    runs in that dtype) and ``params`` of shape ``(n_params,)`` shared by all
    points.  Points run in structure-of-arrays blocks, blocks over
    ``n_threads`` OpenMP threads; results do not depend on the thread count.

    A Tape is immutable once built (programs are compiled lazily under a lock)
    and may be used from several threads at once.

    Attributes
    ----------
    n_inputs, n_params : int
    graph : Graph
        The recorded array-level graph (shared by every derived program).
    """

    def __init__(self, f, n_inputs, n_params=0):
        for name, v in (("n_inputs", n_inputs), ("n_params", n_params)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if n_inputs < 1:
            raise ValueError(f"n_inputs must be >= 1, got {n_inputs}")
        if n_params < 0:
            raise ValueError(f"n_params must be >= 0, got {n_params}")
        if not callable(f):
            raise TypeError("f must be callable")
        self.f = f
        self.n_inputs = int(n_inputs)
        self.n_params = int(n_params)
        g = Graph()
        self.x = g.input((self.n_inputs,), "x")
        self.p = g.input((self.n_params,), "params")
        args = [Traced(g, self.x)] + ([Traced(g, self.p)] if self.n_params else [])
        self.out = _out_id(g, f(*args))
        if g.shape[self.out] != ():
            raise TypeError(f"trace: f must return a scalar per point, got shape "
                            f"{g.shape[self.out]}")
        self.graph = g
        self._programs = {}
        self._lock = threading.Lock()

    def __repr__(self):
        return (f"Tape(n_inputs={self.n_inputs}, n_params={self.n_params}, "
                f"graph_nodes={len(self.graph)})")

    # -- compiled programs, built once
    def _program(self, kind, debug=False):
        key = (kind, bool(debug))
        st = self._programs.get(key)
        if st is None:
            with self._lock:
                st = self._programs.get(key)
                if st is None:
                    st = self._build(kind, debug)
                    self._programs[key] = st
        return st

    def _build(self, kind, debug=False):
        g = self.graph
        x, p, out = self.x, self.p, self.out
        one = g.const(1.0)
        xs, ps = [x], [p]
        red = []
        if kind == "value":
            outs = [out]
        elif kind == "inputs":
            outs = [out] + adjoints(g, [out], [one], [x])
        elif kind == "params":
            outs = [out]
            red = adjoints(g, [out], [one], [p])
        elif kind == "params_pp":
            outs = [out] + adjoints(g, [out], [one], [p])
        elif kind == "all":
            gx, gp = adjoints(g, [out], [one], [x, p])
            outs, red = [out, gx], [gp]
        elif kind == "all_pp":
            gx, gp = adjoints(g, [out], [one], [x, p])
            outs = [out, gx, gp]
        elif kind == "jvp":
            v = g.input((self.n_inputs,), "tangent")
            outs = [out] + tangents(g, [out], {x: v})
            xs = [x, v]
        elif kind == "hvp":
            (gx,) = adjoints(g, [out], [one], [x])
            v = g.input((self.n_inputs,), "tangent")
            outs = tangents(g, [gx], {x: v})
            xs = [x, v]
        else:  # pragma: no cover
            raise AssertionError(kind)
        try:
            return lower(g, xs, ps, outs, red, reuse=not debug)
        except NotLowerable:
            return _ArrayFallback(g, xs, ps, outs, red)

    def n_ops(self, kind="value"):
        """Scalar instructions in the optimised program for ``kind``."""
        st = self._program(kind)
        return getattr(st, "n_ops", None)

    # -- validation
    def _check(self, X, params, n_threads, extra=None):
        X = np.asarray(X)
        if X.dtype.kind not in "fiub":
            raise TypeError(f"X must be a real array, got dtype {X.dtype}")
        if X.ndim == 1 and self.n_inputs == 1:
            X = X[:, None]
        if X.ndim != 2 or X.shape[1] != self.n_inputs:
            raise ValueError(f"X must have shape (n_points, {self.n_inputs}), got {X.shape}")
        dt = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
        X = np.ascontiguousarray(X, dtype=dt)
        if not X.flags.writeable:  # the sweep's typed memoryviews are not const
            X = X.copy()
        if self.n_params:
            if params is None:
                raise ValueError(f"params is required (n_params={self.n_params})")
            P = np.asarray(params)
            if P.dtype.kind not in "fiub":
                raise TypeError(f"params must be a real array, got dtype {P.dtype}")
            if P.shape != (self.n_params,):
                raise ValueError(f"params must have shape ({self.n_params},), got {P.shape}")
            P = np.ascontiguousarray(P, dtype=dt)
            if not P.flags.writeable:
                P = P.copy()
        else:
            if params is not None and np.size(params):
                raise ValueError("params given but the tape has n_params=0")
            P = np.zeros(0, dtype=dt)
        nt = resolve_n_threads(n_threads)
        return X, P, nt

    @staticmethod
    def _outbuf(out, shape, dt, name):
        if out is None:
            return np.empty(shape, dtype=dt)
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{name} must be a numpy array")
        if out.shape != shape or out.dtype != dt or not out.flags.c_contiguous \
                or not out.flags.writeable:
            raise ValueError(f"{name} must be a writeable C-contiguous {dt} array of shape "
                             f"{shape}, got {out.dtype} {out.shape}")
        return out

    def _sweep(self, kind, X, P, nt, outs, debug, soa=False):
        st = self._program(kind, debug)
        if isinstance(st, _ArrayFallback):
            if soa:   # the fallback fills rows: transpose into the caller's buffer
                tmp = np.empty(outs[1].shape[::-1], dtype=outs[1].dtype)
                red = st.run(X, P, [outs[0], tmp])
                outs[1][...] = tmp.T
                return red
            return st.run(X, P, outs)
        prog = st.program
        n = X.shape[0]
        nt = threads_for_work(nt, n * max(prog.n_ops, 1), 100_000)
        nb = (n + prog.block - 1) // prog.block
        part = np.empty((nb, prog.n_reduced))
        o1 = outs[0]
        o2 = outs[1] if len(outs) > 1 else np.empty((n, 0), dtype=X.dtype)
        bad = prog.run(X, P, o1, o2, part, nt, debug, soa)
        if bad is not None:
            blk, k = bad
            raise FloatingPointError(
                f"first NaN/Inf produced at point block {blk} (points {blk * prog.block}.."
                f"{min(n, (blk + 1) * prog.block) - 1}) by {st.describe_op(k)}")
        return part.sum(axis=0) if prog.n_reduced else None

    # -- public batched methods
    def value(self, X, params=None, *, n_threads=None, out=None, debug=False):
        """``f`` at every row of ``X``: an array of shape ``(n_points,)``.

        Parameters
        ----------
        X : array_like, shape (n_points, n_inputs)
        params : array_like, shape (n_params,), optional
        n_threads : int, optional
            See :func:`effai_fast._threads.resolve_n_threads`.
        out : ndarray, optional
            C-contiguous buffer of shape ``(n_points,)`` and X's float dtype.
        debug : bool, default=False
            Check every instruction for NaN/inf and raise FloatingPointError
            naming the first op (and source line) that produced one.
        """
        X, P, nt = self._check(X, params, n_threads)
        n = X.shape[0]
        out = self._outbuf(out, (n,), X.dtype, "out")
        self._sweep("value", X, P, nt, [out.reshape(n, 1)], debug)
        return out

    def value_and_grad(self, X, params=None, wrt="inputs", *, reduce=True, n_threads=None,
                       out=None, grad_out=None, layout="aos", debug=False):
        """Values and gradients at every row of ``X`` (one forward+reverse sweep).

        Parameters
        ----------
        X, params : see :meth:`value`
        wrt : {"inputs", "params", "all"}
            ``"inputs"``: per-point gradient ``(n_points, n_inputs)``.
            ``"params"``: gradient w.r.t. the shared parameters, summed over the
            points inside the sweep (``(n_params,)``; e.g. the gradient of a
            sum of squared residuals), or per point ``(n_points, n_params)``
            when ``reduce=False`` (per-sample gradients).
            ``"all"``: a tuple ``(grad_inputs, grad_params)``.
        reduce : bool, default=True
            Sum parameter gradients over points (in a fixed order: the result
            does not depend on ``n_threads``).
        out, grad_out : ndarray, optional
            Buffers for the values and the per-point gradient.
        layout : {"aos", "soa"}, default="aos"
            Layout of per-point gradients: ``"aos"`` gives ``(n_points, k)`` (one
            row per point), ``"soa"`` gives ``(k, n_points)`` (one row per input or
            parameter), which is how the sweep holds them: it is written without a
            transpose, and is the layout a least-squares solver wants for ``J.T``.
        """
        if wrt not in _WRT:
            raise ValueError(f"wrt must be one of {_WRT}, got {wrt!r}")
        if layout not in ("aos", "soa"):
            raise ValueError(f"layout must be 'aos' or 'soa', got {layout!r}")
        soa = layout == "soa"

        def gshape(k):
            return (k, n) if soa else (n, k)

        if wrt != "inputs" and self.n_params == 0:
            raise ValueError(f"wrt={wrt!r} but the tape has no parameters")
        X, P, nt = self._check(X, params, n_threads)
        n, dt = X.shape[0], X.dtype
        out = self._outbuf(out, (n,), dt, "out")
        if wrt == "inputs":
            gout = self._outbuf(grad_out, gshape(self.n_inputs), dt, "grad_out")
            self._sweep("inputs", X, P, nt, [out.reshape(n, 1), gout], debug, soa)
            return out, gout
        if wrt == "params":
            if reduce:
                red = self._sweep("params", X, P, nt, [out.reshape(n, 1)], debug)
                return out, red.astype(dt)
            gout = self._outbuf(grad_out, gshape(self.n_params), dt, "grad_out")
            self._sweep("params_pp", X, P, nt, [out.reshape(n, 1), gout], debug, soa)
            return out, gout
        gx = self._outbuf(grad_out, gshape(self.n_inputs), dt, "grad_out")
        if reduce:
            red = self._sweep("all", X, P, nt, [out.reshape(n, 1), gx], debug, soa)
            return out, (gx, red.astype(dt))
        both = np.empty(gshape(self.n_inputs + self.n_params), dtype=dt)
        self._sweep("all_pp", X, P, nt, [out.reshape(n, 1), both], debug, soa)
        if soa:   # rows: both halves are contiguous already
            gx[...] = both[:self.n_inputs]
            return out, (gx, both[self.n_inputs:])
        gx[...] = both[:, :self.n_inputs]
        return out, (gx, np.ascontiguousarray(both[:, self.n_inputs:]))

    def grad(self, X, params=None, wrt="inputs", **kw):
        """Gradients only (see :meth:`value_and_grad`)."""
        return self.value_and_grad(X, params, wrt, **kw)[1]

    def jvp(self, X, V, params=None, *, n_threads=None, debug=False):
        """Forward mode: ``(values, directional derivatives along rows of V)``."""
        X, P, nt = self._check(X, params, n_threads)
        V = np.ascontiguousarray(V, dtype=X.dtype)
        if V.shape != X.shape:
            raise ValueError(f"V must have the shape of X {X.shape}, got {V.shape}")
        n = X.shape[0]
        res = np.empty((n, 2), dtype=X.dtype)
        self._sweep("jvp", np.ascontiguousarray(np.hstack([X, V])), P, nt, [res], debug)
        return res[:, 0].copy(), res[:, 1].copy()

    def hvp(self, X, V, params=None, *, n_threads=None, debug=False):
        """Per-point Hessian (w.r.t. inputs) times the rows of ``V``: ``(n_points, n_inputs)``."""
        X, P, nt = self._check(X, params, n_threads)
        V = np.ascontiguousarray(V, dtype=X.dtype)
        if V.shape != X.shape:
            raise ValueError(f"V must have the shape of X {X.shape}, got {V.shape}")
        n = X.shape[0]
        res = np.empty((n, self.n_inputs), dtype=X.dtype)
        self._sweep("hvp", np.ascontiguousarray(np.hstack([X, V])), P, nt, [res], debug)
        return res


class _ArrayFallback:
    """A Tape program that cannot be lowered (custom primitives): point by point, numpy."""

    def __init__(self, g, xs, ps, outs, red):
        self.g, self.xs, self.ps, self.outs, self.red = g, xs, ps, outs, red
        self.n_ops = None

    def run(self, X, P, bufs):
        g = self.g
        n = X.shape[0]
        sizes = [int(np.prod(g.shape[i])) for i in self.xs]
        total = None
        for r in range(n):
            feeds, pos = {}, 0
            for i, s in zip(self.xs, sizes, strict=False):
                feeds[i] = X[r, pos:pos + s].astype(np.float64).reshape(g.shape[i])
                pos += s
            feeds[self.ps[0]] = P.astype(np.float64)
            vals = execute(g, feeds, self.outs + self.red)
            flat = np.concatenate([np.ravel(v) for v in vals[:len(self.outs)]])
            pos = 0
            for b in bufs:
                b[r] = flat[pos:pos + b.shape[1]]
                pos += b.shape[1]
            if self.red:
                rv = np.concatenate([np.ravel(v) for v in vals[len(self.outs):]])
                total = rv if total is None else total + rv
        return total


def trace(f, n_inputs, n_params=0):
    """Record ``f`` once as a :class:`Tape` for batched evaluation.

    Parameters
    ----------
    f : callable
        ``f(x)`` or, with ``n_params > 0``, ``f(x, params)``; ``x`` is a traced
        vector of ``n_inputs`` per-point values and ``params`` one of ``n_params``
        values shared by all points.  Must return a scalar.
    n_inputs : int
    n_params : int, default=0

    Returns
    -------
    Tape

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast import ad
    >>> tape = ad.trace(lambda x, p: p[0] * np.exp(-p[1] * x[0]), n_inputs=1, n_params=2)
    >>> X = np.linspace(0, 1, 5)[:, None]
    >>> v, g = tape.value_and_grad(X, np.array([2.0, 0.5]), wrt="params")
    >>> g.shape
    (2,)
    """
    return Tape(f, n_inputs, n_params)
