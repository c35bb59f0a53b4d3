"""The compiled convolutions of effai_fast.nn registered as autodiff primitives."""

import numpy as np
import pytest

from effai_fast import ad

adnn = pytest.importorskip("effai_fast.ad.nn")
F = pytest.importorskip("effai_fast.nn.functional")


def fd(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e.flat[i] = h
        g.flat[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def test_separable_block_gradients(rng):
    x = rng.normal(size=(2, 5, 6, 3))
    wd = rng.normal(size=(3, 3, 3)) * 0.5
    wp = rng.normal(size=(3, 4)) * 0.5
    b = rng.normal(size=4) * 0.1

    def loss(x, wd, wp, b):
        h = adnn.depthwise_conv2d(x, wd, stride=2)
        h = np.maximum(h, 0.0)
        y = np.tanh(adnn.pointwise_conv2d(h, wp) + b)
        return np.mean(y ** 2)

    gx, gwd, gwp, gb = ad.grad(loss, argnums=(0, 1, 2, 3))(x, wd, wp, b)
    np.testing.assert_allclose(gwd, fd(lambda w: loss(x, w, wp, b), wd), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gwp, fd(lambda w: loss(x, wd, w, b), wp), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gb, fd(lambda c: loss(x, wd, wp, c), b), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(gx, fd(lambda z: loss(z, wd, wp, b), x), rtol=1e-6, atol=1e-9)
    assert any(n.startswith("nn.depthwise_conv2d") for n in ad.registered())


def test_conv_jvp_and_dense_conv(rng):
    x = rng.normal(size=(1, 4, 4, 2))
    w = rng.normal(size=(3, 3, 2, 3)) * 0.5

    def f(w):
        return np.sum(np.sin(adnn.conv2d(x, w, padding="valid")))

    v = rng.normal(size=w.shape)
    val, t = ad.jvp(f, (w,), (v,))
    np.testing.assert_allclose(val, f(w), rtol=1e-13)
    np.testing.assert_allclose(t, np.sum(fd(f, w) * v), rtol=1e-6)
    np.testing.assert_allclose(ad.grad(f)(w), fd(f, w), rtol=1e-6, atol=1e-9)
    with pytest.raises(ad.TracingError, match="no forward-mode"):   # no second order
        ad.hessian(lambda w: f(w.reshape(3, 3, 2, 3)))(w.ravel())
