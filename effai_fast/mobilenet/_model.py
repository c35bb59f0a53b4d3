"""MobileNet v1 built from :mod:`effai_fast.nn` layers (Howard et al. 2017, Table 1)."""

from __future__ import annotations

import numpy as np

from effai_fast._validation import check_int, check_real, check_rng, float_dtype
from effai_fast.mobilenet._arch import (
    BASE_RESOLUTION,
    BLOCKS,
    STEM,
    check_alpha,
    check_resolution,
    scaled_channels,
)
from effai_fast.mobilenet._cost import LayerCost, MobileNetCost
from effai_fast.nn import (
    BatchNorm,
    Conv2d,
    DepthwiseConv2d,
    Dropout,
    GlobalAvgPool,
    Linear,
    PointwiseConv2d,
    Sequential,
)

__all__ = ["MobileNetV1", "load_mobilenet", "mobilenet_v1"]


class MobileNetV1(Sequential):
    """A MobileNet v1 (a :class:`~effai_fast.nn.Sequential` that knows its multipliers).

    Layers: ``stem`` (3x3/2 convolution) + ``stem_bn``, then for ``i = 1..13``
    ``block{i}_dw`` (3x3 depthwise) + ``block{i}_dw_bn``, ``block{i}_pw`` (1x1) +
    ``block{i}_pw_bn`` (each batch norm with the ReLU fused), ``pool`` (global average),
    optional ``dropout``, ``fc``.  Build it with :func:`mobilenet_v1`.

    Attributes
    ----------
    alpha : float
    resolution : int
        The nominal input side (any side works: the pooling is global).
    num_classes, in_channels : int
    """

    def __init__(self, layers, names, *, alpha, resolution, num_classes, in_channels,
                 activation, dropout):
        super().__init__(*layers, names=names)
        self.alpha = alpha
        self.resolution = resolution
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.activation = activation
        self.dropout = dropout

    @property
    def rho(self) -> float:
        """Resolution multiplier ``resolution / 224``."""
        return self.resolution / BASE_RESOLUTION

    def config(self) -> dict:
        """The arguments that rebuild this architecture with :func:`mobilenet_v1`."""
        return {"architecture": "mobilenet_v1", "alpha": self.alpha,
                "resolution": self.resolution, "num_classes": self.num_classes,
                "in_channels": self.in_channels, "activation": self.activation,
                "dropout": self.dropout, "dtype": str(self.dtype)}

    def save(self, path, config=None):
        """Write weights and the architecture config to ``path`` (.npz)."""
        return super().save(path, self.config() if config is None else config)

    def cost(self, resolution: int | None = None) -> MobileNetCost:
        """Exact mult-adds and parameters, counted from this model's layers.

        Agrees with :func:`effai_fast.mobilenet.cost` for the same configuration (that
        function counts from the architecture table, this one from the built layers).
        """
        res = self.resolution if resolution is None else check_resolution(resolution)
        rows = self.summary((res, res, self.in_channels))
        out = []
        kinds = {Conv2d: "Conv 3x3", DepthwiseConv2d: "Conv DW 3x3",
                 PointwiseConv2d: "Conv 1x1", Linear: "Fully Connected"}
        for k, row in enumerate(rows):
            layer = row["layer"]
            kind = kinds.get(type(layer))
            if kind is None:
                continue
            bn = 0
            if k + 1 < len(rows) and isinstance(rows[k + 1]["layer"], BatchNorm):
                bn = rows[k + 1]["params"]
            name = row["name"]
            if name == "fc":
                name = "classifier"
            elif name.endswith("_dw"):
                name = name[:-3] + ".depthwise"
            elif name.endswith("_pw"):
                name = name[:-3] + ".pointwise"
            bias = layer.bias.size if layer.bias is not None else 0
            out.append(LayerCost(name, kind, tuple(row["in_shape"]), tuple(row["out_shape"]),
                                 int(row["macs"]), int(layer.weight.size), int(bias), int(bn)))
        return MobileNetCost(float(self.alpha), int(res), int(self.num_classes), tuple(out))


