"""Temperature softmax and the fused KD loss against independent references.

References: scipy.special (softmax / log_softmax in float64), a plain numpy
implementation of the KD objective, central finite differences, and PyTorch's
``F.kl_div(..., log_target=True, reduction="batchmean") * T**2`` when torch is
importable.
"""

import numpy as np
import pytest
from scipy import special

from effai_fast.distill import cross_entropy, kd_loss, log_softmax, softmax


def _logits(rng, shape, dtype, scale=3.0):
    return (scale * rng.standard_normal(shape)).astype(dtype)


def ref_kd(zs, zt, temperature, labels=None, hard_weight=0.0, scale_t2=True,
           reduction="batchmean"):
    """The KD objective in float64 with scipy's log_softmax, written out plainly."""
    zs = np.asarray(zs, np.float64)
    zt = np.asarray(zt, np.float64)
    t = temperature
    n = zs.shape[0]
    lps = special.log_softmax(zs / t, axis=1)
    lpt = special.log_softmax(zt / t, axis=1)
    ps, pt = np.exp(lps), np.exp(lpt)
    s = t * t if scale_t2 else 1.0
    row = (1 - hard_weight) * s * np.sum(pt * (lpt - lps), axis=1)
    grad = (1 - hard_weight) * s / t * (ps - pt)
    if hard_weight > 0:
        lq = special.log_softmax(zs, axis=1)
        row = row - hard_weight * lq[np.arange(n), labels]
        onehot = np.zeros_like(zs)
        onehot[np.arange(n), labels] = 1.0
        grad = grad + hard_weight * (np.exp(lq) - onehot)
    if reduction == "none":
        return row, grad
    r = 1.0 / n if reduction == "batchmean" else 1.0
    return row.sum() * r, grad * r


def _tols(dtype):
    return (2e-5, 1e-6) if np.dtype(dtype) == np.float32 else (1e-11, 1e-14)


# --------------------------------------------------------------------------- softmax


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.7])
def test_softmax_and_log_softmax_match_scipy(rng, dtype, n_threads, temperature):
    z = _logits(rng, (301, 357), dtype, scale=10.0)  # > 1 grain: 2 threads really run
    ref = special.softmax(z.astype(np.float64) / temperature, axis=1)
    lref = special.log_softmax(z.astype(np.float64) / temperature, axis=1)
    p = softmax(z, temperature, n_threads=n_threads)
    lp = log_softmax(z, temperature, n_threads=n_threads)
    assert p.dtype == dtype and lp.dtype == dtype
    rtol, _ = _tols(dtype)
    # float32: values below the smallest normal float (~1e-38) are flushed to 0.
    atol = 1e-37 if dtype == np.float32 else 1e-300
    np.testing.assert_allclose(p, ref, rtol=rtol, atol=atol)
    np.testing.assert_allclose(lp, lref, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=4 * rtol)


def test_softmax_exp_accuracy_over_the_whole_range(dtype):
    # Two classes [x, 0]: p_0 = e^x / (1 + e^x) exercises the exp at every
    # exponent the kernels can see (x <= 0), compared with numpy's exp of the
    # same (rounded) input.
    lo = -86.0 if dtype == np.float32 else -706.0
    x = np.linspace(lo, 0.0, 200_001).astype(dtype)
    z = np.zeros((x.size, 2), dtype)
    z[:, 0] = x
    e = np.exp(x.astype(np.float64))
    ref = e / (1.0 + e)
    got = softmax(z)[:, 0].astype(np.float64)
    rtol = 4e-7 if dtype == np.float32 else 1e-15
    np.testing.assert_allclose(got, ref, rtol=rtol)


def test_softmax_1d_out_and_in_place(rng, dtype):
    z = _logits(rng, (37,), dtype)
    ref = special.softmax(z.astype(np.float64))
    rtol, _ = _tols(dtype)
    np.testing.assert_allclose(softmax(z), ref, rtol=rtol)
    buf = np.empty_like(z)
    assert softmax(z, out=buf) is buf
    zz = z.copy()
    res = log_softmax(zz, out=zz)          # in place is allowed
    assert res is zz
    np.testing.assert_allclose(zz, special.log_softmax(z.astype(np.float64)), rtol=rtol,
                               atol=rtol)


