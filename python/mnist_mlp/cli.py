"""The `mnist-mlp` command (also `python -m mnist_mlp`): train, evaluate, predict, plot, sweep.

Exit codes: 0 success, 1 a failure (one line on stderr, ``mnist-mlp: error: ...``;
``--debug`` shows the traceback instead), 2 a usage error, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import importlib.util
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import _validate as V
from ._files import atomic_write, check_regular_file, check_writable_target, display_name
from ._progress import progress_bar

MAIN_EXAMPLES = """examples:
  mnist-mlp train --save model.npz --metrics-json metrics.json --plot curves.png
  mnist-mlp evaluate model.npz
  mnist-mlp predict model.npz digit.png
  mnist-mlp plot --model model.npz --metrics metrics.json --out-dir figures
  mnist-mlp sweep --hidden 128 300 512,256 --lr 0.05 0.1 --batch-size 8 32 --epochs 3

Run "mnist-mlp COMMAND --help" for the options of each command.
"""

TRAIN_EXAMPLES = """examples:
  mnist-mlp train                          # the seed notebook's run: 784-300-10, lr 0.1, batch 8, 20 epochs
  mnist-mlp train --epochs 1 --data ~/mnist
  mnist-mlp train --hidden 500 100 --dtype float64 --save model.npz
  mnist-mlp train --save model.npz --metrics-json metrics.json --plot curves.png
  mnist-mlp train --dataset fashion-mnist --data ~/datasets --shuffle
  mnist-mlp train --epochs 200 --save m.npz --checkpoint-every 10
  mnist-mlp train --epochs 200 --resume m.npz --save m.npz   # on to 200 epochs in total

Prints the seed notebook's line after every epoch (its "Error" is the cross-entropy loss;
with a progress bar that moves within each epoch when stdout is a terminal), then "Result:"
and the final line with the time. Output paths are checked before the data is read. Ctrl-C
writes --save, --metrics-json and --plot from the last completed epoch, then exits 130.
"""

EVALUATE_EXAMPLES = """examples:
  mnist-mlp evaluate model.npz                    # MNIST's test set from ./data
  mnist-mlp evaluate model.npz --data ~/mnist --split train
  mnist-mlp evaluate model.npz --dataset fashion-mnist

Prints the loss, the accuracy and, per class, the number of samples, how many
were classified right, precision, recall and F1.
"""

PREDICT_EXAMPLES = """examples:
  mnist-mlp predict model.npz digit.png                 # a photo or drawing of one digit
  mnist-mlp predict model.npz a.png b.jpg --save-inputs seen/
  mnist-mlp predict model.npz batch.npy                 # one line per row
  mnist-mlp predict model.npz data/t10k-images-idx3-ubyte.gz

