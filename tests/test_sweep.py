"""mm.sweep and `mnist-mlp sweep` on dask.distributed: results bitwise equal to
local fits, a worker killed mid-sweep, a diverging trial, threads, the CLI, and
GridSearchCV under joblib's Dask backend. Every cluster listens on 127.0.0.1
only and is started and stopped here; every wait is bounded."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import mnist_mlp as mm
from conftest import REPO
from mnist_mlp import cli
from mnist_mlp.idx import MNIST_FILES

sw = sys.modules["mnist_mlp.sweep"]  # the module (mm.sweep is the function)
OPTIMIZERS = {"sgd": mm.optim.SGD, "adam": mm.optim.Adam, "adamw": mm.optim.AdamW, "rmsprop": mm.optim.RMSprop}

TIMING = {"seconds", "eval_seconds"}  # the only fields of a history record that may differ between runs


@pytest.fixture(scope="module")
def small(mnist):
    """2000 training and 500 validation images."""
    (x, y), (xt, yt) = mnist
    return (x[:2000], y[:2000]), (xt[:500], yt[:500])


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of 2 single-threaded worker processes (the one mm.sweep starts), for the
    tests that share one."""
    distributed = pytest.importorskip("distributed")
    with mm.local_cluster(n_workers=2) as cluster, distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


