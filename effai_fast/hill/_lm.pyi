"""Stubs for the compiled batched Hill Levenberg-Marquardt kernel."""

import numpy as np

FOUT_FIELDS: tuple[str, ...]
IOUT_FIELDS: tuple[str, ...]
TIMING_FIELDS: tuple[str, ...]

def fit_batch(
    dose: np.ndarray, resp: np.ndarray, weight: np.ndarray, fixed: np.ndarray,
    free_mask: int, lo: np.ndarray, hi: np.ndarray, canon: bool, se_mode: int,
    max_iter: int, ftol: float, xtol: float, gtol: float, retry: bool,
    fskip: np.ndarray, label: bool, flat_alpha: float,
    cov: np.ndarray, fout: np.ndarray, iout: np.ndarray, theta_hill: np.ndarray,
    status: np.ndarray, reason: np.ndarray, n_threads: int, chunk: int,
    timing: np.ndarray | None = None,
) -> int: ...
def _fexp_py(x: np.ndarray, out: np.ndarray) -> None: ...
def _evaluate_py(
    theta: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray,
    zero_dose: np.ndarray, want: int,
) -> tuple[float, list[float] | None, list[float] | None, list[float] | None]: ...
def _vp_eval_py(
    theta: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray,
    zero_dose: np.ndarray, lin: int, nidx: np.ndarray,
) -> tuple[float, list[float], list[list[float]], list[float]]: ...
