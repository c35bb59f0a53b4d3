"""The packed GEMM path of the 1x1 convolution and of the fused separable block.

The AVX2 build runs ``pointwise_conv2d`` and ``depthwise_separable_conv2d`` on
the micro-kernels of ``effai_fast/nn/_gemm.h`` (6x16 float / 6x8 double tiles,
K blocks of 256, B packed in 16/8-column panels, 128/64-column blocks); these
tests aim at its edges: pixel counts that are not a multiple of the 6-row tile
or of a work item, channel counts that are not a multiple of a panel, a K
block or a column block, tiny shapes, and every bias / activation epilogue.
"""

import _conv_reference as ref
import numpy as np
import pytest
from conftest import tol

from effai_fast.nn import functional as F


@pytest.fixture(autouse=True)
def _parallel_even_when_small(monkeypatch):
    monkeypatch.setattr(F, "_GRAIN_MACS", 1)


def _close(got, want, dtype):
    r = tol(dtype)
    want = np.asarray(want, float)
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(got, float), want, rtol=r, atol=r * scale)


# (P, C_in, C_out): tiny; P % 6 != 0; C_out % 16 and % 8 != 0; C_in > one K block
# (256) with a ragged last block; C_out > one column block (128 / 64); P above the
# 144-row chunk and the 2048-pixel work item; few pixels (column-split items).
GEMM_CASES = [
    (1, 1, 1), (5, 3, 7), (6, 16, 16), (7, 17, 9), (13, 8, 33), (49, 40, 130),
    (50, 300, 24), (145, 257, 17), (200, 64, 129), (4100, 24, 40), (30, 520, 70),
]


@pytest.mark.parametrize("case", GEMM_CASES, ids=str)
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
@pytest.mark.parametrize("bias", [True, False])
def test_pointwise_matches_numpy(case, activation, bias, dtype, n_threads, rng):
    P, Ci, Co = case
    x = (2 * rng.standard_normal((P, Ci))).astype(dtype)
    w = rng.standard_normal((Ci, Co)).astype(dtype)
    b = (3 * rng.standard_normal(Co)).astype(dtype) if bias else None
    y = F.pointwise_conv2d(x, w, b, activation=activation, n_threads=n_threads)
    assert y.dtype == dtype and y.shape == (P, Co)
    _close(y, ref.pointwise(x, w, b, activation), dtype)


@pytest.mark.parametrize("case", [(7, 17, 9), (145, 257, 17), (4100, 24, 40), (49, 40, 130)],
                         ids=str)
def test_pointwise_bits_do_not_depend_on_threads(case, dtype, rng):
    P, Ci, Co = case
    x = rng.standard_normal((P, Ci)).astype(dtype)
    w = rng.standard_normal((Ci, Co)).astype(dtype)
    b = rng.standard_normal(Co).astype(dtype)
    runs = [F.pointwise_conv2d(x, w, b, activation="relu6", n_threads=nt) for nt in (1, 2, 3)]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)
    # a pixel's output does not depend on which other pixels share its call
    part = F.pointwise_conv2d(x[1:6], w, b, activation="relu6", n_threads=1)
    np.testing.assert_array_equal(part, runs[0][1:6])


def test_pointwise_epilogue_propagates_nan_and_clamps(dtype):
    x = np.array([[np.nan, 1.0], [1.0, 1.0], [-4.0, 0.0], [10.0, 0.0]], dtype)
    w = np.array([[1.0, -1.0, 0.5], [2.0, 0.0, 0.0]], dtype)
    y = F.pointwise_conv2d(x, w, activation="relu6", n_threads=1)
    assert np.isnan(y[0]).all()
    np.testing.assert_array_equal(y[1:], [[3, 0, 0.5], [0, 4, 0], [6, 0, 5]])
    y = F.pointwise_conv2d(x, w, np.array([1, 1, 1], dtype), activation="relu", n_threads=1)
    assert np.isnan(y[0]).all()
    np.testing.assert_array_equal(y[1:], [[4, 0, 1.5], [0, 5, 0], [11, 0, 6]])


