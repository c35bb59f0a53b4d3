"""The teacher -> student experiment shared by ``effai distill``, the tour and bench/.

One function, :func:`run_experiment`: load a real data set, train a teacher on
hard labels, then for each seed train the same student architecture twice -
on hard labels and by distillation (cached teacher logits) - with identical
initial weights, batches, optimiser and schedule, and report accuracies and
MACs.  The only difference between the two students is the loss.

Architectures
-------------
``"mlp"``
    Multi-layer perceptrons from :mod:`effai_fast.nn` (``Linear`` + ``ReLU``);
    the student is the teacher's architecture with every hidden width
    multiplied by ``student_alpha`` (rounded, at least 1), so its MACs shrink
    about as alpha^2 - the width multiplier of MobileNet applied to an MLP.
``"mobilenet"``
    :func:`effai_fast.mobilenet.mobilenet_v1` (Howard et al. 2017, Table 1) at
    the images' resolution: teacher alpha=1, student alpha = ``student_alpha``.
``"dscnn"``
    A *shortened* MobileNet v1 for small images (:func:`make_dscnn`): the same
    layer types and widths as the paper's first blocks (3x3 stem convolution
    with 32*alpha filters, then depthwise-separable blocks with 64, 128, 128,
    256, 256 output channels times alpha, each depthwise 3x3 + BN + ReLU,
    pointwise 1x1 + BN + ReLU), global average pooling and a linear classifier.
    The full 13-block network reduces an 8x8 digit to 1x1 after its fourth
    stride and spends most of its MACs there; the shortened one keeps the
    resolution the images have.  Teacher alpha = ``teacher_alpha`` (default 2:
    twice the paper's widths, ~4x the MACs of alpha=1).
``"dscnn3"``
    The same network cut after its third block (64, 128, 128 channels times
    alpha; strides 1, 2, 1): issue 7's setup.  At alpha=0.25 on 8x8 digits it
    costs 49,216 MACs - the "~49k MACs" student of the issue's reference
    figures - and it is the better student there (it keeps a 4x4 feature map
    instead of pooling a 2x2 one).  See docs/distill.md for the recipe that
    reproduces the issue's figures with it (:data:`ISSUE7_RECIPE`).
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np

from effai_fast._validation import check_int, check_real
from effai_fast.distill.trainer import Distiller, model_macs

__all__ = ["ISSUE7_RECIPE", "dscnn_config", "load_dataset", "make_mlp", "make_torch_twin",
           "run_experiment", "torch_train"]

DATASETS = ("digits", "fashion-mnist")


def load_dataset(name: str, *, n_train: int | None = None, seed: int = 0):
    """``(x_train, y_train, x_test, y_test)`` as float32 NHWC images in [0, 1], int64 labels.

    ``digits``: scikit-learn's 1797 8x8 digits, the stratified split
    ``train_test_split(test_size=0.3, stratify=y, random_state=0)`` (1257 / 540).
    ``fashion-mnist``: the local IDX files (Debian ``dataset-fashion-mnist``), a
    class-balanced training subset of ``n_train`` images (all 60k when None),
    the full 10k test set.
    """
    if name == "digits":
        from effai_fast._extras import require

        datasets = require("sklearn.datasets", "the digits data set")
        model_selection = require("sklearn.model_selection", "the digits split")
        bunch = datasets.load_digits()
        x = (bunch.images / 16.0).astype(np.float32)[..., None]
        y = bunch.target.astype(np.int64)
        xtr, xte, ytr, yte = model_selection.train_test_split(
            x, y, test_size=0.3, stratify=y, random_state=0)
        return np.ascontiguousarray(xtr), ytr, np.ascontiguousarray(xte), yte
    if name == "fashion-mnist":
        from effai_fast.datasets import load_fashion_mnist

        if n_train is None:
            return tuple(load_fashion_mnist())
        # class-balanced: n_train / 10 images of every class
        split = load_fashion_mnist()
        rng = np.random.default_rng(seed)
        per = check_int(n_train, "n_train", min_value=10, max_value=60000) // 10
        idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(split.y_train == c))[:per]
                                      for c in range(10)]))
        return (np.ascontiguousarray(split.x_train[idx]), split.y_train[idx],
                split.x_test, split.y_test)
    raise ValueError(f"dataset must be one of {DATASETS}, got {name!r}")


def make_mlp(n_in: int, n_classes: int, hidden: tuple[int, ...], *, alpha: float = 1.0,
             seed: int = 0, dtype=np.float32):
    """An :mod:`effai_fast.nn` MLP ``n_in -> round(alpha*h) ... -> n_classes`` (He init)."""
    from effai_fast import nn

    alpha = check_real(alpha, "alpha", min_value=0.0, min_inclusive=False)
    widths = [n_in] + [max(1, int(round(alpha * h))) for h in hidden] + [n_classes]
    rng = np.random.default_rng(seed)
    layers = []
    for k in range(len(widths) - 1):
        fan_in = widths[k]
        last = k == len(widths) - 2
        std = np.sqrt((1.0 if last else 2.0) / fan_in)
        layers.append(nn.Linear(widths[k], widths[k + 1], dtype=dtype,
                                seed=int(rng.integers(2**31)), init_std=float(std)))
        if not last:
            layers.append(nn.ReLU(dtype=dtype))
    return nn.Sequential(*layers)


class _Flat:
    """Feed an MLP with images: (N, H, W, C) -> (N, H*W*C) on the way in."""

    def __init__(self, model):
        self.model = model

    def forward(self, x, training=False):
        return self.model.forward(x.reshape(len(x), -1), training=training)

    def backward(self, grad, need_input_grad=True):
        return self.model.backward(grad, need_input_grad=need_input_grad)

    def parameters(self):
        return self.model.parameters()

    def gradients(self):
        return self.model.gradients()

    def macs(self, sample_shape):
        return self.model.macs((int(np.prod(sample_shape)),))

    def load_state_dict(self, state):
        self.model.load_state_dict(state)

    def state_dict(self):
        return self.model.state_dict()


_MLP_HIDDEN = {"digits": (256, 256), "fashion-mnist": (512, 512)}

# (output channels at alpha=1, depthwise stride) of the shortened MobileNet, per data set:
# the paper's first blocks; the stem keeps the 8x8 digits at full resolution (stride 1)
# and halves the 28x28 Fashion-MNIST images (stride 2, as the paper's stem).
DSCNN_BLOCKS = {"digits": (1, ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))),
                "fashion-mnist": (2, ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1)))}
# depth of each CNN architecture name (the first n blocks of DSCNN_BLOCKS)
DSCNN_DEPTH = {"dscnn": 5, "dscnn3": 3}
CNN_ARCHS = tuple(DSCNN_DEPTH)

#: The setup with which the PyTorch twin reproduces issue 7's digits reference
#: (hard 97.15 +- 0.68, KD 98.59 +- 0.46 with a ~49k-MAC student): the three-block
#: student, a teacher twice as wide as the paper's widths, AdamW with a cosine
#: schedule, and long enough training for the small student to fit its 1257 images.
ISSUE7_RECIPE = dict(arch="dscnn3", student_alpha=0.25, teacher_alpha=2.0, teacher_epochs=20,
                     student_epochs=100, lr=3e-3, batch_size=64, weight_decay=0.0,
                     temperature=4.0, hard_weight=0.1)


def dscnn_config(arch: str, dataset: str):
    """``(stem_stride, blocks)`` of a CNN architecture name (``"dscnn"``, ``"dscnn3"``)."""
    if arch not in DSCNN_DEPTH:
        raise ValueError(f"arch must be one of {CNN_ARCHS}, got {arch!r}")
    stem_stride, blocks = DSCNN_BLOCKS[dataset]
    return stem_stride, blocks[:DSCNN_DEPTH[arch]]


def make_dscnn(sample_shape, n_classes: int, *, alpha: float = 1.0, stem_stride: int = 1,
               blocks=DSCNN_BLOCKS["digits"][1], seed=0, dtype=np.float32):
    """A shortened MobileNet v1 (depthwise-separable CNN) built from :mod:`effai_fast.nn`.

    ``Conv2d(3x3, stem_stride) + BN + ReLU``, then for each ``(c, stride)`` of
    ``blocks`` ``DepthwiseConv2d(3x3, stride) + BN + ReLU``, ``PointwiseConv2d(c*alpha)
    + BN + ReLU``; ``GlobalAvgPool``, ``Linear``.  Channels ``max(1, round(alpha*c))``
    (alpha may exceed 1 here, for wider teachers).  Initialisation as
    :func:`effai_fast.mobilenet.mobilenet_v1` (He normal convolutions, N(0, 0.01^2)
    classifier), drawn from ``seed``.
    """
    from effai_fast import nn

    alpha = check_real(alpha, "alpha", min_value=0.0, min_inclusive=False)
    rng = np.random.default_rng(seed)
    h, w, c_in = sample_shape

    def ch(c):
        return max(1, int(np.floor(alpha * c + 0.5)))

    c = ch(32)
    layers = [nn.Conv2d(int(c_in), c, 3, stem_stride, 1, dtype=dtype, seed=rng),
              nn.BatchNorm(c, activation="relu", dtype=dtype)]
    names = ["stem", "stem_bn"]
    for i, (base, stride) in enumerate(blocks, start=1):
        c_out = ch(base)
        layers += [nn.DepthwiseConv2d(c, 3, stride, 1, dtype=dtype, seed=rng),
                   nn.BatchNorm(c, activation="relu", dtype=dtype),
                   nn.PointwiseConv2d(c, c_out, dtype=dtype, seed=rng),
                   nn.BatchNorm(c_out, activation="relu", dtype=dtype)]
        names += [f"block{i}_dw", f"block{i}_dw_bn", f"block{i}_pw", f"block{i}_pw_bn"]
        c = c_out
    layers += [nn.GlobalAvgPool(dtype=dtype), nn.Linear(c, n_classes, dtype=dtype, seed=rng)]
    names += ["pool", "fc"]
    return nn.Sequential(*layers, names=names)


def torch_dscnn(in_channels: int, n_classes: int, *, alpha: float = 1.0, stem_stride: int = 1,
                blocks=DSCNN_BLOCKS["digits"][1]):
    """The PyTorch twin of :func:`make_dscnn` (NCHW; same state_dict order).  Needs torch."""
    from effai_fast._extras import require

    tnn = require("torch", "torch_dscnn").nn

    def ch(c):
        return max(1, int(np.floor(alpha * c + 0.5)))

    c = ch(32)
    layers = [tnn.Conv2d(in_channels, c, 3, stem_stride, 1, bias=False), tnn.BatchNorm2d(c),
              tnn.ReLU()]
    for base, stride in blocks:
        c_out = ch(base)
        layers += [tnn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), tnn.BatchNorm2d(c),
                   tnn.ReLU(), tnn.Conv2d(c, c_out, 1, bias=False), tnn.BatchNorm2d(c_out),
                   tnn.ReLU()]
        c = c_out
    layers += [tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(c, n_classes)]
    return tnn.Sequential(*layers)


def make_torch_twin(model, arch: str, dataset: str, sample_shape, n_classes: int, *,
                    alpha: float):
    """A PyTorch network holding the same weights as ``model`` (``"mlp"`` or ``"dscnn"``).

    Its input is the PyTorch layout: flat vectors for the MLP, NCHW images for the
    CNN (:func:`torch_layout` converts our NHWC arrays).  Needs torch.
    """
    from effai_fast._extras import require

    torch = require("torch", "make_torch_twin")
    if arch == "mlp":
        lin = [m for m in model.model.layers if type(m).__name__ == "Linear"]
        layers = []
        for k, m in enumerate(lin):
            tl = torch.nn.Linear(m.in_features, m.out_features)
            with torch.no_grad():
                tl.weight.copy_(torch.from_numpy(np.ascontiguousarray(m.weight.T)))
                tl.bias.copy_(torch.from_numpy(np.array(m.bias)))
            layers.append(tl)
            if k < len(lin) - 1:
                layers.append(torch.nn.ReLU())
        net = torch.nn.Sequential(*layers)
    elif arch in DSCNN_DEPTH:
        from effai_fast import nn

        stem_stride, blocks = dscnn_config(arch, dataset)
        net = torch_dscnn(int(sample_shape[-1]), n_classes, alpha=alpha,
                          stem_stride=stem_stride, blocks=blocks)
        nn.copy_to_torch(model, net)
    else:
        raise ValueError(f"make_torch_twin supports arch 'mlp', 'dscnn' and 'dscnn3', "
                         f"got {arch!r}")
    dt = {np.dtype(np.float64): torch.float64}.get(np.dtype(model_dtype(model)), torch.float32)
    return net.to(dt)


def model_dtype(model):
    """The floating dtype of a model's parameters."""
    return np.asarray(model.parameters()[0]).dtype


