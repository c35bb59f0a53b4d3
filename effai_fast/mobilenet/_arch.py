"""MobileNet v1 as data: Howard et al. 2017, Table 1, and the paper's published figures.

Table 1 (input 224x224x3)::

    Conv / s2          3x3x3x32        224 -> 112
    Conv dw / s1       3x3x32 dw       112
    Conv / s1          1x1x32x64       112
    Conv dw / s2       3x3x64 dw       112 -> 56
    Conv / s1          1x1x64x128      56
    Conv dw / s1       3x3x128 dw      56
    Conv / s1          1x1x128x128     56
    Conv dw / s2       3x3x128 dw      56 -> 28
    Conv / s1          1x1x128x256     28
    Conv dw / s1       3x3x256 dw      28
    Conv / s1          1x1x256x256     28
    Conv dw / s2       3x3x256 dw      28 -> 14
    Conv / s1          1x1x256x512     14
    5x Conv dw / s1    3x3x512 dw      14
       Conv / s1       1x1x512x512     14
    Conv dw / s2       3x3x512 dw      14 -> 7
    Conv / s1          1x1x512x1024    7
    Conv dw / s1       3x3x1024 dw     7     (the table prints "s2": a typo, the map stays 7x7)
    Conv / s1          1x1x1024x1024   7
    Avg Pool / s1      Pool 7x7        7 -> 1
    FC / s1            1024 x 1000
    Softmax

Every convolution is followed by batch normalisation and ReLU.  3x3 convolutions use a
symmetric padding of 1, so a side ``n`` becomes ``ceil(n / stride)`` (the size TensorFlow's
"same" padding gives, and the padding of PyTorch ports of the network) and never collapses to
zero.  The final pooling is a global average over whatever spatial size remains, so any input
resolution works.
"""

from __future__ import annotations

import math

from effai_fast._validation import check_int, check_real

#: (output channels, stride) of the stem 3x3 convolution.
STEM = (32, 2)
#: (output channels of the pointwise conv, stride of the depthwise conv) of the 13 blocks.
BLOCKS = (
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
    (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
    (1024, 2), (1024, 1),
)
BASE_RESOLUTION = 224

# Howard et al. 2017, Table 6 (width multiplier, resolution 224) and Table 7 (resolution,
# alpha = 1): ImageNet top-1 accuracy (%), million mult-adds, million parameters.
PAPER_TABLE6 = (
    # alpha, accuracy, million mult-adds, million parameters
    (1.0, 70.6, 569, 4.2),
    (0.75, 68.4, 325, 2.6),
    (0.5, 63.7, 149, 1.3),
    (0.25, 50.6, 41, 0.47),
)
PAPER_TABLE7 = (
    # resolution, accuracy, million mult-adds, million parameters
    (224, 70.6, 569, 4.2),
    (192, 69.1, 418, 4.2),
    (160, 67.2, 290, 4.2),
    (128, 64.4, 186, 4.2),
)
# Table 2: share (%) of mult-adds and of parameters by layer type, alpha = 1, 224.
PAPER_TABLE2 = {
    "Conv 1x1": (94.86, 74.59),
    "Conv DW 3x3": (3.06, 1.06),
    "Conv 3x3": (1.19, 0.02),
    "Fully Connected": (0.18, 24.33),
}


def paper_accuracy_points() -> list[tuple[float, float, float]]:
    """The paper's measured ``(alpha, rho, top-1 %)`` points (Tables 6 and 7, 7 distinct)."""
    pts = {(a, 1.0): acc for a, acc, _, _ in PAPER_TABLE6}
    pts.update({(1.0, r / BASE_RESOLUTION): acc for r, acc, _, _ in PAPER_TABLE7})
    return [(a, r, acc) for (a, r), acc in pts.items()]


def scaled_channels(c: int, alpha: float) -> int:
    """Channels of a layer with ``c`` base channels under width multiplier ``alpha``.

    ``round(alpha * c)`` with halves rounded up, and at least 1: for the paper's multipliers
    (1, 0.75, 0.5, 0.25) every product is an integer, so this is exactly ``alpha * c``.
    (TensorFlow's implementation instead rounds to a multiple of 8; we keep the paper's
    definition.)
    """
    c = check_int(c, "c", min_value=1)
    alpha = check_alpha(alpha)
    return max(1, int(math.floor(alpha * c + 0.5)))


def conv_out(n: int, stride: int) -> int:
    """Output side of a 3x3 convolution with padding 1: ``ceil(n / stride)``."""
    return (n - 1) // stride + 1


def check_alpha(alpha, name: str = "alpha") -> float:
    """Width multiplier in (0, 1] (the paper's range; wider networks are not supported)."""
    return check_real(alpha, name, min_value=0.0, max_value=1.0, min_inclusive=False)


def check_resolution(resolution, name: str = "resolution") -> int:
    """Input side in pixels (an integer >= 1; 224 is the paper's base)."""
    return check_int(resolution, name, min_value=1)
