"""Property-based fuzzing of the public entry points (hypothesis).

Property: every call either returns a correct result (checked against a cheap
independent reference where one is easy) or raises ValueError/TypeError whose
message names the offending argument.  Any other exception fails the test
(a crash fails the whole run).

Inputs drawn: shapes with 0 and 1 sizes, dtypes (float16/32/64, int, bool,
complex, object), memory layouts (non-contiguous slices, negative strides,
Fortran order, read-only), NaN/inf, and out-of-range scalar arguments
(strides, temperatures, thread counts, levels, top_k...).

Example counts: ``EFFAI_FUZZ_EXAMPLES`` (default 50 per test) sets
``max_examples``; e.g. ``EFFAI_FUZZ_EXAMPLES=2000 python -m pytest
tests/test_fuzz.py``.  Each test counts the examples it ran (``TRIED``) and
asserts the count is positive; ``python -m pytest tests/test_fuzz.py -s``
prints them.
"""

from __future__ import annotations

import collections
import math
import os
import re
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
import _conv_reference as ref  # noqa: E402
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

N_EXAMPLES = int(os.environ.get("EFFAI_FUZZ_EXAMPLES", "50"))
# CI (no env var): a fixed, reproducible sample; on demand: fresh random examples
settings.register_profile(
    "effai_fuzz", max_examples=N_EXAMPLES, deadline=None,
    derandomize="EFFAI_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
    database=None, print_blob=True)
fuzz = settings.get_profile("effai_fuzz")

TRIED: collections.Counter = collections.Counter()


def _done(name):
    assert TRIED[name] > 0


@pytest.fixture(scope="module", autouse=True)
def _report_counts():
    yield
    total = sum(TRIED.values())
    print(f"\n[fuzz] {total} examples tried: " + ", ".join(f"{k} {v}" for k, v in TRIED.items()))


# ---------------------------------------------------------------------------
# strategies and helpers
# ---------------------------------------------------------------------------

DTYPES = ["float64", "float32", "float16", "int32", "bool", "complex128", "object"]
LAYOUTS = ["C", "F", "strided", "negative", "readonly"]
BAD_THREADS = [0, 1.5, "2", True]
THREADS = st.sampled_from([None, 1, 2, -1, 64] + BAD_THREADS)


def _cast(a: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        return _cast_(a, dtype)


def _cast_(a: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bool":
        return a > 0
    if dtype == "int32":
        return np.round(a).astype(np.int32)
    if dtype == "object":
        return a.astype(object)
    if dtype == "complex128":
        return a.astype(np.complex128)
    return a.astype(dtype)


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    """The same values in another memory layout."""
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "strided" and a.ndim:
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype)
        big[..., ::2] = a
        return big[..., ::2]
    if layout == "negative" and a.ndim:
        return np.flip(np.flip(a, axis=0).copy(), axis=0)
    if layout == "readonly":
        a = np.array(a, copy=True)   # (a 0-d cast may be a numpy scalar)
        a.flags.writeable = False
        return a
    return a


def _reference_values(a: np.ndarray) -> np.ndarray:
    """float64 values the kernel sees (float16 computes in float32)."""
    return np.asarray(a, dtype=np.float64)


def arrays(shape, dtypes=DTYPES, nonfinite=True, lo=-3.0, hi=3.0):
    """An array of ``shape`` with a random dtype/layout and optional NaN/inf."""
    @st.composite
    def strat(draw):
        sh = draw(shape) if isinstance(shape, st.SearchStrategy) else shape
        seed = draw(st.integers(0, 2**32 - 1))
        a = np.random.default_rng(seed).uniform(lo, hi, size=sh)
        special = draw(st.sampled_from([None] * 4 + ["nan", "inf"])) if nonfinite else None
        if special and a.size:
            a.flat[draw(st.integers(0, a.size - 1))] = np.nan if special == "nan" else np.inf
        dt = draw(st.sampled_from(dtypes))
        a = _cast(a, dt)
        return _layout(a, draw(st.sampled_from(LAYOUTS)))
    return strat()


def attempt(fn, *args, **kwargs):
    """Call; return (result, None) or (None, exc) for ValueError/TypeError only."""
    try:
        return fn(*args, **kwargs), None
    except (ValueError, TypeError) as exc:
        return None, exc


def assert_names(exc, *names):
    msg = str(exc)
    hit = any(re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", msg) for n in names)
    assert hit, f"{type(exc).__name__} names none of {names}: {msg}"


def _bad_real(dt) -> bool:
    return np.dtype(dt).kind in "cO"


def _result_dtype(*arrays_):
    floats = [np.asarray(a).dtype for a in arrays_ if a is not None
              and np.asarray(a).dtype.kind == "f"]
    if floats and all(d.itemsize <= 4 for d in floats):
        return np.float32
    return np.float64


def _close(got, want, dtype, scale=1.0):
    rtol = 2e-3 if dtype == np.float32 else 1e-9
    if not np.isfinite(scale):
        # an inf input gives an inf scale; non-finite entries are compared exactly
        finite = np.abs(np.asarray(want, np.float64))
        scale = 1.0 + np.max(finite[np.isfinite(finite)], initial=0.0)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=rtol,
                               atol=rtol * max(1.0, scale), equal_nan=True)


def _expected_thread_error(n_threads):
    return isinstance(n_threads, bool) or not (n_threads is None or isinstance(n_threads, int)) \
        or n_threads == 0


# ---------------------------------------------------------------------------
# effai_fast.nn.functional
# ---------------------------------------------------------------------------

from effai_fast.nn import functional as F  # noqa: E402

STRIDES = st.sampled_from([1, 1, 2, (1, 2), 3, 0, -1, 1.5, (1, 1, 1), 2**40, 2**64])
DILATIONS = st.sampled_from([1, 1, 2, (2, 1), 0, -2, 2.0])
PADDINGS = st.sampled_from(["same", "same", "valid", 0, 1, (1, 0), (0, 1, 1, 0), -1, "full",
                            1.0, (1, 2, 3)])
ACTS = st.sampled_from([None, "relu", "relu6", "tanh", 3])


def _geom_ok(stride, dilation, padding):
    def ok_pair(v, lo):
        vals = v if isinstance(v, tuple) else (v, v)
        return len(vals) == 2 and all(
            isinstance(u, int) and not isinstance(u, bool) and lo <= u < 2**31 for u in vals)
    if not ok_pair(stride, 1) or not ok_pair(dilation, 1):
        return False
    if isinstance(padding, str):
        return padding in ("same", "valid")
    vals = padding if isinstance(padding, tuple) else (padding,)
    return len(vals) in (1, 2, 4) and all(isinstance(u, int) and u >= 0 for u in vals)


def _span_ok(xshape, KH, KW, stride, padding, dilation):
    st_ = ref._pair(stride)
    dl = ref._pair(dilation)
    pt, pb, pl, pr = ref.pads(padding, xshape[1], xshape[2], KH, KW, st_, dl)
    return ((KH - 1) * dl[0] + 1 <= xshape[1] + pt + pb
            and (KW - 1) * dl[1] + 1 <= xshape[2] + pl + pr)


x4 = st.tuples(st.integers(0, 2), st.integers(0, 5), st.integers(1, 5), st.integers(0, 3))


@fuzz
@given(x=arrays(x4), kh=st.integers(0, 3), kw=st.integers(1, 3), wdt=st.sampled_from(DTYPES),
       cmis=st.sampled_from([0, 0, 0, 1]), use_bias=st.booleans(), stride=STRIDES,
       padding=PADDINGS, dilation=DILATIONS, activation=ACTS, n_threads=THREADS)
@example(x=np.zeros((1, 3, 3, 2)), kh=3, kw=3, wdt="float64", cmis=0, use_bias=False,
         stride=2**40, padding="same", dilation=1, activation=None, n_threads=1)
@example(x=np.zeros((1, 2, 2, 1)), kh=1, kw=1, wdt="complex128", cmis=0, use_bias=False,
         stride=1, padding="same", dilation=1, activation=None, n_threads=1)
def test_depthwise_conv2d(x, kh, kw, wdt, cmis, use_bias, stride, padding, dilation,
                          activation, n_threads):
    TRIED["depthwise_conv2d"] += 1
    C = x.shape[3]
    w = _cast(np.random.default_rng(1).normal(size=(kh, kw, C + cmis)), wdt)
    b = np.linspace(-1, 1, C) if use_bias else None
    res, exc = attempt(F.depthwise_conv2d, x, w, b, stride=stride, padding=padding,
                       dilation=dilation, activation=activation, n_threads=n_threads)
    valid = (not _bad_real(x.dtype) and not _bad_real(w.dtype) and 0 not in x.shape[1:]
             and kh > 0 and cmis == 0 and _geom_ok(stride, dilation, padding)
             and activation in (None, "relu", "relu6") and not _expected_thread_error(n_threads))
    if valid and _span_ok(x.shape, kh, kw, stride, padding, dilation):
        assert exc is None, exc
        dt = _result_dtype(x, w, b)
        assert res.dtype == dt
        want = ref.depthwise(_reference_values(x).astype(dt), w.astype(dt), b, stride, padding,
                             dilation, activation)
        assert res.shape == want.shape
        _close(res, want, dt, 10.0)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "x", "weight", "stride", "padding", "dilation", "activation",
                     "n_threads", "bias")
    _done("depthwise_conv2d")


@fuzz
def _check_spatial_vjp(name, vjp, ref_fwd, ref_vjp, x, w, gseed, kh, kw, stride, padding,
                       dilation, activation, gdt, gshape_off, need_input_grad, n_threads):
    """Shared property of the depthwise and dense conv VJPs: a result equal to the slow
    reference for a valid call, a named error otherwise."""
    TRIED[name] += 1
    valid = (not _bad_real(x.dtype) and 0 not in x.shape[1:]
             and _geom_ok(stride, dilation, padding)
             and activation in (None, "relu", "relu6") and not _expected_thread_error(n_threads))
    if valid and _span_ok(x.shape, kh, kw, stride, padding, dilation):
        with np.errstate(all="ignore"):
            y = ref_fwd(_reference_values(x), w, None, stride, padding, dilation, activation)
        gshape = y.shape[:-1] + (y.shape[-1] + gshape_off,)
    else:
        y, gshape = None, (1, 1, 1, 1)
    g = _cast(np.random.default_rng(gseed).normal(size=gshape), gdt)
    res, exc = attempt(vjp, x, w, g, stride=stride, padding=padding,
                       dilation=dilation, activation=activation, output=y,
                       need_input_grad=need_input_grad, n_threads=n_threads)
    if y is not None and gshape_off == 0 and not _bad_real(g.dtype):
        assert exc is None, exc
        dt = _result_dtype(x, w, g)
        with np.errstate(all="ignore"):  # inf inputs make inf*0 in the reference
            gx, gw, gb = ref_vjp(_reference_values(x).astype(dt), w, g.astype(dt), stride,
                                 padding, dilation, activation, y)
        scale = 1.0 + np.nanmax(np.abs(gw), initial=0.0)
        if need_input_grad:
            _close(res[0], gx, dt, scale)
        else:
            assert res[0] is None
        _close(res[1], gw, dt, scale)
        _close(res[2], gb, dt, scale)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "x", "weight", "grad_out", "stride", "padding", "dilation",
                     "activation", "n_threads", "output")
    _done(name)


@given(x=arrays(x4), kh=st.integers(1, 3), kw=st.integers(1, 3), stride=STRIDES,
       padding=PADDINGS, dilation=DILATIONS, activation=ACTS, gdt=st.sampled_from(DTYPES),
       gshape_off=st.sampled_from([0, 0, 0, 1]), need_input_grad=st.booleans(),
       n_threads=THREADS)
def test_depthwise_conv2d_vjp(x, kh, kw, stride, padding, dilation, activation, gdt,
                              gshape_off, need_input_grad, n_threads):
    w = np.random.default_rng(2).normal(size=(kh, kw, x.shape[3]))
    _check_spatial_vjp("depthwise_conv2d_vjp", F.depthwise_conv2d_vjp, ref.depthwise,
                       ref.depthwise_vjp, x, w, 3, kh, kw, stride, padding, dilation,
                       activation, gdt, gshape_off, need_input_grad, n_threads)


pw_x = st.tuples(st.integers(0, 2), st.integers(1, 4), st.integers(0, 4), st.integers(0, 3))


@fuzz
@given(x=arrays(pw_x), co=st.integers(0, 3), wdt=st.sampled_from(DTYPES),
       cmis=st.sampled_from([0, 0, 0, 1]), use_bias=st.booleans(), activation=ACTS,
       n_threads=THREADS)
def test_pointwise_conv2d(x, co, wdt, cmis, use_bias, activation, n_threads):
    TRIED["pointwise_conv2d"] += 1
    C = x.shape[3]
    w = _layout(_cast(np.random.default_rng(4).normal(size=(C + cmis, co)), wdt), "F")
    b = np.linspace(-1, 1, co) if use_bias else None
    res, exc = attempt(F.pointwise_conv2d, x, w, b, activation=activation, n_threads=n_threads)
    valid = (not _bad_real(x.dtype) and not _bad_real(w.dtype) and cmis == 0
             and activation in (None, "relu", "relu6") and not _expected_thread_error(n_threads))
    if exc is None:
        assert valid, "invalid call returned a result"
        dt = _result_dtype(x, w, b)
        assert res.dtype == dt
        want = ref.pointwise(_reference_values(x).astype(dt), w.astype(dt), b, activation)
        assert res.shape == want.shape
        _close(res, want, dt, 10.0)
    else:
        # sizes of zero (channels, width, outputs) may be refused, but only by name
        assert_names(exc, "x", "weight", "activation", "n_threads", "bias")
        if valid and x.size and w.size:
            pytest.fail(f"valid call refused: {exc}")
    _done("pointwise_conv2d")


@fuzz
@given(x=arrays(x4, dtypes=["float64", "float32", "int32", "complex128", "object"]),
       kh=st.integers(1, 3), kw=st.integers(1, 3), co=st.integers(1, 3), stride=STRIDES,
       padding=PADDINGS, dilation=DILATIONS, activation=ACTS, n_threads=THREADS)
def test_conv2d(x, kh, kw, co, stride, padding, dilation, activation, n_threads):
    TRIED["conv2d"] += 1
    C = x.shape[3]
    w = np.random.default_rng(5).normal(size=(kh, kw, C, co))
    res, exc = attempt(F.conv2d, x, w, stride=stride, padding=padding, dilation=dilation,
                       activation=activation, n_threads=n_threads)
    valid = (not _bad_real(x.dtype) and 0 not in x.shape[1:]
             and _geom_ok(stride, dilation, padding)
             and activation in (None, "relu", "relu6") and not _expected_thread_error(n_threads))
    if valid and _span_ok(x.shape, kh, kw, stride, padding, dilation):
        assert exc is None, exc
        want = ref.conv2d(_reference_values(x), w, None, stride, padding, dilation, activation)
        _close(res, want, np.float64, 10.0)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "x", "weight", "stride", "padding", "dilation", "activation",
                     "n_threads")
    _done("conv2d")


