#!/usr/bin/env python3
"""One training epoch over MNIST for a matrix of networks, batch sizes and
orders: mnist_mlp against PyTorch (eager) and JAX (the epoch in one
`lax.scan`, compiled beforehand), in the same run, from the same initial
weights (`mnist_mlp.reference.initial_params(sizes, seed=0)`).

    python bench/matrix.py                      # every row, every framework found; writes RESULTS.md
    python bench/matrix.py --repeats 5 --rounds 3 --rows seed,deep-b8
    python bench/matrix.py --quick              # a smoke run: 2000 images, four rows, nothing written

Each (framework, row) runs in a subprocess of its own (its own thread pool,
nothing left spinning from another framework), which times `--repeats`
epochs after one untimed warm-up epoch; the whole matrix is run `--rounds`
times and each cell reports the median over all its epochs. Timed is the
training only: no evaluation, no data conversion, no compile. mnist_mlp's
one-time setup inside fit (nonzero index or batch plan) is reported in its own
column. Inputs: uint8 pixels for mnist_mlp (as users pass them), float32
pixels / 255 (or float64) tensors for the peers. Threads: 2 for PyTorch
(`torch.set_num_threads`), XLA's default for JAX, all processors for mnist_mlp.
The optimizer rows use torch.optim and optax (`pip install jax optax`) with the same
hyperparameters; dropout is torch.nn.Dropout and a jax.random mask.

Compute-bound rows are also set against NumPy's sgemm rate measured in this
run: the epoch's FLOPs (counting only the work it needs: a sparse first layer
counts its nonzero pixels) over its median time. A row is compute-bound when it
is marked so (784-1024-1024-10 at batch 256), or when being 2x faster than the
faster peer would take more than 80% of that sgemm rate on the epoch's FLOPs:
its target is then the issue's exception (at least 1.2x the peer and 80% of
sgemm), and the table says what 2x would take.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
BEGIN, END = "<!-- matrix:begin -->", "<!-- matrix:end -->"
FRAMEWORKS = ("mnist_mlp", "torch", "jax")


@dataclass(frozen=True)
class Row:
    key: str
    hidden: tuple[int, ...]
    batch: int
    shuffle: bool
    dtype: str = "float32"
    compute_bound: bool = False
    note: str = ""
    opt: str = "sgd"  # a key of OPTIMIZERS
    dropout: float = 0.0

    def sizes(self) -> list[int]:
        return [784, *self.hidden, 10]

    def label(self) -> str:
        net = "-".join(map(str, self.sizes()))
        dt_ = "" if self.dtype == "float32" else f" {self.dtype}"
        extra = "" if self.opt == "sgd" else f", {OPTIMIZERS[self.opt][0]}"
        extra += f", dropout {self.dropout}" if self.dropout else ""
        return f"{net}{dt_}, b{self.batch}, {'shuffled' if self.shuffle else 'in order'}{extra}"


# Optimizers of the rows: a label, and (class name, keyword arguments) for
# mnist_mlp.optim and torch.optim alike; optax's counterpart is in work_jax.
OPTIMIZERS = {
    "sgd": ("SGD", ("SGD", {"lr": 0.05})),
    "sgdm": ("SGD momentum 0.9", ("SGD", {"lr": 0.05, "momentum": 0.9})),
    "adam": ("Adam", ("Adam", {"lr": 1e-3})),
    "rmsprop": ("RMSprop", ("RMSprop", {"lr": 1e-3})),
}


ROWS = (
    Row("seed", (300,), 8, False, note="the seed's"),
    Row("seed-shuffled", (300,), 8, True),
    Row("b32", (300,), 32, True),
    Row("b128", (300,), 128, True),
    Row("sklearn", (100,), 200, True, note="scikit-learn's defaults"),
    Row("deep-b8", (512, 256), 8, False),
    Row("deep-b64", (512, 256), 64, True),
    Row("keras", (512, 512), 128, True, note="Keras's MNIST MLP example"),
    Row("wide-b256", (1024, 1024), 256, True, compute_bound=True),
    Row("seed-f64", (300,), 8, False, dtype="float64"),
    Row("sgdm-b8", (300,), 8, False, opt="sgdm"),
    Row("sgdm-b64", (300,), 64, True, opt="sgdm"),
    Row("adam-b32", (300,), 32, True, opt="adam"),
    Row("adam-b128", (300,), 128, True, opt="adam"),
    Row("keras-rmsprop", (512, 512), 128, True, opt="rmsprop", dropout=0.2, note="the Keras example's recipe"),
)
QUICK_ROWS = ("seed", "deep-b64", "wide-b256", "keras-rmsprop")


# ---------------------------------------------------------------------------
# Workers: one framework, one row, in a subprocess


def _load(subset: int | None) -> tuple[np.ndarray, np.ndarray]:
    import mnist_mlp as mm

    (x, y), _ = mm.load_mnist(os.environ.get("MATRIX_DATA") or None)
    x = x.reshape(len(x), -1)
    if subset:
        x, y = x[:subset], y[:subset]
    return np.ascontiguousarray(x), y.astype(np.int64)


def _epochs(run_epoch: Any, repeats: int) -> list[float]:
    run_epoch()  # warm-up: caches, thread pools, allocators
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run_epoch()
        out.append(time.perf_counter() - t0)
    return out


def work_mnist_mlp(row: Row, x: np.ndarray, y: np.ndarray, repeats: int) -> dict[str, Any]:
    import mnist_mlp as mm

    model = mm.MLP(row.sizes(), dropout=row.dropout, seed=0, dtype=row.dtype)
    setup: list[float] = []
    kernels: set[str] = set()
    name, kw = OPTIMIZERS[row.opt][1]
    train = {"lr": 0.05} if row.opt == "sgd" else {"optimizer": getattr(mm.optim, name)(**kw)}

    def epoch() -> float:
        t0 = time.perf_counter()
        rec = model.fit(x, y, epochs=1, batch_size=row.batch, shuffle=row.shuffle, eval_train=False, **train)[0]
        setup.append(time.perf_counter() - t0 - rec["seconds"])
        kernels.add(rec.get("kernel", "?"))
        return rec["seconds"]

    epoch()
    secs = [epoch() for _ in range(repeats)]  # fit's own timing: the epoch alone
    return {"seconds": secs, "setup_seconds": statistics.median(setup[1:]), "kernel": ",".join(sorted(kernels)),
            "threads": mm._core.max_threads()}


def work_torch(row: Row, x: np.ndarray, y: np.ndarray, repeats: int) -> dict[str, Any]:
    import torch

    from mnist_mlp.reference import initial_params

    torch.set_num_threads(os.cpu_count() or 1)
    tdt = torch.float64 if row.dtype == "float64" else torch.float32
    ws, bs = initial_params(row.sizes(), 0, row.dtype)
    layers: list[Any] = []
    for i, (w, b) in enumerate(zip(ws, bs)):
        lin = torch.nn.Linear(w.shape[0], w.shape[1], dtype=tdt)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i + 1 < len(ws):
            layers.append(torch.nn.ReLU())
            if row.dropout:
                layers.append(torch.nn.Dropout(row.dropout))
    model = torch.nn.Sequential(*layers)
    model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    name, kw = OPTIMIZERS[row.opt][1]
    opt = getattr(torch.optim, name)(model.parameters(), **kw)
    xt = torch.from_numpy((x / 255.0).astype(row.dtype))
    yt = torch.from_numpy(y)
    rng = np.random.default_rng(0)

    def epoch() -> None:
        if row.shuffle:
            perm = torch.from_numpy(rng.permutation(len(x)))
            xs, ys = xt[perm], yt[perm]
        else:
            xs, ys = xt, yt
        for xb, yb in zip(torch.split(xs, row.batch), torch.split(ys, row.batch)):
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()

    return {"seconds": _epochs(epoch, repeats), "threads": torch.get_num_threads()}


def work_jax(row: Row, x: np.ndarray, y: np.ndarray, repeats: int) -> dict[str, Any]:
    if row.dtype != "float32":
        return {"skipped": "float64 needs jax_enable_x64; not timed"}
    import jax
    import jax.numpy as jnp

    from mnist_mlp.reference import initial_params

    ws, bs = initial_params(row.sizes(), 0, row.dtype)
    params = [(jnp.asarray(w), jnp.asarray(b)) for w, b in zip(ws, bs)]
    lr, B = 0.05, row.batch
    if row.opt == "sgd":
        tx = None
    else:
        import optax  # JAX's optimizers

        tx = {"sgdm": lambda: optax.sgd(0.05, momentum=0.9), "adam": lambda: optax.adam(1e-3),
              "rmsprop": lambda: optax.rmsprop(1e-3, decay=0.99, eps=1e-8)}[row.opt]()

    def loss(p: Any, xb: Any, yb: Any, key: Any) -> Any:
        h = xb
        for i, (w, b) in enumerate(p[:-1]):
            h = jax.nn.relu(h @ w + b)
            if row.dropout:
                keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1 - row.dropout, h.shape)
                h = jnp.where(keep, h / (1 - row.dropout), 0)
        z = h @ p[-1][0] + p[-1][1]
        true = jnp.take_along_axis(z, yb[:, None], axis=1)[:, 0]
        return jnp.mean(jax.nn.logsumexp(z, axis=1) - true)

    def step(carry: Any, xb: Any, yb: Any) -> Any:
        p, s, key = carry
        key, sub = jax.random.split(key)
        g = jax.grad(loss)(p, xb, yb, sub)
        if tx is None:
            return jax.tree.map(lambda a, d: a - lr * d, p, g), s, key
        upd, s = tx.update(g, s, p)
        return optax.apply_updates(p, upd), s, key

    def run(carry: Any, xs: Any, ys: Any, perm: Any) -> Any:
        if row.shuffle:
            xs, ys = xs[perm], ys[perm]
        full, rem = divmod(xs.shape[0], B)
        xb = xs[: full * B].reshape(full, B, xs.shape[1])
        yb = ys[: full * B].reshape(full, B)
        carry, _ = jax.lax.scan(lambda q, b: (step(q, b[0], b[1]), None), carry, (xb, yb))
        if rem:
            carry = step(carry, xs[full * B :], ys[full * B :])
        return carry

    xd = jnp.asarray((x / 255.0).astype(np.float32))
    yd = jnp.asarray(y.astype(np.int32))
    rng = np.random.default_rng(0)
    perm0 = jnp.asarray(rng.permutation(len(x)).astype(np.int32))
    t0 = time.perf_counter()
    carry0 = (params, tx.init(params) if tx is not None else (), jax.random.PRNGKey(0))
    compiled = jax.jit(run).lower(carry0, xd, yd, perm0).compile()
    compile_s = time.perf_counter() - t0
    state = {"p": carry0}

    def epoch() -> None:
        perm = jnp.asarray(rng.permutation(len(x)).astype(np.int32))
        jax.block_until_ready(perm)
        state["p"] = compiled(state["p"], xd, yd, perm)
        jax.block_until_ready(state["p"])

    return {"seconds": _epochs(epoch, repeats), "compile_seconds": compile_s, "threads": "XLA"}


WORKERS = {"mnist_mlp": work_mnist_mlp, "torch": work_torch, "jax": work_jax}


def worker_main(framework: str, key: str, repeats: int, subset: int | None) -> None:
    row = next(r for r in ROWS if r.key == key)
    x, y = _load(subset)
    out = WORKERS[framework](row, x, y, repeats)
    print("RESULT " + json.dumps(out), flush=True)


# ---------------------------------------------------------------------------
# The driver


def cpu_description() -> str:
    name = platform.processor() or "unknown CPU"
    fam = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "cpu family", "model") and key not in fam:
                fam[key] = value.strip()
            if line.strip() == "":
                break
        name = fam.get("model name", name)
        if "cpu family" in fam:  # "AMD EPYC" alone does not tell Zen 4 from Zen 5
            name += f" (family {fam['cpu family']}, model {fam.get('model', '?')})"
    except OSError:
        pass
    l2 = ""
    try:
        l2 = Path("/sys/devices/system/cpu/cpu0/cache/index2/size").read_text().strip()
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs" + (f", L2 {l2} per core" if l2 else "")


def run_worker(framework: str, row: Row, repeats: int, subset: int | None, timeout: float) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", framework, "--rows", row.key,
           "--repeats", str(repeats)] + (["--subset", str(subset)] if subset else [])
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"exit {proc.returncode}: {tail[:200]}"}


def sgemm_rate(threads: int | None = None) -> float:
    """NumPy's float32 GEMM rate (GFLOP/s, median of 7) on a training-sized product."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((256, 1024)).astype(np.float32)
    b = rng.standard_normal((1024, 1024)).astype(np.float32)
    a @ b
    ts = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(10):
            a @ b
        ts.append((time.perf_counter() - t0) / 10)
    return 2 * 256 * 1024 * 1024 / statistics.median(ts) / 1e9


