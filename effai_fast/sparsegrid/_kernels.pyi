import numpy as np

def evaluate(kind: int, x: np.ndarray, alpha: np.ndarray, sub_entry: np.ndarray,
             sub_shift: np.ndarray, sub_off: np.ndarray, sub_first: np.ndarray,
             ent_level: np.ndarray, nodes: np.ndarray, coefs: np.ndarray,
             out: np.ndarray, n_threads: int) -> None: ...
