"""Slow, obvious numpy references for the convolution kernels (float64 throughout).

Written independently of effai_fast.nn.functional: explicit zero padding, one
shifted slice per filter tap, and the adjoints by scattering the same slices.
"""

import math

import numpy as np


def pads(padding, H, W, KH, KW, stride, dilation):
    sh, sw = stride
    dh, dw = dilation
    if padding == "valid":
        return (0, 0, 0, 0)
    if padding == "same":
        out = []
        for size, k, s, d in ((H, KH, sh, dh), (W, KW, sw, dw)):
            o = math.ceil(size / s)
            total = max(0, (o - 1) * s + (k - 1) * d + 1 - size)
            out += [total // 2, total - total // 2]
        return tuple(out)
    if isinstance(padding, int):
        return (padding,) * 4
    if len(padding) == 2:
        return (padding[0], padding[0], padding[1], padding[1])
    return tuple(padding)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _geometry(x, KH, KW, stride, padding, dilation):
    stride, dilation = _pair(stride), _pair(dilation)
    N, H, W, C = x.shape
    pt, pb, pl, pr = pads(padding, H, W, KH, KW, stride, dilation)
    xp = np.zeros((N, H + pt + pb, W + pl + pr, C))
    xp[:, pt:pt + H, pl:pl + W] = x
    OH = (H + pt + pb - (KH - 1) * dilation[0] - 1) // stride[0] + 1
    OW = (W + pl + pr - (KW - 1) * dilation[1] - 1) // stride[1] + 1
    return xp, (pt, pb, pl, pr), OH, OW, stride, dilation


def _tap(kh, kw, OH, OW, stride, dilation):
    r0, c0 = kh * dilation[0], kw * dilation[1]
    return (slice(None), slice(r0, r0 + (OH - 1) * stride[0] + 1, stride[0]),
            slice(c0, c0 + (OW - 1) * stride[1] + 1, stride[1]))


def activate(v, activation):
    if activation == "relu":
        return np.where(v < 0, 0.0, v)
    if activation == "relu6":
        return np.where(v < 0, 0.0, np.where(v > 6, 6.0, v))
    return v


def activation_grad(y, activation):
    if activation == "relu":
        return (y > 0).astype(float)
    if activation == "relu6":
        return ((y > 0) & (y < 6)).astype(float)
    return np.ones_like(y)


def depthwise(x, w, b=None, stride=1, padding="same", dilation=1, activation=None):
    x = np.asarray(x, float)
    w = np.asarray(w, float)
    KH, KW, C = w.shape
    xp, _, OH, OW, st, dl = _geometry(x, KH, KW, stride, padding, dilation)
    out = np.zeros((x.shape[0], OH, OW, C))
    for kh in range(KH):
        for kw in range(KW):
            out += xp[_tap(kh, kw, OH, OW, st, dl)] * w[kh, kw]
    if b is not None:
        out += np.asarray(b, float)
    return activate(out, activation)


def depthwise_vjp(x, w, g, stride=1, padding="same", dilation=1, activation=None, y=None):
    x = np.asarray(x, float)
    w = np.asarray(w, float)
    KH, KW, C = w.shape
    xp, (pt, pb, pl, pr), OH, OW, st, dl = _geometry(x, KH, KW, stride, padding, dilation)
    gm = np.asarray(g, float) * (activation_grad(y, activation) if activation else 1.0)
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for kh in range(KH):
        for kw in range(KW):
            sl = _tap(kh, kw, OH, OW, st, dl)
            gxp[sl] += gm * w[kh, kw]
            gw[kh, kw] = (gm * xp[sl]).sum(axis=(0, 1, 2))
    H, W = x.shape[1:3]
    return gxp[:, pt:pt + H, pl:pl + W], gw, gm.sum(axis=(0, 1, 2))


def conv2d(x, w, b=None, stride=1, padding="same", dilation=1, activation=None):
    x = np.asarray(x, float)
    w = np.asarray(w, float)
    KH, KW, Ci, Co = w.shape
    xp, _, OH, OW, st, dl = _geometry(x, KH, KW, stride, padding, dilation)
    out = np.zeros((x.shape[0], OH, OW, Co))
    for kh in range(KH):
        for kw in range(KW):
            out += np.einsum("nhwc,co->nhwo", xp[_tap(kh, kw, OH, OW, st, dl)], w[kh, kw])
    if b is not None:
        out += np.asarray(b, float)
    return activate(out, activation)


def conv2d_vjp(x, w, g, stride=1, padding="same", dilation=1, activation=None, y=None):
    x = np.asarray(x, float)
    w = np.asarray(w, float)
    KH, KW, Ci, Co = w.shape
    xp, (pt, pb, pl, pr), OH, OW, st, dl = _geometry(x, KH, KW, stride, padding, dilation)
    gm = np.asarray(g, float) * (activation_grad(y, activation) if activation else 1.0)
    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w)
    for kh in range(KH):
        for kw in range(KW):
            sl = _tap(kh, kw, OH, OW, st, dl)
            gxp[sl] += np.einsum("nhwo,co->nhwc", gm, w[kh, kw])
            gw[kh, kw] = np.einsum("nhwc,nhwo->co", xp[sl], gm)
    H, W = x.shape[1:3]
    return gxp[:, pt:pt + H, pl:pl + W], gw, gm.sum(axis=(0, 1, 2))


def pointwise(x, w, b=None, activation=None):
    out = np.asarray(x, float) @ np.asarray(w, float)
    if b is not None:
        out += np.asarray(b, float)
    return activate(out, activation)


def pointwise_vjp(x, w, g, activation=None, y=None):
    x = np.asarray(x, float)
    w = np.asarray(w, float)
    gm = np.asarray(g, float) * (activation_grad(y, activation) if activation else 1.0)
    Ci = x.shape[-1]
    gx = gm @ w.T
    gw = x.reshape(-1, Ci).T @ gm.reshape(-1, w.shape[1])
    return gx, gw, gm.reshape(-1, w.shape[1]).sum(axis=0)