def torch_layout(x, arch: str):
    """Our NHWC images as the input of :func:`make_torch_twin` (a torch tensor)."""
    from effai_fast._extras import require

    torch = require("torch", "torch_layout")
    x = np.asarray(x)
    if arch == "mlp":
        return torch.from_numpy(np.ascontiguousarray(x.reshape(len(x), -1)))
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def torch_train(net, x, y, teacher_logits=None, *, epochs: int, lr: float,
                batch_size: int = 64, seed=0, temperature: float = 4.0,
                hard_weight: float = 1.0, weight_decay: float = 0.0):
    """Train a PyTorch network exactly as :meth:`Distiller.fit` trains ours.

    The reference twin of the trainer: the same batch order (``numpy`` generator
    from ``seed``, one permutation per epoch), the same cosine learning rate set
    before every step, ``torch.optim.AdamW`` (same betas/eps/decay), the same loss
    ``(1 - hard_weight) * T^2 * KL(batchmean) + hard_weight * CE`` (hard labels
    alone when ``teacher_logits`` is None), batch norm in training mode.  ``x`` is
    a torch tensor in the net's layout (:func:`torch_layout`).  Returns ``net``.
    """
    from effai_fast._extras import require

    torch = require("torch", "torch_train")
    F = torch.nn.functional  # noqa: N806
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    ct = None if teacher_logits is None else torch.from_numpy(
        np.asarray(teacher_logits)).to(next(net.parameters()).dtype)
    rng = np.random.default_rng(seed)
    n = len(x)
    steps = math.ceil(n / batch_size)
    total = max(1, steps * epochs)
    t = float(temperature)
    k = 0
    net.train()
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(steps):
            for g in opt.param_groups:
                g["lr"] = 0.5 * lr * (1 + math.cos(math.pi * k / total))
            idx = torch.from_numpy(order[s * batch_size:(s + 1) * batch_size])
            opt.zero_grad()
            z = net(x[idx])
            if ct is None:
                loss = F.cross_entropy(z, yt[idx])
            else:
                kl = F.kl_div(F.log_softmax(z / t, 1), F.log_softmax(ct[idx] / t, 1),
                              log_target=True, reduction="batchmean") * (t * t)
                loss = (1 - hard_weight) * kl
                if hard_weight:
                    loss = loss + hard_weight * F.cross_entropy(z, yt[idx])
            loss.backward()
            opt.step()
            k += 1
    return net


