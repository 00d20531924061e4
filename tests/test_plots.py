"""Figures: each is rendered to a temporary file and checked (signature, size),
and the figure objects themselves where what is drawn matters (labels,
ticks, colours, titles that fit)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

import mnist_mlp as mm
from conftest import REPO
from png_util import assert_png, png_size

pytest.importorskip("matplotlib")
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402

from mnist_mlp import plots  # noqa: E402


def _history(n=5, test=True, first=0):
    out = []
    for e in range(first, first + n):
        rec = {"epoch": e, "train_loss": 0.5 / (e + 1), "train_accuracy": 0.9 + 0.001 * e}
        if test:
            rec.update(test_loss=0.6 / (e + 1), test_accuracy=0.89 + 0.001 * e)
        out.append(rec)
    return out


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures the plotting functions save, in order."""
    made = []
    save = plots._save

    def keep(fig, path, dpi=100):
        made.append(fig)
        return save(fig, path, dpi)

    monkeypatch.setattr(plots, "_save", keep)
    return made


def _texts(fig):
    """Every non-empty title and text of ``fig`` (suptitle, axes titles, texts in axes)."""
    found = list(fig.texts)
    for ax in fig.axes:
        found += [ax.title, *ax.texts]
    return [t for t in found if t.get_visible() and t.get_text()]


def _assert_texts_inside(fig):
    renderer = fig.canvas.get_renderer()
    width, height = fig.bbox.width, fig.bbox.height
    for t in _texts(fig):
        box = t.get_window_extent(renderer)
        assert box.x0 >= 0 and box.x1 <= width and box.y0 >= 0 and box.y1 <= height, (
            f"{t.get_text()!r} at {box} is cut off by the {width}x{height} figure"
        )


# ---------------------------------------------------------------------------
# Formats


MAGIC = {"png": lambda b: b.startswith(b"\x89PNG"), "pdf": lambda b: b.startswith(b"%PDF"),
         "svg": lambda b: b"<svg" in b[:2000], "jpg": lambda b: b.startswith(b"\xff\xd8"),
         "jpeg": lambda b: b.startswith(b"\xff\xd8")}


def test_check_figure_path_names_the_format_and_draws_nothing(tmp_path, monkeypatch):
    def no_drawing(**kw):
        raise AssertionError("check_figure_path drew a figure")

    monkeypatch.setattr(plots, "_figure", no_drawing)
    assert plots.check_figure_path(tmp_path / "sub" / "c.svg") == "svg"
    assert plots.check_figure_path("curves.PDF") == "pdf"
    assert plots.check_figure_path("a.b.jpeg") == "jpeg"
    assert not (tmp_path / "sub").exists()
    assert set(plots.figure_formats()) == set(FigureCanvasAgg.get_supported_filetypes())
    for bad, why in (("curves.xyz", "cannot write .xyz"), ("curves", "no file extension"), ("dir/curves.", "no file")):
        with pytest.raises(ValueError, match=why) as e:
            plots.check_figure_path(tmp_path / bad)
        assert str(tmp_path / bad) in str(e.value)
        assert all(f".{f}" in str(e.value) for f in ("png", "pdf", "svg", "jpg"))


@pytest.mark.parametrize("ext", sorted(MAGIC))
def test_training_curves_write_the_format_of_the_extension(ext, tmp_path):
    out = plots.training_curves(_history(), tmp_path / f"c.{ext}")
    assert MAGIC[ext](out.read_bytes()), out.read_bytes()[:16]
    upper = plots.training_curves(_history(), tmp_path / f"C.{ext.upper()}")
    assert MAGIC[ext](upper.read_bytes())


def test_every_figure_writes_the_format_of_the_extension(tmp_path, mnist):
    _, (xt, yt) = mnist
    pred = yt[:50].copy()
    pred[::5] = (pred[::5] + 1) % 10
    assert MAGIC["pdf"](plots.confusion_matrix(yt[:50], pred, tmp_path / "cm.pdf").read_bytes())
    assert MAGIC["svg"](plots.misclassified_grid(xt[:50], yt[:50], pred, tmp_path / "e.svg").read_bytes())
    assert MAGIC["jpg"](plots.misclassified_grid(xt[:5], yt[:5], yt[:5], tmp_path / "none.jpg").read_bytes())
    result = json.loads((REPO / "bench" / "results" / "2026-11-28-vm.json").read_text())
    assert MAGIC["svg"](plots.bench_chart(result, tmp_path / "bench.svg").read_bytes())


