"""Knowledge distillation: fused KD kernel vs PyTorch, step cost, and accuracy on real data.

Parts (``--only`` picks some; the others keep their last results from results/distill.json):

``kernel``   fused ``kd_loss`` (loss + gradient) on (4096, 1000) float32 vs the PyTorch
             expression ``F.kl_div(log_softmax(zs/T), log_softmax(zt/T), log_target=True,
             reduction="batchmean") * T**2`` with autograd (forward + backward, and forward
             only), at 1 and 2 threads.
``step``     a distillation training step with cached teacher logits vs a hard-label step
             (same student, same batch); and the same student step in PyTorch.
``digits``   teacher, hard-label and distilled students on scikit-learn's digits (1257 / 540
             stratified split, random_state=0), several seeds, paired t-test; the same
             architecture trained with PyTorch from the same initial weights and batches;
             accuracy vs MACs for several student widths.
``fashion``  Fashion-MNIST setups of issue 7 (2,000- and 10,000-image class-balanced subsets,
             full 10k test set), as far as CPU time allows.

Run: ``python bench/bench_distill.py [--quick] [--only kernel,step,digits,fashion]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # see _experiment.blas_single_thread

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, have, md_table, render_sections, timeit, write_result  # noqa: E402

from effai_fast.distill import kd_loss  # noqa: E402
from effai_fast.distill._experiment import (  # noqa: E402
    CNN_ARCHS,
    ISSUE7_RECIPE,
    blas_single_thread,
    load_dataset,
    make_model,
    make_torch_twin,
    run_experiment,
    torch_layout,
    torch_train,
)
from effai_fast.distill.trainer import Distiller, predict_logits  # noqa: E402

PARTS = ("kernel", "step", "digits", "fashion", "cnn_digits", "cnn_digits_select",
         "cnn_digits_tuned", "cnn_digits_swap", "cnn_fashion", "cnn_fashion10k",
         "cnn_fashion10k_e30", "cnn_step", "cnn_profile")


# --------------------------------------------------------------------------- kernel
def bench_kernel(quick: bool) -> tuple[str, dict]:
    b, c, t = (1024, 1000, 4.0) if quick else (4096, 1000, 4.0)
    rng = np.random.default_rng(0)
    zs = (3 * rng.standard_normal((b, c))).astype(np.float32)
    zt = (3 * rng.standard_normal((b, c))).astype(np.float32)
    out = np.empty_like(zs)
    rows, data = [], {}
    torch = None
    if have("torch"):
        import torch
        import torch.nn.functional as F  # noqa: N812
        xs, xt = torch.from_numpy(zs), torch.from_numpy(zt)

        def torch_fb():
            z = xs.detach().requires_grad_()
            loss = F.kl_div(F.log_softmax(z / t, dim=1), F.log_softmax(xt / t, dim=1),
                            log_target=True, reduction="batchmean") * (t * t)
            loss.backward()
            return z.grad

        def torch_f():
            with torch.no_grad():
                return F.kl_div(F.log_softmax(xs / t, dim=1), F.log_softmax(xt / t, dim=1),
                                log_target=True, reduction="batchmean") * (t * t)
    for n in (1, 2):
        ours = timeit(lambda: kd_loss(zs, zt, temperature=t, out=out, n_threads=n))["best"]  # noqa: B023
        rec = {"ours_ms": ours * 1e3}
        if torch is not None:
            torch.set_num_threads(n)
            fb = timeit(torch_fb)["best"]
            f = timeit(torch_f)["best"]
            rec.update(torch_fb_ms=fb * 1e3, torch_f_ms=f * 1e3)
            rows.append([n, ours * 1e3, fb * 1e3, f * 1e3, fb / ours, f / ours])
        else:
            rows.append([n, ours * 1e3, "-", "-", "-", "-"])
        data[f"threads{n}"] = rec
    md = (f"### Fused kd_loss kernel, ({b}, {c}) float32, T={t:g}\n\n"
          "Ours: loss **and** gradient w.r.t. the student logits in one pass (`out=` buffer). "
          "PyTorch: the expression of the issue, `F.kl_div(F.log_softmax(zs/T), "
          "F.log_softmax(zt/T), log_target=True, reduction=\"batchmean\") * T**2`, timed with "
          "autograd (forward + `backward()`, the work that gives the same two results) and "
          "forward only (loss without gradient), `torch.set_num_threads(n)`.\n\n"
          + md_table(["threads", "ours ms", "torch fwd+bwd ms", "torch fwd only ms",
                      "speed-up vs fwd+bwd", "speed-up vs fwd only"], rows))
    return md, data


# --------------------------------------------------------------------------- step
def _torch_mlp_from(model):
    """A torch.nn.Sequential with the same weights as an effai_fast MLP (``_Flat``)."""
    return make_torch_twin(model, "mlp", "digits", None, 10, alpha=1.0)


def _torch_kd_step(net, opt, xt, yt, tt):
    """One PyTorch distillation step: 0.9 T^2 KL(batchmean) + 0.1 CE at T=4, AdamW."""
    import torch.nn.functional as F  # noqa: N812

    opt.zero_grad()
    z = net(xt)
    loss = 0.9 * 16.0 * F.kl_div(F.log_softmax(z / 4, 1), F.log_softmax(tt / 4, 1),
                                 log_target=True, reduction="batchmean") \
        + 0.1 * F.cross_entropy(z, yt)
    loss.backward()
    opt.step()


def bench_step(quick: bool) -> tuple[str, dict]:
    xtr, ytr, xte, yte = load_dataset("digits")
    shape = xtr.shape[1:]
    teacher = make_model("mlp", "digits", shape, 10, alpha=1.0, seed=1000)
    cache = predict_logits(teacher, xtr)
    rows, data = [], {}
    for batch in (64, 256):
        xb, yb, tb = xtr[:batch], ytr[:batch], cache[:batch]
        s_kd = make_model("mlp", "digits", shape, 10, alpha=0.25, seed=0)
        s_hd = make_model("mlp", "digits", shape, 10, alpha=0.25, seed=0)
        d_kd = Distiller(teacher, s_kd, temperature=4.0, hard_weight=0.1, lr=1e-4)
        d_hd = Distiller(None, s_hd, hard_weight=1.0, lr=1e-4)
        with blas_single_thread():
            # interleave to share the machine's load fairly between the two
            kd_t, hd_t = [], []
            for _ in range(3):
                kd_t.append(timeit(lambda: d_kd.train_step(xb, yb, tb), repeat=3)["best"])  # noqa: B023
                hd_t.append(timeit(lambda: d_hd.train_step(xb, yb), repeat=3)["best"])  # noqa: B023
        kd, hd = min(kd_t), min(hd_t)
        rec = {"kd_ms": kd * 1e3, "hard_ms": hd * 1e3, "ratio": kd / hd}
        torch_cells = ["-", "-"]
        if have("torch"):
            import torch
            net = _torch_mlp_from(s_hd)
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.0)
            xt = torch.from_numpy(xb.reshape(batch, -1))
            yt = torch.from_numpy(yb)
            tt = torch.from_numpy(tb)

            def tstep():
                _torch_kd_step(net, opt, xt, yt, tt)  # noqa: B023
            for n in (1, 2):
                torch.set_num_threads(n)
                rec[f"torch_kd_ms_t{n}"] = timeit(tstep, repeat=3)["best"] * 1e3
            torch_cells = [rec["torch_kd_ms_t1"], rec["torch_kd_ms_t2"]]
        rows.append([batch, hd * 1e3, kd * 1e3, kd / hd, *torch_cells])
        data[f"batch{batch}"] = rec
    md = ("### Distillation step vs hard-label step (digits MLP student 64-64-64-10)\n\n"
          "One optimisation step (forward, loss + gradient, backward, AdamW) of the same "
          "student on the same batch: hard labels (`cross_entropy`) vs distillation with "
          "cached teacher logits (`kd_loss`, T=4, hard_weight=0.1).  Issue target: ratio "
          "<= 1.10.  PyTorch: the same architecture and distillation step (`torch.optim.AdamW`)"
          " at 1 and 2 threads, for scale (the student's layers are effai_fast.nn's).\n\n"
          + md_table(["batch", "hard step ms", "KD step ms", "KD / hard",
                      "torch KD step ms (1 thr)", "torch KD step ms (2 thr)"], rows))
    return md, data


# --------------------------------------------------------------------------- torch twin
def _torch_acc(net, x, y):
    import torch

    with torch.no_grad():
        z = net(torch.from_numpy(x.reshape(len(x), -1)))
    return float((z.argmax(1).numpy() == y).mean())


def _compare_torch(r, data, cache, *, epochs, lr, batch_size, alpha, temperature,
                   hard_weight, dataset):
    """Re-train each seed's students with PyTorch (same init / batches) and add to ``r``."""
    if not have("torch"):
        return
    import torch

    xtr, ytr, xte, yte = data
    shape = xtr.shape[1:]
    for rec in r["students"]:
        init = make_model("mlp", dataset, shape, 10, alpha=alpha, seed=rec["seed"])
        for mode in ("hard", "kd"):
            torch.set_num_threads(1)
            net = torch_train(_torch_mlp_from(init), torch_layout(xtr, "mlp"), ytr,
                              cache if mode == "kd" else None, epochs=epochs, lr=lr,
                              batch_size=batch_size, seed=rec["seed"],
                              temperature=temperature, hard_weight=hard_weight)
            rec["torch_" + mode] = _torch_acc(net, xte, yte)
    for mode in ("hard", "kd"):
        v = np.array([rec["torch_" + mode] for rec in r["students"]]) * 100
        r[f"torch_{mode}_mean"] = float(v.mean())
        r[f"torch_{mode}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _setup_row(name, r):
    n = len(r["students"])
    row = [name, n, r["teacher"]["macs"], r["student_macs"],
           round(r["teacher"]["macs"] / r["student_macs"], 1),
           round(r["teacher"]["accuracy"], 2),
           f"{r['hard_mean']:.2f} ± {r['hard_sd']:.2f}", f"{r['kd_mean']:.2f} ± {r['kd_sd']:.2f}",
           f"{r['kd_mean'] - r['hard_mean']:+.2f}",
           f"{r['p_value']:.3g}" if "p_value" in r else "-"]
    if "torch_hard_mean" in r:
        row += [f"{r['torch_hard_mean']:.2f} ± {r['torch_hard_sd']:.2f}",
                f"{r['torch_kd_mean']:.2f} ± {r['torch_kd_sd']:.2f}"]
    else:
        row += ["-", "-"]
    return row


_SETUP_HEAD = ["setup", "seeds", "teacher MACs", "student MACs", "MAC ratio", "teacher acc %",
               "hard acc % (ours)", "KD acc % (ours)", "KD - hard", "p (paired t)",
               "hard acc % (torch)", "KD acc % (torch)"]


def _run_setup(name, dataset, *, alpha, seeds, teacher_epochs, student_epochs, temperature,
               hard_weight, lr, batch_size, n_train=None, torch_twin=True, data=None,
               arch="mlp", teacher_alpha=1.0, models=None, torch_teacher=True,
               weight_decay=0.0):
    print(f"== {name}", flush=True)
    data = data if data is not None else load_dataset(dataset, n_train=n_train)
    models = {} if models is None else models
    cnn_twin = torch_twin and arch in CNN_ARCHS and have("torch")
    if cnn_twin:
        import torch

        torch.set_num_threads(1)
    r = run_experiment(dataset, arch=arch, student_alpha=alpha, seeds=seeds,
                       teacher_epochs=teacher_epochs, student_epochs=student_epochs,
                       temperature=temperature, hard_weight=hard_weight, lr=lr,
                       batch_size=batch_size, data=data, models=models,
                       teacher_alpha=teacher_alpha, weight_decay=weight_decay,
                       torch_twin=cnn_twin, torch_teacher=torch_teacher,
                       n_threads=1 if arch in CNN_ARCHS else None)
    r["teacher_epochs"] = teacher_epochs
    r["student_epochs"] = student_epochs
    r["teacher_alpha"] = teacher_alpha
    if torch_twin and arch == "mlp":
        with blas_single_thread():
            _compare_torch(r, data, models["teacher_logits"], epochs=student_epochs, lr=lr,
                           batch_size=batch_size, alpha=alpha, temperature=temperature,
                           hard_weight=hard_weight, dataset=dataset)
    return r


def bench_digits(quick: bool) -> tuple[str, dict]:
    seeds = (0, 1) if quick else (0, 1, 2, 3, 4)
    te, se = (10, 20) if quick else (30, 60)
    common = dict(teacher_epochs=te, student_epochs=se, lr=3e-3, batch_size=64)
    data = load_dataset("digits")
    main = _run_setup("digits alpha=0.25 T=4", "digits", alpha=0.25, seeds=seeds,
                      temperature=4.0, hard_weight=0.1, data=data, **common)
    rows = [_setup_row("digits, alpha=0.25, T=4, hard_weight=0.1", main)]
    setups = {"digits_a0.25_T4": main}
    macs_rows = [["teacher (alpha=1)", main["teacher"]["macs"],
                  round(main["teacher"]["accuracy"], 2), "-"]]
    for alpha in ((0.125,) if quick else (0.0625, 0.125, 0.25, 0.5)):
        r = main if alpha == 0.25 else _run_setup(
            f"digits alpha={alpha}", "digits", alpha=alpha, seeds=seeds[:3], temperature=4.0,
            hard_weight=0.1, data=data, torch_twin=False, **common)
        setups[f"digits_a{alpha}_T4"] = r
        macs_rows.append([f"student alpha={alpha}", r["student_macs"],
                          f"{r['hard_mean']:.2f} ± {r['hard_sd']:.2f}",
                          f"{r['kd_mean']:.2f} ± {r['kd_sd']:.2f}"])
    md = ("### Digits: teacher, hard-label and distilled students\n\n"
          "scikit-learn digits, `train_test_split(test_size=0.3, stratify=y, random_state=0)`"
          f" (1257 / 540).  Models: effai_fast.nn MLPs (teacher 64-256-256-10; student = "
          "the teacher with every hidden width times alpha), AdamW lr 3e-3 with a cosine "
          f"schedule, batch 64, teacher {te} epochs, students {se} epochs, no augmentation, "
          "teacher logits cached once per image.  For each seed both students start from "
          "the same weights and see the same batches.  PyTorch columns: the same "
          "architecture, initial weights, batches, loss and schedule trained with "
          "torch.optim.AdamW (our trainer's reference).  Significance: "
          "`scipy.stats.ttest_rel` over seeds (KD vs hard).\n\n"
          + md_table(_SETUP_HEAD, rows)
          + "\n\nAccuracy vs MACs (MACs per image; mean ± sd over seeds, 3 seeds for the "
            "other widths):\n\n"
          + md_table(["model", "MACs", "hard acc %", "KD acc % (T=4)"], macs_rows))
    return md, setups


def bench_fashion(quick: bool) -> tuple[str, dict]:
    try:
        load_dataset("fashion-mnist", n_train=100)
    except FileNotFoundError as exc:
        return f"### Fashion-MNIST\n\nNot run: {exc}", {}
    rows, setups = [], {}
    plan = [
        ("fashion 2k, alpha=0.5, T=4", dict(n_train=2000, alpha=0.5, temperature=4.0,
                                            seeds=(0,) if quick else (0, 1, 2))),
        ("fashion 10k, alpha=0.25, T=8", dict(n_train=10000, alpha=0.25, temperature=8.0,
                                              seeds=(0,) if quick else (0, 1, 2))),
    ]
    te, se = (3, 5) if quick else (20, 30)
    for name, kw in plan:
        r = _run_setup(name, "fashion-mnist", teacher_epochs=te, student_epochs=se,
                       hard_weight=0.1, lr=2e-3, batch_size=64,
                       torch_twin=not quick, **kw)
        setups[name] = r
        rows.append(_setup_row(name, r))
    md = ("### Fashion-MNIST\n\n"
          "Debian `dataset-fashion-mnist`, class-balanced training subsets (n/10 per class, "
          "seed 0), full 10k test set.  effai_fast.nn MLPs (teacher 784-512-512-10, student "
          f"= widths x alpha), AdamW lr 2e-3 cosine, batch 64, teacher {te} epochs, students "
          f"{se} epochs, hard_weight=0.1, cached teacher logits, no augmentation; PyTorch "
          "twin as for digits.\n\n" + md_table(_SETUP_HEAD, rows))
    return md, setups


# --------------------------------------------------------------------------- CNN students
_CNN_NOTE = (
    "Students and teacher are the *shortened MobileNet v1* of `effai_fast.distill._experiment."
    "make_dscnn` (issue 7 asks for a \"MobileNet-v1 style depthwise-separable CNN\"): a 3x3 "
    "stem convolution with 32*alpha filters, then five depthwise-separable blocks with the "
    "paper's first widths 64, 128, 128, 256, 256 (times alpha; depthwise strides 1, 2, 1, 2, "
    "1), each depthwise 3x3 + BN + ReLU and pointwise 1x1 + BN + ReLU, global average "
    "pooling, a linear classifier.  The full 13-block MobileNet would reduce an 8x8 digit to "
    "1x1 after its fourth stride and spend most of its mult-adds there.  Teacher: the same "
    "network at alpha=2 (twice the paper's widths), trained by us on hard labels.  AdamW "
    "(weight decay 0) with a cosine schedule, batch 64, no augmentation; teacher logits "
    "cached once per image; for each seed the hard-label and the distilled student start "
    "from the same weights and see the same batches, KD loss "
    "`0.9 * T^2 * KL(batchmean) + 0.1 * CE`.  Significance: `scipy.stats.ttest_rel` over "
    "seeds (KD vs hard).")


_CNN_HEAD = ["setup", "seeds", "teacher MACs", "student MACs", "MAC ratio",
             "teacher acc % (ours / torch)", "hard acc % (ours)", "KD acc % (ours)",
             "KD - hard (ours)", "p (ours)", "hard acc % (torch)", "KD acc % (torch)",
             "KD - hard (torch)", "p (torch)"]


def _p(v):
    return "-" if v is None else f"{v:.3g}"


def _cnn_row(name, r):
    t = r["teacher"]
    tacc = f"{t['accuracy']:.2f} / " + (f"{t['torch_accuracy']:.2f}" if "torch_accuracy" in t
                                        else "(ours)")
    row = [name, len(r["students"]), t["macs"], r["student_macs"],
           round(t["macs"] / r["student_macs"], 1), tacc,
           f"{r['hard_mean']:.2f} ± {r['hard_sd']:.2f}", f"{r['kd_mean']:.2f} ± {r['kd_sd']:.2f}",
           f"{r['kd_mean'] - r['hard_mean']:+.2f}", _p(r.get("p_value"))]
    if "torch_hard_mean" in r:
        row += [f"{r['torch_hard_mean']:.2f} ± {r['torch_hard_sd']:.2f}",
                f"{r['torch_kd_mean']:.2f} ± {r['torch_kd_sd']:.2f}",
                f"{r['torch_kd_mean'] - r['torch_hard_mean']:+.2f}",
                _p(r.get("torch_p_value"))]
    else:
        row += ["-"] * 4
    return row


def _seed_table(r):
    rows = [[s["seed"], f"{100 * s['hard']:.2f}", f"{100 * s.get('torch_hard', np.nan):.2f}",
             f"{100 * s['kd']:.2f}", f"{100 * s.get('torch_kd', np.nan):.2f}"]
            for s in r["students"]]
    return md_table(["seed", "hard (ours)", "hard (torch)", "KD (ours)", "KD (torch)"], rows)


_TWIN_NOTE = (
    "  PyTorch columns: the same network (`make_torch_twin`: `torch_dscnn` holding our "
    "initial weights) trained by `torch_train` - the same batches, cosine schedule, "
    "`torch.optim.AdamW`, loss and batch-norm updates (tests/test_distill_dscnn.py checks "
    "that a few steps of both agree to round-off in float64).  Both libraries at 1 thread.")


_CNN3_NOTE = (
    "Students and teacher are `arch=\"dscnn3\"` of `effai_fast.distill._experiment`: the "
    "shortened MobileNet v1 cut after its third block - a 3x3 stem convolution with 32*alpha "
    "filters, then three depthwise-separable blocks with the paper's first widths 64, 128, "
    "128 (times alpha; depthwise strides 1, 2, 1), each depthwise 3x3 + BN + ReLU and "
    "pointwise 1x1 + BN + ReLU, global average pooling, a linear classifier.  At alpha=0.25 "
    "it costs 49,216 MACs on 8x8 digits, the issue's \"~49k MACs\" student.  Teacher: the "
    "same network at alpha=2, trained on hard labels.  The recipe is `ISSUE7_RECIPE`: AdamW "
    "(weight decay 0) with a cosine schedule, lr 3e-3, batch 64, no augmentation; teacher "
    "logits cached once per image; for each seed the hard-label and the distilled student "
    "start from the same weights and see the same batches, KD loss "
    "`0.9 * T^2 * KL(batchmean) + 0.1 * CE`.  Significance: `scipy.stats.ttest_rel` over "
    "seeds (KD vs hard).")


def bench_cnn_digits(quick: bool) -> tuple[str, dict]:
    rec = ISSUE7_RECIPE
    seeds = (0, 1) if quick else (0, 1, 2, 3, 4)
    te, se = (2, 3) if quick else (rec["teacher_epochs"], rec["student_epochs"])
    r = _run_setup("digits dscnn3 alpha=0.25 T=4", "digits", alpha=rec["student_alpha"],
                   seeds=seeds, teacher_epochs=te, student_epochs=se,
                   temperature=rec["temperature"], hard_weight=rec["hard_weight"],
                   lr=rec["lr"], batch_size=rec["batch_size"], arch=rec["arch"],
                   teacher_alpha=rec["teacher_alpha"], weight_decay=rec["weight_decay"],
                   torch_twin=True, torch_teacher=True)
    md = ("### Digits, MobileNet-style CNN students (issue 7's setup)\n\n"
          "scikit-learn digits, `train_test_split(test_size=0.3, stratify=y, random_state=0)`"
          " (1257 / 540), 8x8 inputs (stem stride 1).  " + _CNN3_NOTE
          + f"  Teacher {te} epochs, students {se} epochs."
          + _TWIN_NOTE + "  The PyTorch teacher is trained the same way from the same "
          "initial weights, and the PyTorch students distil from its logits (the whole "
          "pipeline twice).\n\n"
          + md_table(_CNN_HEAD, [_cnn_row("digits, dscnn3 alpha=0.25, T=4", r)])
          + "\n\nPer seed (accuracy %):\n\n" + _seed_table(r))
    return md, {"digits_dscnn_a0.25_T4": r}


# Recipe selection for the digits CNN on a validation split of the training images only.
# The test set is not looked at while choosing; the chosen recipe is then run once on it
# (part cnn_digits_tuned).  Candidates: the knobs the issue leaves open - teacher width and
# epochs, temperature, student epochs, hard_weight - varied one at a time around
# ISSUE7_RECIPE (a full grid does not fit in the session's CPU time).
_SELECT_CANDIDATES = (
    # (label, changes to ISSUE7_RECIPE)
    ("ISSUE7_RECIPE (teacher a=2, 20 ep; T=4; student 100 ep; hw 0.1)", {}),
    ("T=2", {"temperature": 2.0}),
    ("T=8", {"temperature": 8.0}),
    ("hard_weight=0.5", {"hard_weight": 0.5}),
    ("student 200 epochs", {"student_epochs": 200}),
    ("teacher 40 epochs", {"teacher_epochs": 40}),
    ("teacher alpha=2.125 (51x the student's MACs)", {"teacher_alpha": 2.125}),
)
_SELECT_SEEDS = (0, 1, 2)


def _digits_validation_split():
    """The 1257 digits training images split 1005 / 252 (stratified, random_state=0)."""
    from sklearn.model_selection import train_test_split

    xtr, ytr, _, _ = load_dataset("digits")
    xa, xv, ya, yv = train_test_split(xtr, ytr, test_size=0.2, stratify=ytr, random_state=0)
    return np.ascontiguousarray(xa), ya, np.ascontiguousarray(xv), yv


def bench_cnn_digits_select(quick: bool) -> tuple[str, dict]:
    """Choose the digits CNN recipe on a validation split (never on the test set)."""
    xa, ya, xv, yv = _digits_validation_split()
    shape = xa.shape[1:]
    seeds = (0,) if quick else _SELECT_SEEDS
    cands = _SELECT_CANDIDATES[:2] if quick else _SELECT_CANDIDATES
    if CANDIDATES is not None:     # --candidates: a subset, one process each (see _merge)
        cands = [_SELECT_CANDIDATES[i] for i in CANDIDATES]
    base_hkey = (ISSUE7_RECIPE["student_epochs"], ISSUE7_RECIPE["lr"])
    teachers: dict = {}
    hard: dict = {}
    data = {"candidates": []}
    with blas_single_thread():
        for label, change in cands:
            rec = dict(ISSUE7_RECIPE, **change)
            if quick:
                rec.update(teacher_epochs=2, student_epochs=2)
            common = dict(lr=rec["lr"], batch_size=rec["batch_size"],
                          weight_decay=rec["weight_decay"])
            tkey = (rec["teacher_alpha"], rec["teacher_epochs"], rec["lr"])
            if tkey not in teachers:
                t = make_model(rec["arch"], "digits", shape, 10, alpha=rec["teacher_alpha"],
                               seed=1000)
                t.n_threads = 1
                Distiller(None, t, hard_weight=1.0, epochs=rec["teacher_epochs"], seed=1000,
                          **common).fit(xa, ya)
                teachers[tkey] = (t, predict_logits(t, xa),
                                  float(np.mean(predict_logits(t, xv).argmax(1) == yv)),
                                  model_macs_of(t, shape))
            t, cache, t_acc, t_macs = teachers[tkey]
            hkey = (rec["student_epochs"], rec["lr"])
            kd_acc, hard_acc = [], []
            for seed in seeds:
                accs = {}
                # a candidate that changes neither the student's epochs nor its lr has the
                # unchanged recipe's hard-label students: in a --candidates process they are
                # taken from candidate 0's section when merging
                skip_hard = CANDIDATES is not None and hkey == base_hkey and label != \
                    _SELECT_CANDIDATES[0][0]
                modes = ("kd",) if (hkey, seed) in hard or skip_hard else ("hard", "kd")
                for mode in modes:
                    st = make_model(rec["arch"], "digits", shape, 10,
                                    alpha=rec["student_alpha"], seed=seed)
                    st.n_threads = 1
                    d = Distiller(None if mode == "hard" else t, st,
                                  temperature=rec["temperature"],
                                  hard_weight=1.0 if mode == "hard" else rec["hard_weight"],
                                  epochs=rec["student_epochs"], seed=seed, **common)
                    d.fit(xa, ya, teacher_logits=None if mode == "hard" else cache)
                    accs[mode] = d.score(xv, yv)
                if "hard" in accs:
                    hard[(hkey, seed)] = accs["hard"]
                kd_acc.append(accs["kd"])
                hard_acc.append(hard.get((hkey, seed), math.nan))
            s_macs = model_macs_of(st, shape)
            kd_m, hd_m = 100 * np.mean(kd_acc), 100 * np.mean(hard_acc)
            print(f"  {label}: teacher {100 * t_acc:.2f}  hard {hd_m:.2f}  KD {kd_m:.2f}",
                  flush=True)
            data["candidates"].append({"label": label, "recipe": rec, "kd": kd_acc,
                                       "hard": hard_acc, "teacher_val_acc": t_acc,
                                       "mac_ratio": t_macs / s_macs})
    data["n_val"], data["n_fit"], data["seeds"] = len(yv), len(ya), list(seeds)
    return _select_report(data), data


def _select_report(data) -> str:
    """The selection table and the chosen candidate (sets ``data["chosen"]``)."""
    cands = data["candidates"]
    base = next((c for c in cands if c["label"] == _SELECT_CANDIDATES[0][0]), None)
    rows = []
    for c in cands:
        if base is not None and all(math.isnan(v) for v in c["hard"]) and \
                c["recipe"]["student_epochs"] == base["recipe"]["student_epochs"] and \
                c["recipe"]["lr"] == base["recipe"]["lr"]:
            c["hard"] = list(base["hard"])          # the same hard-label students
        kd_m, hd_m = 100 * np.mean(c["kd"]), 100 * np.mean(c["hard"])
        rows.append([c["label"], round(c["mac_ratio"], 1), round(100 * c["teacher_val_acc"], 2),
                     f"{hd_m:.2f} ± {_sd_pct(c['hard']):.2f}",
                     f"{kd_m:.2f} ± {_sd_pct(c['kd']):.2f}",
                     f"{kd_m - hd_m:+.2f}"])
    seeds, n_val, n_fit = data["seeds"], data["n_val"], data["n_fit"]
    # the rule, fixed before looking: highest mean validation KD accuracy; a tie within one
    # validation image (0.4 points / number of seeds) goes to the earlier (cheaper or
    # unchanged) candidate
    best = 0
    scores = [100 * np.mean(c["kd"]) for c in cands]
    tie = 100 / n_val / len(seeds)
    for i, sc in enumerate(scores):
        if sc > scores[best] + tie:
            best = i
    data["chosen"] = data["candidates"][best]
    ran = {c["label"] for c in cands}
    skipped = [lab for lab, _ in _SELECT_CANDIDATES if lab not in ran]
    return ("### Digits CNN: choosing the recipe on a validation split\n\n"
          "The test set (540 images) is not used here.  The 1257 training images are split "
          f"{n_fit} / {n_val} (`train_test_split(test_size=0.2, stratify=y, "
          "random_state=0)`); for each candidate the teacher (dscnn3, seed 1000) is trained "
          f"on the {n_fit} images, and hard-label and distilled students (alpha=0.25, seeds "
          f"{', '.join(map(str, seeds))}, ours at 1 thread) are trained on them and scored on "
          f"the {n_val} validation images (one image = {100 / n_val:.2f} points).  "
          "Candidates change one knob of `ISSUE7_RECIPE` at a time.  Rule, fixed before the "
          "run: the highest mean validation KD accuracy wins; a candidate must beat the "
          "earlier ones by more than one validation image averaged over the seeds "
          f"({tie:.2f} points), else the earlier (unchanged or cheaper) one is kept.\n\n"
          + md_table(["candidate", "MAC ratio", "teacher val acc %", "hard val acc %",
                      "KD val acc %", "KD - hard"], rows)
          + f"\n\nChosen: **{data['chosen']['label']}**."
          + (f"  Not run (CPU time on the shared machine): {'; '.join(skipped)}."
             if skipped else ""))


def bench_cnn_digits_tuned(quick: bool, result=None) -> tuple[str, dict]:
    """The recipe chosen on the validation split, run once on the test set (5 seeds)."""
    prev = RESULTS / "distill.json"
    sel = json.loads(prev.read_text())["data"]["sections"].get("cnn_digits_select") \
        if prev.exists() else None
    if sel is None:
        return "### Digits CNN, tuned recipe\n\nNot run: run part cnn_digits_select first.", {}
    rec = sel["data"]["chosen"]["recipe"]
    seeds = (0, 1) if quick else (0, 1, 2, 3, 4)
    te, se = (2, 3) if quick else (rec["teacher_epochs"], rec["student_epochs"])
    if result is not None:
        r = result
    else:
        r = _run_setup("digits dscnn3 alpha=0.25 tuned", "digits",
                       alpha=rec["student_alpha"], seeds=SEEDS or seeds, teacher_epochs=te,
                       student_epochs=se, temperature=rec["temperature"],
                       hard_weight=rec["hard_weight"], lr=rec["lr"],
                       batch_size=rec["batch_size"], arch=rec["arch"],
                       teacher_alpha=rec["teacher_alpha"], weight_decay=rec["weight_decay"],
                       torch_twin=True, torch_teacher=True)
        r["recipe"] = rec
    label = sel["data"]["chosen"]["label"]
    md = ("### Digits CNN with the recipe chosen on the validation split (test set, once)\n\n"
          f"Recipe: **{label}** (`{json.dumps(rec)}`), chosen by part cnn_digits_select "
          "without looking at the test set, then run once here on the 1257 / 540 split with "
          f"5 seeds, ours and the PyTorch twin (teacher {te} epochs, students {se} epochs; "
          "the PyTorch teacher trained the same way, the PyTorch students distil from its "
          "logits)." + _TWIN_NOTE + "\n\n"
          + md_table(_CNN_HEAD, [_cnn_row(f"digits, dscnn3 alpha=0.25, T={rec['temperature']:g}"
                                          " (tuned)", r)])
          + "\n\nPer seed (accuracy %):\n\n" + _seed_table(r))
    return md, {"digits_dscnn_a0.25_tuned": r}


def bench_cnn_digits_swap(quick: bool) -> tuple[str, dict]:
    """Diagnostic: our students distil from the PyTorch teacher's logits (chosen recipe).

    In part cnn_digits_tuned each library distils from its own teacher, so the gap between
    our KD students and the twin's mixes library and teacher.  Here our students (same
    initial weights and batches) learn from the PyTorch teacher's cached logits.  Not used
    to choose anything.
    """
    import torch

    from effai_fast.distill._experiment import torch_predict_logits

    tuned = json.loads((RESULTS / "distill.json").read_text())["data"]["sections"].get(
        "cnn_digits_tuned", {}).get("data", {}).get("digits_dscnn_a0.25_tuned")
    if not tuned:
        return "### Digits CNN, teacher swap\n\nNot run: run part cnn_digits_tuned first.", {}
    rec = tuned["recipe"]
    seeds = (0,) if quick else tuple(s["seed"] for s in tuned["students"])
    te, se = (2, 3) if quick else (rec["teacher_epochs"], rec["student_epochs"])
    xtr, ytr, xte, yte = load_dataset("digits")
    shape, arch = xtr.shape[1:], rec["arch"]
    torch.set_num_threads(1)
    with blas_single_thread():
        t = make_model(arch, "digits", shape, 10, alpha=rec["teacher_alpha"], seed=1000)
        t_net = make_torch_twin(t, arch, "digits", shape, 10, alpha=rec["teacher_alpha"])
        torch_train(t_net, torch_layout(xtr, arch), ytr, epochs=te, lr=rec["lr"],
                    batch_size=rec["batch_size"], seed=1000, weight_decay=rec["weight_decay"])
        t_acc = 100 * float(np.mean(
            torch_predict_logits(t_net, torch_layout(xte, arch)).argmax(1) == yte))
        cache = np.ascontiguousarray(torch_predict_logits(t_net, torch_layout(xtr, arch)),
                                     dtype=np.float32)
        rows, out = [], []
        by_seed = {s["seed"]: s for s in tuned["students"]}
        for seed in seeds:
            st = make_model(arch, "digits", shape, 10, alpha=rec["student_alpha"], seed=seed)
            st.n_threads = 1
            # Distiller needs a teacher model for KD; with teacher_logits= it only checks it
            # (the PyTorch teacher's cached logits are what the student learns from)
            d = Distiller(t, st, temperature=rec["temperature"],
                          hard_weight=rec["hard_weight"], epochs=se, seed=seed,
                          lr=rec["lr"], batch_size=rec["batch_size"],
                          weight_decay=rec["weight_decay"])
            d.fit(xtr, ytr, teacher_logits=cache)
            acc = d.score(xte, yte)
            prev = by_seed.get(seed, {})
            out.append({"seed": seed, "kd_from_torch_teacher": acc})
            rows.append([seed, f"{100 * acc:.2f}", f"{100 * prev.get('kd', math.nan):.2f}",
                         f"{100 * prev.get('torch_kd', math.nan):.2f}"])
            print(f"  seed {seed}: ours from the PyTorch teacher {100 * acc:.2f}", flush=True)
    v = np.array([o["kd_from_torch_teacher"] for o in out]) * 100
    data = {"torch_teacher_accuracy": t_acc, "students": out, "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "recipe": rec}
    md = ("### Digits CNN, chosen recipe: our students distilling from the PyTorch teacher\n\n"
          "Diagnostic (not used to choose anything).  In the previous part each library "
          "distils from its own teacher, so ours vs the twin mixes library and teacher.  "
          "Here our students (same initial weights, batches and recipe) distil from the "
          f"PyTorch teacher's cached logits (teacher {t_acc:.2f}%; ours was "
          f"{tuned['teacher']['accuracy']:.2f}%).  Mean over seeds: **{data['mean']:.2f} ± "
          f"{data['sd']:.2f}**.\n\n"
          + md_table(["seed", "ours, PyTorch teacher", "ours, our teacher (tuned part)",
                      "twin, PyTorch teacher (tuned part)"], rows))
    return md, data


# Fashion-MNIST with issue 7's architecture (ISSUE7_RECIPE["arch"]: the three-block
# shortened MobileNet), the teacher at alpha=2 trained on the 10k class-balanced subset.
_FASHION_TEACHER = dict(n_train=10000, teacher_alpha=2.0, epochs=6, lr=2e-3, seed=1000,
                        arch=ISSUE7_RECIPE["arch"])


def _fashion_teacher(quick: bool):
    """The Fashion-MNIST teacher: dscnn alpha=2 trained on the 10k class-balanced subset.

    The 2k subset is inside the 10k one (same per-class permutations, first 200 of each
    class).  Trained once and kept in a temporary .npz (keyed by its recipe) so that the
    two Fashion parts can run in separate processes.
    """
    import tempfile

    from effai_fast import nn

    cfg = dict(_FASHION_TEACHER, **({"n_train": 1000, "epochs": 1} if quick else {}))
    key = "_".join(f"{k}{v}" for k, v in sorted(cfg.items()))
    path = Path(tempfile.gettempdir()) / f"effai_distill_fashion_teacher_{key}.npz"
    xtr, ytr, xte, yte = load_dataset("fashion-mnist", n_train=cfg["n_train"])
    teacher = make_model(cfg["arch"], "fashion-mnist", xtr.shape[1:], 10,
                         alpha=cfg["teacher_alpha"], seed=cfg["seed"])
    teacher.n_threads = 1
    if path.exists():
        nn.load(teacher, path)
        seconds = float(json.loads(path.with_suffix(".json").read_text())["seconds"])
    else:
        t0 = time.perf_counter()
        with blas_single_thread():
            Distiller(None, teacher, hard_weight=1.0, epochs=cfg["epochs"], lr=cfg["lr"],
                      batch_size=64, seed=cfg["seed"], verbose=True).fit(xtr, ytr)
        seconds = time.perf_counter() - t0
        nn.save(teacher, path)
        path.with_suffix(".json").write_text(json.dumps({"seconds": seconds}))
    return teacher, cfg, seconds


def _fashion_part(quick, name, key, *, n_train, alpha, temperature, seeds, se, result=None):
    cfg = dict(_FASHION_TEACHER, **({"n_train": 1000, "epochs": 1} if quick else {}))
    if result is not None:
        r = result
    else:
        try:
            load_dataset("fashion-mnist", n_train=100)
        except FileNotFoundError as exc:
            return f"### Fashion-MNIST, CNN students\n\nNot run: {exc}", {}
        teacher, cfg, t_seconds = _fashion_teacher(quick)
        r = _run_setup(name, "fashion-mnist", alpha=alpha, seeds=SEEDS or seeds,
                       teacher_epochs=1, student_epochs=se, temperature=temperature,
                       hard_weight=0.1, lr=2e-3, batch_size=64, arch=cfg["arch"],
                       teacher_alpha=cfg["teacher_alpha"], torch_twin=True,
                       torch_teacher=False, n_train=n_train, models={"teacher": teacher})
        r["teacher"]["seconds"] = t_seconds
        r["teacher_epochs"] = cfg["epochs"]
    md = (f"### Fashion-MNIST {n_train // 1000}k, MobileNet-style CNN students (issue 7's "
          "setup)\n\n"
          f"Debian `dataset-fashion-mnist`, class-balanced {n_train:,}-image training subset "
          f"({n_train // 10} per class, seed 0), full 10k test set, 28x28 inputs (stem stride "
          "2).  " + _CNN3_NOTE.replace(
              "trained on hard labels", "trained on hard labels of the "
              f"{cfg['n_train']:,}-image subset (which contains the 2k subset)").replace(
              "lr 3e-3", "lr 2e-3").replace(
              "The recipe is `ISSUE7_RECIPE`:", "Training as `ISSUE7_RECIPE` but with the lr "
              "and epochs given here:").replace(
              "student.  Teacher", "student (on 28x28 Fashion-MNIST images see the table)."
              "  Teacher")
          + f"  Teacher {cfg['epochs']} epochs on {cfg['n_train']:,} images, students "
          f"{se} epochs." + _TWIN_NOTE + "  The PyTorch students distil from our teacher's "
          "cached logits (a PyTorch teacher run did not fit in the session).\n\n"
          + md_table(_CNN_HEAD, [_cnn_row(name, r)])
          + "\n\nPer seed (accuracy %):\n\n" + _seed_table(r))
    return md, {key: r}


def bench_cnn_fashion(quick: bool, result=None) -> tuple[str, dict]:
    return _fashion_part(quick, "fashion 2k, dscnn3 alpha=0.5, T=4", "fashion2k_dscnn_a0.5_T4",
                         n_train=2000, alpha=0.5, temperature=4.0,
                         seeds=(0,) if quick else (0, 1, 2), se=2 if quick else 60,
                         result=result)


def bench_cnn_fashion10k(quick: bool, result=None) -> tuple[str, dict]:
    return _fashion_part(quick, "fashion 10k, dscnn3 alpha=0.25, T=8",
                         "fashion10k_dscnn_a0.25_T8", n_train=2000 if quick else 10000,
                         alpha=0.25, temperature=8.0, seeds=(0,) if quick else (0, 1, 2),
                         se=1 if quick else 10, result=result)


def bench_cnn_fashion10k_e30(quick: bool, result=None) -> tuple[str, dict]:
    """The 10k regime again with 3x the student epochs (was the 10-epoch run under-trained?)."""
    md, data = _fashion_part(quick, "fashion 10k, dscnn3 alpha=0.25, T=8, 30 epochs",
                             "fashion10k_dscnn_a0.25_T8_e30",
                             n_train=2000 if quick else 10000, alpha=0.25, temperature=8.0,
                             seeds=(0,) if quick else (0, 1, 2), se=1 if quick else 30,
                             result=result)
    md = md.replace("MobileNet-style CNN students (issue 7's setup)",
                    "MobileNet-style CNN students, 30 student epochs", 1)
    r = next(iter(data.values()), None)
    if r:
        md += "\n\n" + _fashion10k_setup_note(r)
    return md, data


def _fashion10k_setup_note(r) -> str:
    """This setup next to what issue 7 states about its Fashion-MNIST 10k measurement."""
    t = r["teacher"]
    ratio = t["macs"] / r["student_macs"]
    th, tk = r.get("torch_hard_mean", math.nan), r.get("torch_kd_mean", math.nan)
    return (
        "**This setup against the one issue 7 states** (issue: \"Fashion-MNIST 10k subset "
        "with alpha=0.25 (hard 83.1, KD T=8 79.9)\", measured with PyTorch, student a "
        "MobileNet-v1 style depthwise-separable CNN, KD loss `0.9 * T^2 * KL(batchmean) + 0.1 "
        "* CE`, cached teacher logits, no augmentation; no sd or seed count given):\n\n"
        "- Same as stated: the loss (ours `kd_loss(temperature=8, hard_weight=0.1, "
        "scale_t2=True, reduction=\"batchmean\")`; the PyTorch twin "
        "`0.9 * F.kl_div(F.log_softmax(z/T), F.log_softmax(zt/T), log_target=True, "
        "reduction=\"batchmean\") * T**2 + 0.1 * F.cross_entropy(z, y)`), teacher logits "
        "computed once per training image in inference mode and reused every epoch, no "
        "augmentation (none exists in `Distiller`), a depthwise-separable MobileNet-v1-style "
        f"student at alpha=0.25 ({r['student_macs']:,} MACs on 28x28 images; the issue's "
        "\"~49k MACs\" refers to the 8x8 digits), T=8, a 10,000-image training subset, the "
        "full 10k test set.\n"
        "- Not stated by the issue, so chosen here (not tuned to its figures): the teacher - "
        f"dscnn3 alpha={r.get('teacher_alpha', 2.0):g}, {t['macs']:,} MACs ({ratio:.0f}x the "
        f"student), trained {r.get('teacher_epochs', '?')} epochs on the same 10k subset "
        f"(AdamW lr 2e-3, cosine), test accuracy {t['accuracy']:.2f}%, i.e. only "
        f"{t['accuracy'] - r['hard_mean']:.1f} points above the hard-label student; the "
        f"student budget - {r.get('student_epochs', '?')} epochs, AdamW (weight decay 0) lr "
        "2e-3 with a cosine schedule, batch 64 (a 10-epoch run gave an under-trained hard "
        "student, part cnn_fashion10k); the subset - class-balanced, 1000 per class, seed 0; "
        f"{len(r['students'])} seeds.  The issue's 2k setup gives one indirect hint about its "
        "teacher: 18x the MACs of its alpha=0.5 student, where ours is 13.6x; if its students "
        "cost what ours do and one teacher served both Fashion setups, that teacher was about "
        "1.3x the size of ours.  Its accuracy is not given.\n"
        "- Differs: the PyTorch twin distils from our teacher's logits (no PyTorch-trained "
        "teacher for Fashion), so teacher quality is common to both libraries' figures.\n"
        f"- Outcome: the hard-label level agrees with the issue's 83.1 to "
        f"{r['hard_mean'] - 83.1:+.2f} (ours) / {th - 83.1:+.2f}"
        " (twin) points; the harm of distillation at T=8 is reproduced in sign by both "
        f"libraries (KD - hard {r['kd_mean'] - r['hard_mean']:+.2f} ours, "
        f"{tk - th:+.2f}"
        " twin) but not in magnitude (issue -3.2; KD "
        f"{r['kd_mean']:.2f} / {tk:.2f} against 79.9).  "
        "Since our own PyTorch twin with the issue's exact loss expression lands with ours, "
        "the gap points at the unstated parts of the setup (teacher, training budget), not at "
        "the T^2 scaling or the KL reduction.")


# --seeds runs a CNN part for some seeds only (several processes share the CPU better than
# one on a loaded machine); --merge then joins their student records into one section.
SEEDS: tuple[int, ...] | None = None
CANDIDATES: tuple[int, ...] | None = None
STEP_THREADS: tuple[int, ...] = (1, 2)


def _merge(part, sections, quick):
    from effai_fast.distill._experiment import summarize_students

    pieces = sorted(k for k in sections if k.startswith(part + "@"))
    if not pieces:
        raise SystemExit(f"--merge: no sections {part}@<seeds> to merge")
    if part == "cnn_digits_select":
        data = {"candidates": [], **{k: sections[pieces[0]]["data"][k]
                                     for k in ("n_val", "n_fit", "seeds")}}
        for k in pieces:
            data["candidates"] += sections[k]["data"]["candidates"]
        order = [lab for lab, _ in _SELECT_CANDIDATES]
        data["candidates"].sort(key=lambda c: order.index(c["label"]))
        md = _select_report(data)
        return {"markdown": md, "data": data, "measured": sections[pieces[0]]["measured"],
                "seconds": sum(sections[k]["seconds"] for k in pieces),
                "loadavg": max(sections[k]["loadavg"] for k in pieces),
                "merged_from": pieces}
    merged: dict = {}
    for k in pieces:
        for key, r in sections[k]["data"].items():
            if key not in merged:
                merged[key] = json.loads(json.dumps(r))
                merged[key]["students"] = []
            merged[key]["students"] += r["students"]
    recipes = {(r.get("arch"), r.get("student_epochs"), r["teacher"]["accuracy"])
               for k in pieces for r in sections[k]["data"].values()}
    if len(recipes) > 1:
        raise SystemExit(f"--merge: the sections {pieces} come from different setups "
                         f"(arch, epochs, teacher): {sorted(map(str, recipes))}; re-run them")
    for r in merged.values():
        seeds = [rec["seed"] for rec in r["students"]]
        if len(set(seeds)) != len(seeds):
            raise SystemExit(f"--merge: seed repeated in {pieces}")
        r["students"].sort(key=lambda rec: rec["seed"])
        r.update(summarize_students(r["students"]))
    (key, r), = merged.items()
    md, data = {"cnn_fashion": bench_cnn_fashion,
                "cnn_fashion10k": bench_cnn_fashion10k,
                "cnn_fashion10k_e30": bench_cnn_fashion10k_e30,
                "cnn_digits_tuned": bench_cnn_digits_tuned}[part](quick, result=r)
    if any(rec.get("recovered_from_log") for rec in r["students"]):
        md += ("\n\n(Seeds marked recovered: the per-seed processes raced writing "
               "results/distill.json and lost those sections; their accuracies were copied "
               "from the runs' logs, exact to the 0.01% resolution of a 10k test set.)")
    first = sections[pieces[0]]
    return {"markdown": md, "data": data, "measured": first["measured"],
            "seconds": sum(sections[k]["seconds"] for k in pieces),
            "loadavg": max(sections[k]["loadavg"] for k in pieces),
            "merged_from": pieces}


def _render(part, section) -> bool:
    """Re-render a stored section's markdown from its data (True if the part supports it)."""
    renderers = {"cnn_fashion": bench_cnn_fashion, "cnn_fashion10k": bench_cnn_fashion10k,
                 "cnn_fashion10k_e30": bench_cnn_fashion10k_e30,
                 "cnn_digits_tuned": bench_cnn_digits_tuned}
    if part == "cnn_digits_select":
        section["markdown"] = _select_report(section["data"])
        return True
    if part not in renderers or len(section["data"]) != 1:
        return False
    (_, r), = section["data"].items()
    section["markdown"], section["data"] = renderers[part](False, result=r)
    return True


def bench_cnn_step(quick: bool) -> tuple[str, dict]:
    """Distillation step of the CNN students: ours vs the same network in PyTorch."""
    if not have("torch"):
        return "### CNN student step vs PyTorch\n\nNot run: torch is not installed.", {}
    import torch

    rows, data = [], {}
    setups = [("digits", 0.25, None)]
    if not quick:
        setups.append(("fashion-mnist", 0.5, 2000))
    for dataset, alpha, n_train in setups:
        xtr, ytr, _, _ = load_dataset(dataset, n_train=n_train)
        shape = xtr.shape[1:]
        xb, yb = xtr[:64], ytr[:64]
        tb = np.random.default_rng(0).standard_normal((64, 10)).astype(np.float32) * 3
        ours = make_model("dscnn", dataset, shape, 10, alpha=alpha, seed=0)
        net = make_torch_twin(ours, "dscnn", dataset, shape, 10, alpha=alpha)
        teacher = make_model("dscnn", dataset, shape, 10, alpha=alpha, seed=1)  # not run
        d = Distiller(teacher, ours, temperature=4.0, hard_weight=0.1, lr=1e-4)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4, weight_decay=0.0)
        xt = torch_layout(xb, "dscnn")
        yt, tt = torch.from_numpy(yb), torch.from_numpy(tb)
        net.train()

        def tstep():
            _torch_kd_step(net, opt, xt, yt, tt)  # noqa: B023

        rec = {}
        for n in STEP_THREADS:
            ours.n_threads = n
            torch.set_num_threads(n)
            o_t, t_t, o_c, t_c = [], [], [], []
            with blas_single_thread():
                for _ in range(3):   # interleaved, best of each
                    o_t.append(timeit(lambda: d.train_step(xb, yb, tb), repeat=3)["best"])  # noqa: B023
                    t_t.append(timeit(tstep, repeat=3)["best"])
                    o_c.append(_cpu_best(lambda: d.train_step(xb, yb, tb)))  # noqa: B023
                    t_c.append(_cpu_best(tstep))
            rec[f"t{n}"] = {"ours_ms": min(o_t) * 1e3, "torch_ms": min(t_t) * 1e3,
                            "speedup": min(t_t) / min(o_t),
                            "ours_cpu_ms": min(o_c) * 1e3, "torch_cpu_ms": min(t_c) * 1e3,
                            "cpu_speedup": min(t_c) / min(o_c)}
            rows.append([dataset, alpha, model_macs_of(ours, shape), n,
                         round(min(o_t) * 1e3, 2), round(min(t_t) * 1e3, 2),
                         round(min(t_t) / min(o_t), 2), round(min(o_c) * 1e3, 2),
                         round(min(t_c) * 1e3, 2), round(min(t_c) / min(o_c), 2)])
            print(rows[-1], flush=True)
        data[f"{dataset}_a{alpha}"] = rec
    md = ("### CNN student step vs PyTorch\n\n"
          "One distillation step (forward, fused KD loss with cached teacher logits, backward, "
          "AdamW) of the shortened-MobileNet students on a batch of 64, effai_fast vs the same "
          "network in PyTorch (`torch_dscnn`, same weights; `kl_div(log_softmax, log_softmax, "
          "batchmean) * T^2` + CE, `torch.optim.AdamW`), same thread count, interleaved, best "
          "of 3x3 timings.  Issue 7 asks for >= 1.5x at 1 thread and >= 2x at 2 threads.  "
          "On a loaded machine the wall times measure the scheduler as much as the code, so "
          "the CPU time of the process (`time.process_time`, best of 3x5 steps) is given too: "
          "at 1 thread it is the work each library does per step."
          + ("" if STEP_THREADS == (1, 2) else
             f"  This run measured {', '.join(map(str, STEP_THREADS))} thread(s) only "
             "(`--step-threads`; 2-thread steps on a loaded 2-core machine mostly time "
             "libgomp waiting for a core).")
          + "\n\n"
          + md_table(["data", "alpha", "student MACs", "threads", "ours ms", "torch ms",
                      "speed-up (wall)", "ours CPU ms", "torch CPU ms", "speed-up (CPU)"],
                     rows))
    return md, data


def bench_cnn_profile(quick: bool) -> tuple[str, dict]:
    """Where a step of the Fashion-MNIST alpha=0.5 student spends its CPU time (ours, 1 thread)."""
    try:
        xtr, ytr, _, _ = load_dataset("fashion-mnist", n_train=2000)
    except FileNotFoundError as exc:
        return f"### CNN student step profile\n\nNot run: {exc}", {}
    from effai_fast.distill import cross_entropy

    shape = xtr.shape[1:]
    xb, yb = xtr[:64], ytr[:64]
    m = make_model("dscnn", "fashion-mnist", shape, 10, alpha=0.5, seed=0)
    m.n_threads = 1
    d = Distiller(None, m, hard_weight=1.0, lr=1e-4)
    rep = 3 if quick else 7
    by_type: dict[str, list[float]] = {}
    with blas_single_thread():
        d.train_step(xb, yb)
        acts, x = [xb], xb
        for layer in m.layers:                 # forward, layer by layer
            xin = x
            f = _cpu_best(lambda: layer.forward(xin, training=True), rep)  # noqa: B023
            x = layer.forward(xin, training=True).copy()
            acts.append(x)
            by_type.setdefault(type(layer).__name__, [0.0, 0.0])[0] += f
        _, g = cross_entropy(m.forward(xb, training=True), yb)
        for i in range(len(m.layers) - 1, -1, -1):   # backward, layer by layer
            layer = m.layers[i]
            layer.forward(acts[i], training=True)
            gi = g
            b = _cpu_best(lambda: layer.backward(gi, need_input_grad=i > 0), rep)  # noqa: B023
            g = layer.backward(gi, need_input_grad=True).copy()
            by_type[type(layer).__name__][1] += b
        full = _cpu_best(lambda: d.train_step(xb, yb), rep)
        fwd = _cpu_best(lambda: m.forward(xb, training=True), rep)
        opt = _cpu_best(d.optimizer_.step, rep)
    rows = [[t, round(v[0] * 1e3, 2), round(v[1] * 1e3, 2)] for t, v in by_type.items()]
    tot = [sum(v[0] for v in by_type.values()), sum(v[1] for v in by_type.values())]
    rows.append(["sum of layers", round(tot[0] * 1e3, 2), round(tot[1] * 1e3, 2)])
    data = {"layers_ms": {t: [v[0] * 1e3, v[1] * 1e3] for t, v in by_type.items()},
            "step_ms": full * 1e3, "forward_ms": fwd * 1e3, "optimizer_ms": opt * 1e3}
    md = ("### Where the Fashion-MNIST alpha=0.5 student step spends its time (ours)\n\n"
          "CPU time (`time.process_time`, best of repeated calls) of each layer's forward and "
          "backward at batch 64, 1 thread, summed by layer type (a layer timed alone has its "
          "input in cache; the chained step streams 1-2 MB activations and costs more).  "
          f"Whole hard-label step {full * 1e3:.1f} ms, forward {fwd * 1e3:.1f} ms, AdamW "
          f"update {opt * 1e3:.2f} ms.\n\n"
          + md_table(["layer type", "forward ms", "backward ms"], rows))
    return md, data


def _cpu_best(f, repeat=5):
    """Best process CPU time of one call of ``f`` (after one warm-up call)."""
    f()
    best = math.inf
    for _ in range(repeat):
        t0 = time.process_time()
        f()
        best = min(best, time.process_time() - t0)
    return best


def model_macs_of(model, shape):
    from effai_fast.distill.trainer import model_macs

    return model_macs(model, shape)


# --------------------------------------------------------------------------- status
def _twin_line(label, r):
    if "torch_hard_mean" not in r:
        return f"- {label}: no PyTorch twin in this run."
    d1 = r["hard_mean"] - r["torch_hard_mean"]
    d2 = r["kd_mean"] - r["torch_kd_mean"]
    t = r["teacher"]
    teach = (f"; teachers: ours {t['accuracy']:.2f}%, PyTorch {t['torch_accuracy']:.2f}%"
             if "torch_accuracy" in t else "")
    return (f"- {label}, same network, init and batches trained with PyTorch: hard "
            f"{r['torch_hard_mean']:.2f} ± {r['torch_hard_sd']:.2f} (ours {d1:+.2f}, paired p = "
            f"{_p(r.get('ours_vs_torch_p_hard'))}), KD {r['torch_kd_mean']:.2f} ± "
            f"{r['torch_kd_sd']:.2f} (ours {d2:+.2f}, p = {_p(r.get('ours_vs_torch_p_kd'))}), "
            f"PyTorch KD - hard {r['torch_kd_mean'] - r['torch_hard_mean']:+.2f}{teach} - "
            f"within 0.4 points: {'yes' if max(abs(d1), abs(d2)) <= 0.4 else 'NO'}.")


def _status(sections) -> str:
    """Issue 7's figures next to ours, each marked reproduced or not."""
    out = ["### Issue 7 targets: what was and was not reproduced", ""]
    k = sections.get("kernel", {}).get("data", {})
    for n in (1, 2):
        rec = k.get(f"threads{n}")
        if rec and "torch_fb_ms" in rec:
            ratio = rec["torch_fb_ms"] / rec["ours_ms"]
            out.append(f"- Fused kd_loss (4096 x 1000 float32) >= 2x the PyTorch expression at "
                       f"{n} thread(s): **{ratio:.2f}x** vs forward+backward "
                       f"({rec['torch_f_ms'] / rec['ours_ms']:.2f}x vs PyTorch's forward "
                       f"alone) - {'met' if ratio >= 2 else 'NOT met'}.")
    if k.get("threads2", {}).get("ours_ms", 0) > k.get("threads1", {}).get("ours_ms", 1e9):
        out.append("- Caveat: in this run 2 threads were slower than 1 for both libraries "
                   "(the 2-core machine was running other jobs, load average > 10); the "
                   "2-thread ratio measures robustness under contention, not scaling.")
    st = sections.get("step", {}).get("data", {})
    for key, rec in st.items():
        out.append(f"- Distillation step with cached logits <= 1.10x a hard-label step "
                   f"({key}): **{rec['ratio']:.2f}x** - "
                   f"{'met' if rec['ratio'] <= 1.10 else 'NOT met'}.")
    dg = sections.get("digits", {}).get("data", {}).get("digits_a0.25_T4")
    if dg:
        gain = dg["kd_mean"] - dg["hard_mean"]
        ok = dg["kd_mean"] >= 98.3 and gain >= 1.0
        out.append(f"- Digits, KD >= 98.3% and >= 1.0 point above hard labels (issue, CNN "
                   f"student: hard 97.15 ± 0.68, KD 98.59 ± 0.46, p = 0.006).  Ours (MLP "
                   f"student): hard {dg['hard_mean']:.2f} ± {dg['hard_sd']:.2f}, KD "
                   f"{dg['kd_mean']:.2f} ± {dg['kd_sd']:.2f}, p = {dg.get('p_value', 1):.3g} - "
                   f"{'met' if ok else 'NOT reproduced'}.")
    fs = sections.get("fashion", {}).get("data", {})
    f2 = fs.get("fashion 2k, alpha=0.5, T=4")
    if f2:
        ok = f2["kd_mean"] >= 81.5 and f2["hard_mean"] <= 80.3
        out.append(f"- Fashion-MNIST 2k, alpha=0.5, T=4: issue hard 79.91 ± 0.09, KD 81.93 ± "
                   f"0.14 (CNN); ours (MLP) hard {f2['hard_mean']:.2f} ± {f2['hard_sd']:.2f}, "
                   f"KD {f2['kd_mean']:.2f} ± {f2['kd_sd']:.2f} - "
                   f"{'met' if ok else 'NOT reproduced'}.")
    f10 = fs.get("fashion 10k, alpha=0.25, T=8")
    if f10:
        ok = abs(f10["hard_mean"] - 83.1) <= 0.5 and abs(f10["kd_mean"] - 79.9) <= 0.5
        worse = f10["kd_mean"] < f10["hard_mean"]
        out.append(f"- Fashion-MNIST 10k, alpha=0.25, T=8 (issue: KD hurts, hard 83.1, KD "
                   f"79.9): ours (MLP) hard {f10['hard_mean']:.2f}, KD {f10['kd_mean']:.2f} - "
                   f"{'reproduced within 0.5' if ok else 'not within 0.5 points'}"
                   f"{'; KD is worse here too' if worse else '; KD is not worse here'}.")
    for name, r in list(fs.items()) + ([("digits", dg)] if dg else []):
        if r and "torch_kd_mean" in r:
            d1 = abs(r["hard_mean"] - r["torch_hard_mean"])
            d2 = abs(r["kd_mean"] - r["torch_kd_mean"])
            out.append(f"- {name}: same architecture trained with PyTorch within 0.4 points: "
                       f"hard {d1:.2f}, KD {d2:.2f} points apart - "
                       f"{'met' if max(d1, d2) <= 0.4 else 'NOT met'}.")
    cd = sections.get("cnn_digits", {}).get("data", {}).get("digits_dscnn_a0.25_T4")
    if cd:
        gain = cd["kd_mean"] - cd["hard_mean"]
        ok = cd["kd_mean"] >= 98.3 and gain >= 1.0
        out.append(f"- Digits with the issue's kind of student (MobileNet-style CNN, alpha=0.25, "
                   f"{cd['student_macs']:,} MACs, {cd['teacher']['macs'] / cd['student_macs']:.0f}"
                   f"x fewer than our teacher; issue: ~49k MACs, 51x): KD >= 98.3% and >= 1.0 "
                   f"point above hard labels?  Ours: hard {cd['hard_mean']:.2f} ± "
                   f"{cd['hard_sd']:.2f}, KD {cd['kd_mean']:.2f} ± {cd['kd_sd']:.2f} "
                   f"({len(cd['students'])} seeds, KD - hard {gain:+.2f}, paired t p = "
                   f"{_p(cd.get('p_value'))}; teacher {cd['teacher']['accuracy']:.2f}%) - "
                   f"{'met' if ok else 'NOT met'} (KD >= 98.3: "
                   f"{'yes' if cd['kd_mean'] >= 98.3 else 'no'}; KD - hard >= 1.0: "
                   f"{'yes' if gain >= 1.0 else 'no'}).")
        if "torch_kd_mean" in cd:
            th, tk = cd["torch_hard_mean"], cd["torch_kd_mean"]
            inside = abs(th - 97.15) <= 0.68 and abs(tk - 98.59) <= 0.46
            out.append(f"- Digits CNN, PyTorch twin against the issue's PyTorch reference "
                       f"(hard 97.15 ± 0.68, KD 98.59 ± 0.46): hard {th:.2f} ({th - 97.15:+.2f}),"
                       f" KD {tk:.2f} ({tk - 98.59:+.2f}) - "
                       f"{'within' if inside else 'NOT within'}"
                       f" the reference's sd.")
        out.append(_twin_line("digits CNN", cd))
    for key, label in (("fashion2k_dscnn_a0.5_T4", "Fashion-MNIST 2k"),):
        cf = sections.get("cnn_fashion", {}).get("data", {}).get(key)
        if not cf:
            continue
        ok = cf["kd_mean"] >= 81.5 and cf["hard_mean"] <= 80.3
        out.append(f"- {label} with MobileNet-style CNN students (alpha=0.5, "
                   f"{cf['teacher']['macs'] / cf['student_macs']:.0f}x fewer MACs than our "
                   f"teacher; issue 18x): issue hard 79.91 ± 0.09, KD 81.93 ± 0.14; target KD "
                   f">= 81.5 and hard <= 80.3.  Ours hard "
                   f"{cf['hard_mean']:.2f} ± {cf['hard_sd']:.2f}, KD {cf['kd_mean']:.2f} ± "
                   f"{cf['kd_sd']:.2f} ({len(cf['students'])} seeds, KD - hard "
                   f"{cf['kd_mean'] - cf['hard_mean']:+.2f}, p = {_p(cf.get('p_value'))}; "
                   f"teacher {cf['teacher']['accuracy']:.2f}%) - {'met' if ok else 'NOT met'}.")
        out.append(_twin_line(label + " CNN", cf))
    c10 = sections.get("cnn_fashion10k", {}).get("data", {}).get("fashion10k_dscnn_a0.25_T8")
    if c10:
        ok = abs(c10["hard_mean"] - 83.1) <= 0.5 and abs(c10["kd_mean"] - 79.9) <= 0.5
        worse = c10["kd_mean"] < c10["hard_mean"]
        out.append(f"- Fashion-MNIST 10k, CNN alpha=0.25, T=8 (issue: KD hurts, hard 83.1, KD "
                   f"79.9): ours hard {c10['hard_mean']:.2f}, KD {c10['kd_mean']:.2f} "
                   f"({len(c10['students'])} seed(s)) - "
                   f"{'reproduced within 0.5' if ok else 'not within 0.5 points'}"
                   f"{'; KD is worse here too' if worse else '; KD is not worse here'}.")
        out.append(_twin_line("Fashion-MNIST 10k CNN", c10))
    c30 = sections.get("cnn_fashion10k_e30", {}).get("data", {}).get(
        "fashion10k_dscnn_a0.25_T8_e30")
    if c30:
        ok = abs(c30["hard_mean"] - 83.1) <= 0.5 and abs(c30["kd_mean"] - 79.9) <= 0.5
        worse = c30["kd_mean"] < c30["hard_mean"]
        tw = (f"; PyTorch twin hard {c30['torch_hard_mean']:.2f}, KD {c30['torch_kd_mean']:.2f}"
              if "torch_hard_mean" in c30 else "")
        out.append(f"- Fashion-MNIST 10k, CNN alpha=0.25, T=8, **30** student epochs (was the "
                   f"10-epoch run under-trained?): ours hard {c30['hard_mean']:.2f}, KD "
                   f"{c30['kd_mean']:.2f} ({len(c30['students'])} seed(s)){tw} - "
                   f"{'reproduced within 0.5' if ok else 'not within 0.5 points of 83.1 / 79.9'}"
                   f"{'; KD is worse here' if worse else '; KD is not worse here'}.")
    sel = sections.get("cnn_digits_select", {}).get("data", {})
    if sel.get("chosen"):
        out.append(f"- Digits CNN recipe chosen on a validation split of the training images "
                   f"(part cnn_digits_select): **{sel['chosen']['label']}** (validation KD "
                   f"{100 * np.mean(sel['chosen']['kd']):.2f}%)"
                   + (" - the unchanged ISSUE7_RECIPE, whose 5-seed test-set result is the "
                      "'Digits, MobileNet-style CNN students' part above (no second look at "
                      "the test set)." if sel["chosen"]["label"] == _SELECT_CANDIDATES[0][0]
                      else "."))
    tuned = sections.get("cnn_digits_tuned", {}).get("data", {}).get("digits_dscnn_a0.25_tuned")
    if tuned:
        gain = tuned["kd_mean"] - tuned["hard_mean"]
        out.append(f"- Digits CNN with the chosen recipe, test set once, "
                   f"{len(tuned['students'])} seeds: hard {tuned['hard_mean']:.2f} ± "
                   f"{tuned['hard_sd']:.2f}, KD {tuned['kd_mean']:.2f} ± {tuned['kd_sd']:.2f} "
                   f"(KD - hard {gain:+.2f}) - KD >= 98.3: "
                   f"{'yes' if tuned['kd_mean'] >= 98.3 else 'NO'}; gain >= 1.0: "
                   f"{'yes' if gain >= 1.0 else 'NO'}.")
        out.append(_twin_line("digits CNN, chosen recipe", tuned))
        sw = sections.get("cnn_digits_swap", {}).get("data", {})
        if sw.get("students"):
            out.append(f"- Diagnostic (part cnn_digits_swap): our students of the chosen recipe "
                       f"distilling from the PyTorch teacher's logits: KD {sw['mean']:.2f} ± "
                       f"{sw['sd']:.2f} ({len(sw['students'])} seeds; from our teacher "
                       f"{tuned['kd_mean']:.2f}, the twin from the PyTorch teacher "
                       f"{tuned.get('torch_kd_mean', math.nan):.2f}).")
    cs = sections.get("cnn_step", {}).get("data", {})
    for key, rec in cs.items():
        for n, target in ((1, 1.5), (2, 2.0)):
            r = rec.get(f"t{n}")
            if r:
                cpu = (f", {r['cpu_speedup']:.2f}x in CPU time" if "cpu_speedup" in r else "")
                out.append(f"- CNN student distillation step ({key}) >= {target}x faster than "
                           f"PyTorch at {n} thread(s): **{r['speedup']:.2f}x** wall{cpu} - "
                           f"{'met' if r['speedup'] >= target else 'NOT met'} (shared machine, "
                           f"see the load figure of that part).")
    if not c10:
        out.append("- Not run (this session): the Fashion-MNIST 10k regime with CNN students "
                   "(alpha=0.25, T=8; part cnn_fashion10k) - started, stopped for lack of CPU "
                   "time on the shared machine.")
    out.append("- Not run: the MNIST-sized (60k) regime, the full 13-block MobileNet v1 as "
               "student (too slow on this shared machine), a PyTorch teacher for the "
               "Fashion-MNIST parts (their PyTorch students distil from our teacher's logits).")
    return "\n".join(out)


# --------------------------------------------------------------------------- main
def _body(sections) -> str:
    body = ("The machine (2 cores) was shared with other jobs during these runs: absolute "
            "times are noisy, ratios come from interleaved runs in the same process.  Each "
            "part gives the time it was measured and the 1-minute load average at its end.\n\n")
    return body + render_sections(PARTS, sections) + _status(sections) + "\n"



def _sd_pct(v) -> float:
    """Sample standard deviation in percentage points (0 for a single value)."""
    return 100 * np.std(v, ddof=1) if len(v) > 1 else 0.0

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default=",".join(PARTS),
                    help=f"comma-separated parts among {PARTS}")
    ap.add_argument("--seeds", default=None,
                    help="comma-separated seeds for the Fashion CNN parts; the result is "
                         "stored as <part>@<seeds> until --merge")
    ap.add_argument("--candidates", default=None,
                    help="comma-separated indices of _SELECT_CANDIDATES for part "
                         "cnn_digits_select; stored as cnn_digits_select@<indices>")
    ap.add_argument("--step-threads", default="1,2",
                    help="thread counts of part cnn_step (default 1,2)")
    ap.add_argument("--merge", action="store_true",
                    help="join the <part>@<seeds> sections of the --only parts")
    ap.add_argument("--render", action="store_true",
                    help="rewrite results/distill.md from results/distill.json, re-rendering "
                         "the markdown of the stored sections of the --only parts from their "
                         "data (no training; the measured time and load are kept)")
    args = ap.parse_args(argv)
    global SEEDS, CANDIDATES
    if args.seeds:
        SEEDS = tuple(int(v) for v in args.seeds.split(","))
    if args.candidates:
        CANDIDATES = tuple(int(v) for v in args.candidates.split(","))
    global STEP_THREADS
    STEP_THREADS = tuple(int(v) for v in args.step_threads.split(","))
    only = [p for p in args.only.split(",") if p]
    unknown = set(only) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts {sorted(unknown)}")
    prev_path = RESULTS / "distill.json"
    sections: dict[str, dict] = {}
    if prev_path.exists() and not args.quick:
        try:
            sections = json.loads(prev_path.read_text())["data"].get("sections", {})
        except (ValueError, KeyError):
            sections = {}
    funcs = {"kernel": bench_kernel, "step": bench_step, "digits": bench_digits,
             "fashion": bench_fashion, "cnn_digits": bench_cnn_digits,
             "cnn_digits_select": bench_cnn_digits_select,
             "cnn_digits_tuned": bench_cnn_digits_tuned,
             "cnn_digits_swap": bench_cnn_digits_swap,
             "cnn_fashion": bench_cnn_fashion, "cnn_fashion10k": bench_cnn_fashion10k,
             "cnn_fashion10k_e30": bench_cnn_fashion10k_e30,
             "cnn_step": bench_cnn_step, "cnn_profile": bench_cnn_profile}
    names = []
    for part in PARTS:
        if part in only and args.render:
            if part in sections and _render(part, sections[part]):
                names.append(part)
        elif part in only and args.merge:
            sections[part] = _merge(part, sections, args.quick)
            names.append(part)
        elif part in only:
            t0 = time.perf_counter()
            md, data = funcs[part](args.quick)
            name = f"{part}@{args.seeds}" if args.seeds else part
            if args.candidates and part == "cnn_digits_select":
                name = f"{part}@{args.candidates}"
            sections[name] = {"markdown": md, "data": data,
                              "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                              "seconds": time.perf_counter() - t0,
                              "loadavg": os.getloadavg()[0]}
            names.append(name)
            print(md, flush=True)
    if args.quick:
        print(_body(sections))   # a quick run checks the bench; it keeps measured results
        return 0
    # several processes (one per part or per seed) may finish at about the same time: the
    # read-merge-write of results/distill.json is serialised by an exclusive lock, so no
    # process overwrites sections another one wrote meanwhile
    import fcntl
    import tempfile

    with open(Path(tempfile.gettempdir()) / "effai_bench_distill.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            latest = json.loads(prev_path.read_text())["data"].get("sections", {}) \
                if prev_path.exists() else {}
        except (ValueError, KeyError):
            latest = {}
        sections = {**latest, **{p: sections[p] for p in names}}
        write_result("distill", "Knowledge distillation (effai_fast.distill)", _body(sections),
                     data={"sections": sections}, command="python bench/bench_distill.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
