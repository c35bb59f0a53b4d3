"""Custom primitives: array-level tape entries with user-supplied rules.

A :class:`Primitive` is an operation the tracer records as one node (it is
never looked into): ``impl`` computes it with numpy or compiled code, ``vjp``
gives the cotangents of its arguments (reverse mode) and ``jvp`` its output
tangent (forward mode).  Rules receive *traced* values when a derivative graph
is being built, so a rule may use numpy operations (recorded like user code) or
call other primitives (recorded as their own nodes): this is how a compiled
kernel and its compiled VJP (e.g. a convolution and its backward kernels) are
registered as a pair.

Graphs with primitives run on the array-level (numpy) executor rather than
the scalar tape; see :mod:`effai_fast.ad._api`.

The registry (:func:`register`, :func:`get`, :func:`registered`) is a
name -> Primitive table filled at import time by modules that ship primitives;
it is read-only afterwards (registering the same name twice is an error).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ._graph import Traced, _as_id, _graph_of

__all__ = ["Primitive", "primitive", "register", "get", "registered"]

_REGISTRY: dict[str, Primitive] = {}


class Primitive:
    """An opaque operation with derivative rules.

    Parameters
    ----------
    impl : callable
        ``impl(*arrays) -> array`` (or a tuple of ``n_outputs`` arrays), on numpy
        float64 arrays.
    vjp : callable, optional
        ``vjp(cotangent, out, *args) -> tuple`` of one cotangent per argument
        (``None`` for no dependence).  For ``n_outputs > 1`` both ``cotangent``
        and ``out`` are tuples.
    jvp : callable, optional
        ``jvp(tangents, out, *args) -> tangent`` (a tuple for ``n_outputs > 1``);
        ``tangents`` has one entry per argument.
    name : str, optional
    n_outputs : int, default=1
    shape : callable, optional
        ``shape(*arg_shapes) -> output shape`` (a tuple of shapes if several);
        by default ``impl`` is run once on zeros to find it.
    """

    def __init__(self, impl: Callable, vjp: Callable | None = None,
                 jvp: Callable | None = None, *, name: str | None = None,
                 n_outputs: int = 1, shape: Callable | None = None):
        if not callable(impl):
            raise TypeError("impl must be callable")
        if n_outputs < 1:
            raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
        self.impl = impl
        self.vjp = vjp
        self.jvp = jvp
        self.name = name or getattr(impl, "__name__", "primitive")
        self.n_outputs = int(n_outputs)
        self._shape = shape

    def defvjp(self, fn):
        """Decorator: set the reverse-mode rule."""
        self.vjp = fn
        return fn

    def defjvp(self, fn):
        """Decorator: set the forward-mode rule."""
        self.jvp = fn
        return fn

    def out_shapes(self, *shapes):
        if self._shape is not None:
            s = self._shape(*shapes)
        else:
            r = self.impl(*[np.zeros(sh) for sh in shapes])
            s = tuple(np.shape(x) for x in r) if self.n_outputs > 1 else np.shape(r)
        return tuple(tuple(x) for x in s) if self.n_outputs > 1 else (tuple(s),)

    def __call__(self, *args):
        g = _graph_of(*args)
        if g is None:
            return self.impl(*[np.asarray(a, dtype=np.float64) for a in args])
        ids = tuple(_as_id(g, a) for a in args)
        shapes = self.out_shapes(*[g.shape[i] for i in ids])
        outs = tuple(Traced(g, g._append("custom", ids, (self, k), shapes[k]))
                     for k in range(self.n_outputs))
        return outs if self.n_outputs > 1 else outs[0]

    def __repr__(self):
        return f"Primitive({self.name!r})"


def primitive(impl=None, *, vjp=None, jvp=None, name=None, n_outputs=1, shape=None):
    """Make a :class:`Primitive` (usable as a decorator, then ``@p.defvjp``/``@p.defjvp``).

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast import ad
    >>> @ad.primitive
    ... def softplus(x):
    ...     return np.logaddexp(0.0, x)
    >>> @softplus.defvjp
    ... def _(g, out, x):
    ...     return (g * ad.sigmoid(x),)
    >>> float(ad.grad(lambda x: softplus(x).sum())(np.zeros(3))[0])
    0.5
    """
    if impl is None:
        return lambda f: Primitive(f, vjp, jvp, name=name, n_outputs=n_outputs, shape=shape)
    return Primitive(impl, vjp, jvp, name=name, n_outputs=n_outputs, shape=shape)


def register(name: str, prim: Primitive) -> Primitive:
    """Add a primitive to the registry under ``name`` (once)."""
    if not isinstance(prim, Primitive):
        raise TypeError("prim must be a Primitive")
    if name in _REGISTRY and _REGISTRY[name] is not prim:
        raise ValueError(f"a primitive named {name!r} is already registered")
    _REGISTRY[name] = prim
    return prim


def get(name: str) -> Primitive:
    """The registered primitive ``name`` (KeyError naming the known ones otherwise)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no primitive {name!r}; registered: {sorted(_REGISTRY)}") from None


def registered() -> list[str]:
    """Names of the registered primitives."""
    return sorted(_REGISTRY)
