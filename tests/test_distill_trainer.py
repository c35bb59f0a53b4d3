"""The Distiller: teacher-logit caching, the training step, determinism, bad input.

The models here are a small numpy MLP written for the test, implementing the
documented interface (forward(x, training) / backward(grad) / parameters() /
gradients()), so these tests do not depend on effai_fast.nn.
"""

import numpy as np
import pytest

from effai_fast.distill import cross_entropy, kd_loss
from effai_fast.distill.trainer import Distiller, model_macs, predict_logits
from effai_fast.optim import SGD, AdamW


class MLP:
    """x (N, ...) -> Linear -> ReLU -> Linear -> logits; gradients overwritten by backward."""

    def __init__(self, n_in, n_hidden, n_out, seed=0, dtype=np.float32):
        rng = np.random.default_rng(seed)
        self.w1 = (rng.standard_normal((n_in, n_hidden)) * np.sqrt(2.0 / n_in)).astype(dtype)
        self.b1 = np.zeros(n_hidden, dtype)
        self.w2 = (rng.standard_normal((n_hidden, n_out)) * np.sqrt(1.0 / n_hidden)).astype(dtype)
        self.b2 = np.zeros(n_out, dtype)
        self._grads = [np.zeros_like(p) for p in self.parameters()]
        self.forward_samples = 0

    def parameters(self):
        return [self.w1, self.b1, self.w2, self.b2]

    def gradients(self):
        return self._grads

    def cost(self):
        class C:
            macs = self.w1.size + self.w2.size
        return C()

    def forward(self, x, training):
        self.forward_samples += len(x)
        x = x.reshape(len(x), -1)
        h = np.maximum(x @ self.w1 + self.b1, 0)
        if training:
            self._x, self._h = x, h
        return h @ self.w2 + self.b2

    def backward(self, g):
        gw1, gb1, gw2, gb2 = self._grads
        np.matmul(self._h.T, g, out=gw2)
        gb2[...] = g.sum(0)
        gh = (g @ self.w2.T) * (self._h > 0)
        np.matmul(self._x.T, gh, out=gw1)
        gb1[...] = gh.sum(0)
        return gh @ self.w1.T


def _blobs(rng, n=240, n_in=12, n_classes=4, dtype=np.float32):
    centers = rng.standard_normal((n_classes, n_in)) * 2.0
    y = rng.integers(0, n_classes, n)
    x = (centers[y] + rng.standard_normal((n, n_in))).astype(dtype)
    return x, y


def test_mlp_helper_gradient_matches_finite_differences(rng):
    m = MLP(5, 7, 3, dtype=np.float64)
    x = rng.standard_normal((4, 5))
    y = np.array([0, 2, 1, 1])
    m.forward(x, training=True)
    _, g = cross_entropy(m.forward(x, training=True), y)
    m.backward(g)
    h = 1e-6
    for p, gp in zip(m.parameters(), m.gradients(), strict=True):
        for idx in [(0,) * p.ndim, tuple(s - 1 for s in p.shape)]:
            old = p[idx]
            p[idx] = old + h
            lp = cross_entropy(m.forward(x, training=False), y)[0]
            p[idx] = old - h
            lm = cross_entropy(m.forward(x, training=False), y)[0]
            p[idx] = old
            assert gp[idx] == pytest.approx((lp - lm) / (2 * h), rel=1e-5, abs=1e-9)


