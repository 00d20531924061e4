"""Hyperparameter sweeps on dask.distributed: `sweep` and `SweepResult`.

::

    res = mm.sweep({"hidden": [(128,), (512, 256)], "lr": [0.05, 0.1], "epochs": [3]},
                   train=(x, y), validation=(xv, yv))
    res.best["params"], res.best["test_accuracy"]
    model = res.best_model()

dask.distributed is imported only when a sweep runs (``pip install
"mnist_mlp[dask]"``); ``import mnist_mlp`` never needs it.

**Trials.** The grid maps parameters to lists of values and the sweep runs
their cross product, in the order of the grid's keys (the last key varies
fastest). With parameters ``p``, a trial runs exactly::

    model = MLP([features, *p["hidden"], classes], activation=p["activation"],
                dropout=p["dropout"], seed=p["seed"], dtype=p["dtype"])
    model.fit(x, y, epochs=p["epochs"], batch_size=p["batch_size"], shuffle=p["shuffle"],
              validation_data=(xv, yv), num_threads=threads_per_trial,
              lr=p["lr"])                     # optimizer None: plain SGD
              # or optimizer=Adam(lr=p["lr"]) # optimizer "adam" (likewise sgd, adamw, rmsprop)
              # or optimizer=p["optimizer"]   # an mm.optim object, with its own lr
    test_loss, test_accuracy = model.evaluate(xv, yv)   # = the last epoch's validation figures,
                                                        # which the trial reads from model.history

``features`` is the number of values per sample of ``x`` and ``classes`` the
largest label of ``y`` and ``yv`` plus one (or the width of one-hot labels).
The engine's results do not depend on the thread count, so a trial's weights,
history, loss and accuracy are bitwise those of this code run locally.

**Attempts.** Each run of a trial (an attempt) logs a start event on the
scheduler, before it trains, under the trial's topic
``"mnist_mlp.sweep/<sweep id>/<trial>"`` and under ``"mnist_mlp.sweep"`` (all
sweeps, the last 1000; ``client.get_events("mnist_mlp.sweep")`` shows what
runs where): ``{"event": "start", "sweep": id, "trial": i, "attempt": n,
"worker": address, "pid": pid}``. The scheduler keeps them when a worker dies, so ``attempts`` counts
the runs that started, wherever they ran. When the worker running a trial dies
the scheduler reruns it on another worker; a run that finds ``retries + 1``
starts already logged does not train again and the trial is recorded as
failed. Should the scheduler give up first (``KilledWorker``: its
``distributed.scheduler.allowed-failures``, 3 by default, counts every worker
death while the trial was assigned, even before it started), the trial is
submitted again while fewer than ``retries + 1`` attempts have started.
An exception raised by a trial (``FloatingPointError`` when it diverges, say)
is recorded in ``error`` and not retried: it would happen again.

**Order.** Trials start longest first (epochs x multiply-adds per sample), so
the last to end are short ones and the workers finish close together.

**Threads.** Inside a trial the package's OpenMP threads are limited to
``threads_per_trial``: the fit and the evaluation get ``num_threads``, and
threadpoolctl (when installed; it is part of the ``[dask]`` extra) limits the
OpenMP runtime of the worker thread, so nothing in the trial asks for more.
The LocalCluster this starts has ``cores // threads_per_trial`` single-threaded
workers (at least one), so the trials never oversubscribe the machine.
"""

from __future__ import annotations

import contextlib
import copy
import csv
import itertools
import json
import math
import numbers
import os
import shutil
import sys
import tempfile
import time
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from . import _validate as V
from . import optim as _optim
from ._files import atomic_write

if TYPE_CHECKING:  # pragma: no cover
    from .model import MLP

__all__ = ["GRID_KEYS", "OPTIMIZERS", "QUIET_MONITORING", "SweepResult", "local_cluster", "sweep"]

DASK_MISSING = 'mm.sweep needs dask.distributed: pip install "mnist_mlp[dask]"'

#: The parameters a grid may vary, in the order of a trial's ``params``.
GRID_KEYS = ("hidden", "lr", "batch_size", "epochs", "shuffle", "seed", "dtype", "activation", "dropout", "optimizer")

#: The values of a parameter the grid does not name (``lr``: see `sweep`).
DEFAULTS: dict[str, Any] = {
    "hidden": (300,), "lr": None, "batch_size": 8, "epochs": 1, "shuffle": False, "seed": 0, "dtype": "float32",
    "activation": "relu", "dropout": 0.0, "optimizer": None,
}