@fuzz
@given(x=arrays(x4), kh=st.integers(1, 3), kw=st.integers(1, 3), co=st.integers(1, 3),
       stride=STRIDES, padding=PADDINGS, dilation=DILATIONS, dw_activation=ACTS,
       activation=ACTS, pwdt=st.sampled_from(DTYPES), n_threads=THREADS)
def test_depthwise_separable_conv2d(x, kh, kw, co, stride, padding, dilation, dw_activation,
                                    activation, pwdt, n_threads):
    TRIED["depthwise_separable_conv2d"] += 1
    C = x.shape[3]
    rng = np.random.default_rng(6)
    dw, pw = rng.normal(size=(kh, kw, C)), _cast(rng.normal(size=(C, co)), pwdt)
    db, pb = rng.normal(size=C), rng.normal(size=co)
    res, exc = attempt(F.depthwise_separable_conv2d, x, dw, pw, db, pb, stride=stride,
                       padding=padding, dilation=dilation, dw_activation=dw_activation,
                       activation=activation, n_threads=n_threads)
    acts = (None, "relu", "relu6")
    valid = (not _bad_real(x.dtype) and not _bad_real(pw.dtype) and 0 not in x.shape[1:]
             and _geom_ok(stride, dilation, padding) and activation in acts
             and dw_activation in acts and not _expected_thread_error(n_threads))
    if valid and _span_ok(x.shape, kh, kw, stride, padding, dilation):
        assert exc is None, exc
        # the unfused pair is the reference
        mid = F.depthwise_conv2d(x, dw, db, stride=stride, padding=padding, dilation=dilation,
                                 activation=dw_activation)
        want = F.pointwise_conv2d(mid, pw, pb, activation=activation)
        assert res.shape == want.shape and res.dtype == want.dtype
        _close(res, want, np.float64, 10.0)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "x", "dw_weight", "pw_weight", "stride", "padding", "dilation",
                     "dw_activation",
                     "activation", "n_threads")
    _done("depthwise_separable_conv2d")


# ---------------------------------------------------------------------------
# effai_fast.distill
# ---------------------------------------------------------------------------

from scipy import special  # noqa: E402

from effai_fast import distill  # noqa: E402

logit_shapes = st.one_of(st.tuples(st.integers(0, 4)),
                         st.tuples(st.integers(0, 4), st.integers(0, 5)),
                         st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2)))
TEMPS = st.sampled_from([1.0, 0.5, 4, 1e-3, 1e3, 0.0, -1.0, float("nan"), float("inf"), "2",
                         True, np.float32(2.0)])


def _temp_ok(t):
    return (not isinstance(t, (bool, str))) and math.isfinite(float(t)) and float(t) > 0


@fuzz
@given(z=arrays(logit_shapes, lo=-50, hi=50), temperature=TEMPS, n_threads=THREADS,
       log=st.booleans())
def test_softmax_log_softmax(z, temperature, n_threads, log):
    TRIED["softmax"] += 1
    fn = distill.log_softmax if log else distill.softmax
    res, exc = attempt(fn, z, temperature, n_threads=n_threads)
    valid = (not _bad_real(z.dtype) and z.ndim in (1, 2) and z.shape[-1] > 0
             and _temp_ok(temperature) and not _expected_thread_error(n_threads))
    if valid:
        assert exc is None, exc
        dt = _result_dtype(z)
        assert res.dtype == dt and res.shape == z.shape
        zz = _reference_values(z).astype(dt).astype(np.float64) / float(temperature)
        with np.errstate(invalid="ignore", over="ignore"):
            want = special.log_softmax(zz, axis=-1) if log else special.softmax(zz, axis=-1)
        # a row with a NaN or an inf is NaN (documented); compare finite rows only
        bad_rows = ~np.isfinite(zz).all(axis=-1)
        if bad_rows.any():
            assert np.isnan(res[bad_rows]).all()
        _close(res[~bad_rows], want[~bad_rows], dt, 10.0 if log else 1.0)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "logits", "temperature", "n_threads")
    _done("softmax")


@fuzz
@given(zs=arrays(st.tuples(st.integers(0, 3), st.integers(0, 4)), lo=-20, hi=20),
       tshape_off=st.sampled_from([0, 0, 0, 1]), temperature=TEMPS,
       hard_weight=st.sampled_from([0.0, 0.3, 1.0, 1.5, -0.1, float("nan")]),
       labels_kind=st.sampled_from(["none", "ok", "ok", "range", "float", "len"]),
       reduction=st.sampled_from(["batchmean", "sum", "none", "mean", "avg"]),
       n_threads=THREADS)
@example(zs=np.array([[1.0, np.nan]]), tshape_off=0, temperature=1.0, hard_weight=0.0,
         labels_kind="none", reduction="sum", n_threads=1)
def test_kd_loss(zs, tshape_off, temperature, hard_weight, labels_kind, reduction, n_threads):
    TRIED["kd_loss"] += 1
    B, C = zs.shape
    zt = np.random.default_rng(7).normal(size=(B, C + tshape_off)) * 3
    labels = {"none": None, "ok": np.arange(B) % max(C, 1), "range": np.full(B, C),
              "float": np.zeros(B), "len": np.zeros(B + 1, dtype=int)}[labels_kind]
    res, exc = attempt(distill.kd_loss, zs, zt, temperature=temperature, labels=labels,
                       hard_weight=hard_weight, reduction=reduction, n_threads=n_threads)
    hw_ok = math.isfinite(hard_weight) and 0 <= hard_weight <= 1
    labels_ok = labels_kind == "ok" or (labels_kind == "none" and hard_weight == 0)
    valid = (not _bad_real(zs.dtype) and B > 0 and C > 0 and tshape_off == 0
             and _temp_ok(temperature) and hw_ok and labels_ok
             and reduction in ("batchmean", "sum", "none")
             and not _expected_thread_error(n_threads))
    finite = valid and np.isfinite(_reference_values(zs)).all()
    if valid and finite:
        assert exc is None, exc
        loss, grad = res
        dt = _result_dtype(zs, zt)
        T = float(temperature)
        s = _reference_values(zs).astype(dt).astype(np.float64)
        t = zt.astype(dt).astype(np.float64)
        pt = special.softmax(t / T, axis=1)
        kl = (pt * (special.log_softmax(t / T, axis=1) - special.log_softmax(s / T, axis=1)))
        row = (1 - hard_weight) * T * T * kl.sum(axis=1)
        if labels is not None and hard_weight > 0:
            row += hard_weight * -special.log_softmax(s, axis=1)[np.arange(B), labels]
        want = {"none": row, "sum": row.sum(), "batchmean": row.mean()}[reduction]
        tol = 2e-3 if dt == np.float32 else 1e-8
        np.testing.assert_allclose(loss, want, rtol=tol, atol=tol * (1 + T * T))
        assert grad.shape == zs.shape and grad.dtype == dt
    else:
        # kd_loss refuses NaN/inf logits (documented), by name
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "student_logits", "teacher_logits", "temperature", "hard_weight",
                     "labels", "reduction", "n_threads")
    _done("kd_loss")


# ---------------------------------------------------------------------------
# effai_fast.hill.fit
# ---------------------------------------------------------------------------

from effai_fast import hill  # noqa: E402


@fuzz
@given(n_curves=st.integers(1, 3), n_doses=st.integers(0, 8),
       rdt=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS),
       special_=st.sampled_from([None, None, "nan", "inf", "negdose"]),
       max_iter=st.sampled_from([50, 1, 0, -5, 2.5]), flat_alpha=st.sampled_from(
           [0.05, None, 1.5, float("nan")]),
       se=st.sampled_from(["hessian", "gauss-newton", "bogus"]), n_threads=THREADS)
def test_hill_fit(n_curves, n_doses, rdt, layout, special_, max_iter, flat_alpha, se,
                  n_threads):
    TRIED["hill.fit"] += 1
    dose = np.geomspace(0.01, 100, n_doses) if n_doses else np.zeros(0)
    rng = np.random.default_rng(8)
    resp = hill.hill(dose, 5, 95, 2.0, 1.2) + rng.normal(0, 1, size=(n_curves, n_doses))
    if special_ == "nan" and n_doses:
        resp[0, 0] = np.nan
    if special_ == "inf" and n_doses:
        resp[-1, -1] = np.inf
    if special_ == "negdose" and n_doses:
        dose = dose.copy()
        dose[0] = -1.0
    resp = _layout(_cast(resp, rdt), layout)
    res, exc = attempt(hill.fit, dose, resp, max_iter=max_iter, flat_alpha=flat_alpha, se=se,
                       n_threads=n_threads)
    inf_seen = special_ == "inf" and rdt.startswith("float")
    valid = (not _bad_real(resp.dtype) and n_doses > 0 and not inf_seen and special_ != "negdose"
             and isinstance(max_iter, int) and max_iter >= 1
             and (flat_alpha is None or 0 <= flat_alpha <= 1) and se != "bogus"
             and not _expected_thread_error(n_threads))
    if valid:
        assert exc is None, exc
        assert len(res) == n_curves and res.ec50.shape == (n_curves,)
        # a fitted curve's prediction is finite wherever it converged
        pred = res.predict(dose)
        assert pred.shape[-1] == n_doses
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "dose", "response", "max_iter", "flat_alpha", "se", "n_threads")
    _done("hill.fit")


# ---------------------------------------------------------------------------
# effai_fast.sparsegrid.SparseGrid(...).evaluate
# ---------------------------------------------------------------------------

from effai_fast.sparsegrid import SparseGrid  # noqa: E402


@fuzz
@given(dim=st.sampled_from([1, 2, 3, 0, -1, 2.0, True]),
       level=st.sampled_from([1, 2, 3, 0, -2, 1.5, 10**30]),
       basis=st.sampled_from(["hat", "modlinear", "cubic"]),
       n=st.integers(0, 6), xdt=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS),
       special_=st.sampled_from([None, None, "nan", "outside"]),
       outside=st.sampled_from(["raise", "clip", "wrap"]), n_threads=THREADS)
@example(dim=2, level=10**30, basis="hat", n=1, xdt="float64", layout="C", special_=None,
         outside="raise", n_threads=1)
@example(dim=10**30, level=1, basis="hat", n=1, xdt="float64", layout="C", special_=None,
         outside="raise", n_threads=1)
def test_sparsegrid_evaluate(dim, level, basis, n, xdt, layout, special_, outside, n_threads):
    TRIED["SparseGrid.evaluate"] += 1
    g, exc = attempt(SparseGrid, dim, level, basis=basis)
    grid_ok = (isinstance(dim, int) and not isinstance(dim, bool) and 1 <= dim < 100
               and isinstance(level, int) and 1 <= level < 100 and basis != "cubic")
    if not grid_ok:
        assert exc is not None
        assert_names(exc, "dim", "level", "basis")
        _done("SparseGrid.evaluate")
        return
    assert exc is None, exc
    f = lambda p: np.sin(p.sum(axis=1)) + 1  # noqa: E731
    g.fit(f(g.points))
    x = np.random.default_rng(9).uniform(0, 1, size=(n, dim))
    if special_ == "nan" and n:
        x[0, 0] = np.nan
    if special_ == "outside" and n:
        x[-1, 0] = 1.5
    xx = _layout(_cast(x, xdt), layout)
    res, exc = attempt(g.evaluate, xx, outside=outside, n_threads=n_threads)
    if _bad_real(xx.dtype):
        nan_seen = bad_outside = False
    else:  # an int/bool cast turns NaN into some integer, in or out of the domain
        xv = _reference_values(xx)
        nan_seen = bool(np.isnan(xv).any())
        bad_outside = outside == "raise" and bool(((xv < 0) | (xv > 1)).any())
    valid = (not _bad_real(xx.dtype) and not nan_seen and not bad_outside
             and outside in ("raise", "clip") and not _expected_thread_error(n_threads))
    if valid:
        assert exc is None, exc
        assert res.shape == (n,)
        # reference: the interpolant is exact at its own grid points; between them it
        # is a piecewise-linear interpolant of f, so it stays within f's range [0, 2]
        u = np.clip(_reference_values(xx), 0, 1)
        assert np.all(np.isfinite(res))
        if basis == "hat":  # zero-boundary basis: bounded by the nodal values' range
            assert np.all(res >= -1e-3) and np.all(res <= 2 + 1e-3)
        pts = g.points[:3]
        _close(g.evaluate(pts), f(pts), np.float64)
        assert u.shape == (n, dim)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "x", "outside", "n_threads")
    _done("SparseGrid.evaluate")


# ---------------------------------------------------------------------------
# effai_fast.additive.AdditiveNetwork.predict (fitted tiny model)
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def additive_model():
    from effai_fast.additive import AdditiveNetwork
    rng = np.random.default_rng(10)
    X = rng.uniform(-1, 1, size=(80, 3))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2 - 0.5 * X[:, 2]
    return AdditiveNetwork(hidden=(4,), max_iter=20, random_state=0, n_threads=1).fit(X, y)


@fuzz
@given(X=arrays(st.tuples(st.integers(0, 4), st.integers(0, 4)), lo=-1, hi=1))
def test_additive_predict(additive_model, X):
    TRIED["AdditiveNetwork.predict"] += 1
    res, exc = attempt(additive_model.predict, X)
    Xv = _reference_values(X) if X.dtype.kind not in "c" else None
    valid = (X.dtype.kind != "c" and X.shape[0] > 0 and X.shape[1] == 3
             and np.isfinite(Xv).all())
    if valid:
        assert exc is None, exc
        assert res.shape == (X.shape[0],)
        dt = np.float32 if X.dtype in (np.float16, np.float32) else np.float64
        # reference: the same model on a clean C-contiguous float array, row by row
        want = np.array([additive_model.predict(np.ascontiguousarray(Xv[i:i + 1], dtype=dt))[0]
                         for i in range(X.shape[0])])
        _close(res, want, dt)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "X")
    _done("AdditiveNetwork.predict")


# ---------------------------------------------------------------------------
# effai_fast.surrogate.screen / GaussianProcess.predict
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gp_model():
    from effai_fast.surrogate import GaussianProcess
    rng = np.random.default_rng(11)
    X = rng.uniform(0, 1, size=(25, 2))
    y = np.sin(3 * X[:, 0]) + X[:, 1]
    return GaussianProcess(optimizer=None, length_scale=0.3, n_threads=1).fit(X, y)


@fuzz
@given(X=arrays(st.tuples(st.integers(0, 5), st.integers(1, 3)), lo=0, hi=1),
       top_k=st.sampled_from([1, 3, 100, 0, -1, 2.0, True, 10**30]),
       chunk_size=st.sampled_from([2, 65536, 0, -3, 1.5]),
       maximize=st.booleans(), n_threads=THREADS)