def bounded(fn: Any, *args: Any, timeout: float = 120, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) in a thread, failing the test if it takes longer than timeout."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as e:  # re-raised below, in the test's thread
            box["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), f"{getattr(fn, '__name__', fn)} did not finish within {timeout} s"
    if "error" in box:
        raise box["error"]
    return box["result"]


def local_fit(params: dict, train, validation) -> tuple[mm.MLP, float, float]:
    """The trial's fit, written out as a user would run it in this process (all threads)."""
    (x, y), (xv, yv) = train, validation
    model = mm.MLP([784, *params["hidden"], 10], activation=params["activation"], dropout=params["dropout"],
                   seed=params["seed"], dtype=params["dtype"])
    opt = params["optimizer"]
    how = {"lr": params["lr"]} if opt is None else {"optimizer": OPTIMIZERS[opt](lr=params["lr"])}
    model.fit(x, y, epochs=params["epochs"], batch_size=params["batch_size"], shuffle=params["shuffle"],
              validation_data=(xv, yv), **how)
    loss, acc = model.evaluate(xv, yv)
    return model, loss, acc


def assert_bitwise_local(res: mm.SweepResult, train, validation) -> None:
    for t in res.trials:
        model, loss, acc = local_fit(t["params"], train, validation)
        assert t["error"] is None, t["error"]
        assert t["test_loss"] == loss and t["test_accuracy"] == acc, (t["trial"], t["test_loss"], loss)
        assert len(t["history"]) == len(model.history) == t["params"]["epochs"]
        for got, want in zip(t["history"], model.history):
            assert {k: v for k, v in got.items() if k not in TIMING} == {k: v for k, v in want.items() if k not in TIMING}
        remote = res.model(t["trial"])
        assert remote.layer_sizes == model.layer_sizes and remote.dtype == model.dtype
        for a, b in zip(remote.weights + remote.biases, model.weights + model.biases):
            assert a.dtype == b.dtype and np.array_equal(a, b)  # bitwise (no NaN here: weights are finite)


# ---- the grid, checked before any cluster starts ------------------------------------------


def test_grid_is_the_cross_product_with_defaults():
    trials = sw.expand_grid({"lr": [0.05, 0.1], "hidden": [128, (512, 256)]}, 784, 10)
    assert [(t["lr"], t["hidden"]) for t in trials] == [(0.05, (128,)), (0.05, (512, 256)), (0.1, (128,)),
                                                        (0.1, (512, 256))]
    assert list(trials[0]) == list(sw.GRID_KEYS)
    assert trials[0] == {"hidden": (128,), "lr": 0.05, "batch_size": 8, "epochs": 1, "shuffle": False, "seed": 0,
                         "dtype": "float32", "activation": "relu", "dropout": 0.0, "optimizer": None}
    # names take lr from the grid, or their own default; an object brings its own
    named = sw.expand_grid({"optimizer": ["adam", None]}, 784, 10)
    assert [(t["optimizer"], t["lr"]) for t in named] == [("adam", 1e-3), (None, 0.1)]
    opt = mm.optim.SGD(0.01, momentum=0.9)
    assert sw.expand_grid({"optimizer": [opt]}, 784, 10)[0]["lr"] == 0.01
    assert sw.expand_grid({"dropout": [(0.1, 0.2)], "hidden": [(8, 8)]}, 784, 10)[0]["dropout"] == (0.1, 0.2)
    assert len(sw.expand_grid({}, 784, 10)) == 1


@pytest.mark.parametrize("grid,error,message", [
    ({"width": [1]}, ValueError, "unknown parameter 'width'"),
    ({"lr": []}, ValueError, "grid['lr'] is empty"),
    ({"lr": 0.1}, TypeError, "grid['lr'] must be a list"),
    ({"lr": [0.1, -1]}, ValueError, "grid['lr'][1] must be finite and > 0"),
    ({"lr": [0.1, 0.1]}, ValueError, "grid['lr'] lists 0.1 twice"),
    ({"hidden": [(128, 0)]}, ValueError, "grid['hidden'][0]"),
    ({"hidden": [()]}, ValueError, "grid['hidden'][0] is empty"),
    ({"epochs": [0]}, ValueError, "grid['epochs'][0] must be >= 1"),
    ({"batch_size": [2.5]}, TypeError, "grid['batch_size'][0] must be an integer"),
    ({"seed": [-1]}, ValueError, "grid['seed'][0] must be >= 0"),
    ({"shuffle": ["yes"]}, TypeError, "grid['shuffle'][0] must be True or False"),
    ({"dtype": ["float16"]}, TypeError, "grid['dtype'][0]"),
    ({"activation": ["gelu"]}, ValueError, "grid['activation'][0]"),
    ({"dropout": [1.0]}, ValueError, "grid['dropout'][0]"),
    ({"dropout": [(0.1, 0.2)]}, ValueError, "grid['dropout'][0]"),  # two rates, one hidden layer
    ({"optimizer": ["lbfgs"]}, ValueError, "grid['optimizer'][0]"),
    ({"optimizer": [mm.optim.Adam()], "lr": [0.1]}, ValueError, "carries its own learning rate"),
])
def test_bad_grids_raise_before_any_cluster(grid, error, message, small):
    # scheduler=object() would be refused only when connecting: the grid is refused first
    with pytest.raises(error) as e:
        mm.sweep(grid, *small, scheduler=object())
    assert message in str(e.value)


def test_bad_arguments(small):
    (x, y), val = small
    with pytest.raises(TypeError, match="train must be a pair"):
        mm.sweep({}, x, val)
    with pytest.raises(ValueError, match="validation x has 100 features"):
        mm.sweep({}, (x, y), (np.zeros((3, 100), np.float32), [0, 1, 2]))
    with pytest.raises(ValueError, match="retries must be >= 0"):
        mm.sweep({}, (x, y), val, retries=-1, scheduler=object())
    with pytest.raises(ValueError, match="threads_per_trial must be >= 1"):
        mm.sweep({}, (x, y), val, threads_per_trial=0, scheduler=object())
    with pytest.raises(ValueError, match="n_workers sizes the LocalCluster"):
        mm.sweep({}, (x, y), val, n_workers=2, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(TypeError, match="progress must be"):
        mm.sweep({}, (x, y), val, progress="yes", scheduler=object())
    pytest.importorskip("distributed")
    with pytest.raises(TypeError, match="scheduler must be None"):
        mm.sweep({}, (x, y), val, scheduler=object())


def test_without_dask_the_sweep_names_the_extra():
    # `import mnist_mlp` never imports dask; a sweep without it raises ImportError naming the extra,
    # and the CLI says so in one line (exit 1).
    code = (
        "import sys\n"
        "import numpy as np\n"
        "import mnist_mlp as mm\n"
        "from mnist_mlp import cli\n"
        "assert not {'dask', 'distributed', 'threadpoolctl'} & set(sys.modules)\n"
        "sys.modules['distributed'] = None  # as if it were not installed\n"
        "x, y = np.zeros((4, 784), np.uint8), np.array([0, 1, 0, 1])\n"
        "try:\n"
        "    mm.sweep({'hidden': [8]}, (x, y), (x, y))\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "sys.exit(cli.main(['sweep', '--epochs', '1']))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == 'mm.sweep needs dask.distributed: pip install "mnist_mlp[dask]"', (r.stdout, r.stderr)
    assert r.returncode == 1
    assert r.stderr.strip() == ('mnist-mlp: error: sweep needs distributed, which is not installed: '
                                'pip install "mnist_mlp[dask]"')


# ---- on a LocalCluster ----------------------------------------------------------------------


def test_local_cluster_trials_equal_local_fits_bitwise(small):
    pytest.importorskip("distributed")
    before = set(multiprocessing.active_children())
    seen: list[tuple[int, int, int]] = []
    grid = {"hidden": [(32,), (48, 24)], "batch_size": [8, 32, 64], "lr": [0.05], "epochs": [2], "shuffle": [True],
            "seed": [3]}
    res = bounded(mm.sweep, grid, *small, n_workers=2, progress=lambda done, total, t: seen.append((done, total, t["trial"])))
    assert isinstance(res, mm.SweepResult) and len(res.trials) == 6
    assert [t["trial"] for t in res.trials] == list(range(6))
    assert [t["params"]["hidden"] for t in res.trials] == [(32,)] * 3 + [(48, 24)] * 3
    assert [(d, n) for d, n, _ in seen] == [(d, 6) for d in range(1, 7)] and sorted(i for *_, i in seen) == list(range(6))
    assert all(t["attempts"] == 1 and t["threads"] == 1 and t["train_seconds"] > 0 for t in res.trials)
    assert len({t["worker"] for t in res.trials}) <= 2 and all(t["worker"].startswith("tcp://127.0.0.1:") for t in res.trials)
    assert_bitwise_local(res, *small)  # the local fits use every core: the thread count does not matter
    best = max(res.trials, key=lambda t: (t["test_accuracy"], -t["test_loss"]))
    assert res.best is best and res.best_model().evaluate(*small[1]) == (best["test_loss"], best["test_accuracy"])
    # the cluster sweep started is closed: its worker processes are gone
    deadline = time.monotonic() + 10
    while set(multiprocessing.active_children()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(multiprocessing.active_children()) - before


def test_local_cluster_quiets_the_dashboards_monitoring(client):
    import dask

    # the workers got QUIET_MONITORING from their nannies: no profiler, a 1 s tick
    workers = client.run(lambda dask_worker: (dask.config.get("distributed.worker.profile.enabled"),
                                              "profile" in dask_worker.periodic_callbacks,
                                              dask_worker.periodic_callbacks["tick"].callback_time,
                                              dask_worker.periodic_callbacks["memory_monitor"].callback_time))
    assert list(workers.values()) == [(False, False, 1000, 100)] * 2  # the memory monitor keeps its 100 ms
    assert client.run_on_scheduler(lambda dask_scheduler: (dask_scheduler.periodic_callbacks["tick"].callback_time,
                                                           dask_scheduler.periodic_callbacks["monitor"].callback_time)) == (1000, 2000)
    assert dask.config.get("distributed.worker.profile.enabled") is True  # this process's settings are untouched
    assert client.run(lambda: os.environ["OMP_NUM_THREADS"]) == dict.fromkeys(workers, "1")
    with pytest.raises(ValueError, match="n_workers"):
        mm.local_cluster(n_workers=0)


def test_other_keys_threads_and_data_sent_once(client, small):
    held: list[dict[str, list[str]]] = []

    def progress(done: int, total: int, trial: dict) -> None:
        held.append({w: list(keys) for w, keys in client.has_what().items()})

    grid = {"optimizer": ["adam", "sgd"], "lr": [0.003], "dropout": [0.2], "dtype": ["float64"],
            "activation": ["tanh"], "epochs": [2], "hidden": [(40,)], "batch_size": [16]}
    def mapped() -> list[str]:
        return sorted(sys.modules["mnist_mlp.sweep"]._MAPPED)

    def progress_maps(done: int, total: int, trial: dict) -> None:
        progress(done, total, trial)
        maps.append(client.run(mapped))

    maps: list[dict[str, list[str]]] = []
    res = bounded(mm.sweep, grid, *small, scheduler=client, threads_per_trial=2, progress=progress_maps)
    assert_bitwise_local(res, *small)
    assert all(t["threads"] == min(2, len(os.sched_getaffinity(0))) for t in res.trials)
    assert res.model(0).dtype == np.float64 and res.model(0).activation == "tanh"
    # A LocalCluster of this process: the four arrays were written once to shared memory,
    # and the workers that ran trials mapped those files; nothing was scattered.
    assert all(not {k for k in keys if "mnist_mlp-trial" not in str(k)} for keys in held[0].values())
    files = {tuple(paths) for paths in maps[-1].values() if paths}
    assert len(files) == 1, maps[-1]
    (paths,) = files
    assert len(paths) == 4 and len({os.path.dirname(p) for p in paths}) == 1
    assert os.path.basename(os.path.dirname(paths[0])).startswith("mnist_mlp-sweep-")
    assert not os.path.exists(os.path.dirname(paths[0]))  # removed when the sweep ended
    assert all(not paths for paths in client.run(mapped).values())  # and the workers let go of their maps
    assert client.status == "running"  # a Client passed in is left open


def test_data_scattered_once_to_a_cluster_by_address(client, small):
    # By its address the cluster could be anywhere: the data are scattered to every worker.
    distributed = pytest.importorskip("distributed")
    with distributed.Client(client.scheduler.address) as c:
        held: list[dict[str, list[str]]] = []

        def progress(done: int, total: int, trial: dict) -> None:
            held.append({w: list(keys) for w, keys in c.has_what().items()})

        res = bounded(mm.sweep, {"lr": [0.05, 0.1], "hidden": [(24,)], "epochs": [2]}, *small, scheduler=c,
                      progress=progress)
    assert_bitwise_local(res, *small)
    # the four arrays are on both workers (broadcast), once: no trial carries its own copy
    data_keys = [{k for k in keys if "mnist_mlp-trial" not in str(k)} for keys in held[0].values()]
    assert len(data_keys) == 2 and data_keys[0] == data_keys[1] and len(data_keys[0]) == 4


def test_shared_memory_full_falls_back_to_scatter(client, small, tmp_path, monkeypatch):
    def no_room(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sw.tempfile, "mkdtemp", lambda prefix, dir=None: str(tmp_path / "shm"))
    (tmp_path / "shm").mkdir()
    monkeypatch.setattr(sw.np, "save", no_room)
    held: list[dict[str, list[str]]] = []
    res = bounded(mm.sweep, {"lr": [0.05], "hidden": [(16,)], "seed": [1, 2]}, *small, scheduler=client,
                  progress=lambda *_: held.append({w: list(k) for w, k in client.has_what().items()}))
    monkeypatch.undo()
    assert_bitwise_local(res, *small)
    assert any(len([k for k in keys if "mnist_mlp-trial" not in str(k)]) == 4 for keys in held[0].values())
    assert not (tmp_path / "shm").exists()  # the half-written directory is removed


def test_a_diverging_trial_is_recorded_and_not_retried(client, small, tmp_path):
    res = bounded(mm.sweep, {"lr": [0.1, 1e30], "hidden": [(16,)], "epochs": [2]}, *small, scheduler=client, retries=2)
    ok, bad = res.trials
    assert ok["error"] is None and ok["test_accuracy"] > 0.5
    assert bad["error"].startswith("FloatingPointError: training diverged: the loss became NaN or Inf at epoch 0")
    assert bad["attempts"] == 1 and bad["test_accuracy"] is None and bad["test_loss"] is None
    assert bad["history"] == [] and bad["worker"].startswith("tcp://")
    sweep_id = [m["sweep"] for _, m in client.get_events(sw.EVENTS)][-1]  # this sweep's
    starts = [m for _, m in client.get_events(sw.EVENTS) if m["sweep"] == sweep_id]
    assert sorted(m["trial"] for m in starts) == [0, 1]  # divergence is deterministic: not rerun
    assert res.best is ok and res.ranked() == [ok, bad]
    with pytest.raises(ValueError, match="trial 1 has no model: FloatingPointError"):
        res.model(1)
    res.to_csv(tmp_path / "s.csv")
    with (tmp_path / "s.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == ["0", "1"] and rows[1]["error"] == bad["error"] and rows[1]["test_accuracy"] == ""
    assert float(rows[0]["test_accuracy"]) == ok["test_accuracy"] and float(rows[0]["test_loss"]) == ok["test_loss"]
    res.to_json(tmp_path / "s.json")
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["format"] == "mnist_mlp.sweep/1" and doc["best"] == 0
    assert doc["trials"][0]["history"] == ok["history"] and doc["trials"][1]["error"] == bad["error"]
    assert doc["trials"][0]["params"]["hidden"] == [16]
    # every trial failing: no best
    res = bounded(mm.sweep, {"lr": [1e30], "hidden": [(16,)]}, *small, scheduler=client)
    assert res.best is None
    with pytest.raises(ValueError, match="no trial of the sweep succeeded"):
        res.best_model()


def test_threadpoolctl_sees_and_limits_the_packages_openmp():
    pytest.importorskip("threadpoolctl")
    code = (
        "import json, numpy, threadpoolctl\n"
        "omp = lambda: [i['filepath'] for i in threadpoolctl.threadpool_info() if i['user_api'] == 'openmp']\n"
        "before = omp()\n"
        "import mnist_mlp\n"
        "after = omp()\n"
        "with threadpoolctl.threadpool_limits(1, user_api='openmp'):\n"
        "    limited = mnist_mlp._core.max_threads()\n"
        "print(json.dumps([before, after, limited, mnist_mlp._core.max_threads()]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    before, after, limited, unlimited = json.loads(r.stdout)
    if unlimited == 1 and not after:
        pytest.skip("this build of mnist_mlp has no OpenMP")
    assert before == [] and len(after) == 1  # the OpenMP runtime is the one _core loaded
    assert limited == 1 and unlimited == len(os.sched_getaffinity(0))


def test_gridsearchcv_on_joblibs_dask_backend(client):
    joblib = pytest.importorskip("joblib")
    pytest.importorskip("sklearn")
    distributed = pytest.importorskip("distributed")
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV

    from mnist_mlp.estimator import _convergence_warning

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    grid = {"hidden_layer_sizes": [(16,), (32,)], "alpha": [1e-4, 1e-2]}
    est = mm.MLPClassifier(max_iter=20, random_state=0, num_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _convergence_warning())  # max_iter=20 stops early, on purpose
        here = GridSearchCV(est, grid, cv=3).fit(X, y)

        def on_dask() -> Any:
            with joblib.parallel_backend("dask"):  # the backend is per thread: set it in bounded's
                return GridSearchCV(est, grid, cv=3, n_jobs=-1).fit(X, y)

        with distributed.get_task_stream(client) as stream:
            there = bounded(on_dask)
    assert len({t["worker"] for t in stream.data}) == 2  # the fits ran on both workers
    assert there.best_params_ == here.best_params_
    assert np.array_equal(there.cv_results_["mean_test_score"], here.cv_results_["mean_test_score"])
    for a, b in zip(there.best_estimator_.coefs_, here.best_estimator_.coefs_):
        assert np.array_equal(a, b)


# ---- a scheduler and workers as processes; one killed ------------------------------------------


@contextmanager
def dask_processes(tmp: Path, workers: int, *, nanny: bool = False) -> Iterator[tuple[Any, Any, Any]]:
    """A `dask scheduler` and `workers` single-threaded `dask worker` processes on
    127.0.0.1; yields (address, client, start_worker). All are killed at the end."""
    distributed = pytest.importorskip("distributed")
    procs: list[subprocess.Popen] = []
    logs = []
    sf = tmp / "scheduler.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def start(*args: str) -> subprocess.Popen:
        log = open(tmp / f"proc{len(procs)}.log", "w")
        logs.append(log)
        p = subprocess.Popen([sys.executable, "-m", "dask", *args], env=env, stdout=log, stderr=subprocess.STDOUT)
        procs.append(p)
        return p

    def start_worker() -> subprocess.Popen:
        return start("worker", "--scheduler-file", str(sf), "--nthreads", "1", "--host", "127.0.0.1",
                     "--no-dashboard", "--nanny" if nanny else "--no-nanny", "--death-timeout", "60")

    c = None
    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(sf))
        deadline = time.monotonic() + 30
        while not sf.exists() or not sf.read_text().strip().endswith("}"):
            assert time.monotonic() < deadline and procs[0].poll() is None, "the scheduler did not start"
            time.sleep(0.05)
        address = json.loads(sf.read_text())["address"]
        for _ in range(workers):
            start_worker()
        c = distributed.Client(address, timeout=30)
        c.wait_for_workers(workers, timeout=60)
        yield address, c, start_worker
    finally:
        if c is not None:
            c.close()
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=30)
        for log in logs:
            log.close()


class Killer(threading.Thread):
    """Waits (bounded) for the first start event of a sweep's trial on the scheduler,
    then SIGKILLs the worker process running it."""

    def __init__(self, client: Any, skip_sweeps: set[str] = frozenset()):
        super().__init__(daemon=True)
        self.client, self.skip, self.killed = client, skip_sweeps, None

    def run(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for _, msg in self.client.get_events(sw.EVENTS):
                if msg["sweep"] not in self.skip:
                    os.kill(msg["pid"], signal.SIGKILL)
                    self.killed = msg
                    return
            time.sleep(0.01)


def long_grid(epochs: int, trials: int) -> dict:
    """Trials of about epochs / 8 seconds each (10000 images, one thread): long enough to be killed mid-trial."""
    return {"hidden": [(256, 128)], "lr": [0.05, 0.1, 0.2][:trials], "epochs": [epochs]}


def test_a_killed_worker_costs_its_attempt_only(mnist, tmp_path):
    (x, y), (xt, yt) = mnist
    train, val = (x[:10000], y[:10000]), (xt[:1000], yt[:1000])
    with dask_processes(tmp_path, 2) as (address, c, start_worker):
        killer = Killer(c)
        killer.start()
        res = bounded(mm.sweep, long_grid(5, 3), train, val, scheduler=address, retries=2)
        killer.join(5)
        victim = killer.killed
        assert victim is not None and victim["attempt"] == 1
        trials = res.trials
        assert all(t["error"] is None for t in trials), [t["error"] for t in trials]
        killed = trials[victim["trial"]]
        assert killed["attempts"] >= 2 and killed["worker"] != victim["worker"]
        # attempts are the starts the scheduler saw, trial by trial
        starts = [m for _, m in c.get_events(sw.EVENTS) if m["sweep"] == victim["sweep"]]
        assert [t["attempts"] for t in trials] == [sum(m["trial"] == t["trial"] for m in starts) for t in trials]
        assert {m["worker"] for m in starts if m["trial"] == victim["trial"]} == {victim["worker"], killed["worker"]}
        # the rerun trial is still bitwise the local fit
        model, loss, acc = local_fit(killed["params"], train, val)
        assert (killed["test_loss"], killed["test_accuracy"]) == (loss, acc)
        assert all(np.array_equal(a, b) for a, b in zip(res.model(killed["trial"]).weights, model.weights))

        # retries=0: the killed trial is recorded as such and the sweep still completes
        start_worker()
        c.wait_for_workers(2, timeout=60)
        killer = Killer(c, skip_sweeps={victim["sweep"]})
        killer.start()
        res = bounded(mm.sweep, long_grid(3, 2), train, val, scheduler=address, retries=0)
        killer.join(5)
        victim = killer.killed
        assert victim is not None
        lost = res.trials[victim["trial"]]
        assert lost["error"] == ("KilledWorker: the worker running this trial died during its only attempt "
                                 "(retries=0)")
        assert lost["attempts"] == 1 and lost["worker"] == victim["worker"] and lost["test_accuracy"] is None
        assert all(t["error"] is None for t in res.trials if t is not lost)
        assert res.best is not None and res.best is not lost


def test_a_lone_worker_restarted_by_its_nanny_gets_the_data_again(mnist, tmp_path):
    # The only worker holding the scattered data dies: the data is scattered again
    # to the worker its nanny starts, and every trial completes.
    (x, y), (xt, yt) = mnist
    train, val = (x[:10000], y[:10000]), (xt[:1000], yt[:1000])
    with dask_processes(tmp_path, 1, nanny=True) as (address, c, _):
        killer = Killer(c)
        killer.start()
        res = bounded(mm.sweep, long_grid(3, 2), train, val, scheduler=address)
        killer.join(5)
        assert killer.killed is not None
        assert all(t["error"] is None for t in res.trials), [t["error"] for t in res.trials]
        assert res.trials[killer.killed["trial"]]["attempts"] == 2
        assert res.trials[killer.killed["trial"]]["worker"] != killer.killed["worker"]


# ---- the command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_data(mnist, tmp_path_factory):
    """MNIST's first 2000 training and 500 test images, as IDX files."""
    (x, y), (xt, yt) = mnist
    d = tmp_path_factory.mktemp("data")
    for key, arr in (("train_images", x[:2000]), ("train_labels", y[:2000]),
                     ("test_images", xt[:500]), ("test_labels", yt[:500])):
        mm.write_idx(d / MNIST_FILES[key], arr)
    return d


def test_cli_sweep_writes_the_csv_and_the_best_model(small_data, tmp_path):
    pytest.importorskip("distributed")
    out, best, js = tmp_path / "sweep.csv", tmp_path / "best.npz", tmp_path / "sweep.json"
    r = subprocess.run(
        [sys.executable, "-m", "mnist_mlp", "sweep", "--data", str(small_data), "--hidden", "24", "32,16",
         "--lr", "0.05", "0.1", "--batch-size", "8", "32", "--epochs", "2", "--workers", "2",
         "--out", str(out), "--save-best", str(best), "--json", str(js)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stdout  # no bar when stdout is not a terminal
    lines = r.stdout.splitlines()
    assert sum(ln.startswith("trial ") for ln in lines) == 8
    header = next(i for i, ln in enumerate(lines) if ln.split()[:2] == ["rank", "trial"])
    cols = lines[header].split()
    assert cols == ["rank", "trial", "hidden", "lr", "batch_size", "epochs", "val_accuracy", "val_loss", "seconds",
                    "attempts", "worker"]
    rows = [dict(zip(cols, ln.split())) for ln in lines[header + 1: header + 9]]
    accuracies = [float(row["val_accuracy"]) for row in rows]
    assert [row["rank"] for row in rows] == [str(i) for i in range(1, 9)] and accuracies == sorted(accuracies, reverse=True)
    table = {row["trial"]: row for row in rows}
    # the CSV: one row per trial in the grid's order, full precision
    with out.open(encoding="utf-8") as f:
        csv_rows = list(csv.DictReader(f))
    assert [row["trial"] for row in csv_rows] == [str(i) for i in range(8)]
    assert {row["hidden"] for row in csv_rows} == {"24", "32,16"} and all(row["error"] == "" for row in csv_rows)
    for row in csv_rows:
        assert table[row["trial"]]["val_accuracy"] == f"{float(row['test_accuracy']):.5f}"
        assert table[row["trial"]]["hidden"] == row["hidden"] and table[row["trial"]]["lr"] == row["lr"]
    # the saved best model scores what the table says
    top = rows[0]
    model = mm.MLP.load(best)
    _, (xt, yt) = mm.load_mnist(small_data)
    loss, acc = model.evaluate(xt, yt)
    assert f"{acc:.5f}" == top["val_accuracy"] and f"{loss:.5f}" == top["val_loss"]
    assert acc == float(csv_rows[int(top["trial"])]["test_accuracy"])
    assert model.layer_sizes == [784, *map(int, top["hidden"].split(",")), 10]
    assert f"saved {best} (trial {top['trial']}, validation accuracy {top['val_accuracy']})" in lines
    doc = json.loads(js.read_text())
    assert doc["best"] == int(top["trial"]) and len(doc["trials"]) == 8
    assert doc["trials"][doc["best"]]["history"] == model.history


@pytest.mark.parametrize("args,message", [
    (["--hidden", "0"], "argument --hidden: must be >= 1, got 0"),
    (["--hidden", "512,"], "argument --hidden: invalid widths '512,'"),
    (["--dropout", "1"], "argument --dropout: must be in [0, 1), got 1"),
    (["--retries", "-1"], "argument --retries: must be >= 0, got -1"),
    (["--lr", "0"], "argument --lr: must be a finite number > 0"),
    (["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "--workers sizes the LocalCluster"),
])
def test_cli_sweep_usage_errors_exit_2(args, message, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["sweep", *args])
    assert e.value.code == 2 and message in capsys.readouterr().err


class FakeTTY:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, s: str) -> int:
        self.parts.append(s)
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return True


def test_progress_bar_over_trials():
    s = FakeTTY()
    bar = cli.progress_bar(3, s, unit="trial", label="best validation accuracy")
    for i in range(3):
        bar.update({"test_accuracy": 0.5 + i / 10})
    bar.close()
    text = "".join(s.parts)
    assert "0/3 trials" in text and "3/3 trials" in text
    assert "best validation accuracy 0.7000" in text
