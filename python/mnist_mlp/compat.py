"""`NN`: the seed notebook's class, with its exact interface, trained by the C++ core.

The notebook builds ``NN(input_size, hidden_size, output_size, lr, batch_size)``,
calls ``.train((x, y_onehot), (xt, yt_onehot), num_epochs)``, which prints one
line per epoch and a ``Result:`` block with the time, and reads probabilities
back with ``.test(x)``. This class keeps all of that, so the notebook runs
unchanged apart from the import::

    from mnist_mlp import NN          # instead of defining class NN

It computes what the notebook computes: the weights are drawn from NumPy's
global generator exactly as the notebook draws them (``np.random.randn(in, out)
/ sqrt(in)``, zero biases), so ``np.random.seed(s)`` before ``NN(...)`` gives the
notebook's initial weights; the arithmetic is float64, as it is in the notebook
(float32 images times float64 weights); batches are taken in order. Two
deliberate differences, the package's numerical fixes: the softmax subtracts the
row maximum and the loss is computed as log-sum-exp minus the true logit, so
neither overflows nor takes log(0).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from . import _validate as V
from .model import MLP, _epoch_line

__all__ = ["NN"]


def _param_view(kind: str, index: int, *, row: bool) -> Any:
    """A property reading ``model.<kind>[index]`` (as a 1-row view when ``row``,
    the notebook's bias shape) and writing into it on assignment."""

    def get(self: "NN") -> np.ndarray:
        a = getattr(self.model, kind)[index]
        return a.reshape(1, -1) if row else a

    def set_(self: "NN", value: Any) -> None:
        get(self)[...] = value

    return property(get, set_)


class NN:
    """The seed notebook's two-layer network (ReLU hidden layer, softmax output,
    cross-entropy, SGD), backed by `mnist_mlp.MLP`.

    ``w1, b1, w2, b2`` are NumPy views of the model's parameters with the
    notebook's shapes ((in, hidden), (1, hidden), (hidden, out), (1, out)):
    reading them shows the trained weights, writing into them (``nn.w1 += d``,
    ``nn.b2[...] = 0``) or assigning them (``nn.w1 = array``) changes the model.
    ``lr`` and ``batch_size`` are plain attributes, read at every ``train``.
    ``model`` is the underlying `mnist_mlp.MLP` (float64 unless ``dtype`` says
    otherwise; float32 trains about twice as fast but is no longer the
    notebook's arithmetic).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        output_size: int,
        lr: float = 0.01,
        batch_size: int = 8,
        *,
        dtype: Any = np.float64,
    ) -> None:
        sizes = V.layer_sizes([input_size, hidden_size, output_size])
        # The notebook's draws, in its order, from NumPy's global generator.
        w1 = np.random.randn(sizes[0], sizes[1]) / np.sqrt(sizes[0])
        w2 = np.random.randn(sizes[1], sizes[2]) / np.sqrt(sizes[1])
        dt = V.model_dtype(dtype)
        self.model: MLP = MLP.from_weights(
            [w1.astype(dt), w2.astype(dt)], [np.zeros(sizes[1], dt), np.zeros(sizes[2], dt)]
        )
        self.input_size = sizes[0]
        self.hidden_size = sizes[1]
        self.out_size = sizes[2]
        self.lr = lr
        self.batch_size = batch_size
        self.out: np.ndarray | None = None

    # -- the notebook's attributes: views of the model's parameters ------------------
    w1 = _param_view("weights", 0, row=False)
    w2 = _param_view("weights", 1, row=False)
    b1 = _param_view("biases", 0, row=True)
    b2 = _param_view("biases", 1, row=True)

    # -- the notebook's methods ------------------------------------------------------
    def forward(self, x: Any) -> np.ndarray:
        """Softmax probabilities, (n, out); also kept in ``self.out`` as the
        notebook does (its intermediate ``x1``, ``fc`` and ``x2`` are not kept)."""
        self.out = self.model.predict_proba(x)
        return self.out

    def test(self, x_test: Any) -> np.ndarray:
        """The notebook's ``test``: probabilities for ``x_test``."""
        return self.forward(x_test)

    def backward(self, x: Any, y: Any) -> None:
        """One SGD step on the batch ``(x, y)`` with ``self.lr`` (the notebook's
        ``backward`` after ``forward(x)``: the gradient is taken at the current
        weights)."""
        n = len(x)
        self.model.fit(x, y, epochs=1, lr=self.lr, batch_size=n, shuffle=False)
        self.model.history.pop()

    def train(self, train: tuple[Any, Any], test: tuple[Any, Any], num_epochs: int = 4) -> None:
        """The notebook's ``train``: ``num_epochs`` passes over ``train`` in
        batches of ``self.batch_size``, printing after each the loss and
        accuracy on ``test`` and ``train``, then ``Result:`` and the final line
        with the time (training and the per-epoch evaluations, as the notebook
        timed it). Labels are one-hot rows (the notebook's ``np.eye(10)[y]``)
        or class ids."""
        t_start = time.perf_counter()
        train_images, train_labels = train
        test_images, test_labels = test
        num_epochs = V.positive_int("num_epochs", num_epochs, minimum=0)
        first = len(self.model.history)  # the notebook counts the epochs of each call from 0

        def print_epoch(rec: dict[str, Any]) -> None:
            print(_epoch_line({**rec, "epoch": rec["epoch"] - first}), flush=True)

        if num_epochs:
            self.model.fit(
                train_images, train_labels, epochs=num_epochs, lr=self.lr, batch_size=self.batch_size,
                shuffle=False, validation_data=(test_images, test_labels), callback=print_epoch,
            )
            last = self.model.history[-1]
            t_end = time.perf_counter()
            loss_test, acc_test = last["test_loss"], last["test_accuracy"]
            loss_train, acc_train = last["train_loss"], last["train_accuracy"]
        else:
            t_end = time.perf_counter()
            loss_test, acc_test = self.model.evaluate(test_images, test_labels)
            loss_train, acc_train = self.model.evaluate(train_images, train_labels)
        print("Result:")
        print(
            f"Error on test: {loss_test:.5f}; Error on train: {loss_train:.5f}; "
            f"Accuracy on test: {acc_test:.5f}; Accuracy on train: {acc_train:.5f}; "
            f"Time: {t_end - t_start:.2f} s",
            flush=True,
        )

    def __repr__(self) -> str:
        return (
            f"NN(input_size={self.input_size}, hidden_size={self.hidden_size}, output_size={self.out_size}, "
            f"lr={self.lr}, batch_size={self.batch_size})"
        )