def test_surrogate_screen_and_gp(gp_model, X, top_k, chunk_size, maximize, n_threads):
    TRIED["surrogate.screen"] += 1
    from effai_fast.surrogate import screen
    ok_x = (X.dtype.kind not in "cO" and X.shape[1] == 2
            and np.isfinite(_reference_values(X)).all())
    pm, exc = attempt(gp_model.predict, X, return_std=True, n_threads=n_threads)
    if ok_x and not _expected_thread_error(n_threads):
        assert exc is None, exc
        mean, std = pm
        # reference: the GP posterior mean from scipy's dense algebra on the training data
        want = gp_model.predict(np.ascontiguousarray(_reference_values(X)))
        _close(mean, want, np.float64)
        assert np.all(std >= 0)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "X", "n_threads")
    res, exc = attempt(screen, gp_model, X, top_k=top_k, maximize=maximize,
                       chunk_size=chunk_size, n_threads=n_threads, progress=False)
    ok_k = isinstance(top_k, int) and not isinstance(top_k, bool) and top_k >= 1
    ok_c = isinstance(chunk_size, int) and chunk_size >= 1
    if ok_x and ok_k and ok_c and X.shape[0] > 0 and not _expected_thread_error(n_threads):
        assert exc is None, exc
        k = min(top_k, X.shape[0])
        mean = gp_model.predict(np.ascontiguousarray(_reference_values(X)))
        order = np.sort(mean)[::-1] if maximize else np.sort(mean)
        _close(res.mean if res.mean is not None else res.value, order[:k], np.float64)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "candidates", "top_k", "chunk_size", "X", "n_threads")
    _done("surrogate.screen")


# ---------------------------------------------------------------------------
# effai_fast.ad.trace(...).value_and_grad
# ---------------------------------------------------------------------------

_TAPE = None


def _tape():
    global _TAPE
    if _TAPE is None:
        from effai_fast import ad
        _TAPE = ad.trace(lambda x, p: p[0] * np.exp(-p[1] * x[0]) + x[1] ** 2, n_inputs=2,
                         n_params=2)
    return _TAPE


@fuzz
@given(X=arrays(st.one_of(st.tuples(st.integers(0, 6), st.integers(1, 3)),
                          st.tuples(st.integers(0, 4))), lo=-2, hi=2),
       params=st.sampled_from([np.array([2.0, 0.5]), np.array([1, 2]), np.array([1.0]),
                               np.array([1 + 1j, 2]), None, np.array([2.0, 0.5])[::-1]]),
       wrt=st.sampled_from(["inputs", "params", "all", "x"]), n_threads=THREADS)
@example(X=_layout(np.zeros((0, 2)), "readonly"), params=np.array([2.0, 0.5]), wrt="inputs",
         n_threads=None)
@example(X=_layout(np.ones((3, 2)), "readonly"), params=_layout(np.array([2.0, 0.5]), "readonly"),
         wrt="all", n_threads=1)
@example(X=np.array([[-2147483648, -1]], dtype=np.int32), params=np.array([2.0, 0.5]),
         wrt="inputs", n_threads=None)
def test_ad_value_and_grad(X, params, wrt, n_threads):
    TRIED["ad.value_and_grad"] += 1
    tape = _tape()
    res, exc = attempt(tape.value_and_grad, X, params, wrt, n_threads=n_threads)
    ok_p = params is not None and params.shape == (2,) and params.dtype.kind != "c"
    valid = (X.dtype.kind not in "cO" and X.ndim == 2 and X.shape[1] == 2 and ok_p
             and wrt in ("inputs", "params", "all") and not _expected_thread_error(n_threads))
    if valid:
        Xv = _reference_values(X)
        dt = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
        finite = np.isfinite(Xv).all()
        if not finite:  # NaN/inf propagate (values), or a named error
            if exc is not None:
                assert_names(exc, "X")
            _done("ad.value_and_grad")
            return
        assert exc is None, exc
        p = params.astype(np.float64)
        with np.errstate(all="ignore"):  # an int cast of NaN is -2**31: exp overflows
            v = p[0] * np.exp(-p[1] * Xv[:, 0]) + Xv[:, 1] ** 2
            gx = np.stack([-p[1] * p[0] * np.exp(-p[1] * Xv[:, 0]), 2 * Xv[:, 1]], axis=1)
            gp = np.array([np.exp(-p[1] * Xv[:, 0]).sum(),
                           (-Xv[:, 0] * p[0] * np.exp(-p[1] * Xv[:, 0])).sum()])
        val, g = res
        _close(val, v, dt, 10)
        if wrt == "inputs":
            _close(g, gx, dt, 10)
        elif wrt == "params":
            _close(g, gp, dt, 10 * (1 + len(Xv)))
        else:
            _close(g[0], gx, dt, 10)
            _close(g[1], gp, dt, 10 * (1 + len(Xv)))
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "X", "params", "wrt", "n_threads")
    _done("ad.value_and_grad")


# ---------------------------------------------------------------------------
# effai_fast.mobilenet.cost / optimal_multipliers
# ---------------------------------------------------------------------------

from effai_fast import mobilenet  # noqa: E402


@fuzz
@given(alpha=st.sampled_from([1.0, 0.5, 0.25, 1e-3, 0.0, -0.5, 1.5, float("nan"), "1", True,
                              np.float32(0.75)]),
       resolution=st.sampled_from([224, 128, 1, 0, -32, 160.0, 2**20, True]),
       num_classes=st.sampled_from([1000, 1, 0, -1, 10.5]))
@example(alpha=float("nan"), resolution=224, num_classes=1000)
def test_mobilenet_cost(alpha, resolution, num_classes):
    TRIED["mobilenet.cost"] += 1
    res, exc = attempt(mobilenet.cost, alpha, resolution, num_classes)
    valid = (not isinstance(alpha, (bool, str)) and math.isfinite(float(alpha))
             and 0 < alpha <= 1 and isinstance(resolution, int)
             and not isinstance(resolution, bool)
             and resolution >= 1 and isinstance(num_classes, int) and num_classes >= 1)
    if valid:
        assert exc is None, exc
        assert res.macs >= 0 and res.params > 0
        # the classifier alone: (round(1024 alpha) + 1) * num_classes parameters
        c = max(1, math.floor(1024 * float(alpha) + 0.5))
        assert res.params >= c * num_classes
        if alpha == 1.0 and resolution == 224 and num_classes == 1000:
            assert (res.macs, res.params) == (568740352, 4231976)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "alpha", "resolution", "num_classes")
    _done("mobilenet.cost")


@fuzz
@given(budget=st.sampled_from([125e6, 300e6, 50e6, 1e3, 1e12, 0.0, -1.0, float("nan"),
                               float("inf"), "1e8"]),
       method=st.sampled_from(["continuous", "menu", "ideal", "grid"]),
       alpha_range=st.sampled_from([(0.25, 1.0), (0.5, 0.5), (0.0, 1.0), (1.0, 0.5), (0.5,),
                                    (0.25, 2.0), (float("nan"), 1.0)]))
def test_optimal_multipliers(budget, method, alpha_range):
    TRIED["mobilenet.optimal_multipliers"] += 1
    res, exc = attempt(mobilenet.optimal_multipliers, budget, method=method,
                       alpha_range=alpha_range)
    if exc is None:
        assert isinstance(budget, float) and 0 < budget < math.inf
        assert method in ("continuous", "menu", "ideal")
        assert 0 < res.alpha <= 1 and 0 < res.rho <= 1
        if method != "ideal":  # the exact count respects the budget
            assert res.macs <= budget * (1 + 1e-9)
            if method == "continuous":
                exact = mobilenet.cost(res.alpha, max(1, round(224 * res.rho))).macs
                assert exact <= budget * 1.02
    else:
        assert_names(exc, "budget", "method", "alpha_range", "rho_range")
    _done("mobilenet.optimal_multipliers")


# ---------------------------------------------------------------------------
# convolution VJPs (pointwise, dense)
# ---------------------------------------------------------------------------

@fuzz
@given(x=arrays(pw_x), co=st.integers(0, 3), activation=ACTS, gdt=st.sampled_from(DTYPES),
       gshape_off=st.sampled_from([0, 0, 0, 1]), need_input_grad=st.booleans(),
       give_output=st.sampled_from([True, True, False]), n_threads=THREADS)
def test_pointwise_conv2d_vjp(x, co, activation, gdt, gshape_off, need_input_grad,
                              give_output, n_threads):
    TRIED["pointwise_conv2d_vjp"] += 1
    C = x.shape[3]
    w = np.random.default_rng(8).normal(size=(C, co))
    valid = (not _bad_real(x.dtype) and activation in (None, "relu", "relu6")
             and not _expected_thread_error(n_threads))
    y = (ref.pointwise(_reference_values(x), w, None, activation)
         if valid and give_output else None)
    gshape = x.shape[:-1] + (co + gshape_off,)
    g = _cast(np.random.default_rng(9).normal(size=gshape), gdt)
    res, exc = attempt(F.pointwise_conv2d_vjp, x, w, g, activation=activation, output=y,
                       need_input_grad=need_input_grad, n_threads=n_threads)
    ok = (valid and gshape_off == 0 and not _bad_real(g.dtype)
          and (activation is None or give_output))
    if exc is None:
        assert ok, "invalid call returned a result"
        dt = _result_dtype(x, w, g)
        gx, gw, gb = ref.pointwise_vjp(_reference_values(x).astype(dt), w.astype(dt),
                                       g.astype(dt), activation, y)
        scale = 1.0 + np.nanmax(np.abs(gw), initial=0.0)
        if need_input_grad:
            assert res[0].shape == x.shape and res[0].dtype == dt
            _close(res[0], gx, dt, scale)
        else:
            assert res[0] is None
        assert res[1].shape == w.shape and res[2].shape == (co,)
        _close(res[1], gw, dt, scale)
        _close(res[2], gb, dt, scale)
    else:
        assert_names(exc, "x", "weight", "grad_out", "activation", "n_threads", "output")
        if ok and x.size and w.size:
            pytest.fail(f"valid call refused: {exc}")
    _done("pointwise_conv2d_vjp")


@fuzz
@given(x=arrays(x4, dtypes=["float64", "float32", "float16", "int32", "complex128", "object"]),
       kh=st.integers(1, 3), kw=st.integers(1, 3), co=st.integers(1, 3), stride=STRIDES,
       padding=PADDINGS, dilation=DILATIONS, activation=ACTS,
       gdt=st.sampled_from(["float64", "float32", "bool", "complex128", "object"]),
       gshape_off=st.sampled_from([0, 0, 0, 1]), need_input_grad=st.booleans(),
       n_threads=THREADS)
def test_conv2d_vjp(x, kh, kw, co, stride, padding, dilation, activation, gdt, gshape_off,
                    need_input_grad, n_threads):
    w = np.random.default_rng(10).normal(size=(kh, kw, x.shape[3], co))
    _check_spatial_vjp("conv2d_vjp", F.conv2d_vjp, ref.conv2d, ref.conv2d_vjp, x, w, 11, kh,
                       kw, stride, padding, dilation, activation, gdt, gshape_off,
                       need_input_grad, n_threads)


# ---------------------------------------------------------------------------
# out= buffers: the right buffer is used and returned, any other is refused by name
# ---------------------------------------------------------------------------

OUT_KINDS = ["none", "ok", "ok", "shape", "dtype", "strided", "fortran", "readonly",
             "alias", "list"]


def _make_out(kind, shape, dtype, alias_with):
    """An out= argument of the given kind (``alias`` views ``alias_with``'s memory)."""
    dtype = np.dtype(dtype)
    if kind == "none":
        return None
    if kind == "ok":
        return np.full(shape, np.nan, dtype)
    if kind == "shape":
        return np.full(tuple(shape[:-1]) + (shape[-1] + 1,), np.nan, dtype)
    if kind == "dtype":
        return np.full(shape, np.nan, np.float32 if dtype == np.float64 else np.float64)
    if kind == "strided":
        big = np.full(tuple(shape[:-1]) + (2 * shape[-1] + 2,), np.nan, dtype)
        return big[..., 1:2 * shape[-1] + 1:2]
    if kind == "fortran":
        return np.asfortranarray(np.full(shape, np.nan, dtype))
    if kind == "readonly":
        a = np.full(shape, np.nan, dtype)
        a.flags.writeable = False
        return a
    if kind == "alias":
        if alias_with.dtype == dtype and alias_with.shape == tuple(shape):
            return alias_with
        return np.full(shape, np.nan, dtype)  # cannot alias: acts as "ok"
    return np.full(shape, np.nan, dtype).tolist()


def _out_must_work(kind, out, alias_with):
    """Whether this out= argument must be accepted (arrays here are never empty)."""
    if kind in ("none", "ok"):
        return True
    if kind == "alias":
        return out is not alias_with
    if kind in ("strided", "fortran"):
        return out.flags.c_contiguous          # e.g. a 1-wide last axis stays contiguous
    return False                               # shape, dtype, readonly, list


def _check_out_call(fn, kind, out, alias_with, *args, out_names=("out",), alias_ok=False,
                    **kwargs):
    res, exc = attempt(fn, *args, out=out, **kwargs)
    must = _out_must_work(kind, out, alias_with) or (alias_ok and kind == "alias")
    if exc is None:
        assert must, f"out= of kind {kind} was accepted"
        return res
    assert_names(exc, *out_names)
    assert not must, f"a valid out= ({kind}) was refused: {exc}"
    return None


@fuzz
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
                       st.integers(1, 4)),
       co=st.integers(1, 3), dt=st.sampled_from(["float32", "float64"]),
       kind=st.sampled_from(OUT_KINDS), fn=st.sampled_from(["pointwise", "depthwise", "conv2d",
                                                             "separable"]))
def test_conv_out_buffers(shape, co, dt, kind, fn):
    TRIED["conv out="] += 1
    rng = np.random.default_rng(12)
    x = rng.normal(size=shape).astype(dt)
    C = shape[3]
    if fn == "pointwise":
        w = rng.normal(size=(C, co)).astype(dt)
        call, args, oshape = F.pointwise_conv2d, (x, w), shape[:3] + (co,)
        want = ref.pointwise(x, w)
    elif fn == "depthwise":
        w = rng.normal(size=(3, 3, C)).astype(dt)
        call, args, oshape = F.depthwise_conv2d, (x, w), shape
        want = ref.depthwise(x, w)
    elif fn == "conv2d":
        w = rng.normal(size=(3, 3, C, co)).astype(dt)
        call, args, oshape = F.conv2d, (x, w), shape[:3] + (co,)
        want = ref.conv2d(x, w)
    else:
        dw, pw = rng.normal(size=(3, 3, C)).astype(dt), rng.normal(size=(C, co)).astype(dt)
        call, args, oshape = F.depthwise_separable_conv2d, (x, dw, pw), shape[:3] + (co,)
        want = ref.pointwise(ref.depthwise(x, dw), pw)
    alias_with = x if fn == "depthwise" else np.zeros(0)
    out = _make_out(kind, oshape, dt, alias_with)
    res = _check_out_call(call, kind, out, alias_with, *args, n_threads=1)
    if res is not None:
        if kind in ("ok", "alias", "strided", "fortran"):
            assert res is out
        _close(res, want, np.dtype(dt), 10.0)
    _done("conv out=")