def test_a_bad_extension_fails_before_drawing(tmp_path, monkeypatch, mnist):
    _, (xt, yt) = mnist

    def no_drawing(**kw):
        raise AssertionError("drew a figure for a path it cannot write")

    monkeypatch.setattr(plots, "_figure", no_drawing)
    bad = tmp_path / "fig.xyz"
    calls = [
        lambda: plots.training_curves(_history(), bad),
        lambda: plots.confusion_matrix(yt[:10], yt[:10], bad),
        lambda: plots.misclassified_grid(xt[:10], yt[:10], yt[:10], bad),
        lambda: plots.bench_chart({"rows": []}, bad),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="cannot write .xyz") as e:
            call()
        assert str(bad) in str(e.value)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------
# Training curves


def test_training_curves(tmp_path):
    p = plots.training_curves(_history(), tmp_path / "c.png", title="t")
    assert p == tmp_path / "c.png"
    assert_png(p, (800, 300), (1200, 500))
    assert_png(plots.training_curves(_history(1, test=False), tmp_path / "sub" / "one.png"), (800, 300), (1200, 500))
    with pytest.raises(ValueError, match="empty"):
        plots.training_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="record 1 lacks 'train_accuracy'"):
        plots.training_curves([{"train_loss": 1.0, "train_accuracy": 0.5}, {"train_loss": 1.0}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="record 0 has epoch 'one', not an integer"):
        plots.training_curves([{"epoch": "one", "train_loss": 1.0, "train_accuracy": 0.5}], tmp_path / "x.png")
    with pytest.raises(ValueError, match="record 0 has train_loss 'low', not a number"):
        plots.training_curves([{"epoch": 0, "train_loss": "low", "train_accuracy": 0.5}], tmp_path / "x.png")


@pytest.mark.parametrize("n, first", [(20, 0), (3, 0), (7, 5)])
def test_training_curves_number_the_epochs_as_the_history_does(n, first, tmp_path, figures):
    history = _history(n, first=first)
    plots.training_curves(history, tmp_path / "c.png")
    (fig,) = figures
    loss_ax, acc_ax = fig.axes
    for ax in (loss_ax, acc_ax):
        assert len(ax.lines) == 2
        for line in ax.lines:
            assert list(line.get_xdata()) == [h["epoch"] for h in history]
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        assert ax.get_xlabel() == "epoch"
    assert loss_ax.get_ylabel() == "cross-entropy loss" and "loss" in loss_ax.get_title().lower()
    words = " ".join([t.get_text() for t in _texts(fig)] + [loss_ax.get_ylabel(), acc_ax.get_ylabel()]).lower()
    assert "error" not in words


def test_training_curves_of_a_real_fit(tmp_path, figures, mnist):
    (x, y), _ = mnist
    model = mm.MLP([784, 8, 10], seed=0)
    model.fit(x[:300], y[:300], epochs=2, validation_data=(x[300:400], y[300:400]))
    plots.training_curves(model.history, tmp_path / "c.png")
    assert list(figures[0].axes[0].lines[0].get_xdata()) == [h["epoch"] for h in model.history]


# ---------------------------------------------------------------------------
# Confusion matrix


def test_confusion_counts():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 500)
    pred = np.where(rng.random(500) < 0.9, y, rng.integers(0, 10, 500))
    counts = plots.confusion_counts(y, pred, 10)
    assert counts.sum() == 500 and np.trace(counts) == np.sum(y == pred)
    assert counts[3, 5] == np.sum((y == 3) & (pred == 5))
    with pytest.raises(ValueError, match="labels"):
        plots.confusion_counts([0, 12], [0, 1], 10)
    with pytest.raises(ValueError, match="label_confusion_counts"):
        plots.confusion_counts(["cat"], ["dog"], 10)
    same, order = plots.label_confusion_counts(y, pred, range(10))
    assert order == list(range(10)) and np.array_equal(same, counts)


def _digits_with_errors(rng, per_class=1000):
    """Labels 0..9 with few mistakes, most of them 9 -> 4 (10) and 4 -> 9 (8)."""
    y = np.repeat(np.arange(10), per_class)
    pred = y.copy()
    pred[np.flatnonzero(y == 9)[:10]] = 4
    pred[np.flatnonzero(y == 4)[:8]] = 9
    others = rng.choice(np.flatnonzero(pred == y), 20, replace=False)
    pred[others] = (y[others] + rng.integers(1, 10, 20)) % 10
    return y, pred


