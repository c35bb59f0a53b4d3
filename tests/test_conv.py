"""Convolution kernels against a slow numpy reference, PyTorch and finite differences."""

import _conv_reference as ref
import numpy as np
import pytest
from conftest import tol

from effai_fast.nn import functional as F


@pytest.fixture(autouse=True)
def _parallel_even_when_small(monkeypatch):
    # The kernels stay serial below a work threshold; tests use small shapes
    # and must still exercise the 2-thread paths.
    monkeypatch.setattr(F, "_GRAIN_MACS", 1)


def _close(got, want, dtype, scale=None):
    want = np.asarray(want, float)
    r = tol(dtype)
    if scale is None:
        scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(np.asarray(got, float), want, rtol=r, atol=r * scale)


# (N, H, W, C, KH, KW, stride, padding, dilation)
DW_CASES = [
    (1, 7, 7, 5, 3, 3, 1, "same", 1),
    (2, 8, 9, 17, 3, 3, 2, "same", 1),
    (2, 9, 8, 33, 3, 3, 2, "valid", 1),
    (1, 2, 2, 3, 3, 3, 1, "same", 1),  # H, W smaller than the kernel
    (1, 1, 3, 4, 3, 3, 2, "same", 1),
    (3, 11, 10, 19, 3, 3, 1, 1, 2),  # dilation 2, int padding
    (1, 10, 12, 16, 5, 3, (1, 2), (0, 1, 2, 1), 1),
    (2, 13, 13, 40, 3, 3, 1, (2, 0, 1, 3), (2, 1)),
    (1, 1, 1, 7, 1, 1, 1, "valid", 1),
    (1, 16, 20, 24, 3, 3, 3, "same", 1),
    (2, 12, 15, 70, 3, 3, 1, (1, 1), 1),
]
ACTS = [None, "relu", "relu6"]


def _dw_data(rng, case, dtype, bias=True):
    N, H, W, C, KH, KW = case[:6]
    x = (3 * rng.standard_normal((N, H, W, C))).astype(dtype)
    w = rng.standard_normal((KH, KW, C)).astype(dtype)
    b = rng.standard_normal(C).astype(dtype) if bias else None
    return x, w, b


def _kw(case):
    return dict(stride=case[6], padding=case[7], dilation=case[8])


@pytest.mark.parametrize("case", DW_CASES, ids=str)
@pytest.mark.parametrize("activation", ACTS)
def test_depthwise_forward_matches_reference(case, activation, dtype, n_threads, rng):
    x, w, b = _dw_data(rng, case, dtype, bias=activation != "relu6")
    got = F.depthwise_conv2d(x, w, b, activation=activation, n_threads=n_threads, **_kw(case))
    assert got.dtype == dtype
    want = ref.depthwise(x, w, b, activation=activation, **_kw(case))
    assert got.shape == want.shape
    _close(got, want, dtype)


@pytest.mark.parametrize("case", DW_CASES, ids=str)
@pytest.mark.parametrize("activation", [None, "relu6"])
def test_depthwise_vjp_matches_reference(case, activation, dtype, n_threads, rng):
    x, w, b = _dw_data(rng, case, dtype)
    y = F.depthwise_conv2d(x, w, b, activation=activation, **_kw(case))
    g = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, gb = F.depthwise_conv2d_vjp(x, w, g, activation=activation, output=y,
                                        n_threads=n_threads, **_kw(case))
    rx, rw, rb = ref.depthwise_vjp(x, w, g, activation=activation, y=y, **_kw(case))
    _close(gx, rx, dtype)
    _close(gw, rw, dtype, scale=np.abs(g).sum(axis=(0, 1, 2)).max() * np.abs(x).max())
    _close(gb, rb, dtype, scale=np.abs(g).sum(axis=(0, 1, 2)).max())


def _fd_check(f, vjp_grads, args, rng, eps=1e-6):
    """Directional finite differences of L = <R, f(*args)> against VJP grads."""
    y0 = f(*args)
    R = rng.standard_normal(y0.shape)
    grads = vjp_grads(R)
    for i, (a, g) in enumerate(zip(args, grads)):
        if g is None:
            continue
        v = rng.standard_normal(a.shape)
        plus = [aa.copy() for aa in args]
        minus = [aa.copy() for aa in args]
        plus[i] = a + eps * v
        minus[i] = a - eps * v
        fd = ((R * f(*plus)).sum() - (R * f(*minus)).sum()) / (2 * eps)
        an = (g * v).sum()
        assert an == pytest.approx(fd, rel=1e-6, abs=1e-6 * np.abs(g).sum()), i