INPUT is an image (.png .jpg .jpeg .bmp .gif .tif .webp; needs Pillow:
pip install "mnist_mlp[images]"), a .npy array or an IDX file. Images are made
MNIST-like: grayscale; inverted when most pixels are on the light side of
Otsu's threshold (dark ink on light paper -> white digit on black, as in MNIST;
a dark frame or a scanner's dark edge does not change this); the background
(its median plus 5 median absolute deviations, so paper grain goes too) to 0;
regions of the ink's colour that touch the edge and run along more than half
of a side or do not reach the middle (a frame, a scanner's edge, a shadow)
removed unless nothing else is left; contrast stretched; the digit's bounding
box scaled to fit 20x20 keeping its aspect ratio; pasted into 28x28 with its
centre of mass at the centre.
Arrays: rows of the model's input size, or (n, 28, 28) images, or a
single image; uint8 (and integer arrays within 0..255) are pixels, scaled by
1/255; floats are used as they are (MNIST pixels / 255); bool is refused.
A bad input is reported and the others still classified (exit code 1).
Prints "INPUT: CLASS (p=PROBABILITY)", with [row] after arrays.
"""

PLOT_EXAMPLES = """examples:
  mnist-mlp plot --metrics metrics.json                 # curves.png
  mnist-mlp plot --model model.npz --out-dir figures    # curves (from the model's history), confusion, errors
  mnist-mlp plot --model model.npz --metrics metrics.json --data ~/mnist --max-errors 0
  mnist-mlp plot --metrics metrics.json --format pdf    # curves.pdf

Writes figures in --out-dir, as PNG unless --format names another format the
installed matplotlib writes (pdf, svg, jpg, ...): curves.png (cross-entropy
loss and accuracy per epoch, numbered from 0 as train prints them; from
--metrics or else the model's saved history), confusion.png (confusion matrix
on the test set: the counts, coloured by each error's share of its true class)
and misclassified.png (the first --max-errors misclassified test digits,
true -> predicted; with --max-errors 0 it is not written). Needs matplotlib:
pip install "mnist_mlp[plot]".
"""


SWEEP_EXAMPLES = """examples:
  mnist-mlp sweep --hidden 128 300 512,256 --lr 0.05 0.1 --batch-size 8 32 --epochs 3
  mnist-mlp sweep --hidden 300 --lr 0.05 0.1 --epochs 3 --workers 2 --out sweep.csv --save-best best.npz
  mnist-mlp sweep --scheduler tcp://10.0.0.5:8786 --hidden 300 1024 --optimizer adam --lr 1e-3 3e-3 --shuffle

Runs every combination of the values given (each option takes one or more) on
a dask.distributed cluster (pip install "mnist_mlp[dask]"): by default a
LocalCluster on this machine, --workers processes (default: one per core /
--threads-per-trial), closed at the end; with --scheduler, the workers of a
running scheduler. Each trial is an MLP trained on the training set and scored
on the test set (the validation data). --hidden 512,256 is one network with two
hidden layers. A worker that dies costs its trial's attempt only: the trial
reruns elsewhere, up to --retries times. A trial that fails (diverges, say) is
reported and the others go on.
Prints a line per finished trial (with a progress bar on a terminal), then a
table sorted by validation accuracy.
"""


class CLIError(Exception):
    """A failure to report in one line (exit 1)."""


# ---------------------------------------------------------------------------
# Arguments


def _int_at_least(low: int, high: int = 2**63 - 1) -> Any:
    """An argparse type: an integer in [low, high] (a range error is a usage error, exit 2)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {v}")
        if v > high:
            raise argparse.ArgumentTypeError(f"must be <= {high}, got {text if len(text) <= 30 else text[:27] + '...'}")
        return v

    parse.__name__ = "int"
    return parse


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not (v > 0 and v != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _widths(text: str) -> tuple[int, ...]:
    """An argparse type for --hidden of sweep: "512,256" is one network's hidden widths."""
    parse = _int_at_least(1)
    parts = text.split(",")
    if not text or any(not part.strip() for part in parts):
        raise argparse.ArgumentTypeError(f"invalid widths {text!r}: use W or W,W,... (e.g. 512,256)")
    return tuple(parse(part.strip()) for part in parts)


def _rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return v


def _parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(
        prog="mnist-mlp",
        description="Train multilayer perceptrons on MNIST with a C++ core; evaluate, predict and plot.",
        epilog=MAIN_EXAMPLES,
        formatter_class=raw,
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data", default=None, metavar="DIR",
                      help="folder with the dataset's IDX files (default: $MNIST_MLP_DATA, then ./data, then a "
                           "source checkout's data/, then the download cache)")
    data.add_argument("--dataset", default=None, metavar="NAME",
                      help="a named dataset from mnist_mlp.datasets (e.g. mnist, fashion-mnist), looked for "
                           "in --data, fetched when missing (default: MNIST from --data)")
    threads = argparse.ArgumentParser(add_help=False)
    threads.add_argument("--threads", type=_int_at_least(1, 2**31 - 1), default=None, help="threads (default: all cores, or OMP_NUM_THREADS)")

    t = sub.add_parser("train", parents=[common, data, threads], help="train a model (defaults: the seed notebook's run)",
                       description="Train an MLP (ReLU, softmax, cross-entropy, SGD) and report the seed notebook's lines.",
                       epilog=TRAIN_EXAMPLES, formatter_class=raw)
    t.add_argument("--hidden", type=_int_at_least(1), nargs="+", default=None, metavar="N", help="hidden layer widths (default: 300)")
    t.add_argument("--lr", type=_positive_float, default=0.1, help="learning rate (default: 0.1)")
    t.add_argument("--batch-size", type=_int_at_least(1), default=8, help="mini-batch size (default: 8)")
    t.add_argument("--epochs", type=_int_at_least(1), default=20,
                   help="epochs (default: 20); with --resume, the total including the model's earlier epochs")
    t.add_argument("--seed", type=int, default=None, help="seed for the initial weights and shuffling (default: 0)")
    t.add_argument("--dtype", choices=["float32", "float64"], default=None, help="precision (default: float32)")
    t.add_argument("--shuffle", action="store_true", help="shuffle the training set every epoch")
    t.add_argument("--save", default=None, metavar="MODEL.npz", help="write the trained model here")
    t.add_argument("--metrics-json", default=None, metavar="FILE",
                   help="write the configuration, the per-epoch history and the final result as JSON")
    t.add_argument("--plot", default=None, metavar="FILE",
                   help="draw the loss and accuracy curves to FILE, in the format its extension names "
                        "(.png, .pdf, .svg, .jpg, ...; needs matplotlib)")
    t.add_argument("--checkpoint-every", type=_int_at_least(1), default=None, metavar="N",
                   help="also write --save and --metrics-json after every N epochs")
    t.add_argument("--resume", default=None, metavar="MODEL.npz",
                   help="continue training this saved model (its weights, history and shuffling state) "
                        "up to --epochs in total")
    t.add_argument("--quiet", action="store_true", help="print only the result")

    e = sub.add_parser("evaluate", parents=[common, data, threads], help="loss, accuracy and a per-class table",
                       description="Evaluate a saved model on a dataset's test (or training) set.",
                       epilog=EVALUATE_EXAMPLES, formatter_class=raw)
    e.add_argument("model", metavar="MODEL.npz", help="a model written by train --save or MLP.save")
    e.add_argument("--split", choices=["test", "train"], default="test", help="which set (default: test)")

    pr = sub.add_parser("predict", parents=[common, threads], help="classify images, .npy arrays or IDX files",
                        description="Print the most probable class and its probability for every input.",
                        epilog=PREDICT_EXAMPLES, formatter_class=raw)
    pr.add_argument("model", metavar="MODEL.npz", help="a model written by train --save or MLP.save")
    pr.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, .npy arrays or IDX files")
    pr.add_argument("--save-inputs", default=None, metavar="DIR",
                    help="write the 28x28 image each picture was turned into, as PNG, to DIR (to check the conversion)")

    pl = sub.add_parser("plot", parents=[common, data], help="training curves, confusion matrix, misclassified digits",
                        description="Draw figures from a metrics JSON and/or a saved model.",
                        epilog=PLOT_EXAMPLES, formatter_class=raw)
    pl.add_argument("--model", default=None, metavar="MODEL.npz", help="a saved model (confusion matrix, misclassified digits)")
    pl.add_argument("--metrics", default=None, metavar="METRICS.json", help="written by train --metrics-json (curves)")
    pl.add_argument("--out-dir", default=".", metavar="DIR", help="where the figures go (default: .)")
    pl.add_argument("--format", default="png", metavar="EXT",
                    help="the figures' file format: png, pdf, svg, jpg, ... (default: png)")
    pl.add_argument("--max-errors", type=_int_at_least(0), default=36, metavar="N",
                    help="misclassified digits shown (default: 36; 0: no misclassified.png)")

    sw = sub.add_parser("sweep", parents=[common, data], help="a hyperparameter sweep on a dask.distributed cluster",
                        description="Train one model per combination of the values given, in parallel on "
                                    "dask.distributed workers, and rank them by validation (test set) accuracy.",
                        epilog=SWEEP_EXAMPLES, formatter_class=raw)
    sw.add_argument("--hidden", type=_widths, nargs="+", default=[(300,)], metavar="W[,W...]",
                    help="networks: hidden widths, comma-separated for several layers (default: 300)")
    sw.add_argument("--lr", type=_positive_float, nargs="+", default=None,
                    help="learning rates (default: 0.1; with --optimizer, that optimizer's default)")
    sw.add_argument("--batch-size", type=_int_at_least(1), nargs="+", default=[8], metavar="N",
                    help="mini-batch sizes (default: 8)")
    sw.add_argument("--epochs", type=_int_at_least(1), nargs="+", default=[20], metavar="N", help="epochs (default: 20)")
    sw.add_argument("--seed", type=_int_at_least(0), nargs="+", default=[0], metavar="N",
                    help="seeds for the initial weights and shuffling (default: 0)")
    sw.add_argument("--dtype", choices=["float32", "float64"], nargs="+", default=["float32"],
                    help="precisions (default: float32)")
    sw.add_argument("--activation", choices=["relu", "tanh", "logistic", "identity"], nargs="+", default=None,
                    help="hidden activations (default: relu)")
    sw.add_argument("--dropout", type=_rate, nargs="+", default=None, metavar="P",
                    help="dropout rates after every hidden layer (default: 0)")
    sw.add_argument("--optimizer", choices=["sgd", "adam", "adamw", "rmsprop"], nargs="+", default=None,
                    help="optimizers, with torch's defaults and --lr (default: the seed's plain SGD)")
    sw.add_argument("--shuffle", action="store_true", help="shuffle the training set every epoch")
    sw.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="a running dask scheduler, e.g. tcp://10.0.0.5:8786 (default: start a LocalCluster)")
    sw.add_argument("--workers", type=_int_at_least(1), default=None, metavar="N",
                    help="worker processes of the LocalCluster (default: cores / --threads-per-trial)")
    sw.add_argument("--threads-per-trial", type=_int_at_least(1), default=1, metavar="N",
                    help="OpenMP threads of each trial (default: 1)")
    sw.add_argument("--retries", type=_int_at_least(0), default=2, metavar="N",
                    help="reruns of a trial whose worker died (default: 2)")
    sw.add_argument("--out", default=None, metavar="SWEEP.csv", help="write one row per trial as CSV")
    sw.add_argument("--json", default=None, metavar="SWEEP.json", help="write every trial, histories included, as JSON")
    sw.add_argument("--save-best", default=None, metavar="MODEL.npz", help="write the best trial's model here")
    for command in (t, e, pr, pl, sw):
        command.set_defaults(usage_error=command.error)
    return p


def _version() -> str:
    try:
        from . import __version__

        return __version__
    except Exception:  # pragma: no cover - a broken install still gets --help
        return "?"


# ---------------------------------------------------------------------------
# Helpers


def _load_data(args: argparse.Namespace, split: str | None = None) -> tuple[Any, Any, str, str]:
    """((train_x, train_y), (test_x, test_y), a description, the folder read, absolute)
    from --data / --dataset. With split ("train" or "test") only that set's two
    files are needed and read, and the other set is None. Error messages name
    the command line's options (--data DIR, --dataset NAME)."""
    if args.dataset:
        if importlib.util.find_spec("mnist_mlp.datasets") is None:
            raise CLIError(
                f"--dataset {args.dataset}: this installation of mnist_mlp has no mnist_mlp.datasets module; "
                "use --data DIR with the four MNIST-format IDX files instead"
            )
        from . import datasets

        got = datasets._load(args.dataset, root=args.data, split=split, wording=datasets._CLI_WORDING)
        args.dataset = got.name  # the registry's spelling (--dataset MNIST is mnist), as metrics.json records it
        return got.train, got.test, got.name, str(got.folder)
    from .datasets import _CLI_WORDING, _load_mnist

    got = _load_mnist(args.data, split, _CLI_WORDING)
    return got.train, got.test, "mnist" + (f" ({args.data})" if args.data else ""), str(got.folder)


def _num_classes(*label_arrays: np.ndarray) -> int:
    if not any(len(y) for y in label_arrays):
        raise CLIError("the dataset is empty: its label files hold no labels")
    return max(2, max(int(np.max(y)) for y in label_arrays if len(y)) + 1)


def _require(module: str, extra: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise CLIError(f"{what} needs {module}, which is not installed: pip install \"mnist_mlp[{extra}]\"")


def _atomic_write_text(path: str, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def _result_line(rec: dict[str, Any], seconds: float) -> str:
    """The seed notebook's final line, saying what its "Error" is: the cross-entropy loss."""
    return (
        f"Loss on test: {rec['test_loss']:.5f}; Loss on train: {rec['train_loss']:.5f}; "
        f"Accuracy on test: {rec['test_accuracy']:.5f}; Accuracy on train: {rec['train_accuracy']:.5f}; "
        f"Time: {seconds:.2f} s"
    )


# ---------------------------------------------------------------------------
# Commands


def _check_outputs(*pairs: tuple[str, str | None]) -> None:
    """Checks (flag, path) outputs before any work: a missing or read-only
    folder, a directory where the file should go, or two flags naming one file
    fail now, not after training."""
    seen: dict[str, str] = {}
    for flag, path in pairs:
        if path is None:
            continue
        try:
            check_writable_target(path)
        except (OSError, ValueError) as e:
            raise CLIError(f"{flag}: {e}") from None
        key = os.path.realpath(path)
        if key in seen:
            raise CLIError(f"{seen[key]} and {flag} name the same file, {display_name(path)}")
        seen[key] = flag


def _train(args: argparse.Namespace) -> int:
    from . import MLP
    from .model import _epoch_line

    # Everything that can be checked without the data is checked first.
    if args.plot:
        _require("matplotlib", "plot", "--plot")
        from . import plots

        try:
            plots.check_figure_path(args.plot)
        except ValueError as e:
            raise CLIError(f"--plot: {e}") from None
    _check_outputs(("--save", args.save), ("--metrics-json", args.metrics_json), ("--plot", args.plot))
    if args.checkpoint_every is not None and not (args.save or args.metrics_json):
        args.usage_error("--checkpoint-every needs --save (and/or --metrics-json): that is where checkpoints go")
    model = None
    if args.resume:
        model = _load_model(args.resume)
        hidden = model.layer_sizes[1:-1]
        if args.hidden is not None and list(args.hidden) != hidden:
            args.usage_error(f"--hidden {' '.join(map(str, args.hidden))} differs from the resumed model's "
                             f"hidden layers {' '.join(map(str, hidden))}; leave --hidden out with --resume")
        if args.dtype is not None and args.dtype != model.dtype.name:
            args.usage_error(f"--dtype {args.dtype} differs from the resumed model's {model.dtype.name}")
        if args.seed is not None:
            args.usage_error("--seed has no effect with --resume: the model file carries its shuffling state")
        if len(model.history) >= args.epochs:
            raise CLIError(
                f"--resume {display_name(args.resume)}: the model has already been trained for "
                f"{len(model.history)} epochs; --epochs is the total, so ask for more than {len(model.history)}"
            )
    elif args.seed is None:
        args.seed = 0  # the default; a resumed model's shuffling state comes from its file (seed stays None)
    (x, y), (xt, yt), source, folder = _load_data(args)
    if model is None:
        features = int(np.prod(x.shape[1:]))
        sizes = [features, *(args.hidden or [300]), _num_classes(y, yt)]
        model = MLP(sizes, seed=args.seed, dtype=args.dtype or "float32")
    else:
        sizes = model.layer_sizes
        _check_fits(model, x, y, f"the training set of {source}")
        _check_fits(model, xt, yt, f"the test set of {source}")
    done_before = len(model.history)
    epochs = args.epochs - done_before
    bar = progress_bar(epochs, sys.stdout, enabled=not args.quiet)
    t0 = time.perf_counter()
    last_state: list[dict[str, Any]] = []  # the model after the last completed epoch, for Ctrl-C

    def on_epoch(rec: dict[str, Any]) -> None:
        last_state[:] = [model.__getstate__()]  # first: an epoch whose line is shown is one Ctrl-C keeps
        if not args.quiet:
            bar.write(_epoch_line(rec))
        bar.update(rec)
        n = rec["epoch"] + 1
        if args.checkpoint_every and n % args.checkpoint_every == 0 and n < args.epochs:
            for line in _write_outputs(args, model, sizes, source, folder, len(x), len(xt), time.perf_counter() - t0,
                                       status="checkpoint", plot=False):
                bar.write(f"checkpoint after epoch {rec['epoch']}: {line}")

    try:
        try:
            model.fit(
                x, y, epochs=epochs, lr=args.lr, batch_size=args.batch_size, shuffle=args.shuffle,
                validation_data=(xt, yt), num_threads=args.threads, callback=on_epoch, progress=bar.batches,
            )
        finally:
            bar.close()
    except KeyboardInterrupt:
        completed = len(last_state[0]["history"]) if last_state else done_before
        print(f"interrupted during epoch {completed} (of {args.epochs}, numbered from 0)", file=sys.stderr, flush=True)
        if not last_state:
            if args.save or args.metrics_json or args.plot:
                print("no epoch completed: nothing written", file=sys.stderr)
            return 130
        snapshot = MLP.__new__(MLP)
        snapshot.__setstate__(last_state[0])
        for line in _write_outputs(args, snapshot, sizes, source, folder, len(x), len(xt), time.perf_counter() - t0,
                                   status="interrupted"):
            print(f"{line} (the {completed} completed epochs)", file=sys.stderr)
        return 130
    elapsed = time.perf_counter() - t0
    print("Result:")
    print(_result_line(model.history[-1], elapsed), flush=True)
    for line in _write_outputs(args, model, sizes, source, folder, len(x), len(xt), elapsed, status="completed"):
        print(line)
    return 0


def _write_outputs(args: argparse.Namespace, model: Any, sizes: list[int], source: str, folder: str,
                   train_samples: int, test_samples: int, seconds: float, *, status: str,
                   plot: bool = True) -> list[str]:
    """Writes what train was asked for (--save, --metrics-json, --plot) from
    ``model``; returns a line per file written."""
    from . import __version__

    lines = []
    if args.save:
        model.save(args.save)
        lines.append(f"saved {args.save}")
    last = model.history[-1]
    if args.metrics_json:
        doc = {
            "format": "mnist_mlp.metrics/1",
            "version": __version__,
            "config": {
                "dataset": args.dataset or "mnist",
                "data": folder,
                "layer_sizes": sizes,
                "lr": args.lr,
                "batch_size": args.batch_size,
                "epochs": args.epochs,
                "seed": args.seed,  # None when resumed: the file's shuffling state
                "threads": args.threads,
                "dtype": model.dtype.name,
                "shuffle": args.shuffle,
                "resumed_from": args.resume,
                "train_samples": train_samples,
                "test_samples": test_samples,
            },
            "history": model.history,
            "result": {
                "status": status,  # completed, checkpoint (training goes on) or interrupted (Ctrl-C)
                "train_loss": last["train_loss"],
                "train_accuracy": last["train_accuracy"],
                "test_loss": last["test_loss"],
                "test_accuracy": last["test_accuracy"],
                "epochs": len(model.history),
                "seconds": seconds,
            },
        }
        _atomic_write_text(args.metrics_json, json.dumps(doc, indent=2) + "\n")
        lines.append(f"wrote {args.metrics_json}")
    if args.plot and plot:
        from . import plots

        plots.training_curves(model.history, args.plot, title=f"{'-'.join(map(str, sizes))} MLP on {source}")
        lines.append(f"wrote {args.plot}")
    return lines


def _load_model(path: str) -> Any:
    from . import MLP

    return MLP.load(path)


def _check_fits(model: Any, x: np.ndarray, y: np.ndarray, what: str) -> None:
    features = int(np.prod(x.shape[1:]))
    if features != model.layer_sizes[0]:
        raise CLIError(f"{what} has {features} features per sample, the model expects {model.layer_sizes[0]}")
    classes = model.layer_sizes[-1]
    if len(y) and int(y.max()) >= classes:
        raise CLIError(f"{what} has labels up to {int(y.max())}, the model has {classes} classes")


def per_class_table(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> str:
    """Per class: samples, correct, precision, recall, F1 (a plain-text table)."""
    from .plots import confusion_counts

    cm = confusion_counts(y_true, y_pred, classes)
    support, predicted, correct = cm.sum(axis=1), cm.sum(axis=0), np.diag(cm)

    def ratio(a: float, b: float) -> str:
        return f"{a / b:.4f}" if b else "-"

    lines = [f"{'class':>5}  {'count':>6}  {'correct':>7}  {'precision':>9}  {'recall':>6}  {'f1':>6}"]
    for c in range(classes):
        p = correct[c] / predicted[c] if predicted[c] else math.nan
        r = correct[c] / support[c] if support[c] else math.nan
        f1 = "-" if not (p + r > 0) else f"{2 * p * r / (p + r):.4f}"
        lines.append(
            f"{c:>5}  {support[c]:>6}  {correct[c]:>7}  {ratio(correct[c], predicted[c]):>9}  "
            f"{ratio(correct[c], support[c]):>6}  {f1:>6}"
        )
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    train, test, source, folder = _load_data(args, args.split)
    x, y = test if args.split == "test" else train
    _check_fits(model, x, y, f"the {args.split} set of {source}")
    loss, acc = model.evaluate(x, y, num_threads=args.threads)
    pred = model.predict(x, num_threads=args.threads)
    print(f"model: {args.model} ({'-'.join(map(str, model.layer_sizes))}, {model.dtype.name}, "
          f"{len(model.history)} epochs trained)")
    print(f"data: {args.split} set of {source}, {len(x)} samples (from {display_name(folder)})")
    print(f"loss: {loss:.5f}")
    print(f"accuracy: {acc:.5f} ({int(np.sum(pred == y))} / {len(y)})")
    print()
    print(per_class_table(y, pred, model.layer_sizes[-1]))
    return 0


def _read_input(path: str, features: int) -> tuple[np.ndarray, bool]:
    """(rows, is_image) for one INPUT of predict. Arrays follow the API's rule
    (`_validate.input_values`): integers 0..255 are pixels, floats features."""
    from .images import IMAGE_SUFFIXES

    name = display_name(path)
    if path.lower().endswith(IMAGE_SUFFIXES):
        from .images import load_image

        return load_image(path).reshape(1, -1), True
    check_regular_file(path, "an input file")  # FileNotFoundError; a FIFO would block np.load
    if path.lower().endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
        code = f"np.load({name!r})"
    else:
        from . import read_idx

        arr = read_idx(path)
        code = f"mnist_mlp.read_idx({name!r})"
    arr = V.input_values(arr, name, code)
    if V.looks_unscaled(arr):
        V.unscaled_warning(name, code=code)
    if arr.ndim >= 2 and int(np.prod(arr.shape[1:])) == features:
        return arr.reshape(arr.shape[0], features), False
    if arr.size == features:
        return arr.reshape(1, features), False
    raise CLIError(f"{name}: an array of shape {arr.shape} does not hold rows of {features} values (the model's input)")


def _saved_input_names(paths: Sequence[str], folder: str) -> list[Path | None]:
    """Where --save-inputs writes each input (None for those that are not
    images): STEM.28x28.png, or, where stems collide (a/d.png and b/d.png,
    seven.gif and seven.bmp), NAME.28x28.png with the extension kept, and -2,
    -3, ... in the order given beyond that."""
    from .images import IMAGE_SUFFIXES

    is_image = [p.lower().endswith(IMAGE_SUFFIXES) for p in paths]
    stems = collections.Counter(Path(p).stem.casefold() for p, img in zip(paths, is_image) if img)
    out: list[Path | None] = []
    used: set[str] = set()
    for p, img in zip(paths, is_image):
        if not img:
            out.append(None)
            continue
        base = Path(p).stem if stems[Path(p).stem.casefold()] == 1 else Path(p).name
        name, k = base, 1
        while name.casefold() in used:  # casefold: D.png and d.png are one file on macOS and Windows
            k += 1
            name = f"{base}-{k}"
        used.add(name.casefold())
        out.append(Path(folder) / f"{name}.28x28.png")
    return out


def _predict(args: argparse.Namespace) -> int:
    model = _load_model(args.model)
    features = model.layer_sizes[0]
    from .images import IMAGE_SUFFIXES

    if any(p.lower().endswith(IMAGE_SUFFIXES) for p in args.inputs):
        _require("PIL", "images", "reading images")
    if args.save_inputs:
        if os.path.exists(args.save_inputs) and not os.path.isdir(args.save_inputs):
            raise CLIError(f"--save-inputs {display_name(args.save_inputs)}: exists and is not a folder")
        os.makedirs(args.save_inputs, exist_ok=True)
        targets = _saved_input_names(args.inputs, args.save_inputs)
    failed = []
    for j, path in enumerate(args.inputs):
        # Each input on its own: a bad one is reported and the others go on.
        try:
            x, is_image = _read_input(path, features)
            if is_image and features != 784:
                raise CLIError(f"{display_name(path)}: images become 28x28 = 784 values, the model expects {features}")
            x = V.inputs(x, features, name=display_name(path), dtype=model.dtype)  # errors name the file
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", V.UnscaledInputWarning)  # _read_input warned, naming the file
                probs = model.predict_proba(x, num_threads=args.threads)
        except (CLIError, OSError, ValueError, TypeError) as e:
            if args.debug:
                raise
            print(f"mnist-mlp: error: {e}", file=sys.stderr, flush=True)
            failed.append(path)
            continue
        cls = probs.argmax(axis=1)
        if is_image:
            line = f"{display_name(path)}: {cls[0]} (p={probs[0, cls[0]]:.4f})"
            if args.save_inputs:
                from PIL import Image

                out = targets[j]
                Image.fromarray(x.reshape(28, 28)).save(out)
                line += f", seen as {display_name(str(out))}"
            print(line, flush=True)
        else:
            for i, c in enumerate(cls):
                print(f"{display_name(path)}[{i}]: {c} (p={probs[i, c]:.4f})")
    if failed and len(args.inputs) == 1:
        return 1  # its error line says it all
    if failed:
        raise CLIError(f"{len(failed)} of {len(args.inputs)} inputs could not be classified: "
                       + ", ".join(display_name(p) for p in failed[:5]) + (", ..." if len(failed) > 5 else ""))
    return 0


def _plot(args: argparse.Namespace, usage: Callable[[str], Any]) -> int:
    if not args.model and not args.metrics:
        usage("plot needs --model and/or --metrics")
    _require("matplotlib", "plot", "plot")
    from . import plots

    out = Path(args.out_dir)
    ext = args.format.lower().lstrip(".")
    try:
        plots.check_figure_path(out / f"curves.{ext}")
    except ValueError as e:
        raise CLIError(f"--format {args.format}: {str(e).split(': ', 1)[-1]}") from None
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out-dir {display_name(args.out_dir)}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    model = _load_model(args.model) if args.model else None
    history: list[dict[str, Any]] = []
    title = None
    if args.metrics:
        with open(args.metrics, encoding="utf-8") as f:
            try:
                doc = json.load(f)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise CLIError(f"{args.metrics}: not valid JSON ({e})") from e
        if not isinstance(doc, dict) or not isinstance(doc.get("history"), list):
            raise CLIError(f"{args.metrics}: not a metrics file of mnist-mlp train --metrics-json (no 'history' list)")
        history = doc["history"]
        cfg = doc.get("config") or {}
        if not isinstance(cfg, dict):
            raise CLIError(f"{args.metrics}: 'config' must be an object, got a {type(cfg).__name__}")
        if isinstance(cfg.get("layer_sizes"), list) and cfg["layer_sizes"]:
            title = f"{'-'.join(map(str, cfg['layer_sizes']))} MLP on {cfg.get('dataset', '?')}"
    elif model is not None:
        history = model.history
        title = f"{'-'.join(map(str, model.layer_sizes))} MLP ({args.model})"
    if history:
        print(f"wrote {plots.training_curves(history, out / f'curves.{ext}', title=title)}")
    elif model is not None:
        print(f"{args.model}: the model has no training history: no curves")
    if model is not None:
        _, (xt, yt), source, _ = _load_data(args, "test")
        _check_fits(model, xt, yt, f"the test set of {source}")
        probs = model.predict_proba(xt)
        pred = probs.argmax(axis=1)
        classes = list(range(model.layer_sizes[-1]))
        print(f"wrote {plots.confusion_matrix(yt, pred, out / f'confusion.{ext}', labels=classes)}")
        wrong = int(np.sum(pred != yt))
        if args.max_errors == 0:
            print(f"skipped {out / f'misclassified.{ext}'} (--max-errors 0): {wrong} of {len(yt)} test digits misclassified")
        else:
            images = xt if xt.ndim == 3 else xt.reshape(len(xt), -1)
            path = plots.misclassified_grid(images, yt, pred, out / f"misclassified.{ext}", probs=probs,
                                            max_images=args.max_errors)
            print(f"wrote {path} ({wrong} of {len(yt)} test digits misclassified, "
                  f"{min(wrong, args.max_errors)} shown)")
    return 0


def _sweep(args: argparse.Namespace, usage: Callable[[str], Any]) -> int:
    if args.workers is not None and args.scheduler:
        usage("--workers sizes the LocalCluster; the workers of --scheduler are the scheduler's")
    _require("distributed", "dask", "sweep")
    _check_outputs(("--out", args.out), ("--json", args.json), ("--save-best", args.save_best))
    from .sweep import SweepResult, _cell, sweep

    grid: dict[str, list[Any]] = {"hidden": args.hidden}
    if args.lr is not None or args.optimizer is None:
        grid["lr"] = args.lr if args.lr is not None else [0.1]
    grid.update(batch_size=args.batch_size, epochs=args.epochs, seed=args.seed, dtype=args.dtype,
                shuffle=[args.shuffle])
    for key in ("activation", "dropout", "optimizer"):
        if getattr(args, key) is not None:
            grid[key] = getattr(args, key)
    shown = ["hidden", "lr", "batch_size", "epochs"] + [
        k for k, v in grid.items() if len(v) > 1 and k not in ("hidden", "lr", "batch_size", "epochs")]
    train, test, source, _ = _load_data(args)
    total = 1
    for values in grid.values():
        total *= len(values)
    bar = progress_bar(total, sys.stdout, unit="trial", label="best validation accuracy")
    best: list[float] = []

    def on_trial(done: int, total: int, trial: dict[str, Any]) -> None:
        p = trial["params"]
        what = " ".join(f"{k}={_cell(p[k])}" for k in shown)
        if trial["error"] is None:
            best[:] = [max(best + [trial["test_accuracy"]])]
            outcome = (f"validation accuracy {trial['test_accuracy']:.5f}, loss {trial['test_loss']:.5f} "
                       f"({trial['train_seconds']:.2f} s on {trial['worker']}, attempts {trial['attempts']})")
        else:
            outcome = f"failed after {trial['attempts']} attempt(s): {trial['error']}"
        bar.write(f"trial {trial['trial']} ({done}/{total}): {what}: {outcome}")
        bar.update({"test_accuracy": best[0]} if best else {})

    t0 = time.perf_counter()
    try:
        res: SweepResult = sweep(grid, train, test, scheduler=args.scheduler, retries=args.retries,
                                 threads_per_trial=args.threads_per_trial, progress=on_trial, n_workers=args.workers)
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    failed = sum(t["error"] is not None for t in res.trials)
    print(f"Sweep: {len(res.trials)} trials on {source}, {failed} failed, {elapsed:.1f} s; "
          f"validated on the test set ({len(test[0])} samples)")
    print(res.table(shown))
    if args.out:
        res.to_csv(args.out)
        print(f"wrote {args.out}")
    if args.json:
        res.to_json(args.json)
        print(f"wrote {args.json}")
    best_trial = res.best
    if best_trial is None:
        raise CLIError(f"every trial failed; the first: {res.trials[0]['error']}")
    if args.save_best:
        res.best_model().save(args.save_best)
        print(f"saved {args.save_best} (trial {best_trial['trial']}, validation accuracy "
              f"{best_trial['test_accuracy']:.5f})")
    return 0


# ---------------------------------------------------------------------------


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: Any = None, line: str | None = None) -> None:
    print(f"mnist-mlp: warning: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        if not args.debug:
            warnings.showwarning = _warning_line  # one line each, like the errors
        return _run(args, parser)


def _run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    try:
        if args.command == "train":
            return _train(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "plot":
            return _plot(args, args.usage_error)
        if args.command == "sweep":
            return _sweep(args, args.usage_error)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # stdout closed early (mnist-mlp predict ... | head): stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except (CLIError, OSError, ValueError, TypeError, FloatingPointError, ImportError, KeyError) as e:
        if args.debug:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"mnist-mlp: error: {message}", file=sys.stderr)
        return 1
    except MemoryError as e:  # the C++ core's std::bad_alloc arrives as MemoryError
        if args.debug:
            raise
        detail = f" ({e})" if str(e) and str(e) != "std::bad_alloc" else ""
        print(f"mnist-mlp: error: out of memory{detail}: the network or the data is too large for this machine",
              file=sys.stderr)
        return 1
    except Exception as e:  # anything else is a bug: still one line, the traceback on request
        if args.debug:
            raise
        print(f"mnist-mlp: error: unexpected {type(e).__name__}: {e} (run with --debug for the traceback, "
              "and please report it)", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
