"""Figures: training curves, a confusion matrix, a grid of misclassified
digits, and the benchmark chart of ``bench/compare.py``. Each function writes
one file in the format its extension names (``.png``, ``.pdf``, ``.svg``,
``.jpg``, ...: whatever the installed matplotlib writes, see
`check_figure_path`) and returns the path it wrote.

matplotlib is an optional dependency (``pip install "mnist_mlp[plot]"``); it is
imported when a figure is made, never at ``import mnist_mlp``. The figures are
drawn on matplotlib's Agg canvas directly: no pyplot, no GUI backend, no
window, safe in scripts, servers and threads.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = [
    "training_curves",
    "confusion_matrix",
    "misclassified_grid",
    "bench_chart",
    "check_figure_path",
    "figure_formats",
    "confusion_counts",
    "label_confusion_counts",
    "MissingMatplotlib",
]


class MissingMatplotlib(ImportError):
    """matplotlib is needed for figures and is not installed."""


def _agg_canvas() -> Any:
    """matplotlib's Agg canvas class; MissingMatplotlib without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError as e:
        raise MissingMatplotlib(
            'figures need matplotlib, which is not installed: pip install "mnist_mlp[plot]"'
        ) from e
    return FigureCanvasAgg


def _figure(**kw: Any) -> Any:
    canvas = _agg_canvas()
    from matplotlib.figure import Figure

    fig = Figure(**kw)
    canvas(fig)
    return fig


# ---------------------------------------------------------------------------
# File formats


def figure_formats() -> dict[str, str]:
    """The file formats the installed matplotlib writes, extension (lower case,
    no dot) -> description, as its canvas reports them
    (``FigureCanvasAgg.get_supported_filetypes()``). Needs matplotlib, but
    draws nothing."""
    return dict(sorted(_agg_canvas().get_supported_filetypes().items()))


def check_figure_path(path: str | os.PathLike[str]) -> str:
    """The format a figure written to ``path`` gets: its extension, lower
    case, without the dot (``"curves.PDF"`` -> ``"pdf"``). A ValueError naming
    the path and listing the formats when the extension is missing or not one
    matplotlib writes (`figure_formats`), or when it is ``.pgf`` and the TeX
    program matplotlib needs for it is not installed. Draws and writes
    nothing; needs matplotlib (MissingMatplotlib without it), whose canvas is
    the list of formats. Every function here calls it before drawing."""
    name = os.fspath(path)
    formats = figure_formats()
    ext = Path(name).suffix.lower().lstrip(".")
    listed = ", ".join(f".{f}" for f in formats)
    if not ext:
        raise ValueError(f"{name}: no file extension to name the figure format; use one of {listed}")
    if ext not in formats:
        raise ValueError(f"{name}: matplotlib cannot write .{ext} figures; use one of {listed}")
    if ext == "pgf":
        from matplotlib import rcParams

        tex = rcParams["pgf.texsystem"]
        if shutil.which(tex) is None:
            raise ValueError(f"{name}: .pgf figures need {tex} (LaTeX), which is not installed")
    return ext


def _save(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    fmt = check_figure_path(path)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format=fmt)
    return out


def _widen_for(fig: Any, text: Any, margin: float = 0.3) -> None:
    """Widens ``fig`` so that ``text`` (a title) fits, with ``margin`` inches to spare."""
    width = text.get_window_extent(fig.canvas.get_renderer()).width / fig.dpi + margin
    if width > fig.get_figwidth():
        fig.set_figwidth(width)


# ---------------------------------------------------------------------------
# Training curves


def _epoch_numbers(history: Sequence[Mapping[str, Any]]) -> list[int]:
    """The ``epoch`` of every record (as `MLP.fit` numbers them: from 0, the
    numbers of the lines ``train`` prints); a record without one gets its position."""
    out = []
    for i, h in enumerate(history):
        e = h.get("epoch", i)
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)):
            raise ValueError(f"training_curves: epoch record {i} has epoch {e!r}, not an integer")
        out.append(int(e))
    return out