@pytest.mark.parametrize("case", DW_CASES[:8], ids=str)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_depthwise_vjp_finite_differences(case, activation, rng):
    x, w, b = _dw_data(rng, case, np.float64)
    kw = _kw(case)

    def f(x, w, b):
        return F.depthwise_conv2d(x, w, b, activation=activation, n_threads=1, **kw)

    def grads(R):
        y = f(x, w, b)
        return F.depthwise_conv2d_vjp(x, w, R, activation=activation, output=y, n_threads=2,
                                      **kw)

    _fd_check(f, grads, (x, w, b), rng)


# --------------------------------------------------------------------------
# pointwise

PW_CASES = [(1, 1, 1, 1, 1), (2, 3, 5, 3, 17), (1, 7, 7, 64, 40), (3, 4, 5, 33, 64),
            (1, 13, 11, 8, 129)]


@pytest.mark.parametrize("case", PW_CASES, ids=str)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_pointwise_forward_and_vjp(case, activation, dtype, n_threads, rng):
    N, H, W, Ci, Co = case
    x = (3 * rng.standard_normal((N, H, W, Ci))).astype(dtype)
    w = rng.standard_normal((Ci, Co)).astype(dtype)
    b = rng.standard_normal(Co).astype(dtype)
    y = F.pointwise_conv2d(x, w, b, activation=activation, n_threads=n_threads)
    _close(y, ref.pointwise(x, w, b, activation), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, gb = F.pointwise_conv2d_vjp(x, w, g, activation=activation, output=y,
                                        n_threads=n_threads)
    rx, rw, rb = ref.pointwise_vjp(x, w, g, activation, y)
    _close(gx, rx, dtype)
    _close(gw, rw, dtype, scale=np.abs(g).sum(axis=(0, 1, 2)).max() * np.abs(x).max())
    _close(gb, rb, dtype, scale=np.abs(g).sum(axis=(0, 1, 2)).max())


def test_pointwise_accepts_pixel_matrix(rng):
    x = rng.standard_normal((50, 6))
    w = rng.standard_normal((6, 4))
    np.testing.assert_allclose(F.pointwise_conv2d(x, w), x @ w, rtol=1e-12)


@pytest.mark.parametrize("activation", [None, "relu"])
def test_pointwise_vjp_finite_differences(activation, rng):
    x = rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal((5, 6))
    b = rng.standard_normal(6)

    def f(x, w, b):
        return F.pointwise_conv2d(x, w, b, activation=activation, n_threads=1)

    def grads(R):
        return F.pointwise_conv2d_vjp(x, w, R, activation=activation, output=f(x, w, b))

    _fd_check(f, grads, (x, w, b), rng)


# --------------------------------------------------------------------------
# dense

# (N, H, W, Ci, KH, KW, Co, stride, padding, dilation)
CONV_CASES = [
    (2, 15, 13, 3, 3, 3, 32, 2, "same", 1),  # MobileNet stem
    (1, 6, 7, 5, 3, 3, 7, 1, 1, 2),
    (1, 5, 5, 4, 5, 5, 3, 1, "valid", 1),
    (2, 4, 6, 6, 1, 1, 9, 1, "same", 1),
    (1, 2, 3, 2, 3, 3, 4, 2, "same", 1),
    (3, 9, 8, 3, 3, 2, 20, (2, 1), (1, 0, 2, 1), 1),
]


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
@pytest.mark.parametrize("activation", [None, "relu6"])
def test_conv2d_forward_and_vjp(case, activation, dtype, n_threads, rng):
    N, H, W, Ci, KH, KW, Co, stride, padding, dilation = case
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    x = (3 * rng.standard_normal((N, H, W, Ci))).astype(dtype)
    w = rng.standard_normal((KH, KW, Ci, Co)).astype(dtype)
    b = rng.standard_normal(Co).astype(dtype)
    y = F.conv2d(x, w, b, activation=activation, n_threads=n_threads, **kw)
    _close(y, ref.conv2d(x, w, b, activation=activation, **kw), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    gx, gw, gb = F.conv2d_vjp(x, w, g, activation=activation, output=y, n_threads=n_threads,
                              **kw)
    rx, rw, rb = ref.conv2d_vjp(x, w, g, activation=activation, y=y, **kw)
    gsum = np.abs(g).sum(axis=(0, 1, 2)).max()
    _close(gx, rx, dtype, scale=np.abs(g).max() * np.abs(w).sum(axis=(0, 1, 3)).max())
    _close(gw, rw, dtype, scale=gsum * np.abs(x).max())
    _close(gb, rb, dtype, scale=gsum)


def test_conv2d_vjp_finite_differences(rng):
    x = rng.standard_normal((2, 7, 6, 3))
    w = rng.standard_normal((3, 3, 3, 4))
    b = rng.standard_normal(4)
    kw = dict(stride=2, padding="same", activation="relu")

    def f(x, w, b):
        return F.conv2d(x, w, b, n_threads=1, **kw)

    def grads(R):
        return F.conv2d_vjp(x, w, R, output=f(x, w, b), **kw)

    _fd_check(f, grads, (x, w, b), rng)


def test_vjp_can_skip_input_gradient(rng):
    x = rng.standard_normal((1, 5, 5, 3))
    gx, gw, gb = F.conv2d_vjp(x, rng.standard_normal((3, 3, 3, 2)),
                              rng.standard_normal((1, 5, 5, 2)), need_input_grad=False)
    assert gx is None and gw.shape == (3, 3, 3, 2) and gb.shape == (2,)
    gx, gw, _ = F.depthwise_conv2d_vjp(x, rng.standard_normal((3, 3, 3)),
                                       rng.standard_normal((1, 5, 5, 3)),
                                       need_input_grad=False)
    assert gx is None and gw.shape == (3, 3, 3)


# --------------------------------------------------------------------------
# fused separable block

@pytest.mark.parametrize("case", [(2, 9, 10, 24, 1, 32), (1, 17, 17, 40, 2, 16),
                                  (3, 5, 4, 7, 1, 9), (1, 2, 2, 3, 2, 5)], ids=str)
def test_separable_block_equals_unfused_pair(case, dtype, n_threads, rng):
    N, H, W, C, stride, Co = case
    x = (3 * rng.standard_normal((N, H, W, C))).astype(dtype)
    dw = rng.standard_normal((3, 3, C)).astype(dtype)
    pw = rng.standard_normal((C, Co)).astype(dtype)
    db = rng.standard_normal(C).astype(dtype)
    pb = rng.standard_normal(Co).astype(dtype)
    got = F.depthwise_separable_conv2d(x, dw, pw, db, pb, stride=stride, dw_activation="relu6",
                                       activation="relu", n_threads=n_threads)
    mid = F.depthwise_conv2d(x, dw, db, stride=stride, activation="relu6")
    want = F.pointwise_conv2d(mid, pw, pb, activation="relu")
    _close(got, want, dtype)
    _close(got, ref.pointwise(ref.depthwise(x, dw, db, stride=stride, activation="relu6"),
                              pw, pb, "relu"), dtype)


# --------------------------------------------------------------------------
# threads, buffers, bad input

def test_results_do_not_depend_on_thread_count(dtype, rng):
    x = rng.standard_normal((3, 21, 19, 72)).astype(dtype)
    dw = rng.standard_normal((3, 3, 72)).astype(dtype)
    pw = rng.standard_normal((72, 40)).astype(dtype)
    w4 = rng.standard_normal((3, 3, 72, 24)).astype(dtype)
    runs = []
    for nt in (1, 2, 3):
        y = F.depthwise_conv2d(x, dw, stride=2, activation="relu", n_threads=nt)
        g = np.linspace(-1, 1, y.size).reshape(y.shape).astype(dtype)
        r = [y, *F.depthwise_conv2d_vjp(x, dw, g, stride=2, activation="relu", output=y,
                                        n_threads=nt)]
        p = F.pointwise_conv2d(x, pw, activation="relu6", n_threads=nt)
        gp = np.cos(np.arange(p.size)).reshape(p.shape).astype(dtype)
        r += [p, *F.pointwise_conv2d_vjp(x, pw, gp, activation="relu6", output=p,
                                         n_threads=nt)]
        c = F.conv2d(x, w4, stride=2, n_threads=nt)
        r += [c, *F.conv2d_vjp(x, w4, np.ones_like(c), stride=2, n_threads=nt)]
        r.append(F.depthwise_separable_conv2d(x, dw, pw, n_threads=nt))
        runs.append(r)
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            np.testing.assert_array_equal(a, b)


def test_out_buffers_are_used(rng):
    x = rng.standard_normal((2, 6, 6, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4)).astype(np.float32)
    out = np.full((2, 6, 6, 4), np.nan, np.float32)
    res = F.depthwise_conv2d(x, w, out=out)
    assert res is out
    np.testing.assert_allclose(out, ref.depthwise(x, w), rtol=1e-5, atol=1e-5)
    bufs = (np.empty_like(x), np.empty_like(w), np.empty(4, np.float32))
    got = F.depthwise_conv2d_vjp(x, w, out, out=bufs)
    assert all(a is b for a, b in zip(got, bufs))
    pw = rng.standard_normal((4, 5)).astype(np.float32)
    o2 = np.empty((2, 6, 6, 5), np.float32)
    assert F.pointwise_conv2d(x, pw, out=o2) is o2
    o3 = np.empty((2, 3, 3, 5), np.float32)
    assert F.conv2d(x, rng.standard_normal((3, 3, 4, 5)).astype(np.float32), stride=2,
                    out=o3) is o3
    with pytest.raises(ValueError, match="out"):
        F.depthwise_conv2d(x, w, out=np.empty((2, 6, 6, 5), np.float32))
    with pytest.raises(TypeError, match="out"):
        F.depthwise_conv2d(x, w, out=np.empty((2, 6, 6, 4)))
    with pytest.raises(ValueError, match="out"):
        F.depthwise_conv2d(x, w, out=x)
    with pytest.raises(ValueError, match="out"):
        F.depthwise_conv2d(x, w, out=np.empty((2, 6, 6, 8), np.float32)[..., ::2])


def test_integer_and_noncontiguous_input(rng):
    x = rng.integers(-3, 4, (1, 6, 8, 6))
    w = rng.integers(-2, 3, (3, 3, 6))
    y = F.depthwise_conv2d(x, w)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, ref.depthwise(x, w))
    xf = rng.standard_normal((1, 6, 16, 12))[:, :, ::2, ::2]
    assert not xf.flags.c_contiguous
    np.testing.assert_allclose(F.depthwise_conv2d(xf, w), ref.depthwise(xf, w), rtol=1e-12)
    np.testing.assert_allclose(F.pointwise_conv2d(xf, np.eye(6)), xf, rtol=1e-12)


def test_zero_size_batch(rng):
    x = np.zeros((0, 5, 5, 3))
    w = rng.standard_normal((3, 3, 3))
    y = F.depthwise_conv2d(x, w, stride=2)
    assert y.shape == (0, 3, 3, 3)
    gx, gw, gb = F.depthwise_conv2d_vjp(x, w, y, stride=2)
    assert gx.shape == x.shape and not gw.any() and not gb.any()
    assert F.pointwise_conv2d(x, np.ones((3, 2))).shape == (0, 5, 5, 2)
    assert F.conv2d(x, np.ones((3, 3, 3, 2))).shape == (0, 5, 5, 2)
    gx, gw, gb = F.conv2d_vjp(x, np.ones((3, 3, 3, 2)), np.zeros((0, 5, 5, 2)))
    assert not gw.any()
    gx, gw, gb = F.pointwise_conv2d_vjp(x, np.ones((3, 2)), np.zeros((0, 5, 5, 2)))
    assert gx.shape == x.shape and not gw.any()


def test_nan_propagates(dtype):
    x = np.ones((1, 5, 5, 3), dtype)
    x[0, 2, 2, 1] = np.nan
    w = np.ones((3, 3, 3), dtype)
    for act in ACTS:
        y = F.depthwise_conv2d(x, w, activation=act)
        assert np.isnan(y[0, 1:4, 1:4, 1]).all()
        assert not np.isnan(y[..., 0]).any() and not np.isnan(y[0, 0, :, 1]).any()
        p = F.pointwise_conv2d(x, np.ones((3, 2), dtype), activation=act)
        assert np.isnan(p[0, 2, 2]).all() and np.isnan(p).sum() == 2


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(stride=0), ValueError, "stride"),
    (dict(stride=-1), ValueError, "stride"),
    (dict(stride=1.5), TypeError, "stride"),
    (dict(dilation=0), ValueError, "dilation"),
    (dict(padding="full"), ValueError, "padding"),
    (dict(padding=-1), ValueError, "padding"),
    (dict(padding=(1, 2, 3)), ValueError, "padding"),
    (dict(activation="tanh"), ValueError, "activation"),
    (dict(n_threads=0), ValueError, "n_threads"),
    (dict(bias=np.ones(3)), ValueError, "bias"),
])
def test_bad_arguments(kwargs, exc, match):
    x = np.ones((1, 5, 5, 4))
    w = np.ones((3, 3, 4))
    with pytest.raises(exc, match=match):
        F.depthwise_conv2d(x, w, **kwargs)


