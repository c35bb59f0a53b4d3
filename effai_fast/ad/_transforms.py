"""Derivative transforms on a traced :class:`~._graph.Graph`: adjoints and tangents.

Both transforms append nodes to the graph they differentiate, written with the
same traced operations as user code, so a derivative graph is itself a graph:
it can be differentiated again (``hvp`` is the tangent transform of the adjoint
graph), optimised, lowered to the scalar tape and run by the compiled sweep.

* :func:`adjoints` walks the needed nodes in reverse order with one table of
  local rules (``_VJP``) and accumulates cotangents (reverse mode).
* :func:`tangents` walks them forward with ``_JVP`` (forward mode).

Zero cotangents/tangents are symbolic (``None``) and never recorded.  Every
"local derivative times incoming adjoint" is ``mul0(g, d)``: exactly 0 where
``g == 0`` even if ``d`` is inf/NaN, so the masked branch of ``where`` (say
``log(x)`` at ``x <= 0``) cannot poison a gradient.
"""

from __future__ import annotations

import numpy as np

from ._graph import COMPARE, Graph, Traced, TracingError, _index_attr, where

__all__ = ["adjoints", "tangents"]


def _T(g: Graph, i):
    return Traced(g, i)


def _m0(a, b):
    """mul0(a, b): a * b, exactly 0 where a == 0."""
    from ._graph import _apply
    return _apply("mul0", a, b)


def _unbroadcast(t: Traced, shape):
    if t.shape == tuple(shape):
        return t
    g = t.graph
    return Traced(g, g.node("sum_to", (t.id,), tuple(shape)))


def _zeros_like(t: Traced):
    g = t.graph
    return Traced(g, g.const(np.zeros(t.shape)))


def _vjp_rule(g: Graph, i, gb: Traced):
    """Cotangents of the arguments of node ``i`` given its cotangent ``gb``."""
    op = g.op[i]
    args = [_T(g, a) for a in g.args[i]]
    out = _T(g, i)
    if op == "add":
        return [gb, gb]
    if op == "sub":
        return [gb, -gb]
    if op in ("mul", "mul0"):
        a, b = args
        return [_m0(gb, b), _m0(gb, a)]
    if op == "div":
        a, b = args
        # d/db (a/b) = -(a/b)/b: reuse ga = gb/b (one division, not two);
        # 0 * anything stays 0 through both mul0s
        ga = _m0(gb, 1.0 / b)
        return [ga, -_m0(ga, out)]
    if op == "pow":
        a, b = args
        cb = g.const_scalar(b.id)
        if cb is not None:
            da = _m0(gb, cb * a ** (cb - 1.0)) if cb != 1.0 else gb
            return [da, None]
        return [_m0(gb, b * a ** (b - 1.0)), _m0(gb, out * np.log(a))]
    if op == "maximum":
        a, b = args
        c = a >= b
        return [where(c, gb, 0.0), where(c, 0.0, gb)]
    if op == "minimum":
        a, b = args
        c = a <= b
        return [where(c, gb, 0.0), where(c, 0.0, gb)]
    if op == "neg":
        return [-gb]
    if op == "exp":
        return [_m0(gb, out)]
    if op == "log":
        return [_m0(gb, 1.0 / args[0])]
    if op == "log1p":
        return [_m0(gb, 1.0 / (1.0 + args[0]))]
    if op == "expm1":
        return [_m0(gb, out + 1.0)]
    if op == "sqrt":
        return [_m0(gb, 0.5 / out)]
    if op == "sin":
        return [_m0(gb, np.cos(args[0]))]
    if op == "cos":
        return [_m0(gb, -np.sin(args[0]))]
    if op == "tanh":
        return [_m0(gb, 1.0 - out * out)]
    if op == "sigmoid":
        return [_m0(gb, out * (1.0 - out))]
    if op == "abs":
        return [_m0(gb, np.sign(args[0]))]
    if op == "square":
        return [_m0(gb, 2.0 * args[0])]
    if op in COMPARE or op == "sign":
        return [None] * len(args)
    if op == "where":
        c = args[0]
        return [None, where(c, gb, 0.0), where(c, 0.0, gb)]
    if op == "sum":
        x = args[0]
        keep = tuple(1 if k in g.attr[i] else s for k, s in enumerate(x.shape))
        return [_T(g, g.node("broadcast_to", (gb.reshape(keep).id,), x.shape))]
    if op == "sum_to":
        x = args[0]
        # reshape to the rank-aligned shape, then broadcast back
        tgt = g.attr[i]
        lead = x.ndim - len(tgt)
        return [_T(g, g.node("broadcast_to", (gb.reshape((1,) * lead + tuple(tgt)).id,),
                             x.shape))]
    if op == "broadcast_to":
        return [_unbroadcast(gb, args[0].shape)]
    if op == "reshape":
        return [gb.reshape(args[0].shape)]
    if op == "transpose":
        axes = g.attr[i]
        inv = tuple(np.argsort(axes))
        return [gb.transpose(inv)]
    if op == "getitem":
        x = args[0]
        return [_T(g, g.node("scatter", (gb.id,), g.attr[i], shape=x.shape))]
    if op == "scatter":
        return [_T(g, g.node("getitem", (gb.id,), g.attr[i]))]
    if op == "matmul":
        a, b = args
        return [gb @ b.T, a.T @ gb]
    if op == "custom":
        raise AssertionError("custom nodes are handled in adjoints()")
    raise AssertionError(op)