def epoch_flops(row: Row, n: int, nnz_per_image: float) -> float:
    """FLOPs one epoch needs: forward, weight gradients and (above the first
    layer) input gradients; the first layer over the nonzero pixels only."""
    sizes = row.sizes()
    total = 0.0
    for l, (i, o) in enumerate(zip(sizes[:-1], sizes[1:])):
        if l == 0:
            total += 2 * 2 * n * nnz_per_image * o
        else:
            total += 3 * 2 * n * i * o
    return total


def median(v: Any) -> float | None:
    return statistics.median(v) if isinstance(v, list) and v else None


def fmt_s(v: float | None) -> str:
    return "–" if v is None else (f"{v:.3f} s" if v < 10 else f"{v:.1f} s")


def table(results: list[dict[str, Any]], rate: float | None) -> str:
    head = ("| network, batch, order | mnist_mlp | setup | PyTorch | JAX | vs the faster peer | kernel | target |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in results:
        row: Row = r["row"]
        ours = median(r["mnist_mlp"].get("seconds"))
        peers = [p for p in (median(r["torch"].get("seconds")), median(r["jax"].get("seconds"))) if p is not None]
        ratio = min(peers) / ours if peers and ours else None
        # Two decimals near the targets, rounded down, so that 1.95x or 1.996x does
        # not print as 2.0x beside a ✗.
        vs = "–" if ratio is None else (f"{math.floor(ratio * 100) / 100:.2f}× faster" if 1 <= ratio < 3
                                        else f"{ratio:.1f}× faster" if ratio >= 3
                                        else f"{1 / ratio:.1f}× slower")
        ours_rate = r.get("gflops")
        # The rate 2x the faster peer would take, for the work the epoch needs:
        # a row is compute-bound (the exception) when that is more than
        # 80% of NumPy's sgemm rate in the same run, or when marked so.
        rate_2x = ours_rate * ours / (min(peers) / 2) if ours_rate and ours and peers and min(peers) > 0 else None
        by_rate = bool(rate and rate_2x and rate_2x > 0.8 * rate and row.key != "seed")
        if row.compute_bound or by_rate:
            need = 1.2
            extra = f"; {ours_rate:.0f} GFLOP/s = {ours_rate / rate:.0%} of NumPy sgemm" if ours_rate and rate else ""
            if by_rate and not row.compute_bound:
                extra += f" (2× would need {rate_2x / rate:.0%})"
            target = f"≥ 1.2×, ≥ 80% sgemm{extra}"
            if ours_rate and rate and ours_rate < 0.8 * rate:
                need = float("inf")  # both halves of the target must hold
        elif row.key == "seed":
            need = 30.0
            target = "≥ 30× PyTorch, ≥ 10× JAX"
        else:
            need = 2.0
            target = "≥ 2×"
        met = "" if ratio is None else (" ✓" if ratio >= need else " ✗")
        if row.key == "seed" and ours:
            tq, jq = median(r["torch"].get("seconds")), median(r["jax"].get("seconds"))
            parts = []
            if tq:
                parts.append(f"{tq / ours:.0f}× PyTorch")
            if jq:
                parts.append(f"{jq / ours:.0f}× JAX")
            ok = (tq is None or tq / ours >= 30) and (jq is None or jq / ours >= 10)
            target += f" ({', '.join(parts)})" if parts else ""
            met = " ✓" if ok and parts else (" ✗" if parts else "")
        cells = [
            row.label() + (f" ({row.note})" if row.note else ""),
            fmt_s(ours),
            fmt_s(r["mnist_mlp"].get("setup_seconds")),
            fmt_s(median(r["torch"].get("seconds"))) if "error" not in r["torch"] else "error",
            fmt_s(median(r["jax"].get("seconds"))) if "error" not in r["jax"] else "error",
            vs,
            r["mnist_mlp"].get("kernel", "–"),
            target + met,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def write_results_md(text: str) -> None:
    old = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Results\n"
    block = f"{BEGIN}\n{text}{END}"
    if BEGIN in old and END in old:
        new = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, old, flags=re.S)
    else:
        new = old.rstrip("\n") + "\n\n## The training matrix (bench/matrix.py)\n\n" + block + "\n"
    RESULTS_MD.write_text(new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default=None, help="comma-separated row keys: " + ", ".join(r.key for r in ROWS))
    ap.add_argument("--frameworks", default=",".join(FRAMEWORKS), help="comma-separated, of " + ", ".join(FRAMEWORKS))
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per (framework, row) and round")
    ap.add_argument("--rounds", type=int, default=2,
                    help="passes over the whole matrix; each cell's median is over all its rounds' epochs, so a "
                         "slow spell of a shared machine does not fall on one cell alone")
    ap.add_argument("--subset", type=int, default=None, help="train on the first N images only")
    ap.add_argument("--quick", action="store_true", help="smoke run: 2000 images, 1 repeat, 3 rows, nothing written")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--json", default=None, help="also write the raw results to this file")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per worker")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.rounds < 1:
        ap.error("--repeats and --rounds must be >= 1")
    if args.worker:
        worker_main(args.worker, args.rows, args.repeats, args.subset)
        return 0
    if args.quick:
        args.subset = args.subset or 2000
        args.repeats = 1
        args.rounds = 1
        args.rows = args.rows or ",".join(QUICK_ROWS)
        args.no_write = True
    keys = args.rows.split(",") if args.rows else [r.key for r in ROWS]
    unknown = [k for k in keys if k not in {r.key for r in ROWS}]
    if unknown:
        ap.error(f"unknown row(s) {unknown}; known: {[r.key for r in ROWS]}")
    frameworks = [f for f in args.frameworks.split(",") if f]
    bad = [f for f in frameworks if f not in FRAMEWORKS]
    if bad:
        ap.error(f"unknown framework(s) {bad}; known: {list(FRAMEWORKS)}")
    present = [f for f in frameworks if f == "mnist_mlp" or importlib.util.find_spec(f) is not None]
    rows = [r for r in ROWS if r.key in keys]

    import mnist_mlp as mm

    x, _ = _load(args.subset)
    nnz = float(np.count_nonzero(x)) / len(x)
    rate = sgemm_rate()
    cpu = cpu_description()
    l1, l2, l3 = mm._core.cache_sizes()
    cpu += f" (caches seen by the GEMM: L1d {l1 >> 10} KiB, L2 {l2 >> 10} KiB, L3 {l3 >> 20} MiB)"
    print(f"CPU: {cpu}; mnist_mlp ISA {mm._core.current_isa()}; NumPy sgemm {rate:.0f} GFLOP/s "
          f"(256x1024 . 1024x1024, float32); frameworks: {', '.join(present)}", flush=True)
    results = [{"row": row} for row in rows]
    for rnd in range(args.rounds):
        for res in results:
            row = res["row"]
            for fw in FRAMEWORKS:
                if fw not in present:
                    res[fw] = {"skipped": "not installed" if fw in frameworks else "not asked for"}
                    continue
                got = run_worker(fw, row, args.repeats, args.subset, args.timeout)
                prev = res.get(fw)
                if prev is None or "error" in got or "seconds" not in prev:
                    res[fw] = got  # the first round, or an error that the cell must show
                else:
                    prev["seconds"] += got.get("seconds", [])
                shown = median(got.get("seconds"))
                print(f"  round {rnd + 1}  {row.label():<42} {fw:<10} "
                      f"{fmt_s(shown) if shown is not None else got.get('error') or got.get('skipped')}", flush=True)
    for res in results:
        row = res["row"]
        ours = median(res["mnist_mlp"].get("seconds"))
        if ours:
            res["gflops"] = epoch_flops(row, len(x), nnz) / ours / 1e9
    text = table(results, rate)
    command = "python bench/matrix.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    header = (f"Measured {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC on {cpu}, with "
              f"`{command.strip()}`: median of {args.rounds} x {args.repeats} epochs per cell (each round a fresh "
              f"process after a warm-up epoch), "
              f"{len(x)} images. NumPy sgemm in the same run: {rate:.0f} GFLOP/s.\n\n")
    print()
    print(header + text)
    if args.json:
        Path(args.json).write_text(json.dumps(
            [{**{k: v for k, v in r.items() if k != "row"}, "row": asdict(r["row"])} for r in results], indent=1))
    if not args.no_write:
        write_results_md(header + text)
        print(f"wrote {RESULTS_MD}")
    failed = [r["row"].key for r in results if "error" in r["mnist_mlp"]]
    if failed:
        print(f"mnist_mlp failed on: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
