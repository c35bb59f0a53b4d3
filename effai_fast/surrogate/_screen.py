"""Screening: the top-k of any number of candidates under a surrogate.

Design note
-----------
Candidates arrive in chunks (slices of an array, chunks of a user iterable, or
rows ``[a, b)`` generated from a :class:`~effai_fast.surrogate.DesignSpec`).
Each chunk is predicted by the compiled kernels and reduced to its own top-k
with ``np.argpartition`` (O(chunk)), then merged into the running top-k
(O(k)): memory is O(chunk_size + k) whatever the number of candidates.

The order is *total*: by value (NaN ranks last), ties broken by the global
candidate index.  The top-k of a union is then the top-k of the per-part top-k,
whatever the partition -- so a Dask screen, which splits the stream into
ranges screened on different workers and merges their top-k, returns exactly
the serial result (a design spec generates the same rows for a range wherever
it runs).

On Dask, every task's future is awaited; if the client or a worker goes away
mid-screen, ``screen`` raises ``RuntimeError`` and returns nothing (a partial
top-k would silently be wrong).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from effai_fast._threads import resolve_n_threads
from effai_fast._validation import as_float_array, check_int
from effai_fast.surrogate._base import has_std, predict_with
from effai_fast.surrogate._design import DesignSpec

__all__ = ["ScreenResult", "screen"]


@dataclass
class ScreenResult:
    """The best candidates of a screen, best first.

    Attributes
    ----------
    X : ndarray of shape (k, d)
    value : ndarray of shape (k,)
        The ranked quantity: the prediction, or the score when ``score`` was given.
    mean : ndarray of shape (k,)
        Predicted mean.
    std : ndarray of shape (k,) or None
        Predictive standard deviation (models that have it, when requested).
    index : ndarray of shape (k,)
        Global candidate indices (row numbers in the candidate stream).
    n_screened : int
    seconds : float
    """

    X: np.ndarray
    value: np.ndarray
    mean: np.ndarray
    std: np.ndarray | None
    index: np.ndarray
    n_screened: int
    seconds: float

    @property
    def rate(self) -> float:
        """Candidates per second."""
        return self.n_screened / self.seconds if self.seconds > 0 else float("inf")

    def __len__(self) -> int:
        return len(self.index)


# ------------------------------------------------------------------ top-k merge
class _TopK:
    """Running top-k under the total order (key descending, index ascending)."""

    def __init__(self, k: int):
        self.k = k
        self.key = np.empty(0)
        self.idx = np.empty(0, dtype=np.int64)
        self.X = None
        self.value = np.empty(0)
        self.mean = np.empty(0)
        self.std = None

    def push(self, key, idx, X, value, mean, std):
        """Merge candidates (already reduced or not) into the running top-k."""
        sel = _select(key, idx, self.k)
        if self.X is None:
            self.X = np.empty((0, X.shape[1]), dtype=X.dtype)
            if std is not None:
                self.std = np.empty(0)
        cat = np.concatenate
        key2 = cat([self.key, key[sel]])
        idx2 = cat([self.idx, idx[sel]])
        X2 = cat([self.X, X[sel]])
        value2 = cat([self.value, value[sel]])
        mean2 = cat([self.mean, mean[sel]])
        std2 = cat([self.std, std[sel]]) if std is not None else None
        keep = _select(key2, idx2, self.k)
        self.key, self.idx, self.X = key2[keep], idx2[keep], X2[keep]
        self.value, self.mean = value2[keep], mean2[keep]
        self.std = std2[keep] if std2 is not None else None

    def as_tuple(self):
        return self.key, self.idx, self.X, self.value, self.mean, self.std


def _select(key: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best by (key desc, idx asc), sorted best first."""
    n = key.shape[0]
    if n > k:
        part = np.argpartition(-key, k - 1)[:k]
        thr = key[part].min()
        better = np.flatnonzero(key > thr)
        ties = np.flatnonzero(key == thr)
        if better.size + ties.size > k:
            ties = ties[np.argsort(idx[ties], kind="stable")[: k - better.size]]
        cand = np.concatenate([better, ties])
    else:
        cand = np.arange(n)
    order = np.lexsort((idx[cand], -key[cand]))
    return cand[order]


def _check_chunk(chunk, d: int | None) -> np.ndarray:
    """Validate one chunk of a candidate stream (``d`` = the model's feature count)."""
    X = as_float_array(chunk, "candidates chunk", ndim=2, finite=True, allow_empty=True)
    if d is not None and X.shape[1] != d:
        raise ValueError(f"candidates chunk must have {d} columns, got shape {X.shape}")
    return X


