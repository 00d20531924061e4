"""What a new user runs into (issue 16), tested as the user meets it: the API
called directly, the command line through a subprocess. Input values
(unscaled pixels, bool and integer arrays, a single image), output paths
checked before any work, --save-inputs names, Ctrl-C, --checkpoint-every and
--resume, predict going on past a bad input, the summary's wording, and
fit(verbose=True)'s bar."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import mnist_mlp as mm
from conftest import REPO
from mnist_mlp.idx import MNIST_FILES


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mnist_mlp", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def small(mnist, tmp_path_factory):
    """MNIST's first 2000 training and 500 test images as IDX files, and the arrays."""
    (x, y), (xt, yt) = mnist
    d = tmp_path_factory.mktemp("data")
    for key, arr in (("train_images", x[:2000]), ("train_labels", y[:2000]),
                     ("test_images", xt[:500]), ("test_labels", yt[:500])):
        mm.write_idx(d / MNIST_FILES[key], arr)
    return d, (x[:2000], y[:2000]), (xt[:500], yt[:500])


@pytest.fixture(scope="module")
def model_file(small, tmp_path_factory):
    _, (x, y), _ = small
    m = mm.MLP([784, 32, 10], seed=0)
    m.fit(x, y, epochs=2)
    path = tmp_path_factory.mktemp("model") / "m.npz"
    m.save(path)
    return path


# ---------------------------------------------------------------------------
# 1. Unscaled float pixels


def test_fit_on_unscaled_float_pixels_warns_and_says_what_to_do(small):
    _, (x, y), _ = small
    m = mm.MLP([784, 16, 10], seed=0)
    with pytest.warns(mm.UnscaledInputWarning, match=r"Divide by 255 \(x / 255.0\), or pass uint8 pixels"):
        m.fit(x.astype(np.float32), y, epochs=1)
    with pytest.warns(mm.UnscaledInputWarning):
        m.predict(x[:10].astype(np.float64))


def test_scaled_floats_and_small_integer_features_do_not_warn(small):
    _, (x, y), _ = small
    m = mm.MLP([784, 16, 10], seed=0)
    m.fit(x.astype(np.float32) / 255, y, epochs=1)  # filterwarnings=error: any warning fails the test
    digits_like = np.random.default_rng(0).integers(0, 17, (200, 784)).astype(np.float64)  # sklearn's digits: 0..16
    m.predict(digits_like)
    m.predict(np.random.default_rng(1).uniform(0, 255, (50, 784)))  # large, but not integer-valued


@pytest.mark.filterwarnings("ignore:Stochastic Optimizer")  # max_iter=1 does not converge
def test_estimator_on_unscaled_pixels_warns(small):
    _, (x, y), _ = small
    clf = mm.MLPClassifier(hidden_layer_sizes=(8,), max_iter=1, random_state=0)
    with pytest.warns(mm.UnscaledInputWarning):
        clf.fit(x[:300].astype(np.float64), y[:300])


def test_divergence_error_mentions_unscaled_features(small):
    _, (x, y), _ = small
    m = mm.MLP([784, 16, 10], seed=0)
    with pytest.raises(FloatingPointError, match="unscaled: pixels 0..255 must be divided by 255"):
        m.fit(x.astype(np.float32) / 255, y, epochs=1, lr=1e12)


def test_cli_predict_warns_about_an_unscaled_npy_naming_it(model_file, small, tmp_path):
    _, _, (xt, _) = small
    path = tmp_path / "raw.npy"
    np.save(path, xt[:3].astype(np.float32))
    r = run("predict", str(model_file), str(path))
    assert r.returncode == 0, r.stderr
    assert r.stderr.startswith(f"mnist-mlp: warning: {path} looks like unscaled pixels"), r.stderr
    assert len(r.stderr.splitlines()) == 1 and len(r.stdout.splitlines()) == 3


# ---------------------------------------------------------------------------
# 2. Bool and integer input: one rule for the API and the CLI


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.int64, np.uint16, np.uint64])
def test_integers_within_0_255_are_pixels_like_uint8(small, dtype):
    _, _, (xt, _) = small
    m = mm.MLP([784, 16, 10], seed=0)
    want = m.predict_proba(xt[:20])
    np.testing.assert_array_equal(m.predict_proba(xt[:20].astype(dtype)), want)  # the same pixels: bitwise


