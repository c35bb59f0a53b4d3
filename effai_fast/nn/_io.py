"""Weights on disk (.npz, never pickle) and to / from PyTorch state_dicts.

``save(model, path, config=None)`` writes every parameter and buffer under its name plus an
optional JSON ``config`` (a 0-d string array, readable with ``allow_pickle=False``);
``load(model, path)`` reads them back into a model of the same architecture.

PyTorch stores the same tensors in other layouts.  ``load_torch_state_dict`` walks the
model's layers and the state_dict's entries in order (skipping ``num_batches_tracked``),
converting each tensor: dense convolution ``(O, I, kh, kw) -> (kh, kw, I, O)``, depthwise
``(C, 1, kh, kw) -> (kh, kw, C)``, pointwise ``(O, I, 1, 1) -> (I, O)``, linear
``(O, I) -> (I, O)``; batch-norm vectors as they are.  Any count or shape mismatch raises
a ValueError naming both entries.  ``export_torch_state_dict`` goes the other way.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from effai_fast._extras import require
from effai_fast.nn._layers import (
    BatchNorm,
    Conv2d,
    DepthwiseConv2d,
    Linear,
    Module,
    PointwiseConv2d,
)

__all__ = [
    "copy_to_torch",
    "export_torch_state_dict",
    "load",
    "load_torch_state_dict",
    "read_config",
    "save",
]

_CONFIG_KEY = "__config__"


def save(model: Module, path, config: dict | None = None) -> Path:
    """Save parameters and buffers to ``path`` (.npz); ``config`` is stored as JSON."""
    path = Path(path)
    arrays = model.state_dict()
    if _CONFIG_KEY in arrays:  # pragma: no cover - reserved name
        raise ValueError(f"a parameter may not be called {_CONFIG_KEY!r}")
    if config is not None:
        arrays[_CONFIG_KEY] = np.array(json.dumps(config))
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)
    return path


def read_config(path) -> dict | None:
    """The JSON config stored by :func:`save` (None when there is none)."""
    with np.load(path, allow_pickle=False) as z:
        if _CONFIG_KEY not in z.files:
            return None
        return json.loads(str(z[_CONFIG_KEY]))


def load(model: Module, path, strict: bool = True) -> Module:
    """Load weights saved by :func:`save` into ``model`` (in place) and return it.

    Raises
    ------
    ValueError
        On missing / unexpected names (``strict``) or shape mismatches.
    """
    with np.load(path, allow_pickle=False) as z:
        state = {k: z[k] for k in z.files if k != _CONFIG_KEY}
    model.load_state_dict(state, strict=strict)
    return model


def _to_numpy(t) -> np.ndarray:
    if hasattr(t, "detach"):  # torch.Tensor, without importing torch
        t = t.detach().cpu().numpy()
    return np.asarray(t)


def _our_entries(model):
    """(name, layer, kind, array) in PyTorch's per-module order (params, then buffers)."""
    from effai_fast.nn._model import leaf_layers

    entries = []
    for lname, layer in leaf_layers(model):
        prefix = f"{lname}." if lname else ""
        for pname, arr in layer.named_parameters() + layer.named_buffers():
            entries.append((prefix + pname, layer, pname, arr))
    return entries


def _from_torch_layout(layer, pname, value):
    if pname != "weight":
        return value
    if isinstance(layer, Conv2d) and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)
    if isinstance(layer, DepthwiseConv2d) and value.ndim == 4 and value.shape[1] == 1:
        return value[:, 0].transpose(1, 2, 0)
    if isinstance(layer, PointwiseConv2d):
        if value.ndim == 4 and value.shape[2:] == (1, 1):
            return value[:, :, 0, 0].T
        if value.ndim == 2:
            return value.T
    if isinstance(layer, Linear) and value.ndim == 2:
        return value.T
    return value