def mobilenet_v1(alpha: float = 1.0, resolution: int = 224, num_classes: int = 1000,
                 in_channels: int = 3, *, activation: str = "relu", dropout: float = 0.0,
                 dtype=np.float32, seed=0) -> MobileNetV1:
    """MobileNet v1 with width multiplier ``alpha`` and input side ``resolution``.

    Exactly Table 1 of Howard et al. 2017: a 3x3/2 convolution with 32 filters, 13 depthwise
    separable blocks (3x3 depthwise + batch norm + ReLU, 1x1 + batch norm + ReLU) with
    64, 128, 128, 256, 256, 512, 5x512, 1024, 1024 output channels and depthwise strides
    1, 2, 1, 2, 1, 2, 1x5, 2, 1 (the table's "Conv dw / s2" at 7x7 is a typo for s1), global
    average pooling and a fully connected classifier.  Each layer's channels are
    ``round(alpha * c)`` (halves rounded up, at least 1) - exactly ``alpha * c`` for the
    paper's 1, 0.75, 0.5, 0.25.  3x3 convolutions pad by 1, so a side ``n`` becomes
    ``ceil(n / stride)``: no resolution collapses a feature map to zero, and the model
    accepts any input side (``resolution`` is the nominal side used by :meth:`cost`).

    Parameters
    ----------
    alpha : float, default=1.0
        Width multiplier in (0, 1].
    resolution : int, default=224
        Input side (``rho = resolution / 224``); e.g. 28 for Fashion-MNIST.
    num_classes : int, default=1000
    in_channels : int, default=3
    activation : {"relu", "relu6"}, default="relu"
        The paper uses ReLU (TensorFlow's implementation ReLU6).
    dropout : float, default=0.0
        Dropout before the classifier (the paper uses none).
    dtype : float32 or float64
    seed : None, int or Generator, default=0
        Initialisation: He normal (fan-out) convolutions, ``N(0, 0.01^2)`` classifier,
        batch norm ``gamma = 1, beta = 0``.

    Returns
    -------
    MobileNetV1

    Raises
    ------
    ValueError
        For ``alpha`` outside (0, 1], ``resolution < 1``, ``num_classes < 1``,
        ``in_channels < 1``, a dropout outside [0, 1).

    Examples
    --------
    >>> from effai_fast.mobilenet import mobilenet_v1
    >>> net = mobilenet_v1(alpha=0.25, resolution=28, num_classes=10, in_channels=1)
    >>> net.cost().macs == cost(0.25, 28, 10, 1).macs                  # doctest: +SKIP
    True
    """
    alpha = check_alpha(alpha)
    resolution = check_resolution(resolution)
    num_classes = check_int(num_classes, "num_classes", min_value=1)
    in_channels = check_int(in_channels, "in_channels", min_value=1)
    if activation not in ("relu", "relu6"):
        raise ValueError(f"activation must be 'relu' or 'relu6', got {activation!r}")
    dropout = check_real(dropout, "dropout", min_value=0.0, max_value=1.0, max_inclusive=False)
    dtype = float_dtype(dtype)
    rng = check_rng(seed)
    layers, names = [], []

    def add(name, layer):
        names.append(name)
        layers.append(layer)

    c = scaled_channels(STEM[0], alpha)
    add("stem", Conv2d(in_channels, c, 3, STEM[1], 1, dtype=dtype, seed=rng))
    add("stem_bn", BatchNorm(c, activation=activation, dtype=dtype))
    for i, (base, stride) in enumerate(BLOCKS, start=1):
        add(f"block{i}_dw", DepthwiseConv2d(c, 3, stride, 1, dtype=dtype, seed=rng))
        add(f"block{i}_dw_bn", BatchNorm(c, activation=activation, dtype=dtype))
        c_out = scaled_channels(base, alpha)
        add(f"block{i}_pw", PointwiseConv2d(c, c_out, dtype=dtype, seed=rng))
        add(f"block{i}_pw_bn", BatchNorm(c_out, activation=activation, dtype=dtype))
        c = c_out
    add("pool", GlobalAvgPool(dtype=dtype))
    if dropout > 0:
        add("dropout", Dropout(dropout, seed=rng, dtype=dtype))
    add("fc", Linear(c, num_classes, dtype=dtype, seed=rng))
    return MobileNetV1(layers, names, alpha=alpha, resolution=resolution,
                       num_classes=num_classes, in_channels=in_channels,
                       activation=activation, dropout=dropout)


def load_mobilenet(path) -> MobileNetV1:
    """Rebuild a MobileNet saved with :meth:`MobileNetV1.save` and load its weights."""
    from effai_fast.nn import read_config

    cfg = read_config(path)
    if not cfg or cfg.get("architecture") != "mobilenet_v1":
        raise ValueError(f"{path} holds no MobileNet v1 config (saved by MobileNetV1.save?)")
    model = mobilenet_v1(cfg["alpha"], cfg["resolution"], cfg["num_classes"],
                         cfg["in_channels"], activation=cfg["activation"],
                         dropout=cfg["dropout"], dtype=cfg["dtype"])
    model.load(path)
    return model