#: Optimizers a grid may name; the trial's ``lr`` is passed to the class.
OPTIMIZERS: dict[str, type[_optim.Optimizer]] = {
    "sgd": _optim.SGD, "adam": _optim.Adam, "adamw": _optim.AdamW, "rmsprop": _optim.RMSprop,
}

#: The scheduler's event topic of every attempt's start (the last 1000, all sweeps).
EVENTS = "mnist_mlp.sweep"
#: Each trial's own topic is TOPIC_PREFIX + "<sweep id>/<trial>": its attempts are counted there.
TOPIC_PREFIX = EVENTS + "/"

Progress = Callable[[int, int, dict], Any]

#: Dask settings of the LocalCluster that `local_cluster` starts: the monitoring that
#: feeds a dashboard (the workers' statistical profiler, the event-loop tick and the
#: system monitor's samples) is turned off or slowed down. An idle cluster of 2 workers
#: then uses about 4% of one core instead of 14% (measured with psutil over 10 s), CPU
#: that trials running on every core would otherwise lose. The memory monitor, which
#: restarts a worker that outgrows its limit, keeps its 100 ms.
QUIET_MONITORING: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
}


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError as e:
        raise ImportError(DASK_MISSING) from e
    return distributed


# ---------------------------------------------------------------------------
# The grid


def _values(grid: Mapping[str, Any], key: str) -> list[Any]:
    values = grid[key]
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise TypeError(f"grid[{key!r}] must be a list of values, got {values!r}")
    if len(values) == 0:
        raise ValueError(f"grid[{key!r}] is empty: give at least one value")
    return list(values)


def _hidden(name: str, value: Any, features: int, classes: int) -> tuple[int, ...]:
    if isinstance(value, (numbers.Integral, np.integer)) and not isinstance(value, (bool, np.bool_)):
        widths = (int(value),)
    elif isinstance(value, (list, tuple)):
        widths = tuple(value)
    else:
        raise TypeError(f"{name} must be a tuple of layer widths (or one width), got {value!r}")
    if not widths:
        raise ValueError(f"{name} is empty: a network needs at least one hidden layer")
    try:
        sizes = V.layer_sizes([features, *widths, classes])
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name} = {value!r}: {e}") from e
    return tuple(sizes[1:-1])


def _check_value(key: str, j: int, value: Any, features: int, classes: int, hidden_depths: set[int]) -> Any:
    """The normalised value ``grid[key][j]``, or a ValueError/TypeError naming it."""
    name = f"grid[{key!r}][{j}]"
    if key == "hidden":
        return _hidden(name, value, features, classes)
    if key == "lr":
        return V.positive_float(name, value)
    if key in ("batch_size", "epochs"):
        return V.positive_int(name, value)
    if key == "seed":
        return V.positive_int(name, value, minimum=0)
    if key == "shuffle":
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
        return bool(value)
    if key == "dtype":
        try:
            return V.model_dtype(value).name
        except TypeError as e:
            raise TypeError(f"{name}: {e}") from e
    if key == "activation":
        try:
            return V.activation(value)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from e
    if key == "dropout":
        try:
            for depth in sorted(hidden_depths):
                V.dropout(value, depth)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name} = {value!r}: {e}") from e
        return float(value) if isinstance(value, numbers.Real) else tuple(float(p) for p in value)
    if key == "optimizer":
        if value is None or isinstance(value, _optim.Optimizer):
            return value
        if isinstance(value, str) and value.lower() in OPTIMIZERS:
            return value.lower()
        raise ValueError(
            f"{name} must be None (plain SGD), one of {', '.join(map(repr, OPTIMIZERS))} or an "
            f"mnist_mlp.optim optimizer, got {value!r}"
        )
    raise AssertionError(key)  # pragma: no cover


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def expand_grid(grid: Mapping[str, Any], features: int, classes: int) -> list[dict[str, Any]]:
    """The trials' parameters: every key of `GRID_KEYS`, the grid's values
    (checked and normalised) and the defaults for the others, in the order of
    the cross product. Raises ValueError/TypeError naming the key and the value."""
    if not isinstance(grid, Mapping):
        raise TypeError(f"grid must be a dict from parameter to a list of values, got {type(grid).__name__}")
    for key in grid:
        if key not in GRID_KEYS:
            raise ValueError(f"grid: unknown parameter {key!r}; the parameters are {', '.join(GRID_KEYS)}")
    raw = {key: _values(grid, key) for key in grid}
    depths = {len(_hidden(f"grid['hidden'][{j}]", h, features, classes)) for j, h in enumerate(raw.get("hidden", []))}
    depths = depths or {len(DEFAULTS["hidden"])}
    values: dict[str, list[Any]] = {}
    for key, vals in raw.items():
        checked = [_check_value(key, j, v, features, classes, depths) for j, v in enumerate(vals)]
        for j, v in enumerate(checked):
            for k in range(j):
                if _same(checked[k], v):
                    raise ValueError(f"grid[{key!r}] lists {vals[j]!r} twice (values {k} and {j})")
        values[key] = checked
    if "lr" in values and any(isinstance(o, _optim.Optimizer) for o in values.get("optimizer", [])):
        raise ValueError(
            "grid: an optimizer given as an mnist_mlp.optim object carries its own learning rate; "
            "drop 'lr' from the grid, or name the optimizer ('sgd', 'adam', 'adamw', 'rmsprop') to take it from 'lr'"
        )
    trials = []
    keys = list(values)
    for combo in itertools.product(*(values[k] for k in keys)):
        p = dict(DEFAULTS)
        p.update(zip(keys, combo))
        if isinstance(p["dropout"], tuple) and len(p["dropout"]) != len(p["hidden"]):
            raise ValueError(
                f"grid: dropout {list(p['dropout'])} has {len(p['dropout'])} rates but hidden {p['hidden']} has "
                f"{len(p['hidden'])} layers"
            )
        opt = p["optimizer"]
        if isinstance(opt, _optim.Optimizer):
            p["lr"] = opt.lr
        elif p["lr"] is None:
            p["lr"] = 0.1 if opt is None else OPTIMIZERS[opt]().lr
        trials.append({k: p[k] for k in GRID_KEYS})
    return trials