def test_bad_arrays():
    x = np.ones((1, 5, 5, 4))
    w = np.ones((3, 3, 4))
    with pytest.raises(TypeError, match="complex"):
        F.depthwise_conv2d(x.astype(complex), w)
    with pytest.raises(ValueError, match="x must have 4"):
        F.depthwise_conv2d(x[0], w)
    with pytest.raises(ValueError, match="weight"):
        F.depthwise_conv2d(x, np.ones((3, 3, 5)))
    with pytest.raises(ValueError, match="weight"):
        F.depthwise_conv2d(x, np.ones((3, 3)))
    with pytest.raises(ValueError, match="weight"):
        F.depthwise_conv2d(x, np.ones((7, 7, 4)), padding="valid")
    with pytest.raises(ValueError, match="weight"):
        F.pointwise_conv2d(x, np.ones((5, 2)))
    with pytest.raises(ValueError, match="weight"):
        F.conv2d(x, np.ones((3, 3, 3, 2)))
    with pytest.raises(TypeError, match="x"):
        F.pointwise_conv2d("abc", np.ones((5, 2)))
    with pytest.raises(ValueError, match="output"):
        F.depthwise_conv2d_vjp(x, w, np.ones((1, 5, 5, 4)), activation="relu")
    with pytest.raises(ValueError, match="grad_out"):
        F.depthwise_conv2d_vjp(x, w, np.ones((1, 4, 5, 4)))
    with pytest.raises(ValueError, match="height"):
        F.depthwise_conv2d(np.ones((1, 0, 5, 4)), w)