def _series(history: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    out = []
    for i, h in enumerate(history):
        v = h[key]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"training_curves: epoch record {i} has {key} {v!r}, not a number")
        out.append(float(v))
    return out


def training_curves(
    history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Cross-entropy loss and accuracy per epoch, on the training set and
    (when the records have them) the test set: two panels. ``history`` is
    `MLP.history`, the list `MLP.fit` returns, or the ``history`` of
    ``mnist-mlp train --metrics-json``. The x axis numbers the epochs as the
    records do (their ``epoch``: 0 for the first, as in the ``Epoch 0 - ...``
    lines ``train`` prints), with integer ticks only. The format is the
    extension's (`check_figure_path`)."""
    check_figure_path(path)
    from matplotlib.ticker import MaxNLocator

    if not history:
        raise ValueError("training_curves: the history is empty (no epoch was trained)")
    for i, h in enumerate(history):
        if not isinstance(h, Mapping):
            raise ValueError(f"training_curves: epoch record {i} is a {type(h).__name__}, not a dict")
        for key in ("train_loss", "train_accuracy"):
            if key not in h:
                raise ValueError(f"training_curves: epoch record {i} lacks {key!r}")
    epochs = _epoch_numbers(history)
    has_test = all("test_loss" in h and "test_accuracy" in h for h in history)
    fig = _figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    losses: list[float] = []
    for ax, key, label in ((loss_ax, "loss", "cross-entropy loss"), (acc_ax, "accuracy", "accuracy")):
        fmt = ".4f" if key == "accuracy" else ".5f"
        for split in ("train", "test") if has_test else ("train",):
            values = _series(history, f"{split}_{key}")
            ax.plot(epochs, values, marker="o", ms=3, label=f"{split} (last {values[-1]:{fmt}})")
            if key == "loss":
                losses += values
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    finite = np.array([v for v in losses if math.isfinite(v)])
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:  # several decades: log scale
        loss_ax.set_yscale("log")
    loss_ax.set_title("Cross-entropy loss per epoch")
    acc_ax.set_title("Accuracy per epoch")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Confusion matrix


def confusion_counts(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """(classes, classes) int64 counts of integer class ids 0..classes-1: row =
    true class, column = predicted. For labels of any kind (strings, say), see
    `label_confusion_counts`."""
    try:
        t = np.asarray(y_true, dtype=np.int64).ravel()
        p = np.asarray(y_pred, dtype=np.int64).ravel()
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"confusion_counts takes integer class ids ({e}); for other labels use label_confusion_counts"
        ) from e
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    k = int(num_classes if num_classes is not None else max(t.max(initial=0), p.max(initial=0)) + 1)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k})")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def _label_list(y: Any, name: str) -> list[Any]:
    """1-D labels as a list of Python values (numpy scalars unwrapped)."""
    a = np.asarray(y)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim > 1:
        raise ValueError(f"{name} must be one label per sample (1-D), got shape {a.shape}")
    return a.ravel().tolist()


def _paired_labels(y_true: Any, y_pred: Any) -> tuple[list[Any], list[Any]]:
    """``y_true`` and ``y_pred`` as lists of the same length and the same kind of label."""
    t, p = _label_list(y_true, "y_true"), _label_list(y_pred, "y_pred")
    if len(t) != len(p):
        raise ValueError(f"y_true has {len(t)} labels but y_pred has {len(p)}")
    t_str, p_str = (any(isinstance(v, str) for v in labels) for labels in (t, p))
    if t and t_str != p_str:
        raise ValueError(
            f"y_true holds {'strings' if t_str else 'numbers'} (e.g. {t[0]!r}) but y_pred "
            f"{'strings' if p_str else 'numbers'} (e.g. {p[0]!r}): the labels never match"
        )
    return t, p


