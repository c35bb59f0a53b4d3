"""The same MobileNet v1 in PyTorch (NCHW), for comparisons and weight exchange.

``torch_mobilenet_v1(alpha, num_classes, in_channels)`` builds an ``nn.Sequential`` whose
``state_dict`` lists its tensors in the order of :func:`effai_fast.mobilenet.mobilenet_v1`'s
layers, so :func:`effai_fast.nn.load_torch_state_dict` and
:func:`effai_fast.nn.export_torch_state_dict` map one onto the other.  Needs PyTorch.
"""

from __future__ import annotations

from effai_fast._extras import require
from effai_fast.mobilenet._arch import BLOCKS, STEM, check_alpha, scaled_channels

__all__ = ["torch_mobilenet_v1"]


def torch_mobilenet_v1(alpha: float = 1.0, num_classes: int = 1000, in_channels: int = 3,
                       activation: str = "relu"):
    """A PyTorch ``nn.Sequential`` with the architecture of :func:`mobilenet_v1`."""
    torch = require("torch", "torch_mobilenet_v1")
    nn = torch.nn
    alpha = check_alpha(alpha)
    act = nn.ReLU if activation == "relu" else nn.ReLU6
    c = scaled_channels(STEM[0], alpha)
    layers = [nn.Conv2d(in_channels, c, 3, STEM[1], 1, bias=False), nn.BatchNorm2d(c), act()]
    for base, stride in BLOCKS:
        c_out = scaled_channels(base, alpha)
        layers += [nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm2d(c),
                   act(), nn.Conv2d(c, c_out, 1, bias=False), nn.BatchNorm2d(c_out), act()]
        c = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)
