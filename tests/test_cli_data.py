"""Finding, naming and downloading the data, as a new user meets it: `python -m
mnist_mlp ...` and `python examples/seed_notebook.py` in a subprocess. Downloads
come from a local HTTP server (127.0.0.1, started and stopped here): a small
launcher registers a dataset whose mirrors are on it, then runs the command
line exactly as `python -m mnist_mlp` does."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mnist_mlp as mm
from conftest import REPO
from test_datasets import NAMES, Server, make_set, md5_of

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None

LAUNCHER = '''\
import dataclasses, os, runpy, socket, sys
from mnist_mlp import datasets as ds

# The dataset "fake": MNIST's file names, mirrors and MD5s from the environment.
ds._RETRY_BACKOFF = 0.0
base = ds.DATASETS["mnist"]
md5s = os.environ["FAKE_MD5S"].split()
files = {r: ds.DataFile(f.name, (ds.Checksum("md5", m),)) for (r, f), m in zip(base.files.items(), md5s)}
ds.DATASETS["fake"] = dataclasses.replace(
    base, name="fake", files=files, mirrors=tuple(os.environ["FAKE_MIRRORS"].split()), repo_data=False)

# Names under .invalid do not resolve (as offline), without asking a DNS server.
real = socket.getaddrinfo
def getaddrinfo(host, *args, **kwargs):
    if str(host).endswith(".invalid"):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return real(host, *args, **kwargs)
socket.getaddrinfo = getaddrinfo

runpy.run_module("mnist_mlp", run_name="__main__", alter_sys=True)
'''


def environment(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # The package these tests imported: the source tree in a checkout run, site-packages after pip install
    # (a source tree without the built _core must not shadow the installed package).
    env.setdefault("PYTHONPATH", str(Path(mm.__file__).resolve().parent.parent))
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=env or environment())


def cli(*args: str, cwd: Path, **env: str | None) -> subprocess.CompletedProcess:
    return run("-m", "mnist_mlp", *args, cwd=cwd, env=environment(**env))


def one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mnist-mlp: error: "), r.stderr
    return lines[0]


@pytest.fixture
def data(tmp_path) -> Path:
    """A small MNIST-format set (24 training, 7 test images) in data/."""
    make_set(tmp_path / "data", n_train=24, n_test=7)
    return tmp_path / "data"


@pytest.fixture
def model(tmp_path) -> Path:
    path = tmp_path / "m.npz"
    mm.MLP([784, 8, 10], seed=0).save(path)
    return path


@pytest.fixture
def server(tmp_path):
    (tmp_path / "www").mkdir()
    srv = Server(tmp_path / "www")
    yield srv
    srv.close()


def launch(tmp_path: Path, mirrors: list[str], md5s: list[str], *args: str, **env: str | None) -> subprocess.CompletedProcess:
    script = tmp_path / "launch_mnist_mlp.py"
    script.write_text(LAUNCHER)
    return run(str(script), *args, cwd=tmp_path,
               env=environment(FAKE_MIRRORS=" ".join(mirrors), FAKE_MD5S=" ".join(md5s), **env))


# --- 12: evaluate and plot --model need only the test files ------------------------------


def test_evaluate_needs_only_the_files_of_its_split(tmp_path, data, model):
    # `evaluate --data DIR` on a folder with only the t10k files asked for the training files.
    t10k = tmp_path / "t10k"
    t10k.mkdir()
    for n in NAMES[2:]:
        shutil.copy(data / n, t10k / n)
    xt, yt = mm.load_mnist(data, split="test")
    loss, acc = mm.MLP.load(model).evaluate(xt, yt)
    for extra in ([], ["--dataset", "MNIST"]):
        r = cli("evaluate", str(model), "--data", str(t10k), *extra, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert f"loss: {loss:.5f}" in r.stdout and f"accuracy: {acc:.5f}" in r.stdout
        assert ", 7 samples" in r.stdout
    # --split train needs the training files, and says which and where.
    line = one_line_error(cli("evaluate", str(model), "--data", str(t10k), "--split", "train", cwd=tmp_path))
    assert f"MNIST not found in {t10k} (holds none of them): expected train-images-idx3-ubyte.gz, " \
           "train-labels-idx1-ubyte.gz (.gz or uncompressed)" in line
    assert "--dataset mnist --data DIR" in line and "root=" not in line
    # ... and only those.
    train_only = tmp_path / "train"
    train_only.mkdir()
    for n in NAMES[:2]:
        shutil.copy(data / n, train_only / n)
    r = cli("evaluate", str(model), "--data", str(train_only), "--split", "train", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "data: train set of mnist" in r.stdout and ", 24 samples" in r.stdout


@pytest.mark.skipif(not HAVE_MPL, reason="needs matplotlib")
def test_plot_model_needs_only_the_test_files(tmp_path, data, model):
    for n in NAMES[:2]:
        (data / n).unlink()
    r = cli("plot", "--model", str(model), "--data", str(data), "--out-dir", str(tmp_path / "figs"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "figs" / "confusion.png").stat().st_size > 0


# --- 14: dataset names, download failures ---------------------------------------------------


def test_dataset_names_in_any_case(tmp_path, data):
    for name, canonical in (("MNIST", "mnist"), ("Fashion_MNIST", "fashion-mnist")):
        r = cli("train", "--dataset", name, "--data", str(data), "--epochs", "1", "--hidden", "8",
                "--metrics-json", str(tmp_path / "m.json"), cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert json.loads((tmp_path / "m.json").read_text())["config"]["dataset"] == canonical
    line = one_line_error(cli("train", "--dataset", "fashon-mnist", "--data", str(data), cwd=tmp_path))
    assert "unknown dataset 'fashon-mnist' (did you mean 'fashion-mnist'?)" in line
    assert all(n in line for n in mm.datasets.names())


def test_download_failure_on_the_command_line(tmp_path, server, model):
    make_set(server.folder / "good")
    md5s = [md5_of(server.folder / "good" / n) for n in NAMES]
    cache = tmp_path / "cache"  # $MNIST_MLP_DATA: does not exist yet
    mirrors = ["http://mirror.invalid/mnist/", server.url + "busy/"]
    r = launch(tmp_path, mirrors, md5s, "train", "--dataset", "Fake", "--epochs", "1", MNIST_MLP_DATA=str(cache))
    assert r.returncode == 1, r.stderr
    err = r.stderr
    assert err.startswith("mnist-mlp: error: could not download fake: every mirror failed for ") and "Traceback" not in err
    # The name that does not resolve: one line for its three attempts (it was three lines).
    dns = [ln for ln in err.splitlines() if ln.startswith("  http://mirror.invalid/")]
    assert dns == [f"  http://mirror.invalid/mnist/{NAMES[0]}: gaierror: [Errno {socket.EAI_NONAME}] "
                   "Name or service not known (3 attempts)"]
    assert sum(ln.endswith("HTTP 503 Service Unavailable (3 attempts)") for ln in err.splitlines()) == 4
    # The command line's option, not the Python argument.
    assert f"in {cache / 'fake'}, or in a folder of your choice and pass --data DIR:" in err
    assert "root=" not in err
    # The folders the download created are gone.
    assert not cache.exists()
    # With --data DIR the files are to go there; a folder that was there is kept.
    (tmp_path / "mine").mkdir()
    r = launch(tmp_path, mirrors, md5s, "evaluate", str(model), "--dataset", "fake", "--data", str(tmp_path / "mine"))
    assert r.returncode == 1 and f"in {tmp_path / 'mine'}:" in r.stderr and "--data" not in r.stderr.split("Mirrors")[0]
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


# --- 15: data not found, the seed notebook ---------------------------------------------------


def installed_copy(tmp_path: Path) -> Path:
    """The package as pip installs it: in <venv>/lib/python3.11/site-packages,
    far from any checkout. Returns the site-packages folder."""
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    shutil.copytree(Path(mm.__file__).parent, site / "mnist_mlp", ignore=shutil.ignore_patterns("__pycache__"))
    return site


def test_data_not_found_outside_a_checkout_says_where_it_looked(tmp_path, model):
    site = installed_copy(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    env = dict(PYTHONPATH=str(site), MNIST_MLP_DATA=None, XDG_CACHE_HOME=str(tmp_path / "xdg"))
    line = one_line_error(cli("train", "--epochs", "1", cwd=work, **env))
    # It read "... in data, <venv>/lib/python3.11/data".
    searched = re.search(r"; searched (.*?); \$MNIST_MLP_DATA is not set\. ", line)
    assert searched and searched.group(1) == f"{work / 'data'} (./data; does not exist)", line
    assert "python3.11" not in line and str(REPO) not in line
    assert "pass --data DIR with the folder that holds them" in line
    assert f"pass --dataset mnist, which downloads them into {tmp_path / 'xdg' / 'mnist_mlp' / 'mnist'}" in line
    # $MNIST_MLP_DATA, when set, is named and searched first.
    line = one_line_error(cli("evaluate", str(model), cwd=work, **{**env, "MNIST_MLP_DATA": str(tmp_path / "env")}))
    assert (f"searched {tmp_path / 'env'} ($MNIST_MLP_DATA; does not exist), {work / 'data'} (./data; does not exist)."
            in line) and "is not set" not in line
    assert "expected t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (.gz or uncompressed)" in line


def test_seed_notebook_finds_the_repo_data_from_another_folder(mnist, tmp_path):
    # `python repo/examples/seed_notebook.py` failed unless run from the repo: with
    # mnist_mlp installed (not run from this checkout) only ./data was looked in.
    site = installed_copy(tmp_path)
    r = run(str(REPO / "examples" / "seed_notebook.py"), "0", cwd=tmp_path,
            env=environment(MNIST_MLP_DATA=None, PYTHONPATH=str(site)))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "Result:" and 0.0 <= float(lines[-1]) <= 1.0


def test_seed_notebook_honours_MNIST_MLP_DATA(tmp_path, data):
    r = run(str(REPO / "examples" / "seed_notebook.py"), "1", cwd=tmp_path, env=environment(MNIST_MLP_DATA=str(data)))
    assert r.returncode == 0, r.stderr
    acc = float(r.stdout.splitlines()[-1])
    assert r.stdout.startswith("Epoch 0 - ") and abs(acc * 7 - round(acc * 7)) < 1e-9  # of data/'s 7 test images


def test_seed_notebook_without_data_says_what_to_do(tmp_path):
    repo = tmp_path / "repo"
    (repo / "examples").mkdir(parents=True)
    shutil.copy(REPO / "examples" / "seed_notebook.py", repo / "examples")
    env = environment(MNIST_MLP_DATA=None, PYTHONPATH=str(installed_copy(tmp_path)))
    r = run(str(repo / "examples" / "seed_notebook.py"), "0", cwd=tmp_path, env=env)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith(f"seed_notebook.py: MNIST not found in {repo / 'data'} (does not exist)")
    assert "MNIST_MLP_DATA" in r.stderr and f"root={str(repo / 'data')!r}" in r.stderr
    r = run(str(repo / "examples" / "seed_notebook.py"), "0", cwd=tmp_path,
            env={**env, "MNIST_MLP_DATA": str(tmp_path / "elsewhere")})
    assert r.returncode == 1 and f"MNIST not found in {tmp_path / 'elsewhere'} (does not exist)" in r.stderr
    assert "from $MNIST_MLP_DATA" in r.stderr


# --- 16: metrics.json records the folder read -------------------------------------------------


def train_metrics(tmp_path: Path, *args: str, cwd: Path, **env: str | None) -> dict:
    out = tmp_path / "metrics.json"
    r = cli("train", "--epochs", "1", "--hidden", "8", "--metrics-json", str(out), *args, cwd=cwd, **env)
    assert r.returncode == 0, r.stderr
    return json.loads(out.read_text())["config"]


def test_metrics_record_the_folder_the_data_came_from(tmp_path, data):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # From $MNIST_MLP_DATA (it recorded null), from ./data, from a relative --data, with --dataset.
    assert train_metrics(tmp_path, cwd=elsewhere, MNIST_MLP_DATA=str(data))["data"] == str(data)
    assert train_metrics(tmp_path, cwd=tmp_path, MNIST_MLP_DATA=None)["data"] == str(data)
    config = train_metrics(tmp_path, "--dataset", "mnist", "--data", "../data", cwd=elsewhere)
    assert config["data"] == str(data) and config["dataset"] == "mnist"


def test_metrics_record_the_cache_folder_a_download_went_to(tmp_path, server):
    arrays = make_set(server.folder / "good", n_train=16, n_test=5)
    md5s = [md5_of(server.folder / "good" / n) for n in NAMES]
    cache = tmp_path / "cache"
    out = tmp_path / "metrics.json"
    r = launch(tmp_path, [server.url + "good/"], md5s, "train", "--dataset", "fake", "--epochs", "1", "--hidden", "8",
               "--metrics-json", str(out), MNIST_MLP_DATA=str(cache))
    assert r.returncode == 0, r.stderr
    config = json.loads(out.read_text())["config"]
    assert config["data"] == str(cache / "fake") and config["dataset"] == "fake"
    assert config["train_samples"] == len(arrays[0]) and config["test_samples"] == len(arrays[2])
    assert sorted(p.name for p in (cache / "fake").iterdir()) == sorted(NAMES)
    np.testing.assert_array_equal(mm.load_mnist(cache / "fake", split="test")[1], arrays[3])
