"""effai_fast.surrogate.screen: top-k against brute force, streams, Dask."""

import io

import numpy as np
import pytest

from effai_fast.surrogate import (
    DesignSpec,
    Domain,
    GaussianProcess,
    RBFInterpolant,
    expected_improvement,
    get_problem,
    latin_hypercube,
    screen,
)
from effai_fast.surrogate._screen import _Progress, _select


@pytest.fixture(scope="module")
def branin_gp():
    p = get_problem("branin")
    X = latin_hypercube(p.domain, 25, seed=0)
    return p, GaussianProcess(optimizer=None, kernel="matern52",
                              length_scale=[3.0, 4.0]).fit(X, p(X))


def _brute(values, k, maximize=True):
    key = values if maximize else -values
    order = np.lexsort((np.arange(len(values)), -key))
    return order[:k]


@pytest.mark.parametrize("maximize", [True, False])
def test_screen_array_equals_brute_force(branin_gp, maximize, n_threads):
    p, gp = branin_gp
    C = p.domain.from_unit(np.random.default_rng(1).random((5000, 2)))
    res = screen(gp, C, top_k=17, maximize=maximize, chunk_size=333, n_threads=n_threads)
    pred = gp.predict(C)
    idx = _brute(pred, 17, maximize)
    np.testing.assert_array_equal(res.index, idx)
    np.testing.assert_array_equal(res.X, C[idx])
    np.testing.assert_allclose(res.value, pred[idx], rtol=1e-14)
    assert res.std is None and res.n_screened == 5000 and res.rate > 0


def test_screen_ties_and_nan_are_deterministic():
    class Const:
        n_features_in_ = 1

        def predict(self, X):
            v = np.round(X[:, 0] * 3) / 3  # many ties
            v[X[:, 0] > 0.9] = np.nan
            return v

    C = np.random.default_rng(0).random((1000, 1))
    res = screen(Const(), C, top_k=50, chunk_size=64)
    pred = Const().predict(C)
    key = np.where(np.isnan(pred), -np.inf, pred)
    np.testing.assert_array_equal(res.index, _brute(key, 50))
    res_all = screen(Const(), C, top_k=5000)  # top_k > count: all, ranked
    assert len(res_all) == 1000
    assert np.isnan(res_all.value[-1])


def test_select_matches_lexsort(rng):
    key = rng.integers(0, 5, 200).astype(float)
    idx = rng.permutation(200)
    for k in (1, 7, 50, 200, 300):
        got = _select(key, idx, k)
        ref = np.lexsort((idx, -key))[:k]
        np.testing.assert_array_equal(got, ref)


def test_screen_design_spec_and_generator(branin_gp):
    p, gp = branin_gp
    spec = DesignSpec(p.domain, 20_000, seed=3)
    res = screen(gp, spec, top_k=9, maximize=False, chunk_size=4096)
    full = spec.generate(0, 20_000)
    idx = _brute(gp.predict(full), 9, maximize=False)
    np.testing.assert_array_equal(res.index, idx)
    np.testing.assert_array_equal(res.X, full[idx])
    gen = (full[a:a + 3000] for a in range(0, 20_000, 3000))
    res2 = screen(gp, gen, top_k=9, maximize=False, chunk_size=1000)
    np.testing.assert_array_equal(res2.index, idx)
    assert res2.n_screened == 20_000


def test_screen_with_acquisition_score(branin_gp):
    p, gp = branin_gp
    C = latin_hypercube(p.domain, 3000, seed=4)
    best = float(gp.y_train_.min())

    def ei(m, s):
        return expected_improvement(m, s, best, log=True)

    res = screen(gp, C, top_k=5, score=ei, chunk_size=512)
    m, s = gp.predict(C, return_std=True)
    ref = ei(m, s)
    np.testing.assert_array_equal(res.index, _brute(ref, 5))
    np.testing.assert_allclose(res.std, s[res.index], rtol=1e-12)


