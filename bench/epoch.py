"""Training-epoch, evaluation and predict timings of mnist_mlp alone, with 1 and
2 threads interleaved so both see the same machine state.

    python bench/epoch.py [--repeats 6] [--data DIR]

Prints medians (and min/max) of: one training epoch of the seed configuration
(784-300-10, batch 8, lr 0.1, float32, uint8 input), loss+accuracy on all
70000 images, and predict throughput. Timings only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import mnist_mlp as mm
from mnist_mlp import _core


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--data", default=None)
    args = ap.parse_args()
    (x, y), (xt, yt) = mm.load_mnist(args.data)
    x2 = x.reshape(len(x), -1)
    y32 = y.astype(np.int32)
    xa = np.concatenate([x2, xt.reshape(len(xt), -1)])
    ya = np.concatenate([y, yt])
    threads = [1, 2]
    epoch = {t: [] for t in threads}
    evals = {t: [] for t in threads}
    preds = {t: [] for t in threads}
    models = {t: mm.MLP([784, 300, 10], seed=0) for t in threads}
    plan = _core.BatchPlan(x2, 8, 2)  # what fit builds once per call (batches in order)
    for _ in range(args.repeats):
        for t in threads:
            m = models[t]
            t0 = time.perf_counter()
            m._core.train_epoch(x2, y32, None, 8, 0.1, True, True, t, plan=plan)
            epoch[t].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            m.evaluate(xa, ya, num_threads=t)
            evals[t].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            m.predict(xa, num_threads=t)
            preds[t].append(time.perf_counter() - t0)
    # Both models saw the same batches from the same start: the same weights, bitwise.
    same = all(np.array_equal(a, b) for a, b in zip(models[1].weights, models[2].weights))
    print(f"isa {_core.current_isa()}, {args.repeats} repeats, 1 and 2 threads interleaved; "
          f"weights after training identical across thread counts: {same}")
    print(f"{'threads':>7}  {'epoch s (min-max)':>22}  {'eval 70k s':>10}  {'predict M img/s':>15}")
    for t in threads:
        e = epoch[t]
        print(f"{t:>7}  {statistics.median(e):>8.3f} ({min(e):.3f}-{max(e):.3f})  "
              f"{statistics.median(evals[t]):>10.4f}  {len(xa) / statistics.median(preds[t]) / 1e6:>15.2f}")
    r = statistics.median(epoch[1]) / statistics.median(epoch[2])
    print(f"2-thread speed-up of the training epoch: {r:.2f}x")


if __name__ == "__main__":
    main()