@fuzz
@given(shape=st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
                       st.integers(1, 4)),
       co=st.integers(1, 3), dt=st.sampled_from(["float32", "float64"]),
       slot=st.integers(0, 2), kind=st.sampled_from(OUT_KINDS + ["same", "tuple2"]),
       fn=st.sampled_from(["pointwise", "depthwise", "conv2d"]))
def test_vjp_out_buffers(shape, co, dt, slot, kind, fn):
    TRIED["vjp out="] += 1
    rng = np.random.default_rng(13)
    x = rng.normal(size=shape).astype(dt)
    C = shape[3]
    if fn == "pointwise":
        w = rng.normal(size=(C, co)).astype(dt)
        call, oshape = F.pointwise_conv2d_vjp, shape[:3] + (co,)
        g = rng.normal(size=oshape).astype(dt)
        want = ref.pointwise_vjp(x, w, g)
    elif fn == "depthwise":
        w = rng.normal(size=(3, 3, C)).astype(dt)
        call, oshape = F.depthwise_conv2d_vjp, shape
        g = rng.normal(size=oshape).astype(dt)
        want = ref.depthwise_vjp(x, w, g)
    else:
        w = rng.normal(size=(3, 3, C, co)).astype(dt)
        call, oshape = F.conv2d_vjp, shape[:3] + (co,)
        g = rng.normal(size=oshape).astype(dt)
        want = ref.conv2d_vjp(x, w, g)
    shapes = (x.shape, w.shape, w.shape[-1:])
    bufs = [np.full(s, np.nan, dt) for s in shapes]
    name = ("out[0]", "out[1]", "out[2]")[slot]
    if kind == "same":        # two slots on one buffer (only when the shapes agree)
        other = (slot + 1) % 3
        if shapes[other] == shapes[slot]:
            bufs[slot] = bufs[other]
        out, must = tuple(bufs), shapes[other] != shapes[slot]
    elif kind == "tuple2":
        out, must = tuple(bufs[:2]), False
        name = "out"
    else:
        alias_with = {0: x, 1: w, 2: np.zeros(0)}[slot]
        bufs[slot] = _make_out(kind, shapes[slot], dt, alias_with)
        out = tuple(bufs)
        if kind == "alias":
            must = bufs[slot] is not alias_with
        elif kind in ("strided", "fortran"):
            must = bufs[slot].flags.c_contiguous
        else:
            must = kind in ("none", "ok")
    res, exc = attempt(call, x, w, g, out=out, n_threads=1)
    if exc is None:
        assert must, f"out= with {kind} in slot {slot} was accepted"
        for i in range(3):
            if out[i] is not None:
                assert res[i] is out[i]
            _close(res[i], want[i], np.dtype(dt), 10.0 * (1 + np.abs(want[i]).max()))
    else:
        assert not must, f"valid out= refused: {exc}"
        assert_names(exc, name, "out", "out[0] (grad_x)", "out[1] (grad_weight)",
                     "out[2] (grad_bias)")
    _done("vjp out=")


@fuzz
@given(shape=st.one_of(st.tuples(st.integers(1, 4), st.integers(1, 5)),
                       st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(1, 2),
                                 st.integers(1, 3))),
       dt=st.sampled_from(["float32", "float64"]), kind=st.sampled_from(OUT_KINDS),
       fn=st.sampled_from(["relu", "relu6", "global_avg_pool", "linear", "softmax",
                           "log_softmax", "cross_entropy", "kd_loss"]))
def test_dense_out_buffers(shape, dt, kind, fn):
    TRIED["dense out="] += 1
    rng = np.random.default_rng(14)
    x = (rng.normal(size=shape) * 4).astype(dt)
    x2 = x.reshape(shape[0], -1)
    if fn in ("relu", "relu6"):
        call = getattr(F, fn)
        args, oshape = (x,), x.shape
        want = np.clip(x, 0, 6 if fn == "relu6" else None)
        alias_with = x
    elif fn == "global_avg_pool":
        x4 = x if x.ndim == 4 else x.reshape(shape[0], 1, 1, -1)
        call, args, oshape = F.global_avg_pool, (x4,), (x4.shape[0], x4.shape[3])
        want = x4.astype(np.float64).mean(axis=(1, 2))
        alias_with = np.zeros(0)
    elif fn == "linear":
        w = rng.normal(size=(x2.shape[1], 3)).astype(dt)
        call, args, oshape = F.linear, (x2, w), (x2.shape[0], 3)
        want = x2.astype(np.float64) @ w
        alias_with = np.zeros(0)
    elif fn in ("softmax", "log_softmax"):
        call = getattr(distill, fn)
        args, oshape = (x2,), x2.shape
        want = getattr(special, fn)(x2.astype(np.float64), axis=1)
        alias_with = x2
    elif fn == "cross_entropy":
        labels = np.arange(x2.shape[0]) % x2.shape[1]
        call, args, oshape = distill.cross_entropy, (x2, labels), x2.shape
        p = special.softmax(x2.astype(np.float64), axis=1)
        p[np.arange(len(labels)), labels] -= 1
        want = p / x2.shape[0]
        alias_with = x2
    else:
        zt = rng.normal(size=x2.shape).astype(dt)
        call, args, oshape = distill.kd_loss, (x2, zt), x2.shape
        T = 4.0
        want = T * (special.softmax(x2 / T, axis=1) - special.softmax(zt / T, axis=1)) \
            / x2.shape[0]
        alias_with = x2
    out = _make_out(kind, oshape, dt, alias_with)
    kw = {"temperature": 4.0} if fn == "kd_loss" else {}
    # distill's softmax / log_softmax document out=logits (in place) as allowed
    res = _check_out_call(call, kind, out, alias_with, *args, **kw,
                          out_names=("out", "x", "logits"),
                          alias_ok=fn in ("softmax", "log_softmax"))
    if res is not None:
        got = res[1] if fn in ("cross_entropy", "kd_loss") else res
        if kind in ("ok", "strided", "fortran") or (kind == "alias" and out is not None):
            assert got is out
        _close(got, want, np.dtype(dt), 10.0)
    _done("dense out=")


# ---------------------------------------------------------------------------
# nn softmax cross-entropy and distill.cross_entropy
# ---------------------------------------------------------------------------

@fuzz
@given(z=arrays(st.one_of(st.tuples(st.integers(0, 4), st.integers(0, 5)),
                          st.tuples(st.integers(0, 3)),
                          st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 2))),
                lo=-30, hi=30),
       target_kind=st.sampled_from(["labels", "labels", "probs", "range", "negative", "float",
                                    "bool", "len", "probs_shape", "probs_complex",
                                    "scalar"]),
       reduction=st.sampled_from(["mean", "sum", "none", "batchmean", 3]),
       return_grad=st.booleans(), n_threads=THREADS)
def test_nn_softmax_cross_entropy(z, target_kind, reduction, return_grad, n_threads):
    from effai_fast.nn.functional import softmax_cross_entropy

    TRIED["nn.softmax_cross_entropy"] += 1
    N = z.shape[0] if z.ndim else 0
    K = z.shape[1] if z.ndim == 2 else 1
    rng = np.random.default_rng(15)
    probs = special.softmax(rng.normal(size=(N, K)), axis=1) if N * K else np.zeros((N, K))
    target = {"labels": np.arange(N) % max(K, 1), "probs": probs, "range": np.full(N, K),
              "negative": np.full(N, -1), "float": np.zeros(N), "bool": np.zeros(N, bool),
              "len": np.zeros(N + 1, int), "probs_shape": probs[:, :-1] if K > 1 else
              np.zeros((N, K + 1)), "probs_complex": probs.astype(complex),
              "scalar": np.int64(0)}[target_kind]
    res, exc = attempt(softmax_cross_entropy, z, target, reduction=reduction,
                       return_grad=return_grad, n_threads=n_threads)
    valid = (not _bad_real(z.dtype) and z.ndim == 2 and z.size > 0
             and target_kind in ("labels", "probs")
             and reduction in ("mean", "sum", "none") and not _expected_thread_error(n_threads))
    if valid:
        assert exc is None, exc
        loss, grad = res
        dt = _result_dtype(z)
        zz = _reference_values(z).astype(dt).astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            logp = special.log_softmax(zz, axis=1)
            p = np.exp(logp)
        t = np.eye(K)[target] if target_kind == "labels" else probs
        row = -(t * logp).sum(axis=1)
        want = {"none": row, "sum": row.sum(), "mean": row.mean()}[reduction]
        good = np.isfinite(zz).all()
        if good:
            np.testing.assert_allclose(loss, want, rtol=2e-3 if dt == np.float32 else 1e-9,
                                       atol=1e-5)
        if return_grad:
            assert grad.shape == z.shape and grad.dtype == dt
            if good:
                scale = 1.0 / N if reduction == "mean" else 1.0
                _close(grad, (p - t) * scale, dt)
        else:
            assert grad is None
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "logits", "target", "reduction", "n_threads")
    _done("nn.softmax_cross_entropy")


@fuzz
@given(z=arrays(logit_shapes, lo=-30, hi=30),
       labels_kind=st.sampled_from(["ok", "ok", "range", "negative", "float", "len", "none",
                                    "2d", "list"]),
       reduction=st.sampled_from(["batchmean", "mean", "sum", "none", "avg", None]),
       n_threads=THREADS)
def test_distill_cross_entropy(z, labels_kind, reduction, n_threads):
    TRIED["distill.cross_entropy"] += 1
    B = z.shape[0] if z.ndim == 2 else 0
    C = z.shape[1] if z.ndim == 2 else 1
    labels = {"ok": np.arange(B) % max(C, 1), "range": np.full(B, C),
              "negative": np.full(B, -1), "float": np.zeros(B) + 0.5,
              "len": np.zeros(B + 1, int), "none": None, "2d": np.zeros((B, 1), int),
              "list": [i % max(C, 1) for i in range(B)]}[labels_kind]
    res, exc = attempt(distill.cross_entropy, z, labels, reduction=reduction,
                       n_threads=n_threads)
    valid = (not _bad_real(z.dtype) and z.ndim == 2 and B > 0 and C > 0
             and labels_kind in ("ok", "list")
             and reduction in ("batchmean", "mean", "sum", "none")
             and not _expected_thread_error(n_threads))
    finite = valid and np.isfinite(_reference_values(z)).all()
    if valid and finite:
        assert exc is None, exc
        loss, grad = res
        dt = _result_dtype(z)
        s = _reference_values(z).astype(dt).astype(np.float64)
        lab = np.asarray(labels)
        row = -special.log_softmax(s, axis=1)[np.arange(B), lab]
        want = {"none": row, "sum": row.sum(), "batchmean": row.mean(),
                "mean": row.mean()}[reduction]
        tol = 2e-3 if dt == np.float32 else 1e-9
        np.testing.assert_allclose(loss, want, rtol=tol, atol=tol)
        p = special.softmax(s, axis=1)
        p[np.arange(B), lab] -= 1
        _close(grad, p / (B if reduction in ("batchmean", "mean") else 1), dt)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "logits", "labels", "reduction", "n_threads")
    _done("distill.cross_entropy")


# ---------------------------------------------------------------------------
# other public entry points: activations, pooling, linear, n_points, acquisitions
# ---------------------------------------------------------------------------

@fuzz
@given(x=arrays(st.one_of(st.tuples(st.integers(0, 5)),
                          st.tuples(st.integers(0, 2), st.integers(0, 2), st.integers(0, 2),
                                    st.integers(0, 3)))),
       fn=st.sampled_from(["relu", "relu6", "global_avg_pool", "activation_vjp"]),
       activation=ACTS, n_threads=THREADS)
def test_dense_activations_and_pool(x, fn, activation, n_threads):
    TRIED["nn.functional dense"] += 1
    ok_dtype = not _bad_real(x.dtype)
    if fn in ("relu", "relu6"):
        res, exc = attempt(getattr(F, fn), x, n_threads=n_threads)
        valid = ok_dtype and not _expected_thread_error(n_threads)
        if valid:
            assert exc is None, exc
            xv = _reference_values(x)
            with np.errstate(invalid="ignore"):
                want = np.where(np.isnan(xv), np.nan,
                                np.clip(xv, 0, 6 if fn == "relu6" else None))
            _close(res, want, _result_dtype(x))
    elif fn == "global_avg_pool":
        res, exc = attempt(F.global_avg_pool, x, n_threads=n_threads)
        valid = (ok_dtype and x.ndim == 4 and x.shape[1] * x.shape[2] > 0
                 and not _expected_thread_error(n_threads))
        if valid and exc is None:
            with np.errstate(invalid="ignore"):
                _close(res, _reference_values(x).mean(axis=(1, 2)), _result_dtype(x), 10.0)
        elif valid:
            # an empty batch or zero channels may be refused, by name
            assert x.shape[0] == 0 or x.shape[3] == 0, exc
    else:
        y = np.maximum(np.nan_to_num(_reference_values(x)), 0) if ok_dtype else x
        g = np.ones(np.shape(x))
        res, exc = attempt(F.activation_vjp, y, g, activation, n_threads=n_threads)
        valid = (ok_dtype and activation in (None, "relu", "relu6")
                 and not _expected_thread_error(n_threads))
        if valid:
            assert exc is None, exc
            if activation is None:
                want = g
            else:
                hi = 6.0 if activation == "relu6" else np.inf
                want = ((y > 0) & (y < hi)).astype(float)
            _close(res, want, _result_dtype(y, g))
    if not valid:
        assert exc is not None, "invalid call returned a result"
    if exc is not None:
        assert_names(exc, "x", "y", "grad_out", "activation", "n_threads")
    _done("nn.functional dense")


@fuzz
@given(x=arrays(st.one_of(st.tuples(st.integers(0, 4), st.integers(0, 4)),
                          st.tuples(st.integers(0, 4)))),
       fin_off=st.sampled_from([0, 0, 1]), fout=st.integers(0, 3), use_bias=st.booleans(),
       wdt=st.sampled_from(DTYPES))
