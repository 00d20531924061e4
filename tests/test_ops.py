"""Each op against NumPy, over dtypes, sizes, transposes and every kernel set."""

from __future__ import annotations

import numpy as np
import pytest

import mnist_mlp as mm
from mnist_mlp import _core

# float32 sums of k products carry ~sqrt(k)*eps relative error; 2e-5 of the
# largest |C| covers k up to a few thousand. float64: same at ~1e-13.
TOL = {np.float32: 2e-5, np.float64: 1e-12}
DTYPES = [np.float32, np.float64]
SIZES = [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 127, 300]


def _operands(rng, m, n, k, ta, tb, dtype):
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def _check(c, ref, dtype):
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(c, ref, rtol=0, atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_matmul_odd_sizes_against_naive_and_numpy(isa, dtype, ta, tb):
    rng = np.random.default_rng(1)
    for m in SIZES[::2]:
        for n in SIZES[1::2]:
            for k in (1, 7, 10, 33, 257):  # 10: an 8-wide block plus a shifted one for the last columns
                a, b = _operands(rng, m, n, k, ta, tb, dtype)
                ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
                fast = mm.ops.matmul(a, b, ta, tb)
                naive = _core.gemm(a, b, ta, tb, None, "naive")
                assert fast.dtype == dtype and fast.shape == (m, n)
                _check(fast, ref, dtype)
                _check(naive, ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_matmul_blocked_sizes_and_threads(isa, dtype, threads):
    # Sizes that cross the block sizes (KC=256, MC, NC=3072) and their edges. (106, 3100, 300):
    # packed, its last A sliver 10 rows (transposed in an 8-row block that overlaps the one before).
    rng = np.random.default_rng(2)
    for m, n, k in [(200, 300, 784), (784, 300, 8), (8, 10, 300), (145, 3100, 257), (1, 4000, 513), (600, 1, 300),
                    (106, 3100, 300)]:
        for ta, tb in [(False, False), (True, False), (False, True)]:
            a, b = _operands(rng, m, n, k, ta, tb, dtype)
            ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
            _check(mm.ops.matmul(a, b, ta, tb, num_threads=threads), ref, dtype)


def test_matmul_is_deterministic_across_threads():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((513, 700)).astype(np.float32)
    b = rng.standard_normal((700, 301)).astype(np.float32)
    c1 = mm.ops.matmul(a, b, num_threads=1)
    c2 = mm.ops.matmul(a, b, num_threads=2)
    assert np.array_equal(c1, c2)  # bitwise: each C tile is summed in the same order


_SPLITS_SCRIPT = r"""
import numpy as np, mnist_mlp as mm
rng = np.random.default_rng(7)
# Blocks of 64 x 24 x 64 (kc, mc, nc): every product below crosses several of each.
# (200, 900, 300): wide C, the threads take its columns (one packed B panel each);
# (700, 40, 150): two slivers of columns, the threads share each B panel.
for m, n, k in [(200, 900, 300), (257, 333, 131), (700, 40, 150), (301, 70, 65)]:
    for ta, tb in [(False, False), (True, False), (False, True)]:
        a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
        ref = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
        c1 = mm.ops.matmul(a, b, ta, tb, num_threads=1)
        np.testing.assert_allclose(c1, ref, rtol=0, atol=2e-5 * max(1.0, float(np.abs(ref).max())))
        for t in (2, 3, 4):
            assert np.array_equal(c1, mm.ops.matmul(a, b, ta, tb, num_threads=t)), (m, n, k, ta, tb, t)
print("ok")
"""


def test_blocked_matmul_thread_splits_with_small_blocks():
    # The blocked GEMM's two thread splits (by C's columns, each thread its own
    # packed panels; or a shared B panel with the rows split), over blocks small
    # enough that every edge is crossed: the same bits for 1-4 threads. The block
    # sizes are read once per process, hence the subprocess.
    import os
    import subprocess
    import sys

    env = dict(os.environ, MNIST_MLP_GEMM_BLOCKS="64,24,64")
    out = subprocess.run([sys.executable, "-c", _SPLITS_SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_shallow_matmul_is_deterministic_across_threads():
    # Depth <= 16 skips packing at any height; its row blocks split between threads.
    rng = np.random.default_rng(5)
    a = rng.standard_normal((8, 2000)).astype(np.float32)
    b = rng.standard_normal((8, 300)).astype(np.float32)
    c1 = mm.ops.matmul(a, b, True, num_threads=1)
    assert np.array_equal(c1, mm.ops.matmul(a, b, True, num_threads=2))  # bitwise: the same sums per row
    _check(c1, a.T.astype(np.float64) @ b.astype(np.float64), np.float32)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [17, 128, 1000])
def test_shallow_matmul_with_transposed_b_at_any_height(isa, dtype, m):
    # dZ . W^T below a narrow layer (k = 10 classes): op(B) is transposed once and
    # streamed by every row block, at any height; the same bits for any thread count.
    rng = np.random.default_rng(12)
    for n, k in [(512, 10), (300, 16), (17, 1), (33, 7), (5000, 10)]:
        a, b = _operands(rng, m, n, k, False, True, dtype)
        c1 = mm.ops.matmul(a, b, False, True, num_threads=1)
        _check(c1, a.astype(np.float64) @ b.T.astype(np.float64), dtype)
        for t in (2, 3):
            assert np.array_equal(c1, mm.ops.matmul(a, b, False, True, num_threads=t)), (m, n, k, t)


@pytest.mark.parametrize("n", [40, 300])
def test_few_rows_matmul_splits_columns_between_threads(isa, n):
    # A batch of 8 is one row block: its column tiles are split between threads.
    # With 512-bit vectors n = 40 is one full tile and a last one shifted left to
    # overlap it, and n = 300 ends in a shifted one-vector tile. (The split keeps a
    # shifted tile on its neighbour's thread; the same values written twice would
    # not show here.)
    rng = np.random.default_rng(7)
    a = rng.standard_normal((8, 4000)).astype(np.float32)
    b = rng.standard_normal((4000, n)).astype(np.float32)
    c1 = mm.ops.matmul(a, b, num_threads=1)
    assert np.array_equal(c1, mm.ops.matmul(a, b, num_threads=2))  # bitwise: the same sums per tile
    _check(c1, a.astype(np.float64) @ b.astype(np.float64), np.float32)


def test_matmul_arguments_as_python_would_take_them():
    # ops.matmul is the core's own function, its arguments parsed by hand:
    # the same names, defaults and errors as `def matmul(a, b, trans_a=False,
    # trans_b=False, *, num_threads=None)`.
    rng = np.random.default_rng(8)
    a = rng.standard_normal((5, 3)).astype(np.float32)
    b = rng.standard_normal((4, 3)).astype(np.float32)
    want = mm.ops.matmul(a, b, False, True)
    np.testing.assert_array_equal(mm.ops.matmul(b=b, a=a, trans_b=True, num_threads=1), want)
    np.testing.assert_array_equal(mm.ops.matmul(a, b, trans_b=1), want)
    with pytest.raises(TypeError, match="missing required argument 'b'"):
        mm.ops.matmul(a)
    with pytest.raises(TypeError, match="multiple values for argument 'trans_a'"):
        mm.ops.matmul(a, b, False, trans_a=True)
    with pytest.raises(TypeError, match="unexpected keyword argument 'threads'"):
        mm.ops.matmul(a, b, threads=1)
    with pytest.raises(TypeError, match="from 2 to 4 positional arguments but 5"):
        mm.ops.matmul(a, b, False, True, 1)  # num_threads is keyword-only
    import inspect

    assert str(inspect.signature(mm.ops.matmul)) == "(a, b, trans_a=False, trans_b=False, *, num_threads=None)"


def test_matmul_inputs_the_core_does_not_take_directly():
    # The core multiplies aligned C-contiguous float arrays of one dtype itself;
    # everything else goes through the Python checks and conversions, with the
    # same result and the same errors.
    rng = np.random.default_rng(6)
    a = rng.standard_normal((9, 17)).astype(np.float32)
    b = rng.standard_normal((17, 5)).astype(np.float32)
    want = mm.ops.matmul(a, b)
    buf = np.zeros(a.size * 4 + 1, np.uint8)[1:].view(np.float32).reshape(a.shape)  # misaligned by one byte
    buf[...] = a
    assert not buf.flags.aligned
    np.testing.assert_array_equal(mm.ops.matmul(buf, b), want)  # copied, aligned (UBSan in .ci/run checks)
    np.testing.assert_array_equal(mm.ops.relu(buf), np.maximum(a, 0))
    with pytest.raises(TypeError, match=">f4"):  # not float32 in native byte order: refused, as before
        mm.ops.matmul(a.astype(">f4"), b)
    np.testing.assert_array_equal(mm.ops.matmul(a, b, num_threads=np.int64(2)), want)
    np.testing.assert_array_equal(mm.ops.matmul(a, b.T.copy(), trans_b="yes"), want)  # truth value, as bool()
    with pytest.raises(TypeError, match="num_threads"):
        mm.ops.matmul(a, b, num_threads=True)
    with pytest.raises(ValueError, match=r"inner dimensions differ: op\(a\) is \(9, 17\), op\(b\) is \(5, 17\)"):
        mm.ops.matmul(a, b.T.copy())


def test_matmul_empty_and_zero_depth():
    a = np.zeros((3, 0), np.float32)
    b = np.zeros((0, 4), np.float32)
    np.testing.assert_array_equal(mm.ops.matmul(a, b), np.zeros((3, 4), np.float32))
    assert mm.ops.matmul(np.zeros((0, 5)), np.zeros((5, 2))).shape == (0, 2)


def test_matmul_accepts_views_and_lists():
    a = np.arange(12, dtype=np.float64).reshape(4, 3)
    np.testing.assert_allclose(mm.ops.matmul(a.T, a), a.T @ a, rtol=1e-14)
    np.testing.assert_allclose(mm.ops.matmul([[1.0, 2.0]], [[3.0], [4.0]]), [[11.0]])


@pytest.mark.parametrize(
    "a,b,kw,exc,match",
    [
        (np.ones((2, 3), np.float32), np.ones((4, 2), np.float32), {}, ValueError, "inner dimensions"),
        (np.ones((2, 3), np.float32), np.ones((3, 2), np.float64), {}, TypeError, "share a dtype"),
        (np.ones((2, 3), np.int64), np.ones((3, 2), np.int64), {}, TypeError, "int64"),
        (np.ones(3, np.float32), np.ones((3, 2), np.float32), {}, ValueError, "2-D"),
        (np.ones((2, 3), np.float32), np.ones((3, 2), np.float32), {"num_threads": 0}, ValueError, "num_threads"),
    ],
)
def test_matmul_bad_arguments(a, b, kw, exc, match):
    with pytest.raises(exc, match=match):
        mm.ops.matmul(a, b, **kw)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu(isa, dtype):
    x = np.random.default_rng(4).standard_normal((37, 11)).astype(dtype)
    out = mm.ops.relu(x)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, np.maximum(x, 0))  # exact: a comparison, no arithmetic


def _np_softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_and_cross_entropy(isa, dtype):
    rng = np.random.default_rng(5)
    z = (rng.standard_normal((64, 10)) * 5).astype(dtype)
    y = rng.integers(0, 10, 64)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    p = mm.ops.softmax(z)
    np.testing.assert_allclose(p, _np_softmax(z.astype(np.float64)), rtol=rtol, atol=1e-7 if dtype == np.float32 else 0)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=rtol)
    ref = -np.mean(np.log(_np_softmax(z.astype(np.float64))[np.arange(64), y]))
    assert mm.ops.cross_entropy(z, y) == pytest.approx(ref, rel=rtol)
    assert mm.ops.cross_entropy(z, np.eye(10)[y]) == pytest.approx(ref, rel=rtol)  # one-hot labels
    g = mm.ops.softmax_cross_entropy_grad(z, y)
    np.testing.assert_allclose(g, (_np_softmax(z.astype(np.float64)) - np.eye(10)[y]) / 64, rtol=rtol, atol=1e-8)


def test_softmax_is_stable_and_cross_entropy_finite_when_probability_underflows():
    z = np.array([[1000.0, 0.0, -1000.0]])
    p = mm.ops.softmax(z)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [[1.0, 0.0, 0.0]], atol=1e-300)
    # p[2] underflows to 0: log(p) would be -inf, log-sum-exp gives the exact 2000.
    assert mm.ops.cross_entropy(z, [2]) == pytest.approx(2000.0, rel=1e-12)
    assert np.isfinite(mm.ops.cross_entropy(z.astype(np.float32), [2]))


