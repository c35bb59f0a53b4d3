"""InferencePlan: the validated-once inference pass equals Sequential.forward."""

import numpy as np
import pytest

from effai_fast.nn import (
    BatchNorm,
    Conv2d,
    DepthwiseConv2d,
    Dropout,
    GlobalAvgPool,
    InferencePlan,
    Linear,
    Module,
    PointwiseConv2d,
    ReLU,
    ReLU6,
    Sequential,
    fold_batchnorm,
)
from effai_fast.nn import functional as F


def _net(dtype, seed=0):
    rng = np.random.default_rng(seed)
    net = Sequential(
        Conv2d(3, 8, 3, stride=2, dtype=dtype, seed=1),
        BatchNorm(8, activation="relu", dtype=dtype),
        DepthwiseConv2d(8, stride=1, activation="relu6", bias=True, dtype=dtype, seed=2),
        PointwiseConv2d(8, 16, dtype=dtype, seed=3),
        ReLU(dtype=dtype),
        DepthwiseConv2d(16, 5, stride=2, padding=2, dtype=dtype, seed=4),
        ReLU6(dtype=dtype),
        Dropout(0.3, seed=5, dtype=dtype),
        GlobalAvgPool(dtype=dtype),
        Linear(16, 5, dtype=dtype, seed=6),
    )
    bn = net[1]
    bn.running_mean[...] = rng.normal(0, 0.1, 8)
    bn.running_var[...] = rng.uniform(0.5, 1.5, 8)
    return net


def _agree(got, want):
    """The plan equals Sequential.forward to rounding: its classifier runs on the packed
    GEMM kernel (numpy's matmul in Sequential.forward); everything before it is bitwise
    the same (the arena test below compares a network without a classifier exactly)."""
    want = np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    r = 1e-5 if want.dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want, rtol=r, atol=r * float(np.abs(want).max()))


@pytest.mark.parametrize("fold", [False, True])
def test_plan_equals_sequential_forward(fold, dtype, n_threads, rng, monkeypatch):
    monkeypatch.setattr(F, "_GRAIN_MACS", 1)   # 2 threads even on these small layers
    net = _net(dtype)
    if fold:
        net = fold_batchnorm(net)
    net.n_threads = n_threads
    x = rng.standard_normal((3, 17, 15, 3)).astype(dtype)
    plan = InferencePlan(net, x.shape)
    want = net.forward(x, training=False)
    got = plan(x)
    assert got.dtype == dtype and got.shape == want.shape == plan.output_shape
    _agree(got, want)
    # a second call reuses the buffers and returns a fresh array
    again = plan(x)
    assert again is not got
    _agree(again, want)
    assert len(plan.layer_threads) == len(net.layers) - (not fold)  # dropout skipped
    assert all(1 <= t <= n_threads for _, _, t in plan.layer_threads)


def test_plan_results_do_not_depend_on_threads(rng, monkeypatch):
    monkeypatch.setattr(F, "_GRAIN_MACS", 1)
    net = fold_batchnorm(_net(np.float32))
    x = rng.standard_normal((2, 20, 20, 3)).astype(np.float32)
    outs = [InferencePlan(net, x.shape, n_threads=nt)(x) for nt in (1, 2, 3)]
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_small_layers_stay_on_one_thread():
    net = fold_batchnorm(_net(np.float32))
    plan = InferencePlan(net, (1, 16, 16, 3), n_threads=2)
    assert {t for _, _, t in plan.layer_threads} == {1}


def test_plan_sees_in_place_updates_and_rebuilds_on_replacement(rng):
    net = fold_batchnorm(_net(np.float64))
    x = rng.standard_normal((1, 12, 12, 3))
    plan = InferencePlan(net, x.shape, n_threads=1)
    net[1].weight *= 2.0                       # in place: seen
    _agree(plan(x), net.forward(x))
    net[2].weight = net[2].weight * 0.5        # replaced: the plan rebuilds
    _agree(plan(x), net.forward(x))
    net[2].weight = np.ones((3, 3), np.float64)  # replaced by a wrong shape: an error
    with pytest.raises(ValueError, match="weight"):
        plan(x)


