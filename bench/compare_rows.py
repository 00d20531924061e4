"""The implementations `compare.py` times, one class per row, and the worker
that times one row inside its own process.

Every row trains the same network (ReLU hidden layers, softmax output,
cross-entropy, plain SGD with the mean gradient of each batch, batches taken in
order, a last partial batch used as is) from the same initial weights,
``mnist_mlp.reference.initial_params(sizes, seed, np.float32)``. A row object
has three methods:

* ``train(epochs, test, progress)`` is the row's training loop. It returns an
  `EpochLog`: the training seconds of every epoch and the test loss and
  accuracy measured after each one, outside the epoch's timing.
* ``evaluate(split)`` returns (mean cross-entropy, accuracy).
* ``predict_proba(x)`` returns softmax probabilities; used once, before
  training, to check that the initial weights were loaded correctly.
"""

from __future__ import annotations

import importlib
import os
import resource
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np

NUM_CLASSES = 10
INIT_CHECK_ROWS = 256  # test samples used to compare initial predictions


# ---------------------------------------------------------------------------
# Configuration and data


@dataclass(frozen=True)
class Config:
    """What every row trains: the same data, network, optimiser and epochs."""

    data: str | None
    subset: int | None
    epochs: int
    batch_size: int
    lr: float
    hidden: tuple[int, ...]
    seed: int

    def sizes(self, features: int) -> list[int]:
        """Layer widths, input first."""
        return [features, *self.hidden, NUM_CLASSES]


@dataclass(frozen=True)
class Split:
    """Inputs (n, features) and int64 class ids (n,)."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Data:
    train: Split
    test: Split

    @property
    def features(self) -> int:
        return int(self.train.x.shape[1])

    def as_float32(self) -> "Data":
        """Pixels scaled to [0, 1] as float32, computed once, the way
        `mnist_mlp.reference.NumpyMLP` scales uint8 input."""
        scale = np.float32(255)
        return Data(
            Split(self.train.x.astype(np.float32) / scale, self.train.y),
            Split(self.test.x.astype(np.float32) / scale, self.test.y),
        )


def load_data(cfg: Config) -> Data:
    """MNIST via `mnist_mlp.load_mnist`: uint8 (n, 784) pixels, int64 labels,
    cut to the first ``cfg.subset`` train and test samples when asked."""
    import mnist_mlp

    (x, y), (xt, yt) = mnist_mlp.load_mnist(cfg.data)
    n, nt = (len(x), len(xt)) if cfg.subset is None else (min(cfg.subset, len(x)), min(cfg.subset, len(xt)))
    return Data(
        Split(np.ascontiguousarray(x[:n].reshape(n, -1)), y[:n].astype(np.int64)),
        Split(np.ascontiguousarray(xt[:nt].reshape(nt, -1)), yt[:nt].astype(np.int64)),
    )


# ---------------------------------------------------------------------------
# The rows


@dataclass
class EpochLog:
    seconds: list[float] = field(default_factory=list)  # training only, per epoch
    test_loss: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    monitor_seconds: float = 0.0  # evaluations after each epoch, excluded from every timing
    overhead_seconds: float = 0.0  # one-time work inside the training call, outside the epochs

    def add(self, seconds: float, test_loss: float, test_accuracy: float) -> None:
        self.seconds.append(seconds)
        self.test_loss.append(test_loss)
        self.test_accuracy.append(test_accuracy)


Progress = Callable[[int, EpochLog], None]  # (epochs done, log so far)


class Row(Protocol):
    threads: str
    extras: dict[str, Any]

    def train(self, epochs: int, test: Split, progress: Progress) -> EpochLog: ...

    def evaluate(self, split: Split) -> tuple[float, float]: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


Params = tuple[list[np.ndarray], list[np.ndarray]]


def timed_epochs(
    train_epoch: Callable[[], None], row: Row, epochs: int, test: Split, progress: Progress
) -> EpochLog:
    """Runs ``train_epoch`` (which returns once the epoch is complete) ``epochs``
    times, timing each call, and evaluates the test set after each, untimed."""
    log = EpochLog()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        train_epoch()
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        loss, accuracy = row.evaluate(test)
        log.monitor_seconds += time.perf_counter() - t1
        log.add(seconds, loss, accuracy)
        progress(epoch + 1, log)
    return log


class MnistMlpRow:
    """`mnist_mlp.MLP`, fed the uint8 pixels directly (scaled inside the
    kernel), ``num_threads`` passed to `fit` and `evaluate`.

    One ``fit(epochs=N, validation_data=test)`` call trains every epoch, as a
    user would. Its history gives each epoch's training seconds (measured
    around the core's epoch alone) and the test metrics; the evaluations `fit`
    runs after each epoch (training and test set) are its ``eval_seconds``.
    Whatever else the call spends (argument checks, one-time preparation of
    the input) is the log's ``overhead_seconds``, counted in the run time."""

    def __init__(self, data: Data, params: Params, cfg: Config, num_threads: int | None) -> None:
        from mnist_mlp import MLP

        self._model = MLP.from_weights(*params)
        self._train = data.train
        self._cfg = cfg
        self._num_threads = num_threads
        self.threads = "all" if num_threads is None else str(num_threads)
        self.extras: dict[str, Any] = {}

    def train(self, epochs: int, test: Split, progress: Progress) -> EpochLog:
        log = EpochLog()

        def on_epoch(rec: dict[str, Any]) -> None:
            log.add(float(rec["seconds"]), float(rec["test_loss"]), float(rec["test_accuracy"]))
            log.monitor_seconds += float(rec["eval_seconds"])
            progress(len(log.seconds), log)

        t0 = time.perf_counter()
        self._model.fit(
            self._train.x, self._train.y, epochs=epochs, lr=self._cfg.lr, batch_size=self._cfg.batch_size,
            shuffle=False, validation_data=(test.x, test.y), num_threads=self._num_threads, callback=on_epoch,
        )
        wall = time.perf_counter() - t0
        log.overhead_seconds = max(0.0, wall - sum(log.seconds) - log.monitor_seconds)
        return log

    def evaluate(self, split: Split) -> tuple[float, float]:
        return self._model.evaluate(split.x, split.y, num_threads=self._num_threads)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(x, num_threads=self._num_threads)


