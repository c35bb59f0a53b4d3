"""Sparse grids: hierarchical interpolation and quadrature in many dimensions.

* :class:`SparseGrid` -- regular sparse grids with the hat, modified-linear
  (SG++ ``modlinear``) and boundary hat bases; hierarchisation by the
  unidirectional principle, compiled batched evaluation, quadrature weights.
* :class:`DimensionAdaptiveSparseGrid` -- Gerstner & Griebel's greedy
  refinement of a downward-closed index set, with a local (``modlinear``) or
  a global polynomial (Leja points, Newton basis) basis.
* :func:`n_points` -- the closed-form point count.

See docs/sparsegrid.md.
"""

from ._adaptive import DimensionAdaptiveSparseGrid
from ._grid import SparseGrid, n_points

__all__ = ["DimensionAdaptiveSparseGrid", "SparseGrid", "n_points"]
