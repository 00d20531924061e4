"""The core's building blocks, callable on NumPy arrays: matmul, ReLU, softmax
and cross-entropy. float32 and float64; results are new arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _core
from . import _validate as V

__all__ = ["matmul", "relu", "softmax", "cross_entropy", "softmax_cross_entropy_grad"]


def _float_array(name: str, a: Any, ndim: int | None = None) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype not in V.FLOAT_DTYPES:
        raise TypeError(f"{name}: dtype {a.dtype} is not supported; use float32 or float64")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    # Aligned too: ascontiguousarray keeps a contiguous but misaligned array as it is.
    return np.require(a, requirements=("C", "A"))


# ops.matmul is the core's own function (a Python wrapper costs a tenth of a
# small product): it multiplies aligned C-contiguous float arrays of one dtype
# itself and hands everything else to _matmul_checked.
matmul = _core.matmul


def _matmul_checked(a: Any, b: Any, trans_a: Any, trans_b: Any, num_threads: Any) -> np.ndarray:
    """ops.matmul for operands the core does not take directly: converts and
    validates them, with errors that name the problem."""
    a = _float_array("a", a, 2)
    b = _float_array("b", b, 2)
    if a.dtype != b.dtype:
        raise TypeError(f"matmul operands must share a dtype, got {a.dtype} and {b.dtype}")
    k_a = a.shape[0] if trans_a else a.shape[1]
    k_b = b.shape[1] if trans_b else b.shape[0]
    if k_a != k_b:
        raise ValueError(
            f"matmul: inner dimensions differ: op(a) is {a.shape[::-1] if trans_a else a.shape}, "
            f"op(b) is {b.shape[::-1] if trans_b else b.shape}"
        )
    return _core.gemm(a, b, bool(trans_a), bool(trans_b), V.num_threads(num_threads))


def relu(x: Any) -> np.ndarray:
    """max(x, 0), elementwise."""
    x = _float_array("x", x)
    return _core.relu(x)


def _logits(z: Any) -> np.ndarray:
    z = _float_array("logits", z)
    if z.ndim not in (1, 2) or z.shape[-1] < 1:
        raise ValueError(f"logits must be (classes,) or (rows, classes), got shape {z.shape}")
    return z


def softmax(z: Any) -> np.ndarray:
    """Row-wise softmax (over the last axis), with the row max subtracted."""
    z = _logits(z)
    probs = _core.softmax_xent(np.atleast_2d(z))[0]
    return probs.reshape(z.shape)


def cross_entropy(logits: Any, labels: Any) -> float:
    """Mean cross-entropy of softmax(logits) against class ids or one-hot rows,
    through log-sum-exp: finite even where a probability underflows to 0."""
    z = np.atleast_2d(_logits(logits))
    y = V.labels(labels, z.shape[0], z.shape[1], name="labels")
    return float(_core.softmax_xent(z, y)[2])


def softmax_cross_entropy_grad(logits: Any, labels: Any) -> np.ndarray:
    """Gradient of the mean cross-entropy with respect to the logits,
    ``(softmax(logits) - onehot) / rows``."""
    z = np.atleast_2d(_logits(logits))
    y = V.labels(labels, z.shape[0], z.shape[1], name="labels")
    return _core.softmax_xent(z, y)[1]