def test_linear(x, fin_off, fout, use_bias, wdt):
    TRIED["nn.linear"] += 1
    fin = x.shape[-1] if x.ndim == 2 else 1
    w = _cast(np.random.default_rng(16).normal(size=(fin + fin_off, fout)), wdt)
    b = np.linspace(-1, 1, fout) if use_bias else None
    res, exc = attempt(F.linear, x, w, b)
    valid = (not _bad_real(x.dtype) and not _bad_real(w.dtype) and x.ndim == 2
             and fin_off == 0)
    if exc is None:
        assert valid, "invalid call returned a result"
        want = _reference_values(x) @ _reference_values(w)
        if b is not None:
            want = want + b
        _close(res, want, _result_dtype(x, w), 10.0)
    else:
        assert_names(exc, "x", "weight", "bias")
        if valid and x.size and w.size:
            pytest.fail(f"valid call refused: {exc}")
    _done("nn.linear")


from effai_fast import sparsegrid  # noqa: E402


@fuzz
@given(dim=st.sampled_from([1, 2, 3, 8, 40, 10**6, 10**30, 0, -1, 2.0, "3", True, None]),
       level=st.sampled_from([1, 2, 3, 7, 30, 10**5, 10**30, 0, -2, 1.5, "2", True]),
       boundary=st.booleans())
def test_sparsegrid_n_points(dim, level, boundary):
    TRIED["sparsegrid.n_points"] += 1
    res, exc = attempt(sparsegrid.n_points, dim, level, boundary)

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    valid = is_int(dim) and is_int(level) and dim >= 1 and level >= 1
    if exc is None:
        assert valid and isinstance(res, int) and res >= 1
        if level == 1:
            assert res == (3**dim if boundary else 1)
        if dim <= 8 and level <= 7:
            direct = sum(2**(s - dim) * math.comb(s - 1, dim - 1)
                         for s in range(dim, level + dim))
            assert res >= direct and (boundary or res == direct)
    else:
        assert_names(exc, "dim", "level")
    _done("sparsegrid.n_points")


from effai_fast import surrogate  # noqa: E402


@fuzz
@given(mu=arrays(st.tuples(st.integers(0, 4))), sd_kind=st.sampled_from(
           ["ok", "ok", "zero", "negative", "nan", "len", "scalar"]),
       best=st.sampled_from([0.0, -1.5, float("nan"), float("inf"), "0", None]),
       xi=st.sampled_from([0.0, 0.01, -0.1, float("nan")]), fn=st.sampled_from(["ei", "ucb"]),
       beta=st.sampled_from([2.0, 0.0, -1.0, float("inf")]))
def test_acquisitions(mu, sd_kind, best, xi, fn, beta):
    TRIED["surrogate.acquisition"] += 1
    n = mu.shape[0]
    sd = {"ok": np.linspace(0.1, 1, n), "zero": np.zeros(n), "negative": -np.ones(n),
          "nan": np.full(n, np.nan), "len": np.ones(n + 1), "scalar": 0.5}[sd_kind]
    if fn == "ei":
        res, exc = attempt(surrogate.expected_improvement, mu, sd, best, xi=xi)
    else:
        res, exc = attempt(surrogate.upper_confidence_bound, mu, sd, beta=beta)
    if exc is None:
        res = np.asarray(res)
        assert res.shape == (n,) or (n == 0 and res.size == 0)
        finite_in = np.isfinite(_reference_values(mu)).all() and sd_kind in ("ok", "zero")
        if fn == "ei" and finite_in:
            assert (res >= 0).all() or np.isnan(res).any()
    else:
        assert_names(exc, "mean", "std", "best", "xi", "beta")
    _done("surrogate.acquisition")


# ---------------------------------------------------------------------------
# effai_fast.ad function transforms on Rosenbrock (grad, value_and_grad, jvp, vjp,
# jacobian, hessian, hvp): one transform object per kind, reused across examples, so
# the per-shape plan cache and the compiled float64 fast path are exercised too
# ---------------------------------------------------------------------------

def _rosen(x):
    return np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)


def _rosen_ref(x):
    """Value and analytic gradient (Rosenbrock along axis 0, any rank)."""
    a, b = x[:-1], x[1:]
    val = np.sum(100 * (b - a ** 2) ** 2 + (1 - a) ** 2)
    g = np.zeros_like(x)
    g[:-1] += -400 * a * (b - a ** 2) - 2 * (1 - a)
    g[1:] += 200 * (b - a ** 2)
    return val, g


def _rosen_hess_ref(x, h=1e-4):
    """Central differences of the analytic gradient (cubic: error ~400 h**2)."""
    n = x.size
    H = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = h
        H[:, j] = ((_rosen_ref(x + e.reshape(x.shape))[1]
                    - _rosen_ref(x - e.reshape(x.shape))[1]) / (2 * h)).ravel()
    return H.reshape(x.shape + x.shape)


_AD_FNS: dict = {}


def _ad_fn(kind):
    from effai_fast import ad
    if kind not in _AD_FNS:
        _AD_FNS[kind] = {"grad": ad.grad, "value_and_grad": ad.value_and_grad,
                         "jacobian": ad.jacobian, "hessian": ad.hessian,
                         "hvp": ad.hvp}[kind](_rosen)
    return _AD_FNS[kind]


@fuzz
@given(x=arrays(st.one_of(st.tuples(st.integers(0, 5)), st.tuples(st.integers(0, 5)),
                          st.tuples(st.integers(0, 2), st.integers(0, 3)), st.just(())),
                lo=-2, hi=2),
       kind=st.sampled_from(["grad", "value_and_grad", "jacobian", "hessian", "hvp", "jvp",
                             "vjp"]),
       aux=st.sampled_from(["ok", "ok", "ok", "shape", "complex", "list", "int"]),
       as_list=st.sampled_from([False, False, False, True]))
@example(x=np.linspace(-1, 1, 3)[::-1], kind="grad", aux="ok", as_list=False)
@example(x=np.linspace(-1, 1, 3), kind="value_and_grad", aux="ok", as_list=True)
def test_ad_transforms(x, kind, aux, as_list):
    TRIED["ad.transforms"] += 1
    from effai_fast import ad
    arg = x.tolist() if as_list and x.ndim and x.size else x
    shape = np.shape(arg)
    v = {"ok": np.linspace(-1, 1, x.size).reshape(shape), "shape": np.ones(x.size + 1),
         "complex": np.ones(shape, complex),
         "list": np.ones(shape).tolist() if x.size else np.ones(shape),
         "int": np.ones(shape, int)}[aux]
    ct = {"ok": 1.5, "shape": np.ones(2), "complex": 1 + 1j, "list": [[1.0]],
          "int": 2}[aux]
    try:
        if kind in ("grad", "value_and_grad", "jacobian", "hessian"):
            res, exc = attempt(_ad_fn(kind), arg)
        elif kind == "hvp":
            res, exc = attempt(_ad_fn(kind), arg, v)
        elif kind == "jvp":
            res, exc = attempt(ad.jvp, _rosen, (arg,), (v,))
        else:
            res, exc = attempt(ad.vjp, _rosen, arg)
            if exc is None:
                val, fn = res
                res, exc = attempt(fn, ct)
                res = None if exc else (val, res)
    except IndexError:        # the traced function itself indexes a 0-d array
        assert x.ndim == 0
        _done("ad.transforms")
        return
    arr = np.asarray(arg)
    valid = arr.dtype.kind == "f" and x.ndim >= 1
    aux_ok = aux in ("ok", "list", "int") if kind in ("hvp", "jvp") else \
        aux in ("ok", "int") if kind == "vjp" else True
    if not (valid and aux_ok):
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "argument 0", "v", "tangents[0]", "cotangent")
        _done("ad.transforms")
        return
    assert exc is None, exc
    xv = arr.astype(np.float64)
    with np.errstate(all="ignore"):
        val, g = _rosen_ref(xv)
        want = {"grad": g, "jacobian": g, "value_and_grad": (val, g)}.get(kind)
        if kind == "hessian":
            want = _rosen_hess_ref(xv) if np.isfinite(xv).all() else None
        elif kind == "hvp":
            H = _rosen_hess_ref(xv) if np.isfinite(xv).all() else None
            want = None if H is None else \
                (H.reshape(x.size, x.size) @ np.ravel(v)).reshape(x.shape)
        elif kind == "jvp":
            want = (val, np.sum(g * np.asarray(v, float)))
        elif kind == "vjp":
            want = (val, (g * float(ct),))
    got = res
    # results keep the input's float dtype; compare in its precision
    tol = {np.float16: 5e-3, np.float32: 2e-4}.get(arr.dtype.type, 1e-7)
    if kind in ("grad", "jacobian", "hessian", "hvp"):
        assert got.shape == (x.shape + x.shape if kind == "hessian" else x.shape)
        assert got.dtype == arr.dtype
        pairs = [(got, want)]
    elif kind == "vjp":
        assert len(got[1]) == 1 and got[1][0].shape == x.shape
        pairs = [(got[0], want[0]), (got[1][0], want[1][0])]
    else:
        assert np.shape(got[1]) == np.shape(want[1])
        pairs = [(got[0], want[0]), (got[1], want[1])]
    if np.isfinite(xv).all():
        for g_, w_ in pairs:
            if w_ is None:
                continue
            w_ = np.asarray(w_, np.float64)
            scale = max(1.0, float(np.max(np.abs(w_), initial=0.0)))
            atol = tol * scale * (1e3 if kind in ("hessian", "hvp") and tol < 1e-6 else 10)
            np.testing.assert_allclose(np.asarray(g_, np.float64), w_, rtol=tol * 10,
                                       atol=atol)
    _done("ad.transforms")


# ---------------------------------------------------------------------------
# effai_fast.hill.hill (model evaluation) and hill.compare_models
# ---------------------------------------------------------------------------

HILL_PARAMS = st.sampled_from([1.0, 0.0, -2.0, 50, np.float32(3.0), np.array([1.0, 2.0]),
                               np.linspace(1, 2, 3), float("nan"), "1", None, 1 + 1j,
                               np.array([1.0], dtype=object), np.array([None]), True])


def _is_real_param(v):
    a = np.asarray(v)
    if a.dtype.kind == "O":
        return all(isinstance(u, (int, float)) for u in a.ravel())
    return a.dtype.kind in "biuf"


@fuzz
@given(dose=st.one_of(arrays(st.one_of(st.tuples(st.integers(0, 4)),
                                       st.tuples(st.integers(0, 2), st.integers(0, 3))),
                              lo=-0.5, hi=20),
                     st.sampled_from([2.0, 0.0, -1.0, float("nan"), np.float32(0.5), 3])),
       rmin=HILL_PARAMS, rmax=HILL_PARAMS, ec50=HILL_PARAMS, n=HILL_PARAMS)
def test_hill_model(dose, rmin, rmax, ec50, n):
    TRIED["hill.hill"] += 1
    res, exc = attempt(hill.hill, dose, rmin, rmax, ec50, n)
    args = (dose, rmin, rmax, ec50, n)
    real = all(_is_real_param(v) for v in args)
    valid = real
    if real:
        vals = [np.asarray(v, dtype=np.float64) for v in args]
        try:
            bshape = np.broadcast_shapes(*(v.shape for v in vals))
        except ValueError:
            valid = False
        with np.errstate(invalid="ignore"):
            valid = valid and not (vals[0] < 0).any() and not (vals[3] <= 0).any()
    if not valid:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "dose", "rmin", "rmax", "ec50", "n")
        _done("hill.hill")
        return
    assert exc is None, exc
    assert res.shape == bshape
    D, lo, hi, e, h = vals
    with np.errstate(all="ignore"):
        frac = np.where(D > 0, 1.0 / (1.0 + (e / D) ** h), np.where(h > 0, 0.0,
                        np.where(h < 0, 1.0, np.where(h == 0, 0.5, np.nan))))
        frac = np.where(np.isnan(D) | np.isnan(e), np.nan, frac)
        want = lo + (hi - lo) * frac
    res = np.asarray(res)
    ok = np.isfinite(np.broadcast_to(want, bshape))
    want = np.broadcast_to(want, bshape)
    np.testing.assert_allclose(res[ok], want[ok], rtol=1e-9,
                               atol=1e-9 * max(1.0, float(np.max(np.abs(want[ok]),
                                                                 initial=0.0))))
    # NaN in any argument propagates (never a silent number)
    nan_in = np.broadcast_to(np.isnan(D) | np.isnan(lo) | np.isnan(hi) | np.isnan(e)
                             | np.isnan(h), bshape)
    assert np.isnan(res[nan_in]).all()
    _done("hill.hill")


@fuzz
@given(n_curves=st.integers(1, 3), n_doses=st.sampled_from([0, 1, 3, 6, 8]),
       rdt=st.sampled_from(DTYPES), layout=st.sampled_from(LAYOUTS),
       special_=st.sampled_from([None, None, "nan", "negdose", "weights0", "weights_len"]),
       x_scale=st.sampled_from(["dose", "dose", "log", "ln", None]), n_threads=THREADS)
def test_hill_compare_models(n_curves, n_doses, rdt, layout, special_, x_scale, n_threads):
    TRIED["hill.compare_models"] += 1
    dose = np.geomspace(0.01, 100, n_doses) if n_doses else np.zeros(0)
    resp = hill.hill(dose, 5, 95, 2.0, 1.2) + np.random.default_rng(9).normal(
        0, 1, size=(n_curves, n_doses))
    weights = None
    if special_ == "nan" and n_doses:
        resp[0, 0] = np.nan
    if special_ == "negdose" and n_doses:
        dose = dose.copy()
        dose[0] = -1.0
    if special_ == "weights0":
        weights = np.zeros(n_doses)
    if special_ == "weights_len":
        weights = np.ones(n_doses + 1)
    resp = _layout(_cast(resp, rdt), layout)
    res, exc = attempt(hill.compare_models, dose, resp, weights=weights, x_scale=x_scale,
                       n_threads=n_threads)
    valid = (not _bad_real(resp.dtype) and n_doses > 0 and special_ not in
             ("negdose", "weights_len") and x_scale in ("dose", "log")
             and not _expected_thread_error(n_threads))
    if exc is None:
        assert valid or special_ == "weights0", "invalid call returned a result"
        assert res.aic.shape == (n_curves, 3)
        summ = res.summary()
        assert set(summ) == {"hill", "linear", "quadratic"} or len(summ) == 3
    else:
        assert_names(exc, "dose", "response", "weights", "x_scale", "n_threads")
        assert not valid or special_ == "weights0", f"valid call refused: {exc}"
    _done("hill.compare_models")


# ---------------------------------------------------------------------------
# effai_fast.surrogate designs: Domain, latin_hypercube, sobol, uniform
# ---------------------------------------------------------------------------

