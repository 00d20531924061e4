"""A sweep of 8 trials on a LocalCluster of 2 single-threaded workers against the
same 8 fits run one after another in this process (single-threaded each).

    python bench/sweep.py [--repeats 3] [--epochs 3] [--data DIR] [--json FILE]
    python bench/sweep.py --quick           # smoke run: 2000 images, 1 epoch, 1 repeat

The grid is lr {0.05, 0.1} x batch size {8, 32} x seed {0, 1} on 784-300-10 over
all of MNIST (validation: the test set). Per repeat, interleaved so both see the
same machine state:

- sequential: the 8 trials through `mnist_mlp.sweep.run_trial` (the code a worker
  runs, without Dask), one thread each;
- sweep: `mm.sweep` on an already running LocalCluster of 2 worker processes of
  one thread each (`mm.local_cluster(2)`, the cluster `sweep(scheduler=None)`
  starts, with `threads_per_trial=1`): sending the data, submitting,
  training, returning the models;
- cold sweep (once, at the end): `mm.sweep(scheduler=None, n_workers=2)`, the
  cluster's start and close included.

The data reach the workers as `mm.sweep` sends them to a LocalCluster of this
process: written once to shared memory that both workers map. ``--scatter``
connects the client by the scheduler's address instead, as to any other
cluster, so the data are scattered to each worker (55 MB each here).

``--dask-monitoring`` runs the sweeps on a LocalCluster with Dask's default
monitoring instead (profiler, 20 ms tick, system monitor), to measure what
`mnist_mlp.sweep.QUIET_MONITORING` saves; it skips the cold sweep.

Reports medians: the speed-up (sequential / sweep) and the per-trial overhead
Dask adds, ``(2 x sweep - sequential) / 8``: the worker time each trial costs
beyond its fit in one process (the data, scheduling, result transfer, idle time
at the end). Checks that both give bitwise the same results. Timings only;
nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import mnist_mlp as mm

sw = sys.modules["mnist_mlp.sweep"]

GRID = {"hidden": [(300,)], "lr": [0.05, 0.1], "batch_size": [8, 32], "seed": [0, 1]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--subset", type=int, default=None, help="train on the first N images only")
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", default=None, help="write the raw timings here")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2000 images, 1 epoch, 1 repeat")
    ap.add_argument("--dask-monitoring", action="store_true",
                    help="run the cluster with Dask's default monitoring instead of QUIET_MONITORING "
                         "(to measure what that saves)")
    ap.add_argument("--scatter", action="store_true",
                    help="connect to the cluster by its address, so that the data are scattered to the workers "
                         "instead of shared through memory (what any cluster but a LocalCluster of this process gets)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.epochs, args.subset = 1, 1, 2000
    import distributed

    (x, y), (xt, yt) = mm.load_mnist(args.data)
    if args.subset:
        x, y, xt, yt = x[: args.subset], y[: args.subset], xt[: args.subset], yt[: args.subset]
    grid = dict(GRID, epochs=[args.epochs])
    xs, ys, xvs, yvs, classes = sw._data((x, y), (xt, yt))
    trials = sw.expand_grid(grid, xs.shape[1], classes)
    n, workers = len(trials), 2

    seq, warm, cold = [], [], None
    fit_local, fit_worker, busiest = [], [], []  # summed train_seconds; the busier worker's sum
    same = True
    # mm.local_cluster(workers), or the same cluster with Dask's own monitoring settings
    cluster = sw._local_cluster(workers, 1, {} if args.dask_monitoring else sw.QUIET_MONITORING)
    with cluster, distributed.Client(cluster.scheduler_address if args.scatter else cluster) as client:
        client.wait_for_workers(workers, timeout=60)
        mm.sweep({"hidden": [(8,)]}, (x[:100], y[:100]), (xt[:100], yt[:100]), scheduler=client)  # imports, warm-up
        for r in range(args.repeats):
            t0 = time.perf_counter()
            local = [sw.run_trial(p, xs, ys, xvs, yvs, classes, threads=1) for p in trials]
            seq.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            res = mm.sweep(grid, (x, y), (xt, yt), scheduler=client, threads_per_trial=1)
            warm.append(time.perf_counter() - t0)
            for i, (t, loc) in enumerate(zip(res.trials, local)):
                same &= t["error"] is None and (t["test_loss"], t["test_accuracy"]) == (loc["test_loss"],
                                                                                      loc["test_accuracy"])
                same &= all(np.array_equal(a, b) for a, b in zip(res.model(i).weights, loc["model"].weights))
            fit_local.append(sum(t["train_seconds"] for t in local))
            fit_worker.append(sum(t["train_seconds"] for t in res.trials))
            per_worker: dict[str, float] = {}
            for t in res.trials:
                per_worker[t["worker"]] = per_worker.get(t["worker"], 0.0) + t["train_seconds"]
            busiest.append(max(per_worker.values()))
            print(f"repeat {r}: sequential {seq[-1]:.3f} s, sweep {warm[-1]:.3f} s", flush=True)
    if not args.dask_monitoring:
        t0 = time.perf_counter()
        mm.sweep(grid, (x, y), (xt, yt), scheduler=None, n_workers=workers)
        cold = time.perf_counter() - t0

    s, w = statistics.median(seq), statistics.median(warm)
    overhead = (workers * w - s) / n
    print(f"\n{n} trials of 784-300-10, {args.epochs} epoch(s) on {len(x)} images, {args.repeats} repeat(s), data "
          f"{'scattered' if args.scatter else 'in shared memory'}; results bitwise equal: {same}")
    print("| run | median s (min-max) | per trial |")
    print("|---|---|---|")
    print(f"| sequential, 1 process, 1 thread | {s:.3f} ({min(seq):.3f}-{max(seq):.3f}) | {s / n:.3f} s |")
    print(f"| sweep, 2 workers x 1 thread (cluster running) | {w:.3f} ({min(warm):.3f}-{max(warm):.3f}) | "
          f"{workers * w / n:.3f} s of a worker |")
    if not args.dask_monitoring:
        print(f"| sweep with the LocalCluster's start and close | {cold:.3f} | |")
    print(f"\nspeed-up {s / w:.2f}x; Dask's overhead per trial {overhead * 1e3:.0f} ms "
          f"((2 x sweep - sequential) / {n})")
    fl, fw, bw = statistics.median(fit_local), statistics.median(fit_worker), statistics.median(busiest)
    print(f"where it goes: the fits take {fw / n:.3f} s each on the workers against {fl / n:.3f} s in one "
          f"process ({fw / fl - 1:+.0%}: two fits side by side share the cache and memory); the sweep's wall time "
          f"beyond its busier worker's fits (the data, scheduling, results, the last wave) is "
          f"{statistics.median([a - b for a, b in zip(warm, busiest)]):.3f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "fit_seconds_local": fit_local, "fit_seconds_workers": fit_worker, "busiest_worker_fit_seconds": busiest,
            "trials": n, "epochs": args.epochs, "train_samples": len(x), "repeats": args.repeats,
            "sequential_seconds": seq, "sweep_seconds": warm, "cold_sweep_seconds": cold,
            "speedup": s / w, "overhead_per_trial_seconds": overhead, "bitwise_equal": same,
            "monitoring": "dask defaults" if args.dask_monitoring else "QUIET_MONITORING",
            "data": "scattered" if args.scatter else "shared memory",
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