def _to_torch_layout(layer, pname, arr):
    if pname != "weight":
        return arr
    if isinstance(layer, Conv2d):
        return arr.transpose(3, 2, 0, 1)
    if isinstance(layer, DepthwiseConv2d):
        return arr.transpose(2, 0, 1)[:, None]
    if isinstance(layer, PointwiseConv2d):
        return arr.T[:, :, None, None]
    if isinstance(layer, Linear):
        return arr.T
    return arr


def _torch_items(state_dict):
    return [(k, v) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")]


def load_torch_state_dict(model: Module, state_dict) -> Module:
    """Copy a PyTorch ``state_dict`` of the same architecture into ``model`` (in place).

    Parameters
    ----------
    model : Module
    state_dict : mapping of str to torch.Tensor or ndarray
        E.g. ``torch_model.state_dict()``; entries are matched in order.

    Raises
    ------
    ValueError
        If the number of entries or any converted shape differs.
    """
    ours = _our_entries(model)
    theirs = _torch_items(state_dict)
    if len(ours) != len(theirs):
        raise ValueError(f"the state_dict has {len(theirs)} tensors (without "
                         f"num_batches_tracked), the model has {len(ours)}: not the same "
                         f"architecture")
    converted = []
    for (name, layer, pname, arr), (tname, tval) in zip(ours, theirs):
        value = _from_torch_layout(layer, pname, _to_numpy(tval))
        if value.shape != arr.shape:
            raise ValueError(f"shape mismatch: state_dict entry {tname!r} "
                             f"{tuple(_to_numpy(tval).shape)} converts to {value.shape}, the "
                             f"model's {name!r} ({type(layer).__name__}) is {arr.shape}")
        converted.append((arr, value))
    for arr, value in converted:
        arr[...] = value
    return model


def export_torch_state_dict(model: Module, reference) -> dict:
    """The model's weights in PyTorch layouts, under the keys of ``reference``.

    Parameters
    ----------
    reference : mapping
        A state_dict of the PyTorch model of the same architecture (its keys and order are
        used; ``num_batches_tracked`` entries are passed through).

    Returns
    -------
    dict of str to ndarray
        ``torch_model.load_state_dict({k: torch.from_numpy(v) ...})`` loads it.
    """
    ours = _our_entries(model)
    theirs = _torch_items(reference)
    if len(ours) != len(theirs):
        raise ValueError(f"the reference has {len(theirs)} tensors, the model {len(ours)}")
    out = {}
    it = iter(ours)
    for key, val in reference.items():
        if key.endswith("num_batches_tracked"):
            out[key] = _to_numpy(val)
            continue
        name, layer, pname, arr = next(it)
        value = np.ascontiguousarray(_to_torch_layout(layer, pname, arr))
        if value.shape != tuple(_to_numpy(val).shape):
            raise ValueError(f"shape mismatch: {name!r} exports as {value.shape}, reference "
                             f"{key!r} is {tuple(_to_numpy(val).shape)}")
        out[key] = value
    return out


def copy_to_torch(model: Module, torch_module):
    """Load the model's weights and batch-norm statistics into a PyTorch module.

    Parameters
    ----------
    model : Module
        The effai_fast model.
    torch_module : torch.nn.Module
        A PyTorch model of the same architecture (see :func:`export_torch_state_dict`);
        its tensors keep their dtype (values are converted on copy).

    Returns
    -------
    torch.nn.Module
        ``torch_module``, updated in place.

    Raises
    ------
    TypeError
        If ``torch_module`` is not a ``torch.nn.Module``.
    ValueError
        On a tensor count or shape mismatch.
    """
    torch = require("torch", "copying weights into a PyTorch model")
    if not isinstance(torch_module, torch.nn.Module):
        raise TypeError(f"torch_module must be a torch.nn.Module, got "
                        f"{type(torch_module).__name__}")
    sd = export_torch_state_dict(model, torch_module.state_dict())
    torch_module.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                                  for k, v in sd.items()})
    return torch_module


_ = (BatchNorm,)  # layer types referenced in the module docstring
