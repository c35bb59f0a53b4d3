"""Thread partitions of the convolution backward kernels.

The weight gradients are split over shape-fixed chunks of the pixels (pointwise,
at least 2048 pixels and few input channels) or of the output rows (depthwise),
with partial sums added in chunk order; the pointwise input gradient runs on the
packed GEMM with the transposed weights.  These tests pin the shapes that take
those paths: results against numpy in float32 and float64, and bit-identical for
1, 2 and 3 threads.
"""

import numpy as np
import pytest
from conftest import tol

from effai_fast.nn import functional as F


def _relu_mask(g, y):
    return np.where(y > 0, g, 0)


@pytest.mark.parametrize("P, Ci, Co", [(4100, 16, 32), (2048, 64, 24), (3000, 130, 20),
                                       (49, 40, 1030)])
def test_pointwise_vjp_chunks(P, Ci, Co, dtype, rng):
    x = rng.standard_normal((P, Ci)).astype(dtype)
    w = rng.standard_normal((Ci, Co)).astype(dtype)
    y = F.pointwise_conv2d(x, w, activation="relu")
    g = rng.standard_normal(y.shape).astype(dtype)
    res = [F.pointwise_conv2d_vjp(x, w, g, activation="relu", output=y, n_threads=t)
           for t in (1, 2, 3)]
    gm = _relu_mask(g, y).astype(np.float64)
    ref_x = gm @ w.astype(np.float64).T
    ref_w = x.astype(np.float64).T @ gm
    r = tol(dtype)
    np.testing.assert_allclose(res[0][0], ref_x, rtol=r * 10, atol=r * 10 * np.abs(ref_x).max())
    np.testing.assert_allclose(res[0][1], ref_w, rtol=r * 10, atol=r * 10 * np.abs(ref_w).max())
    np.testing.assert_allclose(res[0][2], gm.sum(0), rtol=r * 10,
                               atol=r * 10 * np.abs(gm.sum(0)).max())
    for other in res[1:]:
        for a, b in zip(res[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape, k, stride", [((64, 7, 7, 16), 3, 1), ((1, 7, 7, 48), 3, 2),
                                              ((3, 5, 6, 20), 5, 1), ((1, 1, 9, 8), 3, 1)])
def test_depthwise_vjp_row_chunks(shape, k, stride, dtype, rng):
    x = rng.standard_normal(shape).astype(dtype)
    w = rng.standard_normal((k, k, shape[-1])).astype(dtype)
    y = F.depthwise_conv2d(x, w, stride=stride, activation="relu6")
    g = rng.standard_normal(y.shape).astype(dtype)
    res = [F.depthwise_conv2d_vjp(x, w, g, stride=stride, activation="relu6", output=y,
                                  n_threads=t) for t in (1, 2, 3)]
    # reference weight / bias gradient: finite sums over the pixels in float64
    gm = np.where((y > 0) & (y < 6), g, 0).astype(np.float64)
    N, H, W, C = shape
    OH, OW = y.shape[1:3]
    pt = max((OH - 1) * stride + k - H, 0) // 2
    pl = max((OW - 1) * stride + k - W, 0) // 2
    xp = np.zeros((N, H + 2 * k, W + 2 * k, C))
    xp[:, pt:pt + H, pl:pl + W] = x
    ref = np.zeros((k, k, C))
    for kh in range(k):
        for kw in range(k):
            patch = xp[:, kh:kh + stride * OH:stride, kw:kw + stride * OW:stride]
            ref[kh, kw] = (patch * gm).sum((0, 1, 2))
    r = tol(dtype)
    np.testing.assert_allclose(res[0][1], ref, rtol=r * 10, atol=r * 10 * np.abs(ref).max())
    np.testing.assert_allclose(res[0][2], gm.sum((0, 1, 2)), rtol=r * 10,
                               atol=r * 10 * np.abs(gm.sum((0, 1, 2))).max())
    for other in res[1:]:
        for a, b in zip(res[0], other):
            np.testing.assert_array_equal(a, b)