def test_plan_input_validation_and_out(rng):
    net = fold_batchnorm(_net(np.float32))
    plan = InferencePlan(net, (2, 10, 10, 3), n_threads=1)
    x64 = rng.standard_normal((2, 10, 10, 3))
    want = net.forward(x64.astype(np.float32))
    _agree(plan(x64), want)          # cast like Sequential.forward
    _agree(plan(x64.tolist()), want)
    out = np.empty(plan.output_shape, np.float32)
    assert plan(x64, out=out) is out
    _agree(out, want)
    with pytest.raises(ValueError, match="x"):
        plan(np.zeros((1, 10, 10, 3), np.float32))
    with pytest.raises(TypeError, match="x"):
        plan(np.zeros((2, 10, 10, 3), np.complex64))
    with pytest.raises(ValueError, match="out"):
        plan(x64, out=np.empty((3, 5), np.float32))
    with pytest.raises(TypeError, match="model"):
        InferencePlan(object(), (1, 4, 4, 3))
    for bad in [(1, 10, 10), (0, 10, 10, 3), (1.0, 10, 10, 3), "x", (True, 4, 4, 3)]:
        with pytest.raises(ValueError, match="input_shape"):
            InferencePlan(net, bad)
    with pytest.raises(ValueError, match="channels"):
        InferencePlan(net, (1, 10, 10, 4))
    with pytest.raises(ValueError, match="n_threads"):
        InferencePlan(net, (1, 10, 10, 3), n_threads=0)


def test_mobilenet_plan_matches_forward(rng):
    from effai_fast.mobilenet import mobilenet_v1

    net = fold_batchnorm(mobilenet_v1(0.25, 64, 10, seed=0))
    x = rng.standard_normal((2, 64, 64, 3)).astype(np.float32)
    for nt in (1, 2):
        net.n_threads = nt
        _agree(InferencePlan(net, x.shape)(x), net.forward(x))


class _Passthrough(Module):
    """A layer the plan does not know: its forward returns its input itself."""

    def forward(self, x, training=False):
        return x

    def output_shape(self, input_shape):
        return tuple(input_shape)


def test_plan_alternates_two_arenas_and_copes_with_views(dtype, rng):
    # the activations live in two arenas used in turn; a layer that returns a view of
    # its input (run through its own forward) must not be overwritten by the next layer
    net = Sequential(
        Conv2d(3, 8, 3, stride=1, activation="relu", dtype=dtype, seed=1),
        _Passthrough(dtype=dtype),
        DepthwiseConv2d(8, activation="relu6", bias=True, dtype=dtype, seed=2),
        _Passthrough(dtype=dtype),
        PointwiseConv2d(8, 4, dtype=dtype, seed=3),
    )
    x = rng.standard_normal((2, 9, 7, 3)).astype(dtype)
    plan = InferencePlan(net, x.shape, n_threads=1)
    np.testing.assert_array_equal(plan(x), net.forward(x))
    np.testing.assert_array_equal(plan(x), net.forward(x))
    bases = {id(buf.base) for _, _, _, buf in plan._steps if buf is not None}
    assert len(bases) == 2


def test_plan_linear_on_the_gemm_kernel_or_its_forward(dtype, rng):
    net = Sequential(GlobalAvgPool(dtype=dtype), Linear(6, 4, dtype=dtype, seed=1))
    x = rng.standard_normal((3, 5, 5, 6)).astype(dtype)
    plan = InferencePlan(net, x.shape, n_threads=2)
    assert plan._steps[-1][0] == 1                     # the packed GEMM
    want = x.mean(axis=(1, 2)) @ net[1].weight + net[1].bias
    _agree(plan(x), want)
    net[1].weight = np.asfortranarray(net[1].weight * 2)   # replaced, not C-contiguous
    want = x.mean(axis=(1, 2)) @ net[1].weight + net[1].bias
    _agree(plan(x), want)
    assert plan._steps[-1][0] == 5                     # Linear.forward's path


def _gemm_net(dtype):
    """Odd channel counts, C_in above one 256-wide K block (A packed) and below it (A
    read in place), pixel counts that are not a multiple of the 6-row micro-tile."""
    return Sequential(
        Conv2d(3, 13, 3, stride=2, activation="relu", dtype=dtype, seed=1),
        PointwiseConv2d(13, 37, activation="relu6", dtype=dtype, seed=2),
        DepthwiseConv2d(37, activation="relu", dtype=dtype, seed=3),
        PointwiseConv2d(37, 261, dtype=dtype, seed=4),
        PointwiseConv2d(261, 19, activation="relu", dtype=dtype, seed=5),
        GlobalAvgPool(dtype=dtype),
        Linear(19, 7, dtype=dtype, seed=6),
    )


