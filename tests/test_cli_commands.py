"""Every command of `mnist-mlp`, run as a user would (a subprocess), on a small
MNIST subset; plus the progress bar."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import mnist_mlp as mm
from conftest import REPO
from mnist_mlp import cli
from mnist_mlp._progress import NoBar, TqdmBar
from mnist_mlp.idx import MNIST_FILES
from png_util import assert_png

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None
HAVE_PIL = importlib.util.find_spec("PIL") is not None


def run(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mnist_mlp", *args], capture_output=True, text=True, timeout=timeout,
        cwd=cwd or REPO, env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def small_data(mnist, tmp_path_factory):
    """MNIST's first 3000 training and 1000 test images, as IDX files."""
    (x, y), (xt, yt) = mnist
    d = tmp_path_factory.mktemp("data")
    for key, arr in (("train_images", x[:3000]), ("train_labels", y[:3000]),
                     ("test_images", xt[:1000]), ("test_labels", yt[:1000])):
        mm.write_idx(d / MNIST_FILES[key], arr)
    return d


@pytest.fixture(scope="module")
def trained(small_data, tmp_path_factory):
    """mnist-mlp train with --save, --metrics-json and (with matplotlib) --plot."""
    out = tmp_path_factory.mktemp("train")
    args = ["train", "--data", str(small_data), "--epochs", "3", "--hidden", "48", "--seed", "1",
            "--save", str(out / "m.npz"), "--metrics-json", str(out / "metrics.json")]
    if HAVE_MPL:
        args += ["--plot", str(out / "curves.png")]
    r = run(*args)
    assert r.returncode == 0, r.stderr
    return out, r


def test_train_outputs(trained):
    out, r = trained
    lines = r.stdout.splitlines()
    assert [ln.split(" - ")[0] for ln in lines[:3]] == ["Epoch 0", "Epoch 1", "Epoch 2"]
    assert all("Error on test: " in ln and "Accuracy on train: " in ln for ln in lines[:3])
    assert lines[3] == "Result:" and lines[4].startswith("Loss on test: ") and lines[4].endswith(" s")
    assert "\r" not in r.stdout  # no progress bar when stdout is not a terminal
    model = mm.MLP.load(out / "m.npz")
    assert model.layer_sizes == [784, 48, 10] and len(model.history) == 3
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["format"] == "mnist_mlp.metrics/1" and doc["version"] == mm.__version__
    assert doc["config"]["layer_sizes"] == [784, 48, 10] and doc["config"]["lr"] == 0.1
    assert doc["config"]["train_samples"] == 3000 and doc["config"]["test_samples"] == 1000
    assert doc["history"] == model.history
    assert doc["result"]["test_accuracy"] == model.history[-1]["test_accuracy"] and doc["result"]["seconds"] > 0
    assert f"Accuracy on test: {doc['result']['test_accuracy']:.5f}" in lines[4]
    if HAVE_MPL:
        assert_png(out / "curves.png", (800, 300), (1200, 500))


