"""Optimisers that update numpy parameter arrays in place: SGD (momentum, Nesterov) and AdamW.

Design
------
A parameter is a plain, C-contiguous float32/float64 numpy array; its gradient is another
array of the same shape and dtype.  An optimiser holds references to the parameter arrays and
updates them **in place**, so a layer that owns the arrays sees the new values without any
copying, exactly as ``torch.optim`` updates ``Parameter.data``.

Parameters are given either as a list of arrays (one group, the constructor's options) or as
a list of *parameter groups*: dicts with a ``"params"`` list and any of the options that should
differ for that group (``lr``, ``weight_decay``, ``momentum``, ...).  This is how depthwise
filters, batch-norm scales/shifts and biases are excluded from weight decay, as the MobileNet
paper recommends ("very little or no weight decay on the depthwise filters").  A group may also
carry a ``"grads"`` list of gradient arrays aligned with its ``"params"``: layers of
:mod:`effai_fast.nn` keep persistent gradient buffers that ``backward`` overwrites, so
``optimizer.step()`` needs no argument.  Without stored gradients, ``step(grads)`` takes a list
aligned with :attr:`Optimizer.params` (the groups' parameters, concatenated in order).

The update rules are those of PyTorch (``torch.optim.SGD`` and ``torch.optim.AdamW``, defaults
``maximize=False``, ``amsgrad=False``), so a training step reproduces PyTorch's to rounding.
Every update is a fixed sequence of elementwise numpy operations: results are deterministic
and independent of the thread count.  ``state_dict()`` returns a flat ``{str: ndarray}``
dictionary that :func:`numpy.savez` stores as is (no pickle); ``load_state_dict`` restores it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from effai_fast._validation import check_real

__all__ = ["SGD", "AdamW", "Optimizer"]


def _check_param(p, where: str) -> np.ndarray:
    if not isinstance(p, np.ndarray):
        raise TypeError(f"{where} must be a numpy.ndarray, got {type(p).__name__}")
    if p.dtype not in (np.float32, np.float64):
        raise TypeError(f"{where} must have dtype float32 or float64, got {p.dtype}")
    if not p.flags.writeable:
        raise ValueError(f"{where} must be writeable (the optimiser updates it in place)")
    return p


class Optimizer:
    """Base class: parameter groups, gradient matching, state save/load.

    Subclasses define ``_defaults`` (option name -> default), ``_check_options`` and
    ``_update(group, index, p, g)``.
    """

    _defaults: dict = {}
    _state_keys: tuple[str, ...] = ()

    def __init__(self, params, **options):
        defaults = dict(self._defaults)
        for key, value in options.items():
            if key not in defaults:
                raise TypeError(f"{type(self).__name__} got an unexpected option {key!r}")
            defaults[key] = value
        self._check_options(defaults, "")
        self.defaults = defaults
        if isinstance(params, np.ndarray):
            raise TypeError("params must be a list of arrays or of parameter groups, "
                            "got a single array (wrap it in a list)")
        params = list(params)
        if not params:
            raise ValueError("params must not be empty")
        if all(isinstance(p, Mapping) for p in params):
            groups = [dict(g) for g in params]
        elif any(isinstance(p, Mapping) for p in params):
            raise TypeError("params must be either all arrays or all parameter-group dicts")
        else:
            groups = [{"params": params}]
        self.param_groups: list[dict] = []
        self.params: list[np.ndarray] = []
        seen: set[int] = set()
        for gi, group in enumerate(groups):
            if "params" not in group:
                raise ValueError(f"param group {gi} has no 'params' entry")
            unknown = set(group) - set(defaults) - {"params", "grads", "name"}
            if unknown:
                raise TypeError(f"param group {gi} has unknown option(s) {sorted(unknown)}")
            plist = group["params"]
            if isinstance(plist, np.ndarray):
                plist = [plist]
            plist = list(plist)
            for k, p in enumerate(plist):
                _check_param(p, f"params (group {gi}, parameter {k})")
                if id(p) in seen:
                    raise ValueError(f"params (group {gi}, parameter {k}) appears twice")
                seen.add(id(p))
            full = dict(defaults)
            full.update({k: v for k, v in group.items() if k not in ("params", "grads")})
            self._check_options(full, f"param group {gi}: ")
            full["params"] = plist
            if group.get("grads") is not None:
                glist = list(group["grads"])
                if len(glist) != len(plist):
                    raise ValueError(f"param group {gi}: grads has {len(glist)} arrays for "
                                     f"{len(plist)} params")
                for k, (p, g) in enumerate(zip(plist, glist)):
                    self._check_grad(g, p, f"grads (group {gi}, parameter {k})")
                full["grads"] = glist
            else:
                full["grads"] = None
            self.param_groups.append(full)
            self.params.extend(plist)
        self.step_count = 0
        self.state: list[dict[str, np.ndarray]] = [{} for _ in self.params]

    # ------------------------------------------------------------------ options
    def _check_options(self, opts: dict, where: str) -> None:
        check_real(opts["lr"], where + "lr", min_value=0.0)
        check_real(opts["weight_decay"], where + "weight_decay", min_value=0.0)

    @staticmethod
    def _check_grad(g, p, where: str) -> None:
        if not isinstance(g, np.ndarray):
            raise TypeError(f"{where} must be a numpy.ndarray, got {type(g).__name__}")
        if g.shape != p.shape:
            raise ValueError(f"{where} has shape {g.shape}, its parameter has {p.shape}")
        if g.dtype != p.dtype:
            raise TypeError(f"{where} has dtype {g.dtype}, its parameter has {p.dtype}")

    @property
    def lr(self) -> float:
        """Learning rate of the first group; setting it sets every group's."""
        return float(self.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        value = check_real(value, "lr", min_value=0.0)
        for group in self.param_groups:
            group["lr"] = value

    # ------------------------------------------------------------------- update
    def zero_grad(self) -> None:
        """Set stored gradient arrays (groups with ``"grads"``) to zero."""
        for group in self.param_groups:
            for g in group["grads"] or ():
                g.fill(0)

    def step(self, grads: Sequence[np.ndarray] | None = None) -> None:
        """Apply one update to every parameter, in place.

        Parameters
        ----------
        grads : list of ndarray, optional
            Gradients aligned with :attr:`params`.  When omitted, every group must carry
            stored ``"grads"``.

        Raises
        ------
        ValueError, TypeError
            If the gradients do not match the parameters in number, shape or dtype.
        """
        if grads is None:
            pairs = []
            for gi, group in enumerate(self.param_groups):
                if group["grads"] is None:
                    raise ValueError(f"step() without grads needs stored gradients, but param "
                                     f"group {gi} has no 'grads'; pass grads=[...]")
                pairs.extend(zip(group["params"], group["grads"]))
            flat_grads = [g for _, g in pairs]
        else:
            if isinstance(grads, np.ndarray):
                raise TypeError("grads must be a list of arrays, got a single array")
            flat_grads = list(grads)
            if len(flat_grads) != len(self.params):
                raise ValueError(f"grads has {len(flat_grads)} arrays, the optimiser has "
                                 f"{len(self.params)} parameters")
            for k, (p, g) in enumerate(zip(self.params, flat_grads)):
                self._check_grad(g, p, f"grads[{k}]")
        self.step_count += 1
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                self._update(group, index, p, flat_grads[index])
                index += 1

    def _update(self, group: dict, index: int, p: np.ndarray, g: np.ndarray) -> None:
        raise NotImplementedError

    # -------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, np.ndarray]:
        """Return the optimiser state as ``{name: ndarray}`` (storable with ``numpy.savez``).

        Keys: ``step``; ``group<i>.<option>`` for every numeric option of every group;
        ``state<k>.<buffer>`` for the buffers of parameter ``k``.
        """
        out: dict[str, np.ndarray] = {"step": np.asarray(self.step_count, dtype=np.int64)}
        for gi, group in enumerate(self.param_groups):
            for key in self.defaults:
                out[f"group{gi}.{key}"] = np.asarray(group[key], dtype=np.float64)
        for k, st in enumerate(self.state):
            for key, value in st.items():
                out[f"state{k}.{key}"] = np.array(value, copy=True)
        return out

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a state produced by :meth:`state_dict` (e.g. read back with ``numpy.load``)."""
        state = dict(state)
        if "step" not in state:
            raise ValueError("state has no 'step' entry; is it an optimiser state_dict?")
        new_groups = []
        for gi, group in enumerate(self.param_groups):
            opts = dict(group)
            for key in self.defaults:
                name = f"group{gi}.{key}"
                if name not in state:
                    raise ValueError(f"state is missing {name!r}")
                v = np.asarray(state[name])
                opts[key] = bool(v) if isinstance(self.defaults[key], bool) else (
                    tuple(float(x) for x in v) if v.ndim else float(v))
            self._check_options(opts, f"state group{gi}: ")
            new_groups.append(opts)
        new_state: list[dict] = [{} for _ in self.params]
        for name, value in state.items():
            if not name.startswith("state"):
                continue
            head, _, buf = name.partition(".")
            try:
                k = int(head[5:])
            except ValueError:
                raise ValueError(f"unrecognised state entry {name!r}") from None
            if not 0 <= k < len(self.params):
                raise ValueError(f"state entry {name!r} refers to parameter {k}, the optimiser "
                                 f"has {len(self.params)}")
            p = self.params[k]
            value = np.asarray(value)
            if buf in self._state_keys:
                if value.shape != p.shape:
                    raise ValueError(f"state entry {name!r} has shape {value.shape}, "
                                     f"parameter {k} has shape {p.shape}")
                new_state[k][buf] = np.array(value, dtype=p.dtype, copy=True)
            else:
                raise ValueError(f"unrecognised state entry {name!r}")
        self.param_groups = new_groups
        self.state = new_state
        self.step_count = int(state["step"])


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay.

    Per step, for a parameter ``p`` with gradient ``g`` (PyTorch's rule)::

        g   <- g + weight_decay * p
        buf <- g                                   (first step)
        buf <- momentum * buf + (1 - dampening) * g  (later steps)
        d   <- g + momentum * buf  if nesterov else  buf     (d = g when momentum == 0)
        p   <- p - lr * d

    Parameters
    ----------
    params : list of ndarray or list of dict
        Parameter arrays, or parameter groups (see the module docstring).
    lr : float, default=0.01
    momentum : float, default=0.0
        In [0, 1).
    dampening : float, default=0.0
    weight_decay : float, default=0.0
        L2 penalty coefficient (added to the gradient).
    nesterov : bool, default=False
        Requires ``momentum > 0`` and ``dampening == 0``.

    Examples
    --------
    >>> import numpy as np
    >>> from effai_fast.optim import SGD
    >>> w = np.array([1.0, 2.0]); opt = SGD([w], lr=0.1, momentum=0.9)
    >>> opt.step([np.array([1.0, -1.0])]); w
    array([0.9, 2.1])
    """

    _defaults = {"lr": 0.01, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0,
                 "nesterov": False}
    _state_keys = ("momentum_buffer",)

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         weight_decay=weight_decay, nesterov=nesterov)

    def _check_options(self, opts, where):
        super()._check_options(opts, where)
        check_real(opts["momentum"], where + "momentum", min_value=0.0, max_value=1.0,
                   max_inclusive=False)
        check_real(opts["dampening"], where + "dampening", min_value=0.0, max_value=1.0)
        if not isinstance(opts["nesterov"], (bool, np.bool_)):
            raise TypeError(f"{where}nesterov must be a bool, got {opts['nesterov']!r}")
        if opts["nesterov"] and (opts["momentum"] <= 0 or opts["dampening"] != 0):
            raise ValueError(f"{where}nesterov momentum requires momentum > 0 and dampening 0")

    def _update(self, group, index, p, g):
        lr = p.dtype.type(group["lr"])
        wd = group["weight_decay"]
        mom = group["momentum"]
        if wd:
            d = g + p.dtype.type(wd) * p
        else:
            d = g
        if mom:
            st = self.state[index]
            buf = st.get("momentum_buffer")
            if buf is None:
                buf = st["momentum_buffer"] = np.array(d, copy=True)
            else:
                buf *= p.dtype.type(mom)
                damp = group["dampening"]
                if damp:
                    buf += p.dtype.type(1.0 - damp) * d
                else:
                    buf += d
            if group["nesterov"]:
                d = d + p.dtype.type(mom) * buf
            else:
                d = buf
        p -= lr * d


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's ``AdamW`` rule.

    Per step ``t`` (starting at 1)::

        p  <- p * (1 - lr * weight_decay)
        m  <- beta1 * m + (1 - beta1) * g
        v  <- beta2 * v + (1 - beta2) * g**2
        p  <- p - lr / (1 - beta1**t) * m / (sqrt(v) / sqrt(1 - beta2**t) + eps)

    Parameters
    ----------
    params : list of ndarray or list of dict
    lr : float, default=1e-3
    betas : tuple of float, default=(0.9, 0.999)
        Each in [0, 1).
    eps : float, default=1e-8
    weight_decay : float, default=0.01
        Decoupled decay (0 for groups that should not decay).
    """

    _defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
    _state_keys = ("exp_avg", "exp_avg_sq")

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def _check_options(self, opts, where):
        super()._check_options(opts, where)
        betas = opts["betas"]
        if not isinstance(betas, Iterable) or isinstance(betas, (str, bytes)):
            raise TypeError(f"{where}betas must be a pair of floats, got {betas!r}")
        betas = tuple(betas)
        if len(betas) != 2:
            raise ValueError(f"{where}betas must be a pair of floats, got {betas!r}")
        for i, b in enumerate(betas):
            check_real(b, f"{where}betas[{i}]", min_value=0.0, max_value=1.0,
                       max_inclusive=False)
        opts["betas"] = tuple(float(b) for b in betas)
        check_real(opts["eps"], where + "eps", min_value=0.0, min_inclusive=False)

    def _update(self, group, index, p, g):
        t = self.step_count
        typ = p.dtype.type
        lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
        b1, b2 = group["betas"]
        st = self.state[index]
        if not st:
            st["exp_avg"] = np.zeros_like(p)
            st["exp_avg_sq"] = np.zeros_like(p)
        m, v = st["exp_avg"], st["exp_avg_sq"]
        if wd:
            p *= typ(1.0 - lr * wd)
        m *= typ(b1)
        m += typ(1.0 - b1) * g
        v *= typ(b2)
        v += typ(1.0 - b2) * (g * g)
        bc1 = 1.0 - b1 ** t
        bc2_sqrt = np.sqrt(1.0 - b2 ** t)
        denom = np.sqrt(v)
        denom /= typ(bc2_sqrt)
        denom += typ(eps)
        step = m / denom
        step *= typ(lr / bc1)
        p -= step
