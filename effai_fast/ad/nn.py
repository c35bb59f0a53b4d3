"""The convolution kernels of :mod:`effai_fast.nn.functional` as autodiff primitives.

Each function records one array-level tape entry whose reverse rule is another
primitive wrapping the compiled VJP kernel (``depthwise_conv2d_vjp`` ...), so
``ad.grad`` of a network built from them runs the compiled forward and backward
kernels, with the glue (bias, activations, losses) recorded as ordinary traced
operations.  Forward-mode rules use bilinearity: ``d conv(x, w) = conv(dx, w) +
conv(x, dw)``.  Second derivatives through a convolution are not provided (the
VJP primitives have no rules of their own).

One primitive pair is made per static configuration (stride, padding,
dilation) and registered under a name such as
``"nn.depthwise_conv2d(stride=1, padding='same', dilation=1)"``.

Examples
--------
>>> import numpy as np
>>> from effai_fast import ad
>>> from effai_fast.ad import nn as adnn
>>> x = np.random.default_rng(0).normal(size=(1, 5, 5, 3))
>>> w = np.random.default_rng(1).normal(size=(3, 3, 3))
>>> loss = lambda w: np.sum(np.tanh(adnn.depthwise_conv2d(x, w)))
>>> ad.grad(loss)(w).shape
(3, 3, 3)
"""

from __future__ import annotations

import threading

from ._primitives import Primitive, get, register, registered

__all__ = ["depthwise_conv2d", "pointwise_conv2d", "conv2d"]

_lock = threading.Lock()


def _pair(kind, fwd_fn, vjp_fn, kw, n_in_vjp=2):
    name = f"nn.{kind}(" + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")"
    if name in registered():
        return get(name)
    with _lock:
        if name in registered():
            return get(name)
        bwd = Primitive(lambda x, w, g: tuple(vjp_fn(x, w, g, **kw)[:2]), name=name + ".vjp",
                        n_outputs=2, shape=lambda xs, ws, gs: (xs, ws))
        fwd = Primitive(lambda x, w: fwd_fn(x, w, **kw), name=name)
        fwd.vjp = lambda g, out, x, w: bwd(x, w, g)
        fwd.jvp = lambda ts, out, x, w: fwd(ts[0], w) + fwd(x, ts[1])
        return register(name, fwd)


def depthwise_conv2d(x, weight, *, stride=1, padding="same", dilation=1):
    """Traceable :func:`effai_fast.nn.functional.depthwise_conv2d` (NHWC, filter (KH, KW, C))."""
    from effai_fast.nn import functional as F
    p = _pair("depthwise_conv2d", F.depthwise_conv2d, F.depthwise_conv2d_vjp,
              {"stride": stride, "padding": padding, "dilation": dilation})
    return p(x, weight)


def pointwise_conv2d(x, weight):
    """Traceable :func:`effai_fast.nn.functional.pointwise_conv2d` (1x1, filter (C_in, C_out))."""
    from effai_fast.nn import functional as F
    p = _pair("pointwise_conv2d", F.pointwise_conv2d, F.pointwise_conv2d_vjp, {})
    return p(x, weight)


def conv2d(x, weight, *, stride=1, padding="same", dilation=1):
    """Traceable :func:`effai_fast.nn.functional.conv2d` (filter (KH, KW, C_in, C_out))."""
    from effai_fast.nn import functional as F
    p = _pair("conv2d", F.conv2d, F.conv2d_vjp,
              {"stride": stride, "padding": padding, "dilation": dilation})
    return p(x, weight)