def test_pointwise_out_buffer_written_exactly(rng):
    x = rng.standard_normal((2, 5, 7, 19)).astype(np.float32)
    w = rng.standard_normal((19, 21)).astype(np.float32)
    big = np.full((2 * 5 * 7 + 1, 21), 7.0, np.float32)
    out = big[:-1].reshape(2, 5, 7, 21)
    assert F.pointwise_conv2d(x, w, out=out, n_threads=2) is out
    _close(out, ref.pointwise(x, w), np.float32)
    np.testing.assert_array_equal(big[-1], 7.0)


def _block_inputs(N, H, W, C, Co, dtype, rng):
    """Input, depthwise weight, pointwise weight and both biases of a separable block."""
    x = (2 * rng.standard_normal((N, H, W, C))).astype(dtype)
    dw = rng.standard_normal((3, 3, C)).astype(dtype)
    pw = (rng.standard_normal((C, Co)) / np.sqrt(C)).astype(dtype)
    db = rng.standard_normal(C).astype(dtype)
    pb = rng.standard_normal(Co).astype(dtype)
    return x, dw, pw, db, pb


@pytest.mark.parametrize("case", [(2, 9, 10, 300, 1, 37), (1, 12, 11, 24, 2, 130),
                                  (1, 1, 1, 1, 1, 1), (3, 7, 5, 16, 2, 16)], ids=str)
@pytest.mark.parametrize("activation", [None, "relu6"])
def test_separable_block_matches_reference(case, activation, dtype, n_threads, rng):
    N, H, W, C, stride, Co = case
    x, dw, pw, db, pb = _block_inputs(N, H, W, C, Co, dtype, rng)
    got = F.depthwise_separable_conv2d(x, dw, pw, db, pb, stride=stride,
                                       dw_activation="relu", activation=activation,
                                       n_threads=n_threads)
    want = ref.pointwise(ref.depthwise(x, dw, db, stride=stride, activation="relu"), pw, pb,
                         activation)
    _close(got, want, dtype)
    runs = [F.depthwise_separable_conv2d(x, dw, pw, db, pb, stride=stride,
                                         dw_activation="relu", activation=activation,
                                         n_threads=nt) for nt in (1, 2)]
    np.testing.assert_array_equal(runs[0], runs[1])


@pytest.mark.parametrize("case", [(1, 7, 7, 40, 1, 70), (2, 9, 9, 24, 2, 33),
                                  (1, 66, 64, 8, 1, 20), (2, 65, 64, 5, 2, 17)], ids=str)
def test_separable_block_bitwise_equals_pair_either_weight_packing(case, dtype, n_threads,
                                                                   rng):
    # few pixels (< 4096): each tile packs blocks of the pointwise weights itself; many:
    # the weights are packed once per call.  Either way every output element is the same
    # FMA chain as in the unfused pair.
    N, H, W, C, stride, Co = case
    x, dw, pw, db, pb = _block_inputs(N, H, W, C, Co, dtype, rng)
    got = F.depthwise_separable_conv2d(x, dw, pw, db, pb, stride=stride,
                                       dw_activation="relu6", activation="relu",
                                       n_threads=n_threads)
    mid = F.depthwise_conv2d(x, dw, db, stride=stride, activation="relu6", n_threads=1)
    pair = F.pointwise_conv2d(mid, pw, pb, activation="relu", n_threads=1)
    if F._conv._packed_gemm():
        np.testing.assert_array_equal(got, pair)
    _close(got, ref.pointwise(ref.depthwise(x, dw, db, stride=stride, activation="relu6"),
                              pw, pb, "relu"), dtype)