def test_same_padding_is_tensorflow_convention():
    assert F.conv_output_shape((1, 224, 224), 3, stride=2) == (1, 112, 112)
    assert F.conv_output_shape((1, 7, 7), 3, stride=2) == (1, 4, 4)
    assert F.conv_output_shape((1, 7, 7), 3, stride=1, padding="valid") == (1, 5, 5)
    # TF puts the odd padding pixel at the bottom/right: for H=6, stride 2 the
    # total padding is 1, all of it at the bottom.
    x = np.arange(36.0).reshape(1, 6, 6, 1)
    w = np.zeros((3, 3, 1))
    w[0, 0, 0] = 1
    y = F.depthwise_conv2d(x, w, stride=2)
    np.testing.assert_array_equal(y[0, :, :, 0], x[0, ::2, ::2, 0])


# --------------------------------------------------------------------------
# PyTorch as a second, independent reference

def _torch_dw(torch, x, w, b, stride, padding, dilation):
    tF = torch.nn.functional
    H, W = x.shape[1:3]
    st = (stride, stride) if isinstance(stride, int) else stride
    dl = (dilation, dilation) if isinstance(dilation, int) else dilation
    pt, pb, pl, pr = ref.pads(padding, H, W, w.shape[0], w.shape[1], st, dl)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).requires_grad_()
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(2, 0, 1)[:, None])).requires_grad_()
    bt = torch.from_numpy(b).requires_grad_()
    y = tF.conv2d(tF.pad(xt, (pl, pr, pt, pb)), wt, bt, stride=st, dilation=dl,
                  groups=x.shape[3])
    return xt, wt, bt, y


