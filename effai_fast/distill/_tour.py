"""Tour step: distillation on real digits, and what the fused KD kernel costs."""

from __future__ import annotations

import time

import numpy as np


def _best(fn, repeat=5):
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _numpy_kd(zs, zt, t):
    """The same loss and gradient written with numpy/scipy (the reference a user would write)."""
    from scipy.special import log_softmax

    lps = log_softmax(zs / t, axis=1)
    lpt = log_softmax(zt / t, axis=1)
    pt = np.exp(lpt)
    loss = t * t * np.sum(pt * (lpt - lps)) / len(zs)
    grad = (t / len(zs)) * (np.exp(lps) - pt)
    return loss, grad


def run(report, n_threads=None) -> None:
    from effai_fast.distill import kd_loss
    from effai_fast.distill._experiment import run_experiment

    report.section("Knowledge distillation (teacher -> student, digits)")
    report.line("A large MLP teacher trains on hard labels; the same small student (alpha=0.25 "
                "width) then trains twice with identical weights and batches: on hard labels, "
                "and on 0.9 T^2 KL(teacher || student) + 0.1 CE at T=4 from the teacher's "
                "logits cached once per image.")
    try:
        r = run_experiment("digits", student_alpha=0.25, teacher_epochs=15, student_epochs=30,
                           seeds=(0,), log=lambda s: None)
    except ImportError as exc:
        report.line(f"  skipped: {exc}")
        r = None
    if r is not None:
        t, s = r["teacher"], r["students"][0]
        ratio = t["macs"] / r["student_macs"]
        report.table(["model", "MACs/image", "test acc %", "train s"], [
            ["teacher", t["macs"], round(t["accuracy"], 2), round(t["seconds"], 2)],
            ["student, hard labels", r["student_macs"], round(100 * s["hard"], 2),
             round(s["hard_seconds"], 2)],
            ["student, distilled", r["student_macs"], round(100 * s["kd"], 2),
             round(s["kd_seconds"], 2)],
        ])
        report.line(f"  the student costs {ratio:.0f}x fewer MACs; teacher logits cached in "
                    f"{t['cache_seconds'] * 1e3:.0f} ms, so a distillation epoch costs "
                    f"{s['kd_seconds'] / s['hard_seconds']:.2f}x a hard-label epoch "
                    f"(one seed; bench/bench_distill.py runs several and tests significance)")
        report.record("teacher_accuracy", t["accuracy"])
        report.record("hard_accuracy", 100 * s["hard"])
        report.record("kd_accuracy", 100 * s["kd"])
        report.record("mac_ratio", ratio)

    rng = np.random.default_rng(0)
    zs = (3 * rng.standard_normal((1024, 1000))).astype(np.float32)
    zt = (3 * rng.standard_normal((1024, 1000))).astype(np.float32)
    out = np.empty_like(zs)
    ours = _best(lambda: kd_loss(zs, zt, temperature=4.0, out=out, n_threads=n_threads))
    ref = _best(lambda: _numpy_kd(zs, zt, 4.0))
    l1, g1 = kd_loss(zs, zt, temperature=4.0)
    l2, g2 = _numpy_kd(zs.astype(np.float64), zt.astype(np.float64), 4.0)
    report.line(f"  fused kd_loss + gradient on (1024, 1000) float32: {ours * 1e3:.2f} ms vs "
                f"{ref * 1e3:.2f} ms for the numpy/scipy expression ({ref / ours:.1f}x); "
                f"relative difference of the loss {abs(l1 - l2) / l2:.1e}")
    z = (1000 * rng.choice([-1.0, 1.0], (4, 10))).astype(np.float32)
    l0, _ = kd_loss(z, z.copy(), temperature=4.0)
    lx, gx = kd_loss(z, -z, temperature=4.0)
    report.line(f"  identical logits give loss {l0!r}; logits of +-1000 in float32 give a "
                f"finite loss ({lx:.1f}) and gradient ({bool(np.isfinite(gx).all())})")
    report.record("kernel_speedup_vs_numpy", ref / ours)
