"""Knowledge distillation: a large teacher's softened probabilities train a small student.

Kernels (typed Cython, OpenMP over the batch, float32/float64):

- :func:`softmax`, :func:`log_softmax` - temperature softmax, log-sum-exp stable.
- :func:`kd_loss` - fused KD loss ``(1 - hard_weight) T^2 KL(p_T || p_S) +
  hard_weight CE`` and its gradient with respect to the student logits;
  :func:`cross_entropy` is its hard-label term alone.

Training: :class:`Distiller` trains a student from a teacher's cached logits
with the package's optimisers (:mod:`effai_fast.optim`).

See ``docs/distill.md`` and the module docstring of
:mod:`effai_fast.distill.losses` for the conventions (which weight is which,
the T^2 factor, why "batchmean").
"""

from effai_fast.distill.losses import cross_entropy, kd_loss, log_softmax, softmax
from effai_fast.distill.trainer import Distiller, model_macs, predict_logits

__all__ = ["Distiller", "cross_entropy", "kd_loss", "log_softmax", "model_macs",
           "predict_logits", "softmax"]