def test_confusion_matrix_colours_the_errors(tmp_path, figures):
    y, pred = _digits_with_errors(np.random.default_rng(1))
    assert_png(plots.confusion_matrix(y, pred, tmp_path / "cm.png"), (500, 500), (1200, 1200))
    (fig,) = figures
    ax = fig.axes[0]
    (im,) = ax.images
    counts = plots.confusion_counts(y, pred, 10)
    rgba = im.to_rgba(im.get_array())
    diagonal = rgba[np.arange(10), np.arange(10)]
    assert np.all(diagonal == diagonal[0]) and np.all(im.get_array().mask == np.eye(10, dtype=bool))
    # The scale spans the errors (shares of the true class): 9 -> 4 and 4 -> 9, at about 1%, are dark.
    shares = counts / counts.sum(axis=1, keepdims=True)
    assert im.norm.vmax == pytest.approx((shares - np.diag(np.diag(shares))).max())
    assert rgba[9, 4, :3].min() < 0.5 and rgba[4, 9, :3].min() < 0.6, (rgba[9, 4], rgba[4, 9])
    no_error = np.argwhere((counts == 0))[0]
    assert rgba[tuple(no_error)][:3].min() > 0.9  # no mistake: (nearly) white
    # Every count on the diagonal is written, and the errors.
    written = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert all(written[i, i] == str(counts[i, i]) for i in range(10))
    assert written[9, 4] == str(counts[9, 4]) and written[4, 9] == str(counts[4, 9])
    assert "error" in ax.title.get_text() and "error" in fig.axes[1].get_ylabel()  # what the colour means
    _assert_texts_inside(fig)