def _optimizer_of(params: Mapping[str, Any]) -> _optim.Optimizer | None:
    opt = params["optimizer"]
    if isinstance(opt, str):
        return OPTIMIZERS[opt](lr=params["lr"])
    return opt


# ---------------------------------------------------------------------------
# Data


def _pair(name: str, value: Any) -> tuple[Any, Any]:
    try:
        x, y = value
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a pair (x, y)") from e
    return x, y


def _classes(*labels: np.ndarray) -> int:
    widths = {int(y.shape[1]) for y in labels if y.ndim == 2}
    if len(widths) > 1:
        raise ValueError(f"train y and validation y are one-hot with different widths {sorted(widths)}")
    if widths:
        return widths.pop()
    top = 1
    for y in labels:
        if y.ndim == 1 and len(y) and np.issubdtype(y.dtype, np.integer) and y.dtype != np.bool_:
            top = max(top, int(y.max()))
    return top + 1


def _data(train: Any, validation: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    x, y = _pair("train", train)
    xv, yv = _pair("validation", validation)
    x = np.asarray(x)
    if x.ndim < 2:
        raise ValueError(f"train x must be (samples, features) or (samples, 28, 28), got shape {x.shape}")
    features = int(np.prod(x.shape[1:]))
    y, yv = np.asarray(y), np.asarray(yv)
    classes = _classes(y, yv)
    x = V.inputs(x, features, name="train x")
    y = V.labels(y, len(x), classes, name="train y")
    xv = V.inputs(xv, features, name="validation x")
    yv = V.labels(yv, len(xv), classes, name="validation y")
    return x, y, xv, yv, classes


# ---------------------------------------------------------------------------
# What runs on a worker


class _SharedArray:
    """An array the client wrote to a file on its own machine (`_shared_arrays`),
    for worker processes on that machine to map instead of receiving a copy.
    Pickles as its path only."""

    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path

    def __repr__(self) -> str:
        return f"_SharedArray({self.path!r})"


#: This worker process's maps of the sweep files it was given, by path (see `_resolve`).
_MAPPED: dict[str, np.ndarray] = {}


def _unmap(paths: list[str]) -> None:
    """On a worker, after its sweep: drops this process's maps of these files."""
    for path in paths:
        _MAPPED.pop(path, None)


def _resolve(a: Any) -> Any:
    """On a worker: a `_SharedArray` becomes a read-only memory map of its file
    (mapped once per worker process and sweep); anything else is returned as it
    is. Maps of earlier sweeps, whose files are gone, are dropped first."""
    if not isinstance(a, _SharedArray):
        return a
    for path in [p for p in _MAPPED if p != a.path and not os.path.exists(p)]:
        del _MAPPED[path]
    if a.path not in _MAPPED:
        _MAPPED[a.path] = np.load(a.path, mmap_mode="r", allow_pickle=False)
    return _MAPPED[a.path]


@contextlib.contextmanager
def _thread_limit(threads: int) -> Iterator[int]:
    """Limits the OpenMP runtime of this thread to ``threads`` (threadpoolctl,
    when installed) and yields the threads a trial's calls get: what the package
    then uses for a call without num_threads, or without threadpoolctl what
    ``num_threads=threads`` gives (at most the processors)."""
    from . import _core

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        try:
            procs = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):  # pragma: no cover - not Linux
            procs = os.cpu_count() or 1
        yield min(threads, procs) if _core.HAVE_OPENMP else 1
        return
    with threadpool_limits(limits=threads, user_api="openmp"):
        yield int(_core.max_threads())


