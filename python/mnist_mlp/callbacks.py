"""`EarlyStopping` for `MLP.fit`, with Keras's names and rules."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["EarlyStopping"]

# Keras's monitor names and the history's own.
_MONITORS = {
    "val_loss": ("test_loss", "min"),
    "val_accuracy": ("test_accuracy", "max"),
    "loss": ("train_loss", "min"),
    "accuracy": ("train_accuracy", "max"),
    "test_loss": ("test_loss", "min"),
    "test_accuracy": ("test_accuracy", "max"),
    "train_loss": ("train_loss", "min"),
    "train_accuracy": ("train_accuracy", "max"),
}


class EarlyStopping:
    """Stops `MLP.fit` when the monitored quantity has stopped improving, as
    Keras's ``keras.callbacks.EarlyStopping`` does.

    ``monitor`` is "val_loss" (the default), "val_accuracy", "loss" or
    "accuracy" (or the history's names: "test_loss", "train_accuracy", ...).
    Losses improve downwards, accuracies upwards, by more than ``min_delta``.
    Training stops once ``patience`` epochs in a row have not improved on the
    best (after at least two epochs). With ``restore_best_weights`` the best
    epoch's weights are put back when it stops early (as Keras does; a run that
    ends at ``epochs`` keeps its last weights). After fit, ``stopped_epoch`` is
    the model epoch at which it stopped (None if it did not), ``best_epoch`` and
    ``best`` the best epoch and its value. The validation quantities need
    ``validation_data`` or ``validation_split``.
    """

    def __init__(self, monitor: str = "val_loss", patience: int = 5, min_delta: float = 0.0,
                 restore_best_weights: bool = True):
        if monitor not in _MONITORS:
            raise ValueError(f"monitor must be one of {', '.join(map(repr, _MONITORS))}, got {monitor!r}")
        if isinstance(patience, (bool, np.bool_)) or not isinstance(patience, numbers.Integral) or patience < 0:
            raise ValueError(f"patience must be an integer >= 0, got {patience!r}")
        if isinstance(min_delta, (bool, np.bool_)) or not isinstance(min_delta, numbers.Real) or not (
            math.isfinite(min_delta) and min_delta >= 0
        ):
            raise ValueError(f"min_delta must be a finite number >= 0, got {min_delta!r}")
        if not isinstance(restore_best_weights, (bool, np.bool_)):
            raise TypeError(f"restore_best_weights must be True or False, got {restore_best_weights!r}")
        self.monitor = monitor
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.restore_best_weights = bool(restore_best_weights)
        self._key, self._mode = _MONITORS[monitor]
        self._reset()

    def _reset(self) -> None:
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.stopped_epoch: int | None = None
        self.wait = 0
        self.best_weights: tuple[list[np.ndarray], list[np.ndarray]] | None = None

    @property
    def needs_validation(self) -> bool:
        return self._key.startswith("test_")

    def __repr__(self) -> str:
        return (f"EarlyStopping(monitor={self.monitor!r}, patience={self.patience}, min_delta={self.min_delta}, "
                f"restore_best_weights={self.restore_best_weights})")

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return True
        if self._mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def _epoch_end(self, record: dict, model: Any, first_epoch: int) -> bool:
        """After an epoch: True to stop. Restores the best weights when stopping."""
        value = float(record[self._key])
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = model._copy_params()
        self.wait += 1
        if self._improves(value):
            self.best, self.best_epoch, self.wait = value, record["epoch"], 0
            if self.restore_best_weights:
                self.best_weights = model._copy_params()
            return False
        if self.wait >= self.patience and record["epoch"] > first_epoch:
            self.stopped_epoch = record["epoch"]
            if self.restore_best_weights and self.best_weights is not None:
                model._set_params(*self.best_weights)
            return True
        return False