def test_train_step_is_kd_loss_backward_and_optimizer_step(rng):
    x, y = _blobs(rng)
    teacher = MLP(12, 32, 4, seed=1)
    student = MLP(12, 8, 4, seed=2)
    twin = MLP(12, 8, 4, seed=2)
    d = Distiller(teacher, student, temperature=3.0, hard_weight=0.2, lr=0.05,
                  optimizer="sgd", momentum=0.0)
    tl = teacher.forward(x[:16], training=False)
    loss = d.train_step(x[:16], y[:16], tl)
    # by hand
    ref_loss, g = kd_loss(twin.forward(x[:16], training=True), tl, temperature=3.0,
                          labels=y[:16], hard_weight=0.2)
    twin.backward(g)
    SGD(twin.parameters(), lr=0.05).step(twin.gradients())
    assert loss == ref_loss
    for a, b in zip(student.parameters(), twin.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_teacher_logits_are_computed_once_per_sample(rng):
    x, y = _blobs(rng)
    teacher = MLP(12, 32, 4, seed=1)
    d = Distiller(teacher, MLP(12, 8, 4), epochs=5, batch_size=32, eval_batch_size=100,
                  seed=0).fit(x, y)
    assert teacher.forward_samples == len(x)
    np.testing.assert_array_equal(d.teacher_logits_, predict_logits(teacher, x, batch_size=100))
    assert d.n_steps_ == 5 * 8 and len(d.history_) == 5
    # a shared cache skips the teacher entirely
    teacher.forward_samples = 0
    Distiller(teacher, MLP(12, 8, 4), epochs=2, seed=0).fit(x, y,
                                                            teacher_logits=d.teacher_logits_)
    assert teacher.forward_samples == 0


def test_augmentation_with_cache_is_refused_and_runs_teacher_without(rng):
    x, y = _blobs(rng)
    teacher = MLP(12, 32, 4, seed=1)

    def jitter(xb, r):
        return xb + 0.1 * r.standard_normal(xb.shape)

    with pytest.raises(ValueError, match="cache_teacher_logits=False"):
        Distiller(teacher, MLP(12, 8, 4), augment=jitter).fit(x, y)
    d = Distiller(teacher, MLP(12, 8, 4), augment=jitter, cache_teacher_logits=False,
                  epochs=2, batch_size=60, seed=0).fit(x, y)
    assert d.teacher_logits_ is None
    assert teacher.forward_samples == 2 * len(x)     # every augmented batch, every epoch


def test_same_seed_same_student_and_distillation_learns(rng):
    x, y = _blobs(rng, n=400)
    xt, yt = x[300:], y[300:]
    x, y = x[:300], y[:300]
    teacher = MLP(12, 64, 4, seed=1)
    Distiller(None, teacher, hard_weight=1.0, lr=1e-2, epochs=15, seed=0).fit(x, y)
    runs = []
    for _ in range(2):
        s = MLP(12, 8, 4, seed=3)
        d = Distiller(teacher, s, temperature=4.0, hard_weight=0.1, lr=1e-2, epochs=15,
                      seed=7).fit(x, y, validation_data=(xt, yt))
        runs.append((s, d))
    for a, b in zip(runs[0][0].parameters(), runs[1][0].parameters(), strict=True):
        np.testing.assert_array_equal(a, b)
    d = runs[0][1]
    assert d.history_[-1]["loss"] < d.history_[0]["loss"]
    assert d.score(xt, yt) > 0.9
    assert d.history_[-1]["val_accuracy"] == d.score(xt, yt)
    assert d.optimizer_.lr == 1e-2                   # restored after the cosine schedule
    assert model_macs(runs[0][0]) == 12 * 8 + 8 * 4
    assert model_macs(object()) is None


def test_distiller_trains_effai_fast_nn_layers(rng):
    nn = pytest.importorskip("effai_fast.nn")
    x, y = _blobs(rng, n=300)
    teacher = nn.Sequential(nn.Linear(12, 64, seed=0), nn.ReLU(), nn.Linear(64, 4, seed=1))
    Distiller(None, teacher, hard_weight=1.0, lr=1e-2, epochs=10, seed=0).fit(x, y)
    student = nn.Sequential(nn.Linear(12, 8, seed=2), nn.ReLU(), nn.Linear(8, 4, seed=3))
    d = Distiller(teacher, student, lr=2e-2, epochs=15, seed=0).fit(x, y)
    assert d.history_[-1]["loss"] < d.history_[0]["loss"]
    assert d.score(x, y) > 0.85
    assert model_macs(student, (12,)) == 12 * 8 + 8 * 4


def test_hard_label_training_uses_cross_entropy(rng):
    x, y = _blobs(rng)
    s, twin = MLP(12, 8, 4, seed=2), MLP(12, 8, 4, seed=2)
    d = Distiller(None, s, hard_weight=1.0, optimizer="adamw", lr=1e-3)
    loss = d.train_step(x[:10], y[:10])
    ref, g = cross_entropy(twin.forward(x[:10], training=True), y[:10])
    twin.backward(g)
    AdamW([{"params": twin.parameters(), "grads": twin.gradients()}], lr=1e-3,
          weight_decay=0.0).step()
    assert loss == ref
    for a, b in zip(s.parameters(), twin.parameters(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_user_optimizer_and_divergence_message(rng):
    x, y = _blobs(rng)
    s = MLP(12, 8, 4)
    opt = SGD([{"params": s.parameters(), "grads": s.gradients()}], lr=0.01)
    d = Distiller(MLP(12, 32, 4), s, optimizer=opt, epochs=1).fit(x, y)
    assert d.optimizer_ is opt
    with pytest.raises(ValueError, match="student's parameters"):
        Distiller(MLP(12, 32, 4), MLP(12, 8, 4), optimizer=opt).fit(x, y)

    class Exploding(MLP):
        def forward(self, x, training):
            out = super().forward(x, training)
            self.calls = getattr(self, "calls", 0) + 1
            return out * np.nan if self.calls == 3 else out

    with pytest.raises(ValueError, match="epoch 1, step 3"):
        Distiller(MLP(12, 32, 4), Exploding(12, 8, 4), batch_size=16).fit(x, y)


def test_distiller_bad_input(rng):
    x, y = _blobs(rng)
    t, s = MLP(12, 32, 4), MLP(12, 8, 4)
    with pytest.raises(ValueError, match="temperature"):
        Distiller(t, s, temperature=0).fit(x, y)
    with pytest.raises(ValueError, match="hard_weight"):
        Distiller(t, s, hard_weight=1.5).fit(x, y)
    with pytest.raises(ValueError, match="hard_weight=1.0"):
        Distiller(None, s, hard_weight=0.1).fit(x, y)
    with pytest.raises(TypeError, match="student must provide"):
        Distiller(t, object()).fit(x, y)
    with pytest.raises(TypeError, match="teacher must provide"):
        Distiller(object(), s).fit(x, y)
    with pytest.raises(ValueError, match="different models"):
        Distiller(s, s).fit(x, y)
    with pytest.raises(ValueError, match="y must have shape"):
        Distiller(t, s).fit(x, y[:-1])
    with pytest.raises(TypeError, match="y must hold integer"):
        Distiller(t, s).fit(x, y.astype(float))
    with pytest.raises(TypeError, match="x must be float"):
        Distiller(t, s).fit(x.astype(int), y)
    with pytest.raises(ValueError, match="x must have shape"):
        Distiller(t, s).fit(x[:0], y[:0])
    with pytest.raises(ValueError, match="teacher_logits"):
        Distiller(t, s).fit(x, y, teacher_logits=np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"y must lie in \[0, 4\)"):
        Distiller(t, s).fit(x, np.where(y == 0, 7, y))
    with pytest.raises(ValueError, match="lr_schedule"):
        Distiller(t, s, lr_schedule="step").fit(x, y)
    with pytest.raises(ValueError, match="optimizer"):
        Distiller(t, s, optimizer="lbfgs").fit(x, y)
    with pytest.raises(ValueError, match="epochs"):
        Distiller(t, s, epochs=-1).fit(x, y)