def run_trial(
    params: Mapping[str, Any], x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, classes: int,
    threads: int = 1,
) -> dict[str, Any]:
    """One trial, here: the model, its fit and its evaluation on (xv, yv).

    Returns ``test_loss``, ``test_accuracy``, ``train_seconds`` (the fit: training
    and its per-epoch evaluations), ``history``, ``threads``, ``error`` (None, or
    ``"FloatingPointError: ..."`` when the fit or the evaluation raised) and
    ``model`` (the trained `MLP`, None after an error)."""
    from .model import MLP

    model = MLP([x.shape[1], *params["hidden"], classes], activation=params["activation"],
                dropout=params["dropout"], seed=params["seed"], dtype=params["dtype"])
    opt = _optimizer_of(params)
    how: dict[str, Any] = {"optimizer": opt} if opt is not None else {"lr": params["lr"]}
    out: dict[str, Any] = {"test_loss": None, "test_accuracy": None, "error": None, "model": None}
    with _thread_limit(threads) as seen:
        out["threads"] = seen
        t0 = time.perf_counter()
        try:
            model.fit(x, y, epochs=params["epochs"], batch_size=params["batch_size"], shuffle=params["shuffle"],
                      validation_data=(xv, yv), num_threads=threads, **how)
            out["train_seconds"] = time.perf_counter() - t0
            # The last epoch's validation figures are model.evaluate(xv, yv) of the final
            # weights (the same call, bitwise): no second pass over the validation set.
            last = model.history[-1]
            if not math.isfinite(last["test_loss"]):
                model.evaluate(xv, yv, num_threads=threads)  # raises, naming the parameter that is not finite
            out["test_loss"], out["test_accuracy"] = last["test_loss"], last["test_accuracy"]
            out["model"] = model
        except Exception as e:  # recorded, not retried: the same fit would raise again
            out.setdefault("train_seconds", time.perf_counter() - t0)
            out["error"] = f"{type(e).__name__}: {e}"
    out["history"] = [dict(h) for h in model.history]
    return out


def _starts(events: Sequence[tuple[float, Any]]) -> int:
    return sum(1 for _, msg in events if isinstance(msg, dict) and msg.get("event") == "start")


def _gave_up(attempts: int, retries: int) -> str:
    during = "its only attempt" if attempts == 1 else f"each of its {attempts} attempts"
    return f"KilledWorker: the worker running this trial died during {during} (retries={retries})"


def _last_worker(events: Sequence[tuple[float, Any]]) -> str | None:
    workers = [msg.get("worker") for _, msg in events if isinstance(msg, dict) and msg.get("event") == "start"]
    return workers[-1] if workers else None


def _attempt(params: dict[str, Any], x: np.ndarray, y: np.ndarray, xv: np.ndarray, yv: np.ndarray, *,
             classes: int, topic: str, reruns: int, threads: int) -> dict[str, Any]:
    """The task: counts the attempts already started (on the scheduler, which
    outlives workers), logs this one's start, runs the trial. (``reruns`` is
    sweep's ``retries``: ``retries=`` would be taken by `Client.submit`.)"""
    from distributed import get_client, get_worker

    x, y, xv, yv = (_resolve(a) for a in (x, y, xv, yv))
    worker = get_worker().address
    client = get_client()
    events = client.get_events(topic)
    started = _starts(events)
    if started > reruns:
        return {"error": _gave_up(started, reruns), "attempts": started, "worker": _last_worker(events), "history": [],
                "test_loss": None, "test_accuracy": None, "train_seconds": None, "threads": None, "model": None}
    sid, trial = topic[len(TOPIC_PREFIX):].split("/")
    start = {"event": "start", "sweep": sid, "trial": int(trial), "attempt": started + 1, "worker": worker,
             "pid": os.getpid()}
    client.log_event([topic, EVENTS], start)  # one synchronous call: on the scheduler before the training starts
    out = run_trial(params, x, y, xv, yv, classes, threads)
    out["worker"], out["attempts"] = worker, started + 1
    return out


