import os
import subprocess
import sys

import pytest

from effai_fast import _openmp_helpers, resolve_n_threads
from effai_fast._threads import threads_for_work, usable_cpu_count


def test_openmp_is_compiled_in():
    # CI builds with -Dopenmp=enabled; a serial wheel must not pass silently.
    assert _openmp_helpers.openmp_enabled()
    assert _openmp_helpers.openmp_version() >= 201107


@pytest.mark.skipif(usable_cpu_count() < 2, reason="needs 2 CPUs")
def test_parallel_region_really_runs_two_threads():
    assert _openmp_helpers.team_size(2) == 2
    assert _openmp_helpers.team_size(1) == 1


def test_resolve_conventions():
    n_cpus = usable_cpu_count()
    assert resolve_n_threads(1) == 1
    assert resolve_n_threads(3) == 3
    assert resolve_n_threads(-1) == n_cpus
    assert resolve_n_threads(-n_cpus - 5) == 1
    assert 1 <= resolve_n_threads(None) <= n_cpus


@pytest.mark.parametrize("bad", [1.5, "2", True, [2]])
def test_resolve_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="n_threads"):
        resolve_n_threads(bad)


def test_resolve_rejects_zero():
    with pytest.raises(ValueError, match="n_threads"):
        resolve_n_threads(0)


def test_threadpoolctl_limit_is_honoured():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
        assert resolve_n_threads(None) == 1
    assert resolve_n_threads(None) == min(usable_cpu_count(), _openmp_helpers.max_threads())


def test_omp_num_threads_is_honoured(tmp_path):
    code = "from effai_fast import resolve_n_threads; print(resolve_n_threads(None))"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True, cwd=tmp_path)  # not the source tree
    assert out.stdout.strip() == "1"


def test_threads_for_work_caps_by_grain():
    assert threads_for_work(2, work=10, grain=100) == 1
    assert threads_for_work(2, work=1000, grain=100) == 2
    assert threads_for_work(8, work=300, grain=100) == 3
    assert threads_for_work(1, work=1e9, grain=1) == 1