def test_softmax_extreme_logits_float32_are_finite():
    z = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]], np.float32)
    p = softmax(z)
    lp = log_softmax(z)
    assert np.isfinite(p).all() and np.isfinite(lp).all()
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], rtol=1e-6)
    np.testing.assert_allclose(lp[0], [0.0, -2000.0, -1000.0], rtol=1e-6)
    assert np.isfinite(softmax(z, temperature=1e-3)).all()


def test_softmax_propagates_nan_row_by_row():
    z = np.array([[0.0, np.nan], [0.0, 1.0], [np.inf, 0.0]])
    p = softmax(z)
    assert np.isnan(p[0]).all() and np.isnan(p[2]).any()
    np.testing.assert_allclose(p[1], special.softmax([0.0, 1.0]))


def test_softmax_empty_batch_is_empty():
    assert softmax(np.empty((0, 4))).shape == (0, 4)


def test_softmax_bad_input():
    with pytest.raises(ValueError, match="temperature"):
        softmax(np.zeros((2, 3)), 0.0)
    with pytest.raises(ValueError, match="temperature"):
        log_softmax(np.zeros((2, 3)), -1.0)
    with pytest.raises(ValueError, match="temperature"):
        softmax(np.zeros((2, 3)), float("nan"))
    with pytest.raises(ValueError, match="logits"):
        softmax(np.zeros((2, 0)))
    with pytest.raises(ValueError, match="logits"):
        softmax(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="logits"):
        softmax(np.zeros((2, 3), complex))
    with pytest.raises(ValueError, match="out"):
        softmax(np.zeros((2, 3)), out=np.zeros((3, 2)))
    with pytest.raises(TypeError, match="out"):
        softmax(np.zeros((2, 3)), out=np.zeros((2, 3), np.float32))
    z = np.zeros((2, 4))
    with pytest.raises(ValueError, match="out"):   # partial overlap
        softmax(z.reshape(-1)[0:4].reshape(2, 2), out=z.reshape(-1)[1:5].reshape(2, 2))
    with pytest.raises(ValueError, match="n_threads"):
        softmax(z, n_threads=0)


# --------------------------------------------------------------------------- kd_loss


