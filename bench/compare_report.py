"""Renders `compare.py` results: the plain-text report, the JSON file, the
PNG figure and the generated section of ``bench/RESULTS.md``."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

from mnist_mlp.plots import format_seconds as fmt_seconds

BEGIN = "<!-- compare:begin -->"
END = "<!-- compare:end -->"

Result = dict[str, Any]


# ---------------------------------------------------------------------------
# Number formatting


def fmt_ratio(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.2f}x" if v < 10 else f"{v:.1f}x" if v < 100 else f"{v:.0f}x"


def fmt_num(v: float | None, spec: str) -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """Columns aligned in plain text, or a Markdown table. The first column is
    left-aligned, the others right-aligned."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join([":---"] + ["---:"] * (len(headers) - 1)) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        parts = [cells[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(cells[1:], widths[1:])]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


# ---------------------------------------------------------------------------
# Sections


def describe_config(result: Result) -> str:
    c = result["config"]
    sizes = "-".join(str(s) for s in c["sizes"])
    epochs = f"{c['epochs']} epoch{'s' if c['epochs'] != 1 else ''}"
    return (
        f"{sizes} MLP, ReLU, softmax + cross-entropy, SGD lr {c['lr']}, batch {c['batch_size']}, no shuffling, "
        f"{epochs}, {c['train_samples']} train / {c['test_samples']} test samples, float32, seed {c['seed']}"
    )


def describe_machine(result: Result) -> str:
    m = result["machine"]
    return f"{m['cpu_model']}, {m['cores']} cores ({m['platform']}), host {result['hostname']}, {result['date']}"


ROW_HEADERS = [
    "implementation", "epoch s", "min", "max", "setup s", "eval train s", "eval test s", "run s",
    "test acc", "test loss", "peak RSS MiB", "threads", "init diff", "mnist_mlp speed-up",
]


def row_cells(row: dict[str, Any]) -> list[str]:
    if row["status"] != "ok":
        return [row["name"], row["status"]] + [""] * (len(ROW_HEADERS) - 2)
    return [
        row["name"],
        fmt_seconds(row["epoch_median_seconds"]),
        fmt_seconds(row["epoch_min_seconds"]),
        fmt_seconds(row["epoch_max_seconds"]),
        fmt_seconds(row["setup_seconds"]),
        fmt_seconds(row["eval_train_seconds"]),
        fmt_seconds(row["eval_test_seconds"]),
        fmt_seconds(row["run_seconds"]),
        fmt_num(row["test_accuracy"], ".4f"),
        fmt_num(row["test_loss"], ".4f"),
        fmt_num(row["peak_rss_mib"], ".0f"),
        str(row["threads"]),
        fmt_num(row["init_max_abs_diff"], ".1e"),
        fmt_ratio(row.get("speedup")),
    ]


def row_notes(result: Result) -> list[str]:
    notes = [
        "epoch s: median training time per epoch (min, max over all epochs); evaluation is never included.",
        "run s: setup (building the model from the shared initial weights; for jax also the XLA compile) "
        "+ one-time work inside the training call outside the epochs (mnist_mlp's fit) "
        "+ every epoch + the final train and test evaluations (not the imports, the data loading or the "
        "float32 conversion, which the JSON file reports apart).",
        "init diff: largest |p - p_reference| of the initial softmax outputs on the first test samples "
        "(all rows start from the same weights).",
        "mnist_mlp speed-up: this row's median epoch / mnist_mlp's median epoch.",
    ]
    load = (result["machine"].get("load_average_at_start") or [0.0])[0]
    cores = result["machine"].get("usable_cores") or 1
    if load >= 0.5:
        notes.append(
            f"the machine was busy when the run started (1-minute load average {load:.2f} on {cores} cores): "
            "timings, the 2-thread ones above all, may be inflated."
        )
    for row in result["rows"]:
        if row["status"] != "ok":
            notes.append(f"{row['name']}: {row['status']}: {row['note']}")
        elif row.get("compile_seconds") is not None:
            notes.append(
                f"{row['name']}: setup includes {fmt_seconds(row['compile_seconds'])} s of XLA compilation "
                f"(epoch and evaluations, ahead of time); first epoch {fmt_seconds(row['epoch_seconds'][0])} s."
            )
    return notes


