"""Train small MobileNets on Fashion-MNIST: effai_fast vs PyTorch, and accuracy vs MACs.

Parts (``--only`` picks some; the others keep their last results from
results/mobilenet_train.json):

``grad``     one training batch (64 images, MobileNet v1 alpha=0.25 at 28x28): relative
             error of the float32 gradients of effai_fast and of PyTorch against a float64
             reference (PyTorch float64; effai_fast float64 agrees with it), same weights.
``parity``   the training loops compared without float32 rounding: the first 40 steps of
             the train part's alpha=0.25 seed-1 run in float64 by effai_fast, by PyTorch,
             and by PyTorch from a start perturbed by 1e-13 (relative); per step the loss
             and the relative difference of every state tensor against PyTorch's, so a
             systematic difference stands out against SGD's own chaotic amplification.
``train``    float32 training, alpha in {0.25, 0.5} at 28x28 (rho = 1): for each seed both
             libraries start from the same initial weights and see the same batches
             (SGD Nesterov, warm-up + cosine learning rate, weight decay on weights only),
             epochs interleaved; test accuracy on the 10k test set, mean ± sd over seeds,
             the paired difference with a 95% Student-t CI, and seconds per epoch.
             Stored seeds are kept and extended (``--seeds N --seeds-05 M`` run the seeds
             they lack, one process at a time; each seed is stored as it finishes);
             ``--refresh-ours`` first re-trains effai_fast's arm of the stored seeds that
             ran on other code (each run records the commit of effai_fast's code).
``precision`` the train part's alpha=0.25 runs again in float64, by effai_fast and by
             PyTorch (same seeds, initial weights cast exactly from float32, same batches):
             tests whether the float32 accuracy gap of the train part comes from either
             library's float32 rounding (four arms per seed, paired statistics over seeds).
             Slow (PyTorch's float64 CPU convolutions): ``--precision-seeds 0-7`` and
             ``8-15`` can run as two processes; each stores its seeds as they finish.
``speed``    time per epoch only, at 1 and at 2 threads in the same run.
``tradeoff`` the alpha^2 rho^2 trade-off on real data: effai_fast MobileNets for a grid of
             alpha in {0.25, 0.5, 0.75, 1} and sides {16, 22, 28} (resized bilinearly),
             several seeds, accuracy against exact MACs, the fitted AccuracyModel and what
             optimal_multipliers(..., base_resolution=28) chooses with it.

Every part rewrites its own section of results/mobilenet_train.{md,json} (train and
tradeoff after every seed), so parts can run as separate processes; ``--render`` rebuilds
the markdown from the stored runs.

Usage: python bench/bench_mobilenet_train.py [--quick] [--threads 1] [--only train,speed]
       [--n-train 10000 --epochs 3 --seeds 10 --seeds-05 6] [--fresh]
       [--refresh-ours --check-torch 1]
       [--trade-n-train 3000 --trade-epochs 3 --trade-seeds 3] [--precision-seeds 0-15]
Needs the Debian package dataset-fashion-mnist (and torch for grad/parity/train).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, have, md_table, render_sections, write_result  # noqa: E402

from effai_fast import nn  # noqa: E402
from effai_fast.datasets import load_fashion_mnist, resize_images  # noqa: E402
from effai_fast.mobilenet import cost, mobilenet_v1, torch_mobilenet_v1  # noqa: E402
from effai_fast.optim import SGD  # noqa: E402

MOMENTUM, BATCH = 0.9, 64                        # BATCH: the grad part's batch
PARITY_STEPS, PERTURB = 40, 1e-13               # parity: float64 steps, relative perturbation
# the float32 accuracy runs (train, tradeoff): peak lr, decay, batch, warm-up share of steps
TRAIN_LR, TRAIN_WD, TRAIN_BATCH, WARMUP = 0.1, 5e-4, 128, 0.05
PARTS = ("grad", "parity", "train", "precision", "speed", "tradeoff")


def batches(n, epochs, seed, batch=BATCH):
    """One permutation per epoch, cut into full batches (the remainder is dropped)."""
    rng = np.random.default_rng(seed)
    return [[o[i:i + batch] for i in range(0, n - batch + 1, batch)]
            for o in (rng.permutation(n) for _ in range(epochs))]


def twin(alpha, dtype=np.float32, seed=0):
    """Our MobileNet and PyTorch's with our initial weights (or None without torch)."""
    ours = mobilenet_v1(alpha, 28, 10, 1, seed=seed, dtype=dtype)
    if not have("torch"):
        return ours, None

    theirs = torch_mobilenet_v1(alpha, 10, 1)
    if dtype == np.float64:
        theirs = theirs.double()
    return ours, nn.copy_to_torch(ours, theirs)


def torch_predict(model, x):
    """Class predictions of a PyTorch twin in eval mode for NHWC images ``x``."""
    import torch

    model.eval()
    dtype = next(model.parameters()).dtype
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))).to(dtype))
    return out.numpy().argmax(1)


def torch_accuracy(model, x, y):
    return float(np.mean(torch_predict(model, x) == y))


# ------------------------------------------------------------------------------- parts
def part_grad(data, args, checkpoint=None):
    import torch

    xtr, ytr = data[0][:BATCH], data[1][:BATCH]
    torch.set_num_threads(1)
    ours32, t32 = twin(0.25, np.float32)
    t64 = copy.deepcopy(t32).double()
    ours64 = mobilenet_v1(0.25, 28, 10, 1, seed=0, dtype=np.float64)
    ours64.load_state_dict({k: v.astype(np.float64) for k, v in ours32.state_dict().items()})
    grads = {}
    for name, model in (("ours32", ours32), ("ours64", ours64)):
        model.n_threads = 1
        z = model.forward(xtr.astype(model.dtype), training=True)
        _, g = nn.functional.softmax_cross_entropy(z, ytr)
        model.backward(g, need_input_grad=False)
        grads[name] = model
    for _name, model in (("torch32", t32), ("torch64", t64)):
        model.train()
        dt = next(model.parameters()).dtype
        x = torch.from_numpy(np.ascontiguousarray(xtr.transpose(0, 3, 1, 2))).to(dt)
        torch.nn.functional.cross_entropy(model(x), torch.from_numpy(ytr)).backward()

    def torch_grads(model):
        return [p.grad.numpy() for p in model.parameters()]

    def to_ours(r, shape):
        # a PyTorch gradient in our layout (stem HWIO, depthwise HWC, pointwise IO, fc IO)
        if r.ndim == 4 and len(shape) == 4:
            return r.transpose(2, 3, 1, 0)
        if r.ndim == 4 and len(shape) == 3:
            return r[:, 0].transpose(1, 2, 0)
        if r.ndim == 4:
            return r[:, :, 0, 0].T
        if r.ndim == 2:
            return r.T
        return r

    shapes = [g.shape for g in ours32.gradients()]
    ref = [to_ours(r, sh) for r, sh in zip(torch_grads(t64), shapes)]
    rows, data_out = [], {}
    for name, gl in (("effai_fast float32", ours32.gradients()),
                     ("PyTorch float32", [to_ours(r, sh) for r, sh in
                                          zip(torch_grads(t32), shapes)]),
                     ("effai_fast float64", ours64.gradients())):
        errs = np.array([np.linalg.norm(a - r) / np.linalg.norm(r) for a, r in zip(gl, ref)
                         if r.size > 20 and np.linalg.norm(r) > 0])
        data_out[name] = errs.tolist()
        rows.append([name, len(errs), f"{np.median(errs):.1e}", f"{np.max(errs):.1e}"])
    md = ("### Gradient accuracy of one training step (why float32 trajectories part)\n\n"
          "MobileNet v1 alpha=0.25 at 28x28, one batch of 64 Fashion-MNIST images in "
          "training mode (batch statistics), the same weights everywhere.  Relative error "
          "`|g - g_ref| / |g_ref|` of every weight tensor's gradient (tensors with more than "
          "20 entries) against PyTorch in float64.\n\n"
          + md_table(["gradient", "tensors", "median rel. error", "max rel. error"], rows)
          + "\n\nIn float32 both libraries carry rounding errors far above float32's 6e-8: "
            "27 batch norms, some over 1x1 feature maps of 64 values, amplify them on the way "
            "back.  Ours stay close to the exact gradient; PyTorch's float32 CPU path is "
            "less accurate here.  Any two float32 implementations therefore follow different "
            "trajectories after a few SGD steps; the `parity` part below compares the two "
            "training loops in float64, where rounding no longer hides a real difference.")
    return md, data_out


