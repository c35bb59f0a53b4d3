"""Real image data sets for training and tests, read locally (never downloaded).

``load_digits``
    scikit-learn's bundled 8x8 hand-written digits (1797 images, 10 classes): tiny, for fast
    tests and the tour.  Needs scikit-learn (the ``test`` extra).
``load_fashion_mnist``
    Fashion-MNIST (Xiao, Rasul & Vollgraf 2017; MIT licence): 60 000 + 10 000 grey 28x28
    images of 10 clothing classes.  Debian ships the original IDX files as the package
    ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist`` puts them in
    ``/usr/share/datasets/fashion-mnist``); :func:`read_idx` reads them with a few lines of
    numpy, gzip-compressed or not.

Images are returned NHWC (``(N, H, W, 1)``), the layout of :mod:`effai_fast.nn`, scaled to
[0, 1]; labels are ``int64``.  Every function returns a :class:`Split`
``(x_train, y_train, x_test, y_test)`` that unpacks like a tuple.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from effai_fast._extras import require
from effai_fast._validation import check_int, check_real, check_rng, float_dtype

__all__ = [
    "FASHION_MNIST_CLASSES",
    "Split",
    "load_digits",
    "load_fashion_mnist",
    "read_idx",
    "resize_images",
    "stratified_split",
    "stratified_subset",
]

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

#: Folders searched for the Fashion-MNIST IDX files, after ``$EFFAI_FASHION_MNIST``.
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)

_FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"); big-endian data.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class Split(NamedTuple):
    """A train/test split: ``x_train, y_train, x_test, y_test = split``."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the MNIST format), optionally gzip-compressed.

    Parameters
    ----------
    path : str or Path
        File name; a ``.gz`` suffix (or gzip magic bytes) means compressed.

    Returns
    -------
    numpy.ndarray
        The array in native byte order, with the shape stored in the header.

    Raises
    ------
    ValueError
        If the header is not a valid IDX header or the file is truncated.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path} is truncated (header)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape, dtype=np.int64))
    if len(raw) - header < count * dtype.itemsize:
        raise ValueError(f"{path} is truncated: header says shape {shape}, "
                         f"file holds {(len(raw) - header) // dtype.itemsize} items")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _find_fashion_dir(path) -> Path:
    candidates = []
    if path is not None:
        candidates.append(Path(path))
    else:
        env = os.environ.get("EFFAI_FASHION_MNIST")
        if env:
            candidates.append(Path(env))
        candidates.extend(Path(d) for d in FASHION_MNIST_DIRS)
    for folder in candidates:
        if all(_idx_file(folder, stem) is not None for stem in _FASHION_FILES.values()):
            return folder
    where = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"Fashion-MNIST IDX files not found (looked in {where}). Install the Debian package: "
        f"`apt-get install dataset-fashion-mnist`, or pass path= / set EFFAI_FASHION_MNIST to a "
        f"folder holding train-images-idx3-ubyte[.gz] and the three other files. effai_fast never "
        f"downloads data."
    )


def _idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bilinear interpolation weights, pixel centres aligned (align_corners=False,
    no antialiasing: PyTorch's ``interpolate(mode="bilinear")``)."""
    scale = n_in / n_out
    src = np.clip((np.arange(n_out) + 0.5) * scale - 0.5, 0, n_in - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = src - lo
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), lo), 1 - frac)
    np.add.at(m, (np.arange(n_out), hi), frac)
    return m