# ---------------------------------------------------------------------------
# The result


def _params_json(p: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(p)
    out["hidden"] = list(p["hidden"])
    if isinstance(p["dropout"], tuple):
        out["dropout"] = list(p["dropout"])
    if isinstance(p["optimizer"], _optim.Optimizer):
        out["optimizer"] = repr(p["optimizer"])
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (tuple, list)):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _rank_key(t: Mapping[str, Any]) -> tuple:
    ok = t["error"] is None and t["test_accuracy"] is not None
    return (0, -t["test_accuracy"], t["test_loss"], t["trial"]) if ok else (1, 0.0, 0.0, t["trial"])


class SweepResult:
    """The trials of a sweep, in the grid's order.

    Each trial is a dict: ``trial`` (its index), ``params`` (every key of
    `GRID_KEYS`), ``test_accuracy`` and ``test_loss`` (on the validation data;
    None when the trial failed), ``train_seconds`` (the fit on the worker),
    ``history`` (the fit's per-epoch records), ``worker`` (the address of the
    worker that ran the last attempt), ``attempts`` (the runs that started),
    ``threads`` (OpenMP threads the trial ran with) and ``error`` (None, or
    ``"ExceptionType: message"``). The trained models stay here too:
    `model(i)` and `best_model()`.
    """

    def __init__(self, trials: list[dict[str, Any]], models: list[Any]):
        self.trials = trials
        self._models = models

    def __repr__(self) -> str:
        failed = sum(t["error"] is not None for t in self.trials)
        best = self.best
        tail = f", best test_accuracy {best['test_accuracy']:.5f} (trial {best['trial']})" if best else ""
        return f"SweepResult({len(self.trials)} trials, {failed} failed{tail})"

    @property
    def best(self) -> dict[str, Any] | None:
        """The trial with the highest test_accuracy (ties: the lower test_loss, then
        the earlier trial); None when every trial failed."""
        ok = [t for t in self.trials if t["error"] is None and t["test_accuracy"] is not None]
        return min(ok, key=_rank_key) if ok else None

    def ranked(self) -> list[dict[str, Any]]:
        """The trials sorted as `best` ranks them, failed trials last."""
        return sorted(self.trials, key=_rank_key)

    def model(self, trial: int) -> "MLP":
        """A copy of trial ``trial``'s trained model (its weights, history and optimizer state)."""
        if isinstance(trial, bool) or not isinstance(trial, numbers.Integral) or not 0 <= trial < len(self.trials):
            raise ValueError(f"trial must be an index in [0, {len(self.trials)}), got {trial!r}")
        model = self._models[int(trial)]
        if model is None:
            raise ValueError(f"trial {trial} has no model: {self.trials[int(trial)]['error']}")
        return copy.deepcopy(model)

    def best_model(self) -> "MLP":
        """A copy of the best trial's trained model."""
        best = self.best
        if best is None:
            errors = "; ".join(sorted({str(t["error"]) for t in self.trials}))
            raise ValueError(f"no trial of the sweep succeeded, so there is no best model ({errors})")
        return self.model(best["trial"])

    def to_json(self, path: str | os.PathLike) -> None:
        """Writes every trial, histories included, as one JSON document."""
        from . import __version__

        doc = {
            "format": "mnist_mlp.sweep/1",
            "version": __version__,
            "best": None if self.best is None else self.best["trial"],
            "trials": [dict(t, params=_params_json(t["params"])) for t in self.trials],
        }
        with atomic_write(path, "w") as f:
            f.write(json.dumps(doc, indent=2) + "\n")

    def csv_columns(self) -> list[str]:
        return ["trial", *GRID_KEYS, "test_accuracy", "test_loss", "train_seconds", "worker", "attempts", "threads",
                "error"]

    def to_csv(self, path: str | os.PathLike) -> None:
        """Writes one row per trial, in the grid's order (``hidden`` as "512,256",
        floats in full precision, no history)."""
        cols = self.csv_columns()
        with atomic_write(path, "w") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(cols)
            for t in self.trials:
                row = {**t["params"], **{k: v for k, v in t.items() if k != "params"}}
                w.writerow([_cell(row.get(c)) for c in cols])

    def table(self, keys: Sequence[str] | None = None) -> str:
        """A plain-text table of the trials, ranked (best first), with the
        parameters ``keys`` (default: those that vary, and hidden, lr,
        batch_size, epochs)."""
        if keys is None:
            base = ["hidden", "lr", "batch_size", "epochs"]
            keys = base + [k for k in GRID_KEYS if k not in base and
                           len({_cell(t["params"][k]) for t in self.trials}) > 1]
        head = ["rank", "trial", *keys, "val_accuracy", "val_loss", "seconds", "attempts", "worker"]
        rows = []
        for r, t in enumerate(self.ranked(), 1):
            failed = t["error"] is not None
            rows.append([
                str(r) if not failed else "-", str(t["trial"]), *(_cell(t["params"][k]) for k in keys),
                "failed" if failed else f"{t['test_accuracy']:.5f}",
                "" if failed else f"{t['test_loss']:.5f}",
                "" if t["train_seconds"] is None else f"{t['train_seconds']:.2f}",
                str(t["attempts"]), t["worker"] or "-",
            ] + ([t["error"]] if failed else []))
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
        lines = ["  ".join(h.ljust(wd) for h, wd in zip(head, widths)).rstrip()]
        for row in rows:
            cells = [c.ljust(wd) for c, wd in zip(row, widths)] + row[len(head):]
            lines.append("  ".join(cells).rstrip())
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# The sweep


