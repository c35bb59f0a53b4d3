"""Module-style layers that own numpy parameters and call the functional kernels.

Design
------
A layer is a small object with

``forward(x, training=False)``
    computes the output and caches what ``backward`` needs (input, output, batch statistics);
``backward(grad_out, need_input_grad=True)``
    writes the parameter gradients into the layer's persistent gradient arrays (they are
    *overwritten*, not accumulated) and returns the gradient with respect to the input;
``named_parameters()`` / ``named_gradients()`` / ``named_buffers()``
    the arrays themselves, in a fixed order.  Optimisers (:mod:`effai_fast.optim`) update the
    parameter arrays in place, so a layer never needs to be told about an update.

Layouts follow the convolution kernels (NHWC activations): dense convolution weights are
``(KH, KW, C_in, C_out)``, depthwise ``(KH, KW, C)``, pointwise ``(C_in, C_out)``, linear
``(in_features, out_features)``.  :mod:`effai_fast.nn._io` converts to and from PyTorch.

Buffers: inside a :class:`Sequential` every layer writes its output and input gradient into
arrays it keeps from one call to the next (a fresh large allocation costs more than the
layer on this hardware), so an intermediate output is valid until the next ``forward``.
``Sequential.forward`` returns a copy of the final output.  A layer used on its own returns
fresh arrays.
"""

from __future__ import annotations

import numpy as np

from effai_fast._threads import resolve_n_threads
from effai_fast._validation import as_float_array, check_int, check_real, check_rng, float_dtype
from effai_fast.nn import _functional_dense as FD

__all__ = [
    "BatchNorm",
    "Conv2d",
    "DepthwiseConv2d",
    "Dropout",
    "GlobalAvgPool",
    "Linear",
    "Module",
    "PointwiseConv2d",
    "ReLU",
    "ReLU6",
    "Sequential",
]


def _conv_functional():
    # The convolution kernels live in effai_fast.nn.functional (imported lazily so that
    # this module can be imported while functional.py imports the dense ops from here).
    from effai_fast.nn import functional

    return functional


