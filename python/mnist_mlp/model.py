"""`MLP`: the C++-trained multilayer perceptron."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import _core, _progress
from ._files import atomic_write, display_name
from ._model_file import ModelArchive, ModelFileError, check_history
from . import _validate as V
from . import optim as _optim
from .callbacks import EarlyStopping
from .reference import dropout_seed_of, initial_params, shuffle_rng

__all__ = ["MLP"]

_FORMAT = "mnist_mlp.MLP/2"
_FORMATS_READ = ("mnist_mlp.MLP/1", _FORMAT)
_NO_STATE: tuple[str, tuple[str, ...]] = ("sgd", ())  # plain SGD's state: none
_SLOT_COUNT = range(3)  # the C++ model's state slots (kStateSlots)


class MLP:
    """A multilayer perceptron: hidden layers with one activation, softmax
    output, cross-entropy loss, trained by mini-batch SGD (or an optimizer from
    `mnist_mlp.optim`) in C++.

    ``layer_sizes`` lists the width of every layer, input first, e.g.
    ``[784, 300, 10]``. ``activation`` is that of every hidden layer: "relu"
    (the seed's), "tanh", "logistic" or "identity". ``dropout`` is the rate of
    inverted dropout after each hidden layer's activation, in training only: one
    float for all, or one per hidden layer (0 for none). Its masks are a function
    of (seed, epoch, sample, unit), so they do not depend on the thread count or
    the batch size, and `mnist_mlp.reference.NumpyMLP` reproduces them.

    Weights are stored (fan_in, fan_out) in one C++ allocation, with the
    optimizer's state; ``weights`` and ``biases`` are NumPy views of it (writes
    go straight to the model). The initial weights are the seed notebook's,
    N(0, 1) / sqrt(fan_in) with zero biases, drawn from
    ``np.random.default_rng(seed)``; `mnist_mlp.reference.NumpyMLP` with the same
    seed starts from the same weights.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        activation: str = "relu",
        dropout: Any = 0.0,
        seed: Any = None,
        dtype: Any = np.float32,
    ):
        sizes = V.layer_sizes(layer_sizes)
        self._dtype = V.model_dtype(dtype)
        self._activation = V.activation(activation)
        self._dropout = V.dropout(dropout, len(sizes) - 2)
        self._core = (_core.ModelF32 if self._dtype == np.float32 else _core.ModelF64)(sizes)
        self._core.activation = self._activation
        self._dropout_seed = dropout_seed_of(None if seed is _NO_INIT else seed)
        # What the optimizer's state belongs to (kind, slot names); the state and
        # its step count (self._core.opt_step) are in the C++ model.
        self._opt_sig: tuple[str, tuple[str, ...]] = _NO_STATE
        # One call at a time per model: a second thread waits rather than
        # reading weights that are being updated.
        self._lock = threading.RLock()
        self._busy: str | None = None  # "fit" while fit runs, "epoch" inside an epoch
        # The thread whose fit is running, and the condition other fits wait on:
        # fit holds the lock during each epoch, not around its callbacks.
        self._fit_owner: int | None = None
        self._fit_free = threading.Condition(self._lock)
        self._shuffle = shuffle_rng(None if seed is _NO_INIT else seed)
        self.history: list[dict] = []
        if seed is not _NO_INIT:
            ws, bs = initial_params(sizes, seed, self._dtype)
            self._set_params(ws, bs)

    # -- parameters ------------------------------------------------------------
    @classmethod
    def from_weights(
        cls,
        weights: Sequence[Any],
        biases: Sequence[Any],
        *,
        activation: str = "relu",
        dropout: Any = 0.0,
        seed: Any = None,
    ) -> "MLP":
        """A model with the given parameters (copied). ``weights[l]`` is
        (fan_in, fan_out), ``biases[l]`` is (fan_out,); the dtype is that of
        ``weights[0]`` (float32 or float64). ``seed`` seeds shuffling and the
        dropout masks."""
        ws = [np.asarray(w) for w in weights]
        bs = [np.asarray(b) for b in biases]
        if len(ws) < 2:
            raise ValueError(f"from_weights needs at least 2 weight matrices (one hidden layer), got {len(ws)}")
        if len(bs) != len(ws):
            raise ValueError(f"got {len(ws)} weight matrices but {len(bs)} bias vectors")
        dtype = V.model_dtype(ws[0].dtype)
        sizes = [ws[0].shape[0] if ws[0].ndim == 2 else -1]
        for l, (w, b) in enumerate(zip(ws, bs)):
            if w.ndim != 2:
                raise ValueError(f"weights[{l}] must be 2-D (fan_in, fan_out), got shape {w.shape}")
            if b.shape not in ((w.shape[1],), (1, w.shape[1])) and b.shape == (w.shape[0],):
                raise ValueError(
                    f"weights[{l}] has shape {w.shape} with biases[{l}] of {b.shape}: that is PyTorch's "
                    f"(out_features, in_features) layout; from_weights takes (fan_in, fan_out): pass "
                    f"weight.T (e.g. [lin.weight.detach().numpy().T for lin in layers])"
                )
            if w.shape[0] != sizes[-1]:
                raise ValueError(f"weights[{l}] has fan_in {w.shape[0]} but the previous layer has {sizes[-1]} units")
            if b.shape not in ((w.shape[1],), (1, w.shape[1])):
                raise ValueError(f"biases[{l}] must have shape ({w.shape[1]},), got {b.shape}")
            for name, arr in ((f"weights[{l}]", w), (f"biases[{l}]", b)):
                if arr.dtype != dtype:
                    raise TypeError(f"{name} is {arr.dtype} but weights[0] is {dtype}; all parameters share one dtype")
                if not np.isfinite(arr).all():
                    raise ValueError(f"{name} holds non-finite values")
            sizes.append(w.shape[1])
        self = cls(sizes, activation=activation, dropout=dropout, seed=_NO_INIT, dtype=dtype)
        self._shuffle = shuffle_rng(seed)
        self._dropout_seed = dropout_seed_of(seed)
        self._set_params(ws, [b.reshape(-1) for b in bs])
        return self

    def _copy_params(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Copies of (weights, biases), for `_set_params` to put back."""
        return [np.array(w) for w in self.weights], [np.array(b) for b in self.biases]

    def _set_params(self, ws: Sequence[np.ndarray], bs: Sequence[np.ndarray]) -> None:
        for dst, src in zip(self._core.weights() + self._core.biases(), list(ws) + list(bs)):
            dst[...] = src

    @property
    def weights(self) -> list[np.ndarray]:
        """Views of the weight matrices, (fan_in, fan_out) each."""
        return self._core.weights()

    @property
    def biases(self) -> list[np.ndarray]:
        """Views of the bias vectors, (fan_out,) each."""
        return self._core.biases()

    @property
    def layer_sizes(self) -> list[int]:
        return list(self._core.sizes)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def num_params(self) -> int:
        return int(self._core.num_params)

    @property
    def activation(self) -> str:
        """The hidden layers' activation."""
        return self._activation

    @property
    def dropout(self) -> list[float]:
        """The dropout rate after each hidden layer."""
        return list(self._dropout)

    @property
    def optimizer_state(self) -> dict[str, Any]:
        """The optimizer's state, copied: ``kind``, ``step`` (steps taken), ``slots``
        (the state arrays' names, torch's, e.g. "exp_avg") and, per name, a pair
        (weights, biases) of lists shaped as the parameters."""
        kind, names = self._opt_sig
        out: dict[str, Any] = {"kind": kind, "step": self._core.opt_step, "slots": list(names)}
        for slot, name in enumerate(names):
            if name:
                ws, bs = self._core.state(slot)
                out[name] = ([np.array(w) for w in ws], [np.array(b) for b in bs])
        return out

    def reset_optimizer(self) -> None:
        """Forgets the optimizer's state (the next fit starts its step count at 0)."""
        with self._locked("reset_optimizer"):
            self._reset_state(_NO_STATE)

    def _reset_state(self, sig: tuple[str, tuple[str, ...]]) -> None:
        if any(self._opt_sig[1]):
            self._core.zero_state()
        self._opt_sig = sig
        self._core.opt_step = 0

    def __repr__(self) -> str:
        extra = "" if self._activation == "relu" else f", activation={self._activation!r}"
        if any(self._dropout):
            extra += f", dropout={self._dropout if len(set(self._dropout)) > 1 else self._dropout[0]!r}"
        return f"MLP({self.layer_sizes}{extra}, dtype={self._dtype.name})"

    @contextlib.contextmanager
    def _locked(self, what: str) -> Iterator[None]:
        # Calls from other threads wait for the lock, which fit holds during each
        # epoch and releases around its callback. The thread running fit may read
        # and save the model from the callback (between epochs) but not from the
        # progress function (inside one: the working copies are not written back).
        with self._lock:
            if self._busy == "epoch":
                raise RuntimeError(f"{what} cannot be called from fit's progress function: the epoch is still running")
            yield

    @contextlib.contextmanager
    def _fit_slot(self) -> Iterator[None]:
        """One fit at a time: another thread's fit waits for this one to end; a
        fit started from inside fit (its callback or progress function) raises."""
        me = threading.get_ident()
        with self._lock:
            if self._fit_owner == me:
                raise RuntimeError("fit cannot be called from inside fit (from its callback or progress function)")
            while self._fit_owner is not None:
                self._fit_free.wait()
            self._fit_owner, self._busy = me, "fit"
        try:
            yield
        finally:
            with self._lock:
                self._fit_owner, self._busy = None, None
                self._fit_free.notify_all()

    # -- pickling (copy.deepcopy, multiprocessing, joblib) ------------------------
    def __getstate__(self) -> dict[str, Any]:
        with self._locked("pickling"):
            return {
                "layer_sizes": self.layer_sizes,
                "dtype": self._dtype.name,
                "activation": self._activation,
                "dropout": list(self._dropout),
                "dropout_seed": self._dropout_seed,
                "weights": [np.array(w) for w in self.weights],
                "biases": [np.array(b) for b in self.biases],
                "history": [dict(h) for h in self.history],
                "shuffle_state": self._shuffle.bit_generator.state,
                "optimizer_state": self.optimizer_state,
            }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["layer_sizes"], activation=state.get("activation", "relu"), dropout=state.get("dropout", 0.0),
            seed=_NO_INIT, dtype=state["dtype"],
        )
        self._set_params(state["weights"], state["biases"])
        self.history = state["history"]
        self._shuffle.bit_generator.state = state["shuffle_state"]
        if "dropout_seed" in state:
            self._dropout_seed = int(state["dropout_seed"])
        if "optimizer_state" in state:
            self._restore_state(state["optimizer_state"], "pickled state")

    def _restore_state(self, st: dict[str, Any], where: str) -> None:
        """Puts back an `optimizer_state` dict (from pickling or a file)."""
        kind, step = str(st["kind"]), int(st["step"])
        names = tuple(str(n) for n in st["slots"])
        if len(names) > len(_SLOT_COUNT):
            raise ValueError(f"{where}: the optimizer state names {len(names)} state arrays, at most 3 are kept")
        if step < 0:
            raise ValueError(f"{where}: the optimizer's step count is negative ({step})")
        for slot, name in enumerate(names):
            if not name:
                continue
            ws, bs = self._core.state(slot)
            sw, sb = st[name]
            if len(sw) != len(ws) or len(sb) != len(bs):
                raise ValueError(f"{where}: optimizer state {name!r} has the wrong number of layers")
            for l, (dst, src) in enumerate(zip(list(ws) + list(bs), list(sw) + list(sb))):
                src = np.asarray(src)
                if src.shape != dst.shape or src.dtype != dst.dtype:
                    raise ValueError(
                        f"{where}: optimizer state {name!r} holds {src.dtype} {src.shape} where the model needs "
                        f"{dst.dtype} {dst.shape}"
                    )
                dst[...] = src
        self._opt_sig = (kind, names)
        self._core.opt_step = step

    # -- training --------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        epochs: int = 1,
        lr: float | None = None,
        batch_size: int = 8,
        shuffle: bool = False,
        validation_data: tuple[Any, Any] | None = None,
        num_threads: int | None = None,
        verbose: bool = False,
        *,
        sparse: bool = True,
        stop_on_nan: bool = True,
        callback: Callable[[dict], Any] | None = None,
        progress: Callable[[int, int], Any] | None = None,
        eval_train: bool = True,
        optimizer: _optim.Optimizer | None = None,
        lr_schedule: Any = None,
        validation_split: float = 0.0,
        early_stopping: EarlyStopping | None = None,
        _orders: Callable[[int], np.ndarray] | None = None,
        _sklearn_loss: bool = False,
    ) -> list[dict]:
        """Trains in place with mini-batch SGD and returns one dict per epoch.

        ``optimizer`` is one of `mnist_mlp.optim` (SGD with momentum, Adam,
        AdamW, RMSprop: torch.optim's formulas and defaults); None is plain SGD
        at ``lr`` (default 0.1), the seed's ``W -= lr * g``. Give the learning
        rate to one or the other: passing both raises. The optimizer's state
        stays in the model between fits (see `mnist_mlp.optim`).
        ``lr_schedule`` scales the learning rate per epoch: a schedule from
        `mnist_mlp.optim` or a callable from the model's epoch to a factor.
        ``validation_split`` holds out the last fraction of ``x`` and ``y`` (as
        Keras does, before any shuffling) as validation data.
        ``early_stopping`` is an `EarlyStopping`; the records then also tell
        ``lr``.

        ``x`` is (n, features) or (n, 28, 28): uint8 pixels (scaled by 1/255
        inside the kernel; no float copy of the data is made; other integer
        dtypes within 0..255 are pixels too) or float32 / float64 features,
        C- or F-ordered. Float features that look like unscaled pixels
        (integers 0..255) warn with `UnscaledInputWarning`; bool is refused. ``y`` is class ids (n,) or one-hot
        (n, classes). Batches are taken in order unless ``shuffle``; a last
        partial batch is used as is. Each step is the seed's: mean gradient over
        the batch, ``W -= lr * g``.

        After each epoch the loss and accuracy on all of ``x`` (and on
        ``validation_data``) are measured, as the seed did. The dicts hold
        ``epoch``, ``seconds`` (training only), ``eval_seconds``,
        ``train_loss``, ``train_accuracy`` and, with validation data,
        ``test_loss`` and ``test_accuracy``. With ``eval_train=False`` the
        pass over ``x`` is skipped and ``train_loss`` / ``train_accuracy`` are
        the running means over the epoch's batches, each measured before its
        step's update (what Keras and scikit-learn report). ``verbose`` prints
        the seed's line after each epoch, under a progress bar (tqdm) when
        stdout is a terminal. ``callback(record)`` is called
        after each epoch; returning False stops training. ``progress(done,
        total)`` is called within each epoch, about every millisecond, with
        the batches done and the epoch's batch count (and once more at the
        epoch's end); an exception it raises stops training after the current
        batch.

        ``sparse`` skips zero inputs (exact: the skipped terms are zeros). For
        uint8 ``x`` the nonzero pixels are listed once at the start of ``fit``
        (with batches in order, every batch is planned: about 6 bytes per
        nonzero pixel; shuffled, about 3): do not change ``x`` during ``fit``,
        e.g. from ``callback``; the listed pixels would be used.
        Ctrl-C stops between batches with KeyboardInterrupt, leaving the
        weights of the last completed batch. A NaN/Inf loss raises
        FloatingPointError naming the epoch and batch when ``stop_on_nan``.
        """
        sizes = self.layer_sizes
        x = V.inputs(x, sizes[0], dtype=self.dtype, warn_unscaled=True)
        y = V.labels(y, len(x), sizes[-1])
        epochs = V.positive_int("epochs", epochs)
        if optimizer is not None:
            if not isinstance(optimizer, _optim.Optimizer):
                raise TypeError(
                    f"optimizer must be one of mnist_mlp.optim (SGD, Adam, AdamW, RMSprop) or None, got {optimizer!r}"
                )
            if lr is not None:
                raise ValueError(
                    "pass the learning rate either as lr (plain SGD) or in the optimizer, not both: "
                    f"got lr={lr!r} and {optimizer!r}"
                )
            base_lr = V.learning_rate("the optimizer's lr", optimizer.lr, self.dtype)
        else:
            base_lr = V.learning_rate("lr", V.positive_float("lr", 0.1 if lr is None else lr), self.dtype)
        schedule = _optim.schedule(lr_schedule)
        if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
            raise TypeError(f"early_stopping must be an mnist_mlp.EarlyStopping or None, got {early_stopping!r}")
        if isinstance(validation_split, (bool, np.bool_)) or not isinstance(validation_split, (int, float, np.floating)):
            raise TypeError(f"validation_split must be a float in [0, 1), got {validation_split!r}")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), got {validation_split!r}")
        batch_size = V.positive_int("batch_size", batch_size)
        threads = V.num_threads(num_threads)
        if not isinstance(eval_train, (bool, np.bool_)):
            raise TypeError(f"eval_train must be True or False, got {eval_train!r}")
        if progress is not None and not callable(progress):
            raise TypeError(f"progress must be callable, got {progress!r}")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        if validation_data is not None:
            try:
                vx, vy = validation_data
            except (TypeError, ValueError) as e:
                raise TypeError("validation_data must be a pair (x, y)") from e
            vx = V.inputs(vx, sizes[0], name="validation x", dtype=self.dtype)
            vy = V.labels(vy, len(vx), sizes[-1], name="validation y")
        if validation_split > 0:
            if validation_data is not None:
                raise ValueError("pass validation_data or validation_split, not both")
            split_at = int(len(x) * (1.0 - float(validation_split)))
            if split_at < 1 or split_at >= len(x):
                raise ValueError(
                    f"validation_split={validation_split} leaves {split_at} of {len(x)} samples for training and "
                    f"{len(x) - split_at} for validation; both need at least one"
                )
            x, vx, y, vy = x[:split_at], x[split_at:], y[:split_at], y[split_at:]
            validation_data = (vx, vy)
        if early_stopping is not None and early_stopping.needs_validation and validation_data is None:
            raise ValueError(
                f"early_stopping monitors {early_stopping.monitor!r}, which needs validation_data or validation_split"
            )
        sig = optimizer._signature() if optimizer is not None else _NO_STATE
        plain = (optimizer is None or optimizer.is_plain_sgd) and not any(self._dropout)
        dropout = list(self._dropout) if any(self._dropout) else None
        hist = []
        with self._fit_slot(), self._lock, _verbose_bar(verbose, epochs) as bar:
            if bar is not None and type(bar) is not _progress.NoBar:  # a terminal: the bar moves within epochs
                user_progress = progress

                def progress(done: int, total: int) -> None:
                    bar.batches(done, total)
                    if user_progress is not None:
                        user_progress(done, total)

            # uint8 pixels: list the nonzeros once, so no epoch scans blank pixels again.
            # The same batches every epoch (no shuffling, small batches): plan them
            # all now, once; shuffled, index each image's nonzeros.
            index = plan = None
            aid = _core.training_aid(
                list(sizes), batch_size, len(x), x.dtype == np.uint8, x.shape[1], bool(shuffle) or _orders is not None,
                bool(sparse),
                self._activation, plain,
            )
            if aid == "plan":
                plan = _core.BatchPlan(x, batch_size, threads)
            elif aid == "index":
                index = _core.NonzeroIndex(x, threads)
            if sig != self._opt_sig:
                self._reset_state(sig)
            first_epoch = len(self.history)
            if early_stopping is not None:
                early_stopping._reset()
            for _ in range(epochs):
                epoch = len(self.history)
                lr = base_lr if schedule is None else schedule.lr(epoch, base_lr, samples_per_epoch=len(x))
                lr = V.learning_rate("the scheduled learning rate", V.positive_float("the scheduled learning rate", lr), self.dtype)
                cfg = optimizer._config(lr) if optimizer is not None else None
                if _orders is not None:  # MLPClassifier: scikit-learn's shuffles
                    order = np.ascontiguousarray(_orders(epoch), dtype=np.int64)
                    if order.shape != (len(x),):
                        raise ValueError(f"_orders({epoch}) must give a permutation of {len(x)} rows")
                else:
                    order = self._shuffle.permutation(len(x)).astype(np.int64) if shuffle else None
                t0 = time.perf_counter()
                self._busy = "epoch"
                try:
                    r = self._core.train_epoch(
                        x, y, order, batch_size, lr, bool(sparse), bool(stop_on_nan), threads, index, progress, plan,
                        cfg, dropout, self._dropout_seed, epoch, _sklearn_loss,
                    )
                finally:
                    self._busy = "fit"
                if progress is not None:
                    progress(r["batches"], -(-len(x) // batch_size))
                seconds = time.perf_counter() - t0
                epoch = len(self.history)
                if stop_on_nan and r["first_nonfinite_batch"] >= 0:
                    raise FloatingPointError(
                        f"training diverged: the loss became NaN or Inf at epoch {epoch}, batch "
                        f"{r['first_nonfinite_batch']} (lr={lr} may be too high, or the features unscaled: pixels 0..255 "
                        "must be divided by 255); the weights are no longer finite"
                    )
                rec: dict[str, Any] = {"epoch": epoch, "seconds": seconds, "kernel": r["kernel"]}
                if optimizer is not None or schedule is not None:
                    rec["lr"] = lr
                if r["penalty_sum"]:
                    # scikit-learn's alpha: the running mean of its L2 term (MLPClassifier's loss_)
                    rec["train_penalty"] = r["penalty_sum"] / max(int(r["samples"]), 1)
                t1 = time.perf_counter()
                if eval_train:
                    rec["train_loss"], rec["train_accuracy"] = self._evaluate(x, y, threads, plan)
                else:
                    done = max(int(r["samples"]), 1)
                    rec["train_loss"], rec["train_accuracy"] = r["loss_sum"] / done, r["correct"] / done
                if validation_data is not None:
                    rec["test_loss"], rec["test_accuracy"] = self._evaluate(vx, vy, threads)
                rec["eval_seconds"] = time.perf_counter() - t1
                self.history.append(rec)
                hist.append(rec)
                if bar is not None:
                    bar.write(_epoch_line(rec))
                    bar.update(rec)
                # Every epoch's callbacks run, as in Keras; either may end training.
                stop = early_stopping is not None and early_stopping._epoch_end(rec, self, first_epoch)
                if callback is not None:
                    # Without the lock: the callback may save or evaluate the model
                    # from any thread (a checkpoint written by a worker thread).
                    self._lock.release()
                    try:
                        go_on = callback(dict(rec)) is not False
                    finally:
                        self._lock.acquire()
                    if not go_on:
                        break
                if stop:
                    break
        return hist

    # -- inference -------------------------------------------------------------
    def _evaluate(
        self, x: np.ndarray, y: np.ndarray, threads: int | None, plan: Any = None
    ) -> tuple[float, float]:
        # plan: fit's BatchPlan of x, whose forward groups the first layer can reuse.
        loss_sum, correct, _, _ = self._core.evaluate(x, y, False, False, threads, plan)
        return loss_sum / len(x), correct / len(x)

    def evaluate(self, x: Any, y: Any, num_threads: int | None = None) -> tuple[float, float]:
        """(mean cross-entropy loss, accuracy) on ``x``, ``y``."""
        x = V.inputs(x, self.layer_sizes[0], dtype=self.dtype, warn_unscaled=True)
        y = V.labels(y, len(x), self.layer_sizes[-1])
        threads = V.num_threads(num_threads)
        with self._locked("evaluate"):
            loss, acc = self._evaluate(x, y, threads)
            if not math.isfinite(loss):
                raise ValueError(self._nonfinite_outputs("the loss"))
        return loss, acc

    def predict_proba(self, x: Any, num_threads: int | None = None) -> np.ndarray:
        """Softmax probabilities, (n, classes), in the model's dtype. A single
        sample, (features,) or one (28, 28) image, is one row."""
        x = V.inputs(x, self.layer_sizes[0], dtype=self.dtype, one_sample=True, warn_unscaled=True)
        threads = V.num_threads(num_threads)
        with self._locked("predict_proba"):
            probs = self._core.evaluate(x, None, True, False, threads)[2]
            assert probs is not None
            if not np.isfinite(probs).all():
                raise ValueError(self._nonfinite_outputs("the probabilities"))
        return probs

    def predict(self, x: Any, num_threads: int | None = None) -> np.ndarray:
        """The most probable class of each row, (n,) int64. A single sample,
        (features,) or one (28, 28) image, is one row."""
        x = V.inputs(x, self.layer_sizes[0], dtype=self.dtype, one_sample=True, warn_unscaled=True)
        threads = V.num_threads(num_threads)
        with self._locked("predict"):
            _, _, probs, pred = self._core.evaluate(x, None, True, True, threads)
            assert pred is not None
            if not np.isfinite(probs).all():  # argmax over NaN would be a silent wrong answer
                raise ValueError(self._nonfinite_outputs("the probabilities"))
        return pred.astype(np.int64)

    def _nonfinite_outputs(self, what: str) -> str:
        """Why the outputs of finite inputs are not finite: a parameter that is
        not, or an overflow of the model's dtype."""
        for kind, params in (("weights", self.weights), ("biases", self.biases)):
            for l, p in enumerate(params):
                bad = ~np.isfinite(p)
                if bad.any():
                    at = tuple(int(i) for i in np.argwhere(bad)[0])
                    return (
                        f"{what} are not finite: the model's {kind}[{l}] holds {p[at]} at {at} "
                        f"({int(bad.sum())} non-finite values); the model is unusable until they are replaced"
                    )
        return (
            f"{what} are not finite: the logits overflowed {self.dtype.name}; the weights or the inputs are "
            "too large (unscaled features?)"
        )

    # -- persistence -----------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Writes an .npz (layer sizes, dtype, activation, dropout, package
        version, history, the parameters and the optimizer's state, so a loaded
        model's fit continues exactly where this one's stopped). The file appears
        complete or not at all."""
        from . import __version__

        path = os.fspath(path)
        with self._locked("save"):  # one snapshot: the history and the weights of the same epoch
            arrays: dict[str, np.ndarray] = {
                "format": np.array(_FORMAT),
                "version": np.array(__version__),
                "layer_sizes": np.array(self.layer_sizes, dtype=np.int64),
                "dtype": np.array(self._dtype.name),
                "history": np.array(json.dumps(self.history)),
                "activation": np.array(self._activation),
                "dropout": np.array(self._dropout, dtype=np.float64),
                "dropout_seed": np.array(self._dropout_seed, dtype=np.uint64),
                "shuffle_state": np.array(json.dumps(self._shuffle.bit_generator.state)),
            }
            for l, (w, b) in enumerate(zip(self.weights, self.biases)):
                arrays[f"w{l}"] = np.array(w)
                arrays[f"b{l}"] = np.array(b)
            st = self.optimizer_state
            arrays["opt"] = np.array(json.dumps({"kind": st["kind"], "step": st["step"], "slots": st["slots"]}))
            for slot, name in enumerate(st["slots"]):
                if name:
                    for l, (w, b) in enumerate(zip(*st[name])):
                        arrays[f"opt{slot}_w{l}"] = w
                        arrays[f"opt{slot}_b{l}"] = b
        with atomic_write(path, fsync=True) as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MLP":
        """Reads a model written by `save`. A corrupt or foreign file raises ValueError."""
        path = os.fspath(path)
        name = display_name(path)
        not_model = (
            f"{name}: not an mnist_mlp model file (a model is the .npz archive that MLP.save and "
            "`mnist-mlp train --save` write)"
        )
        # FileNotFoundError, IsADirectoryError, PermissionError as they are; a FIFO or
        # a device is refused without blocking; every member's header is checked
        # before its data is read (see _model_file).
        with ModelArchive(path, not_model) as npz:
            fmt = npz.text("format", max_chars=64)
            if fmt not in _FORMATS_READ:
                raise ValueError(f"{name}: unknown model format {fmt!r}, expected {_FORMAT!r}")
            v2 = fmt == _FORMAT
            sizes = npz.array("layer_sizes", ndim=1, max_items=65, kinds="iu")
            try:
                sizes = V.layer_sizes(sizes.tolist())
            except (TypeError, ValueError) as e:
                raise ValueError(f"{name}: field 'layer_sizes' is malformed: {e}") from None
            dtype = npz.text("dtype", max_chars=16)
            if dtype not in ("float32", "float64"):
                raise ValueError(f"{name}: field 'dtype' is {dtype!r}, expected float32 or float64")
            ws, bs = [], []
            for l in range(len(sizes) - 1):
                ws.append(npz.array(f"w{l}", shape=(sizes[l], sizes[l + 1]), dtype=dtype))
                bs.append(npz.array(f"b{l}", shape=(sizes[l + 1],), dtype=dtype))
            history = check_history(npz.json("history"), name)
            extra: dict[str, Any] = {}
            if v2:
                try:
                    extra["activation"] = V.activation(npz.text("activation", max_chars=16))
                    extra["dropout"] = V.dropout(
                        npz.array("dropout", shape=(len(sizes) - 2,), kinds="f").tolist(), len(sizes) - 2
                    )
                    extra["dropout_seed"] = int(npz.array("dropout_seed", shape=(), dtype=np.uint64))
                    extra["shuffle_state"] = npz.json("shuffle_state", max_chars=1 << 16)
                    opt = npz.json("opt", max_chars=1 << 12)
                    if not isinstance(opt, dict) or not isinstance(opt.get("slots"), list) or len(opt["slots"]) > 3:
                        raise ValueError("field 'opt' is malformed")
                    for slot, sname in enumerate(opt["slots"]):
                        if sname:
                            if not isinstance(sname, str) or sname in ("kind", "step", "slots"):
                                raise ValueError("field 'opt' is malformed")
                            opt[sname] = (
                                [npz.array(f"opt{slot}_w{l}", shape=w.shape, dtype=dtype) for l, w in enumerate(ws)],
                                [npz.array(f"opt{slot}_b{l}", shape=b.shape, dtype=dtype) for l, b in enumerate(bs)],
                            )
                    extra["opt"] = opt
                except ModelFileError:
                    raise
                except (ValueError, TypeError, KeyError) as e:
                    raise ValueError(f"{name}: {e}") from e
        try:  # non-finite weights, for one, are refused here: the message names the file and the field
            model = cls.from_weights(
                ws, bs, activation=extra.get("activation", "relu"), dropout=extra.get("dropout", 0.0)
            )
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from e
        model.history = history
        if v2:
            model._dropout_seed = extra["dropout_seed"]
            try:
                model._shuffle.bit_generator.state = extra["shuffle_state"]
                model._restore_state(extra["opt"], path)
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{name}: the saved optimizer or shuffle state is malformed ({e})") from e
        return model


@contextlib.contextmanager
def _verbose_bar(verbose: bool, epochs: int) -> Iterator[_progress.NoBar | None]:
    """fit(verbose=True): the seed's line per epoch, on a terminal under a bar
    that moves within epochs; closed however fit ends."""
    if not verbose:
        yield None
        return
    bar = _progress.progress_bar(epochs, sys.stdout)
    try:
        yield bar
    finally:
        bar.close()


class _NoInit:
    """Marker: the caller sets the parameters right after construction."""


_NO_INIT: Any = _NoInit()


def _epoch_line(rec: dict) -> str:
    """The seed notebook's per-epoch line."""
    if "test_loss" in rec:
        return (
            f"Epoch {rec['epoch']} - Error on test: {rec['test_loss']:.5f}; Error on train: {rec['train_loss']:.5f}; "
            f"Accuracy on test: {rec['test_accuracy']:.5f}; Accuracy on train: {rec['train_accuracy']:.5f}"
        )
    return f"Epoch {rec['epoch']} - Error on train: {rec['train_loss']:.5f}; Accuracy on train: {rec['train_accuracy']:.5f}"
