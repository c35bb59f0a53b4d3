from typing import Any

import numpy as np

OPCODES: dict[str, int]
BLOCK: int
HAVE_CLONES: bool
VECTOR_MATH: bool

class Program:
    code: np.ndarray
    dst: np.ndarray
    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    imm: np.ndarray
    out_slots: np.ndarray
    red_slots: np.ndarray
    n_ops: int
    n_slots: int
    n_x: int
    n_p: int
    block: int
    n_outputs: int
    n_reduced: int
    def __init__(self, code: Any, dst: Any, a: Any, b: Any, c: Any, imm: Any, n_slots: int,
                 n_x: int, n_p: int, out_slots: Any, red_slots: Any, block: int) -> None: ...
    def run(self, X: np.ndarray, P: np.ndarray, OUT: np.ndarray, OUT2: np.ndarray,
            PART: np.ndarray, n_threads: int, debug: bool = ...,
            soa2: bool = ...) -> tuple[int, int] | None: ...
    def run_columns(self, inputs: list[np.ndarray], P: np.ndarray,
                    outputs: list[np.ndarray], n_threads: int, PART: np.ndarray | None = ...,
                    n: int = ..., in_offsets: Any = ..., out_offsets: Any = ...,
                    accumulate: Any = ...) -> None: ...
    def run1(self, x: np.ndarray, p: np.ndarray) -> np.ndarray: ...
    def call1(self, x: Any, split_first: bool) -> Any: ...