@fuzz
@given(bounds=st.sampled_from(["ok", "ok", "ok1", "equal", "reversed", "nan", "inf", "empty",
                               "2d", "len", "complex", "array"]),
       fn=st.sampled_from(["latin_hypercube", "sobol", "uniform"]),
       n=st.sampled_from([1, 5, 8, 0, -1, 2.0, True, "3", 10**12, 2**70, np.int64(4)]),
       seed=st.sampled_from([0, 7, None, -1, 1.5, "x", True, 2**70, "rng"]),
       dtype=st.sampled_from([np.float64, np.float32, np.float16, np.int32, "bogus"]),
       start=st.sampled_from([0, 0, 3, -1, 2**31, 2**40, 1.0]))
def test_surrogate_designs(bounds, fn, n, seed, dtype, start):
    TRIED["surrogate.designs"] += 1
    lo, hi = {"ok": ([0.0, -1.0], [1.0, 2.0]), "ok1": ([-5.0], [5.0]),
              "equal": ([0.0], [0.0]), "reversed": ([1.0, 0.0], [0.0, 1.0]),
              "nan": ([np.nan], [1.0]), "inf": ([0.0], [np.inf]), "empty": ([], []),
              "2d": ([[0.0]], [[1.0]]), "len": ([0.0, 0.0], [1.0]),
              "complex": ([0j], [1 + 0j]), "array": ([0.0], [1.0])}[bounds]
    dom, exc = attempt(surrogate.Domain, lo, hi)
    if bounds in ("ok", "ok1", "array"):
        assert exc is None, exc
    else:
        assert exc is not None, "invalid Domain accepted"
        assert_names(exc, "lower", "upper")
        _done("surrogate.designs")
        return
    if bounds == "array":
        dom = np.array([lo, hi])
    s = np.random.default_rng(3) if seed == "rng" else seed
    kw = {"start": start} if fn == "sobol" else {}
    res, exc = attempt(getattr(surrogate, fn), dom, n, seed=s, dtype=dtype, **kw)
    d = len(lo)

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    valid = (bounds != "array" and is_int(n) and 1 <= n <= 2**28 // d
             and (seed in (None, "rng") or (is_int(seed) and seed >= 0))
             and dtype in (np.float64, np.float32)
             and (fn != "sobol" or (is_int(start) and 0 <= start <= 2**30 - n)))
    if not valid:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "domain", "n", "seed", "dtype", "start")
        _done("surrogate.designs")
        return
    assert exc is None, exc
    assert res.shape == (n, d) and res.dtype == dtype
    assert (res >= np.array(lo, dtype)).all() and (res <= np.array(hi, dtype)).all()
    if is_int(seed):      # reproducible
        again = getattr(surrogate, fn)(dom, n, seed=seed, dtype=dtype, **kw)
        np.testing.assert_array_equal(res, again)
    if fn == "latin_hypercube":   # one point per stratum in every coordinate
        u = (res.astype(np.float64) - lo) / (np.array(hi) - lo)
        for j in range(d):
            cells = np.minimum((u[:, j] * n).astype(int), n - 1)
            assert len(np.unique(cells)) == n or dtype == np.float32
    _done("surrogate.designs")


# ---------------------------------------------------------------------------
# effai_fast.mobilenet.mobilenet_v1 (tiny models) and scaled_channels
# ---------------------------------------------------------------------------

@fuzz
@given(alpha=st.sampled_from([0.01, 0.02, 1e-3, 0.0, -0.5, 1.5, float("nan"), float("inf"),
                              "0.1", True, None, np.float32(0.02)]),
       resolution=st.sampled_from([8, 5, 1, 0, -8, 8.0, True, np.int64(4)]),
       num_classes=st.sampled_from([3, 1, 0, -1, 2.5, True, "3"]),
       in_channels=st.sampled_from([3, 1, 0, -2, 1.0, False]),
       dropout=st.sampled_from([0.0, 0.0, 0.5, 1.0, -0.1, float("nan")]))
def test_mobilenet_v1(alpha, resolution, num_classes, in_channels, dropout):
    TRIED["mobilenet.mobilenet_v1"] += 1
    res, exc = attempt(mobilenet.mobilenet_v1, alpha, resolution, num_classes, in_channels,
                       dropout=dropout)

    def is_int(v):
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    valid = (isinstance(alpha, (float, np.floating)) and 0 < alpha <= 1
             and is_int(resolution) and resolution >= 1 and is_int(num_classes)
             and num_classes >= 1 and is_int(in_channels) and in_channels >= 1
             and 0 <= dropout < 1)
    if not valid:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "alpha", "resolution", "num_classes", "in_channels", "dropout")
        _done("mobilenet.mobilenet_v1")
        return
    assert exc is None, exc
    net = res
    y = net(np.random.default_rng(5).normal(
        size=(2, int(resolution), int(resolution), in_channels)).astype(np.float32))
    assert y.shape == (2, num_classes) and np.isfinite(y).all()
    if in_channels == 3:
        ref_cost = mobilenet.cost(float(alpha), int(resolution), num_classes)
        assert net.cost().macs == ref_cost.macs
    _done("mobilenet.mobilenet_v1")


@fuzz
@given(c=st.sampled_from([32, 1, 1024, 0, -3, 2.0, True, "8"]),
       alpha=st.sampled_from([1.0, 0.75, 0.5, 0.25, 1e-3, 0.0, -1.0, 1.5, float("nan"),
                              "0.5", None]))
def test_scaled_channels(c, alpha):
    TRIED["mobilenet.scaled_channels"] += 1
    res, exc = attempt(mobilenet.scaled_channels, c, alpha)
    valid = (isinstance(c, int) and not isinstance(c, bool) and c >= 1
             and isinstance(alpha, float) and 0 < alpha <= 1)
    if valid:
        assert exc is None, exc
        assert res == max(1, math.floor(alpha * c + 0.5))
        if alpha in (1.0, 0.75, 0.5, 0.25) and c % 4 == 0:
            assert res == int(alpha * c)
    else:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "c", "alpha")
    _done("mobilenet.scaled_channels")


# ---------------------------------------------------------------------------
# effai_fast.surrogate RBFInterpolant / GaussianProcess: fit then predict
# ---------------------------------------------------------------------------

@fuzz
@given(X=arrays(st.one_of(st.tuples(st.integers(0, 7), st.integers(0, 3)),
                          st.tuples(st.integers(0, 4))), lo=-2, hi=2),
       y_kind=st.sampled_from(["ok", "ok", "ok", "len", "nan", "2d", "complex", "list"]),
       model=st.sampled_from(["rbf", "rbf", "gp"]),
       kernel=st.sampled_from(["default", "default", "bogus"]))
def test_surrogate_fit_predict(X, y_kind, model, kernel):
    TRIED["surrogate.fit/predict"] += 1
    n = X.shape[0]
    y0 = np.sin(np.arange(n, dtype=float))
    y = {"ok": y0, "len": np.zeros(n + 1), "nan": np.full(n, np.nan),
         "2d": np.stack([y0, y0], axis=1),
         "complex": y0.astype(complex), "list": y0.tolist()}[y_kind]
    kw = {} if kernel == "default" else {"kernel": kernel}
    est = surrogate.RBFInterpolant(**kw) if model == "rbf" else surrogate.GaussianProcess(**kw)
    res, exc = attempt(est.fit, X, y)
    Xv = _reference_values(X) if not _bad_real(X.dtype) else None
    valid = (Xv is not None and X.ndim == 2 and n >= 1 and X.shape[1] >= 1
             and np.isfinite(Xv).all() and y_kind in ("ok", "list") and kernel == "default")
    if not valid:
        assert exc is not None, "invalid call returned a result"
        assert_names(exc, "X", "y", "kernel", "samples")
        _done("surrogate.fit/predict")
        return
    if exc is not None:
        # RBF only: too few distinct samples for the polynomial tail, or a numerically
        # singular system (clustered points): refused with the options that fix it
        assert model == "rbf", exc
        assert_names(exc, "samples", "smoothing")
        _done("surrogate.fit/predict")
        return
    pred = est.predict(X)
    assert pred.shape == (n,) and np.isfinite(pred).all()
    if model == "rbf" and len(np.unique(Xv, axis=0)) == n:   # interpolates distinct points
        np.testing.assert_allclose(pred, y0, atol=1e-6 * max(1, np.abs(Xv).max()) * 100)
    bad, exc = attempt(est.predict, np.ones((2, X.shape[1] + 1)))
    assert exc is not None
    assert_names(exc, "X")
    _done("surrogate.fit/predict")


# ---------------------------------------------------------------------------
# effai_fast.nn layers (forward / backward), fit / evaluate
# ---------------------------------------------------------------------------

from effai_fast import nn as enn  # noqa: E402


def _layer_input_ok(x, ndims):
    return (not _bad_real(x.dtype)) and x.ndim in ndims and x.size > 0


LAYER_KINDS = ["linear", "conv2d", "depthwise", "pointwise", "batchnorm", "gap", "dropout",
               "sequential"]


def _make_layer(kind, c, dtype):
    if kind == "linear":
        return enn.Linear(c, 2, dtype=dtype, seed=0, init_std=0.5), (2,)
    if kind == "conv2d":
        return enn.Conv2d(c, 2, 3, padding=1, bias=True, dtype=dtype, seed=0), (4,)
    if kind == "depthwise":
        return enn.DepthwiseConv2d(c, 3, padding=1, bias=True, activation="relu",
                                   dtype=dtype, seed=0), (4,)
    if kind == "pointwise":
        return enn.PointwiseConv2d(c, 2, bias=True, dtype=dtype, seed=0), (4,)
    if kind == "batchnorm":
        return enn.BatchNorm(c, dtype=dtype), (2, 4)
    if kind == "gap":
        return enn.GlobalAvgPool(dtype=dtype), (4,)
    if kind == "dropout":
        return enn.Dropout(0.5, seed=0, dtype=dtype), None
    return enn.Sequential(enn.PointwiseConv2d(c, 2, dtype=dtype, seed=0),
                          enn.GlobalAvgPool(dtype=dtype),
                          enn.Linear(2, 3, dtype=dtype, seed=1, init_std=0.5)), (4,)


def _layer_reference(kind, layer, x, training):
    """float64 reference forward of ``layer`` (parameters as stored)."""
    x = _reference_values(x)
    if kind == "linear":
        return x @ layer.weight.astype(np.float64) + layer.bias
    if kind == "conv2d":
        return ref.conv2d(x, layer.weight.astype(np.float64), layer.bias.astype(np.float64),
                          stride=1, padding=1, dilation=1)
    if kind == "depthwise":
        return np.maximum(ref.depthwise(x, layer.weight.astype(np.float64),
                                        layer.bias.astype(np.float64), stride=1, padding=1,
                                        dilation=1), 0.0)
    if kind == "pointwise":
        return x @ layer.weight.astype(np.float64) + layer.bias
    if kind == "batchnorm":
        axes = tuple(range(x.ndim - 1))
        if training:
            mu, var = x.mean(axis=axes), x.var(axis=axes)
        else:
            mu, var = np.zeros(x.shape[-1]), np.ones(x.shape[-1])
        return (x - mu) / np.sqrt(var + layer.eps)
    if kind == "gap":
        return x.mean(axis=(1, 2))
    if kind == "dropout":
        return x
    h = x @ layer[0].weight.astype(np.float64)
    return h.mean(axis=(1, 2)) @ layer[2].weight.astype(np.float64) + layer[2].bias


@fuzz
@given(kind=st.sampled_from(LAYER_KINDS),
       x=arrays(st.one_of(st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(1, 3),
                                    st.integers(1, 3)),
                          st.tuples(st.integers(0, 3), st.integers(1, 3)),
                          st.tuples(st.integers(1, 3))), nonfinite=False),
       cmis=st.sampled_from([0, 0, 0, 1]), dtype=st.sampled_from([np.float32, np.float64]),
       training=st.booleans(), gdt=st.sampled_from(["float64", "float32", "complex128"]),
       gshape_off=st.sampled_from([0, 0, 0, 1]))
def test_nn_layers_forward_backward(kind, x, cmis, dtype, training, gdt, gshape_off):
    TRIED["nn.layers"] += 1
    c = x.shape[-1] + cmis
    layer, ndims = _make_layer(kind, c, dtype)
    res, exc = attempt(layer, x, training=training)
    valid = (not _bad_real(x.dtype)) and x.size > 0 and (cmis == 0 or kind == "gap") and (
        ndims is None or x.ndim in ndims)
    if kind == "dropout":
        valid = (not _bad_real(x.dtype)) and (x.size > 0)
    if kind == "batchnorm" and training and valid and x.size == x.shape[-1]:
        valid = None   # one sample per channel: batch statistics undefined, either is fine
    if exc is not None:
        assert_names(exc, "x", "channels", "features", "in_channels", "in_features")
        if valid and not (kind == "dropout" and x.size == 0):
            pytest.fail(f"valid {kind} forward refused: {exc}")
        _done("nn.layers")
        return
    assert valid is not False, f"invalid {kind} forward returned a result"
    assert res.dtype == dtype
    if kind == "dropout" and training:
        keep = np.asarray(res) != 0
        want = _reference_values(x) * 2.0
        _close(np.where(keep, res, 0.0), np.where(keep, want, 0.0), dtype, 10.0)
    elif valid:
        want = _layer_reference(kind, layer, x, training)
        _close(res, want, dtype, 10.0 * max(1.0, float(np.abs(want).max(initial=0))))
    # backward: a gradient of the right shape works, a wrong one is named
    gshape = res.shape[:-1] + (res.shape[-1] + gshape_off,)
    g = _cast(np.random.default_rng(3).normal(size=gshape), gdt)
    gx, gexc = attempt(layer.backward, g)
    if gexc is not None:
        assert_names(gexc, "grad_out", "grad", "g")
        if gshape_off == 0 and gdt != "complex128":
            pytest.fail(f"valid {kind} backward refused: {gexc}")
    else:
        assert gshape_off == 0, f"{kind} backward took a wrong shape"
        if gdt != "complex128" and gshape_off == 0:
            assert gx.shape == np.shape(x)
            if kind == "linear":
                _close(gx, _reference_values(g) @ layer.weight.T.astype(np.float64), dtype,
                       10.0)
            elif kind == "gap":
                want = np.broadcast_to(_reference_values(g)[:, None, None, :] /
                                       (x.shape[1] * x.shape[2]), x.shape)
                _close(gx, want, dtype)
    _done("nn.layers")


def _real_in(v, lo, hi, lo_incl=True, hi_incl=True):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return False
    return (v >= lo if lo_incl else v > lo) and (v <= hi if hi_incl else v < hi)


BAD_REALS = [float("nan"), float("inf"), -1.0, "0.1", True, None]


@fuzz
@given(x_kind=st.sampled_from(["ok", "ok", "ok", "nan", "complex", "1d", "3d", "empty"]),
       y_kind=st.sampled_from(["ok", "ok", "ok", "float", "short", "2d", "bool"]),
       epochs=st.sampled_from([1, 1, 1, 0, -1, 1.0, True, "1"]),
       batch_size=st.sampled_from([4, 4, 2, 0, -3, 2.5, True, None]),
       fn=st.sampled_from(["fit", "evaluate", "predict"]))
