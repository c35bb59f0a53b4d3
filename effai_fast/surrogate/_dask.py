"""Screening on a ``dask.distributed`` cluster (optional extra ``dask``).

The candidate stream is split into ranges aligned to ``chunk_size`` (a design
spec is regenerated on the worker from its seed; an array is sliced and sent;
the chunks of an iterable are sent as they come, a bounded number in flight).
Each task returns its local top-k; the client merges them under the same total
order as the serial screen, so the result is identical.  The model is
scattered once (broadcast) and shared by the tasks.

Every future is awaited.  When the client, the scheduler or a worker goes away
mid-screen the remaining futures fail or are cancelled: that is turned into a
``RuntimeError`` and no partial result is returned.
"""

from __future__ import annotations

from effai_fast._extras import require
from effai_fast.surrogate._design import DesignSpec
from effai_fast.surrogate._screen import _check_chunk, _screen_range, _split_ranges, _TopK

__all__ = ["screen_dask"]


def _task(model, source, start, stop, chunk_size, top_k, need_std, maximize, score,
          n_threads):
    return _screen_range(model, source, start, stop, chunk_size, top_k, need_std, maximize,
                         score, n_threads)


def _lost(exc) -> RuntimeError:
    return RuntimeError(
        "the Dask client/cluster disconnected during screen(); no partial result is "
        f"returned ({type(exc).__name__}: {exc})")


def screen_dask(client, model, source, total, chunk_size, top_k, n_threads, prog, *,
                need_std, maximize, score):
    distributed = require("distributed", "screen(client=...)")
    if not isinstance(client, distributed.Client):
        raise TypeError(f"client must be a dask.distributed.Client, got "
                        f"{type(client).__name__}")
    if client.status not in ("running", "connecting", "newly-created"):
        raise RuntimeError(f"the Dask client is not connected (status {client.status!r})")
    args = (top_k, need_std, maximize, score, n_threads)
    fatal = (distributed.client.FutureCancelledError
             if hasattr(distributed.client, "FutureCancelledError") else ())
    lost_types = tuple(t for t in (
        getattr(distributed.comm.core, "CommClosedError", None),
        getattr(distributed, "TimeoutError", None),
        fatal or None, OSError, TimeoutError) if isinstance(t, type))
    try:
        import asyncio

        lost_types = lost_types + (asyncio.CancelledError,)
    except ImportError:  # pragma: no cover
        pass

    top = _TopK(top_k)
    n_done = 0
    try:
        model_f = client.scatter(model, broadcast=True, hash=False)
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        if total is not None:
            ranges = _split_ranges(total, 4 * n_workers, chunk_size)
            futures = []
            for a, b in ranges:
                src = source if isinstance(source, DesignSpec) else source[a:b]
                futures.append(client.submit(_task, model_f, src, a, b, chunk_size, *args,
                                             pure=False))
            sizes = {f.key: b - a for f, (a, b) in zip(futures, ranges, strict=True)}
            for fut in distributed.as_completed(futures):
                res = fut.result()
                top.push(*res)
                n_done += sizes[fut.key]
                prog.update(n_done)
        else:
            in_flight = []
            offset = 0
            limit = 2 * n_workers

            def drain(block_all):
                nonlocal n_done
                while in_flight and (block_all or len(in_flight) >= limit):
                    fut, size = in_flight.pop(0)
                    top.push(*fut.result())
                    n_done += size
                    prog.update(n_done)

            d = getattr(model, "n_features_in_", None)
            for chunk in source:
                X = _check_chunk(chunk, d)
                if X.shape[0] == 0:
                    continue
                fut = client.submit(_task, model_f, X, offset, offset + X.shape[0],
                                    chunk_size, *args, pure=False)
                in_flight.append((fut, X.shape[0]))
                offset += X.shape[0]
                drain(False)
            drain(True)
    except lost_types as exc:
        raise _lost(exc) from exc
    except Exception as exc:
        if client.status not in ("running",):
            raise _lost(exc) from exc
        raise
    if client.status not in ("running",):
        raise _lost(RuntimeError(f"client status {client.status!r}"))
    return top, n_done