def _label_order(t: list[Any], p: list[Any], labels: Sequence[Any] | None) -> list[Any]:
    if labels is None:
        try:
            return sorted(set(t) | set(p))
        except TypeError as e:
            raise ValueError(f"the labels cannot be sorted ({e}); pass labels= to give their order") from e
    order = _label_list(labels, "labels")
    if not order:
        raise ValueError("labels is empty")
    if len(set(order)) != len(order):
        raise ValueError(f"labels has duplicates: {order}")
    return order


def label_confusion_counts(
    y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None
) -> tuple[np.ndarray, list[Any]]:
    """The confusion matrix of labels of any kind (integers, strings such as
    `MLPClassifier` returns, ...) and its labels: ``(counts, labels)``,
    ``counts[i, j]`` the samples of true label ``labels[i]`` predicted as
    ``labels[j]``. ``labels`` gives the rows' (and columns') order, as in
    scikit-learn's ``confusion_matrix``: samples whose true or predicted
    label is not in it are not counted; by default, the sorted labels of
    ``y_true`` and ``y_pred``."""
    t, p = _paired_labels(y_true, y_pred)
    order = _label_order(t, p, labels)
    index = {label: i for i, label in enumerate(order)}
    ti = np.array([index.get(v, -1) for v in t], dtype=np.int64)
    pi = np.array([index.get(v, -1) for v in p], dtype=np.int64)
    keep = (ti >= 0) & (pi >= 0)
    if t and not keep.any():
        raise ValueError(f"no sample has both its true and its predicted label among labels={order}")
    k = len(order)
    return np.bincount(ti[keep] * k + pi[keep], minlength=k * k).reshape(k, k), order


def _error_shares(counts: np.ndarray) -> np.ndarray:
    """What the confusion matrix's colour shows: every cell as a share of its
    row (the true class), the diagonal (the correct predictions) masked: a
    masked array, so the colour scale spans the mistakes only."""
    counts = np.asarray(counts)
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    return np.ma.masked_array(share, mask=np.eye(len(counts), dtype=bool))


def confusion_matrix(
    y_true: Any,
    y_pred: Any,
    path: str | os.PathLike[str],
    *,
    labels: Sequence[Any] | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """The confusion matrix of ``y_true`` against ``y_pred`` (rows: true
    label, columns: predicted), the counts written in the cells. The colour
    shows the mistakes: each off-diagonal cell's share of its true class, on
    a scale up to the largest such share; the diagonal (correct predictions)
    is grey, its counts written.

    The labels may be integers or strings (`label_confusion_counts`);
    ``labels`` gives their order and selects them, as in scikit-learn.
    ``class_names`` are the names written for them (default: the labels
    themselves); without ``labels``, ``class_names`` names the class ids
    0..len(class_names)-1."""
    check_figure_path(path)
    if labels is None and class_names is not None:
        labels = range(len(class_names))
    counts, order = label_confusion_counts(y_true, y_pred, labels)
    if not counts.sum():
        raise ValueError("confusion_matrix: y_true and y_pred are empty")
    k = len(order)
    if class_names is not None and len(class_names) != k:
        raise ValueError(f"class_names has {len(class_names)} names for {k} labels")
    names = [str(c) for c in (class_names if class_names is not None else order)]
    left_out = len(_label_list(y_true, "y_true")) - int(counts.sum())
    fig = _confusion_figure(counts, names, title, left_out)
    return _save(fig, path)


def _confusion_figure(counts: np.ndarray, names: list[str], title: str | None, left_out: int) -> Any:
    import matplotlib
    from matplotlib.ticker import PercentFormatter

    k = len(names)
    share = _error_shares(counts)
    top = float(share.max()) if share.count() and share.max() > 0 else 1.0
    size = max(5.0, 0.55 * k + 2)
    fig = _figure(figsize=(size + 1.5, size), layout="constrained")
    ax = fig.subplots()
    cmap = matplotlib.colormaps["Reds"].with_extremes(bad="0.85")
    im = ax.imshow(share, cmap=cmap, vmin=0, vmax=top, interpolation="nearest")
    fig.colorbar(im, ax=ax, label="errors: % of the true class predicted as this class",
                 format=PercentFormatter(xmax=1))
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 3 else 0)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if counts[i, j] or i == j:
                    dark = i != j and share[i, j] > 0.6 * top
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7 if k > 12 else 8,
                            color="white" if dark else "black", fontweight="bold" if i == j else "normal")
    total = int(counts.sum())
    acc = np.trace(counts) / total if total else float("nan")
    errors = total - int(np.trace(counts))
    heading = title or f"Confusion matrix: {total} samples, {errors} errors, accuracy {acc:.4f}"
    if left_out:
        heading += f"\n({left_out} samples with a label outside labels= not counted)"
    _widen_for(fig, ax.set_title(heading + "\ncolour: errors as a % of the true class; diagonal (correct) in grey",
                                 fontsize=9), margin=1.5)
    return fig


