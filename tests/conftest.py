"""Shared fixtures: a seed for randomized tests and the thread counts to test at."""

import os

import numpy as np
import pytest

# Tests pass a seed explicitly; EFFAI_TEST_SEED=any|<int> widens the search
# (as scikit-learn's SKLEARN_TESTS_GLOBAL_RANDOM_SEED does).
_SEED_ENV = os.environ.get("EFFAI_TEST_SEED", "0")
if _SEED_ENV == "any":
    _SEEDS = [int(np.random.SeedSequence().entropy % 2**31)]
else:
    _SEEDS = [int(s) for s in _SEED_ENV.split(",")]


@pytest.fixture(params=_SEEDS, ids=lambda s: f"seed{s}")
def seed(request):
    """An integer seed; every random draw in a test derives from it."""
    return request.param


@pytest.fixture
def rng(seed):
    """A numpy Generator seeded from :func:`seed`."""
    return np.random.default_rng(seed)


@pytest.fixture(params=[1, 2], ids=lambda n: f"threads{n}")
def n_threads(request):
    """Kernels are tested at 1 and at 2 OpenMP threads."""
    return request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["float32", "float64"])
def dtype(request):
    return request.param


def tol(dtype, f32=1e-5, f64=1e-12):
    """Relative tolerance for a float dtype."""
    return f32 if np.dtype(dtype) == np.float32 else f64