class ReferenceRow:
    """`mnist_mlp.reference.NumpyMLP` (float32), one `train_step` per batch."""

    def __init__(self, data: Data, params: Params, cfg: Config) -> None:
        from mnist_mlp.reference import NumpyMLP

        self._model = NumpyMLP.from_weights(*params)
        self._train = data.train
        self._cfg = cfg
        self.threads = _blas_threads()
        self.extras: dict[str, Any] = {}

    def train(self, epochs: int, test: Split, progress: Progress) -> EpochLog:
        return timed_epochs(self._epoch, self, epochs, test, progress)

    def _epoch(self) -> None:
        x, y, bs, lr = self._train.x, self._train.y, self._cfg.batch_size, self._cfg.lr
        for start in range(0, len(y), bs):
            self._model.train_step(x[start : start + bs], y[start : start + bs], lr)

    def evaluate(self, split: Split) -> tuple[float, float]:
        return self._model.evaluate(split.x, split.y)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self._model.predict_proba(x)


class TorchRow:
    """PyTorch eager mode: Linear/ReLU layers, CrossEntropyLoss, optim.SGD.

    With ``seed_bug`` the network ends in ``nn.Softmax(dim=0)``, as in the seed
    notebook, so CrossEntropyLoss receives probabilities normalised over the
    *batch* instead of logits: a second softmax on top of a wrong one. Loss and
    accuracy are always measured on the logits (the layers before that
    Softmax), the same metric as every other row, so the row shows what the
    wrong loss did to training."""

    def __init__(self, data: Data, params: Params, cfg: Config, *, seed_bug: bool = False) -> None:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        self._torch = torch
        layers: list[torch.nn.Module] = []
        ws, bs = params
        for i, (w, b) in enumerate(zip(ws, bs)):
            linear = torch.nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(w.T))  # torch stores (fan_out, fan_in)
                linear.bias.copy_(torch.from_numpy(b))
            layers.append(linear)
            if i + 1 < len(ws):
                layers.append(torch.nn.ReLU())
        self._logits = torch.nn.Sequential(*layers)
        self._model = torch.nn.Sequential(self._logits, torch.nn.Softmax(dim=0)) if seed_bug else self._logits
        self._loss = torch.nn.CrossEntropyLoss()
        self._opt = torch.optim.SGD(self._model.parameters(), lr=cfg.lr)
        x, y = torch.from_numpy(data.train.x), torch.from_numpy(data.train.y)
        self._batches = list(zip(torch.split(x, cfg.batch_size), torch.split(y, cfg.batch_size)))
        self.threads = str(torch.get_num_threads())
        self.extras: dict[str, Any] = {}

    def train(self, epochs: int, test: Split, progress: Progress) -> EpochLog:
        return timed_epochs(self._epoch, self, epochs, test, progress)

    def _epoch(self) -> None:
        for xb, yb in self._batches:
            self._opt.zero_grad()
            loss = self._loss(self._model(xb), yb)
            loss.backward()
            self._opt.step()

    def evaluate(self, split: Split) -> tuple[float, float]:
        torch = self._torch
        with torch.inference_mode():
            y = torch.from_numpy(split.y)
            logits = self._logits(torch.from_numpy(split.x))
            loss = torch.nn.functional.cross_entropy(logits, y).item()
            accuracy = (logits.argmax(dim=1) == y).double().mean().item()
        return loss, accuracy

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            return torch.softmax(self._logits(torch.from_numpy(x)), dim=1).numpy()