def test_confusion_matrix_of_string_labels(tmp_path, figures):
    rng = np.random.default_rng(2)
    names = np.array(["cat", "dog", "bird"])
    y = names[rng.integers(0, 3, 300)]
    pred = np.where(rng.random(300) < 0.8, y, names[rng.integers(0, 3, 300)])
    counts, order = plots.label_confusion_counts(y, pred)
    assert order == ["bird", "cat", "dog"]
    for i, a in enumerate(order):
        for j, b in enumerate(order):
            assert counts[i, j] == np.sum((y == a) & (pred == b))
    counts2, order2 = plots.label_confusion_counts(list(y), pred.astype(object), labels=["dog", "cat", "bird"])
    assert order2 == ["dog", "cat", "bird"] and np.array_equal(counts2, counts[::-1, ::-1])
    sub, _ = plots.label_confusion_counts(y, pred, labels=["cat", "dog"])
    assert sub.sum() == np.sum(np.isin(y, ["cat", "dog"]) & np.isin(pred, ["cat", "dog"]))

    plots.confusion_matrix(y, pred, tmp_path / "cm.png", labels=["dog", "cat", "bird"])
    plots.confusion_matrix(y, pred, tmp_path / "named.png", labels=["dog", "cat", "bird"], class_names=["D", "C", "B"])
    plots.confusion_matrix(y, pred, tmp_path / "sub.png", labels=["cat", "dog"])
    assert [t.get_text() for t in figures[0].axes[0].get_xticklabels()] == ["dog", "cat", "bird"]
    assert [t.get_text() for t in figures[1].axes[0].get_yticklabels()] == ["D", "C", "B"]
    assert "not counted" in figures[2].axes[0].title.get_text()
    assert_png(tmp_path / "cm.png", (400, 400))

    with pytest.raises(ValueError, match="y_true holds numbers .* but y_pred strings"):
        plots.confusion_matrix([3, 4], ["3", "4"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="cannot be sorted"):
        plots.label_confusion_counts(np.array([1, "a"], dtype=object), np.array(["a", 1], dtype=object))
    with pytest.raises(ValueError, match="duplicates"):
        plots.label_confusion_counts(y, pred, labels=["cat", "cat"])
    with pytest.raises(ValueError, match="no sample"):
        plots.label_confusion_counts(y, pred, labels=["cow"])
    with pytest.raises(ValueError, match="class_names has 2 names for 3 labels"):
        plots.confusion_matrix(y, pred, tmp_path / "x.png", labels=order, class_names=["a", "b"])
    with pytest.raises(ValueError, match="empty"):
        plots.confusion_matrix([], [], tmp_path / "x.png")
    with pytest.raises(ValueError, match="1-D"):
        plots.label_confusion_counts(np.zeros((4, 2)), np.zeros((4, 2)))


def test_string_labels_of_an_mlp_classifier(tmp_path, mnist):
    (x, y), _ = mnist
    words = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = mm.MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # 3 iterations do not converge
        clf.fit(x[:500].reshape(500, -1), words[y[:500]])
    xt, yt = x[500:700].reshape(200, -1), words[y[500:700]]
    pred = clf.predict(xt)
    assert pred.dtype.kind == "U"
    assert_png(plots.confusion_matrix(yt, pred, tmp_path / "cm.png", labels=clf.classes_), (400, 400))
    assert_png(plots.misclassified_grid(xt, yt, pred, tmp_path / "e.png", probs=clf.predict_proba(xt),
                                        labels=clf.classes_), (200, 150))
    with pytest.raises(ValueError, match="pass labels="):
        plots.misclassified_grid(xt, yt, pred, tmp_path / "e.png", probs=clf.predict_proba(xt))


# ---------------------------------------------------------------------------
# Misclassified digits


def test_misclassified_grid(tmp_path, mnist, figures):
    _, (xt, yt) = mnist
    pred = yt[:100].copy()
    pred[::7] = (pred[::7] + 1) % 10
    probs = np.full((100, 10), 0.1)
    w, h = png_size(plots.misclassified_grid(xt[:100], yt[:100], pred, tmp_path / "e.png", probs=probs))
    assert 300 <= w <= 2000 and 150 <= h <= 2000
    shown = [ax for ax in figures[0].axes if ax.images]
    assert len(shown) == 15 and shown[1].get_title() == f"{yt[7]} → {pred[7]} (0.10)"
    assert figures[0].texts[0].get_text().startswith("Misclassified: 15 of 100 (showing 15")
    _assert_texts_inside(figures[0])
    with pytest.raises(ValueError, match="not square"):
        plots.misclassified_grid(np.zeros((2, 10)), [0, 1], [1, 0], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="max_images must be an integer >= 0, got -1"):
        plots.misclassified_grid(xt[:100], yt[:100], pred, tmp_path / "bad.png", max_images=-1)


def test_misclassified_grid_of_one_error_has_its_whole_title(tmp_path, mnist, figures):
    _, (xt, yt) = mnist
    pred = yt[:10].copy()
    pred[3] = (pred[3] + 1) % 10
    plots.misclassified_grid(xt[:10], yt[:10], pred, tmp_path / "one.png")
    assert sum(1 for ax in figures[0].axes if ax.images) == 1
    _assert_texts_inside(figures[0])


def test_misclassified_grid_without_errors_says_so(tmp_path, mnist, figures):
    _, (xt, yt) = mnist
    w, h = png_size(plots.misclassified_grid(xt[:10].reshape(10, -1), yt[:10], yt[:10], tmp_path / "none.png"))
    assert w >= 400 and h >= 100
    (fig,) = figures
    words = [t.get_text() for t in _texts(fig)]
    assert "Misclassified: 0 of 10" in words and "no misclassified samples: all 10 predictions are right" in words
    assert not any(ax.images for ax in fig.axes)
    _assert_texts_inside(fig)


def test_misclassified_grid_with_max_images_0_counts_the_errors(tmp_path, mnist, figures):
    _, (xt, yt) = mnist
    pred = yt[:200].copy()
    pred[::8] = (pred[::8] + 3) % 10
    wrong = int(np.sum(pred != yt[:200]))
    plots.misclassified_grid(xt[:200], yt[:200], pred, tmp_path / "zero.png", max_images=0)
    (fig,) = figures
    words = [t.get_text() for t in _texts(fig)]
    assert f"Misclassified: {wrong} of 200" in words and f"{wrong} misclassified; none shown (max_images=0)" in words
    assert not any("no misclassified" in w for w in words)
    _assert_texts_inside(fig)


# ---------------------------------------------------------------------------
# Benchmark chart, and matplotlib as an optional dependency


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
        "for call in (lambda: p.training_curves([{'train_loss': 1.0, 'train_accuracy': 0.5}], sys.argv[1]),\n"
        "             lambda: p.check_figure_path(sys.argv[1])):\n"
        "    try:\n"
        "        call()\n"
        "    except p.MissingMatplotlib as e:\n"
        "        print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.png")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count('pip install "mnist_mlp[plot]"') == 2
    assert importlib.util.find_spec("mnist_mlp.plots") is not None
