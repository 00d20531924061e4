"""The oracle: the seed notebook's MLP in plain NumPy.

Same arithmetic as the seed (ReLU hidden layers, softmax output, cross-entropy,
mean-gradient SGD, W -= lr * g), with two deliberate fixes: the softmax subtracts
the row max, and the loss is log-sum-exp minus the true logit, so neither
overflows nor takes log(0). It shares the constructor, `fit`, `evaluate` and
`predict` API of `mnist_mlp.MLP`, and the same seed gives the same initial
weights, so the two can be compared step for step. It is slow on purpose:
nothing here is optimised beyond what NumPy does by itself.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np

from . import _validate as V

__all__ = ["NumpyMLP", "initial_params", "shuffle_rng"]


def initial_params(
    layer_sizes: Sequence[int], seed: Any = None, dtype: Any = np.float32
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The seed's initialisation: W ~ N(0, 1) / sqrt(fan_in), b = 0.

    Draws in float64 from ``np.random.default_rng(seed)`` layer by layer, then
    casts, so a given seed gives the same weights on every platform and for
    both `MLP` and `NumpyMLP`."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    ws, bs = [], []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        ws.append((rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(dtype))
        bs.append(np.zeros(fan_out, dtype=dtype))
    return ws, bs


def shuffle_rng(seed: Any) -> np.random.Generator:
    """The generator behind ``shuffle=True``: a stream of its own, separate from
    the initial weights, derived from the same seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _xent_sum(z: np.ndarray, y: np.ndarray) -> float:
    """Summed cross-entropy through log-sum-exp (finite where log(p) is not)."""
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float(np.sum(lse - z[np.arange(len(y)), y], dtype=np.float64))


class NumpyMLP:
    """Pure-NumPy multilayer perceptron with the `mnist_mlp.MLP` API."""

    def __init__(self, layer_sizes: Sequence[int], *, seed: Any = None, dtype: Any = np.float32):
        self.layer_sizes = V.layer_sizes(layer_sizes)
        self.dtype = V.model_dtype(dtype)
        self.weights, self.biases = initial_params(self.layer_sizes, seed, self.dtype)
        self._shuffle = shuffle_rng(seed)
        self.history: list[dict] = []

    @classmethod
    def from_weights(cls, weights: Sequence[np.ndarray], biases: Sequence[np.ndarray]) -> "NumpyMLP":
        ws = [np.array(w, copy=True) for w in weights]
        sizes = [ws[0].shape[0]] + [w.shape[1] for w in ws]
        self = cls(sizes, seed=0, dtype=ws[0].dtype)
        self.weights = [w.astype(self.dtype) for w in ws]
        self.biases = [np.array(b, dtype=self.dtype).reshape(-1) for b in biases]
        return self

    # -- the seed's arithmetic -------------------------------------------------
    def _as_float(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == np.uint8:
            return x.astype(self.dtype) / self.dtype.type(255)
        return x.astype(self.dtype, copy=False)

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Activations of every layer; the last entry is the logits."""
        acts = [self._as_float(x)]
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = np.dot(acts[-1], w) + b
            acts.append(np.maximum(z, 0) if i + 1 < len(self.weights) else z)
        return acts

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> float:
        """One SGD step on a batch; returns the batch's summed loss before the step."""
        acts = self._forward(x)
        z = acts[-1]
        loss = _xent_sum(z, y)
        onehot = np.zeros_like(z)
        onehot[np.arange(len(y)), y] = 1
        delta = (_softmax_rows(z) - onehot) / z.shape[0]  # the seed's dx2
        lr = self.dtype.type(lr)
        for l in range(len(self.weights) - 1, -1, -1):
            a = acts[l]
            dw = np.dot(a.T, delta)
            db = np.sum(delta, axis=0)
            if l > 0:  # uses w before its update, as the seed does
                delta = np.dot(delta, self.weights[l].T) * (a > 0)
            self.weights[l] += -lr * dw
            self.biases[l] += -lr * db
        return loss

    # -- the shared API ------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        epochs: int = 1,
        lr: float = 0.1,
        batch_size: int = 8,
        shuffle: bool = False,
        validation_data: tuple[Any, Any] | None = None,
        verbose: bool = False,
        **_ignored: Any,
    ) -> list[dict]:
        x = V.inputs(x, self.layer_sizes[0])
        y = V.labels(y, len(x), self.layer_sizes[-1])
        epochs = V.positive_int("epochs", epochs)
        batch_size = V.positive_int("batch_size", batch_size)
        lr = V.positive_float("lr", lr)
        hist = []
        for epoch in range(epochs):
            order = self._shuffle.permutation(len(x)) if shuffle else None
            t0 = time.perf_counter()
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size] if order is not None else slice(start, start + batch_size)
                self.train_step(x[idx], y[idx], lr)
            rec: dict[str, Any] = {"epoch": len(self.history), "seconds": time.perf_counter() - t0}
            rec["train_loss"], rec["train_accuracy"] = self.evaluate(x, y)
            if validation_data is not None:
                rec["test_loss"], rec["test_accuracy"] = self.evaluate(*validation_data)
            self.history.append(rec)
            hist.append(rec)
            if verbose:
                print(rec)
        return hist

    def predict_proba(self, x: Any, **_ignored: Any) -> np.ndarray:
        x = V.inputs(x, self.layer_sizes[0])
        return _softmax_rows(self._forward(x)[-1])

    def predict(self, x: Any, **_ignored: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(x), axis=1)

    def evaluate(self, x: Any, y: Any, **_ignored: Any) -> tuple[float, float]:
        """(mean cross-entropy, accuracy), in chunks to bound memory."""
        x = V.inputs(x, self.layer_sizes[0])
        y = V.labels(y, len(x), self.layer_sizes[-1])
        loss, correct = 0.0, 0
        for s in range(0, len(x), 4096):
            z = self._forward(x[s : s + 4096])[-1]
            loss += _xent_sum(z, y[s : s + 4096])
            correct += int(np.sum(np.argmax(_softmax_rows(z), axis=1) == y[s : s + 4096]))
        return loss / len(x), correct / len(x)