def test_a_python_list_of_ints_is_pixels(small):
    _, _, (xt, _) = small
    m = mm.MLP([784, 16, 10], seed=0)
    np.testing.assert_array_equal(m.predict(xt[:3].reshape(3, -1).tolist()), m.predict(xt[:3]))


def test_float16_is_float32(small):
    _, _, (xt, _) = small
    m = mm.MLP([784, 16, 10], seed=0)
    x16 = (xt[:5] / 255).astype(np.float16)
    np.testing.assert_array_equal(m.predict_proba(x16), m.predict_proba(x16.astype(np.float32)))


def test_bool_and_out_of_range_integers_are_refused_saying_what_to_do():
    m = mm.MLP([4, 3, 2], seed=0)
    with pytest.raises(TypeError, match=r"x.astype\(np.uint8\) \* 255 for black-and-white pixels"):
        m.predict(np.ones((2, 4), bool))
    with pytest.raises(ValueError, match=r"integer values are pixels 0..255 .* reach \[-1, 3\]"):
        m.predict(np.array([[0, 1, 2, 3], [-1, 0, 0, 0]]))


def test_cli_bool_npy_is_refused_as_in_the_api_and_int64_is_pixels(model_file, small, tmp_path):
    _, _, (xt, _) = small
    np.save(tmp_path / "b.npy", xt[:2] > 0)
    r = run("predict", str(model_file), str(tmp_path / "b.npy"))
    assert r.returncode == 1 and "a bool array is neither pixels nor features" in r.stderr, r.stderr
    assert f"np.load({str(tmp_path / 'b.npy')!r}).astype(np.uint8) * 255" in r.stderr  # advice that runs
    np.save(tmp_path / "i.npy", xt[:2].astype(np.int64))
    np.save(tmp_path / "u.npy", xt[:2])
    r = run("predict", str(model_file), str(tmp_path / "i.npy"), str(tmp_path / "u.npy"))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [ln.split(": ", 1)[1] for ln in lines[:2]] == [ln.split(": ", 1)[1] for ln in lines[2:]]


# ---------------------------------------------------------------------------
# 3. A single image


def test_predict_reads_a_single_image_as_one_sample(small):
    _, _, (xt, _) = small
    m = mm.MLP([784, 16, 10], seed=0)
    want = m.predict_proba(xt[:1])
    for img in (xt[0], xt[0].ravel(), xt[0][None]):
        got = m.predict_proba(img)
        assert got.shape == (1, 10)
        np.testing.assert_array_equal(got, want)
    assert m.predict(xt[0]).shape == (1,)


def test_a_model_with_28_features_still_reads_28x28_as_28_samples():
    m = mm.MLP([28, 4, 2], seed=0)
    assert m.predict_proba(np.zeros((28, 28), np.float32)).shape == (28, 2)


@pytest.mark.parametrize("shape", [(784, 1), (2, 392)])
def test_shapes_that_are_not_one_image_are_not_read_as_one(shape):
    m = mm.MLP([784, 4, 2], seed=0)
    with pytest.raises(ValueError, match="features per sample") as e:
        m.predict(np.zeros(shape, np.float32))
    assert "reshape(1, 784)" not in str(e.value)


def test_big_endian_floats_are_floats():
    m = mm.MLP([784, 4, 2], seed=0)
    x = np.random.default_rng(0).random((3, 784)).astype(">f4")
    np.testing.assert_array_equal(m.predict_proba(x), m.predict_proba(x.astype(np.float32)))


def test_fit_on_a_single_image_says_how_to_pass_one(small):
    _, _, (xt, yt) = small
    m = mm.MLP([784, 16, 10], seed=0)
    with pytest.raises(ValueError, match=r"for a single sample of shape \(28, 28\) use x.reshape\(1, 784\)"):
        m.evaluate(xt[0].astype(np.float32) / 255, yt[:1])


# ---------------------------------------------------------------------------
# 6. Output paths are checked before the data is loaded