def _cores() -> int:
    try:
        from distributed.system import CPU_COUNT

        return max(1, int(CPU_COUNT))
    except Exception:  # pragma: no cover
        return max(1, os.cpu_count() or 1)


def local_cluster(n_workers: int | None = None, threads_per_trial: int = 1) -> Any:
    """The LocalCluster that ``sweep(scheduler=None)`` starts, to keep for several
    sweeps (``sweep(..., scheduler=Client(cluster))``): worker processes on
    127.0.0.1 that each run one trial at a time, ``n_workers`` of them (default
    ``cores // threads_per_trial``, at least one), with ``OMP_NUM_THREADS`` set to
    ``threads_per_trial``, no dashboard, and `QUIET_MONITORING`. Close it when done
    (``with local_cluster() as cluster:``)."""
    return _local_cluster(n_workers, threads_per_trial, QUIET_MONITORING)


def _local_cluster(n_workers: int | None, threads_per_trial: int, config: Mapping[str, Any]) -> Any:
    """`local_cluster` with these Dask settings (bench/sweep.py passes none, for Dask's defaults)."""
    distributed = _import_distributed()
    import dask

    threads_per_trial = V.positive_int("threads_per_trial", threads_per_trial)
    if n_workers is None:
        n_workers = max(1, _cores() // threads_per_trial)
    n_workers = V.positive_int("n_workers", n_workers)
    # The scheduler reads its settings when it starts, the nannies hand theirs to the workers.
    with dask.config.set(dict(config)):
        return distributed.LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            env={"OMP_NUM_THREADS": str(threads_per_trial)},
        )


@contextlib.contextmanager
def _connect(scheduler: Any, n_workers: int | None, threads_per_trial: int) -> Iterator[Any]:
    distributed = _import_distributed()
    if scheduler is None:
        cluster = local_cluster(n_workers, threads_per_trial)
        try:
            client = distributed.Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
    elif isinstance(scheduler, str):
        client = distributed.Client(scheduler)
        try:
            yield client
        finally:
            client.close()
    elif isinstance(scheduler, distributed.Client):
        yield scheduler
    else:
        raise TypeError(
            f"scheduler must be None (a LocalCluster), a scheduler address such as 'tcp://host:8786', or a "
            f"distributed.Client, got {type(scheduler).__name__}"
        )


def _progress(progress: Any, total: int) -> tuple[Progress | None, Callable[[], None]]:
    if progress is None or progress is False:
        return None, lambda: None
    if progress is True:
        from ._progress import progress_bar

        bar = progress_bar(total, sys.stderr, unit="trial", label="best validation accuracy")
        best: list[float] = []

        def on_trial(done: int, total: int, trial: dict) -> None:
            if trial["error"] is None and trial["test_accuracy"] is not None:
                best[:] = [max(best + [trial["test_accuracy"]])]
            bar.update({"test_accuracy": best[0]} if best else {})

        return on_trial, bar.close
    if callable(progress):
        return progress, lambda: None
    raise TypeError(f"progress must be None, True (a bar) or a callable (done, total, trial), got {progress!r}")


