"""effai_fast.nn: layers, training and the convolution kernels they run on.

Functional core (:mod:`effai_fast.nn.functional`): depthwise / pointwise / dense convolutions
and their VJPs, batch norm, activations, pooling, linear, softmax cross-entropy.  On top, the
layers (:class:`Conv2d`, :class:`DepthwiseConv2d`, :class:`PointwiseConv2d`,
:class:`BatchNorm`, :class:`ReLU`, :class:`ReLU6`, :class:`GlobalAvgPool`, :class:`Linear`,
:class:`Dropout`, :class:`Sequential`), the training loop :func:`fit`, :func:`evaluate`,
:func:`predict`, :func:`param_groups` for optimisers, :func:`fold_batchnorm`, and weights
I/O (.npz, PyTorch state_dicts).  See docs/nn.md.
"""

from effai_fast.nn._io import (
    copy_to_torch,
    export_torch_state_dict,
    load,
    load_torch_state_dict,
    read_config,
    save,
)
from effai_fast.nn._layers import (
    BatchNorm,
    Conv2d,
    DepthwiseConv2d,
    Dropout,
    GlobalAvgPool,
    Linear,
    Module,
    PointwiseConv2d,
    ReLU,
    ReLU6,
    Sequential,
)
from effai_fast.nn._model import (
    History,
    InferencePlan,
    NonFiniteLossError,
    blas_single_thread,
    evaluate,
    fit,
    fold_batchnorm,
    leaf_layers,
    param_groups,
    predict,
)

__all__ = [
    "BatchNorm",
    "Conv2d",
    "DepthwiseConv2d",
    "Dropout",
    "GlobalAvgPool",
    "History",
    "InferencePlan",
    "Linear",
    "Module",
    "NonFiniteLossError",
    "PointwiseConv2d",
    "ReLU",
    "ReLU6",
    "Sequential",
    "blas_single_thread",
    "evaluate",
    "copy_to_torch",
    "export_torch_state_dict",
    "fit",
    "fold_batchnorm",
    "leaf_layers",
    "load",
    "load_torch_state_dict",
    "param_groups",
    "predict",
    "read_config",
    "save",
]
