"""Several training steps of effai_fast.nn and of PyTorch in float64 stay identical.

A one-step check cannot see differences in what carries over between steps: batch-norm
running statistics (PyTorch's momentum convention, unbiased variance), the optimiser's
momentum buffers, weight decay applied before Nesterov momentum.  In float64 the two
trajectories agree to ~1e-12 over a few steps, so any such difference would show.
(In float32 they part after a few steps through rounding alone: see
bench/results/mobilenet_train.md.)
"""

import numpy as np
import pytest

from effai_fast import nn
from effai_fast.distill._experiment import make_dscnn, torch_dscnn
from effai_fast.nn.functional import softmax_cross_entropy
from effai_fast.optim import SGD

torch = pytest.importorskip("torch")


def _step_both(ours, opt, x, y, theirs, topt, xt, yt):
    """One SGD step of both networks on the same batch; their losses before it."""
    loss, g = softmax_cross_entropy(ours.forward(x, training=True), y)
    ours.backward(g, need_input_grad=False)
    opt.step()
    tloss = torch.nn.functional.cross_entropy(theirs(xt), yt)
    topt.zero_grad()
    tloss.backward()
    topt.step()
    return float(loss), float(tloss.detach())


def _assert_same_state(ours, theirs, rtol, atol):
    """Parameters and running statistics, exported in PyTorch layouts, agree."""
    mine = nn.export_torch_state_dict(ours, theirs.state_dict())
    for key, value in theirs.state_dict().items():
        if value.dtype.is_floating_point:
            np.testing.assert_allclose(mine[key], value.numpy(), rtol=rtol, atol=atol,
                                       err_msg=key)

def test_sgd_nesterov_weight_decay_batchnorm_trajectory_matches_torch(rng):
    torch.set_num_threads(1)
    blocks = ((8, 1), (12, 2))
    ours = make_dscnn((8, 8, 1), 4, alpha=1.0, stem_stride=1, blocks=blocks, seed=1,
                      dtype=np.float64)
    theirs = torch_dscnn(1, 4, alpha=1.0, stem_stride=1, blocks=blocks).double()
    nn.copy_to_torch(ours, theirs)
    lr, mom, wd = 0.05, 0.9, 1e-3
    opt = SGD(nn.param_groups(ours, wd, no_decay=()), lr=lr, momentum=mom, nesterov=True)
    topt = torch.optim.SGD(theirs.parameters(), lr=lr, momentum=mom, nesterov=True,
                           weight_decay=wd)
    x = rng.random((4 * 16, 8, 8, 1))
    y = rng.integers(0, 4, len(x))
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)
    theirs.train()
    for step in range(4):
        sl = slice(16 * step, 16 * (step + 1))
        loss, tloss = _step_both(ours, opt, x[sl], y[sl], theirs, topt, xt[sl], yt[sl])
        assert abs(loss - tloss) < 1e-10, step
    # parameters and running statistics (exported in PyTorch layouts) after 4 steps
    _assert_same_state(ours, theirs, rtol=1e-9, atol=1e-11)
    # evaluation mode uses those running statistics
    theirs.eval()
    with torch.no_grad():
        zt = theirs(xt[:16]).numpy()
    np.testing.assert_allclose(ours.forward(x[:16], training=False), zt, rtol=1e-9, atol=1e-11)


def test_mobilenet_bench_recipe_matches_torch_float64(rng):
    # the recipe of bench/bench_mobilenet_train.py (train part): MobileNet v1, SGD Nesterov,
    # weight decay on convolution (depthwise included) and classifier weights only, a
    # learning rate changed every step; then test accuracy from eval mode (running stats)
    from effai_fast.mobilenet import mobilenet_v1, torch_mobilenet_v1

    torch.set_num_threads(1)
    ours = mobilenet_v1(0.25, 28, 10, 1, seed=3, dtype=np.float64)
    theirs = torch_mobilenet_v1(0.25, 10, 1).double()
    nn.copy_to_torch(ours, theirs)
    wd, mom = 5e-4, 0.9
    opt = SGD(nn.param_groups(ours, wd, no_decay=("batchnorm", "bias")), lr=0.0,
              momentum=mom, nesterov=True)
    decay = [p for p in theirs.parameters() if p.ndim > 1]
    plain = [p for p in theirs.parameters() if p.ndim <= 1]
    assert sum(p.size for g in opt.param_groups if g["weight_decay"] for p in g["params"]) \
        == sum(p.numel() for p in decay)
    topt = torch.optim.SGD([{"params": decay, "weight_decay": wd},
                            {"params": plain, "weight_decay": 0.0}], lr=0.0, momentum=mom,
                           nesterov=True)
    x = rng.random((5 * 32, 28, 28, 1))
    y = rng.integers(0, 10, len(x))
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)
    theirs.train()
    for step, lr in enumerate((0.01, 0.02, 0.03, 0.02)):
        sl = slice(32 * step, 32 * (step + 1))
        opt.lr = lr
        for g in topt.param_groups:
            g["lr"] = lr
        loss, tloss = _step_both(ours, opt, x[sl], y[sl], theirs, topt, xt[sl], yt[sl])
        assert abs(loss - tloss) < 1e-9, step
    _assert_same_state(ours, theirs, rtol=1e-7, atol=1e-10)
    theirs.eval()
    with torch.no_grad():
        zt = theirs(xt[128:]).numpy()
    np.testing.assert_allclose(nn.predict(ours, x[128:]), zt, rtol=1e-7, atol=1e-9)


def test_mobilenet_float32_training_gradients_stay_close_to_float64(rng, n_threads):
    # The float32 accuracy runs of bench/bench_mobilenet_train.py (precision part) depend on
    # how far the float32 training gradient is from the exact one: 27 batch norms, some over
    # 1x1 maps, amplify rounding on the way back.  Measured on Fashion-MNIST: median relative
    # error 9e-4 per tensor (PyTorch's float32 CPU path: 4e-2).  A kernel change that loses
    # float32 accuracy shows here.
    from effai_fast.mobilenet import mobilenet_v1

    m32 = mobilenet_v1(0.25, 28, 10, 1, seed=4, dtype=np.float32)
    m64 = mobilenet_v1(0.25, 28, 10, 1, seed=4, dtype=np.float64)
    m64.load_state_dict({k: v.astype(np.float64) for k, v in m32.state_dict().items()})
    x = rng.random((32, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 10, len(x))
    for m in (m32, m64):
        m.n_threads = n_threads
        _, g = softmax_cross_entropy(m.forward(x.astype(m.dtype), training=True), y)
        m.backward(g, need_input_grad=False)
    errs = np.array([np.linalg.norm(a - b) / np.linalg.norm(b)
                     for a, b in zip(m32.gradients(), m64.gradients()) if b.size > 20])
    assert len(errs) == 74
    assert np.median(errs) < 5e-3, np.median(errs)
    assert errs.max() < 5e-2, errs.max()