def sweep(
    grid: Mapping[str, Sequence[Any]],
    train: tuple[Any, Any],
    validation: tuple[Any, Any],
    *,
    scheduler: Any = None,
    retries: int = 2,
    threads_per_trial: int = 1,
    progress: bool | Progress | None = None,
    n_workers: int | None = None,
) -> SweepResult:
    """Trains one model per point of ``grid`` on a dask.distributed cluster and
    evaluates each on ``validation``.

    ``grid`` maps parameters to lists of values; the sweep runs their cross
    product. Parameters (and their value when the grid does not name them):
    ``hidden`` (tuples of hidden widths, or single widths; (300,)), ``lr`` (0.1
    for plain SGD, else the optimizer's default), ``batch_size`` (8), ``epochs``
    (1), ``shuffle`` (False), ``seed`` (0), ``dtype`` ("float32"),
    ``activation`` ("relu"), ``dropout`` (0.0; a rate, or a tuple of one per
    hidden layer) and ``optimizer`` (None: plain SGD at ``lr``; "sgd", "adam",
    "adamw" or "rmsprop": that optimizer with ``lr`` and torch's other
    defaults; or an `mnist_mlp.optim` object, which carries its own learning
    rate, so the grid then has no ``lr``). An unknown parameter, an empty list,
    a repeated value or a bad value raises ValueError/TypeError naming the key,
    before any cluster starts. The module docstring shows a trial's code.

    ``train`` and ``validation`` are pairs (x, y) as `MLP.fit` takes them. They
    go to the workers once, not once per trial: to the workers of a LocalCluster
    of this process as files in /dev/shm that each maps read-only (removed at
    the end), to any other cluster's workers scattered to all of them.

    ``scheduler``: None starts a LocalCluster on 127.0.0.1 (worker processes:
    ``n_workers``, default ``cores // threads_per_trial``, each running one
    trial at a time) and closes it at the end; a string is the address of a
    running scheduler (``"tcp://host:8786"``); a `distributed.Client` is used
    as it is (and left open). ``retries``: how many times a trial reruns after
    the worker running it died; an exception raised by the trial is recorded,
    not retried. ``threads_per_trial``: the OpenMP threads of each trial.
    ``progress``: True draws a bar over the trials on stderr (when it is a
    terminal); a callable is called as ``progress(done, total, trial)`` after
    each trial ends, in this thread.

    Returns a `SweepResult`. Raises ImportError naming the ``[dask]`` extra
    when dask.distributed is not installed.
    """
    x, y, xv, yv, classes = _data(train, validation)
    trials = expand_grid(grid, x.shape[1], classes)
    retries = V.positive_int("retries", retries, minimum=0)
    threads_per_trial = V.positive_int("threads_per_trial", threads_per_trial)
    if n_workers is not None:
        n_workers = V.positive_int("n_workers", n_workers)
        if scheduler is not None:
            raise ValueError("n_workers sizes the LocalCluster that scheduler=None starts; it cannot be combined "
                             "with a scheduler")
    on_trial, close_bar = _progress(progress, len(trials))
    distributed = _import_distributed()

    sid = uuid.uuid4().hex[:12]
    topics = [f"{TOPIC_PREFIX}{sid}/{i}" for i in range(len(trials))]
    results: list[dict[str, Any] | None] = [None] * len(trials)
    models: list[Any] = [None] * len(trials)
    try:
        with _connect(scheduler, n_workers, threads_per_trial) as client:
            _run_all(client, distributed, trials, (x, y, xv, yv), classes, topics, retries, threads_per_trial,
                     results, models, on_trial)
    finally:
        close_bar()
    out = []
    for i, (p, r) in enumerate(zip(trials, results)):
        assert r is not None
        out.append({"trial": i, "params": p, **r})
    return SweepResult(out, models)


def _cost(p: Mapping[str, Any], features: int, classes: int) -> float:
    """A rough relative cost of a trial, to start the longest first: epochs x
    multiply-adds per sample. (The batch size is left out: on 784-300-10 the
    engine's epoch at batch 8 in order costs what it costs at batch 32.)"""
    widths = [features, *p["hidden"], classes]
    return float(p["epochs"]) * sum(a * b for a, b in zip(widths, widths[1:]))


def _on_this_machine(client: Any, distributed: Any) -> bool:
    """Whether the client's workers are processes of a LocalCluster that this
    process started (``Client(cluster)``): they then share this machine's memory."""
    return isinstance(getattr(client, "cluster", None), distributed.LocalCluster)


@contextlib.contextmanager
def _shared_arrays(arrays: Sequence[np.ndarray]) -> Iterator[list[_SharedArray] | None]:
    """Writes the arrays once, as .npy files in a new directory in /dev/shm (this
    machine's memory; the temporary directory where there is none), for the
    workers to map, as joblib does for its worker processes. Yields their
    handles, or None when they cannot be written (no room); removes the files
    at the end."""
    shm = "/dev/shm"
    try:
        d = tempfile.mkdtemp(prefix="mnist_mlp-sweep-",
                             dir=shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None)
    except OSError:
        d = None
    handles: list[_SharedArray] | None = None
    try:
        if d is not None:
            try:
                handles = []
                for i, a in enumerate(arrays):
                    path = os.path.join(d, f"{i}.npy")
                    np.save(path, a, allow_pickle=False)
                    handles.append(_SharedArray(path))
            except OSError:  # /dev/shm full: the data is scattered instead
                handles = None
        yield handles
    finally:
        if d is not None:
            shutil.rmtree(d, ignore_errors=True)