def test_nn_fit_evaluate(x_kind, y_kind, epochs, batch_size, fn):
    TRIED["nn.fit/evaluate"] += 1
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 3))
    y = np.array([0, 1, 2, 0, 1, 2])
    if x_kind == "nan":
        x[2, 1] = np.nan
    elif x_kind == "complex":
        x = x.astype(np.complex128)
    elif x_kind == "1d":
        x = x[:, 0]
    elif x_kind == "3d":
        x = x[:, :, None]
    elif x_kind == "empty":
        x, y = x[:0], y[:0]
    if y_kind == "float":
        y = y.astype(np.float64)
    elif y_kind == "short":
        y = y[:-1]
    elif y_kind == "2d":
        y = y[:, None]
    elif y_kind == "bool":
        y = y > 0
    model = enn.Sequential(enn.Linear(3, 3, dtype=np.float64, seed=0, init_std=0.3))
    before = model[0].weight.copy()
    ok_int = lambda v, lo: isinstance(v, int) and not isinstance(v, bool) and v >= lo  # noqa
    if fn == "fit":
        res, exc = attempt(enn.fit, model, x, y, epochs=epochs, batch_size=batch_size,
                           verbose=0)
    elif fn == "evaluate":
        res, exc = attempt(enn.evaluate, model, x, y, batch_size=batch_size)
    else:
        res, exc = attempt(enn.predict, model, x, batch_size=batch_size)
    x_ok = x_kind in ("ok",) or (x_kind == "nan" and fn == "predict")
    y_ok = y_kind == "ok" or fn == "predict"
    valid = x_ok and y_ok and ok_int(batch_size, 1) and (fn != "fit" or ok_int(epochs, 1))
    if exc is not None:
        assert_names(exc, "x", "y", "epochs", "batch_size")
        assert not valid, f"valid {fn} refused: {exc}"
    else:
        assert valid, f"invalid {fn} call returned a result"
        logits = _reference_values(x) @ before + model[0].bias
        if fn == "predict":
            _close(res, logits, np.float64)
        elif fn == "evaluate":
            z = logits - logits.max(axis=1, keepdims=True)
            lp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            _close(res["loss"], -lp[np.arange(len(y)), y].mean(), np.float64)
            assert res["accuracy"] == np.mean(np.argmax(logits, axis=1) == y)
        else:
            assert np.all(np.isfinite(model[0].weight))
            assert not np.array_equal(model[0].weight, before)
    _done("nn.fit/evaluate")


# ---------------------------------------------------------------------------
# effai_fast.optim
# ---------------------------------------------------------------------------

from effai_fast import optim  # noqa: E402


@fuzz
@given(opt=st.sampled_from(["SGD", "AdamW"]),
       lr=st.sampled_from([0.1, 0.1, 0.0, 1e-3] + BAD_REALS),
       momentum=st.sampled_from([0.0, 0.9, 0.9, 0.5, 1.0] + BAD_REALS),
       nesterov=st.sampled_from([False, False, True, 1, "yes"]),
       weight_decay=st.sampled_from([0.0, 0.0, 0.01] + BAD_REALS),
       betas=st.sampled_from([(0.9, 0.999), (0.9, 0.999), (0.0, 0.5), (1.0, 0.9),
                              (0.9, float("nan")), (0.9,), "ab", 0.9, (0.9, -0.1)]),
       eps=st.sampled_from([1e-8, 1e-8, 0.0, -1e-8, float("nan")]),
       grad_kind=st.sampled_from(["ok", "ok", "ok", "shape", "dtype", "count", "array",
                                  "list"]),
       pdt=st.sampled_from([np.float32, np.float64]))
def test_optim_args(opt, lr, momentum, nesterov, weight_decay, betas, eps, grad_kind, pdt):
    TRIED["optim"] += 1
    p0 = np.linspace(-1, 1, 6).astype(pdt).reshape(2, 3)
    p = p0.copy()
    g = np.linspace(0.5, -0.7, 6).astype(pdt).reshape(2, 3)
    if opt == "SGD":
        kwargs = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
        valid = (_real_in(lr, 0, np.inf) and _real_in(momentum, 0, 1, hi_incl=False)
                 and _real_in(weight_decay, 0, np.inf) and isinstance(nesterov, bool)
                 and (not nesterov or momentum > 0))
        names = ("lr", "momentum", "weight_decay", "nesterov")
    else:
        kwargs = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
        valid = (_real_in(lr, 0, np.inf) and _real_in(weight_decay, 0, np.inf)
                 and isinstance(betas, tuple) and len(betas) == 2
                 and all(_real_in(b, 0, 1, hi_incl=False) for b in betas)
                 and _real_in(eps, 0, np.inf, lo_incl=False))
        names = ("lr", "betas", "betas[0]", "betas[1]", "eps", "weight_decay")
    o, exc = attempt(getattr(optim, opt), [p], **kwargs)
    if exc is not None:
        assert_names(exc, *names)
        assert not valid, f"valid {opt} constructor refused: {exc}"
        _done("optim")
        return
    assert valid, f"invalid {opt} options accepted: {kwargs}"
    grads = {"ok": [g], "shape": [g.T.copy()], "dtype": [g.astype(np.float64 if pdt ==
                                                                   np.float32 else np.float32)],
             "count": [g, g], "array": g, "list": [g.tolist()]}[grad_kind]
    res, exc = attempt(o.step, grads)
    if exc is not None:
        assert_names(exc, "grads")
        assert grad_kind != "ok", f"valid step refused: {exc}"
        np.testing.assert_array_equal(p, p0)      # a refused step changes nothing
        _done("optim")
        return
    assert grad_kind == "ok", f"step accepted grads of kind {grad_kind}"
    P, G = p0.astype(np.float64), g.astype(np.float64)
    if opt == "SGD":
        d = G + weight_decay * P
        if momentum:
            d = d + momentum * d if nesterov else d
        want = P - lr * d
    else:
        want = P * (1 - lr * weight_decay) - lr * G / (np.abs(G) + eps)
    _close(p, want, pdt)
    _done("optim")


# ---------------------------------------------------------------------------
# AdditiveNetwork.fit, SparseGrid / DimensionAdaptiveSparseGrid construction and fit
# ---------------------------------------------------------------------------


@fuzz
@given(X=arrays(st.tuples(st.sampled_from([0, 1, 2, 12, 12]), st.integers(0, 3)), lo=-1, hi=1),
       y_kind=st.sampled_from(["ok", "ok", "ok", "nan", "short", "2d", "col", "const",
                               "complex"]),
       zero_var=st.booleans(), nf_off=st.sampled_from([None, None, 0, 1]),
       param=st.sampled_from([None, None, None, ("hidden", ()), ("hidden", (0,)),
                              ("alpha", -1.0), ("alpha", float("nan")), ("max_iter", 0),
                              ("max_iter", 2.5), ("shape", "tree"), ("activation", "gelu"),
                              ("solver", "newton"), ("learning_rate", 0.0),
                              ("batch_size", True), ("n_splines", 2), ("shape", "spline"),
                              ("solver", "adamw")]))
def test_additive_fit(X, y_kind, zero_var, nf_off, param):
    from effai_fast.additive import AdditiveNetwork
    TRIED["additive.fit"] += 1
    if zero_var and X.ndim == 2 and X.size and X.flags.writeable:
        X = np.array(X)
        X[:, 0] = X[0, 0]
    n = X.shape[0] if X.ndim else 0
    y = np.linspace(-1, 1, n) ** 2
    if y_kind == "nan" and n:
        y[0] = np.nan
    elif y_kind == "short":
        y = y[:-1]
    elif y_kind == "2d":
        y = np.stack([y, y], axis=1)
    elif y_kind == "col":
        y = y[:, None]
    elif y_kind == "const":
        y = np.full(n, 0.5)
    elif y_kind == "complex":
        y = y.astype(np.complex128)
    kw = dict(hidden=(3,), max_iter=3, n_threads=1, random_state=0)
    if nf_off is not None:
        kw["n_features"] = X.shape[-1] + nf_off if X.ndim == 2 else 1
    if param is not None:
        kw[param[0]] = param[1]
    model = AdditiveNetwork(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # y as a column vector warns (sklearn)
        res, exc = attempt(model.fit, X, y)
    bad_param = param is not None and param[0] not in ("shape", "solver") or param in (
        ("shape", "tree"), ("solver", "newton"))
    # (an object array of numbers is converted, as scikit-learn does)
    x_ok = (X.dtype.kind != "c" and X.ndim == 2 and n >= 2 and X.shape[1] >= 1
            and np.all(np.isfinite(_reference_values(X))) if X.size else False)
    valid = (x_ok and y_kind in ("ok", "col", "const") and not bad_param
             and nf_off in (None, 0))
    if exc is not None:
        assert_names(exc, "X", "y", "n_features", "n_samples", *(param[:1] if param else ()))
        if valid and not zero_var:
            pytest.fail(f"valid AdditiveNetwork.fit refused: {exc}")
    else:
        assert valid, f"invalid AdditiveNetwork.fit returned (y {y_kind}, param {param})"
        pred = res.predict(X)
        assert pred.shape == (n,) and np.all(np.isfinite(pred))
    _done("additive.fit")


DOMAINS = ["none", "none", "pair", "full", "reversed", "nan", "inf", "shape", "str"]


def _domain(kind, dim):
    d = dim if isinstance(dim, int) and not isinstance(dim, bool) and 1 <= dim <= 4 else 2
    return {"none": None, "pair": np.array([-1.0, 2.0]),
            "full": np.column_stack([-np.arange(d) - 0.5, np.arange(d) + 1.0]),
            "reversed": np.array([2.0, -1.0]), "nan": np.array([0.0, np.nan]),
            "inf": np.array([0.0, np.inf]), "shape": np.zeros((d + 1, 3)),
            "str": "unit"}[kind]


def _domain_ok(kind):
    return kind in ("none", "pair", "full")


def _linear_integral(dom, dim):
    lo, hi = (np.zeros(dim), np.ones(dim)) if dom is None else (
        (np.full(dim, dom[0]), np.full(dim, dom[1])) if np.ndim(dom) == 1 else dom.T)
    vol = np.prod(hi - lo)
    a = np.arange(1, dim + 1, dtype=float)
    return vol * (1.0 + np.sum(a * (lo + hi) / 2)), a


@fuzz
@given(dim=st.sampled_from([1, 2, 3, 0, -1, 2.0, True, "2"]),
       level=st.sampled_from([1, 2, 3, 0, -2, 1.5, True]),
       basis=st.sampled_from(["hat", "hat", "modlinear", "leja"]),
       boundary=st.sampled_from([False, True]), dom=st.sampled_from(DOMAINS),
       values_kind=st.sampled_from(["f", "f", "f", "short", "nan", "2d", "complex", "none"]))
def test_sparsegrid_construct_fit_integrate(dim, level, basis, boundary, dom, values_kind):
    TRIED["sparsegrid.fit/integrate"] += 1
    domain = _domain(dom, dim)
    g, exc = attempt(sparsegrid.SparseGrid, dim, level, domain=domain, basis=basis,
                     boundary=boundary)
    ok_int = isinstance(dim, int) and not isinstance(dim, bool) and dim >= 1 and \
        isinstance(level, int) and not isinstance(level, bool) and level >= 1
    valid = ok_int and basis in ("hat", "modlinear") and _domain_ok(dom) and not (
        boundary and basis != "hat")
    if exc is not None:
        assert_names(exc, "dim", "level", "basis", "boundary", "domain")
        assert not valid, f"valid SparseGrid refused: {exc}"
        _done("sparsegrid.fit/integrate")
        return
    assert valid, "invalid SparseGrid arguments accepted"
    want, a = _linear_integral(domain, dim)
    vals = 1.0 + g.points @ a
    if values_kind == "short":
        vals = vals[:-1]
    elif values_kind == "nan":
        vals = vals.copy()
        vals[0] = np.nan
    elif values_kind == "2d":
        vals = vals[:, None]
    elif values_kind == "complex":
        vals = vals.astype(np.complex128)
    elif values_kind == "none":
        vals = None
    res, exc = attempt(g.fit, vals)
    if exc is not None:
        assert_names(exc, "values")
        assert values_kind != "f", f"valid fit refused: {exc}"
        res2, exc2 = attempt(g.integrate, vals)
        assert exc2 is not None, "integrate accepted values fit refused"
        assert_names(exc2, "values")
    else:
        assert values_kind == "f", f"fit accepted values of kind {values_kind}"
        got = g.integrate()
        assert got == pytest.approx(g.integrate(np.ravel(vals)), rel=1e-12, abs=1e-12)
        if boundary:
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
        assert np.isfinite(got)
    _done("sparsegrid.fit/integrate")


@fuzz
@given(dim=st.sampled_from([1, 2, 0, -1, 2.0, True]), dom=st.sampled_from(DOMAINS),
       basis=st.sampled_from(["leja", "leja", "modlinear", "hat", 3]),
       max_points=st.sampled_from([30, 30, 1, 0, -5, 10.5, True]),
       tol=st.sampled_from([0.0, 1e-6, -1.0, float("nan"), "0"]),
       max_level=st.sampled_from([None, None, 3, 0, -1, 2.5]),
       f_kind=st.sampled_from(["ok", "ok", "ok", "nan", "wrong_len", "notcallable"]))
def test_adaptive_sparsegrid(dim, dom, basis, max_points, tol, max_level, f_kind):
    TRIED["sparsegrid.adaptive"] += 1
    domain = _domain(dom, dim)
    g, exc = attempt(sparsegrid.DimensionAdaptiveSparseGrid, dim, domain=domain, basis=basis,
                     max_points=max_points, tol=tol, max_level=max_level)
    is_int = lambda v, lo: isinstance(v, int) and not isinstance(v, bool) and v >= lo  # noqa
    valid = (is_int(dim, 1) and _domain_ok(dom) and basis in ("leja", "modlinear")
             and is_int(max_points, 1) and _real_in(tol, 0, np.inf)
             and (max_level is None or is_int(max_level, 1)))
    if exc is not None:
        assert_names(exc, "dim", "domain", "basis", "max_points", "tol", "max_level")
        assert not valid, f"valid DimensionAdaptiveSparseGrid refused: {exc}"
        _done("sparsegrid.adaptive")
        return
    if not valid:   # max_level=0 may be a legal "level 0 only" grid
        assert max_level == 0, "invalid DimensionAdaptiveSparseGrid arguments accepted"
    want, a = _linear_integral(domain, dim)
    f = {"ok": lambda x: 1.0 + x @ a, "nan": lambda x: np.full(len(x), np.nan),
         "wrong_len": lambda x: np.ones(len(x) + 1), "notcallable": 3.0}[f_kind]
    res, exc = attempt(g.fit, f)
    if exc is not None:
        assert_names(exc, "f")
        assert f_kind != "ok", f"valid adaptive fit refused: {exc}"
    else:
        assert f_kind == "ok", f"adaptive fit accepted f of kind {f_kind}"
        got = g.integrate()
        assert np.isfinite(got)
        if basis == "leja" and g.n_points > 2 * dim:
            assert got == pytest.approx(want, rel=1e-8, abs=1e-8)
    _done("sparsegrid.adaptive")


# ---------------------------------------------------------------------------
# distill.Distiller, MLPSurrogate, DesignSpec, HillRegressor
# ---------------------------------------------------------------------------


def _tiny_mlp(n_in, n_out, seed):
    return enn.Sequential(enn.Linear(n_in, n_out, dtype=np.float64, seed=seed, init_std=0.3))


@fuzz
@given(temperature=st.sampled_from([4.0, 1.0, 0.5, 0.0, -1.0, float("nan"), float("inf"),
                                    "2", True]),
       hard_weight=st.sampled_from([0.1, 0.0, 1.0, -0.1, 1.5, float("nan"), None]),
       t_out=st.sampled_from([3, 3, 3, 2]), t_in=st.sampled_from([4, 4, 4, 5]),
       same=st.sampled_from([False] * 5 + [True]),
       epochs=st.sampled_from([1, 1, 0, -1, 1.5]),
       x_kind=st.sampled_from(["ok", "ok", "ok", "int", "1d", "empty", "nan", "short_y",
                               "float_y"]))
def test_distiller(temperature, hard_weight, t_out, t_in, same, epochs, x_kind):
    from effai_fast.distill.trainer import Distiller
    TRIED["distill.Distiller"] += 1
    student = _tiny_mlp(4, 3, 1)
    teacher = student if same else _tiny_mlp(t_in, t_out, 2)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(8, 4))
    y = np.arange(8) % 3
    if x_kind == "int":
        x = np.round(x).astype(np.int64)
    elif x_kind == "1d":
        x = x[:, 0]
    elif x_kind == "empty":
        x, y = x[:0], y[:0]
    elif x_kind == "nan":
        x[1, 1] = np.nan
    elif x_kind == "short_y":
        y = y[:-1]
    elif x_kind == "float_y":
        y = y.astype(float)
    d = Distiller(teacher, student, temperature=temperature, hard_weight=hard_weight,
                  epochs=epochs, batch_size=4, seed=0, n_threads=1)
    before = student[0].weight.copy()
    res, exc = attempt(d.fit, x, y)
    args_ok = (_real_in(temperature, 0, np.inf, lo_incl=False)
               and _real_in(hard_weight, 0, 1) and not same
               and isinstance(epochs, int) and epochs >= 0)
    valid = args_ok and t_out == 3 and t_in == 4 and x_kind == "ok"
    if exc is not None:
        assert_names(exc, "temperature", "hard_weight", "teacher", "student", "epochs", "x",
                     "y", "teacher_logits", "logits", "student_logits")
        assert not valid, f"valid Distiller.fit refused: {exc}"
    else:
        assert valid or (x_kind == "nan" and args_ok and t_out == 3 and t_in == 4), \
            f"invalid Distiller.fit accepted (x {x_kind}, teacher {t_in}->{t_out})"
        if x_kind == "ok" and epochs > 0:
            assert np.all(np.isfinite(student[0].weight))
            assert not np.array_equal(student[0].weight, before)
            assert d.predict(x).shape == (8,)
    _done("distill.Distiller")


