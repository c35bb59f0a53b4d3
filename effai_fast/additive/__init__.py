"""Additive models: f(x) = b + sum_j g_j(x_j) + a few pairwise interactions.

* :class:`AdditiveNetwork` -- a scikit-learn regressor with one small
  subnetwork (Neural Additive Model) or penalised spline (GAM) per feature and
  per selected pair, evaluated and differentiated by compiled, OpenMP-parallel
  "sparse additive" kernels; ``interactions="auto"`` adds the pairs that
  residual screening finds.
* :func:`make_additive` / :func:`additive_truth` -- generated additive truths.

See docs/additive.md.
"""

from ._model import AdditiveNetwork
from ._truth import additive_truth, make_additive

__all__ = ["AdditiveNetwork", "additive_truth", "make_additive"]
