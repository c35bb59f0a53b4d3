import numpy as np

def mlp_forward(X: np.ndarray, theta: np.ndarray, unit_feat: np.ndarray, unit_off: np.ndarray,
                hidden: np.ndarray, act: int, bias: float, out: np.ndarray,
                n_threads: int) -> None: ...
def mlp_backward(X: np.ndarray, theta: np.ndarray, unit_feat: np.ndarray,
                 unit_off: np.ndarray, hidden: np.ndarray, act: int, g: np.ndarray,
                 grad: np.ndarray, n_threads: int) -> None: ...
def spline_forward(X: np.ndarray, main_feat: np.ndarray, main_coef: np.ndarray,
                   main_map: np.ndarray, pair_feat: np.ndarray, pair_coef: np.ndarray,
                   pair_map: np.ndarray, K2: int, bias: float, out: np.ndarray,
                   n_threads: int) -> None: ...