# ---------------------------------------------------------------------------
# Misclassified digits


def misclassified_grid(
    images: Any,
    y_true: Any,
    y_pred: Any,
    path: str | os.PathLike[str],
    *,
    probs: Any = None,
    max_images: int = 36,
    labels: Sequence[Any] | None = None,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """A grid of the first ``max_images`` samples whose prediction is wrong,
    each titled ``true → predicted`` (with the predicted probability when
    ``probs``, (n, classes), is given). ``images`` is (n, 28, 28), or (n, 784)
    for square images; uint8 pixels or floats, shown white on black as in
    MNIST. The labels may be integers or strings; ``labels`` is the class of
    each column of ``probs`` (e.g. ``MLPClassifier.classes_``; default: the
    class ids 0..classes-1) and ``class_names`` their names. With no mistakes,
    or with ``max_images=0``, the figure is a line of text saying so (how many
    are misclassified, none shown)."""
    check_figure_path(path)
    if isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer)) or max_images < 0:
        raise ValueError(f"max_images must be an integer >= 0, got {max_images!r}")
    imgs = _image_stack(images)
    t, p = _paired_labels(y_true, y_pred)
    if not len(imgs) == len(t):
        raise ValueError(f"{len(imgs)} images, {len(t)} true labels and {len(p)} predictions: the counts differ")
    wrong = [i for i, (a, b) in enumerate(zip(t, p)) if a != b]
    shown = wrong[: int(max_images)]
    index = None if labels is None else {c: i for i, c in enumerate(_label_order(t, p, labels))}
    captions = [f"{_label_name(t[i], index, class_names)} → {_label_name(p[i], index, class_names)}" for i in shown]
    if probs is not None and shown:
        pr = np.asarray(probs)
        if pr.ndim != 2 or len(pr) != len(t):
            raise ValueError(f"probs must be (samples, classes) = ({len(t)}, classes), got shape {pr.shape}")
        captions = [f"{c} ({float(pr[i, _column(p[i], index, pr.shape[1])]):.2f})" for c, i in zip(captions, shown)]
    if not shown:
        fig = _message_figure(
            title or f"Misclassified: {len(wrong)} of {len(t)}",
            f"{len(wrong)} misclassified; none shown (max_images=0)" if wrong
            else f"no misclassified samples: all {len(t)} predictions are right",
        )
        return _save(fig, path)
    cols = max(1, min(len(shown), int(math.ceil(math.sqrt(len(shown) * 1.5)))))
    nrows = int(math.ceil(len(shown) / cols))
    fig = _figure(figsize=(1.25 * cols + 0.4, 1.35 * nrows + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    vmax = 255 if imgs.dtype == np.uint8 else max(float(imgs.max(initial=0)), 1e-12)
    for ax in axes:
        ax.set_axis_off()
    for ax, i, caption in zip(axes, shown, captions):
        ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(caption, fontsize=8, color="firebrick")
    heading = title or f"Misclassified: {len(wrong)} of {len(t)} (showing {len(shown)}; true → predicted)"
    _widen_for(fig, fig.suptitle(heading, fontsize=9))
    return _save(fig, path)


def _image_stack(images: Any) -> np.ndarray:
    """(n, height, width) from (n, height, width) or (n, pixels) of square images."""
    imgs = np.asarray(images)
    if imgs.ndim == 2:
        side = math.isqrt(imgs.shape[1])
        if side * side != imgs.shape[1]:
            raise ValueError(f"images of {imgs.shape[1]} pixels are not square; pass (n, height, width)")
        imgs = imgs.reshape(len(imgs), side, side)
    if imgs.ndim != 3:
        raise ValueError(f"images must be (n, height, width) or (n, pixels), got shape {imgs.shape}")
    return imgs


def _column(label: Any, index: dict[Any, int] | None, classes: int) -> int:
    """The column of ``label`` in (samples, classes) probabilities."""
    if index is not None:
        if label not in index:
            raise ValueError(f"the predicted label {label!r} is not in labels")
        return index[label]
    if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < classes:
        raise ValueError(
            f"the predicted label {label!r} is not a class id in [0, {classes}); "
            "pass labels= (the class of each column of probs, e.g. MLPClassifier.classes_)"
        )
    return label


def _label_name(label: Any, index: dict[Any, int] | None, class_names: Sequence[str] | None) -> str:
    if class_names is None:
        return str(label)
    i = index.get(label) if index is not None else label if isinstance(label, int) else None
    if i is None or not 0 <= i < len(class_names):
        raise ValueError(f"class_names has no name for the label {label!r}")
    return str(class_names[i])


def _message_figure(title: str, message: str) -> Any:
    """A figure of one line of text under a title, wide enough for both."""
    fig = _figure(figsize=(6, 1.6), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    text = ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, transform=ax.transAxes)
    _widen_for(fig, text, margin=0.6)
    _widen_for(fig, fig.suptitle(title, fontsize=11), margin=0.6)
    return fig


# ---------------------------------------------------------------------------
# The benchmark chart of bench/compare.py


def format_seconds(v: float | None) -> str:
    """Seconds with three significant figures or so; '-' when unknown (also used by bench/)."""
    if v is None or not math.isfinite(v):
        return "-"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    if v >= 0.001:
        return f"{v:.3f}"
    return f"{v:.2e}"


def bench_chart(result: Mapping[str, Any], path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """The ``bench/compare.py`` figure from its result dict: median seconds per
    epoch of every implementation (log scale, whiskers at min and max) and test
    accuracy against cumulative training time. Rows whose status is not "ok"
    are left out. The format is the extension's (`check_figure_path`)."""
    check_figure_path(path)
    rows = [r for r in result["rows"] if r["status"] == "ok"]
    fig = _figure(figsize=(13, 5), layout="constrained")
    bars, curves = fig.subplots(1, 2)
    names = [r["name"] for r in rows]
    med = [r["epoch_median_seconds"] for r in rows]
    err = [[m - r["epoch_min_seconds"] for m, r in zip(med, rows)], [r["epoch_max_seconds"] - m for m, r in zip(med, rows)]]
    colors = [f"C{i}" for i in range(len(rows))]
    bars.bar(names, med, yerr=err, color=colors, capsize=4)
    bars.set_yscale("log")
    bars.set_ylabel("seconds per training epoch (median; whiskers: min, max)")
    bars.set_title("Time per epoch")
    bars.tick_params(axis="x", labelrotation=30)
    for x, m in enumerate(med):
        bars.annotate(format_seconds(m), (x, m), ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    for r, color in zip(rows, colors):
        t, elapsed = [], r["setup_seconds"]
        for s in r["epoch_seconds"]:
            elapsed += s
            t.append(elapsed)
        curves.plot(t, r["test_accuracy_per_epoch"], marker="o", ms=3, color=color, label=r["name"])
    curves.set_xscale("log")
    curves.set_xlabel("cumulative seconds (setup + training; evaluation excluded)")
    curves.set_ylabel("test accuracy after each epoch")
    curves.set_title("Test accuracy against time")
    curves.grid(True, which="both", alpha=0.3)
    curves.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path, dpi=120)
