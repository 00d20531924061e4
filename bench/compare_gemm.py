"""GEMM rates (`mnist_mlp.ops.matmul` against NumPy's ``@``) and the FLOP floor
of a training epoch, for `compare.py`."""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Sequence

import numpy as np

SQUARE_SIZES = (256, 512, 1024, 2048)
FLOOR_SIZE = 2048


@dataclass(frozen=True)
class GemmShape:
    """``op(a) @ op(b)`` with op(a) (m, k), op(b) (k, n); a transposed operand
    is stored the other way round and passed as a transposed view."""

    kind: str  # "train" or "square"
    m: int
    k: int
    n: int
    trans_a: bool = False
    trans_b: bool = False

    @property
    def label(self) -> str:
        a = f"({self.k}x{self.m})^T" if self.trans_a else f"{self.m}x{self.k}"
        b = f"({self.n}x{self.k})^T" if self.trans_b else f"{self.k}x{self.n}"
        return f"{a} . {b}"

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    def operands(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """The arrays as stored (transposed operands stored transposed)."""
        a_shape = (self.k, self.m) if self.trans_a else (self.m, self.k)
        b_shape = (self.n, self.k) if self.trans_b else (self.k, self.n)
        return (rng.standard_normal(a_shape, dtype=np.float32), rng.standard_normal(b_shape, dtype=np.float32))


def training_shapes(sizes: Sequence[int], batch: int) -> list[GemmShape]:
    """The products of one SGD step, layer by layer: forward X.W, then for
    layers after the first the input gradient D.W^T, then the weight gradient
    X^T.D. For 784-300-10 with batch 8: 8x784.784x300, (8x784)^T.8x300,
    8x300.300x10, 8x10.(300x10)^T, (8x300)^T.8x10."""
    shapes = []
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes.append(GemmShape("train", batch, fan_in, fan_out))
        if layer > 0:
            shapes.append(GemmShape("train", batch, fan_out, fan_in, trans_b=True))
        shapes.append(GemmShape("train", fan_in, batch, fan_out, trans_a=True))
    return shapes


def square_shapes(sizes: Sequence[int] = SQUARE_SIZES) -> list[GemmShape]:
    return [GemmShape("square", s, s, s) for s in sizes]


# ---------------------------------------------------------------------------
# Timing


def _sample(fn: Callable[[], Any], number: int) -> float:
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def seconds_per_call(fn: Callable[[], Any], repeats: int, min_sample: float) -> list[float]:
    """Seconds per call in ``repeats`` samples; each sample runs enough calls
    to last ``min_sample`` seconds (small products take microseconds)."""
    fn()  # warm-up: first-touch pages, thread pools, packing buffers
    number = 1
    while True:
        t = _sample(fn, number)
        if t * number >= min_sample or number >= 1 << 20:
            break
        number = max(number * 2, int(min_sample / max(t, 1e-9) * 1.2))
    return [_sample(fn, number) for _ in range(repeats)]


def numpy_threads(threads: int | None) -> ContextManager[Any]:
    """Limits NumPy's BLAS to ``threads`` with threadpoolctl, when installed."""
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


def have_threadpoolctl() -> bool:
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


def _numpy_product(a: np.ndarray, b: np.ndarray, shape: GemmShape) -> Callable[[], np.ndarray]:
    at = a.T if shape.trans_a else a
    bt = b.T if shape.trans_b else b
    return lambda: at @ bt


def _repeats(shape: GemmShape, quick: bool) -> int:
    size = shape.m * shape.k * shape.n
    if size >= 2048**3:
        return 2 if quick else 3
    if size >= 1024**3:
        return 3 if quick else 5
    return 3 if quick else 7


def gemm_table(sizes: Sequence[int], batch: int, threads: Sequence[int], quick: bool = False) -> list[dict[str, Any]]:
    """GFLOP/s (median of several samples) of mnist_mlp and NumPy for every
    training shape and square size, at each thread count, float32. Also the
    largest difference between the two results, relative to the largest entry."""
    from mnist_mlp import ops

    rng = np.random.default_rng(0)
    min_sample = 0.01 if quick else 0.03
    out = []
    for shape in training_shapes(sizes, batch) + square_shapes():
        a, b = shape.operands(rng)
        expected = _numpy_product(a, b, shape)()
        got = ops.matmul(a, b, shape.trans_a, shape.trans_b)
        rel_err = float(np.max(np.abs(got - expected)) / max(float(np.max(np.abs(expected))), 1e-30))
        for t in threads:
            ours = seconds_per_call(
                lambda: ops.matmul(a, b, shape.trans_a, shape.trans_b, num_threads=t), _repeats(shape, quick), min_sample
            )
            with numpy_threads(t):
                theirs = seconds_per_call(_numpy_product(a, b, shape), _repeats(shape, quick), min_sample)
            ours_gf = shape.flops / statistics.median(ours) / 1e9
            theirs_gf = shape.flops / statistics.median(theirs) / 1e9
            out.append({
                "kind": shape.kind, "shape": shape.label, "m": shape.m, "k": shape.k, "n": shape.n,
                "trans_a": shape.trans_a, "trans_b": shape.trans_b, "threads": t,
                "mnist_mlp_gflops": ours_gf, "numpy_gflops": theirs_gf, "ratio": ours_gf / theirs_gf,
                "repeats": len(ours), "max_rel_err": rel_err,
            })
    return out


# ---------------------------------------------------------------------------
# The floor


def sgemm_best_gflops(threads: int | None, repeats: int, size: int = FLOOR_SIZE) -> float:
    """NumPy's best float32 size^3 rate, at ``threads`` BLAS threads (None: NumPy's default)."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    with numpy_threads(threads):
        best = min(seconds_per_call(lambda: a @ b, repeats, 0.0))
    return 2 * size**3 / best / 1e9


def epoch_flops(sizes: Sequence[int], samples: int, nonzero_fraction: float) -> dict[str, float]:
    """FLOPs of one epoch's products. Per sample and layer (fan_in x fan_out):
    forward 2 fan_in fan_out; backward the same for the weight gradient and, for
    every layer but the first, again for the input gradient. ``sparse_input``
    scales the first layer's forward and weight-gradient terms by the fraction
    of nonzero input pixels. Bias, activation, softmax and weight-update work
    is left out (it is O(parameters) per batch, not O(parameters) per sample)."""
    dense = sparse = 0.0
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        mac2 = 2.0 * fan_in * fan_out
        dx = mac2 if layer > 0 else 0.0
        dense += 2 * mac2 + dx
        sparse += (2 * mac2 * nonzero_fraction if layer == 0 else 2 * mac2) + dx
    return {"dense": dense * samples, "sparse_input": sparse * samples}


def measure_floor(sizes: Sequence[int], samples: int, nonzero_fraction: float, quick: bool) -> dict[str, Any]:
    """The machine's sgemm rate (all threads, and one) and the seconds one
    epoch's FLOPs would take at that rate."""
    repeats = 2 if quick else 3
    rates = {"all_threads": sgemm_best_gflops(None, repeats), "one_thread": sgemm_best_gflops(1, repeats)}
    flops = epoch_flops(sizes, samples, nonzero_fraction)
    return {
        "sgemm_size": FLOOR_SIZE,
        "sgemm_gflops": rates,
        "nonzero_fraction": nonzero_fraction,
        "samples": samples,
        "epoch_gflop": {k: v / 1e9 for k, v in flops.items()},
        "floor_seconds": {
            kind: {rate: f / (g * 1e9) for rate, g in rates.items()} for kind, f in flops.items()
        },
    }


def gemm_thread_counts(cpu_count: int | None) -> list[int]:
    """1 and 2 threads, and every core when there are more."""
    return sorted({1, 2, cpu_count or 1})
