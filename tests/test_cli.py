"""The command line, run as a user would: a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import DATA, REPO


def run(*args, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "mnist_mlp", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def test_train_prints_the_seed_lines(mnist, tmp_path):
    model = tmp_path / "m.npz"
    r = run("train", "--data", str(DATA), "--epochs", "2", "--hidden", "64", "--save", str(model))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Epoch 0 - Error on test: ")
    assert lines[1].startswith("Epoch 1 - Error on test: ")
    assert lines[2] == "Result:"
    assert "Accuracy on test: 0.9" in lines[3] and lines[3].endswith(" s")
    import mnist_mlp as mm

    assert mm.MLP.load(model).layer_sizes == [784, 64, 10]


def test_help_has_examples():
    r = run("train", "--help")
    assert r.returncode == 0 and "examples:" in r.stdout and "--batch-size" in r.stdout


def test_usage_error_exits_2():
    r = run("train", "--epochs", "many")
    assert r.returncode == 2 and "invalid int value" in r.stderr
    # Range errors too, at parse time (tests/test_cli_commands.py has every flag).
    r = run("train", "--lr", "-1")
    assert r.returncode == 2 and "argument --lr: must be a finite number > 0" in r.stderr
    r = run("train", "--batch-size", "0")
    assert r.returncode == 2 and "argument --batch-size: must be >= 1" in r.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "/nonexistent-dir"], "MNIST not found"),
    ],
)
def test_errors_are_one_clear_line(args, message, mnist):
    r = run("train", "--epochs", "1", "--data", str(DATA), *args)
    assert r.returncode == 1
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