def test_softmax_1d():
    z = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(mm.ops.softmax(z), _np_softmax(z[None])[0], rtol=1e-14)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: mm.ops.cross_entropy(np.zeros((2, 3)), [0, 3]), ValueError, "label 3 at index 1"),
        (lambda: mm.ops.cross_entropy(np.zeros((2, 3)), [0]), ValueError, "len"),
        (lambda: mm.ops.cross_entropy(np.zeros((2, 3)), [0.0, 1.0]), TypeError, "integers"),
        (lambda: mm.ops.softmax(np.zeros((2, 3, 4))), ValueError, "shape"),
        (lambda: mm.ops.relu(np.zeros(3, np.int32)), TypeError, "int32"),
    ],
)
def test_op_bad_arguments(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_matmul_at_a_large_inner_dimension_keeps_float32_precision():
    # One float32 accumulator over 2^25 ones stops at 2^24 = 16777216 (where
    # adding 1 no longer changes it); partial sums of 1024 terms are exact.
    k = 2**25
    ones = np.ones((1, k), np.float32)
    assert mm.ops.matmul(ones, ones.reshape(k, 1))[0, 0] == np.float32(k)
    # Random data: two-level summation, error about eps * (sqrt(1024) + sqrt(k / 1024))
    # = 6e-8 * (32 + 64) ~ 6e-6 of the result; NumPy's BLAS is ~1e-5 here.
    rng = np.random.default_rng(0)
    k = 2**22
    for m, n in ((1, 1), (3, 5), (8, 40)):
        a, b = rng.random((m, k), dtype=np.float32), rng.random((k, n), dtype=np.float32)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        np.testing.assert_allclose(mm.ops.matmul(a, b), ref, rtol=2e-5, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_accumulate_over_every_path(isa, dtype):
    # C := C + alpha op(A) op(B) (GemmJob's accumulate: the engine's plain SGD step
    # inside the weight gradient's product). Shapes reach the few-row kernels with
    # full and narrow last tiles, the blocked kernel with one depth block, and the
    # scratch fallback (transposed B, narrow C, depth past one block); every
    # thread count gives the same bits.
    rng = np.random.default_rng(11)
    shapes = [(300, 64, 40), (300, 10, 64), (512, 256, 64), (784, 300, 8), (37, 70, 200), (2, 3, 5),
              (1024, 512, 128), (700, 600, 200), (301, 65, 300), (50, 40, 1000),
              # one vector of columns or less (an output layer's weight gradient): the
              # narrow kernel adding as it stores, every row through its tile
              (512, 10, 128), (33, 16, 7), (1, 1, 1), (5, 9, 1024)]
    for m, n, k in shapes:
        for ta, tb in [(True, False), (False, False), (False, True)]:
            a, b = _operands(rng, m, n, k, ta, tb, dtype)
            c = rng.standard_normal((m, n)).astype(dtype)
            alpha = -0.37
            ref = c.astype(np.float64) + alpha * ((a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64))
            got = _core.gemm_accumulate(c, a, b, ta, tb, alpha, 1)
            assert got.dtype == dtype and got.shape == (m, n)
            _check(got, ref, dtype)
            for t in (2, 3):
                assert np.array_equal(got, _core.gemm_accumulate(c, a, b, ta, tb, alpha, t)), (m, n, k, ta, tb, t)