def test_screen_bad_input(branin_gp):
    p, gp = branin_gp
    C = latin_hypercube(p.domain, 10, seed=0)
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        screen(gp, C, top_k=0)
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        screen(gp, C, top_k=1, chunk_size=0)
    with pytest.raises(ValueError, match="candidates must have 2 columns"):
        screen(gp, np.zeros((5, 3)), top_k=1)
    with pytest.raises(ValueError, match="candidates must not contain NaN"):
        screen(gp, np.full((5, 2), np.nan), top_k=1)
    with pytest.raises(ValueError, match="3 dimensions but the model expects 2"):
        screen(gp, DesignSpec(Domain([0, 0, 0], [1, 1, 1]), 10), top_k=1)
    with pytest.raises(ValueError, match="candidates must not be empty"):
        screen(gp, iter([]), top_k=1)
    with pytest.raises(ValueError, match="gives no std"):
        screen(RBFInterpolant().fit(C, p(C)), C, top_k=1, return_std=True)
    with pytest.raises(TypeError, match="predict"):
        screen(object(), C, top_k=1)


def test_progress_bar_plain_stderr():
    buf = io.StringIO()
    prog = _Progress(100, True, stream=buf, min_interval=0.0)
    prog.update(50)
    prog.close(100)
    out = buf.getvalue()
    assert "screen:  50.0%" in out and "candidates in" in out
    calls = []
    prog = _Progress(10, lambda done, total: calls.append((done, total)))
    prog.update(5)
    prog.close(10)
    assert calls == [(5, 10), (10, 10)]


# ------------------------------------------------------------------ Dask
@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_dask_equals_serial(branin_gp, dask_client):
    p, gp = branin_gp
    spec = DesignSpec(p.domain, 30_000, seed=7, method="uniform")
    serial = screen(gp, spec, top_k=11, maximize=False, chunk_size=2048)
    dist = screen(gp, spec, top_k=11, maximize=False, chunk_size=2048, client=dask_client)
    np.testing.assert_array_equal(dist.index, serial.index)
    np.testing.assert_array_equal(dist.X, serial.X)
    np.testing.assert_array_equal(dist.value, serial.value)
    assert dist.n_screened == 30_000
    C = spec.generate(0, 5000)
    np.testing.assert_array_equal(
        screen(gp, C, top_k=4, chunk_size=700, client=dask_client).index,
        screen(gp, C, top_k=4, chunk_size=700).index)
    gen = (C[a:a + 900] for a in range(0, 5000, 900))
    np.testing.assert_array_equal(
        screen(gp, gen, top_k=4, client=dask_client, return_std=True).index,
        screen(gp, C, top_k=4).index)


@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_dask_disconnect_mid_screen_raises(branin_gp):
    distributed = pytest.importorskip("distributed")
    p, gp = branin_gp
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    spec = DesignSpec(p.domain, 40_000, seed=1)

    def kill(done, total):
        if done < total:
            client.close()

    try:
        with pytest.raises(RuntimeError, match="disconnected during screen"):
            screen(gp, spec, top_k=3, chunk_size=1024, client=client, progress=kill)
        with pytest.raises(RuntimeError, match="not connected"):
            screen(gp, spec, top_k=3, client=client)
    finally:
        client.close()
        cluster.close()


def test_screen_with_additive_network_if_merged():
    """effai_fast.additive.AdditiveNetwork plugs in through the estimator protocol."""
    additive = pytest.importorskip("effai_fast.additive")
    if not hasattr(additive, "AdditiveNetwork"):
        pytest.skip("effai_fast.additive.AdditiveNetwork is not merged on this branch")
    p = get_problem("ishigami")
    X = latin_hypercube(p.domain, 200, seed=0)
    model = additive.AdditiveNetwork().fit(X, p(X))
    C = latin_hypercube(p.domain, 4000, seed=1)
    res = screen(model, C, top_k=7, chunk_size=1000)
    np.testing.assert_array_equal(res.index, _brute(np.asarray(model.predict(C)), 7))
