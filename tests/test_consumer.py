import numpy as np
import pytest

pytest.importorskip("mesonbuild", reason="meson is a test extra")
pytest.importorskip("Cython", reason="Cython is a test extra")

from _consumer import build_consumer  # noqa: E402


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    return build_consumer(tmp_path_factory.mktemp("consumer"))


def test_downstream_module_cimports_openmp_shim(consumer):
    import effai_fast._openmp_helpers as h

    assert consumer.openmp_enabled() == h.openmp_enabled()
    assert consumer.max_threads() == h.max_threads()


def test_downstream_module_runs_parallel_code(consumer, rng):
    x = rng.standard_normal(10_001)
    assert consumer.parallel_sum(x, 2) == pytest.approx(x.sum(), rel=1e-12)


def test_downstream_module_calls_depthwise_kernel_nogil(consumer, rng, n_threads):
    from effai_fast.nn import functional as F

    x = rng.standard_normal((2, 9, 7, 20)).astype(np.float32)
    w = rng.standard_normal((3, 3, 20)).astype(np.float32)
    b = rng.standard_normal(20).astype(np.float32)
    out = np.empty_like(x)
    consumer.depthwise3x3_relu(x, w, b, out, n_threads)
    # functional may run an AVX2/AVX-512 build of the same source (FMA contraction).
    np.testing.assert_allclose(out, F.depthwise_conv2d(x, w, b, activation="relu"), rtol=1e-5,
                               atol=1e-5)
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    out64 = np.empty_like(x64)
    consumer.depthwise3x3_f64(x64, w64, np.zeros(20), out64, n_threads)
    np.testing.assert_allclose(out64, F.depthwise_conv2d(x64, w64), rtol=1e-12)
