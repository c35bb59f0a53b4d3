"""A downstream Cython module cimports effai_fast.distill._kd and runs the KD kernel nogil."""

import numpy as np
import pytest

pytest.importorskip("mesonbuild", reason="meson is a test extra")
pytest.importorskip("Cython", reason="Cython is a test extra")

from _consumer import build_consumer  # noqa: E402

CONSUMER = '''
from libc.stdint cimport int64_t
from effai_fast.distill._kd cimport kd_loss_rows, softmax_rows


def kd(float[:, ::1] s, float[:, ::1] t, int64_t[::1] y, double inv_t, double w_soft,
       double w_soft_grad, double w_hard, double w_hard_grad, float[:, ::1] g,
       double[::1] rows, int n_threads):
    cdef int status
    with nogil:
        status = kd_loss_rows(s, t, y, inv_t, w_soft, w_soft_grad, w_hard, w_hard_grad, g,
                              rows, n_threads)
    return status


def softmax(double[:, ::1] z, double inv_t, double[:, ::1] out):
    with nogil:
        softmax_rows(z, inv_t, out, 1)
'''


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    return build_consumer(tmp_path_factory.mktemp("distill_consumer"),
                          {"consumer.pyx": CONSUMER})


def test_downstream_module_calls_kd_kernels(consumer, rng):
    from effai_fast.distill import kd_loss, softmax

    zs = rng.standard_normal((40, 7)).astype(np.float32)
    zt = rng.standard_normal((40, 7)).astype(np.float32)
    y = rng.integers(0, 7, 40)
    g = np.empty_like(zs)
    rows = np.empty(40)
    # batchmean, T = 2, hard_weight = 0.25: soft 0.75 * T^2, grad 0.75 * T / B; hard 0.25 / B
    assert consumer.kd(zs, zt, y, 0.5, 3.0, 0.75 * 2 / 40, 0.25, 0.25 / 40, g, rows, 2) == 0
    loss, grad = kd_loss(zs, zt, temperature=2.0, labels=y, hard_weight=0.25)
    assert rows.sum() / 40 == pytest.approx(loss, rel=1e-12)
    np.testing.assert_array_equal(g, grad)
    z = rng.standard_normal((3, 5))
    out = np.empty_like(z)
    consumer.softmax(z, 1.0, out)
    np.testing.assert_allclose(out, softmax(z), rtol=1e-15)
