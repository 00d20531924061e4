#!/usr/bin/env python3
"""`mnist_mlp.ops.matmul` against NumPy's ``@`` on 2048^3 and the training
epoch's large products, float32, 1 and 2 threads, in one process (NumPy's
threads set with threadpoolctl, ``pip install threadpoolctl``):

    python bench/gemm.py                 # median of 9 calls per cell
    python bench/gemm.py --repeats 15 --threads 2

Each row prints GFLOP/s ours / NumPy's = the ratio (above 1: ours is faster).
The two run one after the other on the same operands; on a shared machine
repeat the run, and compare ratios rather than rates.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

import mnist_mlp as mm

# (m, k, n, trans_a, trans_b): op(a) is m x k, op(b) is k x n.
SHAPES = [
    (2048, 2048, 2048, False, False),
    (1024, 1024, 1024, False, False),
    (256, 1024, 1024, False, False),  # 784-1024-1024-10 b256: a hidden layer's forward
    (256, 1024, 1024, False, True),  # its input gradient dZ . W^T
    (1024, 256, 1024, True, False),  # its weight gradient a^T dZ
    (128, 512, 512, False, False),  # Keras's 784-512-512-10 b128
    (512, 128, 512, True, False),
]


def median_seconds(f: Callable[[], object], repeats: int) -> float:
    f()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=9, help="timed calls per cell (median)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {args.repeats}")
    if min(args.threads) < 1:
        ap.error(f"--threads must all be >= 1, got {args.threads}")
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    print(f"{'product':<28}" + "".join(f"{f'{t} thread(s): ours / NumPy GFLOP/s':>40}" for t in args.threads))
    for m, k, n, ta, tb in SHAPES:
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        a_op, b_op = (a.T if ta else a), (b.T if tb else b)
        flops = 2.0 * m * n * k
        label = f"{f'({k}x{m})^T' if ta else f'{m}x{k}'}.{f'({n}x{k})^T' if tb else f'{k}x{n}'}"
        cells = []
        for t in args.threads:
            ours = median_seconds(lambda: mm.ops.matmul(a, b, ta, tb, num_threads=t), args.repeats)
            with threadpool_limits(t):
                theirs = median_seconds(lambda: a_op @ b_op, args.repeats)
            cells.append(f"{flops / ours / 1e9:6.0f} / {flops / theirs / 1e9:4.0f} = {theirs / ours:4.2f}")
        print(f"{label:<28}" + "".join(f"{c:>40}" for c in cells))


if __name__ == "__main__":
    main()
