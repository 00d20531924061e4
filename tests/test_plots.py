"""Figures: each is rendered to a temporary PNG and checked (signature, size)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from png_util import assert_png, png_size

pytest.importorskip("matplotlib")
from mnist_mlp import plots  # noqa: E402


def _history(n=5, test=True):
    out = []
    for e in range(n):
        rec = {"epoch": e, "train_loss": 0.5 / (e + 1), "train_accuracy": 0.9 + 0.01 * e}
        if test:
            rec.update(test_loss=0.6 / (e + 1), test_accuracy=0.89 + 0.01 * e)
        out.append(rec)
    return out


def test_training_curves(tmp_path):
    p = plots.training_curves(_history(), tmp_path / "c.png", title="t")
    assert p == tmp_path / "c.png"
    assert_png(p, (800, 300), (1200, 500))
    assert_png(plots.training_curves(_history(1, test=False), tmp_path / "sub" / "one.png"), (800, 300), (1200, 500))
    with pytest.raises(ValueError, match="empty"):
        plots.training_curves([], tmp_path / "x.png")


def test_confusion_matrix(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    pred = np.where(rng.random(500) < 0.9, y, rng.integers(0, 10, 500))
    counts = plots.confusion_counts(y, pred, 10)
    assert counts.sum() == 500 and np.trace(counts) == np.sum(y == pred)
    assert counts[3, 5] == np.sum((y == 3) & (pred == 5))
    assert_png(plots.confusion_matrix(y, pred, tmp_path / "cm.png"), (500, 500), (1200, 1200))
    with pytest.raises(ValueError, match="labels"):
        plots.confusion_counts([0, 12], [0, 1], 10)


def test_misclassified_grid(tmp_path, mnist):
    _, (xt, yt) = mnist
    pred = yt[:100].copy()
    pred[::7] = (pred[::7] + 1) % 10
    probs = np.full((100, 10), 0.1)
    w, h = png_size(plots.misclassified_grid(xt[:100], yt[:100], pred, tmp_path / "e.png", probs=probs))
    assert 300 <= w <= 2000 and 150 <= h <= 2000
    # flat rows, and a grid without mistakes
    assert_png(plots.misclassified_grid(xt[:10].reshape(10, -1), yt[:10], yt[:10], tmp_path / "none.png"), (100, 100))
    with pytest.raises(ValueError, match="not square"):
        plots.misclassified_grid(np.zeros((2, 10)), [0, 1], [1, 0], tmp_path / "bad.png")


def test_bench_chart_matches_compare_report(tmp_path):
    sys.path.insert(0, str(REPO / "bench"))
    try:
        import compare_report
    finally:
        sys.path.remove(str(REPO / "bench"))
    result = json.loads((REPO / "bench" / "results" / "2026-11-28-vm.json").read_text())
    assert compare_report.write_png(result, tmp_path / "via_report.png") is None
    plots.bench_chart(result, tmp_path / "direct.png", title=compare_report.describe_config(result))
    assert png_size(tmp_path / "direct.png") == (1560, 600)
    assert (tmp_path / "direct.png").read_bytes() == (tmp_path / "via_report.png").read_bytes()


def test_no_pyplot_and_a_clear_error_without_matplotlib(tmp_path):
    code = (
        "import sys\n"
        "import mnist_mlp.plots as p\n"
        "p.training_curves([{'train_loss': 1.0, 'train_accuracy': 0.5}], sys.argv[1])\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "sys.modules['matplotlib'] = None\n"
        "for m in [m for m in sys.modules if m.startswith('matplotlib.')]: del sys.modules[m]\n"
        "try:\n"
        "    p.training_curves([{'train_loss': 1.0, 'train_accuracy': 0.5}], sys.argv[1])\n"
        "except p.MissingMatplotlib as e:\n"
        "    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.png")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert 'pip install "mnist_mlp[plot]"' in r.stdout
    assert importlib.util.find_spec("mnist_mlp.plots") is not None