@pytest.mark.parametrize("hard_weight", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("scale_t2", [True, False])
def test_kd_loss_matches_numpy_reference(rng, dtype, n_threads, hard_weight, temperature,
                                         scale_t2):
    zs = _logits(rng, (257, 401), dtype)
    zt = _logits(rng, (257, 401), dtype)
    y = rng.integers(0, 401, 257)
    loss, grad = kd_loss(zs, zt, temperature=temperature, labels=y, hard_weight=hard_weight,
                         scale_t2=scale_t2, n_threads=n_threads)
    rl, rg = ref_kd(zs, zt, temperature, y, hard_weight, scale_t2)
    rtol, atol = _tols(dtype)
    assert isinstance(loss, float) and grad.dtype == dtype and grad.shape == zs.shape
    assert loss == pytest.approx(rl, rel=rtol)
    np.testing.assert_allclose(grad, rg, rtol=rtol, atol=atol * np.abs(rg).max() * 1e3)


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none"])
def test_kd_loss_reductions(rng, dtype, reduction):
    zs, zt = _logits(rng, (23, 11), dtype), _logits(rng, (23, 11), dtype)
    y = rng.integers(0, 11, 23)
    loss, grad = kd_loss(zs, zt, temperature=2.5, labels=y, hard_weight=0.3,
                         reduction=reduction)
    rl, rg = ref_kd(zs, zt, 2.5, y, 0.3, True, reduction)
    rtol, atol = _tols(dtype)
    np.testing.assert_allclose(loss, rl, rtol=rtol)
    np.testing.assert_allclose(grad, rg, rtol=rtol, atol=10 * atol)
    if reduction == "none":
        assert loss.shape == (23,)
        bm, _ = kd_loss(zs, zt, temperature=2.5, labels=y, hard_weight=0.3)
        assert bm == pytest.approx(loss.mean(), rel=rtol)


def test_kd_gradient_is_t_over_b_times_prob_difference(rng, dtype):
    # The identity of the issue: scale_t2 + batchmean gives (T/B)(p_S - p_T);
    # per sample and unscaled it is (1/T)(p_S - p_T).
    b, t = 64, 4.0
    zs, zt = _logits(rng, (b, 10), dtype), _logits(rng, (b, 10), dtype)
    ps = special.softmax(zs.astype(np.float64) / t, axis=1)
    pt = special.softmax(zt.astype(np.float64) / t, axis=1)
    rtol, atol = _tols(dtype)
    _, g = kd_loss(zs, zt, temperature=t)
    np.testing.assert_allclose(g, (t / b) * (ps - pt), rtol=rtol, atol=atol)
    _, g = kd_loss(zs, zt, temperature=t, scale_t2=False, reduction="none")
    np.testing.assert_allclose(g, (ps - pt) / t, rtol=rtol, atol=atol)


@pytest.mark.parametrize("hard_weight", [0.0, 0.25])
def test_kd_gradient_matches_finite_differences(rng, hard_weight):
    zs, zt = _logits(rng, (5, 7), np.float64), _logits(rng, (5, 7), np.float64)
    y = rng.integers(0, 7, 5)
    kw = dict(temperature=3.0, labels=y, hard_weight=hard_weight)
    _, grad = kd_loss(zs, zt, **kw)
    h = 1e-6
    fd = np.empty_like(zs)
    for idx in np.ndindex(zs.shape):
        zp, zm = zs.copy(), zs.copy()
        zp[idx] += h
        zm[idx] -= h
        fd[idx] = (kd_loss(zp, zt, **kw)[0] - kd_loss(zm, zt, **kw)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("hard_weight", [0.0, 0.1])
def test_kd_loss_matches_pytorch(rng, dtype, hard_weight):
    torch = pytest.importorskip("torch")
    fn = torch.nn.functional
    t = 4.0
    zs, zt = _logits(rng, (33, 10), dtype), _logits(rng, (33, 10), dtype)
    y = rng.integers(0, 10, 33)
    xs = torch.tensor(zs, requires_grad=True)
    xt = torch.tensor(zt)
    kl = fn.kl_div(fn.log_softmax(xs / t, dim=1), fn.log_softmax(xt / t, dim=1),
                   log_target=True, reduction="batchmean") * t * t
    ce = fn.cross_entropy(xs, torch.tensor(y))
    tl = (1 - hard_weight) * kl + hard_weight * ce
    tl.backward()
    loss, grad = kd_loss(zs, zt, temperature=t, labels=y, hard_weight=hard_weight)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss == pytest.approx(tl.item(), rel=rtol)
    np.testing.assert_allclose(grad, xs.grad.numpy(), rtol=rtol, atol=rtol * 1e-2)


def test_kd_loss_identical_distributions_give_exactly_zero(rng, dtype, n_threads):
    zs = _logits(rng, (300, 400), dtype, scale=30.0)
    loss, grad = kd_loss(zs, zs.copy(), temperature=4.0, n_threads=n_threads)
    assert loss == 0.0
    assert not np.any(grad)
    # Shifted logits are the same distribution: never a small negative loss.
    for shift in (1e-3, 0.7, 123.25):
        loss, _ = kd_loss(zs, zs + dtype(shift), temperature=2.0, reduction="none")
        assert (loss >= 0.0).all()
        assert loss.max() < (1e-4 if dtype == np.float32 else 1e-10)


def test_kd_loss_extreme_logits_float32(rng):
    zs = rng.choice([-1000.0, 1000.0], size=(16, 10)).astype(np.float32)
    zt = rng.choice([-1000.0, 1000.0], size=(16, 10)).astype(np.float32)
    zs[0], zt[0] = 1000.0, -1000.0   # a uniform row next to a peaked one
    y = rng.integers(0, 10, 16)
    for t in (1.0, 4.0, 1e3):
        loss, grad = kd_loss(zs, zt, temperature=t, labels=y, hard_weight=0.1)
        assert np.isfinite(loss) and np.isfinite(grad).all()
        rl, rg = ref_kd(zs, zt, t, y, 0.1)
        assert loss == pytest.approx(rl, rel=1e-5)
        np.testing.assert_allclose(grad, rg, atol=1e-6)


def test_kd_loss_is_thread_count_independent(rng, dtype):
    zs, zt = _logits(rng, (999, 250), dtype), _logits(rng, (999, 250), dtype)
    y = rng.integers(0, 250, 999)
    kw = dict(temperature=3.0, labels=y, hard_weight=0.2)
    l1, g1 = kd_loss(zs, zt, n_threads=1, **kw)
    l2, g2 = kd_loss(zs, zt, n_threads=2, **kw)
    l3, g3 = kd_loss(zs, zt, n_threads=3, **kw)
    assert l1 == l2 == l3
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(g1, g3)


def test_kd_loss_out_buffer_and_dtypes(rng):
    zs, zt = _logits(rng, (8, 5), np.float32), _logits(rng, (8, 5), np.float32)
    out = np.empty_like(zs)
    loss, grad = kd_loss(zs, zt, temperature=2.0, out=out)
    assert grad is out
    # mixed precision computes in float64; lists work
    l64, g64 = kd_loss(zs.astype(np.float64), zt, temperature=2.0)
    assert g64.dtype == np.float64
    assert l64 == pytest.approx(loss, rel=1e-5)
    l_list, _ = kd_loss(zs.tolist(), zt.tolist(), temperature=2.0)
    assert l_list == pytest.approx(l64, rel=1e-12)
    # one class: nothing to distil
    loss1, g1 = kd_loss(np.ones((3, 1)), np.zeros((3, 1)), temperature=2.0,
                        labels=[0, 0, 0], hard_weight=0.5)
    assert loss1 == 0.0 and not g1.any()


def test_kd_loss_bad_input(rng):
    zs, zt = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    y = np.array([0, 1, 2, 0])
    for t in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature"):
            kd_loss(zs, zt, temperature=t)
    with pytest.raises(TypeError):
        kd_loss(zs, zt)                                    # temperature is required
    with pytest.raises(ValueError, match="teacher_logits"):
        kd_loss(zs, zt[:, :2], temperature=1.0)
    with pytest.raises(ValueError, match="teacher_logits"):
        kd_loss(zs, zt[:3], temperature=1.0)
    with pytest.raises(ValueError, match="student_logits"):
        kd_loss(zs[0], zt[0], temperature=1.0)
    with pytest.raises(ValueError, match="empty batch"):
        kd_loss(np.empty((0, 3)), np.empty((0, 3)), temperature=1.0)
    with pytest.raises(ValueError, match="class"):
        kd_loss(np.empty((4, 0)), np.empty((4, 0)), temperature=1.0)
    with pytest.raises(ValueError, match="labels are required"):
        kd_loss(zs, zt, temperature=1.0, hard_weight=0.5)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        kd_loss(zs, zt, temperature=1.0, labels=[0, 1, 3, 0], hard_weight=0.5)
    with pytest.raises(ValueError, match="labels must lie"):
        kd_loss(zs, zt, temperature=1.0, labels=[0, -1, 2, 0], hard_weight=0.5)
    with pytest.raises(ValueError, match="labels must have shape"):
        kd_loss(zs, zt, temperature=1.0, labels=[0, 1], hard_weight=0.5)
    with pytest.raises(TypeError, match="labels"):
        kd_loss(zs, zt, temperature=1.0, labels=y.astype(float), hard_weight=0.5)
    for hw in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="hard_weight"):
            kd_loss(zs, zt, temperature=1.0, labels=y, hard_weight=hw)
    with pytest.raises(ValueError, match="batchmean"):
        kd_loss(zs, zt, temperature=1.0, reduction="mean")
    with pytest.raises(ValueError, match="reduction"):
        kd_loss(zs, zt, temperature=1.0, reduction="avg")
    with pytest.raises(TypeError, match="scale_t2"):
        kd_loss(zs, zt, temperature=1.0, scale_t2="yes")
    with pytest.raises(ValueError, match="out"):
        kd_loss(zs, zt, temperature=1.0, out=np.empty((3, 4)))
    with pytest.raises(ValueError, match="out"):
        kd_loss(zs, zt, temperature=1.0, out=zs)            # out aliases an input
    with pytest.raises(TypeError, match="out"):
        kd_loss(zs, zt, temperature=1.0, out=np.empty((4, 3), np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("which", ["student_logits", "teacher_logits"])
def test_kd_loss_rejects_non_finite_logits(rng, dtype, n_threads, bad, which):
    zs, zt = _logits(rng, (200, 600), dtype), _logits(rng, (200, 600), dtype)
    y = rng.integers(0, 600, 200)
    (zs if which == "student_logits" else zt)[137, 5] = bad
    for hw in (0.0, 0.5, 1.0) if which == "student_logits" else (0.0, 0.5):
        with pytest.raises(ValueError, match=rf"{which} contains NaN or infinity "
                                             r"\(first in row 137\)"):
            kd_loss(zs, zt, temperature=2.0, labels=y, hard_weight=hw, n_threads=n_threads)


# --------------------------------------------------------------------------- cross_entropy


def test_cross_entropy_matches_reference_and_kd_loss(rng, dtype, n_threads):
    z = _logits(rng, (301, 333), dtype)
    y = rng.integers(0, 333, 301)
    loss, grad = cross_entropy(z, y, n_threads=n_threads)
    lq = special.log_softmax(z.astype(np.float64), axis=1)
    onehot = np.zeros(z.shape)
    onehot[np.arange(301), y] = 1
    rtol, atol = _tols(dtype)
    assert loss == pytest.approx(-lq[np.arange(301), y].mean(), rel=rtol)
    np.testing.assert_allclose(grad, (np.exp(lq) - onehot) / 301, rtol=rtol, atol=atol)
    # kd_loss with hard_weight=1 is the same computation (teacher unused)
    l2, g2 = kd_loss(z, np.full_like(z, np.nan), temperature=3.0, labels=y, hard_weight=1.0,
                     n_threads=n_threads)
    assert l2 == loss
    np.testing.assert_array_equal(g2, grad)
    rows, _ = cross_entropy(z, y, reduction="none")
    assert rows.sum() == pytest.approx(cross_entropy(z, y, reduction="sum")[0], rel=1e-12)


def test_cross_entropy_bad_input():
    z = np.zeros((3, 4))
    with pytest.raises(ValueError, match="labels must lie"):
        cross_entropy(z, [0, 1, 4])
    with pytest.raises(TypeError, match="labels"):
        cross_entropy(z, None)
    with pytest.raises(ValueError, match="empty batch"):
        cross_entropy(np.zeros((0, 4)), [])
    with pytest.raises(ValueError, match="row 1"):
        cross_entropy(np.array([[0.0, 1.0], [np.inf, 0.0]]), [0, 1])
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(z, [0, 1, 2], reduction="avg")


# --------------------------------------------------------------------------- ISA builds


def test_isa_builds_give_bit_identical_results(rng, dtype):
    import importlib

    from effai_fast.distill import _kd, losses

    level = _kd._cpu_level()
    assert losses.KERNEL_BUILD in ("_kd", "_kd_x86_64_v3", "_kd_x86_64_v4")
    mods = [_kd]
    for lvl in (3, 4):
        if level >= lvl:
            try:
                mods.append(importlib.import_module(f"effai_fast.distill._kd_x86_64_v{lvl}"))
            except ImportError:
                pass
    if len(mods) == 1:
        pytest.skip("no wider ISA build runs on this CPU")
    zs, zt = _logits(rng, (67, 1003), dtype), _logits(rng, (67, 1003), dtype)
    y = rng.integers(0, 1003, 67)
    results = []
    for m in mods:
        g, rl, p = np.empty_like(zs), np.empty(67), np.empty_like(zs)
        m._kd_loss(zs, zt, y, 1 / 3.0, 8.1, 0.03, 0.1, 0.001, g, rl, 2)
        m._log_softmax(zs, 1 / 3.0, p, 2)
        results.append((g, rl, p))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
