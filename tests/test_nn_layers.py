"""Layers, whole-network backward, PyTorch parity, fit loop, folding, weight I/O."""

import numpy as np
import pytest
from _nn_ref import check_grad, numeric_grad

from effai_fast import nn
from effai_fast.mobilenet import mobilenet_v1, torch_mobilenet_v1
from effai_fast.optim import SGD, AdamW

F64 = np.float64


def _layer_cases(rng):
    return [
        (nn.Conv2d(3, 4, 3, 2, 1, dtype=F64, seed=rng), (2, 7, 6, 3)),
        (nn.Conv2d(2, 3, 3, 1, "same", bias=True, activation="relu6", dtype=F64, seed=rng),
         (2, 5, 5, 2)),
        (nn.DepthwiseConv2d(5, 3, 2, 1, dtype=F64, seed=rng), (2, 7, 7, 5)),
        (nn.DepthwiseConv2d(3, 3, 1, 1, bias=True, activation="relu", dtype=F64, seed=rng),
         (1, 4, 5, 3)),
        (nn.PointwiseConv2d(4, 6, dtype=F64, seed=rng), (2, 3, 3, 4)),
        (nn.PointwiseConv2d(4, 3, bias=True, activation="relu", dtype=F64, seed=rng),
         (2, 3, 2, 4)),
        (nn.BatchNorm(4, activation="relu", dtype=F64), (3, 3, 3, 4)),
        (nn.BatchNorm(3, dtype=F64), (5, 3)),
        (nn.ReLU(dtype=F64), (2, 3, 3, 2)),
        (nn.ReLU6(dtype=F64), (2, 3, 3, 2)),
        (nn.GlobalAvgPool(dtype=F64), (2, 3, 4, 5)),
        (nn.Linear(6, 3, dtype=F64, seed=rng, init_std=0.5), (4, 6)),
        (nn.Dropout(0.4, seed=1, dtype=F64), (4, 6)),
    ]


