"""SGD / AdamW: hand-computed updates, PyTorch parity, groups, state save/load, bad input."""

import io

import numpy as np
import pytest

from effai_fast.optim import SGD, AdamW


def _params(rng, dtype):
    return [rng.standard_normal((3, 4)).astype(dtype), rng.standard_normal(5).astype(dtype)]


def _grads_seq(rng, params, steps):
    return [[rng.standard_normal(p.shape).astype(p.dtype) for p in params] for _ in range(steps)]


def test_sgd_hand_computed():
    w = np.array([1.0, -2.0])
    opt = SGD([w], lr=0.1, momentum=0.9, weight_decay=0.5)
    g1 = np.array([0.2, 0.4])
    opt.step([g1])
    d1 = g1 + 0.5 * np.array([1.0, -2.0])            # [0.7, -0.6]
    np.testing.assert_allclose(w, [1.0 - 0.07, -2.0 + 0.06], rtol=1e-15)
    w_before = w.copy()
    g2 = np.array([-0.1, 0.0])
    opt.step([g2])
    d2 = g2 + 0.5 * w_before
    buf = 0.9 * d1 + d2
    np.testing.assert_allclose(w, w_before - 0.1 * buf, rtol=1e-15)


def test_sgd_nesterov_hand_computed():
    w = np.array([1.0])
    opt = SGD([w], lr=0.5, momentum=0.5, nesterov=True)
    opt.step([np.array([2.0])])        # buf=2, d = 2 + 0.5*2 = 3
    assert w[0] == pytest.approx(1.0 - 1.5)
    opt.step([np.array([1.0])])        # buf = 0.5*2+1 = 2, d = 1 + 1 = 2
    assert w[0] == pytest.approx(-0.5 - 1.0)


def test_adamw_hand_computed():
    w = np.array([1.0])
    opt = AdamW([w], lr=0.1, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    g = np.array([0.5])
    opt.step([g])
    # p *= 1 - 0.01; m = 0.05, v = 0.0025; mhat = 0.5, vhat = 0.25 -> step = 0.1 * 0.5/(0.5+1e-8)
    expected = 1.0 * (1 - 0.01) - 0.1 * 0.5 / (0.5 + 1e-8)
    assert w[0] == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_torch(rng, dtype, nesterov):
    torch = pytest.importorskip("torch")
    params = _params(rng, dtype)
    grads = _grads_seq(rng, params, 4)
    tparams = [torch.nn.Parameter(torch.tensor(p.copy())) for p in params]
    opts = dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=nesterov)
    ours = SGD([{"params": [params[0]]}, {"params": [params[1]], "weight_decay": 0.0}], **opts)
    theirs = torch.optim.SGD([{"params": [tparams[0]]},
                              {"params": [tparams[1]], "weight_decay": 0.0}], **opts)
    for gs in grads:
        ours.step(gs)
        for tp, g in zip(tparams, gs):
            tp.grad = torch.tensor(g)
        theirs.step()
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=rtol, atol=rtol)


def test_adamw_matches_torch(rng, dtype):
    torch = pytest.importorskip("torch")
    params = _params(rng, dtype)
    grads = _grads_seq(rng, params, 5)
    tparams = [torch.nn.Parameter(torch.tensor(p.copy())) for p in params]
    ours = AdamW([{"params": [params[0]], "lr": 0.01}, {"params": [params[1]],
                                                         "weight_decay": 0.0}],
                 lr=0.003, betas=(0.8, 0.95), weight_decay=0.05)
    theirs = torch.optim.AdamW([{"params": [tparams[0]], "lr": 0.01},
                                {"params": [tparams[1]], "weight_decay": 0.0}],
                               lr=0.003, betas=(0.8, 0.95), weight_decay=0.05)
    for gs in grads:
        ours.step(gs)
        for tp, g in zip(tparams, gs):
            tp.grad = torch.tensor(g)
        theirs.step()
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p, tp.detach().numpy(), rtol=rtol, atol=rtol)


