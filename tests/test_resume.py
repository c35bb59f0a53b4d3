"""Kill-and-resume: a training run killed (SIGKILL) mid-run continues from its checkpoint.

Each test writes a small script into a temporary folder and runs it in a fresh Python
process.  The script trains with ``checkpoint=``; with ``EFFAI_HANG_AT=k`` set it stops in
the middle of step ``k`` (after writing a marker file) and waits there, so the test can kill
it at a known point after a checkpoint exists and while more work since that checkpoint would
be lost.  The script is then started again without the hang: it resumes from the checkpoint
and saves the final weights, which must equal (bit for bit) those of an uninterrupted run of
the same script in another process.  The training itself is in-process deterministic; the
subprocess form proves that nothing the resumed run needs lives only in the killed process.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

_COMMON = '''
import os, sys, time
import numpy as np

HANG_AT = int(os.environ.get("EFFAI_HANG_AT", "0"))
MARKER = os.environ.get("EFFAI_MARKER", "")


def hang_if_due(count):
    if HANG_AT and count == HANG_AT:
        with open(MARKER, "w") as fh:
            fh.write(str(count))
        time.sleep(600)      # killed here by the test


from effai_fast import nn  # noqa: E402


class Counting(nn.Sequential):
    """Counts training forward passes; hangs at the HANG_AT-th."""
    calls = 0

    def forward(self, x, training=False):
        if training:
            Counting.calls += 1
            hang_if_due(Counting.calls)
        return super().forward(x, training=training)
'''

_NN_SCRIPT = _COMMON + '''
from effai_fast import nn
from effai_fast.optim import AdamW


def main(out, checkpoint):
    dt = np.float64
    model = Counting(nn.Linear(6, 16, dtype=dt, seed=1),
                     nn.BatchNorm(16, activation="relu", dtype=dt),
                     nn.Dropout(0.25, seed=3, dtype=dt), nn.Linear(16, 3, dtype=dt, seed=2))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((101, 6))
    y = rng.integers(0, 3, 101)
    opt = AdamW(nn.param_groups(model, 1e-2), lr=2e-2)
    hist = nn.fit(model, x, y, epochs=3, batch_size=16, optimizer=opt, lr_schedule="cosine",
                  seed=5, verbose=0, n_threads=1,
                  checkpoint=None if checkpoint == "-" else checkpoint, checkpoint_every=4)
    state = model.state_dict()
    state.update({f"optim.{k}": v for k, v in opt.state_dict().items()})
    state["loss"] = np.array(hist.loss)
    np.savez(out, **state)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
'''

_DISTILL_SCRIPT = _COMMON + '''
from effai_fast import nn
from effai_fast.distill import Distiller


def main(out, checkpoint):
    dt = np.float64
    teacher = nn.Sequential(nn.Linear(5, 32, dtype=dt, seed=7, init_std=0.5), nn.ReLU(dt),
                            nn.Linear(32, 4, dtype=dt, seed=8, init_std=0.5))
    student = Counting(nn.Linear(5, 8, dtype=dt, seed=1, init_std=0.3),
                       nn.BatchNorm(8, activation="relu", dtype=dt),
                       nn.Dropout(0.2, seed=4, dtype=dt), nn.Linear(8, 4, dtype=dt, seed=2))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((90, 5))
    y = rng.integers(0, 4, 90)
    d = Distiller(teacher, student, temperature=3.0, hard_weight=0.2, optimizer="sgd",
                  lr=0.05, epochs=3, batch_size=16, seed=11, n_threads=1)
    d.fit(x, y, checkpoint=None if checkpoint == "-" else checkpoint, checkpoint_every=5)
    state = student.state_dict()
    state.update({f"optim.{k}": v for k, v in d.optimizer_.state_dict().items()})
    state["loss"] = np.array([r["loss"] for r in d.history_])
    state["n_steps"] = np.array(d.n_steps_)
    np.savez(out, **state)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
'''

_SURROGATE_SCRIPT = _COMMON + '''
from effai_fast.surrogate import get_problem, optimize

BRANIN = get_problem("branin")
CALLS = 0


def simulator(x):
    global CALLS
    CALLS += 1
    hang_if_due(CALLS)
    return BRANIN(x)


def main(out, checkpoint):
    h = optimize(simulator, BRANIN.domain, n_initial=6, n_rounds=3, batch_size=2, seed=3,
                 n_candidates=256, checkpoint=None if checkpoint == "-" else checkpoint)
    np.savez(out, X=h.X, y=h.y, round=h.round)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
'''


def _env(**extra):
    env = dict(os.environ)
    env.update({"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    env.update(extra)
    return env


def _run(script, tmp_path, out, checkpoint, **env):
    proc = subprocess.run([sys.executable, str(script), str(out), str(checkpoint)],
                          cwd=tmp_path, env=_env(**env), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _run_and_kill(script, tmp_path, checkpoint, hang_at):
    """Start the script, wait until it hangs at step ``hang_at``, SIGKILL it."""
    marker = tmp_path / f"hang{hang_at}.marker"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "never.npz"), str(checkpoint)],
        cwd=tmp_path, env=_env(EFFAI_HANG_AT=str(hang_at), EFFAI_MARKER=str(marker)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the script ended before step {hang_at}: {proc.stderr.read()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the script did not reach step {hang_at}")
            time.sleep(0.05)
        assert checkpoint.exists(), "no checkpoint before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert not (tmp_path / "never.npz").exists()
    leftovers = [p.name for p in checkpoint.parent.iterdir() if p.name.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def _assert_same(a_path, b_path):
    with np.load(a_path) as a, np.load(b_path) as b:
        assert sorted(a.files) == sorted(b.files)
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("kind, hang_at", [
    ("nn", 10),        # 7 steps/epoch: step 3 of epoch 2, the last checkpoint is mid-epoch
    ("distill", 11),   # 6 steps/epoch: step 5 of epoch 2, one step after the step-10 one
    ("surrogate", 9),  # the 1st point of round 2: rounds 0 and 1 are checkpointed
])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, kind, hang_at):
    source = {"nn": _NN_SCRIPT, "distill": _DISTILL_SCRIPT,
              "surrogate": _SURROGATE_SCRIPT}[kind]
    script = tmp_path / f"train_{kind}.py"
    script.write_text(textwrap.dedent(source))
    ref, resumed = tmp_path / "ref.npz", tmp_path / "resumed.npz"
    ck = tmp_path / "ck.npz"
    _run(script, tmp_path, ref, "-")                        # uninterrupted, no checkpoint
    _run_and_kill(script, tmp_path, ck, hang_at)            # killed mid-run
    _run(script, tmp_path, resumed, ck)                     # resumed from the checkpoint
    _assert_same(ref, resumed)


# ---------------------------------------------------------------- in-process resume checks
class _Interrupt(Exception):
    pass


def _nn_model(dtype):
    from effai_fast import nn

    return nn.Sequential(nn.Linear(4, 12, dtype=dtype, seed=1),
                         nn.BatchNorm(12, activation="relu", dtype=dtype),
                         nn.Dropout(0.3, seed=2, dtype=dtype), nn.Linear(12, 3, dtype=dtype,
                                                                         seed=3))


def _nn_fit(dtype, checkpoint=None, stop_at=None, **kw):
    from effai_fast import nn
    from effai_fast.nn.functional import softmax_cross_entropy
    from effai_fast.optim import SGD

    model = _nn_model(dtype)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((45, 4)).astype(dtype)
    y = rng.integers(0, 3, 45)
    opt = SGD(nn.param_groups(model, 1e-3), lr=0.1, momentum=0.9, nesterov=True)
    count = [0]

    def loss(logits, yb, idx):
        count[0] += 1
        if count[0] == stop_at:
            raise _Interrupt
        return softmax_cross_entropy(logits, yb)

    kw = {"epochs": 3, "batch_size": 8, "lr_schedule": "cosine", "seed": 6, "verbose": 0,
          **kw}
    hist = nn.fit(model, x, y, optimizer=opt, loss=loss, checkpoint=checkpoint, **kw)
    return model, opt, hist, count[0]


@pytest.mark.parametrize("every, stop_at", [(None, 9), (4, 11), (1, 17)])
def test_fit_resume_in_process(tmp_path, dtype, every, stop_at):
    model0, opt0, hist0, _ = _nn_fit(dtype)
    ck = tmp_path / "fit.npz"
    with pytest.raises(_Interrupt):
        _nn_fit(dtype, ck, stop_at=stop_at, checkpoint_every=every)
    model1, opt1, hist1, steps = _nn_fit(dtype, ck, checkpoint_every=every)
    last = (stop_at - 1) // 6 * 6 if every is None else (stop_at - 1) // every * every
    assert steps == 18 - last                     # 6 steps per epoch, resumed after `last`
    for (name, a), (_, b) in zip(model0.named_parameters() + model0.named_buffers(),
                                 model1.named_parameters() + model1.named_buffers()):
        np.testing.assert_array_equal(a, b, err_msg=name)
    for key, value in opt0.state_dict().items():
        np.testing.assert_array_equal(value, opt1.state_dict()[key], err_msg=key)
    assert hist1.loss == hist0.loss and hist1.accuracy == hist0.accuracy
    assert hist1.lr == hist0.lr and len(hist1.epoch_seconds) == 3
    # finished: returns the stored history, the weights are those of the finished run
    model2, _, hist2, steps2 = _nn_fit(dtype, ck)
    assert steps2 == 0 and hist2.loss == hist0.loss
    np.testing.assert_array_equal(model2[3].weight, model0[3].weight)


def test_fit_checkpoint_refuses_another_run(tmp_path):
    ck = tmp_path / "fit.npz"
    _nn_fit(np.float64, ck, epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        _nn_fit(np.float64, ck, epochs=1, batch_size=9)
    with pytest.raises(ValueError, match="epochs"):
        _nn_fit(np.float64, ck, epochs=2)
    with pytest.raises(ValueError, match="shuffle"):
        _nn_fit(np.float64, ck, epochs=1, shuffle=False)
    # resume=False trains afresh and overwrites
    ref = _nn_fit(np.float64, epochs=2)[0]
    model, _, _, steps = _nn_fit(np.float64, ck, epochs=2, resume=False)
    assert steps == 12
    np.testing.assert_array_equal(model[0].weight, ref[0].weight)
    bad = tmp_path / "bad.npz"
    np.savez(bad, a=np.zeros(2))
    with pytest.raises(ValueError, match="not an effai_fast checkpoint"):
        _nn_fit(np.float64, bad, epochs=1)
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot be read"):
        _nn_fit(np.float64, bad, epochs=1)
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        _nn_fit(np.float64, 3, epochs=1)
    with pytest.raises(ValueError, match="checkpoint_every"):
        _nn_fit(np.float64, ck, epochs=1, checkpoint_every=0)


class _PlainStudent:
    """A duck-typed student without state_dict: linear softmax regression."""

    def __init__(self, d, c, seed):
        self.w = np.random.default_rng(seed).standard_normal((d, c)) * 0.1
        self.gw = np.zeros_like(self.w)

    def forward(self, x, training=False):
        self._x = x
        return x @ self.w

    def backward(self, grad):
        np.matmul(self._x.T, grad, out=self.gw)
        return grad @ self.w.T

    def parameters(self):
        return [self.w]

    def gradients(self):
        return [self.gw]


def _distil(checkpoint=None, stop_at=None, batch_size=8, **kw):
    from effai_fast.distill import Distiller

    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 6))
    y = rng.integers(0, 3, 50)
    teacher_logits = x @ rng.standard_normal((6, 3))
    student = _PlainStudent(6, 3, 5)
    teacher = type("Teacher", (), {"forward": lambda self, x, training=False: x})()
    d = Distiller(teacher, student, hard_weight=0.3, epochs=3, batch_size=batch_size, seed=9,
                  optimizer="adamw", lr=0.02)
    forward = student.forward
    count = [0]

    def counting(x, training=False):
        if training:
            count[0] += 1
            if count[0] == stop_at:
                raise _Interrupt
        return forward(x, training)

    student.forward = counting
    d.fit(x, y, teacher_logits=teacher_logits, checkpoint=checkpoint, **kw)
    return d, student, count[0]


def test_distiller_resume_duck_typed_student(tmp_path):
    d0, s0, _ = _distil()
    ck = tmp_path / "kd.npz"
    with pytest.raises(_Interrupt):
        _distil(ck, stop_at=16, checkpoint_every=3)
    d1, s1, steps = _distil(ck, checkpoint_every=3)
    assert steps == 21 - 15 and d1.n_steps_ == d0.n_steps_ == 21
    np.testing.assert_array_equal(s1.w, s0.w)
    assert [r["loss"] for r in d1.history_] == [r["loss"] for r in d0.history_]
    assert d1.optimizer_.lr == d0.optimizer_.lr
    with pytest.raises(ValueError, match="batch_size"):
        _distil(ck, batch_size=7)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    from effai_fast.nn import _checkpoint as C

    path = tmp_path / "c.npz"
    C.write_checkpoint(path, {"a": np.arange(3)}, {"format": "t/1", "n": 1})
    before = path.read_bytes()

    def broken(fh, **arrays):
        fh.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(C.np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        C.write_checkpoint(path, {"a": np.arange(5)}, {"format": "t/1", "n": 2})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz"]
    arrays, meta = C.read_checkpoint(path, "t/1")
    np.testing.assert_array_equal(arrays["a"], np.arange(3))
    assert meta["n"] == 1
    with pytest.raises(ValueError, match="format"):
        C.read_checkpoint(path, "other/1")


@pytest.mark.parametrize("bitgen", [np.random.PCG64, np.random.MT19937, np.random.Philox])
def test_rng_state_round_trip(bitgen):
    import json

    from effai_fast.nn import _checkpoint as C

    g = np.random.Generator(bitgen(3))
    g.random(7)
    state = json.loads(json.dumps(C.get_rng_state(g)))
    expected = g.random(5)
    h = np.random.Generator(bitgen(99))
    C.set_rng_state(h, state)
    np.testing.assert_array_equal(h.random(5), expected)
    with pytest.raises(ValueError, match="random generator"):
        C.set_rng_state(np.random.Generator(np.random.SFC64(0)), state)
