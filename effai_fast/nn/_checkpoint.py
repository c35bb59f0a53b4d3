"""Training checkpoints on disk: one ``.npz`` of arrays plus a JSON metadata string.

Used by :func:`effai_fast.nn.fit` and :class:`effai_fast.distill.Distiller` to resume a
killed run.  The file never holds a pickle (``np.load(..., allow_pickle=False)`` reads it) and
is written atomically: the arrays go to a temporary file in the same directory, which is
flushed to disk and then renamed over the target with :func:`os.replace`, so a run killed
while writing leaves the previous checkpoint intact.

Random generators are stored through ``Generator.bit_generator.state`` (a dict of ints, and
of arrays for e.g. MT19937), encoded in the JSON; restoring it continues the stream exactly,
which is what makes a resumed run bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["dropout_generators", "get_rng_state", "read_checkpoint", "read_resumable",
           "set_rng_state",
           "write_checkpoint"]

_META_KEY = "__meta__"


def _encode(obj):
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": obj.dtype.str}
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def _decode(obj):
    if isinstance(obj, dict):
        if "__ndarray__" in obj:
            return np.array(obj["__ndarray__"], dtype=obj["dtype"])
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_decode(v) for v in obj]
    return obj


def get_rng_state(rng: np.random.Generator) -> dict:
    """The state of a numpy Generator as a JSON-encodable dict."""
    return _encode(rng.bit_generator.state)


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    """Restore a state returned by :func:`get_rng_state` into ``rng`` (in place)."""
    state = _decode(state)
    name = type(rng.bit_generator).__name__
    if state.get("bit_generator") != name:
        raise ValueError(f"the checkpoint's random generator is a {state.get('bit_generator')}, "
                         f"this run's is a {name}")
    rng.bit_generator.state = state


def dropout_generators(model) -> list[np.random.Generator]:
    """The generators of the model's Dropout layers, depth first (empty for other models)."""
    from effai_fast.nn._layers import Dropout, Module
    from effai_fast.nn._model import leaf_layers

    if not isinstance(model, Module):
        return []
    return [layer.rng for _, layer in leaf_layers(model) if isinstance(layer, Dropout)]


def write_checkpoint(path, arrays: dict[str, np.ndarray], meta: dict) -> Path:
    """Write ``arrays`` and the JSON ``meta`` to ``path`` atomically (temp file + os.replace)."""
    path = Path(path)
    if _META_KEY in arrays:  # pragma: no cover - reserved name
        raise ValueError(f"an array may not be called {_META_KEY!r}")
    payload = dict(arrays)
    payload[_META_KEY] = np.array(json.dumps(_encode(meta)))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def read_checkpoint(path, fmt: str) -> tuple[dict[str, np.ndarray], dict]:
    """Read a checkpoint written by :func:`write_checkpoint`; check its ``format`` entry.

    Raises
    ------
    ValueError
        When the file is not a checkpoint of format ``fmt``.
    """
    if not zipfile.is_zipfile(path):
        raise ValueError(f"checkpoint {path} cannot be read: not an .npz file")
    try:
        with np.load(Path(path), allow_pickle=False) as z:
            if _META_KEY not in z.files:
                raise ValueError(f"checkpoint {path} is not an effai_fast checkpoint")
            meta = json.loads(str(z[_META_KEY]))
            arrays = {k: z[k] for k in z.files if k != _META_KEY}
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"checkpoint {path} cannot be read: {exc}") from exc
    if meta.get("format") != fmt:
        raise ValueError(f"checkpoint {path} has format {meta.get('format')!r}, expected "
                         f"{fmt!r}")
    return arrays, meta


def read_resumable(path, fmt: str, fingerprint: dict, model, what: str = "model"):
    """Read a checkpoint to resume a run from, refusing one written for another run.

    Checks every entry of ``fingerprint`` (data shape, epochs, ...) against the saved
    one and that ``model`` has as many Dropout generators as were saved.

    Returns
    -------
    arrays, meta, generators
        The saved arrays and metadata, and ``model``'s Dropout generators (in the
        saved order) for the caller to restore.
    """
    arrays, meta = read_checkpoint(path, fmt)
    saved = meta["fingerprint"]
    for key, value in fingerprint.items():
        if saved.get(key) != value:
            raise ValueError(f"checkpoint {path} was written for another run: its {key} is "
                             f"{saved.get(key)!r}, this run's is {value!r} (pass resume=False "
                             f"to start afresh and overwrite it)")
    gens = dropout_generators(model)
    if len(gens) != len(meta["dropout_rngs"]):
        raise ValueError(f"checkpoint {path} has {len(meta['dropout_rngs'])} dropout "
                         f"generators, the {what} has {len(gens)} Dropout layers")
    return arrays, meta, gens