def _score_chunk(model, X, offset, *, need_std, maximize, score, n_threads):
    """Predict one chunk; return (key, idx, X, value, mean, std)."""
    mean, std = predict_with(model, X, return_std=need_std, n_threads=n_threads)
    mean = mean.astype(np.float64, copy=False)
    if std is not None:
        std = std.astype(np.float64, copy=False)
    if score is not None:
        value = np.asarray(score(mean, std), dtype=np.float64).reshape(mean.shape)
        key = value
    else:
        value = mean
        key = mean if maximize else -mean
    key = np.where(np.isnan(key), -np.inf, key)
    idx = np.arange(offset, offset + X.shape[0], dtype=np.int64)
    return key, idx, X, value, mean, std


def _screen_range(model, source, start, stop, chunk_size, top_k, need_std, maximize, score,
                  n_threads):
    """Screen rows [start, stop) of an array or a DesignSpec; return the local top-k."""
    top = _TopK(top_k)
    if isinstance(source, DesignSpec):
        chunks = source.chunks(chunk_size, start, stop)
    else:
        chunks = ((a, source[a - start:min(stop, a + chunk_size) - start])
                  for a in range(start, stop, chunk_size))
    for a, X in chunks:
        top.push(*_score_chunk(model, np.ascontiguousarray(X), a, need_std=need_std,
                               maximize=maximize, score=score, n_threads=n_threads))
    return top.as_tuple()


# ------------------------------------------------------------------ progress bar
class _Progress:
    """A one-line progress report on stderr (no dependency)."""

    def __init__(self, total, enabled, stream=None, min_interval=0.5, delay=2.0):
        self.total = total
        self.stream = stream or sys.stderr
        self.callback = enabled if callable(enabled) else None
        self.auto = enabled is None
        self.enabled = bool(enabled) if not callable(enabled) and enabled is not None else True
        if self.auto:
            self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.min_interval = min_interval
        self.delay = delay if self.auto else 0.0
        self.shown = False

    def update(self, done):
        if self.callback is not None:
            self.callback(done, self.total)
            return
        if not self.enabled:
            return
        now = time.perf_counter() - self.t0
        if now < self.delay or now - self.last < self.min_interval:
            return
        self.last = now
        rate = done / now if now > 0 else 0.0
        if self.total:
            eta = (self.total - done) / rate if rate > 0 else float("inf")
            msg = (f"\rscreen: {100.0 * done / self.total:5.1f}% {done:.3g}/{self.total:.3g} "
                   f"candidates, {rate:.3g}/s, eta {eta:.0f} s ")
        else:
            msg = f"\rscreen: {done:.3g} candidates, {rate:.3g}/s "
        self.stream.write(msg)
        self.stream.flush()
        self.shown = True

    def close(self, done):
        if self.callback is not None:
            self.callback(done, self.total)
            return
        if self.shown:
            self.update_final(done)

    def update_final(self, done):
        now = time.perf_counter() - self.t0
        self.stream.write(f"\rscreen: {done:.3g} candidates in {now:.1f} s "
                          f"({done / max(now, 1e-9):.3g}/s)\n")
        self.stream.flush()


