"""Non-convolution kernels: batch norm, activations, pooling, linear, softmax cross-entropy."""

import numpy as np
import pytest
from _nn_ref import bn_reference, check_grad

from effai_fast.nn import _functional_dense as F

ACTS = [None, "relu", "relu6"]


def _tol(dtype):
    return 2e-5 if dtype == np.float32 else 1e-12


@pytest.mark.parametrize("act", ACTS)
def test_batch_norm_forward_matches_reference(rng, dtype, n_threads, act):
    x = (rng.standard_normal((3, 5, 7, 6)) * 3 + 2).astype(dtype)
    gamma = rng.uniform(0.5, 2, 6).astype(dtype)
    beta = rng.standard_normal(6).astype(dtype) * 3
    rm, rv = np.zeros(6), np.ones(6)
    y, (mean, invstd) = F.batch_norm(x, gamma, beta, rm, rv, training=True, momentum=0.1,
                                     eps=1e-5, activation=act, n_threads=n_threads)
    ref, ref_mean, ref_uvar = bn_reference(x, gamma.astype(float), beta.astype(float), 1e-5,
                                           act)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, ref, rtol=_tol(dtype) * 10, atol=_tol(dtype) * 10)
    np.testing.assert_allclose(rm, 0.1 * ref_mean, rtol=1e-12)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * ref_uvar, rtol=1e-12)
    # evaluation mode normalises with the running statistics
    ye, _ = F.batch_norm(x, gamma, beta, rm, rv, training=False, activation=act)
    a = gamma / np.sqrt(rv + 1e-5)
    ref_e = x.astype(float) * a + (beta - rm * a)
    if act:
        ref_e = np.clip(ref_e, 0, 6 if act == "relu6" else None)
    np.testing.assert_allclose(ye, ref_e, rtol=_tol(dtype) * 10, atol=_tol(dtype) * 10)


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_vjp_finite_differences(rng, act, training):
    x = rng.standard_normal((2, 3, 4, 5)) * 2
    gamma = rng.uniform(0.5, 2, 5)
    beta = rng.standard_normal(5)
    rm, rv = rng.standard_normal(5), rng.uniform(0.5, 2, 5)
    R = rng.standard_normal(x.shape)

    def loss():
        y, _ = F.batch_norm(x, gamma, beta, rm.copy(), rv.copy(), training=training,
                            activation=act)
        return float(np.sum(y * R))

    y, saved = F.batch_norm(x, gamma, beta, rm.copy(), rv.copy(), training=training,
                            activation=act)
    dx, dg, db = F.batch_norm_vjp(x, y, R, gamma, saved, training=training, activation=act)
    check_grad(loss, x, dx, rng, rtol=1e-5, atol=1e-7)
    check_grad(loss, gamma, dg, rng, rtol=1e-5, atol=1e-7)
    check_grad(loss, beta, db, rng, rtol=1e-5, atol=1e-7)


def test_batch_norm_matches_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((4, 6, 6, 8)).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    gamma = rng.uniform(0.5, 2, 8).astype(dtype)
    beta = rng.standard_normal(8).astype(dtype)
    y, saved = F.batch_norm(x, gamma, beta, training=True, activation="relu6")
    dx, dgam, dbet = F.batch_norm_vjp(x, y, g, gamma, saved, activation="relu6")
    tx = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True)
    tb = torch.tensor(beta, requires_grad=True)
    ty = torch.nn.functional.relu6(torch.nn.functional.batch_norm(tx, None, None, tg, tb,
                                                                  training=True, eps=1e-5))
    ty.backward(torch.tensor(g.transpose(0, 3, 1, 2).copy()))
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=tol, atol=tol)
    np.testing.assert_allclose(dgam, tg.grad.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dbet, tb.grad.numpy(), rtol=tol, atol=tol)