@pytest.mark.parametrize("batch", [1, 3])
def test_packed_weights_give_the_same_bits_as_packing_per_call(batch, dtype, n_threads, rng,
                                                               monkeypatch):
    monkeypatch.setattr(F, "_GRAIN_MACS", 1)     # 2 threads even on these small layers
    net = _gemm_net(dtype)
    x = rng.standard_normal((batch, 13, 11, 3)).astype(dtype)
    packed = InferencePlan(net, x.shape, n_threads=n_threads)
    plain = InferencePlan(net, x.shape, n_threads=n_threads, pack_weights=False)
    assert packed.pack_weights and not plain.pack_weights
    y = packed(x)
    np.testing.assert_array_equal(y, plain(x))
    _agree(y, net.forward(x))
    # and the same bits at the other thread count
    other = InferencePlan(net, x.shape, n_threads=3 - n_threads)
    np.testing.assert_array_equal(y, other(x))


def test_packed_weights_are_a_snapshot_until_refresh(rng):
    net = _gemm_net(np.float64)
    x = rng.standard_normal((2, 9, 9, 3))
    plan = InferencePlan(net, x.shape, n_threads=1)
    live = InferencePlan(net, x.shape, n_threads=1, pack_weights=False)
    before = plan(x)
    net[3].weight *= 2.0                         # in place, a packed layer
    net[6].weight *= 0.5                         # in place, the packed classifier
    if F._conv._packed_gemm():                   # the plan still uses its snapshot
        np.testing.assert_array_equal(plan(x), before)
    _agree(live(x), net.forward(x))              # pack_weights=False sees it at once
    plan.refresh()
    _agree(plan(x), net.forward(x))
    with pytest.raises(TypeError, match="pack_weights"):
        InferencePlan(net, x.shape, pack_weights="yes")


def _long_k_net(dtype):
    # 7x7 pixels per image and a 300-channel input to the second pointwise layer: per
    # image (chunk 1) that layer runs the GEMM's few-rows path (m = 49 <= 144, k > 256),
    # for the whole batch (m = 196) the general one; both must give the same bits.
    return Sequential(
        Conv2d(3, 8, 3, stride=2, activation="relu", dtype=dtype, seed=1),
        DepthwiseConv2d(8, activation="relu6", dtype=dtype, seed=2),
        PointwiseConv2d(8, 300, activation="relu", dtype=dtype, seed=3),
        PointwiseConv2d(300, 40, dtype=dtype, seed=4),
        ReLU(dtype=dtype),
        GlobalAvgPool(dtype=dtype),
        Linear(40, 5, dtype=dtype, seed=5),
    )


def test_batch_chunks_give_the_same_bits(dtype, n_threads, rng):
    # The same bits hold on our packed-GEMM builds; the baseline build (no AVX2) runs
    # the stem and the 1x1 convolutions on OpenBLAS, whose rounding depends on the
    # matrix sizes, so there chunks agree to rounding only.
    same = (np.testing.assert_array_equal if F._conv.__name__ != "effai_fast.nn._conv"
            else _agree)
    net = _long_k_net(dtype)
    x = rng.standard_normal((4, 14, 14, 3)).astype(dtype)
    whole = InferencePlan(net, x.shape, n_threads=n_threads, batch_chunk=4)
    assert whole.chunk == 4
    want = whole(x)
    _agree(want, net.forward(x, training=False))
    for chunk in (1, 3):             # 3: a chunk of 3 and a remainder of 1
        plan = InferencePlan(net, x.shape, n_threads=n_threads, batch_chunk=chunk)
        assert plan.chunk == chunk and plan.output_shape == want.shape
        assert plan.workers == min(n_threads, -(-4 // chunk))
        same(plan(x), want)
        out = np.empty(want.shape, dtype)
        assert plan(x, out=out) is out
        same(out, want)


def test_default_chunk_keeps_the_arenas_small():
    net = Sequential(Conv2d(3, 32, 3, stride=2, dtype=np.float32, seed=1),
                     GlobalAvgPool(dtype=np.float32))
    plan = InferencePlan(net, (8, 224, 224, 3), n_threads=1)
    # 112*112*32 floats (1.6 MB) per image, two arenas within 8 MiB: 2 images a chunk
    assert plan.chunk == 2 and plan.output_shape == (8, 32)
    assert InferencePlan(net, (1, 224, 224, 3)).chunk == 1


def test_batch_chunk_validation():
    net = _long_k_net(np.float32)
    with pytest.raises(ValueError, match="batch_chunk"):
        InferencePlan(net, (2, 14, 14, 3), batch_chunk=0)
    with pytest.raises(TypeError, match="batch_chunk"):
        InferencePlan(net, (2, 14, 14, 3), batch_chunk=1.5)
    assert InferencePlan(net, (2, 14, 14, 3), batch_chunk=10).chunk == 2