def torch_predict_logits(net, x, *, batch_size: int = 512) -> np.ndarray:
    """Logits of a PyTorch network in evaluation mode (``x`` a tensor in its layout)."""
    from effai_fast._extras import require

    torch = require("torch", "torch_predict_logits")
    net.eval()
    with torch.no_grad():
        out = [net(x[i:i + batch_size]).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out, axis=0)


def make_model(arch: str, dataset: str, sample_shape, n_classes: int, *, alpha: float,
               seed: int):
    """The teacher (alpha=1) or a student of the experiment's architecture family."""
    if arch == "mlp":
        n_in = int(np.prod(sample_shape))
        return _Flat(make_mlp(n_in, n_classes, _MLP_HIDDEN[dataset], alpha=alpha, seed=seed))
    if arch in DSCNN_DEPTH:
        stem_stride, blocks = dscnn_config(arch, dataset)
        return make_dscnn(sample_shape, n_classes, alpha=alpha, stem_stride=stem_stride,
                          blocks=blocks, seed=seed)
    if arch == "mobilenet":
        from effai_fast.mobilenet import mobilenet_v1

        h, w, c = sample_shape
        return mobilenet_v1(alpha=min(1.0, alpha), resolution=int(h), num_classes=n_classes,
                            in_channels=int(c), seed=seed)
    raise ValueError(f"arch must be 'mlp', 'dscnn', 'dscnn3' or 'mobilenet', got {arch!r}")