@pytest.mark.parametrize("flag", ["--save", "--metrics-json"])
def test_train_bad_output_paths_fail_before_loading_data(tmp_path, flag):
    missing = tmp_path / "no" / "such" / "out.file"
    t0 = time.perf_counter()
    # --data names a folder that does not exist: reaching the data would be a different error.
    r = run("train", "--data", str(tmp_path / "nodata"), flag, str(missing))
    assert r.returncode == 1
    assert r.stderr.strip() == f"mnist-mlp: error: {flag}: {missing}: the folder {missing.parent} does not exist"
    assert ".part" not in r.stderr
    (tmp_path / "adir").mkdir()
    r = run("train", "--data", str(tmp_path / "nodata"), flag, str(tmp_path / "adir"))
    assert r.returncode == 1
    assert r.stderr.strip() == f"mnist-mlp: error: {flag}: {tmp_path / 'adir'}: is a directory; give a file name to write"
    assert time.perf_counter() - t0 < 60


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root may write into read-only folders")
def test_train_read_only_folder_fails_before_training(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    r = run("train", "--data", str(tmp_path / "nodata"), "--save", str(ro / "m.npz"))
    assert r.returncode == 1 and f"--save: {ro / 'm.npz'}: the folder {ro} is not writable" in r.stderr


def test_train_read_only_folder_message(tmp_path, monkeypatch, capsys):
    """The same check where root would pass os.access: the folder reported as not writable."""
    from mnist_mlp import _files, cli

    monkeypatch.setattr(_files.os, "access", lambda path, mode: False)
    assert cli.main(["train", "--data", str(tmp_path / "nodata"), "--metrics-json", str(tmp_path / "m.json")]) == 1
    assert capsys.readouterr().err.strip() == (
        f"mnist-mlp: error: --metrics-json: {tmp_path / 'm.json'}: the folder {tmp_path} is not writable")


def test_train_two_outputs_on_one_file_is_an_error(tmp_path):
    r = run("train", "--data", str(tmp_path), "--save", str(tmp_path / "x"), "--metrics-json", str(tmp_path / "x"))
    assert r.returncode == 1 and "--save and --metrics-json name the same file" in r.stderr


def test_sweep_bad_output_path_fails_before_the_cluster(tmp_path):
    pytest.importorskip("distributed")
    r = run("sweep", "--data", str(tmp_path / "nodata"), "--out", str(tmp_path / "no" / "s.csv"))
    assert r.returncode == 1 and r.stderr.startswith("mnist-mlp: error: --out: "), r.stderr


# ---------------------------------------------------------------------------
# 7. --save-inputs gives every input its own file


def test_save_inputs_keeps_inputs_with_the_same_stem_apart(model_file, small, tmp_path):
    pil = pytest.importorskip("PIL.Image")
    _, _, (xt, _) = small
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    inputs = [tmp_path / "a" / "d.png", tmp_path / "b" / "d.png", tmp_path / "seven.gif", tmp_path / "seven.bmp",
              tmp_path / "one.png"]
    for i, p in enumerate(inputs):
        pil.fromarray(255 - xt[i]).save(p)  # dark ink on white, as a scan would be
    out = tmp_path / "seen"
    r = run("predict", str(model_file), *map(str, inputs), "--save-inputs", str(out))
    assert r.returncode == 0, r.stderr
    written = sorted(p.name for p in out.iterdir())
    assert written == ["d.png-2.28x28.png", "d.png.28x28.png", "one.28x28.png", "seven.bmp.28x28.png",
                       "seven.gif.28x28.png"]
    lines = r.stdout.splitlines()
    assert lines[0].endswith(f"seen as {out / 'd.png.28x28.png'}") and lines[1].endswith("d.png-2.28x28.png")
    # each file is its own input's conversion
    for line, p in zip(lines, inputs):
        saved = Path(line.rsplit("seen as ", 1)[1])
        np.testing.assert_array_equal(np.asarray(pil.open(saved)), mm.images.load_image(p))


# ---------------------------------------------------------------------------
# 10. Ctrl-C keeps the run; --checkpoint-every; --resume


def _train_until(args: list[str], line_prefix: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs train, sends SIGINT once stdout shows a line starting with line_prefix."""
    p = subprocess.Popen([sys.executable, "-m", "mnist_mlp", "train", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO)
    seen = []
    deadline = time.monotonic() + timeout
    assert p.stdout is not None
    for line in p.stdout:
        seen.append(line)
        if line.startswith(line_prefix):
            p.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(seen)
    out, err = p.communicate(timeout=timeout)
    return subprocess.CompletedProcess(p.args, p.returncode, "".join(seen) + out, err)


def test_ctrl_c_saves_the_last_completed_epoch(small, tmp_path):
    data = small[0]
    r = _train_until(["--data", str(data), "--hidden", "64", "--epochs", "500", "--save", str(tmp_path / "m.npz"),
                      "--metrics-json", str(tmp_path / "m.json")], "Epoch 2 -")
    assert r.returncode == 130, r.stderr
    m = mm.MLP.load(tmp_path / "m.npz")
    doc = json.loads((tmp_path / "m.json").read_text())
    n = len(m.history)
    assert n >= 3 and doc["history"] == m.history and doc["result"]["status"] == "interrupted"
    assert doc["result"]["epochs"] == n and doc["result"]["test_accuracy"] == m.history[-1]["test_accuracy"]
    assert f"interrupted during epoch {n} (of 500, numbered from 0)" in r.stderr
    assert f"saved {tmp_path / 'm.npz'} (the {n} completed epochs)" in r.stderr
    assert f"wrote {tmp_path / 'm.json'} (the {n} completed epochs)" in r.stderr
    # the weights are those of the last completed epoch: its recorded test accuracy is theirs
    _, _, (xt, yt) = small
    assert m.evaluate(xt, yt)[1] == m.history[-1]["test_accuracy"]


def test_ctrl_c_without_outputs_just_stops(small):
    r = _train_until(["--data", str(small[0]), "--hidden", "16", "--epochs", "500"], "Epoch 0 -")
    assert r.returncode == 130 and "interrupted during epoch" in r.stderr and "saved" not in r.stderr


@pytest.mark.parametrize("shuffle", [False, True])
def test_resume_continues_exactly(small, tmp_path, shuffle):
    data = str(small[0])
    extra = ["--shuffle"] if shuffle else []
    common = ["--data", data, "--hidden", "32", "--seed", "3", *extra]
    r = run("train", *common, "--epochs", "3", "--save", str(tmp_path / "straight.npz"))
    assert r.returncode == 0, r.stderr
    r = run("train", *common, "--epochs", "2", "--save", str(tmp_path / "part.npz"))
    assert r.returncode == 0, r.stderr
    r = run("train", "--data", data, *extra, "--epochs", "3", "--resume", str(tmp_path / "part.npz"),
            "--save", str(tmp_path / "resumed.npz"), "--metrics-json", str(tmp_path / "resumed.json"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("Epoch 2 - ")  # numbering continues
    a, b = mm.MLP.load(tmp_path / "straight.npz"), mm.MLP.load(tmp_path / "resumed.npz")
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(wa, wb)  # bitwise: the same arithmetic, in the same order
    assert [h["epoch"] for h in b.history] == [0, 1, 2]
    assert [h["test_accuracy"] for h in b.history] == [h["test_accuracy"] for h in a.history]
    doc = json.loads((tmp_path / "resumed.json").read_text())
    assert doc["config"]["resumed_from"] == str(tmp_path / "part.npz") and len(doc["history"]) == 3
    assert doc["config"]["seed"] is None  # the file's state, not a seed


def test_metrics_record_the_default_seed(small, tmp_path):
    r = run("train", "--data", str(small[0]), "--hidden", "8", "--epochs", "1", "--metrics-json", str(tmp_path / "m.json"))
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "m.json").read_text())["config"]["seed"] == 0


def test_resume_refuses_conflicting_options_and_finished_runs(model_file, small, tmp_path):
    data = str(small[0])
    r = run("train", "--data", data, "--resume", str(model_file), "--hidden", "64")
    assert r.returncode == 2 and "differs from the resumed model's hidden layers 32" in r.stderr
    r = run("train", "--data", data, "--resume", str(model_file), "--seed", "1")
    assert r.returncode == 2 and "--seed has no effect with --resume" in r.stderr
    r = run("train", "--data", data, "--resume", str(model_file), "--epochs", "2")
    assert r.returncode == 1 and "already been trained for 2 epochs; --epochs is the total" in r.stderr
    r = run("train", "--data", data, "--resume", str(tmp_path / "none.npz"))
    assert r.returncode == 1 and "none.npz" in r.stderr


def test_checkpoint_every_writes_during_training(small, tmp_path):
    r = run("train", "--data", str(small[0]), "--hidden", "16", "--epochs", "5", "--checkpoint-every", "2",
            "--save", str(tmp_path / "m.npz"))
    assert r.returncode == 0, r.stderr
    checkpoints = [ln for ln in r.stdout.splitlines() if ln.startswith("checkpoint")]
    assert checkpoints == [f"checkpoint after epoch {e}: saved {tmp_path / 'm.npz'}" for e in (1, 3)]
    assert len(mm.MLP.load(tmp_path / "m.npz").history) == 5
    r = run("train", "--data", str(small[0]), "--checkpoint-every", "2")
    assert r.returncode == 2 and "--checkpoint-every needs --save" in r.stderr


def test_a_checkpoint_survives_a_kill(small, tmp_path):
    """SIGKILL (no chance to save) after a checkpoint: the checkpoint is a whole model."""
    p = subprocess.Popen([sys.executable, "-m", "mnist_mlp", "train", "--data", str(small[0]), "--hidden", "64",
                          "--epochs", "500", "--checkpoint-every", "1", "--save", str(tmp_path / "m.npz")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    assert p.stdout is not None
    for line in p.stdout:
        if line.startswith("checkpoint after epoch 1"):
            p.kill()
            break
    p.communicate(timeout=60)
    assert len(mm.MLP.load(tmp_path / "m.npz").history) >= 2


# ---------------------------------------------------------------------------
# 13. predict reports each bad input and goes on


def test_predict_goes_on_past_bad_inputs(model_file, small, tmp_path):
    _, _, (xt, _) = small
    np.save(tmp_path / "good.npy", xt[:2])
    (tmp_path / "fake.npy").write_bytes(b"not an array")
    np.save(tmp_path / "zero.npy", np.zeros((0, 784), np.uint8))
    np.save(tmp_path / "good2.npy", xt[2:3])
    r = run("predict", str(model_file), str(tmp_path / "good.npy"), str(tmp_path / "fake.npy"),
            str(tmp_path / "missing.npy"), str(tmp_path / "zero.npy"), str(tmp_path / "good2.npy"))
    assert r.returncode == 1
    assert [ln.split(":")[0] for ln in r.stdout.splitlines()] == [
        f"{tmp_path / 'good.npy'}[0]", f"{tmp_path / 'good.npy'}[1]", f"{tmp_path / 'good2.npy'}[0]"]
    errors = r.stderr.splitlines()
    assert len(errors) == 4 and all(e.startswith("mnist-mlp: error: ") for e in errors)
    assert "missing.npy: no such file" in errors[1]
    assert errors[2] == f"mnist-mlp: error: {tmp_path / 'zero.npy'} is empty (0 samples)"  # names the file
    assert errors[3].startswith("mnist-mlp: error: 3 of 5 inputs could not be classified: ")


# ---------------------------------------------------------------------------
# 17. The summary says loss


def test_summary_says_loss_and_epoch_lines_keep_the_seed_wording(small):
    r = run("train", "--data", str(small[0]), "--hidden", "16", "--epochs", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Epoch 0 - Error on test: ") and lines[1].startswith("Epoch 1 - Error on test: ")
    assert lines[2] == "Result:" and lines[3].startswith("Loss on test: ") and "; Loss on train: " in lines[3]


# ---------------------------------------------------------------------------
# 18. fit(verbose=True) draws a bar on a terminal


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_fit_verbose_shows_a_bar_on_a_terminal(small, monkeypatch):
    _, (x, y), _ = small
    tty = FakeTTY()
    monkeypatch.setattr(sys, "stdout", tty)
    mm.MLP([784, 16, 10], seed=0).fit(x, y, epochs=2, verbose=True)
    text = tty.getvalue()
    assert "Epoch 0 - Error on train: " in text and "Epoch 1 - " in text and "/2 epochs" in text


def test_fit_verbose_prints_only_lines_elsewhere(small, capsys):
    _, (x, y), _ = small
    mm.MLP([784, 16, 10], seed=0).fit(x, y, epochs=2, verbose=True)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("Epoch 0 - Error on train: ")