def resize_images(x, size: int) -> np.ndarray:
    """Bilinear resize of an NHWC batch to ``size x size`` (e.g. to study the resolution
    multiplier on small images).

    Parameters
    ----------
    x : ndarray (N, H, W, C)
    size : int
        Output side.

    Returns
    -------
    ndarray (N, size, size, C) of x's float dtype
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be an NHWC batch (4-D), got shape {x.shape}")
    size = check_int(size, "size", min_value=1)
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    rh = _interp_matrix(x.shape[1], size).astype(dtype)
    rw = _interp_matrix(x.shape[2], size).astype(dtype)
    out = np.einsum("ih,nhwc->niwc", rh, x.astype(dtype, copy=False))
    out = np.einsum("jw,niwc->nijc", rw, out)
    return np.ascontiguousarray(out)


def stratified_subset(y, n: int, seed=None) -> np.ndarray:
    """Indices of a class-stratified random subset of ``n`` of the labels ``y`` (sorted).

    Each class gets ``n`` times its frequency, rounded so that the total is exactly ``n``
    (largest remainders first).  Deterministic for a given ``seed``.
    """
    y = np.asarray(y)
    n = check_int(n, "n", min_value=1, max_value=len(y))
    rng = check_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (n / len(y))
    take = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: n - int(take.sum())]] += 1
    chosen = []
    for c, k in zip(classes, take):
        idx = np.flatnonzero(y == c)
        chosen.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(chosen))


def stratified_split(y, test_size: float = 0.25, seed=None) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)`` of a class-stratified random split of the labels ``y``.

    Parameters
    ----------
    y : array_like of int
        Labels.
    test_size : float, default=0.25
        Fraction in (0, 1) of the samples that go to the test set.
    seed : None, int or numpy.random.Generator
        Randomness (deterministic for a given seed).
    """
    y = np.asarray(y)
    test_size = check_real(test_size, "test_size", min_value=0.0, max_value=1.0,
                           min_inclusive=False, max_inclusive=False)
    n_test = int(round(test_size * len(y)))
    if not 1 <= n_test < len(y):
        raise ValueError(f"test_size={test_size} leaves an empty train or test set "
                         f"for {len(y)} samples")
    test = stratified_subset(y, n_test, seed)
    mask = np.ones(len(y), bool)
    mask[test] = False
    return np.flatnonzero(mask), test


def load_digits(test_size: float = 0.25, random_state=0, dtype=np.float32) -> Split:
    """scikit-learn's hand-written digits as NHWC images, split stratified.

    Parameters
    ----------
    test_size : float, default=0.25
        Fraction of the 1797 images held out for testing.
    random_state : None, int or numpy.random.Generator, default=0
        Seed of the stratified split.
    dtype : float32 or float64, default=float32

    Returns
    -------
    Split
        ``x_*`` of shape ``(n, 8, 8, 1)`` with values in [0, 1] (pixel / 16), ``y_*`` int64.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.

    Examples
    --------
    >>> from effai_fast.datasets import load_digits
    >>> x_train, y_train, x_test, y_test = load_digits()     # doctest: +SKIP
    >>> x_train.shape                                         # doctest: +SKIP
    (1348, 8, 8, 1)
    """
    dtype = float_dtype(dtype)
    datasets = require("sklearn.datasets", "load_digits")
    bunch = datasets.load_digits()
    x = (bunch.images / 16.0).astype(dtype)[..., None]
    y = bunch.target.astype(np.int64)
    train, test = stratified_split(y, test_size, random_state)
    return Split(np.ascontiguousarray(x[train]), y[train], np.ascontiguousarray(x[test]),
                 y[test])


def load_fashion_mnist(path=None, *, n_train: int | None = None, n_test: int | None = None,
                       random_state=0, dtype=np.float32) -> Split:
    """Fashion-MNIST from the locally installed IDX files.

    Parameters
    ----------
    path : str or Path, optional
        Folder holding the four IDX files (``.gz`` or not).  Default: ``$EFFAI_FASHION_MNIST``,
        then ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``).
    n_train, n_test : int, optional
        Take a class-stratified random subset of this many images (all when None).
    random_state : None, int or numpy.random.Generator, default=0
        Seed of the subsets.
    dtype : float32 or float64, default=float32

    Returns
    -------
    Split
        ``x_*`` of shape ``(n, 28, 28, 1)`` in [0, 1] (pixel / 255), ``y_*`` int64 in 0..9
        (names in :data:`FASHION_MNIST_CLASSES`).

    Raises
    ------
    FileNotFoundError
        If the files are not installed; the message says ``apt-get install
        dataset-fashion-mnist``.  Nothing is downloaded.
    """
    dtype = float_dtype(dtype)
    folder = _find_fashion_dir(path)
    arrays = {key: read_idx(_idx_file(folder, stem)) for key, stem in _FASHION_FILES.items()}
    for part in ("train", "test"):
        x, y = arrays["x_" + part], arrays["y_" + part]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(f"Fashion-MNIST {part} files in {folder} are inconsistent: images "
                             f"{x.shape}, labels {y.shape}")
    rng = check_rng(random_state)
    out = []
    for part, n in (("train", n_train), ("test", n_test)):
        x, y = arrays["x_" + part], arrays["y_" + part].astype(np.int64)
        if n is not None:
            idx = stratified_subset(y, check_int(n, f"n_{part}", min_value=1,
                                                 max_value=len(y)), rng)
            x, y = x[idx], y[idx]
        xf = np.empty(x.shape + (1,), dtype=dtype)
        np.multiply(x[..., None], dtype.type(1.0 / 255.0), out=xf, casting="unsafe")
        out.extend([xf, y])
    return Split(*out)