@pytest.mark.parametrize("isa", ["baseline", "avx2"])
def test_pointwise_every_build(isa, monkeypatch, dtype, rng):
    from effai_fast.nn import _conv

    if _conv._cpu_level() < {"baseline": 0, "avx2": 1}[isa]:
        pytest.skip(f"CPU lacks {isa}")
    name, module = F._select_kernels(isa)
    if name != isa:
        pytest.skip(f"{isa} build not present")
    assert module._packed_gemm() == (isa != "baseline")
    monkeypatch.setattr(F, "_conv", module)
    for P, Ci, Co in [(145, 257, 17), (49, 40, 130), (5, 3, 7)]:
        x = rng.standard_normal((P, Ci)).astype(dtype)
        w = rng.standard_normal((Ci, Co)).astype(dtype)
        b = rng.standard_normal(Co).astype(dtype)
        for nt in (1, 2):
            _close(F.pointwise_conv2d(x, w, b, activation="relu", n_threads=nt),
                   ref.pointwise(x, w, b, "relu"), dtype)


# The dense convolution (the MobileNet stem) on the packed kernels: im2col blocks of
# ~32 KiB, K = KH*KW*C_in read in place when <= 256 and packed above; odd channels,
# pixel counts not a multiple of 6, padding on every side, stride 2, dilation 2.
@pytest.mark.parametrize("case", [
    # (N, H, W, C_in, C_out, k, stride, padding, dilation)
    (1, 15, 13, 3, 32, 3, 2, "same", 1), (2, 9, 11, 5, 17, 3, 1, "valid", 1),
    (1, 12, 10, 3, 7, 3, 2, (2, 0, 1, 3), 1), (1, 11, 9, 31, 9, 3, 1, "same", 2),
    (3, 7, 8, 2, 40, 5, 1, 2, 1), (1, 64, 65, 3, 24, 3, 2, "same", 1),
])
@pytest.mark.parametrize("activation", [None, "relu6"])
def test_dense_conv_packed_matches_reference(case, activation, dtype, n_threads, rng):
    N, H, W, Ci, Co, k, s, pad, d = case
    x = rng.standard_normal((N, H, W, Ci)).astype(dtype)
    w = rng.standard_normal((k, k, Ci, Co)).astype(dtype)
    b = rng.standard_normal(Co).astype(dtype)
    y = F.conv2d(x, w, b, stride=s, padding=pad, dilation=d, activation=activation,
                 n_threads=n_threads)
    _close(y, ref.conv2d(x, w, b, stride=s, padding=pad, dilation=d,
                         activation=activation), dtype)
    y1 = F.conv2d(x, w, b, stride=s, padding=pad, dilation=d, activation=activation,
                  n_threads=3 - n_threads)
    np.testing.assert_array_equal(y, y1)


@pytest.mark.parametrize("P", [1, 2, 3, 7, 49])
@pytest.mark.parametrize("shape", [(1024, 1000), (5, 7), (40, 130), (300, 97)], ids=str)
def test_prepacked_few_rows_same_bits_as_many(P, shape, dtype, n_threads, rng):
    # Pre-packed weights (InferencePlan): 1-2 rows take the row kernel, m <= 144 with
    # k > 256 the few-rows path; each must give the bits of the same rows in a big GEMM.
    Ci, Co = shape
    kern = F._conv
    x = rng.standard_normal((200, Ci)).astype(dtype)
    w = rng.standard_normal((Ci, Co)).astype(dtype)
    b = rng.standard_normal(Co).astype(dtype)
    packed = np.empty(kern._pointwise_packed_len(Ci, Co, dtype == np.float64), dtype)
    kern._pack_pointwise(w, packed)
    lin, big = np.empty((200, Co), dtype), np.empty((200, Co), dtype)
    kern._pointwise_forward_packed(x, w, packed, b, lin, 0, n_threads)
    _close(lin, ref.pointwise(x, w, b, None), dtype)
    kern._pointwise_forward_packed(x, w, packed, b, big, 2, n_threads)   # relu6
    np.testing.assert_array_equal(big, np.clip(lin, 0, 6))
    for r0 in (0, 200 - P):
        y = np.empty((P, Co), dtype)
        kern._pointwise_forward_packed(x[r0:r0 + P], w, packed, b, y, 2, n_threads)
        np.testing.assert_array_equal(y, big[r0:r0 + P])
