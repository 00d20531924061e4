"""The `mnist-mlp` command (also `python -m mnist_mlp`)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np

EXAMPLES = """examples:
  mnist-mlp train                          # the seed notebook's run: 784-300-10, lr 0.1, batch 8, 20 epochs
  mnist-mlp train --epochs 1 --data ~/mnist
  mnist-mlp train --hidden 500 100 --dtype float64 --save model.npz
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="mnist-mlp",
        description="Train multilayer perceptrons on MNIST with a C++ core.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train",
        help="train a model (defaults: the seed notebook's run)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--data", default=None, help="folder with the four MNIST IDX files (default: ./data)")
    t.add_argument("--hidden", type=int, nargs="+", default=[300], help="hidden layer widths (default: 300)")
    t.add_argument("--lr", type=float, default=0.1, help="learning rate (default: 0.1)")
    t.add_argument("--batch-size", type=int, default=8, help="mini-batch size (default: 8)")
    t.add_argument("--epochs", type=int, default=20, help="epochs (default: 20)")
    t.add_argument("--seed", type=int, default=0, help="seed for the initial weights and shuffling (default: 0)")
    t.add_argument("--threads", type=int, default=None, help="threads (default: all cores, or OMP_NUM_THREADS)")
    t.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    t.add_argument("--shuffle", action="store_true", help="shuffle the training set every epoch")
    t.add_argument("--save", default=None, metavar="MODEL.npz", help="write the trained model here")
    t.add_argument("--quiet", action="store_true", help="print only the result")
    return p


def _train(args: argparse.Namespace) -> int:
    from . import MLP, load_mnist

    (x, y), (xt, yt) = load_mnist(args.data)
    model = MLP([x.shape[1] * x.shape[2], *args.hidden, 10], seed=args.seed, dtype=args.dtype)
    t0 = time.perf_counter()
    model.fit(
        x, y, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, shuffle=args.shuffle,
        validation_data=(xt, yt), num_threads=args.threads, verbose=not args.quiet,
    )
    elapsed = time.perf_counter() - t0
    last = model.history[-1]
    print("Result:")
    print(
        f"Error on test: {last['test_loss']:.5f}; Error on train: {last['train_loss']:.5f}; "
        f"Accuracy on test: {last['test_accuracy']:.5f}; Accuracy on train: {last['train_accuracy']:.5f}; "
        f"Time: {elapsed:.2f} s"
    )
    if args.save:
        model.save(args.save)
        print(f"saved {args.save}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _train(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (OSError, ValueError, TypeError, FloatingPointError) as e:
        if args.debug:
            raise
        print(f"mnist-mlp: error: {e}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