def part_parity(data, args, checkpoint=None):
    """float64: ours against torch, and torch against itself from a perturbed start."""
    import torch

    xtr, ytr, xte, yte = data
    steps = 10 if args.quick else PARITY_STEPS
    x = xtr.astype(np.float64)
    # the first steps of the train part's alpha=0.25 seed-1 run (its batches, its warm-up +
    # cosine schedule over 3 epochs of 10k images, its weight-decay groups), in float64
    plan = batches(len(x), 3, seed=1001, batch=TRAIN_BATCH)
    total = sum(len(e) for e in plan)
    idxs = [i for e in plan for i in e][:steps]
    lrs = [lr_at(s, total) for s in range(steps)]
    ours, theirs = twin(0.25, np.float64, seed=1)
    pert = copy.deepcopy(theirs)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in pert.parameters():
            p.mul_(1 + PERTURB * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    to = OursTrainer(ours, 1)
    tt, tp = TorchTrainer(theirs, 1, x), TorchTrainer(pert, 1, x)
    keys = [k for k in theirs.state_dict() if not k.endswith("num_batches_tracked")]
    names = dict(zip(keys, _param_names(ours, keys)))

    def rel(a, b):
        return {k: float(np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(b[k]), 1e-300))
                for k in keys}

    def tsd(m):
        return {k: v.detach().numpy() for k, v in m.state_dict().items()}

    rec = {k: [] for k in ("loss_ours", "loss_torch", "loss_pert", "max_ours", "med_ours",
                           "max_pert", "med_pert", "worst_ours")}
    for s in range(steps):
        lo = to.epoch(x, ytr, [idxs[s]], [lrs[s]])[1]
        lt = tt.epoch(x, ytr, [idxs[s]], [lrs[s]])[1]
        lp = tp.epoch(x, ytr, [idxs[s]], [lrs[s]])[1]
        st = tsd(theirs)
        r1 = rel(nn.export_torch_state_dict(ours, theirs.state_dict()), st)
        r2 = rel(tsd(pert), st)
        worst = max(r1, key=r1.get)
        for k, v in (("loss_ours", lo), ("loss_torch", lt), ("loss_pert", lp),
                     ("max_ours", r1[worst]), ("med_ours", float(np.median(list(r1.values())))),
                     ("max_pert", max(r2.values())),
                     ("med_pert", float(np.median(list(r2.values())))),
                     ("worst_ours", names[worst])):
            rec[k].append(v)
        print(f"parity step {s}: loss |o-t| {abs(lo - lt):.1e} |p-t| {abs(lp - lt):.1e}, "
              f"max rel {r1[worst]:.1e} ({names[worst]}) / {rec['max_pert'][-1]:.1e}",
              flush=True)
    xe = xte.astype(np.float64)
    po = ours.predict(xe).argmax(1)
    preds = {"torch": torch_predict(theirs, xe), "pert": torch_predict(pert, xe)}
    acc = {"ours": 100 * float(np.mean(po == yte)),
           "torch": 100 * float(np.mean(preds["torch"] == yte)),
           "pert": 100 * float(np.mean(preds["pert"] == yte))}
    agree_o = 100 * float(np.mean(po == preds["torch"]))
    agree_p = 100 * float(np.mean(preds["pert"] == preds["torch"]))
    lo, lt, lp = (np.array(rec[k]) for k in ("loss_ours", "loss_torch", "loss_pert"))
    rows = []
    for s in sorted({0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 15, 20, 30, steps - 1}):
        if s < steps:
            rows.append([s, f"{lrs[s]:.4f}", f"{lo[s]:.6f}", f"{lt[s]:.6f}",
                         f"{abs(lo[s] - lt[s]):.1e}", f"{abs(lp[s] - lt[s]):.1e}",
                         f"{rec['max_ours'][s]:.1e}", f"{rec['max_pert'][s]:.1e}",
                         f"{rec['med_ours'][s]:.1e}", f"{rec['med_pert'][s]:.1e}",
                         rec["worst_ours"][s]])
    mo, mp = np.array(rec["med_ours"]), np.array(rec["med_pert"])
    growth = mp < 1e-3          # before the perturbed twin has parted (median tensor 1e-3)
    below = int(np.sum(mo[growth] <= mp[growth]))
    md = (f"### Training-loop parity in float64\n\n"
          f"The first {steps} SGD steps of the `train` part's alpha=0.25 run for seed 1 (its "
          f"initialisation seed, its batches of {TRAIN_BATCH} from the 10,000 training images, "
          f"its learning rates: warm-up to {TRAIN_LR} over the first "
          f"{max(1, int(WARMUP * total))} steps, then cosine over {total} steps; weight "
          f"decay {TRAIN_WD} on convolution and "
          f"classifier weights, Nesterov momentum {MOMENTUM}), run in float64, 1 thread, by "
          f"effai_fast, by PyTorch, and by PyTorch again from the same initial weights "
          f"multiplied by (1 + {PERTURB:g} N(0, 1)) (*torch\'*).  After every step every "
          f"tensor of the state (weights, batch-norm scales, shifts and running statistics, "
          f"in PyTorch layout) is compared with PyTorch\'s: relative difference "
          f"`|a - b| / |b|`, largest and median over the {len(keys)} tensors.  If the two "
          f"loops differed anywhere (batch-norm momentum or eps convention, biased running "
          f"variance, the weight-decay set, the Nesterov formula, the learning rate of a "
          f"step, the loss), ours - torch would jump at the first step that uses it, far "
          f"above torch\' - torch.\n\n"
          + md_table(["step", "lr", "loss (ours)", "loss (torch)", "|ours - torch|",
                      "|torch' - torch|", "max rel ours", "max rel torch'",
                      "median rel ours", "median rel torch'", "largest (ours)"], rows)
          + f"\n\nWhile the runs are still close (the {int(growth.sum())} steps before "
            f"the perturbed run's median tensor reaches 1e-3), ours is at most as far from "
            f"PyTorch as torch\' is on {below} of them (median tensor); both start at "
            f"rounding level "
            f"(ours {mo[0]:.0e}, torch\' {mp[0]:.0e} after step 0; the tensor of ours "
            f"furthest from PyTorch\'s is then {rec['worst_ours'][0]}) and grow alike until "
            f"they saturate at O(1), where the runs are as different as any two.  "
            + ("So ours never runs ahead of a 1e-13 perturbation of PyTorch's own start: SGD "
               "on this network, at this learning rate, is chaotic, and it amplifies that "
               "perturbation as fast as the last-bit differences of our float64 kernels -- no "
               "systematic difference between the two loops shows.  "
               if below == int(growth.sum()) else
               "Ours runs ahead of the perturbed twin on some steps: a systematic difference "
               "cannot be excluded from this alone.  ")
            + f"Test accuracy after the {steps} steps (eval mode, running statistics, "
            f"10k test images): ours {acc['ours']:.2f}%, torch {acc['torch']:.2f}%, "
            f"torch\' {acc['pert']:.2f}%; ours and torch predict the same class for "
            f"{agree_o:.1f}% of the test images, torch\' and torch for {agree_p:.1f}%.  "
            f"Evaluation itself is checked exactly in float64 by "
            f"tests/test_nn_training_parity.py (same recipe, then eval-mode outputs to 1e-7).")
    return md, {"steps": steps, "lrs": lrs, "perturb": PERTURB, **rec, "acc": acc,
                "growth_steps": int(growth.sum()), "ours_not_ahead": below,
                "agree_ours_torch": agree_o, "agree_pert_torch": agree_p}


def _param_names(model, keys):
    """Our names of the tensors behind PyTorch's state_dict keys (export order)."""
    from effai_fast.nn._io import _our_entries  # the order export_torch_state_dict uses

    names = [e[0] for e in _our_entries(model)]
    assert len(names) == len(keys), (len(names), len(keys))
    return names


