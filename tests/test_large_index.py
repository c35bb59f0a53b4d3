"""64-bit index arithmetic in the kernels.

Every kernel indexes with ``Py_ssize_t`` (pixel, row and element offsets are products such as
``n * H * W * C`` formed in 64 bits); the one place where a 32-bit quantity meets a length
that can exceed 2^31 is BLAS's ``int`` dimensions.  The pointwise weight gradient reduces
over all ``N * H * W`` pixels in one GEMM, so it goes through ``_gemm_long_k``, which cuts a
reduction longer than 2^30 into chunks accumulated in order.  The always-on tests drive that
chunking with small chunk sizes; ``EFFAI_BIGMEM=1`` runs kernels on arrays of more than 2^31
elements (about 8.6 GB each, minutes of work; opt-in).
"""

import os

import numpy as np
import pytest

from effai_fast.nn import _conv
from effai_fast.nn import functional as F

BIGMEM = os.environ.get("EFFAI_BIGMEM") == "1"


@pytest.mark.parametrize("k_max", [1, 2, 7, 63, 64, 65, 200, 1 << 30])
def test_chunked_reduction_gemm_equals_matmul(dtype, k_max):
    rng = np.random.default_rng(k_max)
    x = rng.standard_normal((130, 5)).astype(dtype)
    g = rng.standard_normal((130, 3)).astype(dtype)
    out = np.full((5, 3), np.nan, dtype)
    _conv._gemm_long_k_check(x, g, out, k_max)
    ref = x.astype(np.float64).T @ g.astype(np.float64)
    np.testing.assert_allclose(out, ref, rtol=1e-5 if dtype == np.float32 else 1e-12,
                               atol=1e-5 if dtype == np.float32 else 1e-12)


def test_unchunked_reduction_is_bitwise_one_gemm(dtype):
    # below the chunk size the weight gradient is a single GEMM, as before the change
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 9, 7, 6)).astype(dtype)
    w = rng.standard_normal((6, 4)).astype(dtype)
    g = rng.standard_normal((2, 9, 7, 4)).astype(dtype)
    _, gw, _ = F.pointwise_conv2d_vjp(x, w, g, n_threads=1)
    one = np.empty((6, 4), dtype)
    _conv._gemm_long_k_check(x.reshape(-1, 6), g.reshape(-1, 4), one, 1 << 30)
    np.testing.assert_array_equal(gw, one)


@pytest.mark.skipif(not BIGMEM, reason="set EFFAI_BIGMEM=1 (needs ~9 GB of free memory)")
def test_kernels_on_more_than_2_31_elements():
    from effai_fast.nn import _dense

    n = 32769 * 65536 + 3                      # 2^31 + 65539: past INT_MAX
    x = np.zeros(n, dtype=np.float32)
    x[-3:] = [-1.0, 2.0, -3.0]
    x[1 << 31] = -5.0
    x[(1 << 31) - 1] = 7.0
    _dense.act_forward(x, x, 1, 2)             # relu in place (the raw kernel allows it)
    assert x[1 << 31] == 0 and x[(1 << 31) - 1] == 7.0
    np.testing.assert_array_equal(x[-3:], [0.0, 2.0, 0.0])
    # global average pool: the reduction index n*P*C runs past 2^31
    x4 = x[: 32769 * 65536].reshape(1, 32769, 65536, 1)
    x4[...] = 0
    x4[0, -1, -1, 0] = 65536.0 * 32769
    pooled = F.global_avg_pool(x4)
    np.testing.assert_allclose(pooled, [[1.0]], rtol=1e-6)
