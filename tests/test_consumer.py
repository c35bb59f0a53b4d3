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
