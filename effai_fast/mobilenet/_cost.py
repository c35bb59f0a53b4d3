"""The exact cost of MobileNet v1: mult-adds and parameters, layer by layer.

A convolution producing an ``H_out x W_out x C_out`` map from ``C_in`` channels with a
``K x K`` kernel costs ``H_out W_out K^2 C_in C_out`` multiply-adds (``C_in = 1`` per output
channel for a depthwise convolution); a fully connected layer costs ``C_in C_out``.  Batch
normalisation, ReLU and the average pooling are not multiply-adds and are not counted (as in
the paper).  Parameters are those a training run learns: convolution kernels, the two affine
parameters (scale, shift) of each batch normalisation, and the classifier's weights and bias.

With these definitions the count reproduces the paper:

* Table 6 / 7 mult-adds (569, 325, 149, 41 M for alpha = 1 ... 0.25; 569, 418, 186 M at
  resolution 224, 192, 128) exactly when rounded to the printed precision.  At 160 the exact
  count is 290.68 M, which the paper prints as 290 (TensorFlow's model zoo lists 291).
* Table 6 / 7 parameters (4.2, 2.6, 1.3, 0.47 M) - the 0.47 M of alpha = 0.25 is only reached
  when the batch-norm scales and shifts are counted (without them it is 0.46 M).
* Table 2 shares, computed over the *weights* (kernels and classifier matrix, without batch
  norm - that is how the paper's percentages come out): 94.86 / 3.06 / 0.18 % of mult-adds
  for 1x1 / depthwise / FC and 74.59 / 1.06 / 0.02 / 24.33 % of weights.  The paper prints
  1.19 % of mult-adds for the first (3x3) convolution; the exact share is 1.91 %.  The
  paper's four percentages add up to 99.29 %, so its 1.19 is a misprint for 1.91.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from effai_fast._validation import check_int
from effai_fast.mobilenet._arch import (
    BASE_RESOLUTION,
    BLOCKS,
    STEM,
    check_alpha,
    check_resolution,
    conv_out,
    scaled_channels,
)

__all__ = ["LayerCost", "MobileNetCost", "cost", "layer_costs"]

#: Layer types as the paper's Table 2 names them.
LAYER_TYPES = ("Conv 1x1", "Conv DW 3x3", "Conv 3x3", "Fully Connected")


@dataclass(frozen=True)
class LayerCost:
    """Cost of one layer.

    Attributes
    ----------
    name : str
        e.g. ``"block3.pointwise"``.
    kind : str
        One of :data:`LAYER_TYPES`.
    in_shape, out_shape : tuple of int
        ``(H, W, C)`` (``(C,)`` for the classifier).
    macs : int
        Multiply-adds.
    weights : int
        Kernel / matrix entries.
    bias : int
        Bias entries.
    bn : int
        Batch-norm scale + shift entries that follow the layer.
    """

    name: str
    kind: str
    in_shape: tuple
    out_shape: tuple
    macs: int
    weights: int
    bias: int = 0
    bn: int = 0

    @property
    def params(self) -> int:
        """Trainable parameters: weights + bias + batch-norm affine."""
        return self.weights + self.bias + self.bn


@dataclass(frozen=True)
class MobileNetCost:
    """Exact cost of a MobileNet v1 configuration (see :func:`cost`)."""

    alpha: float
    resolution: int
    num_classes: int
    layers: tuple = field(repr=False)

    @property
    def macs(self) -> int:
        """Total multiply-adds for one image."""
        return sum(layer.macs for layer in self.layers)

    @property
    def params(self) -> int:
        """Total trainable parameters (weights, biases, batch-norm scales and shifts)."""
        return sum(layer.params for layer in self.layers)

    @property
    def weights(self) -> int:
        """Kernel and classifier-matrix entries only (the basis of Table 2's shares)."""
        return sum(layer.weights for layer in self.layers)

    def by_type(self) -> dict[str, dict[str, float]]:
        """Mult-adds and weights per layer type, absolute and as % of the total (Table 2)."""
        out = {}
        total_m, total_w = self.macs, self.weights
        for kind in LAYER_TYPES:
            m = sum(layer.macs for layer in self.layers if layer.kind == kind)
            w = sum(layer.weights for layer in self.layers if layer.kind == kind)
            out[kind] = {"macs": m, "weights": w, "macs_pct": 100.0 * m / total_m,
                         "weights_pct": 100.0 * w / total_w}
        return out

    def table(self) -> str:
        """A per-layer text table."""
        rows = [f"{'layer':<20} {'type':<16} {'input':>15} {'output':>15} {'MACs':>12} "
                f"{'params':>9}"]
        for layer in self.layers:
            rows.append(f"{layer.name:<20} {layer.kind:<16} "
                        f"{'x'.join(map(str, layer.in_shape)):>15} "
                        f"{'x'.join(map(str, layer.out_shape)):>15} {layer.macs:>12,} "
                        f"{layer.params:>9,}")
        rows.append(f"{'total':<20} {'':<16} {'':>15} {'':>15} {self.macs:>12,} "
                    f"{self.params:>9,}")
        return "\n".join(rows)

    def __str__(self) -> str:
        return (f"MobileNet v1 alpha={self.alpha:g} resolution={self.resolution}: "
                f"{self.macs / 1e6:.1f} M mult-adds, {self.params / 1e6:.3f} M parameters")


def layer_costs(alpha: float, resolution: int, num_classes: int = 1000,
                in_channels: int = 3) -> tuple[LayerCost, ...]:
    """Per-layer costs of ``mobilenet_v1(alpha, resolution, num_classes, in_channels)``."""
    alpha = check_alpha(alpha)
    resolution = check_resolution(resolution)
    num_classes = check_int(num_classes, "num_classes", min_value=1)
    in_channels = check_int(in_channels, "in_channels", min_value=1)
    layers = []
    c_out, stride = scaled_channels(STEM[0], alpha), STEM[1]
    n = conv_out(resolution, stride)
    layers.append(LayerCost("stem", "Conv 3x3", (resolution, resolution, in_channels),
                            (n, n, c_out), n * n * 9 * in_channels * c_out,
                            9 * in_channels * c_out, 0, 2 * c_out))
    c = c_out
    for i, (base, stride) in enumerate(BLOCKS, start=1):
        m = conv_out(n, stride)
        layers.append(LayerCost(f"block{i}.depthwise", "Conv DW 3x3", (n, n, c), (m, m, c),
                                m * m * 9 * c, 9 * c, 0, 2 * c))
        c_out = scaled_channels(base, alpha)
        layers.append(LayerCost(f"block{i}.pointwise", "Conv 1x1", (m, m, c), (m, m, c_out),
                                m * m * c * c_out, c * c_out, 0, 2 * c_out))
        n, c = m, c_out
    layers.append(LayerCost("classifier", "Fully Connected", (c,), (num_classes,),
                            c * num_classes, c * num_classes, num_classes, 0))
    return tuple(layers)


def cost(alpha: float = 1.0, resolution: int = BASE_RESOLUTION, num_classes: int = 1000,
         in_channels: int = 3) -> MobileNetCost:
    """Exact mult-adds and parameters of MobileNet v1 with width multiplier ``alpha``.

    Parameters
    ----------
    alpha : float, default=1.0
        Width multiplier in (0, 1]; layer channels are ``round(alpha * c)`` (halves up).
    resolution : int, default=224
        Input side in pixels (the resolution multiplier is ``rho = resolution / 224``).
    num_classes : int, default=1000
    in_channels : int, default=3

    Returns
    -------
    MobileNetCost
        ``.macs`` and ``.params`` (ints), ``.layers`` (per-layer :class:`LayerCost`),
        ``.by_type()`` (Table 2) and ``.table()``.

    Raises
    ------
    ValueError
        For ``alpha`` outside (0, 1], ``resolution < 1`` or ``num_classes < 1``.

    Examples
    --------
    >>> from effai_fast.mobilenet import cost
    >>> c = cost(1.0, 224)
    >>> c.macs, c.params
    (568740352, 4231976)
    >>> round(cost(0.25, 224).macs / 1e6), round(cost(1.0, 128).macs / 1e6)
    (41, 186)
    """
    layers = layer_costs(alpha, resolution, num_classes, in_channels)
    return MobileNetCost(float(alpha), int(resolution), int(num_classes), layers)
