"""Figures, each written to a PNG file: training curves, a confusion matrix, a
grid of misclassified digits, and the benchmark chart of ``bench/compare.py``.

matplotlib is an optional dependency (``pip install "mnist_mlp[plot]"``); it is
imported when a figure is made, never at ``import mnist_mlp``. The figures are
drawn on matplotlib's Agg canvas directly: no pyplot, no GUI backend, no
window, safe in scripts, servers and threads. Each function returns the path
it wrote.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["training_curves", "confusion_matrix", "misclassified_grid", "bench_chart", "MissingMatplotlib"]


class MissingMatplotlib(ImportError):
    """matplotlib is needed for figures and is not installed."""


def _figure(**kw: Any) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingMatplotlib(
            'figures need matplotlib, which is not installed: pip install "mnist_mlp[plot]"'
        ) from e
    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str], dpi: int = 100) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=dpi, format="png")
    return out


# ---------------------------------------------------------------------------
# Training curves


def training_curves(
    history: Sequence[Mapping[str, Any]], path: str | os.PathLike[str], *, title: str | None = None
) -> Path:
    """Loss and accuracy per epoch, on the training set and (when the records
    have them) the test set: two panels. ``history`` is `MLP.history`, the list
    `MLP.fit` returns, or the ``history`` of ``mnist-mlp train --metrics-json``."""
    if not history:
        raise ValueError("training_curves: the history is empty (no epoch was trained)")
    for key in ("train_loss", "train_accuracy"):
        if any(key not in h for h in history):
            raise ValueError(f"training_curves: an epoch record lacks {key!r}")
    epochs = [int(h.get("epoch", i)) + 1 for i, h in enumerate(history)]
    has_test = all("test_loss" in h for h in history)
    fig = _figure(figsize=(10, 4), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for ax, key, label in ((loss_ax, "loss", "cross-entropy loss"), (acc_ax, "accuracy", "accuracy")):
        fmt = ".4f" if key == "accuracy" else ".5f"
        train = [h[f"train_{key}"] for h in history]
        ax.plot(epochs, train, marker="o", ms=3, label=f"train (last {train[-1]:{fmt}})")
        if has_test:
            test = [h[f"test_{key}"] for h in history]
            ax.plot(epochs, test, marker="o", ms=3, label=f"test (last {test[-1]:{fmt}})")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        if len(epochs) < 12:
            ax.set_xticks(epochs)
    losses = [h[k] for h in history for k in ("train_loss", "test_loss") if k in h]
    if min(losses) > 0 and max(losses) / min(losses) > 20:  # several decades: log scale
        loss_ax.set_yscale("log")
    loss_ax.set_title("Loss per epoch")
    acc_ax.set_title("Accuracy per epoch")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


# ---------------------------------------------------------------------------
# Confusion matrix


def confusion_counts(y_true: Any, y_pred: Any, num_classes: int | None = None) -> np.ndarray:
    """(classes, classes) int64 counts: row = true class, column = predicted."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    k = int(num_classes if num_classes is not None else max(t.max(initial=0), p.max(initial=0)) + 1)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= k):
        raise ValueError(f"labels must lie in [0, {k})")
    return np.bincount(t * k + p, minlength=k * k).reshape(k, k)


def confusion_matrix(
    y_true: Any,
    y_pred: Any,
    path: str | os.PathLike[str],
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """The confusion matrix of class ids ``y_true`` against ``y_pred``: counts
    in every cell, colour by the share of the true class (row), the diagonal
    being the per-class recall."""
    counts = confusion_counts(y_true, y_pred, None if class_names is None else len(class_names))
    k = counts.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    rows = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, rows, out=np.zeros(counts.shape, dtype=np.float64), where=rows > 0)
    size = max(5.0, 0.55 * k + 2)
    fig = _figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, label="share of the true class")
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7 if k > 12 else 8,
                            color="white" if share[i, j] > 0.5 else "black")
    total = int(counts.sum())
    acc = np.trace(counts) / total if total else float("nan")
    ax.set_title(title or f"Confusion matrix ({total} samples, accuracy {acc:.4f})")
    return _save(fig, path)


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
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """A grid of the first ``max_images`` samples whose prediction is wrong,
    each titled ``true → predicted`` (with the predicted probability when
    ``probs``, (n, classes), is given). ``images`` is (n, 28, 28), or (n, 784)
    for square images; uint8 pixels or floats, shown white on black as in
    MNIST. With no mistakes the figure says so."""
    imgs = np.asarray(images)
    if imgs.ndim == 2:
        side = math.isqrt(imgs.shape[1])
        if side * side != imgs.shape[1]:
            raise ValueError(f"images of {imgs.shape[1]} pixels are not square; pass (n, height, width)")
        imgs = imgs.reshape(len(imgs), side, side)
    if imgs.ndim != 3:
        raise ValueError(f"images must be (n, height, width) or (n, pixels), got shape {imgs.shape}")
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if not len(imgs) == len(t) == len(p):
        raise ValueError(f"{len(imgs)} images, {len(t)} true labels and {len(p)} predictions: the counts differ")
    wrong = np.flatnonzero(t != p)
    shown = wrong[: max(0, int(max_images))]
    name = (lambda c: str(class_names[int(c)])) if class_names is not None else str
    cols = max(1, min(len(shown), int(math.ceil(math.sqrt(len(shown) * 1.5))) if len(shown) else 1))
    nrows = max(1, int(math.ceil(len(shown) / cols)))
    fig = _figure(figsize=(1.25 * cols + 0.4, 1.35 * nrows + 0.7), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, cols, squeeze=False)).ravel()
    vmax = 255 if imgs.dtype == np.uint8 else max(float(imgs.max(initial=0)), 1e-12)
    for ax in axes:
        ax.set_axis_off()
    for ax, i in zip(axes, shown):
        ax.imshow(imgs[i], cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        label = f"{name(t[i])} → {name(p[i])}"
        if probs is not None:
            label += f" ({float(np.asarray(probs)[i, int(p[i])]):.2f})"
        ax.set_title(label, fontsize=8, color="firebrick")
    if len(shown) == 0:
        axes[0].text(0.5, 0.5, "no misclassified samples", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle(
        title or f"Misclassified: {len(wrong)} of {len(t)} (showing {len(shown)}; true → predicted)", fontsize=9
    )
    return _save(fig, path)


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
    are left out."""
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