def floor_section(result: Result, markdown: bool) -> str:
    f = result["floor"]
    rates = f["sgemm_gflops"]
    mm = next((r for r in result["rows"] if r["name"] == "mnist_mlp" and r["status"] == "ok"), None)
    headers = [
        "epoch FLOPs", "GFLOP", f"floor s @ all threads ({rates['all_threads']:.1f} GFLOP/s)",
        f"floor s @ 1 thread ({rates['one_thread']:.1f} GFLOP/s)", "mnist_mlp epoch / floor (all, 1 thread)",
    ]
    rows = []
    for kind, label in (("dense", "dense"), ("sparse_input", "sparse input")):
        fs = f["floor_seconds"][kind]
        ratio = "-" if mm is None else (
            f"{fmt_ratio(mm['epoch_median_seconds'] / fs['all_threads'])}, "
            f"{fmt_ratio(mm['epoch_median_seconds'] / fs['one_thread'])}"
        )
        rows.append([label, f"{f['epoch_gflop'][kind]:.2f}", fmt_seconds(fs["all_threads"]),
                     fmt_seconds(fs["one_thread"]), ratio])
    intro = (
        f"Floor: one epoch's GEMM FLOPs ({f['samples']} samples) at NumPy's best float32 "
        f"{f['sgemm_size']}^3 rate. Sparse input counts only the nonzero pixels "
        f"({f['nonzero_fraction']:.3f} of the training set) in layer 1's forward and weight-gradient products."
    )
    if mm is None:
        intro += " (mnist_mlp did not run, so there is no ratio.)"
    return intro + "\n\n" + format_table(headers, rows, markdown)


def gemm_section(result: Result, markdown: bool) -> str:
    entries = result["gemm"]
    threads = sorted({e["threads"] for e in entries})
    headers = ["product (float32)"]
    for t in threads:
        headers += [f"mnist_mlp {t}t", f"numpy {t}t", f"ratio {t}t"]
    headers.append("max rel err")
    rows = []
    for shape in dict.fromkeys(e["shape"] for e in entries):
        by_t = {e["threads"]: e for e in entries if e["shape"] == shape}
        cells = [shape]
        for t in threads:
            e = by_t[t]
            cells += [f"{e['mnist_mlp_gflops']:.3g}", f"{e['numpy_gflops']:.3g}", fmt_ratio(e["ratio"])]
        cells.append(f"{by_t[threads[0]]['max_rel_err']:.1e}")
        rows.append(cells)
    limit = "limited with threadpoolctl" if result["gemm_numpy_threads_limited"] else "NOT limited (no threadpoolctl): its default"
    intro = (
        "GEMM, GFLOP/s (median of several timed samples): mnist_mlp.ops.matmul(a, b, trans_a, trans_b, num_threads=t) "
        f"against NumPy's @ on the same (transposed) views; NumPy's BLAS threads {limit}. "
        "Both include their Python call overhead."
    )
    return intro + "\n\n" + format_table(headers, rows, markdown)


def render(result: Result, markdown: bool = False) -> str:
    """The whole report, as plain text or Markdown."""
    rows = [row_cells(r) for r in result["rows"]]
    bullet = "- " if markdown else "  "
    parts = [
        describe_config(result),
        f"Machine: {describe_machine(result)}",
        format_table(ROW_HEADERS, rows, markdown),
        "\n".join(bullet + n for n in row_notes(result)),
        floor_section(result, markdown),
    ]
    if result.get("gemm"):
        parts.append(gemm_section(result, markdown))
    return "\n\n".join(parts)


def render_results_md(result: Result) -> str:
    """The generated block of RESULTS.md."""
    v = result["versions"]
    versions = ", ".join(f"{k} {val}" for k, val in v.items() if val)
    return "\n\n".join([
        f"Generated by `{result['command']}` on {result['date']}. Versions: {versions}.",
        render(result, markdown=True),
        f"Full results: `{result['json_name']}`.",
    ])


# ---------------------------------------------------------------------------
# Files


def _atomic_write(path: Path, text: str) -> None:
    """Writes to a temporary file beside ``path`` and renames it, keeping the
    old file's permissions (or the umask's for a new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        mode = path.stat().st_mode & 0o777
    else:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_safe(value: Any) -> Any:
    """NaN and infinities (a diverged run) become null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(result: Result, path: Path) -> None:
    _atomic_write(path, json.dumps(_json_safe(result), indent=2, allow_nan=False) + "\n")


def write_png(result: Result, path: Path) -> str | None:
    """Two panels: median seconds per epoch (log scale, whiskers at min and
    max) and test accuracy against cumulative training time, drawn by
    `mnist_mlp.plots.bench_chart`. Returns a note when matplotlib is missing,
    else None."""
    from mnist_mlp.plots import MissingMatplotlib, bench_chart

    try:
        bench_chart(result, path, title=describe_config(result))
    except MissingMatplotlib:
        return "matplotlib is not installed: no figure"
    return None


def update_results_md(path: Path, block: str) -> None:
    """Replaces what lies between the markers; everything else is kept. A
    missing file is created; a file without the markers gets them appended."""
    if path.exists():
        text = path.read_text(encoding="utf-8")
    else:
        text = f"# mnist_mlp benchmark results\n\n{BEGIN}\n{END}\n"
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
        start, end = text.find(BEGIN), text.find(END)
    _atomic_write(path, text[: start + len(BEGIN)] + "\n" + block.strip("\n") + "\n" + text[end:])