def test_stored_grads_and_zero_grad(rng):
    p = rng.standard_normal(4)
    g = np.ones(4)
    opt = SGD([{"params": [p], "grads": [g]}], lr=0.5)
    before = p.copy()
    opt.step()
    np.testing.assert_allclose(p, before - 0.5)
    opt.zero_grad()
    assert not g.any()


@pytest.mark.parametrize("cls", [SGD, AdamW])
def test_state_roundtrip_through_npz(rng, cls):
    kw = {"momentum": 0.9} if cls is SGD else {}
    p1 = _params(rng, np.float64)
    p2 = [p.copy() for p in p1]
    grads = _grads_seq(rng, p1, 6)
    a = cls(p1, lr=0.01, **kw)
    for gs in grads[:3]:
        a.step(gs)
    buf = io.BytesIO()
    np.savez(buf, **a.state_dict())
    buf.seek(0)
    # b replays the first three steps on p2 only through the saved state
    for q, p in zip(p2, p1):
        q[...] = p
    b = cls(p2, lr=0.5, **kw)
    with np.load(buf, allow_pickle=False) as z:
        b.load_state_dict(dict(z))
    assert b.lr == 0.01 and b.step_count == 3
    for gs in grads[3:]:
        a.step(gs)
        b.step(gs)
    for x, y in zip(p1, p2):
        np.testing.assert_array_equal(x, y)


def test_deterministic(rng):
    grads = _grads_seq(rng, _params(rng, np.float32), 3)
    outs = []
    for _ in range(2):
        ps = _params(np.random.default_rng(1), np.float32)
        opt = AdamW(ps, lr=0.1)
        for gs in grads:
            opt.step(gs)
        outs.append(ps)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_lr_setter_sets_all_groups():
    opt = SGD([{"params": [np.zeros(2)]}, {"params": [np.zeros(3)], "lr": 1.0}], lr=0.1)
    opt.lr = 0.2
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.2]


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"lr": -1.0}, ValueError, "lr"),
    ({"lr": float("nan")}, ValueError, "lr"),
    ({"momentum": 1.0}, ValueError, "momentum"),
    ({"weight_decay": -0.1}, ValueError, "weight_decay"),
    ({"nesterov": True}, ValueError, "nesterov"),
    ({"nesterov": 1}, TypeError, "nesterov"),
])
def test_sgd_bad_options(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SGD([np.zeros(2)], **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"betas": (0.9,)}, "betas"), ({"betas": (1.0, 0.9)}, "betas"), ({"eps": 0.0}, "eps"),
])
def test_adamw_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AdamW([np.zeros(2)], **kwargs)


def test_bad_params_and_grads():
    with pytest.raises(ValueError, match="params"):
        SGD([])
    with pytest.raises(TypeError, match="params"):
        SGD(np.zeros(3))
    with pytest.raises(TypeError, match="dtype"):
        SGD([np.zeros(3, dtype=np.int64)])
    with pytest.raises(TypeError, match="unknown"):
        SGD([{"params": [np.zeros(2)], "lrr": 0.1}])
    p = np.zeros(3)
    with pytest.raises(ValueError, match="twice"):
        SGD([p, p])
    opt = SGD([p], lr=0.1)
    with pytest.raises(ValueError, match="grads has 2"):
        opt.step([np.zeros(3), np.zeros(3)])
    with pytest.raises(ValueError, match="shape"):
        opt.step([np.zeros(4)])
    with pytest.raises(TypeError, match="dtype"):
        opt.step([np.zeros(3, np.float32)])
    with pytest.raises(ValueError, match="stored gradients"):
        opt.step()
    with pytest.raises(ValueError, match="shape"):
        opt.load_state_dict({"step": np.array(1), "group0.lr": np.array(0.1),
                             "group0.momentum": np.array(0.0), "group0.dampening": np.array(0.),
                             "group0.weight_decay": np.array(0.0),
                             "group0.nesterov": np.array(0.0),
                             "state0.momentum_buffer": np.zeros(5)})
