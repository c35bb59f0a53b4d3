"""Lowering: an array-level graph -> a flat scalar tape (:class:`~._tape.Program`).

Every array node becomes an array of *refs* of its shape: a ref ``r >= 0`` is
an SSA value of the scalar tape, ``r < 0`` is the constant ``consts[-r - 1]``.
Elementwise ops emit one scalar instruction per element (constants become the
``imm`` operand of a ``*C`` variant, never a slot); ``sum``, ``matmul``,
``scatter`` emit chains of adds and multiplies; ``reshape``, ``transpose``,
``getitem`` and ``broadcast_to`` only rearrange refs and emit nothing.

The scalar tape is optimised while it is emitted (constant folding, exact
identities such as ``x + 0``, common subexpressions with commutative
operands canonicalised), then dead instructions are dropped and slots are
assigned by a linear scan over value lifetimes, so values that are dead share
slots and a block's working set stays small.
"""

from __future__ import annotations

import struct

import numpy as np

from . import _tape
from ._graph import NP_IMPL, Graph, _index_from_attr

__all__ = ["NotLowerable", "ScalarTape", "lower"]

OPC = _tape.OPCODES

# binary op with a constant second operand -> (code) ; with constant first -> (code, swapped)
_VC = {"add": "addc", "mul": "mulc", "div": "divc", "pow": "powc", "maximum": "maxc",
       "minimum": "minc", "mul0": "mul0c", "lt": "ltc", "le": "lec", "gt": "gtc", "ge": "gec",
       "eq": "eqc", "ne": "nec"}
_CV = {"add": "addc", "mul": "mulc", "sub": "rsubc", "div": "rdivc", "pow": "cpow",
       "maximum": "maxc", "minimum": "minc", "lt": "gtc", "le": "gec", "gt": "ltc", "ge": "lec",
       "eq": "eqc", "ne": "nec"}
_COMMUTATIVE = {"add", "mul", "maximum", "minimum", "eq", "ne"}
_ARITY = {name: 1 for name in ("neg", "exp", "log", "log1p", "expm1", "sqrt", "sin", "cos",
                               "tanh", "sigmoid", "abs", "sign", "square", "copy", "addc",
                               "mulc", "rsubc", "rdivc", "powc", "cpow", "maxc", "minc",
                               "divc", "mul0c", "ltc", "lec", "gtc", "gec", "eqc", "nec")}