def _jax_forward(params: Any, x: Any) -> Any:
    import jax

    for w, b in params[:-1]:
        x = jax.nn.relu(x @ w + b)
    w, b = params[-1]
    return x @ w + b


def _jax_loss(params: Any, x: Any, y: Any) -> Any:
    """Mean cross-entropy through log-sum-exp."""
    import jax
    import jax.numpy as jnp

    logits = _jax_forward(params, x)
    true = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
    return jnp.mean(jax.nn.logsumexp(logits, axis=1) - true)


def _jax_step(params: Any, x: Any, y: Any, lr: float) -> Any:
    import jax

    grads = jax.grad(_jax_loss)(params, x, y)
    return jax.tree.map(lambda p, g: p - lr * g, params, grads)


def _jax_epoch(params: Any, x: Any, y: Any, *, batch: int, lr: float) -> Any:
    """One epoch as one XLA program: `lax.scan` over the full batches, then the
    remainder (n % batch samples), if any, as one extra step."""
    import jax

    full, rem = divmod(x.shape[0], batch)
    if full:
        xb = x[: full * batch].reshape(full, batch, x.shape[1])
        yb = y[: full * batch].reshape(full, batch)
        params, _ = jax.lax.scan(lambda p, b: (_jax_step(p, b[0], b[1], lr), None), params, (xb, yb))
    if rem:
        params = _jax_step(params, x[full * batch :], y[full * batch :], lr)
    return params


def _jax_eval(params: Any, x: Any, y: Any) -> tuple[Any, Any]:
    """(summed cross-entropy, number correct)."""
    import jax
    import jax.numpy as jnp

    logits = _jax_forward(params, x)
    true = jnp.take_along_axis(logits, y[:, None], axis=1)[:, 0]
    loss_sum = jnp.sum(jax.nn.logsumexp(logits, axis=1) - true)
    return loss_sum, jnp.sum(jnp.argmax(logits, axis=1) == y)


class JaxRow:
    """JAX: the whole epoch compiled ahead of time with `jax.jit(...).lower(...)
    .compile()`; the compile (epoch and both evaluations) is timed on its own
    and reported as ``compile_seconds``, so no epoch includes it."""

    def __init__(self, data: Data, params: Params, cfg: Config) -> None:
        import functools

        import jax
        import jax.numpy as jnp

        self._jax = jax
        self._params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in zip(*params)]
        self._dev = {
            name: (jnp.asarray(split.x), jnp.asarray(split.y.astype(np.int32)))
            for name, split in (("train", data.train), ("test", data.test))
        }
        self._splits = {id(data.train): "train", id(data.test): "test"}
        t0 = time.perf_counter()
        epoch = jax.jit(functools.partial(_jax_epoch, batch=cfg.batch_size, lr=cfg.lr))
        self._epoch = epoch.lower(self._params, *self._dev["train"]).compile()
        self._eval = {k: jax.jit(_jax_eval).lower(self._params, *xy).compile() for k, xy in self._dev.items()}
        self.extras: dict[str, Any] = {"compile_seconds": time.perf_counter() - t0}
        self.threads = "XLA"

    def train(self, epochs: int, test: Split, progress: Progress) -> EpochLog:
        return timed_epochs(self._run_epoch, self, epochs, test, progress)

    def _run_epoch(self) -> None:
        self._params = self._epoch(self._params, *self._dev["train"])
        self._jax.block_until_ready(self._params)  # dispatch is asynchronous

    def evaluate(self, split: Split) -> tuple[float, float]:
        name = self._splits.get(id(split))
        if name is not None:  # the train or test set: compiled and on the device already
            loss_sum, correct = self._eval[name](self._params, *self._dev[name])
        else:
            loss_sum, correct = self._jax.jit(_jax_eval)(self._params, split.x, split.y.astype(np.int32))
        return float(loss_sum) / len(split), int(correct) / len(split)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._jax.nn.softmax(_jax_forward(self._params, x), axis=1))