def test_batch_norm_thread_independent(rng, dtype):
    # large enough for two threads and several reduction chunks
    x = rng.standard_normal((8, 32, 32, 48)).astype(dtype)
    gamma, beta = np.ones(48, dtype), np.zeros(48, dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    outs = []
    for nt in (1, 2):
        y, saved = F.batch_norm(x, gamma, beta, training=True, activation="relu", n_threads=nt)
        outs.append((y,) + F.batch_norm_vjp(x, y, g, gamma, saved, activation="relu",
                                            n_threads=nt))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def _bn_vjp_reference(x, y, g, gamma, eps, act, training=True):
    """Batch-norm input/scale/shift gradients in float64 from the textbook formulas."""
    C = x.shape[-1]
    x2 = x.reshape(-1, C).astype(np.float64)
    y2 = y.reshape(-1, C).astype(np.float64)
    g2 = g.reshape(-1, C).astype(np.float64)
    if act == "relu":
        g2 = np.where(y2 > 0, g2, 0)
    elif act == "relu6":
        g2 = np.where((y2 > 0) & (y2 < 6), g2, 0)
    mean = x2.mean(0)
    invstd = 1 / np.sqrt(x2.var(0) + eps)
    xhat = (x2 - mean) * invstd
    dbeta = g2.sum(0)
    dgamma = (g2 * xhat).sum(0)
    dx = gamma * invstd * (g2 - dbeta / len(x2) - xhat * dgamma / len(x2))
    return dx.reshape(x.shape), dgamma, dbeta


@pytest.mark.parametrize("act", ACTS)
def test_batch_norm_fused_kernels_many_chunks(rng, dtype, n_threads, act):
    """Several reduction chunks and a short last one (M = 2 * 23 * 13 = 598 rows, chunks of
    256): forward statistics (chunk-wise, Chan merge) and the one-sweep backward against the
    float64 textbook formulas, at 1 and 2 threads."""
    C = 37
    x = (rng.standard_normal((2, 23, 13, C)) * 2 + 1).astype(dtype)
    gamma = rng.uniform(0.5, 2, C).astype(dtype)
    beta = rng.standard_normal(C).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    rm, rv = np.zeros(C), np.ones(C)
    y, (mean, invstd) = F.batch_norm(x, gamma, beta, rm, rv, training=True, activation=act,
                                     n_threads=n_threads)
    ref, ref_mean, ref_uvar = bn_reference(x, gamma.astype(float), beta.astype(float), 1e-5,
                                           act)
    tol = _tol(dtype) * 10
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rv, 0.9 + 0.1 * ref_uvar, rtol=1e-12)
    dx, dg, db = F.batch_norm_vjp(x, y, g, gamma, (mean, invstd), activation=act,
                                  n_threads=n_threads)
    rdx, rdg, rdb = _bn_vjp_reference(x, y, g, gamma.astype(float), 1e-5, act)
    np.testing.assert_allclose(dx, rdx, rtol=tol * 10, atol=tol * 10)
    np.testing.assert_allclose(dg, rdg, rtol=tol * 10, atol=tol * 100)
    np.testing.assert_allclose(db, rdb, rtol=tol * 10, atol=tol * 100)