class Module:
    """Base class of the layers (see the module docstring)."""

    _param_names: tuple[str, ...] = ()
    _buffer_names: tuple[str, ...] = ()

    def __init__(self, dtype=np.float32):
        self.dtype = float_dtype(dtype)
        self.n_threads: int | None = None
        self._reuse = False
        self._bufs: dict[str, np.ndarray] = {}

    # ------------------------------------------------------------ parameters
    def named_parameters(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        """``(name, array)`` for every trainable parameter, in a fixed order."""
        return [(prefix + n, getattr(self, n)) for n in self._param_names
                if getattr(self, n) is not None]

    def named_gradients(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        """``(name, array)`` of the gradient arrays, aligned with :meth:`named_parameters`."""
        return [(prefix + n, getattr(self, "grad_" + n)) for n in self._param_names
                if getattr(self, n) is not None]

    def named_buffers(self, prefix: str = "") -> list[tuple[str, np.ndarray]]:
        """``(name, array)`` of non-trainable state (batch-norm running statistics)."""
        return [(prefix + n, getattr(self, n)) for n in self._buffer_names]

    def parameters(self) -> list[np.ndarray]:
        """The parameter arrays (updated in place by optimisers)."""
        return [p for _, p in self.named_parameters()]

    def gradients(self) -> list[np.ndarray]:
        """The gradient arrays, aligned with :meth:`parameters`."""
        return [g for _, g in self.named_gradients()]

    def zero_grad(self) -> None:
        """Set every gradient array to zero."""
        for g in self.gradients():
            g.fill(0)

    def n_parameters(self) -> int:
        """Number of trainable scalars."""
        return int(sum(p.size for p in self.parameters()))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers by name (copies)."""
        return {n: a.copy() for n, a in self.named_parameters() + self.named_buffers()}

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers (in place; shapes must match).

        Raises
        ------
        ValueError
            On a missing or unexpected name (``strict``) or a shape mismatch.
        """
        own = dict(self.named_parameters() + self.named_buffers())
        state = dict(state)
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if strict and (missing or unexpected):
            raise ValueError(f"state does not match the model: missing {missing[:5]}"
                             f"{'...' if len(missing) > 5 else ''}, unexpected "
                             f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")
        for name, arr in own.items():
            if name not in state:
                continue
            value = np.asarray(state[name])
            if value.shape != arr.shape:
                raise ValueError(f"shape mismatch for {name!r}: the model has {arr.shape}, "
                                 f"the state has {value.shape}")
            arr[...] = value

    def _new_param(self, name: str, value: np.ndarray) -> None:
        value = np.ascontiguousarray(value, dtype=self.dtype)
        setattr(self, name, value)
        setattr(self, "grad_" + name, np.zeros_like(value))

    # ------------------------------------------------------------- plumbing
    def _threads(self) -> int:
        return resolve_n_threads(self.n_threads)

    def _buf(self, key: str, shape, dtype=None) -> np.ndarray | None:
        """A reusable output buffer inside a Sequential, else None (the kernel allocates)."""
        if not self._reuse:
            return None
        dtype = self.dtype if dtype is None else dtype
        buf = self._bufs.get(key)
        if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
            buf = np.empty(shape, dtype=dtype)
            self._bufs[key] = buf
        return buf

    def _check_input(self, x, ndim=4) -> np.ndarray:
        return as_float_array(x, "x", ndim=ndim, dtype=self.dtype)

    def _check_grad(self, grad_out) -> np.ndarray:
        """``grad_out`` as an array of the layer's dtype (the kernels' out= buffers are)."""
        return as_float_array(grad_out, "grad_out", dtype=self.dtype, allow_empty=True)

    def _need_cache(self, attr: str):
        value = getattr(self, attr, None)
        if value is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return value

    def __call__(self, x, training: bool = False):
        return self.forward(x, training=training)

    def forward(self, x, training: bool = False):  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, grad_out, need_input_grad: bool = True):  # pragma: no cover
        raise NotImplementedError

    def output_shape(self, input_shape: tuple) -> tuple:
        """Shape of the output for an input of ``input_shape`` (batch axis included)."""
        return tuple(input_shape)

    def macs(self, input_shape: tuple) -> int:
        """Multiply-adds of one sample (``input_shape`` without the batch axis)."""
        return 0

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _kaiming_normal(rng, shape, fan_out, dtype):
    """He initialisation ``N(0, 2 / fan_out)`` (torchvision's MobileNet uses fan_out)."""
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_out)).astype(dtype)


class _ConvBase(Module):
    _param_names = ("weight", "bias")

    def __init__(self, activation, bias, dtype):
        super().__init__(dtype)
        FD._act_code(activation)
        self.activation = activation
        self.use_bias = bool(bias)
        self.bias = None
        self._x = self._y = None

    def _init_bias(self, n):
        if self.use_bias:
            self._new_param("bias", np.zeros(n))
        else:
            self.bias = None
            self.grad_bias = None

    def _vjp_out(self, x, need_input_grad):
        gx = self._buf("gx", x.shape) if need_input_grad else None
        gb = self.grad_bias if self.bias is not None else None
        return (gx, self.grad_weight, gb)


