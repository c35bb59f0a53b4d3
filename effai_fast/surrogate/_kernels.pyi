import numpy as np

KINDS: dict[str, int]

def py_kernel_sum(X: np.ndarray, center: np.ndarray, inv_scale: np.ndarray, ZT: np.ndarray,
                  weights: np.ndarray, poly: np.ndarray, offset: float, kind: int,
                  out: np.ndarray, n_threads: int) -> None: ...
def py_kernel_sum_direct(X: np.ndarray, center: np.ndarray, inv_scale: np.ndarray,
                         ZT: np.ndarray, weights: np.ndarray, poly: np.ndarray, offset: float,
                         kind: int, out: np.ndarray, n_threads: int) -> None: ...
def py_kernel_sum_fused(X: np.ndarray, center: np.ndarray, inv_scale: np.ndarray,
                        ZT: np.ndarray, weights: np.ndarray, poly: np.ndarray, offset: float,
                        kind: int, out: np.ndarray, n_threads: int, impl: int = -1) -> None: ...
def have_avx2() -> bool: ...
def py_kernel_sum_var(X: np.ndarray, center: np.ndarray, inv_scale: np.ndarray,
                      ZT: np.ndarray, weights: np.ndarray, offset: float, kind: int,
                      A: np.ndarray, prior_var: float, out_mean: np.ndarray,
                      out_var: np.ndarray, n_threads: int) -> None: ...
def py_mlp_forward(X: np.ndarray, params: np.ndarray, sizes: np.ndarray, out: np.ndarray,
                   n_threads: int) -> None: ...