def adjoints(g: Graph, outputs, cotangents, wrt):
    """Reverse mode: node ids of d(sum_k <cot_k, out_k>)/d(wrt_j), one per ``wrt``.

    Parameters
    ----------
    outputs, cotangents : list of int
        Output node ids and the node ids of their cotangents (same shapes).
    wrt : list of int
        Node ids (usually inputs) to differentiate with respect to.

    Returns
    -------
    list of int
        Cotangent node ids (a zero constant where the output does not depend on it).
    """
    adj: dict[int, Traced] = {}
    for o, c in zip(outputs, cotangents, strict=False):
        t = _T(g, c)
        adj[o] = adj[o] + t if o in adj else t
    order = g.needed(list(outputs))
    wrt_set = set(wrt)
    for i in reversed(order):
        gb = adj.get(i)
        op = g.op[i]
        if gb is None or op in ("input", "const"):
            continue
        if i in wrt_set and False:
            continue
        g.context = f"the reverse sweep of '{op}' recorded at {g.src[i]}"
        if op == "custom":
            _custom_vjp(g, i, gb, adj)
            continue
        cots = _vjp_rule(g, i, gb)
        for a, ct in zip(g.args[i], cots, strict=False):
            if ct is None or g.op[a] == "const":
                continue
            ct = _unbroadcast(ct, g.shape[a])
            adj[a] = adj[a] + ct if a in adj else ct
    g.context = None
    res = []
    for w in wrt:
        t = adj.get(w)
        res.append(t.id if t is not None else g.const(np.zeros(g.shape[w])))
    return res


def _custom_vjp(g: Graph, i, gb, adj):
    prim, k = g.attr[i]
    if prim.vjp is None:
        raise TracingError(f"custom primitive {prim.name!r} has no reverse (vjp) rule")
    # All outputs of a multi-output call share arguments: gather their cotangents once.
    args = [_T(g, a) for a in g.args[i]]
    if prim.n_outputs == 1:
        outs = _T(g, i)
        cot = gb
    else:
        # Only the k-th output is handled here; others (if any) come through their own node.
        outs = tuple(_T(g, g.node("custom", g.args[i], (prim, j))) for j in range(prim.n_outputs))
        cot = tuple(gb if j == k else _zeros_like(outs[j]) for j in range(prim.n_outputs))
    cots = prim.vjp(cot, outs, *args)
    if not isinstance(cots, (tuple, list)):
        cots = (cots,)
    if len(cots) != len(args):
        raise TracingError(f"vjp rule of {prim.name!r} returned {len(cots)} cotangents for "
                           f"{len(args)} arguments")
    for a, ct in zip(g.args[i], cots, strict=False):
        if ct is None or g.op[a] == "const":
            continue
        ct = ct if isinstance(ct, Traced) else _T(g, g.const(ct))
        if ct.shape != g.shape[a]:
            ct = _unbroadcast(ct, g.shape[a])
        adj[a] = adj[a] + ct if a in adj else ct


