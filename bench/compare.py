#!/usr/bin/env python3
"""Times mnist_mlp against NumPy, PyTorch, JAX and scikit-learn, side by side.

Every implementation trains the seed notebook's network (default 784-300-10,
ReLU, softmax + cross-entropy, SGD lr 0.1, batch 8, no shuffling, 20 epochs)
on MNIST from the same initial weights, each in a fresh subprocess so that
peak memory and thread pools are its own. Then the GEMM kernels are compared
with NumPy's and the epoch is set against a FLOP floor.

Writes a table to stdout, ``<out>/<YYYY-MM-DD>-<hostname>.json`` (and a .png
beside it with matplotlib), and the generated section of ``bench/RESULTS.md``.

    python bench/compare.py                  # the full comparison (minutes)
    python bench/compare.py --quick          # 1 epoch, lighter GEMM timing
    python bench/compare.py --only mnist_mlp,torch --epochs 3 --no-gemm
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the helper modules live beside this script
    sys.path.insert(0, str(HERE))

import compare_gemm as gemm  # noqa: E402
import compare_report as report  # noqa: E402
from compare_rows import ROW_SPECS, Config, load_data, run_row  # noqa: E402

DEFAULT_ROWS = ("mnist_mlp", "mnist_mlp-1t", "reference", "torch", "jax", "sklearn")
VERSIONED = ("mnist_mlp", "numpy", "torch", "jax", "jaxlib", "scikit-learn", "threadpoolctl", "matplotlib")
RESULTS_MD = HERE / "RESULTS.md"


# ---------------------------------------------------------------------------
# Command line


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {value}")
    return value


def _row_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROW_SPECS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown implementation(s) {unknown or text!r}; choose from {', '.join(ROW_SPECS)}")
    return names


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="compare.py",
        description="Time mnist_mlp against NumPy, PyTorch, JAX and scikit-learn on MNIST.",
        epilog=f"implementations: {', '.join(ROW_SPECS)} (torch-seed only with --torch-seed or --only)",
    )
    p.add_argument("--data", default=None, metavar="DIR", help="folder with the MNIST files (default: ./data)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="epochs (default: 20; 1 with --quick)")
    p.add_argument("--batch-size", type=_positive_int, default=8, help="mini-batch size (default: 8)")
    p.add_argument("--lr", type=_positive_float, default=0.1, help="learning rate (default: 0.1)")
    p.add_argument("--hidden", type=_positive_int, nargs="+", default=[300], help="hidden layer widths (default: 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shared initial weights (default: 0)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 epoch, fewer GEMM repeats")
    p.add_argument("--only", type=_row_names, default=None, metavar="NAME,...", help="run only these implementations")
    p.add_argument("--subset", type=_positive_int, default=None, metavar="N",
                   help="use the first N train and N test samples")
    p.add_argument("--torch-seed", action="store_true",
                   help="add the torch-seed row: the seed notebook's Softmax(dim=0) model")
    p.add_argument("--no-gemm", action="store_true", help="skip the GEMM table")
    p.add_argument("--out", type=Path, default=HERE / "results", metavar="DIR",
                   help="where the JSON and PNG go (default: bench/results)")
    p.add_argument("--no-write-results-md", action="store_true", help="leave bench/RESULTS.md alone")
    p.add_argument("--_worker", default=None, choices=list(ROW_SPECS), help=argparse.SUPPRESS)
    p.add_argument("--_result", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker and args._result is None:
        p.error("--_worker needs --_result")
    return args


def make_config(args: argparse.Namespace) -> Config:
    epochs = args.epochs if args.epochs is not None else (1 if args.quick else 20)
    return Config(
        data=args.data, subset=args.subset, epochs=epochs, batch_size=args.batch_size,
        lr=args.lr, hidden=tuple(args.hidden), seed=args.seed,
    )


def selected_rows(args: argparse.Namespace) -> list[str]:
    """The rows to run, in the table's order."""
    wanted = set(args.only) if args.only else set(DEFAULT_ROWS)
    if args.torch_seed:
        wanted.add("torch-seed")
    return [name for name in ROW_SPECS if name in wanted]


# ---------------------------------------------------------------------------
# Running the rows


def worker_main(name: str, cfg: Config, result_path: Path) -> int:
    """Inside the subprocess: time one row and write its measurements."""
    try:
        result = run_row(name, cfg)
    except ImportError as e:
        result = {"name": name, "status": "skipped", "note": f"cannot import a package it needs ({e})"}
    result_path.write_text(json.dumps(result))
    return 0


