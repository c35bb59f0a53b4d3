"""The installed package holds every source file of the tree (meson lists them by hand)."""

from pathlib import Path

import pytest

import effai_fast

SOURCE = Path(__file__).resolve().parent.parent / "effai_fast"
INSTALLED = Path(effai_fast.__file__).resolve().parent


@pytest.mark.skipif(INSTALLED == SOURCE, reason="editable install: the tree is the package")
@pytest.mark.parametrize("suffix", [".py", ".pxd", ".pyi"])
def test_every_source_file_is_installed(suffix):
    missing = [
        str(p.relative_to(SOURCE))
        for p in SOURCE.rglob(f"*{suffix}")
        if not (INSTALLED / p.relative_to(SOURCE)).exists()
    ]
    assert missing == [], f"not installed (add to a meson.build install_sources): {missing}"


def test_every_extension_module_imports():
    import importlib

    for pyx in SOURCE.rglob("*.pyx"):
        if "_x86_64_v" in pyx.stem:
            # ISA-specific builds (AVX2 / AVX-512) are imported only by their
            # dispatcher, after it checked the CPU; importing one directly on a
            # CPU without that ISA is an illegal instruction, by design.
            continue
        name = ".".join(("effai_fast",) + pyx.relative_to(SOURCE).with_suffix("").parts)
        importlib.import_module(name)