@pytest.mark.parametrize("case", range(13))
@pytest.mark.parametrize("training", [True, False])
def test_layer_backward_finite_differences(rng, case, training):
    layer, shape = _layer_cases(rng)[case]
    x = rng.standard_normal(shape) * 2
    out_shape = layer.forward(x, training=training).shape
    R = rng.standard_normal(out_shape)
    if isinstance(layer, nn.BatchNorm):
        layer.running_mean[:] = rng.standard_normal(layer.channels)
        layer.running_var[:] = rng.uniform(0.5, 2, layer.channels)
    state = {k: v.copy() for k, v in layer.named_buffers()}

    def loss():
        for k, v in layer.named_buffers():
            v[...] = state[k]
        if isinstance(layer, nn.Dropout):
            layer.rng = np.random.default_rng(1)
        return float(np.sum(layer.forward(x, training=training) * R))

    loss()
    gx = layer.backward(R)
    grads = [g.copy() for g in layer.gradients()]
    check_grad(loss, x, gx, rng, rtol=1e-5, atol=1e-7)
    for p, g in zip(layer.parameters(), grads):
        check_grad(loss, p, g, rng, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("training", [True, False])
def test_whole_network_backward_finite_differences(rng, training):
    # A whole (tiny) MobileNet: 27 convolutions, 27 batch norms with ReLU, pooling, classifier.
    # In training mode the batch statistics over a handful of values make the loss strongly
    # curved (gradients of ~50 at the stem), so the differences use a small step.
    net = mobilenet_v1(0.125, 9, 4, 2, dtype=F64, seed=0)
    x = rng.standard_normal((3, 9, 9, 2))
    y = np.array([0, 3, 1])
    eps, rtol, atol = (1e-7, 2e-3, 1e-6) if training else (1e-6, 1e-5, 1e-9)

    def loss():
        return nn.functional.softmax_cross_entropy(net.forward(x, training=training), y,
                                                   return_grad=False)[0]

    logits = net.forward(x, training=training)
    _, g = nn.functional.softmax_cross_entropy(logits, y)
    gx = net.backward(g)
    grads = {n: gr.copy() for n, gr in net.named_gradients()}
    params = dict(net.named_parameters())
    for name, arr, ana in [("x", x, gx)] + [(n, params[n], grads[n]) for n in (
            "stem.weight", "stem_bn.bias", "block1_dw.weight", "block7_pw.weight",
            "block13_dw_bn.weight", "fc.weight", "fc.bias")]:
        idx = rng.choice(arr.size, size=min(arr.size, 6), replace=False)
        num = numeric_grad(loss, arr, eps=eps, idx=idx).reshape(-1)[idx]
        np.testing.assert_allclose(ana.reshape(-1)[idx], num, rtol=rtol, atol=atol,
                                   err_msg=name)


def _torch_pair(seed=0, alpha=0.25, res=12, k=5, cin=2, dtype=np.float32):
    torch = pytest.importorskip("torch")
    ours = mobilenet_v1(alpha, res, k, cin, seed=seed, dtype=dtype)
    theirs = torch_mobilenet_v1(alpha, k, cin)
    if dtype == np.float64:
        theirs = theirs.double()
    assert nn.copy_to_torch(ours, theirs) is theirs
    return torch, ours, theirs


@pytest.mark.parametrize("opt_name", ["sgd", "adamw"])
def test_one_training_step_matches_torch(rng, opt_name, dtype):
    # 32x32 inputs, batch 16: every batch norm sees at least 16 values per channel (with a
    # handful, float32 rounding is amplified ~1000x through 27 batch norms).
    with nn.blas_single_thread():
        _one_training_step(rng, opt_name, dtype)


def _one_training_step(rng, opt_name, dtype):
    torch, ours, theirs = _torch_pair(res=32, dtype=dtype)
    x = rng.random((16, 32, 32, 2)).astype(dtype)
    y = rng.integers(0, 5, 16)
    # forward agrees
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy())
    theirs.train()
    t_logits = theirs(tx)
    logits = ours.forward(x, training=True)
    ftol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(logits, t_logits.detach().numpy(), rtol=ftol, atol=ftol / 10)
    # one optimiser step on the same batch
    if opt_name == "sgd":
        opt = SGD(nn.param_groups(ours, 1e-3, no_decay=()), lr=0.1, momentum=0.9)
        topt = torch.optim.SGD(theirs.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    else:
        opt = AdamW(nn.param_groups(ours, 1e-2, no_decay=()), lr=1e-3)
        topt = torch.optim.AdamW(theirs.parameters(), lr=1e-3, weight_decay=1e-2)
    loss, g = nn.functional.softmax_cross_entropy(logits, y)
    ours.backward(g, need_input_grad=False)
    opt.step()
    tloss = torch.nn.functional.cross_entropy(t_logits, torch.from_numpy(y))
    topt.zero_grad()
    tloss.backward()
    topt.step()
    assert loss == pytest.approx(tloss.item(), rel=ftol)
    wtol = 1e-4 if dtype == np.float32 else 1e-10
    after = nn.export_torch_state_dict(ours, theirs.state_dict())
    tgrads = {k: p.grad.numpy() for k, p in theirs.named_parameters()}
    for key, value in theirs.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        ours_v, theirs_v = after[key], value.numpy()
        if opt_name == "adamw" and dtype == np.float32 and key in tgrads:
            # The scale of a batch norm followed (through ReLU and a depthwise conv) by another
            # batch norm is scale-invariant: its true gradient is ~0 (1e-6 here, from eps) and
            # Adam's first step is lr * sign(float32 noise).  Compare only resolved gradients;
            # the rest must still move by at most lr.
            resolved = np.abs(tgrads[key]) > 1e-4
            assert np.all(np.abs(ours_v - theirs_v) <= 2 * 1e-3 + wtol), key
            ours_v, theirs_v = ours_v[resolved], theirs_v[resolved]
        np.testing.assert_allclose(ours_v, theirs_v, rtol=wtol, atol=wtol, err_msg=key)


def test_load_torch_state_dict_roundtrip_and_mismatch(rng):
    torch, ours, theirs = _torch_pair(seed=1)
    fresh = mobilenet_v1(0.25, 12, 5, 2, seed=99)
    nn.load_torch_state_dict(fresh, theirs.state_dict())
    x = rng.random((3, 12, 12, 2)).astype(np.float32)
    np.testing.assert_allclose(fresh.forward(x), ours.forward(x), rtol=1e-6, atol=1e-6)
    theirs.eval()
    with torch.no_grad():
        t_out = theirs(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    np.testing.assert_allclose(fresh.forward(x), t_out, rtol=1e-4, atol=1e-5)
    other = torch_mobilenet_v1(0.5, 5, 2)
    with pytest.raises(ValueError, match="shape mismatch"):
        nn.load_torch_state_dict(fresh, other.state_dict())
    with pytest.raises(ValueError, match="not the same architecture"):
        nn.load_torch_state_dict(fresh, dict(list(theirs.state_dict().items())[:-1]))


def test_copy_to_torch_loads_the_exported_weights_and_rejects_bad_targets():
    torch, ours, theirs = _torch_pair(seed=2, dtype=np.float64)
    exported = nn.export_torch_state_dict(ours, theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert value.dtype == torch.float64 or key.endswith("num_batches_tracked"), key
        np.testing.assert_array_equal(value.numpy(), exported[key], err_msg=key)
    with pytest.raises(TypeError, match="torch_module must be a torch.nn.Module"):
        nn.copy_to_torch(ours, theirs.state_dict())
    with pytest.raises(ValueError, match="shape mismatch"):
        nn.copy_to_torch(ours, torch_mobilenet_v1(0.5, 5, 2))


def test_fold_batchnorm_matches_eval(rng):
    net = mobilenet_v1(0.25, 16, 6, 3, seed=0, dtype=F64)
    x = rng.random((5, 16, 16, 3))
    net.fit(x, np.arange(5) % 6, epochs=2, batch_size=5, verbose=0)  # non-trivial BN stats
    folded = nn.fold_batchnorm(net)
    assert not any(isinstance(layer, nn.BatchNorm) for layer in folded)
    assert folded[0].activation == "relu" and folded[0].bias is not None
    np.testing.assert_allclose(folded.forward(x), net.forward(x), rtol=1e-10, atol=1e-12)


def _digits():
    from effai_fast.datasets import load_digits

    pytest.importorskip("sklearn")
    return load_digits(random_state=0)


def _small_cnn(seed=0):
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, 1, 1, seed=seed), nn.BatchNorm(16, activation="relu"),
        nn.DepthwiseConv2d(16, 3, 2, 1, seed=seed), nn.BatchNorm(16, activation="relu"),
        nn.PointwiseConv2d(16, 32, seed=seed), nn.BatchNorm(32, activation="relu6"),
        nn.GlobalAvgPool(), nn.Dropout(0.1, seed=seed), nn.Linear(32, 10, seed=seed))


def test_fit_digits_learns_and_is_deterministic():
    xtr, ytr, xte, yte = _digits()
    results = []
    for n_threads in (1, 2):
        net = _small_cnn()
        opt = SGD(nn.param_groups(net, 1e-4), lr=0.1, momentum=0.9, nesterov=True)
        lines = []
        hist = net.fit(xtr, ytr, epochs=6, batch_size=32, optimizer=opt, lr_schedule="cosine",
                       validation_data=(xte, yte), seed=0, n_threads=n_threads,
                       log=lines.append)
        assert len(lines) == 6 and "val_accuracy" in lines[-1]
        results.append((hist, [p.copy() for p in net.parameters()]))
    assert results[0][0].val_accuracy[-1] > 0.85
    for p, q in zip(results[0][1], results[1][1]):
        np.testing.assert_array_equal(p, q)
    assert results[0][0].loss == results[1][0].loss


def test_fit_nan_loss_names_the_step(rng):
    net = mobilenet_v1(0.25, 8, 3, 1, seed=0)
    x = rng.random((20, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, 20)
    opt = SGD(nn.param_groups(net), lr=1e30)
    with pytest.raises(nn.NonFiniteLossError, match=r"epoch \d+, step \d+"):
        net.fit(x, y, epochs=5, batch_size=5, optimizer=opt, verbose=0)


def test_fit_bad_input(rng):
    net = mobilenet_v1(0.25, 8, 3, 1)
    x = rng.random((10, 8, 8, 1))
    y = np.arange(10) % 3
    with pytest.raises(ValueError, match="samples"):
        net.fit(x, y[:5], verbose=0)
    with pytest.raises(TypeError, match="integer"):
        net.fit(x, y.astype(float), verbose=0)
    with pytest.raises(ValueError, match="NaN"):
        net.fit(np.full_like(x, np.nan), y, verbose=0)
    with pytest.raises(ValueError, match="epochs"):
        net.fit(x, y, epochs=0, verbose=0)
    with pytest.raises(ValueError, match="stored"):
        net.fit(x, y, optimizer=SGD(net.parameters()), verbose=0)
    with pytest.raises(TypeError, match="optimizer"):
        net.fit(x, y, optimizer="sgd", verbose=0)


def test_param_groups_exclude_depthwise_bn_bias():
    net = mobilenet_v1(0.25, 8, 3, 1)
    groups = nn.param_groups(net, 4e-5)
    decay_ids = {id(p) for p in groups[0]["params"]}
    layers = dict(nn.leaf_layers(net))
    assert id(layers["stem"].weight) in decay_ids
    assert id(layers["block1_pw"].weight) in decay_ids
    assert id(layers["fc"].weight) in decay_ids
    assert id(layers["block1_dw"].weight) not in decay_ids
    assert id(layers["stem_bn"].weight) not in decay_ids
    assert id(layers["fc"].bias) not in decay_ids
    assert groups[1]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(net.parameters())
    with pytest.raises(ValueError, match="no_decay"):
        nn.param_groups(net, no_decay=("conv",))


def test_save_load_npz(tmp_path, rng):
    net = mobilenet_v1(0.25, 8, 3, 1, seed=0)
    net.layers[1].running_mean[:] = rng.standard_normal(net.layers[1].channels)
    path = nn.save(net, tmp_path / "w.npz", config={"note": "x"})
    with np.load(path, allow_pickle=False) as z:
        assert "stem.weight" in z.files and "stem_bn.running_var" in z.files
    assert nn.read_config(path) == {"note": "x"}
    other = mobilenet_v1(0.25, 8, 3, 1, seed=5)
    nn.load(other, path)
    for (n1, a), (n2, b) in zip(net.state_dict().items(), other.state_dict().items()):
        assert n1 == n2
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="missing"):
        mobilenet_v1(0.25, 8, 3, 1, dropout=0.2).load_state_dict(
            {k: v for k, v in net.state_dict().items() if k != "fc.bias"})


def test_sequential_validation_and_buffers(rng):
    with pytest.raises(ValueError):
        nn.Sequential()
    with pytest.raises(TypeError, match="Module"):
        nn.Sequential(nn.ReLU(), "relu")
    with pytest.raises(TypeError, match="dtype"):
        nn.Sequential(nn.ReLU(), nn.ReLU(dtype=np.float64))
    net = nn.Sequential(nn.Linear(3, 2, seed=0), nn.ReLU())
    a = net.forward(rng.random((4, 3)))
    b = net.forward(rng.random((4, 3)))
    assert not np.shares_memory(a, b)  # the final output is a copy
    with pytest.raises(RuntimeError, match="before forward"):
        nn.Linear(2, 2).backward(np.ones((1, 2)))
    with pytest.raises(ValueError, match="n_threads"):
        net.n_threads = 0
