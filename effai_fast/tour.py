"""``effai tour``: every capability on embedded data, one short report.

Each capability contributes a step in ``effai_fast/<pkg>/_tour.py``: a
function ``run(report, n_threads)`` that computes a few honest figures (cost,
speed, accuracy) on data it generates or that ships with the package, and
writes them to the report.  A step that fails is reported and the tour goes on.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import time
import traceback
from pathlib import Path

__all__ = ["TourReport", "run_tour"]

# (step name, module) in the order the tour runs them.
STEPS = (
    ("config", "effai_fast.tour"),
    ("mobilenet", "effai_fast.mobilenet._tour"),
    ("conv", "effai_fast.nn._tour"),
    ("autodiff", "effai_fast.ad._tour"),
    ("hill", "effai_fast.hill._tour"),
    ("distill", "effai_fast.distill._tour"),
    ("additive", "effai_fast.additive._tour"),
    ("sparsegrid", "effai_fast.sparsegrid._tour"),
    ("surrogate", "effai_fast.surrogate._tour"),
)


class TourReport:
    """Collects the tour's text, tables and figures; prints as it goes.

    Parameters
    ----------
    output : str or Path, optional
        Folder for ``report.txt``, ``report.json`` and figures.
    echo : bool, default=True
        Print each line as it is added.
    """

    def __init__(self, output=None, echo: bool = True):
        self.output = Path(output) if output is not None else None
        self.echo = echo
        self.lines: list[str] = []
        self.records: dict[str, dict] = {}
        self.failures: list[str] = []
        self._step: str | None = None
        if self.output is not None:
            self.output.mkdir(parents=True, exist_ok=True)

    @property
    def ok(self) -> bool:
        return not self.failures

    def _emit(self, text: str) -> None:
        self.lines.append(text)
        if self.echo:
            print(text, flush=True)

    def section(self, title: str) -> None:
        self._emit("")
        self._emit(title)
        self._emit("-" * len(title))

    def line(self, text: str = "") -> None:
        self._emit(text)

    def record(self, key: str, value) -> None:
        """Store a figure under the current step for report.json."""
        self.records.setdefault(self._step or "tour", {})[key] = value

    def table(self, headers, rows) -> None:
        cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
        widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
        for k, row in enumerate(cells):
            self._emit("  " + "  ".join(c.rjust(w) for c, w in zip(row, widths)))
            if k == 0:
                self._emit("  " + "  ".join("-" * w for w in widths))

    def figure(self, fig, name: str) -> Path | None:
        """Save a matplotlib figure into the output folder (if any)."""
        if self.output is None:
            return None
        path = self.output / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        self.line(f"  figure: {path}")
        return path

    def save(self) -> None:
        if self.output is None:
            return
        (self.output / "report.txt").write_text("\n".join(self.lines) + "\n")
        (self.output / "report.json").write_text(
            json.dumps({"records": self.records, "failures": self.failures}, indent=2,
                       default=float)
        )


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def run(report: TourReport, n_threads=None) -> None:
    """The tour's first step: the build and thread configuration."""
    from effai_fast._config import config_dict

    info = config_dict()
    report.section("effai_fast " + info["effai_fast"])
    report.line(f"compiler {info['compiler']}, Cython {info['cython']}, "
                f"OpenMP {info['openmp_version']} ({'on' if info['openmp_enabled'] else 'OFF'}), "
                f"{info['default_n_threads']} thread(s) by default on "
                f"{info['usable_cpus']} usable CPU(s)")
    report.record("openmp", info["openmp_enabled"])


def run_tour(output=None, only=None, n_threads=None, echo: bool = True) -> TourReport:
    """Run the tour and return its report.

    Parameters
    ----------
    output : str or Path, optional
        Folder to write ``report.txt`` / ``report.json`` / figures into.
    only : list of str, optional
        Run only these steps (names as in :data:`STEPS`).
    n_threads : int, optional
        Thread count passed to every step.
    echo : bool, default=True
        Print while running.
    """
    names = [name for name, _ in STEPS]
    if only:
        unknown = sorted(set(only) - set(names))
        if unknown:
            raise ValueError(f"unknown tour step(s) {unknown}; choose from {names}")
    report = TourReport(output, echo=echo)
    t_start = time.perf_counter()
    for name, module_name in STEPS:
        if only and name not in only:
            continue
        if importlib.util.find_spec(module_name.rsplit(".", 1)[0]) is None or (
            importlib.util.find_spec(module_name) is None
        ):
            continue
        report._step = name
        t0 = time.perf_counter()
        try:
            importlib.import_module(module_name).run(report, n_threads=n_threads)
        except Exception as exc:  # a failing step is reported, the tour goes on
            report.failures.append(name)
            report.line(f"  step {name!r} FAILED: {type(exc).__name__}: {exc}")
            if echo:
                traceback.print_exc()
        report.record("seconds", round(time.perf_counter() - t0, 3))
    report._step = None
    report.line("")
    report.line(f"tour finished in {time.perf_counter() - t_start:.1f} s"
                + (f"; failed steps: {report.failures}" if report.failures else ""))
    report.save()
    return report
