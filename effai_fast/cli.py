"""The ``effai`` command line.

Each capability contributes its subcommands from ``effai_fast/<pkg>/_cli.py``
(a ``register(subparsers)`` function), so this module only assembles them.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

from effai_fast._build_config import VERSION

# Subpackages whose _cli module adds subcommands, in the order --help lists them.
_CLI_MODULES = (
    "effai_fast.mobilenet._cli",
    "effai_fast.ad._cli",
    "effai_fast.hill._cli",
    "effai_fast.distill._cli",
    "effai_fast.additive._cli",
    "effai_fast.sparsegrid._cli",
    "effai_fast.surrogate._cli",
    "effai_fast.nn._cli",
)


def _cli_modules():
    for name in _CLI_MODULES:
        if importlib.util.find_spec(name.rsplit(".", 1)[0]) is None:
            continue
        if importlib.util.find_spec(name) is not None:
            yield importlib.import_module(name)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``effai`` command."""
    parser = argparse.ArgumentParser(
        prog="effai",
        description="effai_fast: efficient AI on multicore CPUs (compiled, parallel, measured).",
    )
    parser.add_argument("--version", action="version", version=f"effai_fast {VERSION}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    tour = sub.add_parser(
        "tour",
        help="run every capability on embedded data and report what efficient AI bought",
        description="Run each capability on embedded default data and print a short report "
        "of cost, speed and accuracy figures.",
    )
    tour.add_argument("-o", "--output", metavar="DIR", default=None,
                      help="also write the report (report.txt, report.json, figures) to DIR")
    tour.add_argument("--only", metavar="NAME", action="append", default=None,
                      help="run only this step (repeatable)")
    tour.add_argument("--threads", type=int, default=None,
                      help="OpenMP threads for the kernels (default: all usable cores)")
    tour.set_defaults(func=_run_tour)

    config = sub.add_parser("config", help="print the build and thread configuration")
    config.set_defaults(func=lambda args: _show_config())

    for module in _cli_modules():
        module.register(sub)
    return parser


def _show_config() -> int:
    from effai_fast import show_config

    show_config()
    return 0


def _run_tour(args) -> int:
    from effai_fast.tour import run_tour

    report = run_tour(output=args.output, only=args.only, n_threads=args.threads)
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``effai`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, ImportError, FileNotFoundError) as exc:
        print(f"effai: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
