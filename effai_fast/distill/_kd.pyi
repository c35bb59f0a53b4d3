import numpy as np
import numpy.typing as npt

def _softmax(z: npt.NDArray[np.floating], inv_t: float, out: npt.NDArray[np.floating],
             n_threads: int) -> None: ...
def _log_softmax(z: npt.NDArray[np.floating], inv_t: float, out: npt.NDArray[np.floating],
                 n_threads: int) -> None: ...
def _kd_loss(student: npt.NDArray[np.floating], teacher: npt.NDArray[np.floating],
             labels: npt.NDArray[np.int64], inv_t: float, soft_loss_w: float,
             soft_grad_w: float, hard_loss_w: float, hard_grad_w: float,
             grad: npt.NDArray[np.floating], row_loss: npt.NDArray[np.float64],
             n_threads: int) -> None: ...
def _kd_loss_f32(student: npt.NDArray[np.float32], teacher: npt.NDArray[np.float32],
                 labels: npt.NDArray[np.int64], inv_t: float, soft_loss_w: float,
                 soft_grad_w: float, hard_loss_w: float, hard_grad_w: float,
                 grad: npt.NDArray[np.float32], row_loss: npt.NDArray[np.float64],
                 n_threads: int) -> None: ...
def _kd_loss_f64(student: npt.NDArray[np.float64], teacher: npt.NDArray[np.float64],
                 labels: npt.NDArray[np.int64], inv_t: float, soft_loss_w: float,
                 soft_grad_w: float, hard_loss_w: float, hard_grad_w: float,
                 grad: npt.NDArray[np.float64], row_loss: npt.NDArray[np.float64],
                 n_threads: int) -> None: ...
def _cpu_level() -> int: ...
def _sum_ordered(x: npt.NDArray[np.float64]) -> float: ...
