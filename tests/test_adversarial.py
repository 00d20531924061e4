"""What an adversarial caller does: data changing under fit, the deepest network
validation accepts. Crashes here are memory errors; CI also runs this file under
AddressSanitizer and UndefinedBehaviorSanitizer, where they fail loudly."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import mnist_mlp as mm


@pytest.fixture(scope="module")
def pixels(mnist):
    (x, y), _ = mnist
    return np.ascontiguousarray(x[:384].reshape(384, -1)), y[:384].copy()


class Flipper:
    """Another thread inverting the last rows of x (255 - pixel) as fast as it
    can: blank pixels become ink and ink becomes blank, so every count of
    nonzeros taken before a change is wrong after it."""

    def __init__(self, x: np.ndarray, rows: int):
        self.tail = x[-rows:]
        self.flips = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            np.subtract(255, self.tail, out=self.tail)
            self.flips += 1

    def __enter__(self) -> "Flipper":
        self._old = sys.getswitchinterval()
        sys.setswitchinterval(1e-5)  # let the flipper in whenever the GIL is free
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        sys.setswitchinterval(self._old)


# (batch_size, shuffle, hidden): the batch plan (in order, one hidden layer,
# small batches), the nonzero index (shuffled), the general engine's first layer
# (two hidden layers, a large batch).
CASES = [(8, False, (16,)), (32, False, (16,)), (8, True, (16,)), (64, True, (16,)), (128, True, (16, 8)), (16, False, (16, 8))]


@pytest.mark.parametrize("batch_size, shuffle, hidden", CASES)
def test_pixels_changing_during_fit_never_corrupt_memory(pixels, batch_size, shuffle, hidden):
    # The reproduction: a heap overflow within 0.2 s of fits like these.
    # A changed array may give any model; it must give one, with finite weights.
    x0, y = pixels
    x = x0.copy()
    fits = 1000 // len(CASES)
    with Flipper(x, rows=96) as flipper:
        for i in range(fits):
            m = mm.MLP([784, *hidden, 10], seed=i)
            m.fit(x, y, epochs=1, batch_size=batch_size, shuffle=shuffle, num_threads=2, eval_train=False)
            assert all(np.isfinite(w).all() for w in m.weights + m.biases)
    assert flipper.flips > fits  # the data really did change during the fits


def test_index_and_plan_of_changing_pixels_stay_within_bounds(pixels):
    from mnist_mlp import _core

    x0, _ = pixels
    x = x0.copy()
    with Flipper(x, rows=192):
        for _ in range(150):
            index = _core.NonzeroIndex(x, 2)
            assert 0 <= index.nnz <= x.size
            plan = _core.BatchPlan(x, 8, 2)
            assert plan.nbytes > 0


def test_a_stable_array_gives_the_same_index_as_before(pixels):
    # The bounded second pass changes nothing when nothing changes.
    from mnist_mlp import _core

    x, _ = pixels
    assert _core.NonzeroIndex(x, 2).nnz == np.count_nonzero(x)


@pytest.mark.parametrize("shuffle, batch_size", [(False, 8), (True, 100)])
def test_the_deepest_network_validation_accepts_trains_as_the_reference(shuffle, batch_size):
    # 64 weight matrices (65 layer sizes) is the documented limit (it used to
    # crash: a table of 64 indexed at 64); 65 is refused.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 30), dtype=np.uint8)
    y = rng.integers(0, 4, 200)
    sizes = [30] + [12] * 63 + [4]
    assert len(sizes) - 1 == 64
    # He-scaled weights, so that the signal and the gradient reach every layer.
    ws = [rng.normal(0, np.sqrt(2 / a), (a, b)) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [np.full(b, 0.01) for b in sizes[1:]]
    m = mm.MLP.from_weights(ws, bs, seed=0)
    ref = mm.reference.NumpyMLP.from_weights(ws, bs, seed=0)
    m.fit(x, y, epochs=1, batch_size=batch_size, shuffle=shuffle, lr=0.01)
    ref.fit(x, y, epochs=1, batch_size=batch_size, shuffle=shuffle, lr=0.01)
    assert len(m.weights) == 64
    assert min(np.abs(w - w0).max() for w, w0 in zip(m.weights, ws)) > 1e-7  # every layer trained
    # float64 against the float64 reference: only the summation order differs.
    for w, rw in zip(m.weights + m.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(w, rw, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(m.predict_proba(x), ref.predict_proba(x), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="at most 64 weight layers"):
        mm.MLP([30] + [12] * 64 + [4])


def _fit_in_child(x, y, q):
    # Runs in a fork() child of a process whose OpenMP pool has 2 threads.
    from mnist_mlp import _core

    m = mm.MLP([784, 32, 10], seed=0)
    m.fit(x, y, epochs=1, batch_size=100, num_threads=2)
    q.put((_core.in_forked_child(), [w.copy() for w in m.weights], m.predict(x[:50], num_threads=2)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")  # Python 3.12+ on fork with threads
def test_a_forked_child_trains_single_threaded_instead_of_hanging(pixels):
    # GNU OpenMP is not fork-safe: a child hung at its first parallel region.
    x, y = pixels
    parent = mm.MLP([784, 32, 10], seed=0)
    parent.fit(x, y, epochs=1, batch_size=100, num_threads=2)  # the pool now has its second thread
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_fit_in_child, args=(x, y, q))
    p.start()
    try:
        forked, weights, pred = q.get(timeout=120)
        p.join(timeout=30)
    finally:
        if p.is_alive():
            p.kill()
    assert p.exitcode == 0
    assert forked
    # One thread or two: bitwise the same model (the engine's claim).
    for w, pw in zip(weights, parent.weights):
        assert np.array_equal(w, pw)
    assert np.array_equal(pred, parent.predict(x[:50]))
    from mnist_mlp import _core

    assert not _core.in_forked_child()


NPROC_CHILD = textwrap.dedent(
    """
    import os, resource, warnings, numpy as np, mnist_mlp as mm
    x = np.random.default_rng(0).integers(0, 256, (400, 784), dtype=np.uint8)
    y = np.arange(400) % 10
    # Everything a fit imports, imported now: nobody may not be able to read the
    # installation (CI's is in a private temporary folder).
    mm.MLP([784, 32, 10], seed=0).fit(x, y, epochs=1, batch_size=100, num_threads=1)
    if os.getuid() == 0:  # root ignores RLIMIT_NPROC: become nobody first
        os.setgid(65534)
        os.setuid(65534)
    resource.setrlimit(resource.RLIMIT_NPROC, (1, 1))  # no new thread can start
    m = mm.MLP([784, 32, 10], seed=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m.fit(x, y, epochs=1, batch_size=100, num_threads=2)
        acc = m.evaluate(x, y, num_threads=2)[1]
    print(len(caught), caught[0].message if caught else "", flush=True)
    print("accuracy", acc, flush=True)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_NPROC semantics are Linux's")
def test_threads_that_cannot_start_fall_back_with_a_warning():
    # libgomp ended the process ("Thread creation failed") when the system
    # refused a thread.
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="2")
    r = subprocess.run([sys.executable, "-c", NPROC_CHILD], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert int(lines[0].split()[0]) >= 1
    assert "could only start 1 of 2 threads" in lines[0]
    assert float(lines[1].split()[1]) > 0.1


# --- NaN that hides, numbers out of range ---------------------------------------------


def test_mmap_array_whose_file_was_truncated_is_refused_not_sigbus(tmp_path, pixels):
    x, _ = pixels
    path = tmp_path / "x.idx"
    mm.write_idx(path, x[:100])
    xm = mm.read_idx(path, mmap=True)
    m = mm.MLP([784, 16, 10], seed=0)
    assert m.predict(xm[10:20]).shape == (10,)
    os.truncate(path, 4000)  # shorter than the mapped array: reading its tail would be SIGBUS
    for call in (lambda: m.predict(xm[10:20]), lambda: m.fit(xm, np.zeros(100, np.int64))):
        with pytest.raises(ValueError, match=r"x\.idx, which was truncated to 4000 bytes"):
            call()


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_truncated_np_memmap_of_integers_is_refused_before_its_values_are_read(tmp_path, pixels, dtype):
    """Integer input is range-checked (min/max) before it is converted: the
    truncation check must come first, or the min/max itself is SIGBUS. In a child
    process, so a regression shows as its death, not the suite's."""
    code = textwrap.dedent(f"""
        import os, numpy as np, mnist_mlp as mm
        path = {str(tmp_path / "x.bin")!r}
        np.memmap(path, dtype=np.{np.dtype(dtype).name}, mode="w+", shape=(2000, 784)).flush()
        xm = np.memmap(path, dtype=np.{np.dtype(dtype).name}, mode="r", shape=(2000, 784))
        os.truncate(path, 4096)
        try:
            mm.MLP([784, 8, 10], seed=0).predict(xm)
        except ValueError as e:
            print(e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert "which was truncated to 4096 bytes" in r.stdout


def test_masked_arrays_are_refused(pixels):
    x = np.random.default_rng(0).random((20, 5))
    x[3, 2] = np.nan
    xm = np.ma.masked_invalid(x)  # the NaN is under the mask
    y = np.arange(20) % 2
    m = mm.MLP([5, 4, 2], seed=0)
    with pytest.raises(TypeError, match="x is a masked array"):
        m.fit(xm, y)
    with pytest.raises(TypeError, match="x is a masked array"):
        m.predict(xm)
    with pytest.raises(TypeError, match="y is a masked array"):
        m.fit(np.nan_to_num(x), np.ma.masked_equal(y, 1))


def test_relu_propagates_nan_so_the_divergence_check_sees_it(pixels):
    # ReLU turned NaN into 0: with NaN weights the probabilities stayed finite
    # and accuracy silently fell from 0.90 to 0.18.
    np.testing.assert_array_equal(
        mm.ops.relu(np.array([np.nan, -1.0, 0.0, 2.0], np.float32)), np.maximum([np.nan, -1.0, 0.0, 2.0], 0)
    )
    x, y = pixels
    for kw in ({}, {"shuffle": True}, {"batch_size": 128}):
        m = mm.MLP([784, 32, 10], seed=0)
        m.weights[0][400, :] = np.nan  # the weights are views into the model
        with pytest.raises(FloatingPointError, match="diverged"):
            m.fit(x, y, **kw)
    m = mm.MLP([784, 32, 10], seed=0)
    m.weights[0][400, :] = np.nan
    rows = x[x[:, 400] > 0][:5]
    for call in (m.predict_proba, m.predict):
        with pytest.raises(ValueError, match=r"weights\[0\] holds nan at \(400, 0\)"):
            call(rows)
    with pytest.raises(ValueError, match="loss are not finite"):
        m.evaluate(rows, np.zeros(len(rows), np.int64))


def test_values_beyond_the_models_float_range_are_refused():
    rng = np.random.default_rng(0)
    x, y = rng.random((20, 5)), np.arange(20) % 2
    m = mm.MLP([5, 4, 2], seed=0)
    with pytest.raises(ValueError, match=r"x holds 1e\+300 at index \(0, 0\), beyond float32's range"):
        m.predict(np.full((2, 5), 1e300))
    mm.MLP([5, 4, 2], seed=0, dtype=np.float64).predict(np.full((2, 5), 1e300))  # float64 holds it
    big = mm.MLP.from_weights([np.full((5, 4), 3e38, np.float32), np.ones((4, 2), np.float32)],
                              [np.zeros(4, np.float32), np.zeros(2, np.float32)])
    with pytest.raises(ValueError, match="the logits overflowed float32"):
        big.predict_proba(x)
    with pytest.raises(ValueError, match=r"lr=1e-50 is outside what a float32 model can use"):
        m.fit(x, y, lr=1e-50)
    with pytest.raises(ValueError, match=r"lr=5e-324 is outside what a float64 model can use"):
        mm.MLP([5, 4, 2], seed=0, dtype=np.float64).fit(x, y, lr=5e-324)
    with pytest.raises(ValueError, match=r"outside what a float32 model can use"):
        m.fit(x, y, optimizer=mm.optim.SGD(lr=1e39))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"batch_size": 2**63}, r"batch_size must be <= 9223372036854775807"),
        ({"num_threads": 2**31}, r"num_threads must be <= 2147483647"),
        ({"lr": 10**400}, r"lr must be finite and > 0, got an integer of 401 digits"),
        ({"epochs": 2**64}, r"epochs must be <="),
    ],
)
def test_huge_integers_are_value_errors_naming_the_argument(kwargs, match):
    m = mm.MLP([5, 4, 2], seed=0)
    with pytest.raises(ValueError, match=match):
        m.fit(np.zeros((4, 5)), np.zeros(4, np.int64), **kwargs)


def test_huge_optimizer_and_estimator_arguments():
    with pytest.raises(ValueError, match="lr must be finite, got an integer of 401 digits"):
        mm.optim.SGD(lr=10**400)
    x, y = np.random.default_rng(0).random((30, 4)), np.arange(30) % 2
    for bad in ("12", (8.7,), [4, 2.0], (True,)):
        with pytest.raises(ValueError, match="hidden_layer_sizes must be an int or a sequence of ints"):
            mm.MLPClassifier(hidden_layer_sizes=bad, max_iter=1).fit(x, y)
    with pytest.raises(ValueError, match="learning_rate_init"):
        mm.MLPClassifier(learning_rate_init=10**400, max_iter=1).fit(x, y)


PREDICT_CHILD = textwrap.dedent(
    """
    import time, numpy as np, mnist_mlp as mm
    m = mm.MLP([784, 2048, 2048, 10], seed=0)
    x = np.random.default_rng(0).integers(0, 256, (120000, 784), dtype=np.uint8)
    print("ready", flush=True)
    t0 = time.perf_counter()
    try:
        m.predict(x)  # ~1 TFLOP: several seconds
        print("finished", time.perf_counter() - t0, flush=True)
    except KeyboardInterrupt:
        print("interrupted", time.perf_counter() - t0, flush=True)
    """
)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery to a child is POSIX-only here")
def test_ctrl_c_interrupts_a_long_predict():
    # predict on 3 million rows could not be interrupted for 55 s.
    import signal
    import time

    with subprocess.Popen([sys.executable, "-c", PREDICT_CHILD], stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(1.0)
            sent = time.perf_counter()
            proc.send_signal(signal.SIGINT)
            line = proc.stdout.readline().split()
            # A slice is ~2^34 multiply-adds (a fraction of a second); the bound is
            # loose for slow shared machines, far below the whole predict.
            assert line[0] == "interrupted", line
            assert time.perf_counter() - sent < 8
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.mark.skipif(os.name != "posix", reason="needs setitimer")
def test_ctrl_c_interrupts_the_batch_plan_before_the_first_epoch(mnist):
    # The first 0.4-0.65 s of fit on MNIST (planning) could not be interrupted.
    import signal

    from mnist_mlp import _core

    (x, _), _ = mnist
    x = np.ascontiguousarray(np.concatenate([x, x, x]).reshape(-1, 784))  # ~0.6 s of planning here

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    import time

    t0 = time.perf_counter()
    _core.BatchPlan(x, 8, 2)
    whole = time.perf_counter() - t0
    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, whole / 10)
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            _core.BatchPlan(x, 8, 2)
        # Interrupted inside (between rounds of blocks), not after it returned.
        assert time.perf_counter() - t0 < 0.7 * whole
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert _core.BatchPlan(x[:1000], 8, 2).nbytes > 0  # still works afterwards


@pytest.mark.skipif(os.name != "posix", reason="needs setitimer")
def test_ctrl_c_interrupts_reading_a_large_gzip_file(mnist, tmp_path):
    # read_idx of a 1 GiB gzip file could not be interrupted (2.4 s).
    import gzip
    import signal
    import struct
    import time

    from mnist_mlp import _core

    if not _core.HAVE_ZLIB:
        pytest.skip("the C++ reader inflates only with zlib")
    (x, _), _ = mnist
    big = np.concatenate([x] * 4)  # 188 MB of pixels
    path = tmp_path / "big-idx3-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=1) as f:
        f.write(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", *big.shape))
        f.write(big.tobytes())
    t0 = time.perf_counter()
    assert mm.read_idx(path).shape == big.shape
    whole = time.perf_counter() - t0

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, whole / 10)
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            mm.read_idx(path)
        assert time.perf_counter() - t0 < 0.7 * whole  # inside the read, between chunks of 16 MiB
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
