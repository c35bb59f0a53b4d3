"""Depthwise VJP paths: the ring of masked grad_out rows, the vector kernels, thread counts.

The ring (one masked grad_out row per filter row, reused by consecutive input rows) must give
the right rows whatever the stride/dilation pattern, including dilations that make two needed
rows fall in the same ring slot; the weight gradient must be bitwise the same at any thread
count (channel split, fixed pixel order).
"""

import _conv_reference as ref
import numpy as np
import pytest
from conftest import tol

from effai_fast.nn import functional as F


@pytest.fixture(autouse=True)
def _parallel_even_when_small(monkeypatch):
    monkeypatch.setattr(F, "_GRAIN_MACS", 1)


def _close(got, want, dtype, scale=1.0):
    r = tol(dtype)
    np.testing.assert_allclose(np.asarray(got, float), np.asarray(want, float), rtol=r,
                               atol=r * max(1.0, scale))


# (N, H, W, C, KH, KW, stride, padding, dilation)
CASES = [
    (1, 9, 9, 40, 3, 3, 1, "same", 3),          # dilation 3: ring slots collide mod 3
    (2, 12, 11, 24, 3, 3, 2, "same", 2),        # stride 2 + dilation 2
    (1, 13, 10, 19, 5, 5, 2, (2, 1, 0, 3), 1),  # 5x5, asymmetric padding
    (1, 8, 14, 64, 3, 3, (2, 1), "valid", (1, 3)),
    (1, 14, 14, 1024 // 16 + 3, 3, 3, 1, "same", 1),  # vectors + a 3-channel tail
    (1, 7, 7, 33, 3, 3, 2, "same", 1),
    (3, 5, 6, 9, 1, 3, 1, 0, 1),
    (1, 6, 6, 8, 7, 7, 1, "same", 1),           # kernel larger than the image
]


def _check_vjp(x, w, y, activation, dtype, n_threads, rng, kw):
    """All three gradients of a random cotangent against the numpy reference."""
    g = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, gb = F.depthwise_conv2d_vjp(x, w, g, activation=activation, output=y,
                                        n_threads=n_threads, **kw)
    rx, rw, rb = ref.depthwise_vjp(x, w, g, activation=activation, y=y, **kw)
    s = np.abs(g).sum(axis=(0, 1, 2)).max()
    _close(gx, rx, dtype, np.abs(rx).max())
    _close(gw, rw, dtype, s * np.abs(x).max())
    _close(gb, rb, dtype, s)


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("activation", [None, "relu", "relu6"])
def test_vjp_matches_reference(case, activation, dtype, n_threads, rng):
    N, H, W, C, KH, KW, stride, padding, dilation = case
    x = (3 * rng.standard_normal((N, H, W, C))).astype(dtype)
    w = rng.standard_normal((KH, KW, C)).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y = F.depthwise_conv2d(x, w, b, activation=activation, **kw)
    _check_vjp(x, w, y, activation, dtype, n_threads, rng, kw)


@pytest.mark.parametrize("case", CASES[:6], ids=str)
def test_weight_gradient_is_bitwise_thread_independent(case, dtype, rng):
    N, H, W, C, KH, KW, stride, padding, dilation = case
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    w = rng.standard_normal((KH, KW, C)).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y = F.depthwise_conv2d(x, w, activation="relu6", **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    runs = [F.depthwise_conv2d_vjp(x, w, g, activation="relu6", output=y, n_threads=nt, **kw)
            for nt in (1, 2, 3, 5)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_mobilenet_layers_batch1_float64_finite_differences(rng):
    # a MobileNet-like stride-1 and stride-2 layer at batch 1 (interior vector path + borders)
    for stride in (1, 2):
        x = rng.standard_normal((1, 10, 10, 20))
        w = rng.standard_normal((3, 3, 20))
        y = F.depthwise_conv2d(x, w, stride=stride)
        R = rng.standard_normal(y.shape)
        gx, gw, _ = F.depthwise_conv2d_vjp(x, w, R, stride=stride, n_threads=2)
        eps = 1e-6
        for arg, grad in ((0, gx), (1, gw)):
            v = rng.standard_normal((x, w)[arg].shape)
            a = [x, w]
            p = [x, w]
            a[arg] = a[arg] + eps * v
            p[arg] = p[arg] - eps * v
            fd = ((R * F.depthwise_conv2d(*a, stride=stride)).sum()
                  - (R * F.depthwise_conv2d(*p, stride=stride)).sum()) / (2 * eps)
            assert (grad * v).sum() == pytest.approx(fd, rel=1e-7)


def test_fast_argument_path_equals_general_path(dtype, rng):
    # plain ints/tuples and ready arrays take the fast path; lists / numpy ints the general one
    x = rng.standard_normal((2, 9, 8, 12)).astype(dtype)
    w = rng.standard_normal((3, 3, 12)).astype(dtype)
    b = rng.standard_normal(12).astype(dtype)
    fast = F.depthwise_conv2d(x, w, b, stride=(2, 1), padding=(1, 0, 2, 1), activation="relu6")
    slow = F.depthwise_conv2d(x, w, b, stride=[2, 1], padding=[1, 0, 2, 1], activation="relu6")
    np.testing.assert_array_equal(fast, slow)
    g = rng.standard_normal(fast.shape).astype(dtype)
    bufs = (np.empty_like(x), np.empty_like(w), np.empty_like(b))
    got = F.depthwise_conv2d_vjp(x, w, g, stride=(2, 1), padding=(1, 0, 2, 1),
                                 activation="relu6", output=fast, out=bufs)
    assert all(a is bb for a, bb in zip(got, bufs))
    want = F.depthwise_conv2d_vjp(x, w, g, stride=[2, 1], padding=[1, 0, 2, 1],
                                  activation="relu6", output=fast)
    for a, bb in zip(got, want):
        np.testing.assert_array_equal(a, bb)
    gx, gw, gb = F.depthwise_conv2d_vjp(x, w, g, stride=(2, 1), padding=(1, 0, 2, 1),
                                        activation="relu6", output=fast, need_input_grad=False)
    assert gx is None
    np.testing.assert_array_equal(gw, want[1])


def test_fast_path_still_rejects_bad_buffers(rng):
    x = rng.standard_normal((1, 6, 6, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match="out"):
        F.depthwise_conv2d(x, w, out=x)                      # aliases the input
    with pytest.raises(TypeError, match="out"):
        F.depthwise_conv2d(x, w, out=np.empty((1, 6, 6, 4)))  # float64 buffer
    with pytest.raises(ValueError, match="out"):
        F.depthwise_conv2d(x, w, out=np.empty((1, 6, 6, 8), np.float32)[..., :4])
    ro = np.empty((1, 6, 6, 4), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out"):
        F.depthwise_conv2d(x, w, out=ro)
    g = np.ones((1, 6, 6, 4), np.float32)
    with pytest.raises(ValueError, match="share memory"):
        F.depthwise_conv2d_vjp(x, w, g, out=(None, w, None))
    with pytest.raises(ValueError, match="output"):
        F.depthwise_conv2d_vjp(x, w, g, activation="relu")
    with pytest.raises(TypeError, match="stride"):
        F.depthwise_conv2d(x, w, stride=True)


# 3x3 paths of the register-blocked kernels (_dw.h): channel chunks of 1 KiB with a tail
# that is not a multiple of the vector width, rows in the padding (H < 3), rows narrower
# than a block of four, block remainders, stride 3, dilation 2 with "valid" padding.
CASES3 = [
    (1, 9, 13, 300, 3, 3, 1, "same", 1),         # 2-3 channel chunks + tail, 13 = 3*4 + 1
    (2, 2, 7, 21, 3, 3, 1, "same", 1),           # H < 3: every row has a padded tap row
    (1, 6, 3, 16, 3, 3, 1, "same", 1),           # W < 4: no block of four at all
    (1, 11, 17, 12, 3, 3, 3, (1, 2, 0, 1), 1),   # stride 3, asymmetric padding
    (1, 12, 15, 10, 3, 3, 1, "valid", 2),        # dilation 2, valid
    (2, 15, 14, 136, 3, 3, 2, "same", 1),        # MobileNet stride 2 (TF padding), 2 chunks
]


@pytest.mark.parametrize("case", CASES3, ids=str)
@pytest.mark.parametrize("activation", [None, "relu6"])
def test_3x3_kernels_match_reference(case, activation, dtype, n_threads, rng):
    N, H, W, C, KH, KW, stride, padding, dilation = case
    x = (3 * rng.standard_normal((N, H, W, C))).astype(dtype)
    w = rng.standard_normal((KH, KW, C)).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y = F.depthwise_conv2d(x, w, b, activation=activation, n_threads=n_threads, **kw)
    _close(y, ref.depthwise(x, w, b, activation=activation, **kw), dtype,
           np.abs(x).max() * np.abs(w).sum(axis=(0, 1)).max())
    _check_vjp(x, w, y, activation, dtype, n_threads, rng, kw)


@pytest.mark.parametrize("case", [CASES3[0], CASES3[1], CASES3[5]], ids=str)
def test_3x3_weight_gradient_is_bitwise_thread_independent(case, dtype, rng):
    N, H, W, C, KH, KW, stride, padding, dilation = case
    x = rng.standard_normal((N, H, W, C)).astype(dtype)
    w = rng.standard_normal((KH, KW, C)).astype(dtype)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    y = F.depthwise_conv2d(x, w, activation="relu", **kw)
    g = rng.standard_normal(y.shape).astype(dtype)
    runs = [F.depthwise_conv2d_vjp(x, w, g, activation="relu", output=y, n_threads=nt, **kw)
            for nt in (1, 2, 3)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_3x3_matches_torch(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 10, 9, 40))
    w = rng.standard_normal((3, 3, 40))
    y = F.depthwise_conv2d(x, w, padding=1, activation="relu")
    g = rng.standard_normal(y.shape)
    gx, gw, _ = F.depthwise_conv2d_vjp(x, w, g, padding=1, activation="relu", output=y)
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(w.transpose(2, 0, 1)[:, None], requires_grad=True)
    yt = torch.relu(torch.nn.functional.conv2d(xt, wt, padding=1, groups=40))
    yt.backward(torch.tensor(g.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(gx, xt.grad.numpy().transpose(0, 2, 3, 1), rtol=1e-11,
                               atol=1e-11)
    np.testing.assert_allclose(gw, wt.grad.numpy()[:, 0].transpose(1, 2, 0), rtol=1e-11,
                               atol=1e-10)
