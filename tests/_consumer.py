"""Build a downstream Cython module against the installed effai_fast .pxd files.

The pattern of SciPy's ``_test_cython_extension``: copy the sources of a small
consumer module to a temporary folder, build it with meson against the
installed package, and import it.
"""

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import effai_fast

HERE = Path(__file__).parent / "consumer"


def build_consumer(tmp_path: Path, extra_sources: dict[str, str] | None = None):
    """Build ``consumer.pyx`` (plus ``extra_sources``) and return the imported module."""
    src = tmp_path / "src"
    shutil.copytree(HERE, src)
    for name, text in (extra_sources or {}).items():
        (src / name).write_text(text)
    include = str(Path(effai_fast.__file__).resolve().parent.parent)
    build = tmp_path / "build"
    meson = [sys.executable, "-m", "mesonbuild.mesonmain"]
    subprocess.run(
        [*meson, "setup", str(build), str(src), f"-Deffai_include={include}",
         f"--native-file={_native_file(tmp_path)}"],
        check=True, capture_output=True, text=True,
    )
    subprocess.run([*meson, "compile", "-C", str(build)], check=True, capture_output=True,
                   text=True)
    so = next(build.glob("consumer*.so"))
    spec = importlib.util.spec_from_file_location("consumer", so)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _native_file(tmp_path: Path) -> Path:
    # Point meson at this interpreter (the venv the package is installed in).
    f = tmp_path / "native.ini"
    f.write_text(f"[binaries]\npython = '{sys.executable}'\n"
                 f"cython = ['{sys.executable}', '-m', 'cython']\n")
    return f
