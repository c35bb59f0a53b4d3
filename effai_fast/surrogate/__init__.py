"""Surrogate-model workflow: fit on a few expensive runs, screen millions to billions
of candidates, send the best back to the simulator.

- Designs over box domains: :class:`Domain`, :func:`latin_hypercube`, :func:`sobol`,
  :class:`DesignSpec` (a candidate set generated chunk by chunk).
- Surrogates (scikit-learn estimators): :class:`GaussianProcess` (ARD SE/Matern,
  predictive std), :class:`RBFInterpolant`, :class:`MLPSurrogate`; prediction in
  compiled, OpenMP-parallel kernels.
- :func:`screen`: top-k of any number of candidates (array, chunks, or a design
  spec), serially or on a ``dask.distributed.Client``.
- :func:`optimize`: the active-learning loop with checkpoint/resume.
- Embedded problems: :data:`PROBLEMS` (Borehole, OTL circuit, Wing weight, Piston,
  Hartmann-6, Branin, Ishigami).

See docs/surrogate.md.
"""

from effai_fast.surrogate._acquisition import expected_improvement, upper_confidence_bound
from effai_fast.surrogate._base import NotFittedError
from effai_fast.surrogate._design import DesignSpec, Domain, latin_hypercube, sobol, uniform
from effai_fast.surrogate._gp import GaussianProcess
from effai_fast.surrogate._mlp import MLPSurrogate
from effai_fast.surrogate._optimize import History, optimize
from effai_fast.surrogate._problems import PROBLEMS, Problem, get_problem
from effai_fast.surrogate._rbf import RBFInterpolant
from effai_fast.surrogate._screen import ScreenResult, screen

__all__ = [
    "DesignSpec", "Domain", "GaussianProcess", "History", "MLPSurrogate", "NotFittedError",
    "PROBLEMS", "Problem", "RBFInterpolant", "ScreenResult", "expected_improvement",
    "get_problem", "latin_hypercube", "optimize", "screen", "sobol", "uniform",
    "upper_confidence_bound",
]