@pytest.mark.parametrize("case", DW_CASES, ids=str)
def test_depthwise_matches_torch(case, dtype, rng):
    torch = pytest.importorskip("torch")
    x, w, b = _dw_data(rng, case, dtype)
    xt, wt, bt, yt = _torch_dw(torch, x, w, b, case[6], case[7], case[8])
    y = F.depthwise_conv2d(x, w, b, **_kw(case))
    _close(y, yt.detach().numpy().transpose(0, 2, 3, 1), dtype)
    g = rng.standard_normal(y.shape).astype(dtype)
    yt.backward(torch.from_numpy(np.ascontiguousarray(g.transpose(0, 3, 1, 2))))
    gx, gw, gb = F.depthwise_conv2d_vjp(x, w, g, **_kw(case))
    _close(gx, xt.grad.numpy().transpose(0, 2, 3, 1), dtype)
    gscale = np.abs(g).sum(axis=(0, 1, 2)).max()
    _close(gw, wt.grad.numpy()[:, 0].transpose(1, 2, 0), dtype, scale=gscale * np.abs(x).max())
    _close(gb, bt.grad.numpy(), dtype, scale=gscale)


def test_stem_conv_matches_torch(dtype, rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 32, 30, 3)).astype(dtype)
    w = rng.standard_normal((3, 3, 3, 32)).astype(dtype)
    b = rng.standard_normal(32).astype(dtype)
    y = F.conv2d(x, w, b, stride=2, activation="relu")
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    wt = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
    yt = torch.relu(torch.nn.functional.conv2d(torch.nn.functional.pad(xt, (0, 1, 0, 1)), wt,
                                               torch.from_numpy(b), stride=2))
    _close(y, yt.numpy().transpose(0, 2, 3, 1), dtype)