def run_in_subprocess(name: str, argv: Sequence[str]) -> dict[str, Any]:
    """Runs this script with ``--_worker name`` and the same options; its
    progress and any traceback go to this terminal."""
    spec = ROW_SPECS[name]
    if spec.requires and importlib.util.find_spec(spec.requires) is None:
        note = f"{spec.requires} is not installed"
        print(f"[{name}] skipped: {note}", file=sys.stderr, flush=True)
        return {"name": name, "status": "skipped", "note": note}
    with tempfile.TemporaryDirectory(prefix="compare-") as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--_worker", name, "--_result", str(out)]
        code = subprocess.run(cmd, check=False).returncode
        if code != 0 or not out.exists():
            note = f"the worker exited with code {code}; its output is above"
            print(f"[{name}] failed: {note}", file=sys.stderr, flush=True)
            return {"name": name, "status": "failed", "note": note}
        row = json.loads(out.read_text())
    if row["status"] != "ok":
        print(f"[{name}] {row['status']}: {row['note']}", file=sys.stderr, flush=True)
    return row


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """speedup = this row's median epoch / mnist_mlp's (all threads)."""
    base = next((r for r in rows if r["name"] == "mnist_mlp" and r["status"] == "ok"), None)
    for r in rows:
        if r["status"] == "ok":
            r["speedup"] = r["epoch_median_seconds"] / base["epoch_median_seconds"] if base else None


# ---------------------------------------------------------------------------
# The machine


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "cpu model"):
        m = re.search(rf"^{key}\s*:\s*(.+)$", text, re.MULTILINE)
        if m:
            return m.group(1).strip()
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in VERSIONED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    import mnist_mlp

    out["mnist_mlp"] = mnist_mlp.__version__
    return out


def blas_info() -> list[dict[str, Any]]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("internal_api", "version", "num_threads", "threading_layer", "architecture")
    return [{k: i.get(k) for k in keys} for i in threadpool_info() if i.get("user_api") == "blas"]


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------
# The run


def run_benchmark(args: argparse.Namespace, cfg: Config, argv: Sequence[str]) -> int:
    started = dt.datetime.now().astimezone()
    machine = machine_info()
    try:
        data = load_data(cfg)
    except (OSError, ValueError) as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 2
    sizes = cfg.sizes(data.features)
    samples = (len(data.train), len(data.test))
    nonzero = float(np.count_nonzero(data.train.x) / data.train.x.size)
    del data

    rows = [run_in_subprocess(name, argv) for name in selected_rows(args)]
    add_speedups(rows)
    print("measuring the sgemm floor ...", file=sys.stderr, flush=True)
    floor = gemm.measure_floor(sizes, samples[0], nonzero, args.quick)
    table = None
    if not args.no_gemm:
        print("measuring GEMM rates ...", file=sys.stderr, flush=True)
        table = gemm.gemm_table(sizes, cfg.batch_size, gemm.gemm_thread_counts(os.cpu_count()), args.quick)

    host = socket.gethostname()
    stem = f"{started:%Y-%m-%d}-{re.sub(r'[^A-Za-z0-9._-]+', '-', host)}"
    json_path, png_path = args.out / f"{stem}.json", args.out / f"{stem}.png"
    result: dict[str, Any] = {
        "schema": "mnist_mlp-compare/1",
        "date": started.isoformat(timespec="seconds"),
        "hostname": host,
        "command": shlex.join(["python", sys.argv[0], *argv]),
        "executable": sys.executable,
        "json_name": _display_path(json_path),
        "config": {
            **{k: v for k, v in vars(cfg).items()}, "hidden": list(cfg.hidden), "sizes": sizes,
            "quick": args.quick, "train_samples": samples[0], "test_samples": samples[1],
            "dtype": "float32", "shuffle": False, "rows": selected_rows(args),
        },
        "machine": machine,
        "versions": library_versions(),
        "blas": blas_info(),
        "rows": rows,
        "floor": floor,
        "gemm": table,
        "gemm_numpy_threads_limited": gemm.have_threadpoolctl(),
    }
    print()
    print(report.render(result))
    report.write_json(result, json_path)
    print(f"\nwrote {_display_path(json_path)}")
    note = report.write_png(result, png_path)
    print(note if note else f"wrote {_display_path(png_path)}")
    if not args.no_write_results_md:
        report.update_results_md(RESULTS_MD, report.render_results_md(result))
        print(f"wrote {_display_path(RESULTS_MD)}")
    return 1 if any(r["status"] == "failed" for r in rows) else 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    cfg = make_config(args)
    if args._worker:
        return worker_main(args._worker, cfg, args._result)
    return run_benchmark(args, cfg, argv)


if __name__ == "__main__":
    sys.exit(main())
