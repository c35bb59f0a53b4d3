"""Helpers shared by the benchmark scripts: timing, machine facts, tables.

Every ``bench/bench_<topic>.py`` times effai_fast against the peer a user would
pick instead, *in the same run*, and calls :func:`write_result` with a markdown
section; ``bench/run.py`` assembles ``bench/README.md`` from those sections.
"""

from __future__ import annotations

import gc
import importlib
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def timeit(fn, *, min_time: float = 0.2, repeat: int = 5, warmup: int = 1,
           max_calls: int = 10**7) -> dict:
    """Time ``fn()``; return seconds per call (best and median over ``repeat`` runs).

    Each run calls ``fn`` enough times to last about ``min_time`` seconds.
    """
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-9)
    number = int(min(max_calls, max(1, min_time / one)))
    runs = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            runs.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was:
            gc.enable()
    return {"best": min(runs), "median": statistics.median(runs), "number": number}


def have(module: str) -> bool:
    """Whether an optional peer can be imported."""
    try:
        importlib.import_module(module)
    except Exception:
        return False
    return True


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """Facts that a benchmark figure depends on."""
    import numpy
    import scipy

    import effai_fast
    from effai_fast._config import config_dict

    cfg = config_dict()
    info = {
        "cpu": _cpu_model(),
        "usable_cpus": cfg["usable_cpus"],
        "python": platform.python_version(),
        "effai_fast": effai_fast.__version__,
        "compiler": cfg["compiler"],
        "openmp": cfg["openmp_version"],
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "loadavg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    for peer in ("torch", "jax", "onnxruntime", "sklearn"):
        try:
            info[peer] = importlib.import_module(peer).__version__
        except Exception:
            pass
    try:
        info["git"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True,
                                     cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        pass
    return info


def md_table(headers, rows) -> str:
    """A markdown table; floats get 3-4 significant digits."""
    def fmt(v):
        if isinstance(v, float):
            if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-2):
                return f"{v:.3g}"
            return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
        return str(v)
    out = ["| " + " | ".join(str(h) for h in headers) + " |",
           "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def render_sections(parts, sections) -> str:
    """The stored sections of a multi-part benchmark in ``parts`` order, each
    followed by when it was measured, how long it took and the load at its end."""
    body = ""
    for part in parts:
        if part in sections:
            s = sections[part]
            body += (s["markdown"] + f"\n\n_(measured {s['measured']}, {s['seconds']:.0f} s, "
                     f"load {s['loadavg']:.1f})_\n\n")
    return body


def write_result(name: str, title: str, markdown: str, data=None, command: str = "") -> Path:
    """Write ``results/<name>.md`` (and ``.json``) for bench/README.md."""
    RESULTS.mkdir(exist_ok=True)
    info = machine_info()
    head = f"## {title}\n\n"
    if command:
        head += f"Reproduce: `{command}`  \n"
    head += (f"Measured {time.strftime('%Y-%m-%d')} on {info['cpu']} "
             f"({info['usable_cpus']} cores, load {info['loadavg']:.2f} at start), "
             f"effai_fast {info['effai_fast']} ({info.get('git', '?')}), "
             + ", ".join(f"{k} {info[k]}" for k in ("torch", "jax", "onnxruntime", "sklearn")
                         if k in info) + ".\n\n")
    path = RESULTS / f"{name}.md"
    path.write_text(head + markdown.strip() + "\n")
    if data is not None:
        (RESULTS / f"{name}.json").write_text(json.dumps({"machine": info, "data": data},
                                                         indent=2, default=float))
    print(head + markdown)
    return path
