"""Smoke test of bench/compare.py: a tiny run finishes and writes a complete
JSON file. Timings are never asserted."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
MNIST_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NUMBERS = (
    "epoch_median_seconds", "epoch_min_seconds", "epoch_max_seconds", "setup_seconds", "eval_train_seconds",
    "eval_test_seconds", "run_seconds", "train_loss", "train_accuracy", "test_loss", "test_accuracy",
    "peak_rss_mib", "init_max_abs_diff", "speedup",
)
LISTS = ("epoch_seconds", "test_loss_per_epoch", "test_accuracy_per_epoch")


def _have_mnist() -> bool:
    return all((DATA / (stem + ".gz")).is_file() or (DATA / stem).is_file() for stem in MNIST_STEMS)


def _finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def test_compare_quick_run_writes_every_row(tmp_path: Path) -> None:
    if not _have_mnist():
        pytest.skip(f"MNIST files not found in {DATA}")
    rows = ["mnist_mlp", "reference"] + (["torch"] if importlib.util.find_spec("torch") else [])
    cmd = [
        sys.executable, "bench/compare.py", "--quick", "--subset", "512", "--only", ",".join(rows),
        "--no-gemm", "--out", str(tmp_path), "--no-write-results-md", "--data", str(DATA),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"

    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1, files
    result = json.loads(files[0].read_text())
    assert result["config"]["epochs"] == 1
    assert result["config"]["train_samples"] == result["config"]["test_samples"] == 512
    by_name = {r["name"]: r for r in result["rows"]}
    assert sorted(by_name) == sorted(rows)
    for name in rows:
        row = by_name[name]
        assert row["status"] == "ok", row
        for key in NUMBERS:
            assert _finite(row[key]), (name, key, row[key])
        for key in LISTS:
            assert len(row[key]) == 1 and all(_finite(v) for v in row[key]), (name, key, row[key])
        assert 0.0 <= row["test_accuracy"] <= 1.0
    floor = result["floor"]
    assert all(_finite(v) for kind in floor["floor_seconds"].values() for v in kind.values())
    assert result["gemm"] is None


def test_matrix_quick_run_prints_every_row(tmp_path: Path) -> None:
    if not _have_mnist():
        pytest.skip(f"MNIST files not found in {DATA}")
    frameworks = ["mnist_mlp"] + (["torch"] if importlib.util.find_spec("torch") else [])
    out = tmp_path / "matrix.json"
    cmd = [sys.executable, "bench/matrix.py", "--quick", "--frameworks", ",".join(frameworks), "--json", str(out)]
    env = dict(__import__("os").environ, MATRIX_DATA=str(DATA))
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180, check=False, env=env)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    rows = json.loads(out.read_text())
    assert [r["row"]["key"] for r in rows] == ["seed", "deep-b64", "wide-b256", "keras-rmsprop"]
    for r in rows:
        for fw in frameworks:
            secs = r[fw]["seconds"]
            assert len(secs) == 1 and all(_finite(s) and s > 0 for s in secs), (fw, r[fw])
    kernels = {r["row"]["key"]: r["mnist_mlp"]["kernel"] for r in rows}
    assert kernels == {"seed": "panels-plan", "deep-b64": "panels-index", "wide-b256": "layers-sparse",
                       "keras-rmsprop": "layers-sparse"}
    assert "| network, batch, order |" in proc.stdout


def test_sweep_quick_run_reports_the_speedup(tmp_path: Path) -> None:
    if not _have_mnist():
        pytest.skip(f"MNIST files not found in {DATA}")
    pytest.importorskip("distributed")
    out = tmp_path / "sweep.json"
    cmd = [sys.executable, "bench/sweep.py", "--quick", "--data", str(DATA), "--json", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    result = json.loads(out.read_text())
    assert result["trials"] == 8 and result["bitwise_equal"] is True
    assert len(result["sequential_seconds"]) == len(result["sweep_seconds"]) == 1
    for key in ("speedup", "overhead_per_trial_seconds", "cold_sweep_seconds"):
        assert _finite(result[key]), (key, result[key])
    assert "speed-up" in proc.stdout and "| sequential, 1 process, 1 thread |" in proc.stdout