class SklearnRow:
    """scikit-learn `MLPClassifier`, one ``fit`` (max_iter=1, warm_start=True)
    per epoch.

    MLPClassifier has no public way to start from given weights: its first
    ``fit`` draws Glorot weights and sets up the label binarizer, the output
    activation and the other fitted attributes. So a priming ``fit`` runs once
    on one all-zero image per class (its result is thrown away), then
    ``coefs_`` and ``intercepts_`` are replaced by copies of the shared float32
    initial weights. With warm_start every later ``fit`` keeps them, and its
    SGD updates those arrays in place. The initial-prediction check
    (``init_max_abs_diff``) confirms the weights in use are the shared ones."""

    def __init__(self, data: Data, params: Params, cfg: Config) -> None:
        from sklearn.neural_network import MLPClassifier

        classes = np.arange(NUM_CLASSES)
        missing = np.setdiff1d(classes, data.train.y)
        if len(missing):
            raise ValueError(f"sklearn with warm_start needs every class in the training set; missing {missing}")
        self._clf = MLPClassifier(
            hidden_layer_sizes=cfg.hidden, activation="relu", solver="sgd", alpha=0.0,
            batch_size=cfg.batch_size, learning_rate="constant", learning_rate_init=cfg.lr,
            momentum=0.0, nesterovs_momentum=False, shuffle=False, max_iter=1, warm_start=True,
            early_stopping=False, random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning, batch larger than the 10 samples
            self._clf.fit(np.zeros((len(classes), data.features), np.float32), classes)
        ws, bs = params
        self._clf.coefs_ = [w.copy() for w in ws]
        self._clf.intercepts_ = [b.copy() for b in bs]
        self._train = data.train
        self.threads = _blas_threads()
        self.extras: dict[str, Any] = {}

    def train(self, epochs: int, test: Split, progress: Progress) -> EpochLog:
        return timed_epochs(self._epoch, self, epochs, test, progress)

    def _epoch(self) -> None:
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=1 on purpose
            self._clf.fit(self._train.x, self._train.y)

    def evaluate(self, split: Split) -> tuple[float, float]:
        """From `predict_proba` (sklearn exposes no logits): the loss is
        -log p(true class), with p floored at the smallest normal float32."""
        proba = self._clf.predict_proba(split.x)
        p_true = proba[np.arange(len(split)), split.y].astype(np.float64)
        loss = float(-np.mean(np.log(np.maximum(p_true, np.finfo(np.float32).tiny))))
        accuracy = float(np.mean(self._clf.classes_[np.argmax(proba, axis=1)] == split.y))
        return loss, accuracy

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self._clf.predict_proba(x)


def _blas_threads() -> str:
    """NumPy's BLAS thread count, as threadpoolctl reports it."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "BLAS default"
    counts = sorted({str(i["num_threads"]) for i in threadpool_info() if i.get("user_api") == "blas"})
    return "/".join(counts) if counts else "BLAS default"


# ---------------------------------------------------------------------------
# The registry

Builder = Callable[[Data, Params, Config], Row]


@dataclass(frozen=True)
class RowSpec:
    name: str
    about: str
    build: Builder
    float_input: bool  # trains on precomputed float32 pixels / 255 (else uint8)
    requires: str | None = None  # an optional package the row needs
    imports: tuple[str, ...] = ("mnist_mlp",)  # imported before the setup timer starts


ROW_SPECS: dict[str, RowSpec] = {
    s.name: s
    for s in (
        RowSpec("mnist_mlp", "mnist_mlp.MLP, uint8 input, num_threads=None (all threads)",
                lambda d, p, c: MnistMlpRow(d, p, c, None), float_input=False),
        RowSpec("mnist_mlp-1t", "mnist_mlp.MLP, uint8 input, num_threads=1",
                lambda d, p, c: MnistMlpRow(d, p, c, 1), float_input=False),
        RowSpec("reference", "mnist_mlp.reference.NumpyMLP, float32",
                ReferenceRow, float_input=True),
        RowSpec("torch", "PyTorch eager: Linear/ReLU, CrossEntropyLoss on logits, optim.SGD",
                TorchRow, float_input=True, requires="torch", imports=("torch",)),
        RowSpec("torch-seed", "the seed notebook's PyTorch model: Softmax(dim=0) output into CrossEntropyLoss",
                lambda d, p, c: TorchRow(d, p, c, seed_bug=True), float_input=True, requires="torch",
                imports=("torch",)),
        RowSpec("jax", "JAX: jit-compiled epoch, lax.scan over batches",
                JaxRow, float_input=True, requires="jax", imports=("jax", "jax.numpy")),
        RowSpec("sklearn", "scikit-learn MLPClassifier, solver='sgd', one fit(max_iter=1, warm_start) per epoch",
                SklearnRow, float_input=True, requires="sklearn", imports=("sklearn.neural_network",)),
    )
}


# ---------------------------------------------------------------------------
# The worker: one row, timed, in this process


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB elsewhere


def _say(name: str, message: str) -> None:
    print(f"[{name}] {message}", file=sys.stderr, flush=True)


def _init_check(row: Row, data: Data, params: Params) -> float:
    """Largest difference between the row's initial probabilities and the
    NumPy reference's, on the first test samples."""
    from mnist_mlp.reference import NumpyMLP

    x = data.test.x[:INIT_CHECK_ROWS]
    expected = NumpyMLP.from_weights(*params).predict_proba(x)
    return float(np.max(np.abs(np.asarray(row.predict_proba(x), dtype=np.float64) - expected)))


def _timed(fn: Callable[[], tuple[float, float]]) -> tuple[tuple[float, float], float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run_row(name: str, cfg: Config) -> dict[str, Any]:
    """Loads the data, builds the row from the shared initial weights, trains
    and evaluates it, and returns every measurement."""
    from mnist_mlp.reference import initial_params

    spec = ROW_SPECS[name]
    load = _load_average()
    wall0 = time.perf_counter()
    for module in spec.imports:  # an ImportError here means the row is skipped
        importlib.import_module(module)
    imports = time.perf_counter() - wall0
    data = load_data(cfg)
    t0 = time.perf_counter()
    if spec.float_input:
        data = data.as_float32()
    prep = time.perf_counter() - t0
    params = initial_params(cfg.sizes(data.features), cfg.seed, np.float32)

    t0 = time.perf_counter()
    row = spec.build(data, params, cfg)
    setup = time.perf_counter() - t0
    init_diff = _init_check(row, data, params)
    if "compile_seconds" in row.extras:
        _say(name, f"compiled in {row.extras['compile_seconds']:.2f} s")

    def progress(done: int, log: EpochLog) -> None:
        _say(name, f"epoch {done}/{cfg.epochs}: {log.seconds[-1]:.3f} s, test accuracy {log.test_accuracy[-1]:.4f}")

    wall, cpu = time.perf_counter(), _cpu_seconds()
    log = row.train(cfg.epochs, data.test, progress)
    train_wall, train_cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    (train_loss, train_acc), eval_train = _timed(lambda: row.evaluate(data.train))
    (test_loss, test_acc), eval_test = _timed(lambda: row.evaluate(data.test))
    epochs = np.array(log.seconds)
    return {
        "name": name,
        "status": "ok",
        "about": spec.about,
        "threads": row.threads,
        "input": "float32" if spec.float_input else "uint8",
        "epoch_seconds": log.seconds,
        "epoch_median_seconds": float(np.median(epochs)),
        "epoch_min_seconds": float(epochs.min()),
        "epoch_max_seconds": float(epochs.max()),
        "setup_seconds": setup,
        "compile_seconds": row.extras.get("compile_seconds"),
        "eval_train_seconds": eval_train,
        "eval_test_seconds": eval_test,
        "run_seconds": setup + log.overhead_seconds + float(epochs.sum()) + eval_train + eval_test,
        "train_overhead_seconds": log.overhead_seconds,
        "monitor_seconds": log.monitor_seconds,
        "import_seconds": imports,
        "data_prep_seconds": prep,
        "worker_wall_seconds": time.perf_counter() - wall0,
        "train_cpu_seconds": train_cpu,  # CPU time of all threads while training (incl. per-epoch evaluation)
        "train_wall_seconds": train_wall,
        "load_average_at_start": load,
        "train_loss": float(train_loss),
        "train_accuracy": float(train_acc),
        "test_loss": float(test_loss),
        "test_accuracy": float(test_acc),
        "test_loss_per_epoch": log.test_loss,
        "test_accuracy_per_epoch": log.test_accuracy,
        "init_max_abs_diff": init_diff,
        "peak_rss_mib": _peak_rss_mib(),
    }
