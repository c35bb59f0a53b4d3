import io

import effai_fast
from effai_fast._config import config_dict


def test_show_config_prints_versions_and_threads():
    buf = io.StringIO()
    effai_fast.show_config(file=buf)
    text = buf.getvalue()
    for key in ("effai_fast", "compiler", "cython", "openmp_enabled", "default_n_threads",
                "numpy", "scipy", "OMP_NUM_THREADS"):
        assert key in text
    assert effai_fast.__version__ in text


def test_config_dict_is_consistent():
    info = config_dict()
    assert info["openmp_build"] in ("yes", "no")
    assert info["openmp_enabled"] == (info["openmp_build"] == "yes")
    assert info["default_n_threads"] >= 1


def test_lazy_subpackages():
    assert "hill" in dir(effai_fast)
    try:
        _ = effai_fast.no_such_thing
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("expected AttributeError")