_ARITY.update({name: 2 for name in ("add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                    "mul0", "lt", "le", "eq", "ne", "where_vc", "where_cv")})
_ARITY.update({"where": 3, "const": 0})
_ARITY.update({"addmulc": 2, "add3": 3, "mulcmul0": 2, "mul0mulc": 2, "sqsub": 2, "sqmulc": 1,
               "addsq": 2, "addmul0": 3, "addmul": 3, "subsq": 2, "negmul0": 2, "mul0neg": 2,
               "addsub": 3})


def _fuse(code, args, imm, uses, pinned):
    """Superinstructions: fuse ``k1 -> k2`` where k2 is k1's only use (see _simd.h).

    ``code``/``args``/``imm`` are the kept SSA instructions (value ids of
    instruction ``k`` are ``prod`` keys); returns ``(code, args, imm, dead)`` with
    the consumers rewritten and the absorbed producers marked dead.  Every fused
    op evaluates the same roundings in the same order as the pair, so results are
    bitwise unchanged; it only saves a store, a reload and a dispatch per pair.
    """
    code, args, imm = list(code), list(args), list(imm)
    prod = {v: k for k, v in enumerate(pinned["ids"])}
    dead = [False] * len(code)

    def single(v):
        k = prod.get(v)
        if k is None or uses.get(v, 0) != 1 or v in pinned["out"] or dead[k]:
            return None
        return k

    for k2, c2 in enumerate(code):
        a2 = args[k2]
        if c2 == "add":
            for pos in (0, 1):
                k1 = single(a2[pos])
                if k1 is None:
                    continue
                other = a2[1 - pos]
                c1 = code[k1]
                if c1 == "mulc":
                    code[k2], args[k2], imm[k2] = "addmulc", (other, args[k1][0]), imm[k1]
                elif c1 == "add":
                    code[k2], args[k2] = "add3", (args[k1][0], args[k1][1], other)
                elif c1 == "square":
                    code[k2], args[k2] = "addsq", (other, args[k1][0])
                elif c1 == "mul0":
                    code[k2], args[k2] = "addmul0", (other,) + tuple(args[k1])
                elif c1 == "mul":
                    code[k2], args[k2] = "addmul", (other,) + tuple(args[k1])
                else:
                    continue
                dead[k1] = True
                break
        elif c2 == "mul0":
            k1 = single(a2[0])
            if k1 is not None and code[k1] == "mulc":
                code[k2], args[k2], imm[k2] = "mulcmul0", (args[k1][0], a2[1]), imm[k1]
                dead[k1] = True
                continue
            k1 = single(a2[1])
            if k1 is not None and code[k1] == "mulc":
                code[k2], args[k2], imm[k2] = "mul0mulc", (a2[0], args[k1][0]), imm[k1]
                dead[k1] = True
            elif k1 is not None and code[k1] == "neg":
                code[k2], args[k2] = "mul0neg", (a2[0], args[k1][0])
                dead[k1] = True
        elif c2 == "neg":
            k1 = single(a2[0])
            if k1 is not None and code[k1] == "mul0":
                code[k2], args[k2] = "negmul0", tuple(args[k1])
                dead[k1] = True
        elif c2 == "sub":
            k1 = single(a2[1])
            if k1 is not None and code[k1] == "square":
                code[k2], args[k2] = "sqsub", (a2[0], args[k1][0])
                dead[k1] = True
                continue
            k1 = single(a2[0])
            if k1 is not None and code[k1] == "add":
                code[k2], args[k2] = "addsub", (args[k1][0], args[k1][1], a2[1])
                dead[k1] = True
        elif c2 == "mulc":
            k1 = single(a2[0])
            if k1 is not None and code[k1] == "square":
                code[k2], args[k2] = "sqmulc", (args[k1][0],)
                dead[k1] = True
        elif c2 == "square":
            k1 = single(a2[0])
            if k1 is not None and code[k1] == "sub":
                code[k2], args[k2] = "subsq", tuple(args[k1])
                dead[k1] = True
    return code, args, imm, dead


# Programs up to this many instructions get the live-range-aware list schedule.
GREEDY_MAX_OPS = 50_000


def _schedule(n_in, keep, kargs, roots):
    """Depth-first order of the kept instructions: each value just before its use.

    The lowering emits whole array ops one after another (all ``x[1:] - x[:-1]**2``,
    then all squares ...), which keeps every element's intermediate alive at once:
    399 slots for the Rosenbrock n=200 value, whose block (204 KiB) then lives in
    L2.  A post-order walk from the outputs (operands first, in order) computes each
    term and folds it into its consumer before starting the next, so the slots a
    block needs drop to about the values that must stay alive for the reverse sweep.
    Same instructions, same operands: results are bitwise unchanged.
    """
    pos = {n_in + int(k): j for j, k in enumerate(keep)}
    # operands are visited deepest first (Sethi-Ullman): the long chain of a sum is
    # walked down before its terms are computed, so the terms do not pile up
    height = [0] * len(keep)
    for j, a in enumerate(kargs):           # kept instructions are in SSA order
        height[j] = 1 + max((height[pos[v]] for v in a if v in pos), default=0)
    kargs = [sorted(a, key=lambda v: -height[pos[v]] if v in pos else 0) for a in kargs]
    done = [False] * len(keep)
    order = []
    for r in roots:
        j0 = pos.get(r)
        if j0 is None or done[j0]:
            continue
        stack = [(j0, 0)]
        while stack:
            j, i = stack.pop()
            if done[j]:
                continue
            a = kargs[j]
            while i < len(a):
                ja = pos.get(a[i])
                i += 1
                if ja is not None and not done[ja]:
                    stack.append((j, i))
                    stack.append((ja, 0))
                    break
            else:
                done[j] = True
                order.append(j)
    return order


def _schedule_greedy(n_in, keep, kargs, roots, start):
    """List scheduling that keeps few values alive (the order :func:`_lower` uses).

    Among the instructions whose operands are ready, take the one that frees the
    most slots (operands at their last use) net of the slot it takes; ties go to the
    most recently readied (depth first, from the order ``start``: the depth-first
    schedule).  In a value+gradient program this interleaves the reverse sweep with
    the forward one: the adjoint ops of a term run as soon as its forward values
    exist, so the forward values do not all wait for the end of the forward part
    (Rosenbrock n=200 value+gradient: 601 slots depth first, about n + a few here).
    """
    import heapq
    n = len(keep)
    pos = {n_in + int(k): j for j, k in enumerate(keep)}
    rank = [0] * n
    for r, j in enumerate(start):
        rank[j] = r
    pinned = set(roots)
    uses: dict[int, int] = {}
    users: list[list[int]] = [[] for _ in range(n)]
    by_value: dict[int, list[int]] = {}
    waiting = [0] * n
    for j, a in enumerate(kargs):
        for v in set(a):
            uses[v] = uses.get(v, 0) + 1
            by_value.setdefault(v, []).append(j)
            if v in pos:
                users[pos[v]].append(j)
                waiting[j] += 1

    def cost(j):
        return 1 - sum(1 for v in set(kargs[j]) if uses[v] == 1 and v not in pinned)

    heap = [(cost(j), rank[j], j) for j in range(n) if waiting[j] == 0]
    heapq.heapify(heap)
    done = [False] * n
    order = []
    while heap:
        c, _, j = heapq.heappop(heap)
        if done[j] or c != cost(j):
            if not done[j]:
                heapq.heappush(heap, (cost(j), rank[j], j))
            continue
        done[j] = True
        order.append(j)
        for v in set(kargs[j]):
            uses[v] -= 1
            if uses[v] == 1 and v not in pinned:
                for u in by_value[v]:       # its last user now frees it: re-rank
                    if not done[u] and waiting[u] == 0:
                        heapq.heappush(heap, (cost(u), rank[u], u))
        for u in users[j]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(heap, (cost(u), rank[u], u))
    return order


class NotLowerable(Exception):
    """The graph contains an op (a custom primitive) that has no scalar form."""


def _pow2(k: float) -> bool:
    """Whether multiplying by ``k`` is exact (a power of two, up to sign)."""
    m, _ = np.frexp(k)
    return k != 0.0 and np.isfinite(k) and abs(m) == 0.5


def _fkey(x: float):
    return struct.pack("<d", x)


class _Builder:
    def __init__(self, n_in):
        self.code: list[str] = []
        self.args: list[tuple] = []
        self.imm: list[float] = []
        self.origin: list[int] = []      # graph node each instruction came from
        self.n_in = n_in
        self.consts: list[float] = []
        self._ckey: dict = {}
        self._cse: dict = {}
        self.cur = -1

    # SSA value ids: 0..n_in-1 are inputs; instruction k defines value n_in + k.
    def const(self, x: float) -> int:
        k = _fkey(float(x))
        r = self._ckey.get(k)
        if r is None:
            self.consts.append(float(x))
            r = -len(self.consts)
            self._ckey[k] = r
        return r

    def cval(self, r):
        return self.consts[-r - 1]

    def emit(self, code, args=(), imm=0.0):
        key = (code, args, _fkey(imm))
        hit = self._cse.get(key)
        if hit is not None:
            return hit
        self.code.append(code)
        self.args.append(args)
        self.imm.append(float(imm))
        self.origin.append(self.cur)
        v = self.n_in + len(self.code) - 1
        self._cse[key] = v
        return v

    def mulc(self, x, k):
        """x * k, folding a chain (x0 * k1) * k when k1 or k is a power of two (exact)."""
        if x >= self.n_in:
            p = x - self.n_in
            if self.code[p] == "mulc":
                k1 = self.imm[p]
                if (_pow2(k1) or _pow2(k)) and np.isfinite(k1 * k) and k1 * k != 0.0:
                    return self.emit("mulc", self.args[p], k1 * k)
        return self.emit("mulc", (x,), k)

    def _neg_arg(self, r):
        """``y`` if SSA value ``r`` is ``neg(y)``, else None."""
        if r >= self.n_in and self.code[r - self.n_in] == "neg":
            return self.args[r - self.n_in][0]
        return None

    def materialize(self, r):
        return r if r >= 0 else self.emit("const", (), self.cval(r))

    # -- scalar op with folding / identities / specialisation
    def op(self, name, *rs):
        if all(r < 0 for r in rs):
            vals = [np.float64(self.cval(r)) for r in rs]
            with np.errstate(all="ignore"):
                return self.const(float(NP_IMPL[name](*vals)))
        if name == "where":
            c, x, y = rs
            if c < 0:
                return x if self.cval(c) != 0 else y
            if x == y:
                return x
            if x >= 0 and y >= 0:
                return self.emit("where", (c, x, y))
            if x >= 0:
                return self.emit("where_vc", (c, x), self.cval(y))
            if y >= 0:
                return self.emit("where_cv", (c, y), self.cval(x))
            return self.emit("where", (c, self.materialize(x), self.materialize(y)))
        if len(rs) == 1:
            x = rs[0]
            if name == "neg" and x >= self.n_in:
                # -(x * k) == x * (-k) exactly: fold the sign into the producer
                k = x - self.n_in
                if self.code[k] == "mulc":
                    return self.emit("mulc", self.args[k], -self.imm[k])
                if self.code[k] == "neg":
                    return self.args[k][0]
            return self.emit(name, (x,))
        x, y = rs
        if y < 0:
            k = self.cval(y)
            if name in ("add", "sub") and k == 0.0:
                return x
            if name in ("mul", "div", "pow") and k == 1.0:
                return x
            if name == "pow" and k == 2.0:
                return self.emit("square", (x,))
            if name == "sub":
                return self.emit("addc", (x,), -k)
            if name == "mul":
                return self.mulc(x, k)
            return self.emit(_VC[name], (x,), k)
        if x < 0:
            k = self.cval(x)
            if name == "add" and k == 0.0:
                return y
            if name == "mul" and k == 1.0:
                return y
            if name == "mul0":
                if k == 0.0:
                    return self.const(0.0)
                return y if k == 1.0 else self.op("mul", x, y)
            if name == "sub" and k == 0.0:
                return self.emit("neg", (y,))
            if name == "mul":
                return self.mulc(y, k)
            return self.emit(_CV[name], (y,), k)
        if name in ("add", "sub"):
            # x + (-y) == x - y and x - (-y) == x + y exactly (IEEE subtraction is the
            # addition of the negation): the adjoint of ``a - b`` stops costing a neg
            ny = self._neg_arg(y)
            if ny is not None:
                return self.op("sub" if name == "add" else "add", x, ny)
            nx = self._neg_arg(x) if name == "add" else None
            if nx is not None:
                return self.op("sub", y, nx)
        if name == "gt":
            return self.emit("lt", (y, x))
        if name == "ge":
            return self.emit("le", (y, x))
        if name in _COMMUTATIVE and y < x:
            x, y = y, x
        return self.emit(name, (x, y))


def _as_refs(a):
    return np.asarray(a, dtype=np.int64)


def _lower_node(bld: _Builder, g: Graph, i, refs):
    op = g.op[i]
    attr = g.attr[i]
    args = [refs[a] for a in g.args[i]]
    shape = g.shape[i]
    if op in NP_IMPL:
        bs = np.broadcast_arrays(*args)
        flat = [b.ravel() for b in bs]
        out = np.empty(len(flat[0]), dtype=np.int64)
        for j in range(len(out)):
            out[j] = bld.op(op, *(int(f[j]) for f in flat))
        return out.reshape(shape)
    x = args[0] if args else None
    if op == "sum":
        return _sum_axes(bld, x, attr)
    if op == "sum_to":
        lead = x.ndim - len(attr)
        axes = tuple(range(lead)) + tuple(k + lead for k, s in enumerate(attr)
                                          if s == 1 and x.shape[k + lead] != 1)
        s = _sum_axes(bld, x, axes)
        return s.reshape(attr)
    if op == "broadcast_to":
        return np.broadcast_to(x, attr).copy()
    if op == "reshape":
        return x.reshape(attr)
    if op == "transpose":
        return np.transpose(x, attr).copy()
    if op == "getitem":
        return np.asarray(x[_index_from_attr(attr)]).copy()
    if op == "scatter":
        zero = bld.const(0.0)
        out = np.full(shape, zero, dtype=np.int64)
        pos = np.arange(out.size).reshape(shape)[_index_from_attr(attr)]
        pos, src = np.broadcast_arrays(pos, x)
        flat = out.ravel()
        for p, r in zip(pos.ravel(), src.ravel(), strict=False):
            flat[p] = r if flat[p] == zero else bld.op("add", int(flat[p]), int(r))
        return flat.reshape(shape)
    if op == "matmul":
        a, b = args
        m, k = a.shape
        n = b.shape[1]
        out = np.empty((m, n), dtype=np.int64)
        for r in range(m):
            for c in range(n):
                acc = bld.op("mul", int(a[r, 0]), int(b[0, c]))
                for l in range(1, k):
                    acc = bld.op("add", acc, bld.op("mul", int(a[r, l]), int(b[l, c])))
                out[r, c] = acc
        return out
    if op == "custom":
        raise NotLowerable(f"custom primitive {attr[0].name!r}")
    raise AssertionError(op)


def _sum_axes(bld, x, axes):
    if not axes:
        return x
    keep = [k for k in range(x.ndim) if k not in axes]
    xt = np.transpose(x, keep + list(axes))
    out_shape = xt.shape[:len(keep)]
    rows = xt.reshape(int(np.prod(out_shape)) if out_shape else 1, -1)
    out = np.empty(rows.shape[0], dtype=np.int64)
    for r in range(rows.shape[0]):
        row = rows[r]
        if row.size == 0:
            out[r] = bld.const(0.0)
            continue
        acc = int(row[0])
        for v in row[1:]:
            acc = bld.op("add", acc, int(v))
        out[r] = acc
    return out.reshape(out_shape)


class ScalarTape:
    """A lowered tape: the compiled :class:`~._tape.Program` plus what maps it back.

    Attributes
    ----------
    program : effai_fast.ad._tape.Program
    n_x, n_p : int
        Per-point scalar inputs and shared scalar parameters.
    n_ops : int
        Instructions after optimisation.
    origin : list of int
        The graph node each instruction was lowered from (debug messages).
    """

    def __init__(self, program, origin, graph, code_names):
        self.program = program
        self.origin = origin
        self.graph = graph
        self.code_names = code_names
        self.n_x = program.n_x
        self.n_p = program.n_p
        self.n_ops = program.n_ops

    def describe_op(self, k):
        node = self.origin[k]
        where = self.graph.describe(node) if node >= 0 else "an output copy"
        return f"instruction {k} '{self.code_names[k]}' from {where}"


def lower(g: Graph, x_nodes, p_nodes, out_nodes, red_nodes=(), block=None,
          max_ops=200_000, reuse=True) -> ScalarTape:
    """Lower the graph to a scalar tape (see the module docstring).

    Parameters
    ----------
    g : Graph
    x_nodes, p_nodes : list of int
        Input nodes fed per point (flattened, in order) and shared parameters.
    out_nodes, red_nodes : list of int
        Per-point outputs and outputs summed over points (flattened, in order).
    block : int, optional
        Points per block; by default 64 (the sweep's fixed-length loops).
    max_ops : int
        Raise :class:`NotLowerable` beyond this many scalar instructions.
    reuse : bool, default=True
        Reuse dead slots.  Debug programs do not, so that an instruction's
        arguments are still intact when its result is checked for NaN/inf.

    Raises
    ------
    NotLowerable
        For custom primitives, or too many scalar instructions.
    """
    sizes = [int(np.prod(g.shape[i])) for i in list(x_nodes) + list(p_nodes)]
    n_in = sum(sizes)
    bld = _Builder(n_in)
    refs: dict[int, np.ndarray] = {}
    pos = 0
    for i, s in zip(list(x_nodes) + list(p_nodes), sizes, strict=False):
        refs[i] = np.arange(pos, pos + s, dtype=np.int64).reshape(g.shape[i])
        pos += s
    outs = list(out_nodes) + list(red_nodes)
    for i in g.needed(outs):
        if i in refs:
            continue
        op = g.op[i]
        if op == "input":
            raise ValueError(f"the outputs depend on input node {i} which was not supplied")
        if op == "const":
            v = g.value[i]
            refs[i] = np.array([bld.const(float(e)) for e in v.ravel()],
                               dtype=np.int64).reshape(v.shape)
            continue
        bld.cur = i
        refs[i] = _lower_node(bld, g, i, refs)
        if len(bld.code) > max_ops:
            raise NotLowerable(f"more than {max_ops} scalar instructions")
    bld.cur = -1
    out_refs = [bld.materialize(int(r)) for o in out_nodes for r in refs[o].ravel()]
    red_refs = [bld.materialize(int(r)) for o in red_nodes for r in refs[o].ravel()]
    return _finish(bld, g, n_in, sum(sizes[:len(x_nodes)]), out_refs, red_refs, block, reuse)


def _finish(bld, g, n_in, n_x, out_refs, red_refs, block, reuse=True):
    n_code = len(bld.code)
    # dead code elimination (backward from the outputs)
    live = np.zeros(n_code, dtype=bool)
    stack = [r - n_in for r in out_refs + red_refs if r >= n_in]
    while stack:
        k = stack.pop()
        if live[k]:
            continue
        live[k] = True
        stack.extend(a - n_in for a in bld.args[k] if a >= n_in)
    keep = np.flatnonzero(live)
    kcode = [bld.code[k] for k in keep]
    kargs = [tuple(bld.args[k]) for k in keep]
    kimm = [bld.imm[k] for k in keep]
    korig = [bld.origin[k] for k in keep]
    if reuse:   # debug programs keep one instruction per op (NaN/inf is blamed precisely)
        uses: dict[int, int] = {}
        for a in kargs:
            for v in a:
                uses[v] = uses.get(v, 0) + 1
        pinned = {"ids": [n_in + int(k) for k in keep], "out": set(out_refs + red_refs)}
        kcode, kargs, kimm, dead = _fuse(kcode, kargs, kimm, uses, pinned)
        sel = [j for j in range(len(keep)) if not dead[j]]
        keep = [keep[j] for j in sel]
        kcode = [kcode[j] for j in sel]
        kargs = [kargs[j] for j in sel]
        kimm = [kimm[j] for j in sel]
        korig = [korig[j] for j in sel]
    if reuse:
        order = _schedule(n_in, keep, kargs, out_refs + red_refs)
        if len(order) <= GREEDY_MAX_OPS:
            order = _schedule_greedy(n_in, keep, kargs, out_refs + red_refs, order)
        keep = [keep[j] for j in order]
        kcode = [kcode[j] for j in order]
        kargs = [kargs[j] for j in order]
        kimm = [kimm[j] for j in order]
        korig = [korig[j] for j in order]
    # last use of every SSA value
    INF = 1 << 60
    last = {}
    for pos, a_s in enumerate(kargs):
        for a in a_s:
            last[a] = pos
    for r in out_refs + red_refs:
        last[r] = INF
    # linear-scan slot assignment; inputs occupy slots 0..n_in-1
    slot = {v: v for v in range(n_in)}
    free: list[int] = []
    n_slots = n_in
    import heapq
    # Parameter slots (n_x..n_in-1) are never reused: they then hold the same
    # values in every block, and the sweep broadcasts them once per thread
    # instead of once per block (Program.params_once).
    for v in range(n_x):
        if reuse and v not in last:
            heapq.heappush(free, v)
    code, dst, A, B, C, imm, origin, names = [], [], [], [], [], [], [], []
    for pos, k in enumerate(keep):
        args = kargs[pos]
        sl = [slot[a] for a in args]
        # The result takes a free slot *before* the arguments' slots are released:
        # never computing in place keeps every loop free of exact aliasing, which
        # would otherwise send gcc's runtime alias check to the scalar loop.
        v = n_in + int(k)
        if free:
            s = heapq.heappop(free)
        else:
            s = n_slots
            n_slots += 1
        slot[v] = s
        for a in set(args):
            if reuse and last.get(a) == pos and not n_x <= a < n_in:
                heapq.heappush(free, slot[a])
        sl = sl + [0] * (3 - len(sl))
        code.append(OPC[kcode[pos]])
        names.append(kcode[pos])
        dst.append(s)
        A.append(sl[0])
        B.append(sl[1])
        C.append(sl[2])
        imm.append(kimm[pos])
        origin.append(korig[pos])
    n_slots = max(n_slots, 1)
    if block is None:
        # Blocks of _tape.BLOCK (64) points, whatever the tape: a full block runs the
        # sweep's fixed-length loops, and the slots of small tapes stay in L1
        # (37 slots * 64 * 8 B = 19 KiB for the Rosenbrock n=10 gradient).  Measured
        # (Rosenbrock n=50 gradient, 197 slots, in L2 at 64 points): blocks of 16
        # points were 7x slower than 64 (dispatch and loop overheads), 128 and 256
        # about 2x slower (the working set leaves L2).
        block = _tape.BLOCK
    prog = _tape.Program(code, dst, A, B, C, imm, n_slots, n_x, n_in - n_x,
                         [slot[r] for r in out_refs], [slot[r] for r in red_refs], block)
    return ScalarTape(prog, origin, g, names)


# --------------------------------------------------------------------------- reference
_REF = {
    "const": lambda q, n: np.full(n, q),
    "copy": lambda x: x.copy(),
    "maximum": lambda x, y: np.maximum(x, y), "minimum": lambda x, y: np.minimum(x, y),
    "addc": lambda x, q: x + q, "mulc": lambda x, q: x * q, "rsubc": lambda x, q: q - x,
    "rdivc": lambda x, q: q / x, "powc": lambda x, q: x ** q, "cpow": lambda x, q: q ** x,
    "maxc": lambda x, q: np.maximum(x, q), "minc": lambda x, q: np.minimum(x, q),
    "divc": lambda x, q: x / q, "mul0c": lambda x, q: NP_IMPL["mul0"](x, q),
    "ltc": lambda x, q: (x < q) * 1.0, "lec": lambda x, q: (x <= q) * 1.0,
    "gtc": lambda x, q: (x > q) * 1.0, "gec": lambda x, q: (x >= q) * 1.0,
    "eqc": lambda x, q: (x == q) * 1.0, "nec": lambda x, q: (x != q) * 1.0,
    "where_vc": lambda c, x, q: np.where(c != 0, x, q),
    "where_cv": lambda c, y, q: np.where(c != 0, q, y),
}
_FUSED_REF = {
    "addmulc": lambda x, y, q: x + y * q,
    "add3": lambda x, y, z, q: (x + y) + z,
    "mulcmul0": lambda y, z, q: NP_IMPL["mul0"](y * q, z),
    "mul0mulc": lambda x, y, q: NP_IMPL["mul0"](x, y * q),
    "sqsub": lambda x, y, q: x - y * y,
    "sqmulc": lambda x, q: (x * x) * q,
    "addsq": lambda x, y, q: x + y * y,
    "addmul0": lambda x, y, z, q: x + NP_IMPL["mul0"](y, z),
    "addmul": lambda x, y, z, q: x + y * z,
    "subsq": lambda x, y, q: (x - y) * (x - y),
    "negmul0": lambda x, y, q: -NP_IMPL["mul0"](x, y),
    "mul0neg": lambda x, y, q: NP_IMPL["mul0"](x, -y),
    "addsub": lambda x, y, z, q: (x + y) - z,
}


def reference_sweep(st: ScalarTape, X, P):
    """Slow, obvious evaluation of a scalar tape with numpy over all points at once.

    The independent reference the compiled sweep is tested against.  Returns
    ``(OUT, RED)`` like :meth:`Program.run` after the block reduction.
    """
    prog = st.program
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    v = [None] * prog.n_slots
    for i in range(prog.n_x):
        v[i] = X[:, i].copy()
    for i in range(prog.n_p):
        v[prog.n_x + i] = np.full(n, float(P[i]))
    names = st.code_names
    with np.errstate(all="ignore"):
        for k in range(prog.n_ops):
            name = names[k]
            ar = _ARITY[name]
            args = [v[s] for s in (prog.a[k], prog.b[k], prog.c[k])[:ar]]
            q = prog.imm[k]
            if name == "const":
                res = np.full(n, q)
            elif name in _FUSED_REF:
                res = _FUSED_REF[name](*args, q)
            elif name in _REF and name not in NP_IMPL or name in ("maximum", "minimum"):
                fn = _REF[name]
                res = fn(*args, q) if name.endswith("c") or name.startswith("where_") \
                    or name in ("powc", "cpow") else fn(*args)
            else:
                res = np.asarray(NP_IMPL[name](*args), dtype=np.float64)
            v[prog.dst[k]] = res
    OUT = np.stack([v[s] for s in prog.out_slots], axis=1) if prog.n_outputs else \
        np.empty((n, 0))
    RED = np.array([np.sum(v[s]) for s in prog.red_slots])
    return OUT, RED
