"""Train small MobileNets on Fashion-MNIST: effai_fast vs PyTorch, and accuracy vs MACs.

Part 1: MobileNet v1 with alpha in {0.25, 0.5} at the native 28x28 resolution, trained with
SGD (momentum 0.9, Nesterov) for a few epochs by effai_fast and by PyTorch from the *same
initial weights* on the *same batches* (one shuffling per epoch shared by both), both at the
same thread count.  Reported: test accuracy and seconds per epoch.

Part 2: the alpha^2 rho^2 trade-off measured on real data - effai_fast MobileNets for several
(alpha, input side) pairs (images resized bilinearly), test accuracy against exact MACs.

Usage: python bench/bench_mobilenet_train.py [--quick] [--threads 2]
Needs the Debian package dataset-fashion-mnist (and torch for part 1).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import have, md_table, write_result  # noqa: E402

from effai_fast import nn  # noqa: E402
from effai_fast.datasets import load_fashion_mnist, resize_images  # noqa: E402
from effai_fast.mobilenet import cost, mobilenet_v1, torch_mobilenet_v1  # noqa: E402
from effai_fast.optim import SGD  # noqa: E402

LR, MOMENTUM, WD, BATCH = 0.05, 0.9, 4e-5, 64


def batches(n, epochs, seed):
    rng = np.random.default_rng(seed)
    return [[o[i:i + BATCH] for i in range(0, n - BATCH + 1, BATCH)]
            for o in (rng.permutation(n) for _ in range(epochs))]


def train_ours(model, x, y, plan, threads):
    opt = SGD(nn.param_groups(model, WD, no_decay=()), lr=LR, momentum=MOMENTUM, nesterov=True)
    model.n_threads = threads
    times = []
    with nn.blas_single_thread():
        for epoch in plan:
            t0 = time.perf_counter()
            for idx in epoch:
                logits = model.forward(x[idx], training=True)
                _, g = nn.functional.softmax_cross_entropy(logits, y[idx])
                model.backward(g, need_input_grad=False)
                opt.step()
            times.append(time.perf_counter() - t0)
    return times


def train_torch(model, x, y, plan, threads):
    import torch

    torch.set_num_threads(threads)
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, nesterov=True,
                          weight_decay=WD)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(y)
    model.train()
    times = []
    for epoch in plan:
        t0 = time.perf_counter()
        for idx in epoch:
            ti = torch.from_numpy(idx)
            loss = torch.nn.functional.cross_entropy(model(xt[ti]), yt[ti])
            opt.zero_grad()
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    return times


def torch_accuracy(model, x, y):
    import torch

    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    return float(np.mean(out.argmax(1) == y))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small subset, fewer epochs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-tradeoff", action="store_true")
    args = ap.parse_args(argv)
    n_train, n_test, epochs = (2000, 1000, 2) if args.quick else (10000, 2000, 3)
    data = load_fashion_mnist(n_train=n_train, n_test=n_test, random_state=0)
    xtr, ytr, xte, yte = data
    plan = batches(len(xtr), epochs, seed=0)
    rows, payload = [], {"n_train": n_train, "n_test": n_test, "epochs": epochs,
                         "batch": BATCH, "threads": args.threads, "runs": []}
    for alpha in (0.25, 0.5):
        ours = mobilenet_v1(alpha, 28, 10, 1, seed=0)
        row = {"alpha": alpha, "macs": ours.cost().macs}
        if have("torch"):
            import torch

            theirs = torch_mobilenet_v1(alpha, 10, 1)
            sd = nn.export_torch_state_dict(ours, theirs.state_dict())
            theirs.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                                    for k, v in sd.items()})
        t_ours = train_ours(ours, xtr, ytr, plan, args.threads)
        row["ours_s_per_epoch"] = float(np.median(t_ours))
        row["ours_acc"] = ours.evaluate(xte, yte)["accuracy"]
        if have("torch"):
            t_torch = train_torch(theirs, xtr, ytr, plan, args.threads)
            row["torch_s_per_epoch"] = float(np.median(t_torch))
            row["torch_acc"] = torch_accuracy(theirs, xte, yte)
        payload["runs"].append(row)
        rows.append([alpha, round(row["macs"] / 1e6, 3), round(100 * row["ours_acc"], 2),
                     round(100 * row.get("torch_acc", float("nan")), 2),
                     round(row["ours_s_per_epoch"], 2),
                     round(row.get("torch_s_per_epoch", float("nan")), 2),
                     round(row.get("torch_s_per_epoch", float("nan"))
                           / row["ours_s_per_epoch"], 2)])
        print(rows[-1], flush=True)
    md = (f"MobileNet v1 at 28x28 (Fashion-MNIST, {n_train} training / {n_test} test images, "
          f"{epochs} epochs, batch {BATCH}, SGD lr {LR} momentum {MOMENTUM} Nesterov, "
          f"weight decay {WD}), {args.threads} threads, same initial weights and batches for "
          f"both; time per epoch is the median over epochs.  The machine was shared with other "
          f"helpers' builds and tests while this ran (see the load figure): ratios are from one "
          f"run.\n\n")
    md += md_table(["alpha", "MMACs/image", "test acc % (ours)", "test acc % (torch)",
                    "s/epoch (ours)", "s/epoch (torch)", "speed-up"], rows)
    if not args.skip_tradeoff:
        trade = []
        sides = (20, 28, 36)
        ep2 = 1 if args.quick else 2
        plan2 = batches(len(xtr), ep2, seed=1)
        for alpha in (0.25, 0.5):
            for side in sides:
                a = xtr if side == 28 else resize_images(xtr, side)
                b = xte if side == 28 else resize_images(xte, side)
                net = mobilenet_v1(alpha, side, 10, 1, seed=0)
                t = train_ours(net, a, ytr, plan2, args.threads)
                acc = net.evaluate(b, yte)["accuracy"]
                m = cost(alpha, side, 10, 1).macs
                trade.append([alpha, side, round(side / 28, 3), round(m / 1e6, 3),
                              round(100 * acc, 2), round(float(np.sum(t)), 1)])
                print(trade[-1], flush=True)
        payload["tradeoff"] = trade
        md += (f"\n\nAccuracy vs mult-adds (effai_fast, {ep2} epoch(s) on the same subset; rho "
               f"relative to 28x28):\n\n")
        md += md_table(["alpha", "side", "rho", "MMACs/image", "test acc %", "train s"], trade)
    write_result("mobilenet_train", "MobileNet training on Fashion-MNIST (effai_fast vs PyTorch)",
                 md, payload, command="python bench/bench_mobilenet_train.py"
                 + (" --quick" if args.quick else ""))


if __name__ == "__main__":
    main()