def run_epochs(trainers, x, y, plan, rec):
    """Train every trainer (``{key: trainer}``) through ``plan``'s epochs, interleaved
    epoch by epoch, on the warm-up + cosine schedule of :func:`lr_at`; the epoch times and
    mean losses go to ``rec[f"{key}_epoch_s"]`` and ``rec[f"{key}_loss"]`` (reset here).
    Yields after each epoch (for progress lines)."""
    total, step = sum(len(e) for e in plan), 0
    for key in trainers:
        rec[f"{key}_epoch_s"], rec[f"{key}_loss"] = [], []
    for ep in plan:
        lrs = [lr_at(step + i, total) for i in range(len(ep))]
        step += len(ep)
        for key, tr in trainers.items():
            sec, loss = tr.epoch(x, y, ep, lrs)
            rec[f"{key}_epoch_s"].append(sec)
            rec[f"{key}_loss"].append(loss)
        yield


def lr_at(step, total, peak=None):
    """Linear warm-up over the first ``WARMUP`` of the steps, then cosine decay to 0."""
    peak = TRAIN_LR if peak is None else peak
    warm = max(1, int(WARMUP * total))
    if step < warm:
        return peak * (step + 1) / warm
    return 0.5 * peak * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


class OursTrainer:
    """effai_fast side of a paired run: SGD Nesterov, weight decay on conv / linear weights
    only (batch-norm scales and shifts and the classifier bias exempt), lr set every step."""

    def __init__(self, model, threads, wd=TRAIN_WD):
        self.model = model
        model.n_threads = threads
        self.opt = SGD(nn.param_groups(model, wd, no_decay=("batchnorm", "bias")), lr=0.0,
                       momentum=MOMENTUM, nesterov=True)
        self.n_decayed = sum(p.size for g in self.opt.param_groups if g["weight_decay"] > 0
                             for p in g["params"])

    def epoch(self, x, y, idxs, lrs):
        """One epoch: (seconds, mean training loss)."""
        total, t0 = 0.0, time.perf_counter()
        with nn.blas_single_thread():
            for idx, lr in zip(idxs, lrs):
                self.opt.lr = lr
                logits = self.model.forward(x[idx], training=True)
                loss, g = nn.functional.softmax_cross_entropy(logits, y[idx])
                if not np.isfinite(loss):
                    raise FloatingPointError("effai_fast loss is not finite")
                self.model.backward(g, need_input_grad=False)
                self.opt.step()
                total += float(loss)
        return time.perf_counter() - t0, total / len(idxs)

    def accuracy(self, x, y):
        return self.model.evaluate(x, y)["accuracy"]


class TorchTrainer:
    """The same loop in PyTorch: torch.optim.SGD with the same two parameter groups."""

    def __init__(self, model, threads, x, wd=TRAIN_WD):
        import torch

        self.torch, self.model, self.threads = torch, model, threads
        decay = [p for p in model.parameters() if p.ndim > 1]
        plain = [p for p in model.parameters() if p.ndim <= 1]
        self.opt = torch.optim.SGD([{"params": decay, "weight_decay": wd},
                                    {"params": plain, "weight_decay": 0.0}], lr=0.0,
                                   momentum=MOMENTUM, nesterov=True)
        self.n_decayed = sum(p.numel() for p in decay)
        self.xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))

    def epoch(self, x, y, idxs, lrs):
        torch = self.torch
        torch.set_num_threads(self.threads)
        yt = torch.from_numpy(y)
        self.model.train()
        total, t0 = 0.0, time.perf_counter()
        for idx, lr in zip(idxs, lrs):
            for g in self.opt.param_groups:
                g["lr"] = lr
            ti = torch.from_numpy(idx)
            loss = torch.nn.functional.cross_entropy(self.model(self.xt[ti]), yt[ti])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
            total += float(loss.detach())
        return time.perf_counter() - t0, total / len(idxs)

    def accuracy(self, x, y):
        self.torch.set_num_threads(self.threads)
        return torch_accuracy(self.model, x, y)


def mean_sd(v, digits=2):
    v = np.asarray(v, dtype=float)
    if len(v) == 0:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def paired_ci(d, level=0.95):
    """Mean of the paired differences and its Student-t confidence interval."""
    from scipy import stats

    d = np.asarray(d, dtype=float)
    m = float(d.mean())
    if len(d) < 2:
        return m, float("nan"), float("nan"), float("nan")
    sd = float(d.std(ddof=1))
    h = float(stats.t.ppf(0.5 + level / 2, len(d) - 1)) * sd / np.sqrt(len(d))
    return m, sd, m - h, m + h


def train_config(args):
    if args.quick:
        return {"n_train": 1024, "epochs": 2, "seeds": {0.25: [0], 0.5: []}}
    return {"n_train": args.n_train, "epochs": args.epochs,
            "seeds": {0.25: list(range(args.seeds)), 0.5: list(range(args.seeds_05))}}


