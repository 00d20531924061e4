"""Soak test: train for many epochs and sample the resident set size after each
one. A leak shows as a positive slope; flat means none.

    python bench/soak.py [--epochs 200] [--data DIR] [--threads N]

Not part of pytest (it takes about a minute). Linux only (reads /proc/self/status).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import mnist_mlp as mm


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--data", default=None)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    (x, y), (xt, yt) = mm.load_mnist(args.data)
    model = mm.MLP([784, 300, 10], seed=0)
    samples: list[float] = []
    start_rss = rss_mb()
    t0 = time.perf_counter()
    model.fit(x, y, epochs=args.epochs, validation_data=(xt, yt), num_threads=args.threads,
              callback=lambda rec: samples.append(rss_mb()))
    elapsed = time.perf_counter() - t0
    rss = np.array(samples)
    skip = min(10, len(rss) // 2)  # the first epochs settle allocator pools
    ep = np.arange(len(rss))[skip:]
    slope = float(np.polyfit(ep, rss[skip:], 1)[0]) if len(ep) > 1 else float("nan")
    print(f"{args.epochs} epochs in {elapsed:.1f} s; RSS before fit {start_rss:.1f} MB, "
          f"after epoch 1 {rss[0]:.1f} MB, min {rss.min():.1f}, max {rss.max():.1f}, last {rss[-1]:.1f} MB")
    print(f"slope over epochs {skip}-{len(rss) - 1}: {slope * 1024:+.2f} KB/epoch "
          f"({slope * len(rss):+.2f} MB over the run); final test accuracy {model.history[-1]['test_accuracy']:.4f}")


if __name__ == "__main__":
    main()
