"""`MLP`: the C++-trained multilayer perceptron."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from . import _core
from ._files import atomic_write
from . import _validate as V
from .reference import initial_params, shuffle_rng

__all__ = ["MLP"]

_FORMAT = "mnist_mlp.MLP/1"


class MLP:
    """A multilayer perceptron: ReLU hidden layers, softmax output, cross-entropy
    loss, trained by plain mini-batch SGD in C++.

    ``layer_sizes`` lists the width of every layer, input first, e.g.
    ``[784, 300, 10]``. Weights are stored (fan_in, fan_out) in one C++
    allocation; ``weights`` and ``biases`` are NumPy views of it (writes go
    straight to the model). The initial weights are the seed notebook's,
    N(0, 1) / sqrt(fan_in) with zero biases, drawn from
    ``np.random.default_rng(seed)``; `mnist_mlp.reference.NumpyMLP` with the same
    seed starts from the same weights.
    """

    def __init__(self, layer_sizes: Sequence[int], *, seed: Any = None, dtype: Any = np.float32):
        sizes = V.layer_sizes(layer_sizes)
        self._dtype = V.model_dtype(dtype)
        self._core = (_core.ModelF32 if self._dtype == np.float32 else _core.ModelF64)(sizes)
        # One call at a time per model: a second thread waits rather than
        # reading weights that are being updated.
        self._lock = threading.RLock()
        self._busy: str | None = None  # "fit" while fit runs, "epoch" inside an epoch
        self._shuffle = shuffle_rng(None if seed is _NO_INIT else seed)
        self.history: list[dict] = []
        if seed is not _NO_INIT:
            ws, bs = initial_params(sizes, seed, self._dtype)
            self._set_params(ws, bs)

    # -- parameters ------------------------------------------------------------
    @classmethod
    def from_weights(
        cls, weights: Sequence[Any], biases: Sequence[Any], *, seed: Any = None
    ) -> "MLP":
        """A model with the given parameters (copied). ``weights[l]`` is
        (fan_in, fan_out), ``biases[l]`` is (fan_out,); the dtype is that of
        ``weights[0]`` (float32 or float64)."""
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
        self = cls(sizes, seed=_NO_INIT, dtype=dtype)
        self._shuffle = shuffle_rng(seed)
        self._set_params(ws, [b.reshape(-1) for b in bs])
        return self

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

    def __repr__(self) -> str:
        return f"MLP({self.layer_sizes}, dtype={self._dtype.name})"

    @contextlib.contextmanager
    def _locked(self, what: str, *, training: bool = False) -> Iterator[None]:
        # Calls from other threads wait for the lock. The thread that holds it
        # (fit's callback or progress function) may read and save the model between
        # epochs, but not inside one (the working copies are not written back yet),
        # and may not start another fit.
        with self._lock:
            if self._busy == "epoch":
                raise RuntimeError(f"{what} cannot be called from fit's progress function: the epoch is still running")
            if training and self._busy is not None:
                raise RuntimeError("fit cannot be called from inside fit (from its callback or progress function)")
            yield

    # -- pickling (copy.deepcopy, multiprocessing, joblib) ------------------------
    def __getstate__(self) -> dict[str, Any]:
        with self._locked("pickling"):
            return {
                "layer_sizes": self.layer_sizes,
                "dtype": self._dtype.name,
                "weights": [np.array(w) for w in self.weights],
                "biases": [np.array(b) for b in self.biases],
                "history": [dict(h) for h in self.history],
                "shuffle_state": self._shuffle.bit_generator.state,
            }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["layer_sizes"], seed=_NO_INIT, dtype=state["dtype"])  # type: ignore[misc]
        self._set_params(state["weights"], state["biases"])
        self.history = state["history"]
        self._shuffle.bit_generator.state = state["shuffle_state"]

    # -- training --------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        epochs: int = 1,
        lr: float = 0.1,
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
    ) -> list[dict]:
        """Trains in place with mini-batch SGD and returns one dict per epoch.

        ``x`` is (n, features) or (n, 28, 28): uint8 pixels (scaled by 1/255
        inside the kernel; no float copy of the data is made) or float32 /
        float64 features, C- or F-ordered. ``y`` is class ids (n,) or one-hot
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
        step's update (what Keras and scikit-learn report). ``callback(record)`` is called
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
        x = V.inputs(x, sizes[0])
        y = V.labels(y, len(x), sizes[-1])
        epochs = V.positive_int("epochs", epochs)
        lr = V.positive_float("lr", lr)
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
            vx = V.inputs(vx, sizes[0], name="validation x")
            vy = V.labels(vy, len(vx), sizes[-1], name="validation y")
        hist = []
        with self._locked("fit", training=True), self._training():
            # uint8 pixels: list the nonzeros once, so no epoch scans blank pixels again.
            # The same batches every epoch (no shuffling, small batches): plan them
            # all now, once; shuffled, index each image's nonzeros.
            index = plan = None
            aid = _core.training_aid(
                len(sizes) - 1, batch_size, len(x), x.dtype == np.uint8, x.shape[1], bool(shuffle), bool(sparse)
            )
            if aid == "plan":
                plan = _core.BatchPlan(x, batch_size, threads)
            elif aid == "index":
                index = _core.NonzeroIndex(x, threads)
            for _ in range(epochs):
                order = self._shuffle.permutation(len(x)).astype(np.int64) if shuffle else None
                t0 = time.perf_counter()
                self._busy = "epoch"
                try:
                    r = self._core.train_epoch(
                        x, y, order, batch_size, lr, bool(sparse), bool(stop_on_nan), threads, index, progress, plan
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
                        f"{r['first_nonfinite_batch']} (lr={lr} may be too high); the weights are no longer finite"
                    )
                rec: dict[str, Any] = {"epoch": epoch, "seconds": seconds, "kernel": r["kernel"]}
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
                if verbose:
                    print(_epoch_line(rec), flush=True)
                if callback is not None and callback(dict(rec)) is False:
                    break
        return hist

    @contextlib.contextmanager
    def _training(self) -> Iterator[None]:
        self._busy = "fit"
        try:
            yield
        finally:
            self._busy = None

    # -- inference -------------------------------------------------------------
    def _evaluate(
        self, x: np.ndarray, y: np.ndarray, threads: int | None, plan: Any = None
    ) -> tuple[float, float]:
        # plan: fit's BatchPlan of x, whose forward groups the first layer can reuse.
        loss_sum, correct, _, _ = self._core.evaluate(x, y, False, False, threads, plan)
        return loss_sum / len(x), correct / len(x)

    def evaluate(self, x: Any, y: Any, num_threads: int | None = None) -> tuple[float, float]:
        """(mean cross-entropy loss, accuracy) on ``x``, ``y``."""
        x = V.inputs(x, self.layer_sizes[0])
        y = V.labels(y, len(x), self.layer_sizes[-1])
        threads = V.num_threads(num_threads)
        with self._locked("evaluate"):
            return self._evaluate(x, y, threads)

    def predict_proba(self, x: Any, num_threads: int | None = None) -> np.ndarray:
        """Softmax probabilities, (n, classes), in the model's dtype."""
        x = V.inputs(x, self.layer_sizes[0])
        threads = V.num_threads(num_threads)
        with self._locked("predict_proba"):
            probs = self._core.evaluate(x, None, True, False, threads)[2]
        assert probs is not None
        return probs

    def predict(self, x: Any, num_threads: int | None = None) -> np.ndarray:
        """The most probable class of each row, (n,) int64."""
        x = V.inputs(x, self.layer_sizes[0])
        threads = V.num_threads(num_threads)
        with self._locked("predict"):
            pred = self._core.evaluate(x, None, False, True, threads)[3]
        assert pred is not None
        return pred.astype(np.int64)

    # -- persistence -----------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Writes an .npz (layer sizes, dtype, package version, history and the
        parameters). The file appears complete or not at all."""
        from . import __version__

        path = os.fspath(path)
        arrays: dict[str, np.ndarray] = {
            "format": np.array(_FORMAT),
            "version": np.array(__version__),
            "layer_sizes": np.array(self.layer_sizes, dtype=np.int64),
            "dtype": np.array(self._dtype.name),
            "history": np.array(json.dumps(self.history)),
        }
        with self._locked("save"):
            for l, (w, b) in enumerate(zip(self.weights, self.biases)):
                arrays[f"w{l}"] = np.array(w)
                arrays[f"b{l}"] = np.array(b)
        with atomic_write(path, fsync=True) as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "MLP":
        """Reads a model written by `save`. A corrupt or foreign file raises ValueError."""
        path = os.fspath(path)
        try:
            npz = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise
        except Exception as e:  # zipfile / format errors
            raise ValueError(f"{path}: not a readable mnist_mlp model ({e})") from e
        with npz:
            def field(name: str) -> np.ndarray:
                if name not in npz.files:
                    raise ValueError(f"{path}: not an mnist_mlp model (missing field '{name}')")
                try:
                    return npz[name]
                except Exception as e:
                    raise ValueError(f"{path}: field '{name}' is corrupt ({e})") from e

            if str(field("format")) != _FORMAT:
                raise ValueError(f"{path}: unknown model format {str(field('format'))!r}, expected {_FORMAT!r}")
            sizes = field("layer_sizes")
            if sizes.ndim != 1 or len(sizes) < 3 or sizes.dtype.kind not in "iu":
                raise ValueError(f"{path}: field 'layer_sizes' is malformed: {sizes!r}")
            dtype = str(field("dtype"))
            if dtype not in ("float32", "float64"):
                raise ValueError(f"{path}: field 'dtype' is {dtype!r}, expected float32 or float64")
            ws, bs = [], []
            for l in range(len(sizes) - 1):
                w, b = field(f"w{l}"), field(f"b{l}")
                if w.shape != (sizes[l], sizes[l + 1]) or b.shape != (sizes[l + 1],):
                    raise ValueError(
                        f"{path}: layer {l} has shapes {w.shape} and {b.shape}, "
                        f"but layer_sizes {sizes.tolist()} need ({sizes[l]}, {sizes[l + 1]}) and ({sizes[l + 1]},)"
                    )
                if w.dtype != dtype or b.dtype != dtype:
                    raise ValueError(f"{path}: layer {l} is stored as {w.dtype}, the file says {dtype}")
                ws.append(w)
                bs.append(b)
            try:
                history = json.loads(str(field("history")))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: field 'history' is not valid JSON ({e})") from e
        model = cls.from_weights(ws, bs)
        model.history = history
        return model


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
