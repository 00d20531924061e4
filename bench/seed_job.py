"""Where the seed's whole job goes: `python -m mnist_mlp train` (784-300-10,
batch 8, lr 0.1, 20 epochs, the training and test sets evaluated after each
epoch) timed as a user runs it, then its parts measured one by one.

    python bench/seed_job.py [--repeats 3] [--data DIR]

Per repeat, in this order: the whole command in a fresh process (wall time, as
`time` reports it); `python -c "import mnist_mlp"` in a fresh process; then in
this process the load (`load_mnist`), fit's one-time setup (the batch plan, as
fit builds it), and a 20-epoch fit whose history gives the training time
(`seconds`) and the per-epoch evaluations (`eval_seconds`). Prints medians.
Timings only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

import mnist_mlp as mm
from mnist_mlp import _core


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=None)
    ap.add_argument("--epochs", type=int, default=20)
    args = ap.parse_args()
    data = ["--data", args.data] if args.data else []
    parts: dict[str, list[float]] = {k: [] for k in ("job", "import", "load", "setup", "training", "evaluation")}
    threads = int(_core.max_threads())
    for r in range(args.repeats):
        parts["job"].append(wall([sys.executable, "-m", "mnist_mlp", "train", "--epochs", str(args.epochs), *data]))
        parts["import"].append(wall([sys.executable, "-c", "import mnist_mlp"]))
        t0 = time.perf_counter()
        (x, y), (xt, yt) = mm.load_mnist(args.data)
        parts["load"].append(time.perf_counter() - t0)
        x2 = np.ascontiguousarray(x.reshape(len(x), -1))
        t0 = time.perf_counter()
        _core.BatchPlan(x2, 8, threads)
        parts["setup"].append(time.perf_counter() - t0)
        m = mm.MLP([784, 300, 10], seed=0)
        h = m.fit(x, y, epochs=args.epochs, batch_size=8, lr=0.1, validation_data=(xt, yt))
        parts["training"].append(sum(e["seconds"] for e in h))
        parts["evaluation"].append(sum(e["eval_seconds"] for e in h))
        print(f"repeat {r}: " + ", ".join(f"{k} {v[-1]:.3f} s" for k, v in parts.items()), flush=True)
    med = {k: statistics.median(v) for k, v in parts.items()}
    rest = med["job"] - med["import"] - med["load"] - med["setup"] - med["training"] - med["evaluation"]
    print(f"\n`python -m mnist_mlp train --epochs {args.epochs}`, {threads} threads, medians of {args.repeats}:")
    print("| part | seconds | share of the job |")
    print("|---|---|---|")
    for k in ("import", "load", "setup", "training", "evaluation"):
        print(f"| {k} | {med[k]:.3f} | {med[k] / med['job']:.0%} |")
    print(f"| the rest (interpreter start beyond the import, the CLI's printing, process exit) | {rest:.3f} | "
          f"{rest / med['job']:.0%} |")
    print(f"| **the whole job** | **{med['job']:.3f}** | |")


if __name__ == "__main__":
    main()
