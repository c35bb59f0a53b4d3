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


def test_sgd_nesterov_weight_decay_batchnorm_trajectory_matches_torch(rng):
    torch.set_num_threads(1)
    blocks = ((8, 1), (12, 2))
    ours = make_dscnn((8, 8, 1), 4, alpha=1.0, stem_stride=1, blocks=blocks, seed=1,
                      dtype=np.float64)
    theirs = torch_dscnn(1, 4, alpha=1.0, stem_stride=1, blocks=blocks).double()
    sd = nn.export_torch_state_dict(ours, theirs.state_dict())
    theirs.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()})
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
        loss, g = softmax_cross_entropy(ours.forward(x[sl], training=True), y[sl])
        ours.backward(g, need_input_grad=False)
        opt.step()
        tloss = torch.nn.functional.cross_entropy(theirs(xt[sl]), yt[sl])
        topt.zero_grad()
        tloss.backward()
        topt.step()
        assert abs(float(loss) - float(tloss.detach())) < 1e-10, step
    # parameters and running statistics (exported in PyTorch layouts) after 4 steps
    mine = nn.export_torch_state_dict(ours, theirs.state_dict())
    for key, value in theirs.state_dict().items():
        if value.dtype.is_floating_point:
            np.testing.assert_allclose(mine[key], value.numpy(), rtol=1e-9, atol=1e-11,
                                       err_msg=key)
    # evaluation mode uses those running statistics
    theirs.eval()
    with torch.no_grad():
        zt = theirs(xt[:16]).numpy()
    np.testing.assert_allclose(ours.forward(x[:16], training=False), zt, rtol=1e-9, atol=1e-11)
