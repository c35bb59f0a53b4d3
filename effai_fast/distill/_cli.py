"""``effai distill``: train a teacher, then a hard-label and a distilled student, and compare."""

from __future__ import annotations

import argparse
import json

from effai_fast.distill._experiment import DATASETS, run_experiment


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "distill",
        help="knowledge distillation on real images: teacher vs hard-label vs distilled student",
        description="Train a teacher on hard labels, then the same small student twice (hard "
        "labels; distillation from the teacher's cached logits, loss (1 - hard_weight) T^2 "
        "KL + hard_weight CE) with identical initial weights and batches, and print test "
        "accuracy and MACs of all three.",
    )
    p.add_argument("--dataset", choices=DATASETS, default="digits")
    p.add_argument("--arch", choices=("mlp", "dscnn", "dscnn3", "mobilenet"),
                   default="mlp",
                   help="model family: MLP, shortened MobileNet v1 (depthwise-separable CNN "
                   "for small images: 5 blocks, or its first 3 blocks - issue 7's ~49k-MAC "
                   "digits student) or the full 13-block MobileNet v1")
    p.add_argument("--teacher-alpha", type=float, default=1.0,
                   help="width multiplier of the teacher (dscnn/mlp may exceed 1)")
    p.add_argument("--teacher-epochs", type=int, default=30)
    p.add_argument("--student-epochs", type=int, default=60)
    p.add_argument("--student-alpha", type=float, default=0.25,
                   help="width multiplier of the student relative to the teacher")
    p.add_argument("--temperature", "-T", type=float, default=4.0)
    p.add_argument("--hard-weight", type=float, default=0.1,
                   help="weight of the hard-label CE; the soft term gets 1 - hard_weight")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW learning rate (cosine)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n-train", type=int, default=None,
                   help="class-balanced training subset (fashion-mnist)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="student seeds (initial weights and batch order)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results here")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    try:
        r = run_experiment(args.dataset, arch=args.arch, student_alpha=args.student_alpha,
                           teacher_epochs=args.teacher_epochs,
                           student_epochs=args.student_epochs,
                           temperature=args.temperature, hard_weight=args.hard_weight,
                           lr=args.lr, batch_size=args.batch_size, seeds=tuple(args.seeds),
                           n_train=args.n_train, teacher_alpha=args.teacher_alpha)
    except (ValueError, TypeError, FileNotFoundError, ImportError, RuntimeError) as exc:
        print(f"effai distill: error: {exc}")
        return 2
    t = r["teacher"]
    n = len(r["students"])
    sd = (lambda k: f" +- {r[k]:.2f}") if n > 1 else (lambda k: "")
    rows = [
        ("teacher", f"{t['macs']:,}", "1x", f"{t['accuracy']:.2f}"),
        ("student, hard labels", f"{r['student_macs']:,}",
         f"{t['macs'] / r['student_macs']:.0f}x fewer", f"{r['hard_mean']:.2f}{sd('hard_sd')}"),
        (f"student, distilled T={r['temperature']:g}", f"{r['student_macs']:,}",
         f"{t['macs'] / r['student_macs']:.0f}x fewer", f"{r['kd_mean']:.2f}{sd('kd_sd')}"),
    ]
    print()
    print(f"{r['dataset']} ({r['n_train']} train / {r['n_test']} test), {r['arch']}, "
          f"student alpha={r['student_alpha']:g}, hard_weight={r['hard_weight']:g}, "
          f"{n} seed(s)")
    widths = [max(len(str(x)) for x in col) for col in zip(("model", "MACs", "", "accuracy %"),
                                                           *rows, strict=True)]
    for row in [("model", "MACs", "", "accuracy %")] + rows:
        print("  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))
    if "p_value" in r:
        print(f"  paired t-test, distilled vs hard labels over seeds: p = {r['p_value']:.3g}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(r, fh, indent=2, default=float)
    return 0