def test_quiet_prints_only_the_result(small_data, tmp_path):
    r = run("train", "--data", str(small_data), "--epochs", "1", "--hidden", "8", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "Result:" and len(r.stdout.splitlines()) == 2


def test_evaluate(trained, small_data):
    out, _ = trained
    r = run("evaluate", str(out / "m.npz"), "--data", str(small_data))
    assert r.returncode == 0, r.stderr
    model = mm.MLP.load(out / "m.npz")
    _, (xt, yt) = mm.load_mnist(small_data)
    loss, acc = model.evaluate(xt, yt)
    lines = r.stdout.splitlines()
    assert f"loss: {loss:.5f}" in lines and any(ln.startswith(f"accuracy: {acc:.5f} (") for ln in lines)
    header = lines.index(next(ln for ln in lines if ln.split()[:2] == ["class", "count"]))
    rows = [ln.split() for ln in lines[header + 1 :]]
    assert [int(row[0]) for row in rows] == list(range(10))
    assert [int(row[1]) for row in rows] == np.bincount(yt, minlength=10).tolist()
    pred = model.predict(xt)
    assert sum(int(row[2]) for row in rows) == int(np.sum(pred == yt))
    assert float(rows[3][4]) == pytest.approx(np.mean(pred[yt == 3] == 3), abs=1e-4)  # recall of class 3
    r = run("evaluate", str(out / "m.npz"), "--data", str(small_data), "--split", "train")
    assert r.returncode == 0 and "train set" in r.stdout and "3000 samples" in r.stdout


def test_predict_npy_and_idx(trained, small_data, tmp_path):
    out, _ = trained
    model = mm.MLP.load(out / "m.npz")
    _, (xt, _) = mm.load_mnist(small_data)
    np.save(tmp_path / "five.npy", xt[:5])  # (5, 28, 28) uint8
    np.save(tmp_path / "one.npy", xt[7].astype(np.float64) / 255)  # one image, float features
    r = run("predict", str(out / "m.npz"), str(tmp_path / "five.npy"), str(tmp_path / "one.npy"),
            str(small_data / MNIST_FILES["test_images"]))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 5 + 1 + 1000
    probs = model.predict_proba(xt[:5])
    for i in range(5):
        c = int(probs[i].argmax())
        assert lines[i] == f"{tmp_path / 'five.npy'}[{i}]: {c} (p={probs[i, c]:.4f})"
    assert lines[5].startswith(f"{tmp_path / 'one.npy'}[0]: {int(model.predict(xt[7:8])[0])} (p=")
    assert [int(ln.split(": ")[1].split()[0]) for ln in lines[6:]] == model.predict(xt).tolist()


@pytest.mark.skipif(not HAVE_PIL, reason="Pillow is not installed")
def test_predict_a_png_of_a_digit(trained, small_data, tmp_path):
    from PIL import Image

    out, _ = trained
    _, (xt, yt) = mm.load_mnist(small_data)
    model = mm.MLP.load(out / "m.npz")
    i = int(np.flatnonzero(model.predict(xt) == yt)[0])  # a digit the model gets right
    # Drawn dark on white, bigger and off-centre, like a scan or a drawing program's export.
    canvas = Image.new("L", (300, 260), 255)
    canvas.paste(Image.fromarray(255 - xt[i]).resize((200, 200), Image.Resampling.BILINEAR), (60, 20))
    canvas.save(tmp_path / "digit.png")
    r = run("predict", str(out / "m.npz"), str(tmp_path / "digit.png"), "--save-inputs", str(tmp_path / "seen"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{tmp_path / 'digit.png'}: {yt[i]} (p=")
    seen = np.asarray(Image.open(tmp_path / "seen" / "digit.28x28.png"))
    assert seen.shape == (28, 28) and np.corrcoef(seen.ravel().astype(float), xt[i].ravel().astype(float))[0, 1] > 0.9


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
def test_plot(trained, small_data, tmp_path):
    out, _ = trained
    r = run("plot", "--model", str(out / "m.npz"), "--metrics", str(out / "metrics.json"),
            "--data", str(small_data), "--out-dir", str(tmp_path / "figs"), "--max-errors", "12")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("wrote ") == 3
    assert_png(tmp_path / "figs" / "curves.png", (800, 300), (1200, 500))
    assert_png(tmp_path / "figs" / "confusion.png", (500, 500), (1200, 1200))
    assert_png(tmp_path / "figs" / "misclassified.png", (300, 200), (2000, 2000))
    wrong = _test_errors(out, small_data)
    assert f"wrote {tmp_path / 'figs' / 'misclassified.png'} ({wrong} of 1000 test digits misclassified, 12 shown)" \
        in r.stdout.splitlines()
    r = run("plot", "--metrics", str(out / "metrics.json"), "--out-dir", str(tmp_path / "only"))
    assert r.returncode == 0 and sorted(p.name for p in (tmp_path / "only").iterdir()) == ["curves.png"]


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
@pytest.mark.parametrize("fmt,magic", [("svg", b"<svg"), ("PDF", b"%PDF")])
def test_plot_format_writes_every_figure_in_that_format(trained, small_data, tmp_path, fmt, magic):
    out, _ = trained
    r = run("plot", "--model", str(out / "m.npz"), "--data", str(small_data), "--out-dir", str(tmp_path),
            "--format", fmt)
    assert r.returncode == 0, r.stderr
    ext = fmt.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"confusion.{ext}", f"curves.{ext}", f"misclassified.{ext}"]
    for p in tmp_path.iterdir():
        assert magic in p.read_bytes()[:4096], p


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
def test_plot_unknown_format_fails_before_any_work(trained, tmp_path):
    out, _ = trained
    r = run("plot", "--model", str(out / "m.npz"), "--out-dir", str(tmp_path / "figs"), "--format", "xyz")
    assert r.returncode == 1 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("mnist-mlp: error: --format xyz: matplotlib cannot write .xyz figures; use one of ")
    assert not (tmp_path / "figs").exists()


def _test_errors(out: Path, data: Path) -> int:
    """How many test digits of ``data`` the trained model gets wrong."""
    _, (xt, yt) = mm.load_mnist(data)
    return int(np.sum(mm.MLP.load(out / "m.npz").predict(xt) != yt))


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
def test_plot_max_errors_0_skips_the_misclassified_figure(trained, small_data, tmp_path):
    out, _ = trained
    r = run("plot", "--model", str(out / "m.npz"), "--data", str(small_data), "--out-dir", str(tmp_path),
            "--max-errors", "0")
    assert r.returncode == 0, r.stderr
    wrong = _test_errors(out, small_data)
    assert wrong > 0
    assert f"skipped {tmp_path / 'misclassified.png'} (--max-errors 0): {wrong} of 1000 test digits misclassified" \
        in r.stdout.splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "curves.png"]


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
def test_plot_of_a_test_set_without_errors(trained, small_data, tmp_path):
    out, _ = trained
    model = mm.MLP.load(out / "m.npz")
    (x, y), (xt, yt) = mm.load_mnist(small_data)
    right = np.flatnonzero(model.predict(xt) == yt)[:60]
    data = tmp_path / "data"
    data.mkdir()
    for key, arr in (("train_images", x), ("train_labels", y), ("test_images", xt[right]), ("test_labels", yt[right])):
        mm.write_idx(data / MNIST_FILES[key], arr)
    r = run("plot", "--model", str(out / "m.npz"), "--data", str(data), "--out-dir", str(tmp_path / "figs"))
    assert r.returncode == 0, r.stderr
    assert f"wrote {tmp_path / 'figs' / 'misclassified.png'} (0 of 60 test digits misclassified, 0 shown)" \
        in r.stdout.splitlines()
    assert_png(tmp_path / "figs" / "misclassified.png", (400, 100), (1200, 400))


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
@pytest.mark.parametrize("ext, magic", [("jpg", b"\xff\xd8"), ("pdf", b"%PDF")])
def test_train_plot_writes_the_format_of_its_extension(ext, magic, small_data, tmp_path):
    curves = tmp_path / f"curves.{ext}"
    r = run("train", "--data", str(small_data), "--epochs", "1", "--hidden", "8", "--quiet", "--plot", str(curves))
    assert r.returncode == 0, r.stderr
    assert f"wrote {curves}" in r.stdout.splitlines()
    assert curves.read_bytes().startswith(magic)


@pytest.mark.skipif(not HAVE_MPL, reason="matplotlib is not installed")
def test_train_plot_with_an_unknown_extension_is_one_clear_line(small_data, tmp_path):
    curves = tmp_path / "curves.xyz"
    r = run("train", "--data", str(small_data), "--epochs", "1", "--hidden", "8", "--quiet", "--plot", str(curves))
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    assert str(curves) in line and "cannot write .xyz" in line and ".png" in line and ".pdf" in line
    assert line.startswith("mnist-mlp: error: --plot: ")
    assert not curves.exists() and r.stdout == ""  # found before the data was read: no training at all


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "plot"])
def test_every_command_has_help_with_examples(command, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"mnist-mlp {command}" in out


@pytest.mark.parametrize(
    "args",
    [["plot"], ["predict", "m.npz"], ["evaluate"], ["evaluate", "m.npz", "--split", "both"], ["frobnicate"], []],
)
def test_usage_errors_exit_2(args):
    r = run(*args)
    assert r.returncode == 2 and "usage: mnist-mlp" in r.stderr, (r.stdout, r.stderr)


def test_failures_are_one_line_and_debug_shows_the_traceback(trained, tmp_path):
    out, _ = trained
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 100), np.float32))
    for args, message in [
        (["evaluate", str(tmp_path / "missing.npz")], "missing.npz"),
        (["predict", str(out / "m.npz"), str(bad)], "does not hold rows of 784 values"),
        (["plot", "--metrics", str(bad)], "bad.npy: not valid JSON"),
    ]:
        r = run(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.startswith("mnist-mlp: error: ") and message in r.stderr, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = run("--debug", "predict", str(out / "m.npz"), str(bad))
    assert r.returncode == 1 and "Traceback" in r.stderr
    r = run("predict", str(out / "m.npz"), str(bad), "--debug")
    assert r.returncode == 1 and "Traceback" in r.stderr


def test_dataset_without_the_datasets_module(monkeypatch, capsys):
    real = cli.importlib.util.find_spec
    monkeypatch.setattr(cli.importlib.util, "find_spec",
                        lambda name, *a: None if name == "mnist_mlp.datasets" else real(name, *a))
    assert cli.main(["train", "--dataset", "fashion-mnist", "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert "no mnist_mlp.datasets module" in err and len(err.strip().splitlines()) == 1


# ---- the progress bar ---------------------------------------------------------------


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_no_bar_unless_a_terminal():
    s = io.StringIO()
    bar = cli.progress_bar(3, s)
    bar.write("Epoch 0 - x")
    bar.update({"epoch": 0})
    bar.close()
    assert s.getvalue() == "Epoch 0 - x\n"
    assert type(cli.progress_bar(3, FakeTTY(), enabled=False)) is NoBar


def test_tqdm_bar_on_a_terminal():
    s = FakeTTY()
    bar = cli.progress_bar(2, s)
    assert type(bar) is TqdmBar
    bar.write("Epoch 0 - line")
    bar.batches(250, 500)  # half-way through the first epoch
    bar.update({"epoch": 0, "test_accuracy": 0.5})
    bar.close()
    assert "Epoch 0 - line\n" in s.getvalue() and "1.0/2 epochs" in s.getvalue()
    assert "test accuracy 0.5000" in s.getvalue()


@pytest.mark.skipif(importlib.util.find_spec("mnist_mlp.datasets") is None, reason="no mnist_mlp.datasets")
def test_train_with_dataset_name(small_data, trained):
    r = run("train", "--dataset", "mnist", "--data", str(small_data), "--epochs", "1", "--hidden", "8")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == "Result:"
    r = run("evaluate", "--dataset", "no-such-set", str(trained[0] / "m.npz"))
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "no-such-set" in r.stderr


def test_predict_with_the_arguments_swapped_names_the_model_file(trained, tmp_path):
    # `predict seven.png model.npz`: the picture is read as the model. The message
    # says what a model file is and never suggests unpickling (issue: new users).
    out, _ = trained
    picture = tmp_path / "seven.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    r = run("predict", str(picture), str(out / "m.npz"))
    assert r.returncode == 1
    assert "not an mnist_mlp model file" in r.stderr and "pickle" not in r.stderr.lower()


@pytest.mark.parametrize(
    "args, flag",
    [(["train", "--epochs", "0"], "--epochs"), (["train", "--batch-size", "-3"], "--batch-size"),
     (["train", "--lr", "0"], "--lr"), (["train", "--hidden", "0"], "--hidden"),
     (["train", "--threads", "0"], "--threads"), (["plot", "--max-errors", "-1"], "--max-errors")],
)
def test_range_errors_are_usage_errors_at_parse_time(args, flag, tmp_path):
    # Exit 2 before any data is looked for: --data names a folder that does not exist.
    r = run(*args, "--data", str(tmp_path / "nowhere")) if args[0] == "train" else run(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert flag in r.stderr and "must be" in r.stderr