# --------------------------------------------------------------------------- forward mode
def _jvp_rule(g: Graph, i, ts):
    """Tangent of node ``i`` from its arguments' tangents (None = zero); None if zero."""
    op = g.op[i]
    args = [_T(g, a) for a in g.args[i]]
    out = _T(g, i)

    def lin(*terms):
        terms = [t for t in terms if t is not None]
        if not terms:
            return None
        acc = terms[0]
        for t in terms[1:]:
            acc = acc + t
        return acc

    def scale(t, d):
        return None if t is None else _m0(t, d)

    if op == "add":
        return lin(ts[0], ts[1])
    if op == "sub":
        return lin(ts[0], None if ts[1] is None else -ts[1])
    if op == "mul":
        a, b = args
        return lin(scale(ts[0], b), scale(ts[1], a))
    if op == "mul0":
        # a is the guarding adjoint: where it is 0 the product and its tangent are 0
        a, b = args
        return lin(scale(ts[0], b), None if ts[1] is None else _m0(a, ts[1]))
    if op == "div":
        a, b = args
        return lin(scale(ts[0], 1.0 / b), scale(ts[1], -(out / b)))
    if op == "pow":
        a, b = args
        cb = g.const_scalar(b.id)
        if cb is not None:
            return scale(ts[0], cb * a ** (cb - 1.0))
        return lin(scale(ts[0], b * a ** (b - 1.0)), scale(ts[1], out * np.log(a)))
    if op in ("maximum", "minimum"):
        a, b = args
        c = (a >= b) if op == "maximum" else (a <= b)
        if ts[0] is None and ts[1] is None:
            return None
        ta = ts[0] if ts[0] is not None else 0.0
        tb = ts[1] if ts[1] is not None else 0.0
        return where(c, ta, tb)
    if op == "where":
        if ts[1] is None and ts[2] is None:
            return None
        ta = ts[1] if ts[1] is not None else 0.0
        tb = ts[2] if ts[2] is not None else 0.0
        return where(args[0], ta, tb)
    if op in COMPARE or op == "sign":
        return None
    t = ts[0] if ts else None
    if op == "neg":
        return None if t is None else -t
    x = args[0] if args else None
    d = {
        "exp": lambda: out, "log": lambda: 1.0 / x, "log1p": lambda: 1.0 / (1.0 + x),
        "expm1": lambda: out + 1.0, "sqrt": lambda: 0.5 / out, "sin": lambda: np.cos(x),
        "cos": lambda: -np.sin(x), "tanh": lambda: 1.0 - out * out,
        "sigmoid": lambda: out * (1.0 - out), "abs": lambda: np.sign(x),
        "square": lambda: 2.0 * x,
    }.get(op)
    if d is not None:
        return None if t is None else _m0(t, d())
    if t is None and op != "matmul":
        return None
    if op in ("sum", "sum_to", "broadcast_to", "reshape", "transpose", "getitem", "scatter"):
        shape = g.shape[i] if op == "scatter" else None
        return _T(g, g.node(op, (t.id,), g.attr[i], shape=shape))
    if op == "matmul":
        a, b = args
        return lin(None if ts[0] is None else ts[0] @ b, None if ts[1] is None else a @ ts[1])
    raise AssertionError(op)


def tangents(g: Graph, outputs, seeds: dict):
    """Forward mode: tangent node ids of ``outputs`` given ``{node id: tangent node id}``."""
    tan: dict[int, Traced] = {k: _T(g, v) for k, v in seeds.items()}
    order = g.needed(list(outputs))
    for i in order:
        op = g.op[i]
        if op in ("input", "const") or i in tan:
            continue
        ts = [tan.get(a) for a in g.args[i]]
        if all(t is None for t in ts):
            continue
        g.context = f"the tangent sweep of '{op}' recorded at {g.src[i]}"
        if op == "custom":
            prim, k = g.attr[i]
            if prim.jvp is None:
                raise TracingError(f"custom primitive {prim.name!r} has no forward-mode "
                                   "(jvp) rule")
            args = [_T(g, a) for a in g.args[i]]
            full = [t if t is not None else _zeros_like(a) for t, a in zip(ts, args, strict=False)]
            out = _T(g, i) if prim.n_outputs == 1 else tuple(
                _T(g, g.node("custom", g.args[i], (prim, j))) for j in range(prim.n_outputs))
            r = prim.jvp(full, out, *args)
            if prim.n_outputs > 1:
                r = r[k]
            r = r if isinstance(r, Traced) else _T(g, g.const(r))
            tan[i] = r
            continue
        r = _jvp_rule(g, i, ts)
        if r is not None:
            if r.shape != g.shape[i]:
                r = _T(g, g.node("broadcast_to", (r.id,), g.shape[i]))
            tan[i] = r
    g.context = None
    res = []
    for o in outputs:
        t = tan.get(o)
        res.append(t.id if t is not None else g.const(np.zeros(g.shape[o])))
    return res


_ = _index_attr  # re-exported for primitives