# ------------------------------------------------------------------ public API
def screen(model, candidates, *, top_k: int, maximize: bool = True,
           chunk_size: int = 1 << 16, n_threads: int | None = None, client=None,
           progress=None, score: Callable | None = None,
           return_std: bool | None = None) -> ScreenResult:
    """Return the ``top_k`` best candidates under a fitted surrogate.

    Parameters
    ----------
    model : fitted estimator
        Anything with ``predict(X)`` (and ``predict(X, return_std=True)`` for
        uncertainty): the surrogates of this package, a scikit-learn regressor,
        ``effai_fast.additive.AdditiveNetwork``...
    candidates : ndarray (m, d), DesignSpec, or iterable of ndarray chunks
        A design spec is generated chunk by chunk (``DesignSpec(domain, 10**9,
        seed)`` never exists in memory at once).
    top_k : int
        Number of candidates to return (at most the number of candidates; a
        larger value returns them all, ranked).
    maximize : bool, default=True
        Rank by largest (True) or smallest (False) prediction.  Ignored when
        ``score`` is given (scores are maximised).
    chunk_size : int, default=65536
        Rows predicted at a time (memory is O(chunk_size + top_k)).
    n_threads : int or None
        OpenMP threads of the prediction kernels (per Dask task with a client).
    client : dask.distributed.Client, optional
        Split the stream across the cluster's workers and merge their top-k;
        the result is exactly the serial one.  Needs the ``dask`` extra.
    progress : None, bool or callable
        None: a one-line progress report on stderr when it is a terminal and the
        run lasts over 2 s; True/False: always/never; a callable
        ``progress(done, total)`` is called after every chunk instead.
    score : callable, optional
        ``score(mean, std) -> array`` to maximise (an acquisition function);
        ``std`` is None for models without uncertainty.
    return_std : bool or None
        Ask the model for its std (default: when ``score`` is given and the
        model has one).

    Returns
    -------
    ScreenResult
        ``X``, ``value``, ``mean``, ``std``, ``index`` of the best candidates (best
        first), ``n_screened``, ``seconds`` and ``rate``.

    Raises
    ------
    ValueError
        For a bad ``top_k``/``chunk_size``, candidates of the wrong width, or no
        candidates at all.
    RuntimeError
        If a Dask client disconnects mid-screen (no partial result is returned).

    Examples
    --------
    >>> from effai_fast.surrogate import (DesignSpec, GaussianProcess, get_problem,
    ...                                   latin_hypercube, screen)
    >>> prob = get_problem("branin")
    >>> X = latin_hypercube(prob.domain, 30, seed=0)
    >>> gp = GaussianProcess(seed=0).fit(X, prob(X))
    >>> res = screen(gp, DesignSpec(prob.domain, 2**16, seed=1), top_k=5, maximize=False)
    >>> res.X.shape, res.n_screened
    ((5, 2), 65536)
    """
    top_k = check_int(top_k, "top_k", min_value=1)
    chunk_size = check_int(chunk_size, "chunk_size", min_value=1)
    nt = resolve_n_threads(n_threads)
    if not hasattr(model, "predict"):
        raise TypeError(f"model must have a predict method, got {type(model).__name__}")
    d = getattr(model, "n_features_in_", None)
    if return_std is None:
        need_std = score is not None and has_std(model)
    else:
        need_std = bool(return_std)
        if need_std and not has_std(model):
            raise ValueError(f"return_std=True but {type(model).__name__} gives no std")
    if score is not None and not callable(score):
        raise TypeError("score must be a callable score(mean, std) -> array")
    kw = dict(need_std=need_std, maximize=maximize, score=score)

    t0 = time.perf_counter()
    if isinstance(candidates, DesignSpec):
        if d is not None and candidates.domain.d != d:
            raise ValueError(f"candidates have {candidates.domain.d} dimensions but the "
                             f"model expects {d}")
        total = candidates.n
        source = candidates
    elif isinstance(candidates, np.ndarray) or (
            not isinstance(candidates, Iterable) or isinstance(candidates, (list, tuple))):
        source = as_float_array(candidates, "candidates", ndim=2, finite=True)
        if d is not None and source.shape[1] != d:
            raise ValueError(f"candidates must have {d} columns, got shape {source.shape}")
        total = source.shape[0]
    else:
        source = iter(candidates)
        total = None
    prog = _Progress(total, progress)
    if client is not None:
        from effai_fast.surrogate._dask import screen_dask

        top, n_done = screen_dask(client, model, source, total, chunk_size, top_k, nt, prog,
                                  **kw)
    else:
        top = _TopK(top_k)
        n_done = 0
        if isinstance(source, DesignSpec):
            # One Sobol' stream (not an engine fast-forwarded per chunk); chunk i+1
            # is generated in a helper thread while chunk i is predicted (scipy and
            # numpy release the GIL for most of the generation).
            from concurrent.futures import ThreadPoolExecutor

            stream = source.chunks(chunk_size)
            with ThreadPoolExecutor(max_workers=1) as pool:
                nxt = pool.submit(next, stream, None)
                while True:
                    item = nxt.result()
                    if item is None:
                        break
                    a, X = item
                    nxt = pool.submit(next, stream, None)
                    top.push(*_score_chunk(model, X, a, n_threads=nt, **kw))
                    n_done = a + X.shape[0]
                    prog.update(n_done)
        elif total is not None:
            for a in range(0, total, chunk_size):
                b = min(total, a + chunk_size)
                top.push(*_score_chunk(model, source[a:b], a, n_threads=nt, **kw))
                n_done = b
                prog.update(n_done)
        else:
            for chunk in source:
                X = _check_chunk(chunk, d)
                if X.shape[0] == 0:
                    continue
                for a in range(0, X.shape[0], chunk_size):
                    part = X[a:a + chunk_size]
                    top.push(*_score_chunk(model, part, n_done, n_threads=nt, **kw))
                    n_done += part.shape[0]
                    prog.update(n_done)
    seconds = time.perf_counter() - t0
    prog.close(n_done)
    if n_done == 0:
        raise ValueError("candidates must not be empty")
    _, idx, X, value, mean, std = top.as_tuple()
    return ScreenResult(X=X, value=value, mean=mean, std=std if need_std else None,
                        index=idx, n_screened=int(n_done), seconds=seconds)


def _split_ranges(total: int, n_parts: int, chunk_size: int):
    """[a, b) ranges covering [0, total), aligned to chunk_size, about n_parts of them."""
    per = max(chunk_size, math.ceil(total / max(1, n_parts) / chunk_size) * chunk_size)
    return [(a, min(total, a + per)) for a in range(0, total, per)]