def blas_single_thread():
    """Limit BLAS to one thread while the small matmuls of the MLPs run.

    The :mod:`effai_fast.nn` ``Linear`` layer calls ``numpy.matmul``; OpenBLAS's
    own thread team on (64 x 256) problems costs 10-30x more than it gains on a
    busy 2-core machine (measured: 26 ms vs 1.7 ms CPU per MLP step).  Uses
    threadpoolctl when it is installed, else does nothing.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def run_experiment(dataset: str = "digits", *, arch: str = "mlp", student_alpha: float = 0.25,
                   teacher_epochs: int = 30, student_epochs: int = 60,
                   temperature: float = 4.0, hard_weight: float = 0.1, lr: float = 3e-3,
                   weight_decay: float = 0.0, batch_size: int = 64, seeds=(0,),
                   n_train: int | None = None, teacher_seed: int = 1000, data=None,
                   log=print, models: dict | None = None, teacher_alpha: float = 1.0,
                   teacher_lr: float | None = None, torch_twin: bool = False,
                   torch_teacher: bool = True, n_threads: int | None = None) -> dict:
    """Teacher, hard-label student and distilled student on a real data set.

    Returns
    -------
    dict
        ``teacher`` (accuracy, macs, seconds), ``students``: one record per seed
        with ``hard`` and ``kd`` accuracies, and the per-epoch times of both.
        When ``models`` is a dict, the trained teacher and its cached logits are
        stored in it (keys ``teacher``, ``teacher_logits``); when it already holds
        them, that teacher is reused (not retrained).  ``teacher_alpha`` is the
        teacher's width multiplier (``"dscnn"``, ``"dscnn3"``, ``"mlp"``; MobileNet caps it at 1),
        ``teacher_lr`` its learning rate (default ``lr``).

        ``torch_twin=True`` (``"mlp"``, ``"dscnn"``, ``"dscnn3"``; needs torch) trains every
        student again in PyTorch (:func:`make_torch_twin` from the same initial weights,
        :func:`torch_train` on the same batches) and adds ``torch_hard`` /
        ``torch_kd`` to each seed's record and ``torch_*`` summaries; with
        ``torch_teacher=True`` the teacher is trained in PyTorch too (same initial
        weights and batches) and the PyTorch students distil from *its* logits -
        the whole pipeline twice - else they use our teacher's cached logits.
        ``n_threads`` is set on our models (PyTorch uses its own setting).
    """
    with blas_single_thread():
        return _run(dataset, arch, student_alpha, teacher_epochs, student_epochs, temperature,
                    hard_weight, lr, weight_decay, batch_size, seeds, n_train, teacher_seed,
                    data, log, models, teacher_alpha, teacher_lr, torch_twin, torch_teacher,
                    n_threads)


def _mean_sd(v):
    v = np.asarray(v, dtype=float) * 100
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def _paired_p(a, b):
    from scipy import stats

    a, b = np.asarray(a), np.asarray(b)
    if len(a) < 2:
        return None
    return float(stats.ttest_rel(a, b).pvalue) if np.any(a != b) else 1.0


def summarize_students(records) -> dict:
    """Mean ± sd (percent) and paired p-values of per-seed student records.

    ``records``: dicts with ``hard`` and ``kd`` accuracies (fractions) and, for a
    PyTorch twin, ``torch_hard`` / ``torch_kd``.  Returns ``hard_mean``, ``hard_sd``,
    ``kd_mean``, ``kd_sd``, ``p_value`` (KD vs hard, ``scipy.stats.ttest_rel``; with
    two or more seeds) and the same with a ``torch_`` prefix, plus
    ``ours_vs_torch_p_hard`` / ``_kd`` (ours vs PyTorch, paired by seed).
    """
    out = {}

    def one(prefix):
        hard = [r[prefix + "hard"] for r in records]
        kd = [r[prefix + "kd"] for r in records]
        out[prefix + "hard_mean"], out[prefix + "hard_sd"] = _mean_sd(hard)
        out[prefix + "kd_mean"], out[prefix + "kd_sd"] = _mean_sd(kd)
        if len(records) > 1:
            out[prefix + "p_value"] = _paired_p(kd, hard)
        return hard, kd

    hard, kd = one("")
    if records and all("torch_hard" in r and "torch_kd" in r for r in records):
        th, tk = one("torch_")
        if len(records) > 1:
            out["ours_vs_torch_p_hard"] = _paired_p(hard, th)
            out["ours_vs_torch_p_kd"] = _paired_p(kd, tk)
    return out


def _run(dataset, arch, student_alpha, teacher_epochs, student_epochs, temperature,
         hard_weight, lr, weight_decay, batch_size, seeds, n_train, teacher_seed, data, log,
         models, teacher_alpha, teacher_lr, torch_twin=False, torch_teacher=True,
         n_threads=None):
    check_real(student_alpha, "student_alpha", min_value=0.0, min_inclusive=False)
    check_int(teacher_epochs, "teacher_epochs", min_value=1)
    check_int(student_epochs, "student_epochs", min_value=1)
    xtr, ytr, xte, yte = data if data is not None else load_dataset(dataset, n_train=n_train)
    n_classes = int(max(ytr.max(), yte.max()) + 1)
    shape = xtr.shape[1:]
    common = dict(lr=lr, weight_decay=weight_decay, batch_size=batch_size)

    from effai_fast.distill.trainer import predict_logits

    teacher_alpha = check_real(teacher_alpha, "teacher_alpha", min_value=0.0,
                               min_inclusive=False)
    t0 = time.perf_counter()
    t_net = None
    if models is not None and "teacher" in models:
        teacher = models["teacher"]
        t_teacher = 0.0
    else:
        teacher = make_model(arch, dataset, shape, n_classes, alpha=teacher_alpha,
                             seed=teacher_seed)
        if n_threads is not None:
            teacher.n_threads = n_threads
        if torch_twin and torch_teacher:
            t_net = make_torch_twin(teacher, arch, dataset, shape, n_classes,
                                    alpha=teacher_alpha)
        tcommon = dict(common, lr=lr if teacher_lr is None else teacher_lr)
        Distiller(None, teacher, hard_weight=1.0, epochs=teacher_epochs,
                  seed=teacher_seed, **tcommon).fit(xtr, ytr)
        t_teacher = time.perf_counter() - t0
    t_acc = float(np.mean(predict_logits(teacher, xte).argmax(1) == yte))
    t_macs = model_macs(teacher, shape)
    log(f"teacher ({arch}, alpha={teacher_alpha:g}): test accuracy {100 * t_acc:.2f}%  "
        f"{t_macs:,} MACs  trained in {t_teacher:.1f} s")

    t0 = time.perf_counter()
    cache = predict_logits(teacher, xtr)
    t_cache = time.perf_counter() - t0
    if models is not None:
        models["teacher"] = teacher
        models["teacher_logits"] = cache
    twin = {}
    if torch_twin:
        xtr_t, xte_t = torch_layout(xtr, arch), torch_layout(xte, arch)
        if torch_teacher and models is not None and "torch_teacher_logits" in models:
            twin = {k: models[k] for k in ("torch_teacher_accuracy", "torch_teacher_logits",
                                           "torch_teacher_seconds")}
        elif torch_teacher:
            if t_net is None:
                raise ValueError("torch_teacher=True needs the teacher trained in this call "
                                 "(or a models dict holding the PyTorch teacher's logits)")
            t0 = time.perf_counter()
            torch_train(t_net, xtr_t, ytr, epochs=teacher_epochs,
                        lr=lr if teacher_lr is None else teacher_lr, batch_size=batch_size,
                        seed=teacher_seed, weight_decay=weight_decay)
            twin = {"torch_teacher_seconds": time.perf_counter() - t0,
                    "torch_teacher_accuracy": 100 * float(np.mean(
                        torch_predict_logits(t_net, xte_t).argmax(1) == yte)),
                    "torch_teacher_logits": torch_predict_logits(t_net, xtr_t)}
            if models is not None:
                models.update(twin)
        else:
            twin = {"torch_teacher_logits": cache}
        if "torch_teacher_accuracy" in twin:
            log(f"teacher trained with PyTorch: test accuracy "
                f"{twin['torch_teacher_accuracy']:.2f}%")
    records = []
    s_macs = None
    for seed in seeds:
        rec = {"seed": int(seed)}
        init = make_model(arch, dataset, shape, n_classes, alpha=student_alpha, seed=seed)
        state = init.state_dict()
        s_macs = model_macs(init, shape)
        for mode in ("hard", "kd"):
            student = make_model(arch, dataset, shape, n_classes, alpha=student_alpha,
                                 seed=seed)
            student.load_state_dict(state)
            if n_threads is not None:
                student.n_threads = n_threads
            if torch_twin:
                net = make_torch_twin(student, arch, dataset, shape, n_classes,
                                      alpha=student_alpha)
                t0 = time.perf_counter()
                torch_train(net, xtr_t, ytr,
                            None if mode == "hard" else twin["torch_teacher_logits"],
                            epochs=student_epochs, lr=lr, batch_size=batch_size, seed=seed,
                            temperature=temperature,
                            hard_weight=1.0 if mode == "hard" else hard_weight,
                            weight_decay=weight_decay)
                rec["torch_" + mode] = float(np.mean(
                    torch_predict_logits(net, xte_t).argmax(1) == yte))
                rec["torch_" + mode + "_seconds"] = time.perf_counter() - t0
            d = Distiller(None if mode == "hard" else teacher, student,
                          temperature=temperature,
                          hard_weight=1.0 if mode == "hard" else hard_weight,
                          epochs=student_epochs, seed=seed, **common)
            t0 = time.perf_counter()
            d.fit(xtr, ytr, teacher_logits=None if mode == "hard" else cache)
            rec[mode] = d.score(xte, yte)
            rec[mode + "_seconds"] = time.perf_counter() - t0
        log(f"  seed {seed}: hard-label student {100 * rec['hard']:.2f}%   "
            f"distilled (T={temperature:g}, hard_weight={hard_weight:g}) "
            f"{100 * rec['kd']:.2f}%"
            + (f"   | PyTorch twin: hard {100 * rec['torch_hard']:.2f}%  distilled "
               f"{100 * rec['torch_kd']:.2f}%" if torch_twin else ""))
        records.append(rec)
    summary = {
        "dataset": dataset, "arch": arch, "n_train": len(xtr), "n_test": len(xte),
        "student_alpha": student_alpha, "temperature": temperature,
        "hard_weight": hard_weight,
        "teacher": {"accuracy": t_acc * 100, "macs": t_macs, "seconds": t_teacher,
                    "cache_seconds": t_cache},
        "student_macs": s_macs, "students": records,
    }
    if torch_twin:
        summary["torch_teacher_source"] = "torch" if "torch_teacher_accuracy" in twin \
            else "ours"
        if "torch_teacher_accuracy" in twin:
            summary["teacher"]["torch_accuracy"] = twin["torch_teacher_accuracy"]
            summary["teacher"]["torch_seconds"] = twin["torch_teacher_seconds"]
    summary.update(summarize_students(records))
    return summary