class Conv2d(_ConvBase):
    """Dense 2-D convolution (MobileNet's stem), NHWC, weight ``(KH, KW, C_in, C_out)``.

    Parameters
    ----------
    in_channels, out_channels : int
    kernel_size : int, default=3
    stride : int, default=1
    padding : int, str or tuple, default=1
        As :func:`effai_fast.nn.functional.conv2d` (1 = symmetric, PyTorch-style).
    bias : bool, default=False
    activation : {None, "relu", "relu6"}, default=None
        Fused into the convolution.
    dtype : float32 or float64
    seed : None, int or Generator
        Initialisation (He normal, fan-out).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 stride: int = 1, padding=1, *, bias: bool = False, activation=None,
                 dtype=np.float32, seed=None):
        super().__init__(activation, bias, dtype)
        self.in_channels = check_int(in_channels, "in_channels", min_value=1)
        self.out_channels = check_int(out_channels, "out_channels", min_value=1)
        self.kernel_size = check_int(kernel_size, "kernel_size", min_value=1)
        self.stride = check_int(stride, "stride", min_value=1)
        self.padding = padding
        k = self.kernel_size
        self._new_param("weight", _kaiming_normal(check_rng(seed), (k, k, in_channels,
                                                                    out_channels),
                                                  k * k * out_channels, self.dtype))
        self._init_bias(out_channels)

    def _geom(self):
        return dict(stride=self.stride, padding=self.padding)

    def forward(self, x, training=False):
        F = _conv_functional()
        x = self._check_input(x)
        out = self._buf("y", self.output_shape(x.shape))
        y = F.conv2d(x, self.weight, self.bias, activation=self.activation,
                     n_threads=self._threads(), out=out, **self._geom())
        self._x, self._y = x, y
        return y

    def backward(self, grad_out, need_input_grad=True):
        F = _conv_functional()
        x = self._need_cache("_x")
        grad_out = self._check_grad(grad_out)
        gx, gw, gb = F.conv2d_vjp(x, self.weight, grad_out, activation=self.activation,
                                  output=self._y if self.activation else None,
                                  need_input_grad=need_input_grad, n_threads=self._threads(),
                                  out=self._vjp_out(x, need_input_grad), **self._geom())
        return gx

    def output_shape(self, input_shape):
        F = _conv_functional()
        if input_shape[-1] != self.in_channels:
            raise ValueError(f"x has {input_shape[-1]} channels, the layer expects "
                             f"{self.in_channels}")
        return F.conv_output_shape(tuple(input_shape), self.kernel_size,
                                   **self._geom()) + (self.out_channels,)

    def macs(self, input_shape):
        _, oh, ow, _ = self.output_shape((1,) + tuple(input_shape))
        return oh * ow * self.kernel_size ** 2 * self.in_channels * self.out_channels

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding!r}, bias={self.use_bias}, "
                f"activation={self.activation!r}")


class DepthwiseConv2d(_ConvBase):
    """Depthwise 2-D convolution (one KxK filter per channel), weight ``(KH, KW, C)``."""

    def __init__(self, channels: int, kernel_size: int = 3, stride: int = 1, padding=1, *,
                 bias: bool = False, activation=None, dtype=np.float32, seed=None):
        super().__init__(activation, bias, dtype)
        self.channels = check_int(channels, "channels", min_value=1)
        self.kernel_size = check_int(kernel_size, "kernel_size", min_value=1)
        self.stride = check_int(stride, "stride", min_value=1)
        self.padding = padding
        k = self.kernel_size
        self._new_param("weight", _kaiming_normal(check_rng(seed), (k, k, channels), k * k,
                                                  self.dtype))
        self._init_bias(channels)

    def _geom(self):
        return dict(stride=self.stride, padding=self.padding)

    def forward(self, x, training=False):
        F = _conv_functional()
        x = self._check_input(x)
        out = self._buf("y", self.output_shape(x.shape))
        y = F.depthwise_conv2d(x, self.weight, self.bias, activation=self.activation,
                               n_threads=self._threads(), out=out, **self._geom())
        self._x, self._y = x, y
        return y

    def backward(self, grad_out, need_input_grad=True):
        F = _conv_functional()
        x = self._need_cache("_x")
        grad_out = self._check_grad(grad_out)
        gx, gw, gb = F.depthwise_conv2d_vjp(
            x, self.weight, grad_out, activation=self.activation,
            output=self._y if self.activation else None, need_input_grad=need_input_grad,
            n_threads=self._threads(), out=self._vjp_out(x, need_input_grad), **self._geom())
        return gx

    def output_shape(self, input_shape):
        F = _conv_functional()
        if input_shape[-1] != self.channels:
            raise ValueError(f"x has {input_shape[-1]} channels, the layer expects "
                             f"{self.channels}")
        return F.conv_output_shape(tuple(input_shape), self.kernel_size,
                                   **self._geom()) + (self.channels,)

    def macs(self, input_shape):
        _, oh, ow, _ = self.output_shape((1,) + tuple(input_shape))
        return oh * ow * self.kernel_size ** 2 * self.channels

    def extra_repr(self):
        return (f"{self.channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding!r}, bias={self.use_bias}, "
                f"activation={self.activation!r}")


class PointwiseConv2d(_ConvBase):
    """1x1 convolution, weight ``(C_in, C_out)``."""

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = False,
                 activation=None, dtype=np.float32, seed=None):
        super().__init__(activation, bias, dtype)
        self.in_channels = check_int(in_channels, "in_channels", min_value=1)
        self.out_channels = check_int(out_channels, "out_channels", min_value=1)
        self._new_param("weight", _kaiming_normal(check_rng(seed), (in_channels, out_channels),
                                                  out_channels, self.dtype))
        self._init_bias(out_channels)

    def forward(self, x, training=False):
        F = _conv_functional()
        x = self._check_input(x)
        out = self._buf("y", self.output_shape(x.shape))
        y = F.pointwise_conv2d(x, self.weight, self.bias, activation=self.activation,
                               n_threads=self._threads(), out=out)
        self._x, self._y = x, y
        return y

    def backward(self, grad_out, need_input_grad=True):
        F = _conv_functional()
        x = self._need_cache("_x")
        grad_out = self._check_grad(grad_out)
        gx, gw, gb = F.pointwise_conv2d_vjp(
            x, self.weight, grad_out, activation=self.activation,
            output=self._y if self.activation else None, need_input_grad=need_input_grad,
            n_threads=self._threads(), out=self._vjp_out(x, need_input_grad))
        return gx

    def output_shape(self, input_shape):
        if input_shape[-1] != self.in_channels:
            raise ValueError(f"x has {input_shape[-1]} channels, the layer expects "
                             f"{self.in_channels}")
        return tuple(input_shape[:-1]) + (self.out_channels,)

    def macs(self, input_shape):
        return int(np.prod(input_shape[:-1])) * self.in_channels * self.out_channels

    def extra_repr(self):
        return (f"{self.in_channels}, {self.out_channels}, bias={self.use_bias}, "
                f"activation={self.activation!r}")


class BatchNorm(Module):
    """Batch normalisation of the channel (last) axis, with an optional fused activation.

    Training uses batch statistics and updates ``running_mean`` / ``running_var``
    (PyTorch's momentum convention, unbiased running variance); evaluation uses the running
    statistics.  :func:`effai_fast.nn.fold_batchnorm` folds it into the preceding convolution
    for inference.

    Parameters
    ----------
    channels : int
    momentum : float, default=0.1
    eps : float, default=1e-5
    activation : {None, "relu", "relu6"}, default=None
        Applied in the same pass (Conv -> BN -> ReLU costs one pass over the activations
        instead of two).
    dtype : float32 or float64
    """

    _param_names = ("weight", "bias")
    _buffer_names = ("running_mean", "running_var")

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5, *,
                 activation=None, dtype=np.float32):
        super().__init__(dtype)
        self.channels = check_int(channels, "channels", min_value=1)
        self.momentum = check_real(momentum, "momentum", min_value=0.0, max_value=1.0)
        self.eps = check_real(eps, "eps", min_value=0.0, min_inclusive=False)
        FD._act_code(activation)
        self.activation = activation
        self._new_param("weight", np.ones(channels))
        self._new_param("bias", np.zeros(channels))
        self.running_mean = np.zeros(channels)
        self.running_var = np.ones(channels)
        self._x = self._y = self._saved = None
        self._training = True

    def forward(self, x, training=False):
        x = as_float_array(x, "x", ndim=(2, 4), dtype=self.dtype)
        C = self.channels
        if x.shape[-1] != C:
            raise ValueError(f"x has {x.shape[-1]} channels, BatchNorm expects {C}")
        if training and x.size // C >= 2:
            # the training hot path: the layer's own arrays are valid by construction, so
            # call the fused kernel directly (FD.batch_norm re-validates every argument)
            y = self._buf("y", x.shape)
            if y is None:
                y = np.empty_like(x)
            saved = FD._bn_train(x.reshape(-1, C), self.weight, self.bias, self.running_mean,
                                 self.running_var, self.momentum, self.eps, y.reshape(-1, C),
                                 FD._ACT[self.activation], FD._threads(self._threads(), x.size))
        else:
            y, saved = FD.batch_norm(x, self.weight, self.bias, self.running_mean,
                                     self.running_var, training=training,
                                     momentum=self.momentum, eps=self.eps,
                                     activation=self.activation, out=self._buf("y", x.shape),
                                     n_threads=self._threads())
        self._x, self._y, self._saved, self._training = x, y, saved, bool(training)
        return y

    def backward(self, grad_out, need_input_grad=True):
        x = self._need_cache("_x")
        grad_out = self._check_grad(grad_out)
        if grad_out.shape != x.shape:
            raise ValueError(f"grad_out has shape {grad_out.shape}, the forward output had "
                             f"{x.shape}")
        C = self.channels
        dx = self._buf("gx", x.shape)
        if dx is None:
            dx = np.empty_like(x)
        dg, db = FD._bn_vjp(x.reshape(-1, C), self._y.reshape(-1, C), grad_out.reshape(-1, C),
                            self.weight, self._saved[0], self._saved[1], dx.reshape(-1, C),
                            self._training, FD._ACT[self.activation],
                            FD._threads(self._threads(), x.size))
        self.grad_weight[...] = dg
        self.grad_bias[...] = db
        return dx

    def scale_shift(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)`` with ``BN(x) = a x + b`` in evaluation mode (float64)."""
        invstd = 1.0 / np.sqrt(self.running_var + self.eps)
        a = self.weight.astype(np.float64) * invstd
        return a, self.bias.astype(np.float64) - self.running_mean * a

    def extra_repr(self):
        return (f"{self.channels}, momentum={self.momentum}, eps={self.eps}, "
                f"activation={self.activation!r}")


class _Activation(Module):
    _code = None

    def __init__(self, dtype=np.float32):
        super().__init__(dtype)
        self._y = None

    def forward(self, x, training=False):
        x = as_float_array(x, "x", dtype=self.dtype, allow_empty=True)
        y = FD._act_forward(x, self._code, self._buf("y", x.shape), self._threads())
        self._y = y
        return y

    def backward(self, grad_out, need_input_grad=True):
        y = self._need_cache("_y")
        grad_out = self._check_grad(grad_out)
        return FD.activation_vjp(y, grad_out, self._name, out=self._buf("gx", y.shape),
                                 n_threads=self._threads())


class ReLU(_Activation):
    """``max(x, 0)``."""

    _code, _name = 1, "relu"


class ReLU6(_Activation):
    """``min(max(x, 0), 6)``."""

    _code, _name = 2, "relu6"


class GlobalAvgPool(Module):
    """Mean over the spatial axes: ``(N, H, W, C) -> (N, C)``."""

    def __init__(self, dtype=np.float32):
        super().__init__(dtype)
        self._shape = None

    def forward(self, x, training=False):
        x = self._check_input(x)
        y = FD.global_avg_pool(x, out=self._buf("y", (x.shape[0], x.shape[3])),
                               n_threads=self._threads())
        self._shape = x.shape
        return y

    def backward(self, grad_out, need_input_grad=True):
        shape = self._need_cache("_shape")
        grad_out = self._check_grad(grad_out)
        return FD.global_avg_pool_vjp(grad_out, shape, out=self._buf("gx", shape),
                                      n_threads=self._threads())

    def output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


class Linear(Module):
    """Fully connected layer ``x @ weight + bias``, weight ``(in_features, out_features)``.

    Initialised as torchvision's MobileNet classifier: ``N(0, 0.01^2)`` weights, zero bias.
    """

    _param_names = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int, *, bias: bool = True,
                 dtype=np.float32, seed=None, init_std: float = 0.01):
        super().__init__(dtype)
        self.in_features = check_int(in_features, "in_features", min_value=1)
        self.out_features = check_int(out_features, "out_features", min_value=1)
        std = check_real(init_std, "init_std", min_value=0.0)
        self._new_param("weight", check_rng(seed).standard_normal((in_features,
                                                                  out_features)) * std)
        if bias:
            self._new_param("bias", np.zeros(out_features))
        else:
            self.bias = self.grad_bias = None
        self._x = None

    def forward(self, x, training=False):
        x = self._check_input(x, ndim=2)
        if x.shape[1] != self.in_features:
            raise ValueError(f"x has {x.shape[1]} features, Linear expects {self.in_features}")
        y = FD.linear(x, self.weight, self.bias,
                      out=self._buf("y", (x.shape[0], self.out_features)))
        self._x = x
        return y

    def backward(self, grad_out, need_input_grad=True):
        x = self._need_cache("_x")
        g = as_float_array(grad_out, "grad_out", shape=(x.shape[0], self.out_features),
                           dtype=self.dtype)
        np.matmul(x.T, g, out=self.grad_weight)
        if self.bias is not None:
            np.sum(g, axis=0, out=self.grad_bias)
        if not need_input_grad:
            return None
        gx = self._buf("gx", x.shape)
        return np.matmul(g, self.weight.T, out=gx)

    def output_shape(self, input_shape):
        return (input_shape[0], self.out_features)

    def macs(self, input_shape):
        return self.in_features * self.out_features

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Dropout(Module):
    """Inverted dropout with its own seeded generator (identity in evaluation)."""

    def __init__(self, p: float = 0.5, *, seed=None, dtype=np.float32):
        super().__init__(dtype)
        self.p = check_real(p, "p", min_value=0.0, max_value=1.0, max_inclusive=False)
        self.rng = check_rng(seed)
        self._mask = self._shape = None

    def forward(self, x, training=False):
        x = as_float_array(x, "x", dtype=self.dtype)
        y, self._mask = FD.dropout(x, self.p, self.rng, training=training)
        self._shape = x.shape
        return y

    def backward(self, grad_out, need_input_grad=True):
        shape = self._need_cache("_shape")
        g = as_float_array(grad_out, "grad_out", dtype=self.dtype, shape=shape)
        return g if self._mask is None else g * self._mask

    def extra_repr(self):
        return f"p={self.p}"


