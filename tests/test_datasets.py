"""Data loaders: IDX reader, stratified splits, digits, Fashion-MNIST (when installed)."""

import gzip

import numpy as np
import pytest

from effai_fast import datasets
from effai_fast.datasets import (
    load_digits,
    load_fashion_mnist,
    read_idx,
    stratified_split,
    stratified_subset,
)


def _write_idx(path, arr, code=0x08, compress=False):
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
    raw = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    if compress:
        raw = gzip.compress(raw)
    path.write_bytes(raw)


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_roundtrip(tmp_path, rng, compress):
    a = rng.integers(0, 256, size=(3, 4, 5)).astype(np.uint8)
    _write_idx(tmp_path / "a", a, compress=compress)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), a)
    b = rng.standard_normal((2, 3)).astype(np.float32)
    _write_idx(tmp_path / "b", b, code=0x0D, compress=compress)
    out = read_idx(tmp_path / "b")
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, b)


def test_read_idx_rejects_garbage(tmp_path):
    (tmp_path / "x").write_bytes(b"hello world")
    with pytest.raises(ValueError, match="not an IDX"):
        read_idx(tmp_path / "x")
    a = np.zeros((10, 10), np.uint8)
    _write_idx(tmp_path / "t", a)
    (tmp_path / "t").write_bytes((tmp_path / "t").read_bytes()[:50])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "t")


def test_stratified_split_keeps_class_shares(rng):
    y = np.repeat(np.arange(4), [100, 50, 30, 20])
    train, test = stratified_split(y, 0.2, seed=3)
    assert len(test) == 40 and len(train) == 160
    assert set(train).isdisjoint(test)
    np.testing.assert_array_equal(np.bincount(y[test]), [20, 10, 6, 4])
    again = stratified_split(y, 0.2, seed=3)
    np.testing.assert_array_equal(again[1], test)
    sub = stratified_subset(y, 37, seed=0)
    assert len(sub) == 37 and len(np.unique(sub)) == 37
    with pytest.raises(ValueError, match="test_size"):
        stratified_split(y, 1.5)


def test_load_digits():
    pytest.importorskip("sklearn")
    x_tr, y_tr, x_te, y_te = load_digits(test_size=0.25, random_state=0)
    assert x_tr.shape[1:] == (8, 8, 1) and x_tr.dtype == np.float32
    assert len(x_tr) + len(x_te) == 1797
    assert 0.0 <= x_tr.min() and x_tr.max() <= 1.0
    assert y_tr.dtype == np.int64 and set(np.unique(y_te)) == set(range(10))
    again = load_digits(test_size=0.25, random_state=0, dtype=np.float64)
    np.testing.assert_array_equal(again.y_test, y_te)
    assert again.x_test.dtype == np.float64
    with pytest.raises(TypeError, match="dtype"):
        load_digits(dtype=np.int32)


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIRS", (str(tmp_path),))
    monkeypatch.delenv("EFFAI_FASHION_MNIST", raising=False)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist()


def test_fashion_mnist_from_fake_files(tmp_path, rng):
    for stem, n in (("train", 30), ("t10k", 20)):
        _write_idx(tmp_path / f"{stem}-images-idx3-ubyte.gz",
                   rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), compress=True)
        _write_idx(tmp_path / f"{stem}-labels-idx1-ubyte",
                   (np.arange(n) % 10).astype(np.uint8))
    s = load_fashion_mnist(tmp_path, n_train=10, random_state=1)
    assert s.x_train.shape == (10, 28, 28, 1) and s.x_test.shape == (20, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(s.y_train), np.ones(10))
    assert s.x_train.max() <= 1.0


def test_fashion_mnist_installed():
    try:
        s = load_fashion_mnist(n_train=600, n_test=100)
    except FileNotFoundError:
        pytest.skip("dataset-fashion-mnist is not installed")
    assert s.x_train.shape == (600, 28, 28, 1) and s.x_test.shape == (100, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(s.y_train), np.full(10, 60))
    assert s.x_train.dtype == np.float32 and 0.0 <= s.x_train.min() and s.x_train.max() <= 1.0