@fuzz
@given(X=arrays(st.tuples(st.sampled_from([0, 1, 3, 8, 8]), st.integers(0, 2)), lo=0, hi=1),
       y_kind=st.sampled_from(["ok", "ok", "ok", "nan", "short", "2d", "complex"]),
       hidden=st.sampled_from([(3,), (3,), (2, 2), (0,), (-1,), 3, "3", (1.5,), None]),
       alpha=st.sampled_from([1e-4, 0.0, -1.0, float("nan"), "a"]),
       max_iter=st.sampled_from([5, 5, 0, -1, 2.5, True]),
       pdt=st.sampled_from(["ok", "ok", "features", "complex", "1d"]))
def test_mlp_surrogate(X, y_kind, hidden, alpha, max_iter, pdt):
    from effai_fast.surrogate import MLPSurrogate
    TRIED["surrogate.MLPSurrogate"] += 1
    n = X.shape[0]
    y = np.linspace(0, 1, n) ** 2
    if y_kind == "nan" and n:
        y[-1] = np.nan
    elif y_kind == "short":
        y = y[:-1]
    elif y_kind == "2d":
        y = np.stack([y, y], axis=1)
    elif y_kind == "complex":
        y = y.astype(np.complex128)
    m = MLPSurrogate(hidden=hidden, alpha=alpha, max_iter=max_iter, seed=0, n_threads=1)
    res, exc = attempt(m.fit, X, y)
    is_int = lambda v, lo: isinstance(v, int) and not isinstance(v, bool) and v >= lo  # noqa
    hp_ok = (isinstance(hidden, tuple) and all(is_int(h, 1) for h in hidden)
             and _real_in(alpha, 0, np.inf) and is_int(max_iter, 1))
    x_ok = (not _bad_real(X.dtype) and X.size > 0
            and np.all(np.isfinite(_reference_values(X))))
    valid = hp_ok and x_ok and y_kind == "ok"
    if exc is not None:
        assert_names(exc, "X", "y", "hidden", "alpha", "max_iter")
        if valid and n >= 2:
            pytest.fail(f"valid MLPSurrogate.fit refused: {exc}")
        _done("surrogate.MLPSurrogate")
        return
    assert valid, f"invalid MLPSurrogate.fit accepted (y {y_kind}, hidden {hidden})"
    d = X.shape[1]
    Xp = {"ok": np.full((2, d), 0.5), "features": np.full((2, d + 1), 0.5),
          "complex": np.full((2, d), 0.5 + 0j), "1d": np.full(d, 0.5)}[pdt]
    pred, exc = attempt(m.predict, Xp)
    if exc is not None:
        assert_names(exc, "X")
        assert pdt != "ok", f"valid predict refused: {exc}"
    else:
        assert pdt == "ok", f"predict accepted X of kind {pdt}"
        h = Xp
        for W, b in zip(m.coefs_[:-1], m.intercepts_[:-1], strict=True):
            h = np.tanh(h @ W + b)
        want = (h @ m.coefs_[-1] + m.intercepts_[-1]).ravel()
        if not np.allclose(pred, want, rtol=1e-7, atol=1e-7):   # activation may be ReLU
            h = Xp
            for W, b in zip(m.coefs_[:-1], m.intercepts_[:-1], strict=True):
                h = np.maximum(h @ W + b, 0)
            want = (h @ m.coefs_[-1] + m.intercepts_[-1]).ravel()
        _close(pred, want, np.float64)
    _done("surrogate.MLPSurrogate")


@fuzz
@given(bounds=st.sampled_from(["ok", "ok", "equal", "reversed", "nan"]),
       n=st.sampled_from([5, 5, 1, 0, -1, 2.5, True, 2**40]),
       seed=st.sampled_from([0, 3, -1, 1.5, None, True]),
       method=st.sampled_from(["sobol", "uniform", "lhs", 1]),
       dtype=st.sampled_from([np.float64, np.float32, np.int32, "complex128", "nope", None]),
       rng_=st.sampled_from([(0, 5), (1, 3), (3, 1), (0, 6), (-1, 2), (0.5, 2)]))
@example(bounds="ok", n=2**40, seed=0, method="sobol", dtype=np.float64, rng_=(1, 3))
def test_design_spec(bounds, n, seed, method, dtype, rng_):
    from effai_fast.surrogate import DesignSpec, Domain
    TRIED["surrogate.DesignSpec"] += 1
    lo, hi = {"ok": ([0.0, -1.0], [1.0, 2.0]), "equal": ([0.0, 1.0], [0.0, 2.0]),
              "reversed": ([1.0, 0.0], [0.0, 1.0]), "nan": ([0.0, np.nan], [1.0, 1.0])}[bounds]
    dom, exc = attempt(Domain, lo, hi)
    if exc is not None:
        assert_names(exc, "lower", "upper")
        assert bounds != "ok"
        _done("surrogate.DesignSpec")
        return
    spec, exc = attempt(DesignSpec, dom, n, seed=seed, method=method, dtype=dtype)
    is_int = lambda v, lo: isinstance(v, int) and not isinstance(v, bool) and v >= lo  # noqa
    valid = (is_int(n, 1) and is_int(seed, 0) and method in ("sobol", "uniform")
             and dtype in (np.float64, np.float32, None))   # None: numpy's default float64
    if exc is not None:
        assert_names(exc, "n", "seed", "method", "dtype", "domain")
        assert not valid, f"valid DesignSpec refused: {exc}"
        _done("surrogate.DesignSpec")
        return
    assert valid, f"invalid DesignSpec accepted (n {n}, seed {seed}, dtype {dtype})"
    start, stop = rng_
    rows, exc = attempt(spec.generate, start, stop)
    ok = is_int(start, 0) and is_int(stop, start) and stop <= n
    if exc is not None:
        assert_names(exc, "start", "stop")
        assert not ok, f"valid generate refused: {exc}"
    else:
        assert ok, f"generate accepted [{start}, {stop}) of n={n}"
        assert rows.shape == (stop - start, 2) and rows.dtype == np.dtype(dtype)
        assert np.all(rows >= np.array(lo, rows.dtype))
        assert np.all(rows <= np.array(hi, rows.dtype))
        if stop > start:
            np.testing.assert_array_equal(rows, spec.generate(0, stop)[start:])
    _done("surrogate.DesignSpec")


@fuzz
@given(dose_kind=st.sampled_from(["ok", "ok", "ok", "1d", "2col", "neg", "nan", "complex",
                                  "empty", "short_y", "nan_y"]),
       max_iter=st.sampled_from([50, 50, 0, -1, 2.5]),
       pred_kind=st.sampled_from(["ok", "ok", "neg", "2col", "1d", "nan"]))
def test_hill_regressor(dose_kind, max_iter, pred_kind):
    from effai_fast.hill import HillRegressor
    from effai_fast.hill import hill as hill_fn
    TRIED["hill.HillRegressor"] += 1
    d = np.array([0.0, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0])
    y = np.asarray(hill_fn(d, 0.1, 1.0, 2.0, 1.2), dtype=float).ravel()
    X = d[:, None]
    if dose_kind == "1d":
        X = d
    elif dose_kind == "2col":
        X = np.column_stack([d, d])
    elif dose_kind == "neg":
        X = X - 1.0
    elif dose_kind == "nan":
        X = X.copy()
        X[2, 0] = np.nan
    elif dose_kind == "complex":
        X = X.astype(np.complex128)
    elif dose_kind == "empty":
        X, y = X[:0], y[:0]
    elif dose_kind == "short_y":
        y = y[:-1]
    elif dose_kind == "nan_y":
        y = y.copy()
        y[1] = np.nan
    m = HillRegressor(max_iter=max_iter, n_threads=1)
    res, exc = attempt(m.fit, X, y)
    valid = dose_kind == "ok" and isinstance(max_iter, int) and max_iter >= 1
    if exc is not None:
        assert_names(exc, "X", "y", "dose", "doses", "response", "max_iter", "n_samples")
        assert not valid, f"valid HillRegressor.fit refused: {exc}"
        _done("hill.HillRegressor")
        return
    assert valid, f"invalid HillRegressor.fit accepted (X {dose_kind}, max_iter {max_iter})"
    Xp = {"ok": np.array([[0.5], [2.0]]), "neg": np.array([[-1.0]]),
          "2col": np.ones((2, 2)), "1d": np.ones(2), "nan": np.array([[np.nan]])}[pred_kind]
    pred, exc = attempt(m.predict, Xp)
    if exc is not None:
        assert_names(exc, "X", "doses", "dose")
        assert pred_kind != "ok", f"valid predict refused: {exc}"
    else:
        assert pred_kind == "ok", f"predict accepted X of kind {pred_kind}"
        want = np.asarray(hill_fn(Xp[:, 0], m.rmin_, m.rmax_, m.ec50_, m.n_), float).ravel()
        _close(pred, want, np.float64)
        np.testing.assert_allclose(pred, np.ravel(hill_fn(Xp[:, 0], 0.1, 1.0, 2.0, 1.2)),
                                   atol=1e-3)
    _done("hill.HillRegressor")


@fuzz
@given(kind=st.sampled_from(["Linear", "Conv2d", "DepthwiseConv2d", "PointwiseConv2d",
                             "BatchNorm", "Dropout"]),
       size=st.sampled_from([2, 2, 1, 0, -1, 2.0, True, "2", None]),
       extra=st.sampled_from([None, None, ("kernel_size", 0), ("stride", -1),
                              ("stride", 1.5), ("activation", "gelu"), ("activation", 3),
                              ("momentum", 1.5), ("momentum", float("nan")), ("eps", 0.0),
                              ("eps", -1.0), ("p", 1.0), ("p", -0.1), ("p", float("nan")),
                              ("dtype", np.int32), ("dtype", "nope"), ("init_std", -1.0)]))
def test_nn_layer_constructors(kind, size, extra):
    TRIED["nn.layer constructors"] += 1
    cls = getattr(enn, kind)
    takes = {"Linear": ("dtype", "init_std"), "Conv2d": ("kernel_size", "stride",
                                                         "activation", "dtype"),
             "DepthwiseConv2d": ("kernel_size", "stride", "activation", "dtype"),
             "PointwiseConv2d": ("activation", "dtype"),
             "BatchNorm": ("momentum", "eps", "activation", "dtype"),
             "Dropout": ("p", "dtype")}[kind]
    if extra is not None and extra[0] not in takes:
        extra = None
    kw = {} if extra is None else {extra[0]: extra[1]}
    if kind == "Dropout":
        args = ()
        kw.setdefault("p", 0.5)
    elif kind in ("Linear", "Conv2d", "PointwiseConv2d"):
        args = (size, 2)
    else:
        args = (size,)
    layer, exc = attempt(cls, *args, **kw)
    size_ok = kind == "Dropout" or (isinstance(size, int) and not isinstance(size, bool)
                                    and size >= 1)
    valid = size_ok and extra is None
    if exc is not None:
        assert_names(exc, "in_features", "in_channels", "channels", "kernel_size", "stride",
                     "activation", "momentum", "eps", "p", "dtype", "init_std")
        assert not valid, f"valid {kind} constructor refused: {exc}"
    else:
        assert valid, f"invalid {kind} constructor accepted ({size}, {extra})"
        assert all(np.all(np.isfinite(p)) for p in layer.parameters())
    _done("nn.layer constructors")
