"""MobileNet v1 with width and resolution multipliers, its exact cost, and the budget choice.

``mobilenet_v1(alpha, resolution, num_classes, in_channels)``
    The network of Howard et al. 2017 (Table 1) built from :mod:`effai_fast.nn` layers.
``cost(alpha, resolution, num_classes)``
    Exact multiply-adds and parameters, per layer (reproduces the paper's Tables 2, 6, 7).
``optimal_multipliers(budget, ...)``
    The (alpha, rho) that maximise accuracy within a compute budget: closed form, exact
    continuous, or a discrete menu, with a user or fitted accuracy model.
"""

from effai_fast.mobilenet._arch import (
    BLOCKS,
    PAPER_TABLE2,
    PAPER_TABLE6,
    PAPER_TABLE7,
    STEM,
    paper_accuracy_points,
    scaled_channels,
)
from effai_fast.mobilenet._budget import (
    AccuracyModel,
    BudgetSolution,
    fit_accuracy_model,
    optimal_multipliers,
)
from effai_fast.mobilenet._cost import LayerCost, MobileNetCost, cost
from effai_fast.mobilenet._model import MobileNetV1, load_mobilenet, mobilenet_v1
from effai_fast.mobilenet._torch_ref import torch_mobilenet_v1

__all__ = [
    "BLOCKS",
    "PAPER_TABLE2",
    "PAPER_TABLE6",
    "PAPER_TABLE7",
    "STEM",
    "AccuracyModel",
    "BudgetSolution",
    "LayerCost",
    "MobileNetCost",
    "MobileNetV1",
    "cost",
    "fit_accuracy_model",
    "load_mobilenet",
    "mobilenet_v1",
    "optimal_multipliers",
    "paper_accuracy_points",
    "scaled_channels",
    "torch_mobilenet_v1",
]
