"""The ISA build selector: widest runnable build, forced builds, refusals."""

import types

import pytest

from effai_fast._isa import select_build

BUILDS = {"baseline": "_base", "avx2": "_missing_avx2_build", "avx512": "_missing_avx512"}


def _baseline():
    return types.ModuleType("fake_baseline")


@pytest.mark.parametrize("level", [0, 1, 2])
def test_falls_back_to_baseline_when_wider_builds_are_absent(level):
    base = _baseline()
    name, mod = select_build("effai_fast", BUILDS, base, level, "EFFAI_TEST_ISA", None)
    assert name == "baseline" and mod is base


def test_picks_widest_installed_build_the_cpu_runs():
    base = _baseline()
    builds = {"baseline": "_base", "avx2": "_threads"}   # any importable module stands in
    name, mod = select_build("effai_fast", builds, base, 1, "EFFAI_TEST_ISA", None)
    assert name == "avx2" and mod.__name__ == "effai_fast._threads"
    name, mod = select_build("effai_fast", builds, base, 0, "EFFAI_TEST_ISA", None)
    assert name == "baseline" and mod is base


def test_environment_forces_a_build(monkeypatch):
    base = _baseline()
    builds = {"baseline": "_base", "avx2": "_threads"}
    monkeypatch.setenv("EFFAI_TEST_ISA", "baseline")
    assert select_build("effai_fast", builds, base, 1, "EFFAI_TEST_ISA")[1] is base
    monkeypatch.setenv("EFFAI_TEST_ISA", "AVX2")
    assert select_build("effai_fast", builds, base, 1, "EFFAI_TEST_ISA")[0] == "avx2"


def test_unknown_or_unsupported_isa_is_refused(monkeypatch):
    base = _baseline()
    with pytest.raises(ValueError, match="EFFAI_TEST_ISA must be auto or one of"):
        select_build("effai_fast", BUILDS, base, 2, "EFFAI_TEST_ISA", "sse9")
    with pytest.raises(ValueError, match="does not support"):
        select_build("effai_fast", BUILDS, base, 1, "EFFAI_TEST_ISA", "avx512")
    monkeypatch.setenv("EFFAI_TEST_ISA", "avx2")
    with pytest.raises(ValueError, match="EFFAI_TEST_ISA=avx2"):
        select_build("effai_fast", BUILDS, base, 0, "EFFAI_TEST_ISA")