def _run_all(client: Any, distributed: Any, trials: list[dict[str, Any]], arrays: tuple[np.ndarray, ...],
             classes: int, topics: list[str], retries: int, threads: int, results: list[Any], models: list[Any],
             on_trial: Progress | None) -> None:
    """The data goes to the workers once: for a LocalCluster of this process,
    written once to shared memory that each worker maps (no copy per worker and
    nothing to send: 55 MB of MNIST took 0.07-0.34 s to scatter to two local
    workers); for any other cluster, scattered to every worker."""
    args = (classes, topics, retries, threads, results, models, on_trial)
    if _on_this_machine(client, distributed):
        with _shared_arrays(arrays) as shared:
            try:
                _run_trials(client, distributed, trials, arrays, shared, *args)
            finally:
                if shared is not None:  # the workers let go of their maps (the files go next)
                    with contextlib.suppress(Exception):
                        client.run(_unmap, [a.path for a in shared])
    else:
        _run_trials(client, distributed, trials, arrays, None, *args)


def _run_trials(client: Any, distributed: Any, trials: list[dict[str, Any]], arrays: tuple[np.ndarray, ...],
                shared: list[_SharedArray] | None, classes: int, topics: list[str], retries: int, threads: int,
                results: list[Any], models: list[Any], on_trial: Progress | None) -> None:
    data = shared if shared is not None else client.scatter(list(arrays), broadcast=True, hash=False)
    scattered = 1  # times the data was scattered (or shared)
    # Longest first (Dask runs higher priorities first): the last trials to end are
    # then short ones, and the workers finish close together.
    order = sorted(range(len(trials)), key=lambda i: (-_cost(trials[i], arrays[0].shape[1], classes), i))
    priority = {i: len(trials) - rank for rank, i in enumerate(order)}
    submissions = [0] * len(trials)
    owner: dict[Any, tuple[int, int]] = {}  # a task's key -> (trial, the scatter it was given)

    def submit(i: int) -> Any:
        submissions[i] += 1
        key = f"mnist_mlp-trial-{topics[i][len(TOPIC_PREFIX):].replace('/', '-')}-{submissions[i]}"
        fut = client.submit(_attempt, trials[i], *data, classes=classes, topic=topics[i], reruns=retries,
                            threads=threads, key=key, pure=False, priority=priority[i])
        owner[fut.key] = (i, scattered)
        return fut

    pending = distributed.as_completed([submit(i) for i in order])
    done = 0
    try:
        for fut in pending:
            i, given = owner.pop(fut.key)
            rec: dict[str, Any] | None = None
            try:
                rec = fut.result()
            except distributed.KilledWorker as e:
                events = client.get_events(topics[i])
                started = _starts(events)
                if started <= retries and submissions[i] <= retries:
                    pending.add(submit(i))
                    continue
                rec = {"error": _gave_up(started, retries) if started else f"KilledWorker: {e}", "attempts": started,
                       "worker": _last_worker(events)}
            except (Exception, distributed.CancelledError) as e:
                # Every worker holding the data died (a lone worker restarted by its
                # nanny, say), which cancels the trials given it: send the data again
                # (once) and rerun them.
                if shared is None and any(d.status != "finished" for d in data):
                    data = client.scatter(list(arrays), broadcast=True, hash=False)
                    scattered += 1
                if given < scattered and submissions[i] <= retries:
                    pending.add(submit(i))
                    continue
                events = client.get_events(topics[i])
                rec = {"error": f"{type(e).__name__}: {e}", "attempts": _starts(events), "worker": _last_worker(events)}
            finally:
                fut.release()
            full = {"test_accuracy": None, "test_loss": None, "train_seconds": None, "history": [], "worker": None,
                    "attempts": 0, "threads": None, "error": None}
            full.update(rec)
            models[i] = full.pop("model", None)
            results[i] = full
            done += 1
            if on_trial is not None:
                on_trial(done, len(trials), {"trial": i, "params": trials[i], **full})
    finally:
        outstanding = list(pending.futures)  # left when this loop ends early (Ctrl-C, an error)
        if outstanding:
            client.cancel(outstanding)
