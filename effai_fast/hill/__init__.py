"""Bulk Hill dose-response fitting on a compiled, parallel Levenberg-Marquardt.

``fit(dose, response)`` fits ``R = rmin + (rmax - rmin) D^n / (ec50^n + D^n)``
to one curve or a million (one OpenMP-parallel kernel over curves), with
fixed parameters, bounds, weights, drc- and Hessian-style standard errors,
ECx confidence intervals and an F test that labels flat (inactive) curves.
``compare_models`` measures Hill against linear and quadratic models (AIC and
leave-one-dose-out error); ``HillRegressor`` is the scikit-learn estimator.
See docs/hill.md.
"""

from effai_fast.hill.estimator import HillRegressor
from effai_fast.hill.fit import PARAMS, REASONS, STATUS, HillFit, fit, hill
from effai_fast.hill.models import ModelComparison, compare_models

__all__ = ["PARAMS", "REASONS", "STATUS", "HillFit", "HillRegressor", "ModelComparison",
           "compare_models", "fit", "hill"]
