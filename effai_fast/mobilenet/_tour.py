"""Tour step: MobileNet's cost model against the paper, the budget choice, a training demo."""

from __future__ import annotations

import time


def _separable_net(alpha: float, seed: int = 0):
    """Stem + two depthwise-separable blocks (MobileNet's building block) for 8x8 digits."""
    from effai_fast import nn
    from effai_fast.mobilenet import scaled_channels

    c0, c1, c2 = (scaled_channels(c, alpha) for c in (32, 64, 128))
    return nn.Sequential(
        nn.Conv2d(1, c0, 3, 1, 1, seed=seed), nn.BatchNorm(c0, activation="relu"),
        nn.DepthwiseConv2d(c0, 3, 1, 1, seed=seed), nn.BatchNorm(c0, activation="relu"),
        nn.PointwiseConv2d(c0, c1, seed=seed), nn.BatchNorm(c1, activation="relu"),
        nn.DepthwiseConv2d(c1, 3, 2, 1, seed=seed), nn.BatchNorm(c1, activation="relu"),
        nn.PointwiseConv2d(c1, c2, seed=seed), nn.BatchNorm(c2, activation="relu"),
        nn.GlobalAvgPool(), nn.Linear(c2, 10, seed=seed))


def run(report, n_threads=None) -> None:
    from effai_fast.mobilenet import (
        PAPER_TABLE6,
        PAPER_TABLE7,
        cost,
        fit_accuracy_model,
        optimal_multipliers,
    )

    report.section("MobileNet v1: exact cost vs Howard et al. 2017 (Tables 6, 7)")
    rows = []
    configs = [(a, 224, m, p) for a, _, m, p in PAPER_TABLE6]
    configs += [(1.0, r, m, p) for r, _, m, p in PAPER_TABLE7 if r != 224]
    for a, r, m, p in configs:
        c = cost(a, r)
        rows.append([a, r, round(c.macs / 1e6, 2), m, round(c.params / 1e6, 3), p])
    report.table(["alpha", "res", "MACs M (ours)", "paper", "params M (ours)", "paper"], rows)
    by = cost(1.0, 224).by_type()
    report.line(f"  1x1 convolutions: {by['Conv 1x1']['macs_pct']:.2f}% of mult-adds, "
                f"{by['Conv 1x1']['weights_pct']:.2f}% of weights (paper: 94.86% / 74.59%)")
    report.record("macs_alpha1_224", cost(1.0, 224).macs)

    report.section("Budget: the most accurate (alpha, rho) within 125 M mult-adds")
    model = fit_accuracy_model()
    report.line(f"  accuracy model fitted to the paper's ImageNet top-1: {model}")
    rows = []
    for method in ("ideal", "continuous", "menu"):
        s = optimal_multipliers(125e6, method=method, accuracy=model)
        exact = cost(s.alpha, s.resolution).macs
        acc = s.accuracy if s.accuracy is not None else float(model(s.alpha, s.rho))
        rows.append([method, round(s.alpha, 4), round(s.rho, 4), s.resolution,
                     round(exact / 1e6, 2), round(acc, 2)])
        report.record(f"budget_{method}", {"alpha": s.alpha, "rho": s.rho, "macs": exact,
                                           "accuracy": acc})
    report.table(["method", "alpha", "rho", "side", "exact MACs M", "pred. top-1"], rows)
    report.line("  ideal: alpha = rho = (B/C)^(1/4) assumes cost C*alpha^2*rho^2; its rounded "
                "network overshoots the budget (stem, depthwise and classifier do not scale as "
                "alpha^2 rho^2, feature maps are ceil(n/2)); 'continuous' solves the exact count.")

    try:
        from effai_fast.datasets import load_digits

        data = load_digits(random_state=0)
    except ImportError as exc:
        report.line(f"  training demo skipped: {exc}")
        return
    from effai_fast import nn
    from effai_fast.optim import SGD

    report.section("Training: depthwise-separable network on scikit-learn digits (8x8)")
    x_tr, y_tr, x_te, y_te = data
    rows = []
    for alpha in (0.25, 0.5):
        net = _separable_net(alpha, seed=0)
        opt = SGD(nn.param_groups(net, 1e-4), lr=0.1, momentum=0.9, nesterov=True)
        t0 = time.perf_counter()
        hist = net.fit(x_tr, y_tr, epochs=5, batch_size=32, optimizer=opt,
                       lr_schedule="cosine", seed=0, verbose=0, n_threads=n_threads)
        secs = time.perf_counter() - t0
        ev = net.evaluate(x_te, y_te, n_threads=n_threads)
        macs = net.macs((8, 8, 1))
        rows.append([alpha, macs, net.n_parameters(), round(100 * ev["accuracy"], 2),
                     round(secs, 2)])
        report.record(f"digits_alpha{alpha}", {"macs": macs, "accuracy": ev["accuracy"],
                                               "seconds": secs, "loss": hist.loss[-1]})
    report.table(["alpha", "MACs/image", "params", "test acc %", "train s (5 ep)"], rows)
    report.line(f"  {len(x_tr)} training / {len(x_te)} test images; the width multiplier cuts "
                f"mult-adds ~{rows[1][1] / rows[0][1]:.0f}x; seed 0, deterministic.")
