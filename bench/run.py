"""Run the benchmarks and rebuild bench/README.md from their results.

Usage::

    pip install ".[bench]"
    python bench/run.py                 # every bench_*.py
    python bench/run.py conv hill       # only these
    python bench/run.py --quick         # smaller sizes, for a smoke run
    python bench/run.py --assemble      # only rebuild README.md from results/

Each benchmark runs in its own process (so OpenMP runtimes and thread
settings cannot leak between them) and writes ``results/<name>.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent

HEADER = """# Benchmarks

Every figure below was measured against the peer a user would pick instead, in
the same run, on the machine named in each section (2 cores, shared; quote
ratios, not absolute times).  Tests never time anything: speed lives here.

How to reproduce everything:

```
pip install ".[bench]"          # peers: torch==2.13.0 (CPU), onnxruntime, jax, scikit-learn, ...
python bench/run.py             # or: python bench/run.py conv autodiff hill ...
```

Timing rules: warm-up call first, then the best (and median) of 5 runs of
repeated calls; effai_fast is timed with preallocated ``out=`` buffers where the
API offers them, and each section says how the peers were timed.  OpenMP thread
counts are passed explicitly; ``OMP_WAIT_POLICY`` is left at its default unless a
section says otherwise.
"""


def discover() -> list[str]:
    return sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))


def assemble() -> None:
    sections = []
    for name in discover():
        md = HERE / "results" / f"{name}.md"
        if md.exists():
            sections.append(md.read_text().strip())
        else:
            sections.append(f"## {name}\n\nNot measured yet: `python bench/run.py {name}`.")
    (HERE / "README.md").write_text(HEADER + "\n" + "\n\n".join(sections) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    ap.add_argument("--assemble", action="store_true", help="only rebuild README.md")
    args = ap.parse_args(argv)
    available = discover()
    unknown = sorted(set(args.names) - set(available))
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; available: {available}")
    failed = []
    if not args.assemble:
        for name in args.names or available:
            t0 = time.perf_counter()
            cmd = [sys.executable, str(HERE / f"bench_{name}.py")] + (
                ["--quick"] if args.quick else [])
            print(f"== {name}: {' '.join(cmd)}", flush=True)
            if subprocess.run(cmd).returncode != 0:
                failed.append(name)
            print(f"== {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    assemble()
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