class Sequential(Module):
    """Layers applied in order; backward runs them in reverse.

    Parameters
    ----------
    *layers : Module
    names : sequence of str, optional
        Names used in parameter names (``"<name>.weight"``); default ``"0"``, ``"1"``, ...

    Notes
    -----
    ``forward`` casts the input to the model's dtype (that of the first layer) once and
    returns a copy of the last layer's output; intermediate outputs live in buffers reused
    at the next call.  ``n_threads`` set on the Sequential applies to every layer.
    """

    def __init__(self, *layers: Module, names=None):
        if not layers:
            raise ValueError("Sequential needs at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layer {i} is a {type(layer).__name__}, not a Module")
        super().__init__(layers[0].dtype)
        self.layers = list(layers)
        if names is None:
            names = [str(i) for i in range(len(layers))]
        names = list(names)
        if len(names) != len(layers) or len(set(names)) != len(names):
            raise ValueError("names must be unique, one per layer")
        self.names = names
        for layer in self.layers:
            layer._reuse = True
            if layer.dtype != self.dtype:
                raise TypeError(f"all layers must share one dtype, got {layer.dtype} and "
                                f"{self.dtype}")

    def __len__(self):
        return len(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    def __iter__(self):
        return iter(self.layers)

    @property
    def n_threads(self):
        return self._n_threads

    @n_threads.setter
    def n_threads(self, value):
        if value is not None:
            resolve_n_threads(value)  # validates
        self._n_threads = value
        for layer in getattr(self, "layers", ()):
            layer.n_threads = value

    def named_parameters(self, prefix=""):
        out = []
        for name, layer in zip(self.names, self.layers):
            out.extend(layer.named_parameters(f"{prefix}{name}."))
        return out

    def named_gradients(self, prefix=""):
        out = []
        for name, layer in zip(self.names, self.layers):
            out.extend(layer.named_gradients(f"{prefix}{name}."))
        return out

    def named_buffers(self, prefix=""):
        out = []
        for name, layer in zip(self.names, self.layers):
            out.extend(layer.named_buffers(f"{prefix}{name}."))
        return out

    def forward(self, x, training=False):
        x = as_float_array(x, "x", dtype=self.dtype)
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x.copy()

    def backward(self, grad_out, need_input_grad=True):
        g = as_float_array(grad_out, "grad_out", dtype=self.dtype)
        last = len(self.layers) - 1
        for i in range(last, -1, -1):
            g = self.layers[i].backward(g, need_input_grad=need_input_grad or i > 0)
        return g

    def output_shape(self, input_shape):
        shape = tuple(input_shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
        return shape

    def macs(self, input_shape):
        shape = (1,) + tuple(input_shape)
        total = 0
        for layer in self.layers:
            total += layer.macs(shape[1:])
            shape = layer.output_shape(shape)
        return total

    def summary(self, input_shape) -> list[dict]:
        """Per-layer ``name, layer, in_shape, out_shape, macs, params`` for one sample."""
        rows = []
        shape = (1,) + tuple(input_shape)
        for name, layer in zip(self.names, self.layers):
            out = layer.output_shape(shape)
            rows.append({"name": name, "layer": layer, "in_shape": shape[1:],
                         "out_shape": out[1:], "macs": layer.macs(shape[1:]),
                         "params": layer.n_parameters()})
            shape = out
        return rows

    # Training and I/O conveniences (see effai_fast.nn._model / _io).
    def fit(self, x, y, **kwargs):
        """Train on ``(x, y)``: :func:`effai_fast.nn.fit` (returns the History)."""
        from effai_fast.nn._model import fit

        return fit(self, x, y, **kwargs)

    def evaluate(self, x, y, **kwargs) -> dict:
        """Loss and accuracy on ``(x, y)``: :func:`effai_fast.nn.evaluate`."""
        from effai_fast.nn._model import evaluate

        return evaluate(self, x, y, **kwargs)

    def predict(self, x, **kwargs) -> np.ndarray:
        """Logits in evaluation mode: :func:`effai_fast.nn.predict`."""
        from effai_fast.nn._model import predict

        return predict(self, x, **kwargs)

    def save(self, path, config=None):
        """Write weights to ``path`` (.npz): :func:`effai_fast.nn.save`."""
        from effai_fast.nn._io import save

        return save(self, path, config)

    def load(self, path, strict: bool = True):
        """Read weights written by :meth:`save` (in place)."""
        from effai_fast.nn._io import load

        return load(self, path, strict)

    def __repr__(self):
        body = "\n".join(f"  ({n}): {layer!r}" for n, layer in zip(self.names, self.layers))
        return f"{type(self).__name__}(\n{body}\n)"
