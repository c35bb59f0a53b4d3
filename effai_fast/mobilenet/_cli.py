"""``effai mobilenet table`` and ``effai mobilenet budget``."""

from __future__ import annotations

import argparse

import numpy as np


def register(subparsers) -> None:
    """Add the ``mobilenet`` command and its subcommands."""
    p = subparsers.add_parser(
        "mobilenet", help="MobileNet v1 cost model (vs the paper) and budget optimiser",
        description="Exact cost of MobileNet v1 with width/resolution multipliers and the "
        "(alpha, rho) that maximise accuracy within a compute budget.")
    sub = p.add_subparsers(dest="mobilenet_command", metavar="SUBCOMMAND")
    p.set_defaults(func=lambda args: (p.print_help(), 0)[1])

    t = sub.add_parser("table", help="mult-adds and parameters, ours vs Howard et al. 2017",
                       description="Reproduce Tables 6, 7 and 2 of the MobileNet paper from "
                       "the exact per-layer count.")
    t.add_argument("--alpha", type=float, default=None,
                   help="also print the per-layer breakdown of this width multiplier")
    t.add_argument("--resolution", type=int, default=224,
                   help="input side for --alpha (default 224)")
    t.add_argument("--num-classes", type=int, default=1000)
    t.set_defaults(func=_table)

    b = sub.add_parser("budget", help="choose (alpha, rho) for a mult-add budget",
                       description="Maximise the (fitted or given) accuracy model subject to "
                       "the exact cost being within the budget.")
    b.add_argument("--macs", type=float, required=True,
                   help="multiply-adds per image allowed, e.g. 125e6")
    b.add_argument("--method", choices=("all", "continuous", "menu", "ideal"), default="all")
    b.add_argument("--num-classes", type=int, default=1000)
    b.add_argument("--points", metavar="CSV", default=None,
                   help="measured accuracies: a CSV file of alpha,rho,accuracy rows to fit the "
                   "accuracy model to (default: the paper's ImageNet results)")
    b.set_defaults(func=_budget)


def _table(args: argparse.Namespace) -> int:
    from effai_fast.mobilenet import PAPER_TABLE2, PAPER_TABLE6, PAPER_TABLE7, cost

    print("MobileNet v1 (Howard et al. 2017): exact count vs the paper")
    print()
    header = (f"{'alpha':>6} {'res':>4} | {'MACs (M) ours':>14} {'paper':>6} | "
              f"{'params (M) ours':>16} {'paper':>6}")
    print(header)
    print("-" * len(header))
    rows = [(a, 224, m, p) for a, _, m, p in PAPER_TABLE6]
    rows += [(1.0, r, m, p) for r, _, m, p in PAPER_TABLE7 if r != 224]
    for a, r, m, p in rows:
        c = cost(a, r, args.num_classes)
        print(f"{a:>6g} {r:>4d} | {c.macs / 1e6:>14.2f} {m:>6} | {c.params / 1e6:>16.4f} "
              f"{p:>6}")
    print()
    print("Table 2 (alpha=1, 224): share of mult-adds / of weights by layer type")
    by = cost(1.0, 224, args.num_classes).by_type()
    for kind, (pm, pp) in PAPER_TABLE2.items():
        print(f"  {kind:<16} ours {by[kind]['macs_pct']:6.2f}% / {by[kind]['weights_pct']:6.2f}%"
              f"   paper {pm:6.2f}% / {pp:6.2f}%")
    print("  (the paper's 1.19% for Conv 3x3 is a misprint: its shares add to 99.29%; the "
          "exact share is 1.91%)")
    if args.alpha is not None:
        print()
        c = cost(args.alpha, args.resolution, args.num_classes)
        print(c)
        print(c.table())
    return 0


def _budget(args: argparse.Namespace) -> int:
    from effai_fast.mobilenet import cost, fit_accuracy_model, optimal_multipliers

    points = None
    if args.points:
        points = np.loadtxt(args.points, delimiter=",", ndmin=2)
    model = fit_accuracy_model(points)
    print(f"budget: {args.macs / 1e6:.2f} M mult-adds per image")
    print(f"accuracy model: {model}")
    full = cost(1.0, 224, args.num_classes).macs
    methods = ("ideal", "continuous", "menu") if args.method == "all" else (args.method,)
    for method in methods:
        s = optimal_multipliers(args.macs, method=method, accuracy=model,
                                num_classes=args.num_classes)
        acc = s.accuracy if s.accuracy is not None else float(model(s.alpha, s.rho))
        line = (f"  {method:<10} alpha={s.alpha:.4f} rho={s.rho:.4f} (input {s.resolution}x"
                f"{s.resolution}): ")
        if method == "ideal":
            exact = cost(s.alpha, s.resolution, args.num_classes).macs
            line += (f"C_base*alpha^2*rho^2 = {s.macs / 1e6:.2f} M (exact count of the rounded "
                     f"network {exact / 1e6:.2f} M), predicted accuracy {acc:.2f}")
        else:
            line += (f"{s.macs / 1e6:.2f} M mult-adds (exact), {s.params / 1e6:.3f} M params, "
                     f"predicted accuracy {acc:.2f}")
        print(line)
    print(f"  (full network alpha=1, 224: {full / 1e6:.2f} M mult-adds; alpha = rho = "
          f"(B/C)^(1/4) = {(args.macs / full) ** 0.25:.4f} is the symmetric closed form)")
    return 0
