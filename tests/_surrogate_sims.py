"""Simulators for the optimize() tests, in an importable module.

Worker processes started with ``spawn`` import the simulator by module name;
test modules are loaded with --import-mode=importlib and cannot be, so the
picklable simulators live here (tests/ is on sys.path).
"""

from effai_fast.surrogate import get_problem

BRANIN = get_problem("branin")


def flaky_branin(x):
    """Raises on one side, returns NaN on the other."""
    if x[0] > 7.5:
        raise RuntimeError("simulator crashed")
    if x[0] < -2.5:
        return float("nan")
    return BRANIN(x)