@pytest.mark.parametrize("isa", ["baseline", "avx2", "avx512"])
def test_every_isa_build_matches_reference(isa, monkeypatch, dtype, rng):
    from effai_fast.nn import _conv

    level = {"baseline": 0, "avx2": 1, "avx512": 2}[isa]
    if _conv._cpu_level() < level:
        pytest.skip(f"CPU lacks {isa}")
    name, module = F._select_kernels(isa)
    if name != isa:
        pytest.skip(f"{isa} build not present")
    monkeypatch.setattr(F, "_conv", module)
    for case in DW_CASES[:6]:
        x, w, b = _dw_data(rng, case, dtype)
        y = F.depthwise_conv2d(x, w, b, activation="relu", n_threads=2, **_kw(case))
        _close(y, ref.depthwise(x, w, b, activation="relu", **_kw(case)), dtype)
        g = rng.standard_normal(y.shape).astype(dtype)
        gx, gw, gb = F.depthwise_conv2d_vjp(x, w, g, activation="relu", output=y, n_threads=2,
                                            **_kw(case))
        rx, rw, rb = ref.depthwise_vjp(x, w, g, activation="relu", y=y, **_kw(case))
        _close(gx, rx, dtype)
        _close(gw, rw, dtype, scale=np.abs(g).sum(axis=(0, 1, 2)).max() * np.abs(x).max())
    x = rng.standard_normal((2, 9, 8, 3)).astype(dtype)
    w4 = rng.standard_normal((3, 3, 3, 16)).astype(dtype)
    _close(F.conv2d(x, w4, stride=2), ref.conv2d(x, w4, stride=2), dtype)
    pw = rng.standard_normal((3, 5)).astype(dtype)
    _close(F.depthwise_separable_conv2d(x, w4[..., 0], pw, stride=2),
           ref.pointwise(ref.depthwise(x, w4[..., 0], stride=2), pw), dtype)


def test_scipy_blas_thread_count_is_restored():
    guard = F._serial_blas
    if guard._get is None:
        pytest.skip("SciPy's BLAS is not a bundled OpenBLAS")
    before = guard._get()
    x = np.ones((2, 9, 9, 8))
    F.pointwise_conv2d(x, np.ones((8, 4)), n_threads=2)
    F.conv2d(x, np.ones((3, 3, 8, 4)), n_threads=2)
    F.depthwise_separable_conv2d(x, np.ones((3, 3, 8)), np.ones((8, 4)), n_threads=2)
    assert guard._get() == before
    with guard:
        assert guard._get() == 1
        with guard:
            assert guard._get() == 1
        assert guard._get() == 1
    assert guard._get() == before