def train_markdown(conf, runs):
    """The ``train`` section from its stored configuration and per-seed runs."""
    rows, verdicts = [], []
    for alpha in sorted({r["alpha"] for r in runs}):
        rs = [r for r in runs if r["alpha"] == alpha]
        ao = [r["ours_acc"] for r in rs]
        at = [r["torch_acc"] for r in rs]
        m, sd, lo, hi = paired_ci(np.subtract(ao, at))
        so = float(np.median([t for r in rs for t in r["ours_epoch_s"]]))
        st = float(np.median([t for r in rs for t in r["torch_epoch_s"]]))
        # each torch epoch against the ours epoch run just before it (same load), from the
        # seeds whose two arms ran interleaved in one process
        paired = [r for r in rs if r.get("paired_timing", True)]
        ratio = (float(np.median([b / a for r in paired for a, b in
                                  zip(r["ours_epoch_s"], r["torch_epoch_s"])]))
                 if paired else float("nan"))
        ci = "-" if np.isnan(lo) else f"[{lo:+.2f}, {hi:+.2f}]"
        rows.append([alpha, len(rs), round(cost(alpha, 28, 10, 1).macs / 1e6, 3),
                     mean_sd(ao), mean_sd(at), f"{m:+.2f}",
                     "-" if np.isnan(sd) else f"{sd:.2f}", ci,
                     round(so, 1), round(st, 1),
                     f"{ratio:.2f} ({len(paired)} seeds)" if paired else "-"])
        if len(rs) < 2:
            verdicts.append(f"alpha={alpha}: one seed only, no confidence interval.")
            continue
        from scipy import stats

        indep = float(np.hypot(np.std(ao, ddof=1), np.std(at, ddof=1)))
        room = 0.5 - abs(m)
        need = next((k for k in range(2, 1001) if room > 0 and
                     stats.t.ppf(0.975, k - 1) * sd / np.sqrt(k) <= room), None)
        inside = -0.5 <= lo and hi <= 0.5
        dl = [r["ours_loss"][-1] - r["torch_loss"][-1] for r in rs]
        lm, _, llo, lhi = paired_ci(dl)
        loss_note = (f"Last-epoch mean training loss, ours - torch: {lm:+.4f}, 95% CI "
                     f"[{llo:+.4f}, {lhi:+.4f}] ({'contains' if llo <= 0 <= lhi else 'excludes'}"
                     f" 0); its correlation with the accuracy difference across seeds is "
                     f"{np.corrcoef(dl, np.subtract(ao, at))[0, 1]:+.2f}.  ")
        verdicts.append(
            f"alpha={alpha} ({len(rs)} seeds): mean difference {m:+.2f} points, "
            f"|mean diff| {'<=' if abs(m) <= 0.5 else '>'} 0.5; the 95% CI "
            f"[{lo:+.2f}, {hi:+.2f}] "
            + ("lies inside ±0.5 points: parity within 0.5 points is shown.  " + loss_note
               if inside else
               f"{'contains' if lo <= 0 <= hi else 'excludes'} 0 and does not lie inside "
               f"±0.5 points: parity within 0.5 points is not shown"
               + (" (and no difference is shown either)" if lo <= 0 <= hi else
                  "; effai_fast is the more accurate here" if lo > 0 else
                  "; effai_fast is the less accurate here") + ".  "
               + (f"One-sided, the CI's lower end ({lo:+.2f}) is above -0.5: effai_fast "
                  f"is shown to be no more than 0.5 points less accurate than PyTorch.  "
                  if lo > -0.5 else "")
               + f"The sd of the paired difference ({sd:.2f} points) compares with "
               f"{indep:.2f} for two independent runs (sd of ours and of torch combined)"
               + ("; same init and batches buy no correlation" if sd >= 0.8 * indep else "")
               + ".  "
               + loss_note
               + (f"If mean and sd stayed as measured, the CI would fall inside ±0.5 after "
                  f"about {need} seeds." if need else
                  f"With the mean difference as measured ({m:+.2f}), more seeds would "
                  f"narrow the CI around a value outside ±0.5.")))
    verdicts += _provenance_notes(runs)

    def finished(r):
        t = r.get("measured", "2026-11-28 09:15-10:20 UTC")[11:]
        if "ours_measured" in r:       # effai_fast's arm re-trained alone, later
            return f"ours {r['ours_measured'][11:-4]}, torch {t}"
        return t

    def load(r):
        if "ours_loadavg" in r:
            return f"{r['ours_loadavg']:.1f} / {r['loadavg']:.1f}" if "loadavg" in r else "-"
        return f"{r['loadavg']:.1f}" if "loadavg" in r else "-"

    per_seed = [[r["alpha"], r["seed"], f"{r['ours_acc']:.2f}", f"{r['torch_acc']:.2f}",
                 f"{r['ours_acc'] - r['torch_acc']:+.2f}",
                 "-" if r.get("agree") is None else f"{r['agree']:.1f}",
                 f"{r['ours_loss'][-1]:.4f}", f"{r['torch_loss'][-1]:.4f}",
                 f"{np.median(r['ours_epoch_s']):.1f} / {np.median(r['torch_epoch_s']):.1f}",
                 r.get("ours_commit", "-"), finished(r), load(r)]
                for r in sorted(runs, key=lambda r: (r["alpha"], r["seed"]))]
    n, epochs, threads = conf["n_train"], conf["epochs"], conf["threads"]
    return (f"### float32 training: test accuracy (paired seeds) and time per epoch\n\n"
            f"MobileNet v1 at 28x28 (rho = 1), Fashion-MNIST: {n:,} training images "
            f"(class-stratified subset), all {conf['n_test']:,} test images; {epochs} epochs "
            f"of {n // conf['batch']} steps, batch {conf['batch']}; SGD momentum "
            f"{conf['momentum']} Nesterov, learning rate linear warm-up to {conf['lr']} over "
            f"the first {conf['warmup']:.0%} of the steps then cosine decay to 0, weight decay "
            f"{conf['weight_decay']} on convolution and classifier weights (batch-norm "
            f"parameters and the classifier bias exempt), batch-norm momentum 0.1, no "
            f"dropout, no augmentation; {threads} thread(s).  For each seed both libraries "
            f"start from the same initial weights (ours, copied into PyTorch) and see the "
            f"same batches in the same order, epochs interleaved (ours, torch, ours, ...).  "
            f"Test accuracy in eval mode (running statistics) after the last epoch.  The two "
            f"float32 trajectories part within a few steps (see the gradient section), so "
            f"each seed gives one paired draw of two independent-looking outcomes; the "
            f"paired difference ours - torch is summarised by its mean, sd and 95% "
            f"Student-t confidence interval.  Time per epoch: median over all epochs of all "
            f"seeds (training only, no evaluation); speed-up: median over all epochs of "
            f"torch's time over ours for the epoch run just before it (the two share the "
            f"machine's load of that minute), over the seeds whose two arms ran interleaved "
            f"in one process.  Seeds of one configuration may come from separate processes "
            f"(the bench extends the stored runs by the seeds they lack, and "
            f"`--refresh-ours` re-trains effai_fast's arm of the stored seeds that ran on "
            f"other code); the per-seed table gives the commit of effai_fast's code each "
            f"effai_fast arm trained on, when each arm finished and the 1-minute load "
            f"then.\n\n"
            + md_table(["alpha", "seeds", "MMACs/image", "test acc % (ours)",
                        "test acc % (torch)", "mean diff", "sd diff", "95% CI of diff",
                        "s/epoch (ours)", "s/epoch (torch)", "speed-up"], rows)
            + "\n\n" + "\n\n".join(verdicts)
            + "\n\nPer seed (agreement = share of test images both predict the same "
              "class; last-epoch mean training loss):\n\n"
            + md_table(["alpha", "seed", "acc % (ours)", "acc % (torch)", "diff",
                        "agree %", "train loss (ours)", "train loss (torch)",
                        "s/epoch ours / torch", "ours code", "finished (UTC)", "load"],
                       per_seed))


def _provenance_notes(runs):
    """Which code effai_fast's arms trained on, and what re-training the stale ones did."""
    notes, now = [], _code_commit()
    for alpha in sorted({r["alpha"] for r in runs}):
        rs = sorted((r for r in runs if r["alpha"] == alpha), key=lambda r: r["seed"])
        old = [r for r in rs if "ours_commit" not in r]
        other = [r for r in rs if "ours_commit" in r and r["ours_commit"] != now]
        if old:
            notes.append(f"alpha={alpha}: the effai_fast arm of seeds "
                         f"{', '.join(str(r['seed']) for r in old)} ran before the runs "
                         f"recorded their code (finished "
                         f"{min(r.get('measured', '2026-11-28 09:15')[11:16] for r in old)}"
                         f"-{max(r.get('measured', '2026-11-28 10:20')[11:16] for r in old)} "
                         f"UTC); effai_fast's "
                         f"kernels have changed since (`--refresh-ours` re-trains them).")
        if other:
            notes.append(f"alpha={alpha}: the effai_fast arm of seeds "
                         f"{', '.join(str(r['seed']) for r in other)} trained on commit(s) "
                         f"{', '.join(sorted({r['ours_commit'] for r in other}))}, not on the "
                         f"code this file was rendered from ({now}).")
        ref = [r for r in rs if "ours_orig" in r]
        if not ref:
            continue
        chk = [r for r in ref if "torch_check" in r]
        when = sorted(r.get("ours_measured", r.get("measured", "?"))[11:-4] for r in ref)
        m0, sd0, lo0, hi0 = paired_ci([r["ours_orig"]["ours_acc"] - r["torch_acc"]
                                       for r in ref])
        m1, sd1, lo1, hi1 = paired_ci([r["ours_acc"] - r["torch_acc"] for r in ref])
        mo, _, loo, hio = paired_ci([r["ours_acc"] - r["ours_orig"]["ours_acc"] for r in ref])
        text = (f"alpha={alpha}: effai_fast's arm of the {len(ref)} stored seeds "
                f"{', '.join(str(r['seed']) for r in ref)} (first trained "
                f"{min(r['ours_orig'].get('measured', '2026-11-28 09:15')[11:16] for r in ref)}"
                f"-{max(r['ours_orig'].get('measured', '2026-11-28 10:20')[11:16] for r in ref)}"
                f" UTC on earlier kernels) was re-trained at "
                f"{', '.join(sorted({r['ours_commit'] for r in ref}))} ({when[0]}-{when[-1]} "
                f"UTC), same initial weights, batches and learning rates.  ")
        if chk:
            ok = [r for r in chk if r["torch_check"]["reproduced"]]
            text += (f"PyTorch's arm was re-trained too for seed(s) "
                     f"{', '.join(str(r['seed']) for r in chk)}: "
                     + ("it reproduced the stored losses and accuracy bit for bit, so the "
                        "other seeds keep their stored PyTorch arm (same torch build, 1 "
                        "thread) and their timing is not paired.  " if len(ok) == len(chk)
                        else f"it did NOT reproduce the stored run on "
                             f"{len(chk) - len(ok)} of them; those seeds carry the new "
                             f"PyTorch arm.  "))
        else:
            text += ("PyTorch's arm is the stored one (same torch build, 1 thread; not "
                     "re-checked in this refresh).  ")
        text += (f"On these seeds ours - torch was {m0:+.2f} points (sd {sd0:.2f}, 95% CI "
                 f"[{lo0:+.2f}, {hi0:+.2f}]) with the first effai_fast arms and is "
                 f"{m1:+.2f} (sd {sd1:.2f}, [{lo1:+.2f}, {hi1:+.2f}]) with the re-trained "
                 f"ones; new - first effai_fast arm: {mo:+.2f} [{loo:+.2f}, {hio:+.2f}]: "
                 f"float32 trajectories part within a few steps, so a kernel change that "
                 f"moves only the last bits re-draws each seed's outcome.")
        notes.append(text)
    return notes