def test_batch_norm_large_offset_is_stable(rng, n_threads):
    """Data with |mean| >> std (1e4 + N(0, 1e-2)) in float64: the chunk-wise two-pass
    variance and the backward's deviation sums do not cancel (E[x^2] - E[x]^2 would lose
    all but ~0 digits of the variance here)."""
    x = 1e4 + 1e-2 * rng.standard_normal((4, 30, 30, 5))
    gamma, beta = rng.uniform(0.5, 2, 5), rng.standard_normal(5)
    g = rng.standard_normal(x.shape)
    y, saved = F.batch_norm(x, gamma, beta, training=True, n_threads=n_threads)
    ref, ref_mean, ref_uvar = bn_reference(x, gamma, beta, 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-7, atol=1e-7)
    np.testing.assert_allclose(1 / saved[1] ** 2 - 1e-5, x.reshape(-1, 5).var(0), rtol=1e-9)
    dx, dg, db = F.batch_norm_vjp(x, y, g, gamma, saved, n_threads=n_threads)
    rdx, rdg, rdb = _bn_vjp_reference(x, y, g, gamma, 1e-5, None)
    np.testing.assert_allclose(dg, rdg, rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(db, rdb, rtol=1e-10)
    np.testing.assert_allclose(dx, rdx, rtol=1e-6, atol=1e-6 * np.abs(rdx).max())


def test_batch_norm_many_chunks_matches_torch(rng, dtype, n_threads):
    torch = pytest.importorskip("torch")
    x = (rng.standard_normal((3, 17, 11, 24)) + 0.5).astype(dtype)   # 561 rows: 3 chunks
    g = rng.standard_normal(x.shape).astype(dtype)
    gamma = rng.uniform(0.5, 2, 24).astype(dtype)
    beta = rng.standard_normal(24).astype(dtype)
    rm, rv = np.zeros(24), np.ones(24)
    y, saved = F.batch_norm(x, gamma, beta, rm, rv, training=True, activation="relu",
                            n_threads=n_threads)
    dx, dgam, dbet = F.batch_norm_vjp(x, y, g, gamma, saved, activation="relu",
                                      n_threads=n_threads)
    tx = torch.tensor(x.transpose(0, 3, 1, 2).copy(), requires_grad=True)
    tg = torch.tensor(gamma, requires_grad=True)
    tb = torch.tensor(beta, requires_grad=True)
    trm, trv = torch.zeros(24, dtype=tx.dtype), torch.ones(24, dtype=tx.dtype)
    ty = torch.relu(torch.nn.functional.batch_norm(tx, trm, trv, tg, tb, training=True,
                                                   momentum=0.1, eps=1e-5))
    ty.backward(torch.tensor(g.transpose(0, 3, 1, 2).copy()))
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(y, ty.detach().numpy().transpose(0, 2, 3, 1), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy().transpose(0, 2, 3, 1), rtol=tol, atol=tol)
    np.testing.assert_allclose(dgam, tg.grad.numpy(), rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(dbet, tb.grad.numpy(), rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(rm, trm.numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(rv, trv.numpy(), rtol=tol, atol=tol)


def test_batch_norm_nan_propagates(rng):
    x = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    x[1, 1, 1, 0] = np.nan
    y, _ = F.batch_norm(x, np.ones(2, np.float32), np.zeros(2, np.float32), training=True,
                        activation="relu")
    assert np.isnan(y[..., 0]).all() and np.isfinite(y[..., 1]).all()


@pytest.mark.parametrize("act", [0, 1, 2])
@pytest.mark.parametrize("C", [3, 300])
def test_bn_backward_sums_match_plain_double_sums(rng, dtype, n_threads, act, C):
    """The batch-norm backward sums (channel blocks of 256, if-converted select) are the
    plain double-precision sums of the masked gradient, in row order within a chunk and
    chunk order across chunks - bitwise."""
    from effai_fast.nn import _dense

    M, rows = 300, 128
    x = rng.standard_normal((M, C)).astype(dtype)
    y = np.clip(3 * x + 3, 0, 6 if act == 2 else None) if act else x.copy()
    y = y.astype(dtype)
    g = rng.standard_normal((M, C)).astype(dtype)
    if act:
        g[0, 0] = np.nan                     # masked out when y <= 0 (as PyTorch)
        y[0, 0] = 0
    mean = rng.standard_normal(C)
    invstd = rng.uniform(0.5, 2.0, C)
    gamma = rng.standard_normal(C).astype(dtype)
    dx = np.empty_like(x)
    dgamma, dbeta = np.empty(C), np.empty(C)
    _dense.bn_backward(g, y, x, gamma, mean, invstd, dx, dgamma, dbeta, True, act, rows,
                       n_threads)
    if act == 0:
        gm = g.astype(np.float64)
    else:
        keep = (y > 0) & (y < 6) if act == 2 else y > 0
        gm = np.where(keep, g, 0).astype(np.float64)
    sg, sgx = np.zeros(C), np.zeros(C)
    for k in range(-(-M // rows)):
        eg, egx = np.zeros(C), np.zeros(C)
        for r in range(k * rows, min(M, (k + 1) * rows)):   # the kernel's order
            eg += gm[r]
            egx += gm[r] * (x[r].astype(np.float64) - mean)
        sg += eg
        sgx += egx
    np.testing.assert_array_equal(dbeta, sg)
    np.testing.assert_array_equal(dgamma, invstd * sgx)
    assert np.isfinite(dx).all()


def test_batch_norm_bad_input(rng):
    x = rng.standard_normal((2, 3, 3, 4))
    with pytest.raises(ValueError, match="gamma"):
        F.batch_norm(x, np.ones(3), np.zeros(4), training=True)
    with pytest.raises(ValueError, match="activation"):
        F.batch_norm(x, np.ones(4), np.zeros(4), training=True, activation="gelu")
    with pytest.raises(ValueError, match="running_mean"):
        F.batch_norm(x, np.ones(4), np.zeros(4), training=False)
    with pytest.raises(ValueError, match="more than one value"):
        F.batch_norm(x[:1, :1, :1], np.ones(4), np.zeros(4), training=True)
    with pytest.raises(ValueError, match="eps"):
        F.batch_norm(x, np.ones(4), np.zeros(4), training=True, eps=0.0)


@pytest.mark.parametrize("act", ["relu", "relu6"])
def test_activations(rng, dtype, n_threads, act):
    x = (rng.standard_normal(5000) * 5).astype(dtype)
    x[:3] = [0.0, 6.0, np.nan]
    y = (F.relu if act == "relu" else F.relu6)(x, n_threads=n_threads)
    ref = np.maximum(x, 0) if act == "relu" else np.clip(x, 0, 6)
    np.testing.assert_array_equal(y[3:], ref[3:])
    assert y[0] == 0 and (y[1] == 6) and np.isnan(y[2])
    g = rng.standard_normal(x.shape).astype(dtype)
    dx = F.activation_vjp(y, g, act, n_threads=n_threads)
    mask = (y > 0) & ((y < 6) if act == "relu6" else True)
    np.testing.assert_array_equal(dx, np.where(mask, g, 0))


def test_global_avg_pool(rng, dtype, n_threads):
    x = rng.standard_normal((5, 7, 6, 9)).astype(dtype)
    y = F.global_avg_pool(x, n_threads=n_threads)
    np.testing.assert_allclose(y, x.astype(float).mean(axis=(1, 2)), rtol=_tol(dtype))
    g = rng.standard_normal((5, 9)).astype(dtype)
    dx = F.global_avg_pool_vjp(g, x.shape, n_threads=n_threads)
    np.testing.assert_allclose(dx, np.broadcast_to(g[:, None, None, :] / 42, x.shape),
                               rtol=_tol(dtype))
    with pytest.raises(ValueError, match="input_shape"):
        F.global_avg_pool_vjp(g, (5, 7, 6, 8))


def test_linear_and_vjp(rng):
    x = rng.standard_normal((4, 6))
    w = rng.standard_normal((6, 3))
    b = rng.standard_normal(3)
    np.testing.assert_allclose(F.linear(x, w, b), x @ w + b)
    R = rng.standard_normal((4, 3))
    gx, gw, gb = F.linear_vjp(x, w, R)

    def loss():
        return float(np.sum(F.linear(x, w, b) * R))

    check_grad(loss, x, gx, rng)
    check_grad(loss, w, gw, rng)
    check_grad(loss, b, gb, rng)
    with pytest.raises(ValueError, match="input features"):
        F.linear(x, w.T)


def _ce_reference(z, labels):
    z = z.astype(np.float64)
    m = z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]
    return lse - z[np.arange(len(z)), labels]


def test_softmax_cross_entropy(rng, dtype, n_threads):
    z = (rng.standard_normal((50, 7)) * 3).astype(dtype)
    labels = rng.integers(0, 7, 50)
    loss, grad = F.softmax_cross_entropy(z, labels, n_threads=n_threads)
    ref = _ce_reference(z, labels)
    assert loss == pytest.approx(ref.mean(), rel=_tol(dtype))
    p = np.exp(z.astype(float) - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(50), labels] -= 1
    np.testing.assert_allclose(grad, p / 50, rtol=_tol(dtype) * 10, atol=_tol(dtype))
    per, _ = F.softmax_cross_entropy(z, labels, reduction="none", return_grad=False)
    np.testing.assert_allclose(per, ref, rtol=_tol(dtype) * 10)
    # soft targets equal to one-hot give the same loss and gradient
    onehot = np.eye(7, dtype=dtype)[labels]
    loss2, grad2 = F.softmax_cross_entropy(z, onehot, n_threads=n_threads)
    assert loss2 == pytest.approx(loss, rel=_tol(dtype) * 10)
    np.testing.assert_allclose(grad2, grad, rtol=_tol(dtype) * 10, atol=_tol(dtype))


def test_softmax_cross_entropy_finite_differences_and_stability(rng):
    z = rng.standard_normal((6, 4))
    t = rng.dirichlet(np.ones(4), 6)
    loss, grad = F.softmax_cross_entropy(z, t, reduction="sum")
    check_grad(lambda: F.softmax_cross_entropy(z, t, reduction="sum", return_grad=False)[0],
               z, grad, rng)
    big = np.array([[1e4, 0.0, -1e4], [-1e4, 1e4, 1e4]])
    loss, grad = F.softmax_cross_entropy(big, np.array([0, 2]))
    assert np.isfinite(loss) and np.isfinite(grad).all()
    assert loss == pytest.approx(np.log(2) / 2)


def test_softmax_cross_entropy_matches_torch(rng):
    torch = pytest.importorskip("torch")
    z = rng.standard_normal((10, 5)).astype(np.float32)
    y = rng.integers(0, 5, 10)
    loss, grad = F.softmax_cross_entropy(z, y)
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(y))
    tl.backward()
    assert loss == pytest.approx(tl.item(), rel=1e-5)
    np.testing.assert_allclose(grad, tz.grad.numpy(), rtol=1e-5, atol=1e-7)


def test_softmax_cross_entropy_bad_input(rng):
    z = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        F.softmax_cross_entropy(z, np.array([0, 1, 2, 3]))
    with pytest.raises(TypeError, match="integers"):
        F.softmax_cross_entropy(z, np.array([0.0, 1, 2, 1]))
    with pytest.raises(ValueError, match="labels for 4"):
        F.softmax_cross_entropy(z, np.array([0, 1]))
    with pytest.raises(ValueError, match="reduction"):
        F.softmax_cross_entropy(z, np.array([0, 1, 2, 1]), reduction="avg")
    with pytest.raises(ValueError, match="logits"):
        F.softmax_cross_entropy(z[0], np.array([0]))


def test_dropout(rng):
    x = np.ones((200, 50))
    y, mask = F.dropout(x, 0.3, seed=1)
    y2, _ = F.dropout(x, 0.3, seed=1)
    np.testing.assert_array_equal(y, y2)
    assert abs((y == 0).mean() - 0.3) < 0.02
    np.testing.assert_allclose(y[y != 0], 1 / 0.7)
    same, none = F.dropout(x, 0.3, seed=1, training=False)
    assert none is None and same is not None
    with pytest.raises(ValueError, match="p"):
        F.dropout(x, 1.0)


def test_batch_norm_isa_builds_bit_identical(rng, dtype, n_threads):
    """The baseline, AVX2 and AVX-512 builds of _dense (those this CPU runs) agree bitwise."""
    import importlib.util

    level = F._conv_baseline._cpu_level()
    mods = [importlib.import_module(f"effai_fast.nn.{m}")
            for isa, m in F._DENSE_ISA_MODULES.items()
            if {"baseline": 0, "avx2": 1, "avx512": 2}[isa] <= level
            and importlib.util.find_spec(f"effai_fast.nn.{m}") is not None]
    C = 21
    x = (rng.standard_normal((700, C)) + 3).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    gamma, beta = rng.uniform(0.5, 2, C).astype(dtype), rng.standard_normal(C).astype(dtype)
    outs = []
    for m in mods:
        y = np.empty_like(x)
        st = [np.empty(C) for _ in range(3)]
        m.bn_train_forward(x, gamma, beta, 1e-5, *st, y, 1, 256, n_threads)
        dx, dg, db = np.empty_like(x), np.empty(C), np.empty(C)
        m.bn_backward(g, y, x, gamma, st[0], st[1], dx, dg, db, True, 1, 256, n_threads)
        outs.append((y, dx, dg, db, *st))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)


def test_dense_isa_override(monkeypatch):
    with pytest.raises(ValueError, match="EFFAI_DENSE_ISA"):
        F._select_dense("sse9")
    name, mod = F._select_dense("baseline")
    assert name == "baseline" and mod is F._dense_baseline
    if F._conv_baseline._cpu_level() < 2:
        with pytest.raises(ValueError, match="does not support"):
            F._select_dense("avx512")
