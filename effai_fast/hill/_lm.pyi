"""Stubs for the compiled batched Hill Levenberg-Marquardt kernel."""

import numpy as np

def fit_batch(
    dose: np.ndarray, resp: np.ndarray, weight: np.ndarray, fixed: np.ndarray,
    free_mask: int, lo: np.ndarray, hi: np.ndarray, canon: bool, se_mode: int,
    max_iter: int, ftol: float, xtol: float, gtol: float, retry: bool,
    theta: np.ndarray, cov: np.ndarray, stats: np.ndarray, istats: np.ndarray,
    fskip: np.ndarray, n_threads: int,
) -> int: ...
def _evaluate_py(
    theta: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray,
    zero_dose: np.ndarray, want: int,
) -> tuple[float, list[float] | None, list[float] | None, list[float] | None]: ...
def _vp_eval_py(
    theta: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray,
    zero_dose: np.ndarray, lin: int, nidx: np.ndarray,
) -> tuple[float, list[float], list[list[float]], list[float]]: ...