def part_train(data, args, checkpoint=None):
    """Paired float32 training: per seed, same initial weights and batches for both.

    Stored runs of the same configuration are kept and extended by the seeds they lack.
    With ``--refresh-ours`` the effai_fast arm of every stored run trained on other code
    (its ``ours_commit`` differs from :func:`_code_commit`, or is missing) is re-trained
    first; PyTorch's arm is kept (same torch build, deterministic at 1 thread).  The first
    ``--check-torch`` refreshed seeds re-train PyTorch's arm too, interleaved, and record
    whether it reproduced the stored one bit for bit; if it did not, every remaining stale
    seed is re-trained on both arms.
    """
    cfg = train_config(args)
    xtr, ytr, xte, yte = data
    xtr, ytr = xtr[:cfg["n_train"]], ytr[:cfg["n_train"]]
    epochs, n = cfg["epochs"], len(xtr)
    runs = []

    conf = {"n_train": n, "n_test": len(xte), "epochs": epochs, "batch": TRAIN_BATCH,
            "lr": TRAIN_LR, "warmup": WARMUP, "weight_decay": TRAIN_WD, "momentum": MOMENTUM,
            "threads": args.threads}

    def summary():
        return train_markdown(conf, runs), {"config": conf, "runs": runs}

    if getattr(args, "keep_runs", None) and args.keep_runs.get("config") == conf:
        # extend the stored runs of the same configuration by the seeds they lack
        runs += [r for r in args.keep_runs["runs"] if r["seed"] in cfg["seeds"][r["alpha"]]]
    commit = _code_commit()

    def stamp(rec):
        rec["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        rec["loadavg"] = os.getloadavg()[0]
        rec["nice"] = os.nice(0)

    def train_seed(alpha, seed, arms):
        """Train ``arms`` (ours and/or torch) of one seed; the new fields of its record."""
        ours, theirs = twin(alpha, seed=seed)
        trainers = {"ours": OursTrainer(ours, args.threads)}
        if "torch" in arms:
            trainers["torch"] = TorchTrainer(theirs, args.threads, xtr)
            assert trainers["ours"].n_decayed == trainers["torch"].n_decayed
        plan = batches(n, epochs, seed=1000 + seed, batch=TRAIN_BATCH)
        rec = {}
        for _ in run_epochs(trainers, xtr, ytr, plan, rec):
            print(f"alpha={alpha} seed={seed} epoch {len(rec['ours_loss'])}: loss "
                  + " / ".join(f"{rec[f'{k}_loss'][-1]:.4f}" for k in trainers) + ", s "
                  + " / ".join(f"{rec[f'{k}_epoch_s'][-1]:.1f}" for k in trainers),
                  flush=True)
        po = ours.predict(xte).argmax(1)
        rec["ours_acc"] = 100 * float(np.mean(po == yte))
        rec["ours_commit"] = commit
        rec["agree"] = None
        if "torch" in arms:
            import torch

            torch.set_num_threads(args.threads)
            pt = torch_predict(theirs, xte)
            rec["torch_acc"] = 100 * float(np.mean(pt == yte))
            rec["agree"] = 100 * float(np.mean(po == pt))
        return rec

    if getattr(args, "refresh_ours", False):
        stale = [r for r in runs if r.get("ours_commit") != commit]
        checks = {a: max(0, getattr(args, "check_torch", 1)) for a in (0.25, 0.5)}
        for r in sorted(stale, key=lambda r: (r["alpha"], r["seed"])):
            both = checks[r["alpha"]] > 0 or getattr(args, "_torch_differs", False)
            new = train_seed(r["alpha"], r["seed"], ("ours", "torch") if both else ("ours",))
            # the first arm stored for this seed, kept for the record (precision section)
            r.setdefault("ours_orig", {k: r[k] for k in ("ours_acc", "ours_loss",
                                                        "ours_epoch_s", "agree", "measured")
                                       if k in r})
            if both:
                same = (new["torch_loss"] == r["torch_loss"]
                        and new["torch_acc"] == r["torch_acc"])
                r["torch_check"] = {"reproduced": same, "commit": commit,
                                    "measured": time.strftime("%Y-%m-%d %H:%M UTC",
                                                              time.gmtime())}
                if not same:
                    r["torch_orig"] = {k: r[k] for k in ("torch_acc", "torch_loss",
                                                         "torch_epoch_s")}
                    args._torch_differs = True
                    print(f"alpha={r['alpha']} seed={r['seed']}: PyTorch's arm did NOT "
                          f"reproduce the stored one; stale seeds are re-trained on both "
                          f"arms", flush=True)
                checks[r["alpha"]] -= 1
                r.update(new)
                stamp(r)
                r["paired_timing"] = True
                r.pop("ours_measured", None)
                r.pop("ours_loadavg", None)
            else:
                r.update(new)
                r["ours_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                r["ours_loadavg"] = os.getloadavg()[0]
                r["ours_nice"] = os.nice(0)
                r["paired_timing"] = False
            print(f"alpha={r['alpha']} seed={r['seed']} refreshed: ours {r['ours_acc']:.2f} "
                  f"(was {r['ours_orig']['ours_acc']:.2f}), torch {r['torch_acc']:.2f}",
                  flush=True)
            if checkpoint is not None:
                checkpoint(*summary())
    done = {(r["alpha"], r["seed"]) for r in runs}
    # missing seeds, alternating between the two widths (alpha=0.5 first at equal rank)
    order = sorted(((k, -a, a, s) for a in (0.25, 0.5) for k, s in enumerate(cfg["seeds"][a])
                    if (a, s) not in done))
    for _, _, alpha, seed in order:
        rec = {"alpha": alpha, "seed": seed, **train_seed(alpha, seed, ("ours", "torch")),
               "paired_timing": True}
        stamp(rec)
        runs.append(rec)
        print(f"alpha={alpha} seed={seed}: test acc {rec['ours_acc']:.2f} / "
              f"{rec['torch_acc']:.2f} (agree {rec['agree']:.1f}%)", flush=True)
        if checkpoint is not None:
            checkpoint(*summary())
    return summary()


def precision_config(args):
    if args.quick:
        return {"n_train": 1024, "epochs": 2, "alpha": 0.25, "seeds": [0]}
    seeds = []
    for item in args.precision_seeds.split(","):
        lo, _, hi = item.partition("-")
        seeds += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return {"n_train": args.n_train, "epochs": args.epochs, "alpha": 0.25, "seeds": seeds}


def _stored(part):
    try:
        return json.loads((RESULTS / "mobilenet_train.json").read_text())["data"][
            "sections"].get(part, {}).get("data")
    except (OSError, ValueError, KeyError):
        return None


def part_precision(data, args, checkpoint=None):
    """The train part's alpha=0.25 seeds again: float64 (both libraries) and ours in float32.

    Same seeds, same initial weights (the float32 ones; cast exactly for float64), same
    batches and learning rates.  Arms (``--precision-arms``): ``f64`` trains effai_fast and
    PyTorch in float64 (epochs interleaved); ``now32`` re-trains effai_fast in float32 with
    the code as it is now (the stored ``train`` runs may come from earlier kernels; PyTorch's
    float32 arm is the stored one: same torch build, deterministic at 1 thread).
    """
    pc = precision_config(args)
    arms = [a for a in args.precision_arms.split(",") if a]
    if set(arms) - {"f64", "now32"}:
        raise ValueError(f"--precision-arms: unknown arms {sorted(set(arms) - {'f64', 'now32'})}")
    xtr, ytr, xte, yte = data
    xtr, ytr = xtr[:pc["n_train"]], ytr[:pc["n_train"]]
    n, epochs, alpha = len(xtr), pc["epochs"], pc["alpha"]
    conf = {"n_train": n, "n_test": len(xte), "epochs": epochs, "batch": TRAIN_BATCH,
            "lr": TRAIN_LR, "warmup": WARMUP, "weight_decay": TRAIN_WD, "momentum": MOMENTUM,
            "threads": args.threads, "alpha": alpha}
    x64, xe64 = xtr.astype(np.float64), xte.astype(np.float64)
    mine = {}

    def merged():
        # runs of the same configuration stored by other processes, field by field per seed
        old = _stored("precision") or {}
        runs = {r["seed"]: dict(r) for r in old.get("runs", []) if old.get("config") == conf}
        for seed, rec in mine.items():
            runs.setdefault(seed, {"seed": seed}).update(rec)
        return [runs[k] for k in sorted(runs)]

    def summary():
        runs = merged()
        train = _stored("train") or {}
        return precision_markdown(conf, runs, train), {"config": conf, "runs": runs}

    have_runs = {r["seed"]: r for r in merged()} if not args.quick else {}
    # the now32 arm is re-run whenever the code changed (stored runs of another commit)
    commit = _code_commit()
    for seed in pc["seeds"]:
        stored = have_runs.get(seed, {})
        rec = mine.setdefault(seed, {"seed": seed})
        if "now32" in arms and stored.get("now32_commit") != commit:
            ours = mobilenet_v1(alpha, 28, 10, 1, seed=seed, dtype=np.float32)
            to = OursTrainer(ours, args.threads)
            plan = batches(n, epochs, seed=1000 + seed, batch=TRAIN_BATCH)
            for _ in run_epochs({"now32": to}, xtr, ytr, plan, rec):
                pass
            rec["now32_acc"] = 100 * float(np.mean(ours.predict(xte).argmax(1) == yte))
            rec["now32_measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            rec["now32_commit"] = commit
            print(f"precision seed={seed}: ours float32 now {rec['now32_acc']:.2f}", flush=True)
            if checkpoint is not None:
                checkpoint(*summary())
        if "f64" not in arms or "ours64_acc" in stored:
            continue
        ours32 = mobilenet_v1(alpha, 28, 10, 1, seed=seed, dtype=np.float32)
        ours = mobilenet_v1(alpha, 28, 10, 1, seed=seed, dtype=np.float64)
        ours.load_state_dict({k: v.astype(np.float64) for k, v in ours32.state_dict().items()})
        import torch

        theirs = nn.copy_to_torch(ours, torch_mobilenet_v1(alpha, 10, 1).double())
        to, tt = OursTrainer(ours, args.threads), TorchTrainer(theirs, args.threads, x64)
        plan = batches(n, epochs, seed=1000 + seed, batch=TRAIN_BATCH)
        for _ in run_epochs({"ours64": to, "torch64": tt}, x64, ytr, plan, rec):
            print(f"precision seed={seed} epoch {len(rec['ours64_loss'])}: loss "
                  f"{rec['ours64_loss'][-1]:.4f} / {rec['torch64_loss'][-1]:.4f}, s "
                  f"{rec['ours64_epoch_s'][-1]:.1f} / {rec['torch64_epoch_s'][-1]:.1f}",
                  flush=True)
        po = ours.predict(xe64).argmax(1)
        torch.set_num_threads(args.threads)
        pt = torch_predict(theirs, xe64)
        rec["ours64_acc"] = 100 * float(np.mean(po == yte))
        rec["torch64_acc"] = 100 * float(np.mean(pt == yte))
        rec["agree64"] = 100 * float(np.mean(po == pt))
        rec["measured"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        rec["loadavg"] = os.getloadavg()[0]
        print(f"precision seed={seed}: test acc ours64 {rec['ours64_acc']:.2f} / torch64 "
              f"{rec['torch64_acc']:.2f} (agree {rec['agree64']:.1f}%)", flush=True)
        if checkpoint is not None:
            checkpoint(*summary())
    return summary()


def _code_commit():
    """Short hash of the last commit that changed effai_fast/ in the working tree this bench
    runs from ('+dirty' if effai_fast/ has uncommitted changes): the code a run trained on.
    Commits that only touch the bench or the docs do not change it."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "log", "-1", "--format=%h", "--", "effai_fast"],
                              cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "effai_fast"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def _paired_rows(arms, loss, pairs):
    from scipy import stats

    prow, res = [], {}
    for a, b in pairs:
        m, sd, lo, hi = paired_ci(np.subtract(arms[a], arms[b]))
        p = float(stats.ttest_rel(arms[a], arms[b]).pvalue)
        lm, _, llo, lhi = paired_ci(np.subtract(loss[a], loss[b]))
        res[(a, b)] = (m, lo, hi, p)
        prow.append([f"{a} - {b}", f"{m:+.2f}", f"{sd:.2f}", f"[{lo:+.2f}, {hi:+.2f}]",
                     f"{p:.3f}", f"{lm:+.4f} [{llo:+.4f}, {lhi:+.4f}]"])
    return prow, res


def precision_markdown(conf, runs, train):
    """The ``precision`` section: ours / torch x float32 / float64, and ours float32 now."""
    t32 = {r["seed"]: r for r in (train or {}).get("runs", []) if r["alpha"] == conf["alpha"]}
    same = all((train or {}).get("config", {}).get(k) == conf[k]
               for k in ("n_train", "epochs", "batch", "lr", "warmup", "weight_decay",
                         "momentum"))
    head = (f"### float32 gap at alpha={conf['alpha']}: rounding, or the code version?\n\n"
            f"The `train` part's alpha={conf['alpha']} seeds again, same initial weights "
            f"(float32; cast exactly for float64), same batches and learning rates, same "
            f"recipe ({conf['n_train']:,} training images, {conf['epochs']} epochs of "
            f"{conf['n_train'] // conf['batch']} steps, {conf['threads']} thread(s)), test "
            f"accuracy on all {conf['n_test']:,} test images in eval mode.  Arms: *ours32* and "
            f"*torch32* are the `train` part's float32 runs as first stored (the `train` "
            f"section may since have re-trained effai_fast's arm on newer code); *ours64* "
            f"and *torch64* "
            f"train effai_fast and PyTorch (`.double()`) in float64 (epochs interleaved; the "
            f"two loops agree to rounding for the first steps, `parity` part, and then part "
            f"through SGD's chaos alone, so they are two draws of the same exact-arithmetic "
            f"training; *exact64* is their per-seed mean); *now32* re-trains effai_fast in "
            f"float32 with the code of the time it ran (re-run when the code changed; the "
            f"stored ours32 runs of seeds 0-4 ran "
            f"09:15-10:20 UTC, while the pointwise/depthwise kernels were being replaced; "
            f"seeds 5-15 ran 11:56-12:34 UTC).  PyTorch's float32 arm is not re-run: same "
            f"torch build, deterministic at 1 thread.  Paired differences over seeds: mean, "
            f"sd, Student-t 95% CI, `scipy.stats.ttest_rel` p-value, and the same for the "
            f"last-epoch mean training loss.\n\n")
    if not same:
        return head + "(the stored train runs have another configuration)"
    out = head

    def arm(r, key):
        if key in ("ours32", "torch32"):
            # the train part's first stored arms of the seed (it may re-train them later)
            t = t32[r["seed"]]
            t = t.get("ours_orig", t) if key == "ours32" else t.get("torch_orig", t)
            return t[key[:-2] + "_acc"], t[key[:-2] + "_loss"][-1]
        return r[f"{key}_acc"], r[f"{key}_loss"][-1]

    def collect(rows, keys):
        acc = {k: [arm(r, k)[0] for r in rows] for k in keys}
        loss = {k: [arm(r, k)[1] for r in rows] for k in keys}
        return acc, loss

    def summary_table(acc, loss, k):
        return md_table(["arm", f"test acc % ({k} seeds)", "last-epoch train loss"],
                        [[a, mean_sd(acc[a]), f"{np.mean(loss[a]):.4f} ± "
                          f"{np.std(loss[a], ddof=1):.4f}"] for a in acc])

    cols = ["paired difference (acc points)", "mean", "sd", "95% CI", "ttest_rel p",
            "train-loss diff [95% CI]"]
    now = [r for r in runs if r["seed"] in t32 and "now32_acc" in r]
    if len(now) >= 2:
        acc, loss = collect(now, ("ours32", "now32", "torch32"))
        prow, res = _paired_rows(acc, loss, [("now32", "torch32"), ("ours32", "torch32"),
                                             ("now32", "ours32")])
        m, lo, hi, p = res[("now32", "torch32")]
        commits = sorted({r.get("now32_commit", "?") for r in now})
        later = sorted({r.get("ours_commit") for r in t32.values() if "ours_orig" in r} - {None})
        out += (f"**effai_fast float32 re-trained at commit {', '.join(commits)} against "
                f"PyTorch float32** ({len(now)} seeds"
                + (f"; the `train` section's effai_fast arms have since been re-trained "
                   f"again, at {', '.join(later)}" if later else "") + "):\n\n"
                + summary_table(acc, loss, len(now)) + "\n\n"
                + md_table(cols, prow)
                + f"\n\nnow32 - torch32: {m:+.2f} points, 95% CI [{lo:+.2f}, {hi:+.2f}] "
                  f"(p={p:.3f}); the CI "
                + ("lies inside ±0.5 points." if -0.5 <= lo and hi <= 0.5 else
                   f"{'contains' if lo <= 0 <= hi else 'excludes'} 0 and does not lie "
                   f"inside ±0.5 points.") + "\n\n")
    full = [r for r in runs if r["seed"] in t32 and "ours64_acc" in r]
    if len(full) >= 2:
        keys = ("ours32", "torch32", "ours64", "torch64") + (
            ("now32",) if all("now32_acc" in r for r in full) else ())
        acc, loss = collect(full, keys)
        acc["exact64"] = list(np.add(acc["ours64"], acc["torch64"]) / 2)
        loss["exact64"] = list(np.add(loss["ours64"], loss["torch64"]) / 2)
        pairs = [("ours64", "torch64"), ("torch64", "torch32"), ("ours64", "ours32"),
                 ("exact64", "torch32"), ("exact64", "ours32")]
        if "now32" in acc:
            pairs.append(("exact64", "now32"))
        prow, res = _paired_rows(acc, loss, pairs)
        out += (f"**float64 arms** ({len(full)} seeds with all arms):\n\n"
                + summary_table(acc, loss, len(full)) + "\n\n" + md_table(cols, prow)
                + "\n\n")
    per = []
    for r in runs:
        if r["seed"] not in t32:
            continue
        t = {**t32[r["seed"]], **t32[r["seed"]].get("torch_orig", {}),
             **t32[r["seed"]].get("ours_orig", {})}      # the first stored arms

        def f(key, fmt="{:.2f}"):
            return fmt.format(r[key]) if key in r else "-"

        per.append([r["seed"], f"{t['ours_acc']:.2f}", f("now32_acc"), f"{t['torch_acc']:.2f}",
                    f("ours64_acc"), f("torch64_acc"), f"{t['ours_loss'][-1]:.4f}",
                    f"{r['now32_loss'][-1]:.4f}" if "now32_loss" in r else "-",
                    f"{t['torch_loss'][-1]:.4f}",
                    f"{r['ours64_loss'][-1]:.4f}" if "ours64_loss" in r else "-",
                    f"{r['torch64_loss'][-1]:.4f}" if "torch64_loss" in r else "-",
                    f("agree64", "{:.1f}"),
                    (f"{np.median(r['ours64_epoch_s']):.1f} / "
                     f"{np.median(r['torch64_epoch_s']):.1f}") if "ours64_epoch_s" in r
                    else "-"])
    return (out + "Per seed (test accuracy %, last-epoch mean training loss, agreement of "
            "ours64 and torch64 predictions, s/epoch of the float64 runs on the shared "
            "machine):\n\n"
            + md_table(["seed", "ours32", "now32", "torch32", "ours64", "torch64",
                        "loss ours32", "loss now32", "loss torch32", "loss ours64",
                        "loss torch64", "agree64 %", "s/epoch ours64 / torch64"], per))



def part_speed(data, args, checkpoint=None):
    """Time per epoch only (no accuracy) at 1 and 2 threads, epochs interleaved."""
    xtr, ytr = data[0], data[1]
    n, reps = len(xtr), (2 if args.quick else 3)
    rows, out = [], {}
    for threads in (1, 2):
        for alpha in (0.25, 0.5):
            ours, theirs = twin(alpha)
            to, tt = OursTrainer(ours, threads), TorchTrainer(theirs, threads, xtr)
            t_o, t_t = [], []
            for ep in batches(n, reps, seed=0, batch=TRAIN_BATCH):
                lrs = [0.02] * len(ep)
                t_o.append(to.epoch(xtr, ytr, ep, lrs)[0])
                t_t.append(tt.epoch(xtr, ytr, ep, lrs)[0])
            so, st = float(np.median(t_o)), float(np.median(t_t))
            out[f"alpha{alpha}_threads{threads}"] = {"ours": t_o, "torch": t_t}
            rows.append([alpha, threads, round(so, 2), round(st, 2), round(st / so, 2)])
            print(rows[-1], flush=True)
    md = (f"### Time per epoch at 1 and 2 threads\n\n"
          f"MobileNet v1 at 28x28, epochs of {n:,} Fashion-MNIST images ({n // TRAIN_BATCH} SGD "
          f"steps of {TRAIN_BATCH}, the training recipe above), {reps} epochs per library, "
          f"interleaved (ours, torch, ours, ...), median; same weights and batches; 1 and 2 "
          f"threads measured in the same run.  Issue 4 asks for >= 1.2x.\n\n"
          + md_table(["alpha", "threads", "s/epoch (ours)", "s/epoch (torch)", "speed-up"],
                     rows))
    return md, out


TRADE_ALPHAS, TRADE_SIDES = (0.25, 0.5, 0.75, 1.0), (16, 22, 28)


def trade_config(args):
    if args.quick:
        return {"n_train": 1024, "epochs": 1, "seeds": [0], "alphas": (0.25, 0.5),
                "sides": (16, 28)}
    return {"n_train": args.trade_n_train, "epochs": args.trade_epochs,
            "seeds": list(range(args.trade_seeds)), "alphas": TRADE_ALPHAS,
            "sides": TRADE_SIDES}


def trade_markdown(cfg, runs):
    """The ``tradeoff`` section (markdown, data) from its configuration and runs."""
    from effai_fast.mobilenet import fit_accuracy_model, optimal_multipliers

    n, xte_n = cfg["n_train"], cfg["n_test"]
    grid = [(r["alpha"], r["side"]) for r in runs]
    acc = {(r["alpha"], r["side"]): r["acc"] for r in runs}
    secs = {(r["alpha"], r["side"]): r["train_s"] for r in runs}
    rows, points = [], []
    for a, s in grid:
        if not acc[(a, s)]:
            continue
        m = cost(a, s, 10, 1).macs
        rows.append([a, s, round(s / 28, 3), round(m / 1e6, 3),
                     round(cost(a, s, 10, 1).params / 1e3, 1), len(acc[(a, s)]),
                     mean_sd(acc[(a, s)]), round(float(np.median(secs[(a, s)])), 1)])
        points += [(a, s / 28, v) for v in acc[(a, s)]]
    md = (f"### Accuracy vs mult-adds: the alpha^2 rho^2 trade-off on Fashion-MNIST\n\n"
          f"effai_fast MobileNets for every alpha in {list(cfg['alphas'])} and input side "
          f"in {list(cfg['sides'])} (rho = side / 28; images resized bilinearly), "
          f"{n:,} training images (class-stratified), {cfg['epochs']} epochs, the recipe "
          f"of the training section (batch {TRAIN_BATCH}, SGD Nesterov, warm-up + cosine "
          f"to {TRAIN_LR}, weight decay {TRAIN_WD} on weights), test accuracy on all "
          f"{xte_n:,} test images, mean ± sd over seeds (seed = initial weights and "
          f"batch order).  MMACs and parameters from `effai_fast.mobilenet.cost(alpha, "
          f"side, num_classes=10, in_channels=1)` (equal to `model.cost()`).  "
          f"{cfg['threads']} thread(s); train s = median seconds of one whole training run.\n\n"
          + md_table(["alpha", "side", "rho", "MMACs/image", "k params", "seeds",
                      "test acc %", "train s"], rows))
    out = {"config": cfg, "runs": runs}
    if len({(a, r) for a, r, _ in points}) >= 5:
        model = fit_accuracy_model(points)
        fitted = [[a, s, mean_sd(acc[(a, s)]), f"{float(model(a, s / 28)):.2f}"]
                  for a, s in grid if acc[(a, s)]]
        md += (f"\n\nFitted accuracy model (`fit_accuracy_model` on all "
               f"{len(points)} (alpha, rho, accuracy) runs): `{model}`.\n\n"
               + md_table(["alpha", "side", "measured %", "model %"], fitted))
        sols = []
        budgets = sorted({cost(a, s, 10, 1).macs for a, s in grid})
        for b in np.geomspace(budgets[0] * 1.05, budgets[-1] * 0.95, 5):
            sol = optimal_multipliers(b, method="menu", accuracy=model,
                                      alphas=cfg["alphas"], resolutions=cfg["sides"],
                                      num_classes=10, in_channels=1, base_resolution=28)
            cont = optimal_multipliers(b, method="continuous", accuracy=model,
                                       alpha_range=(min(cfg["alphas"]), 1.0),
                                       rho_range=(min(cfg["sides"]) / 28, 1.0),
                                       num_classes=10, in_channels=1, base_resolution=28)
            sols.append([f"{b / 1e6:.3f}", sol.alpha, sol.resolution,
                         f"{sol.macs / 1e6:.3f}", f"{sol.accuracy:.2f}",
                         f"{cont.alpha:.3f}", cont.resolution, f"{cont.accuracy:.2f}"])
        md += ("\n\nThe budget optimiser on this fitted model (`optimal_multipliers(budget, "
               "method=..., accuracy=model, num_classes=10, in_channels=1, "
               "base_resolution=28)`), menu = the grid above, continuous = any alpha in "
               "the range and any integer side:\n\n"
               + md_table(["budget MMACs", "menu alpha", "menu side", "menu MMACs",
                           "menu predicted %", "continuous alpha", "continuous side",
                           "continuous predicted %"], sols))
        out["model"] = {k: getattr(model, k) for k in ("a", "b", "p", "c", "q", "rmse",
                                                       "n_points")}
        out["budget"] = sols
    return md, out


def part_tradeoff(data, args, checkpoint=None):
    """effai_fast only: accuracy against mult-adds over an (alpha, side) grid, several seeds."""
    cfg = trade_config(args)
    xtr, ytr, xte, yte = data
    n = len(xtr)
    grid = [(a, s) for a in cfg["alphas"] for s in cfg["sides"]]
    resized = {s: (xtr, xte) if s == 28 else (resize_images(xtr, s), resize_images(xte, s))
               for s in cfg["sides"]}
    acc = {g: [] for g in grid}
    secs = {g: [] for g in grid}

    def summary():
        conf = {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.items()}
        conf.update(n_train=n, n_test=len(xte), threads=args.threads)
        return trade_markdown(conf, [{"alpha": a, "side": s, "macs": cost(a, s, 10, 1).macs,
                                      "acc": acc[(a, s)], "train_s": secs[(a, s)]}
                                     for a, s in grid])

    for seed in cfg["seeds"]:
        for a, s in grid:
            x, xe = resized[s]
            net = mobilenet_v1(a, s, 10, 1, seed=seed)
            tr = OursTrainer(net, args.threads)
            plan = batches(n, cfg["epochs"], seed=1000 + seed, batch=TRAIN_BATCH)
            times = {}
            for _ in run_epochs({"run": tr}, x, ytr, plan, times):
                pass
            t = sum(times["run_epoch_s"])
            acc[(a, s)].append(100 * tr.accuracy(xe, yte))
            secs[(a, s)].append(t)
            print(f"tradeoff seed={seed} alpha={a} side={s}: {acc[(a, s)][-1]:.2f}% "
                  f"({t:.0f} s)", flush=True)
        if checkpoint is not None:
            checkpoint(*summary())
    return summary()


def render(sections):
    body = ("The 2-core machine was shared with other helpers' builds, tests and training "
            "runs while this ran (it ran at low priority: `nice -n 5`, the `train` runs "
            "since 17:00 UTC `nice -n 19`); each part gives the time it was measured and the "
            "1-minute load average at its end.  Speed ratios come from one run with "
            "interleaved epochs.\n\n")
    return body + render_sections(PARTS, sections)


def rerender(args):
    """Rebuild the train / tradeoff markdown from their stored runs (same figures)."""
    path = RESULTS / "mobilenet_train.json"
    sections = json.loads(path.read_text())["data"]["sections"]
    if "train" in sections:
        d = sections["train"]["data"]
        sections["train"]["markdown"] = train_markdown(d["config"], d["runs"])
    if "precision" in sections:
        d = sections["precision"]["data"]
        sections["precision"]["markdown"] = precision_markdown(
            d["config"], d["runs"], sections.get("train", {}).get("data"))
    if "tradeoff" in sections:
        d = sections["tradeoff"]["data"]
        d["config"].setdefault("threads", args.threads)
        sections["tradeoff"]["markdown"], sections["tradeoff"]["data"] = trade_markdown(
            d["config"], d["runs"])
    write_result("mobilenet_train", "MobileNet training on Fashion-MNIST (effai_fast vs PyTorch)",
                 render(sections), {"sections": sections},
                 command="python bench/bench_mobilenet_train.py")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="small subsets, one seed, 1-2 epochs (a check that the bench runs)")
    ap.add_argument("--threads", type=int, default=1,
                    help="threads of train and tradeoff (speed measures 1 and 2)")
    ap.add_argument("--only", default=",".join(PARTS))
    ap.add_argument("--n-train", type=int, default=10000, help="train: training images")
    ap.add_argument("--epochs", type=int, default=3, help="train: epochs")
    ap.add_argument("--seeds", type=int, default=10, help="train: paired seeds at alpha=0.25")
    ap.add_argument("--seeds-05", type=int, default=6, help="train: paired seeds at alpha=0.5")
    ap.add_argument("--fresh", action="store_true",
                    help="train: discard the stored runs (default: keep the stored runs of "
                         "the same configuration and run only the seeds they lack)")
    ap.add_argument("--refresh-ours", action="store_true",
                    help="train: first re-train effai_fast's arm of every stored seed that "
                         "trained on other code (PyTorch's stored arm is kept; see "
                         "--check-torch)")
    ap.add_argument("--check-torch", type=int, default=1,
                    help="train --refresh-ours: re-train PyTorch's arm too for this many "
                         "refreshed seeds of each alpha and record whether it reproduces "
                         "bit for bit")
    ap.add_argument("--precision-seeds", default="0-15",
                    help="precision: alpha=0.25 seeds to run in float64 ('a-b', 'a,b,c')")
    ap.add_argument("--precision-arms", default="now32,f64",
                    help="precision: now32 (effai_fast float32, current code), f64 (both "
                         "libraries in float64)")
    ap.add_argument("--trade-n-train", type=int, default=3000)
    ap.add_argument("--trade-epochs", type=int, default=3)
    ap.add_argument("--trade-seeds", type=int, default=3)
    ap.add_argument("--render", action="store_true",
                    help="only rebuild results/mobilenet_train.md from the stored .json")
    args = ap.parse_args(argv)
    if args.render:
        return rerender(args)
    only = [p for p in args.only.split(",") if p]
    if set(only) - set(PARTS):
        ap.error(f"unknown parts {sorted(set(only) - set(PARTS))}; choose from {PARTS}")
    n_test = 1000 if args.quick else 10000
    n_train = {"grad": 2000, "parity": 10000, "speed": 512 if args.quick else 1024,
               "train": train_config(args)["n_train"],
               "precision": precision_config(args)["n_train"],
               "tradeoff": trade_config(args)["n_train"]}
    prev_path = RESULTS / "mobilenet_train.json"

    def previous():
        try:
            return json.loads(prev_path.read_text())["data"].get("sections", {})
        except (OSError, ValueError, KeyError):
            return {}

    def save(part, md, out, t0):
        sections[part] = {"markdown": md, "data": out, "seconds": time.perf_counter() - t0,
                          "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                          "loadavg": os.getloadavg()[0]}
        if not args.quick:
            # re-read the file: another process may have written another part meanwhile
            merged = {**previous(), part: sections[part]}
            write_result("mobilenet_train",
                         "MobileNet training on Fashion-MNIST (effai_fast vs PyTorch)",
                         render(merged), {"sections": merged},
                         command="python bench/bench_mobilenet_train.py")

    sections = {}
    if "train" in only and not args.quick and not args.fresh:
        args.keep_runs = previous().get("train", {}).get("data")
    funcs = {"grad": part_grad, "parity": part_parity, "train": part_train,
             "precision": part_precision,
             "speed": part_speed, "tradeoff": part_tradeoff}
    for part in PARTS:
        if part not in only or (part != "tradeoff" and not have("torch")):
            continue
        t0 = time.perf_counter()
        data = tuple(load_fashion_mnist(n_train=n_train[part], n_test=n_test, random_state=0))
        kw = {}
        if part in ("train", "precision", "tradeoff"):
            kw["checkpoint"] = lambda md, out, part=part, t0=t0: save(part, md, out, t0)
        md, out = funcs[part](data, args, **kw)
        save(part, md, out, t0)
        print(md, flush=True)
    if args.quick:
        # a quick run checks that the bench works; it does not replace measured results
        print(render(sections))
    return 0


if __name__ == "__main__":
    main()
