"""The training engine (cpp/engine/train_epoch.inc) against the NumPy reference,
over depths, batch sizes and input kinds; its determinism across thread counts;
its kernel choice; and its limits."""

from __future__ import annotations

import numpy as np
import pytest

import mnist_mlp as mm
from mnist_mlp import _core
from mnist_mlp.reference import NumpyMLP

from conftest import rel_max_diff

# float64 through a few hundred steps: the engine and the reference sum the same
# products in different orders (blocked GEMM, sparse first layer), so they differ
# by rounding that grows slowly with the steps; 1e-9 of the largest parameter
# leaves room for that, and a wrong gradient is off by far more.
TOL64 = 1e-9


def _data(n: int, features: int, kind: str, seed: int = 0):
    """MNIST-like: ~25% nonzero pixels in 1..255, labels from 10 classes."""
    rng = np.random.default_rng(seed)
    px = ((rng.random((n, features)) < 0.25) * rng.integers(1, 256, (n, features))).astype(np.uint8)
    y = rng.integers(0, 10, n)
    if kind == "uint8":
        return px, y
    return (px / 255.0).astype(np.float64), y


def _max_rel(model, ref) -> float:
    return max(rel_max_diff(a, b) for a, b in zip(model.weights + model.biases, ref.weights + ref.biases))


HIDDEN = [(33,), (40, 17), (64, 31, 20), (24, 48, 16, 12)]


@pytest.mark.parametrize("hidden", HIDDEN, ids=lambda h: "x".join(map(str, h)))
@pytest.mark.parametrize("batch", [1, 7, 64, 65, 200, 256])
@pytest.mark.parametrize("kind", ["uint8", "float64"])
def test_float64_matches_reference(isa, hidden, batch, kind):
    x, y = _data(300, 50, kind)
    sizes = [50, *hidden, 10]
    m = mm.MLP(sizes, seed=3, dtype=np.float64)
    r = NumpyMLP(sizes, seed=3, dtype=np.float64)
    m.fit(x, y, epochs=2, batch_size=batch, lr=0.1)
    r.fit(x, y, epochs=2, batch_size=batch, lr=0.1)
    assert _max_rel(m, r) <= TOL64


@pytest.mark.parametrize("hidden", [(40, 17), (64, 31, 20)], ids=lambda h: "x".join(map(str, h)))
@pytest.mark.parametrize("batch", [7, 100])
def test_float64_shuffled_matches_reference(isa, hidden, batch):
    # The same seed gives the reference the same permutations (reference.shuffle_rng).
    x, y = _data(250, 50, "uint8", seed=1)
    sizes = [50, *hidden, 10]
    m = mm.MLP(sizes, seed=5, dtype=np.float64)
    r = NumpyMLP(sizes, seed=5, dtype=np.float64)
    m.fit(x, y, epochs=2, batch_size=batch, lr=0.1, shuffle=True)
    r.fit(x, y, epochs=2, batch_size=batch, lr=0.1, shuffle=True)
    assert _max_rel(m, r) <= TOL64


@pytest.mark.parametrize("batch", [8, 100])
def test_float32_deep_network_on_mnist_matches_reference(mnist, isa, batch):
    # float32: each step's rounding (~6e-8 relative) accumulates; 100 steps stay near 1e-5.
    (x, y), _ = mnist
    x, y = x[: 100 * batch].reshape(-1, 784), y[: 100 * batch]
    m = mm.MLP([784, 64, 32, 10], seed=0)
    r = NumpyMLP([784, 64, 32, 10], seed=0)
    m.fit(x, y, epochs=1, batch_size=batch, lr=0.1)
    r.fit(x, y, epochs=1, batch_size=batch, lr=0.1)
    assert _max_rel(m, r) <= 2e-5


@pytest.mark.parametrize(
    "sizes,batch,dtype",
    [([50, 96, 80, 64, 10], 8, np.float32), ([50, 96, 80, 16, 10], 8, np.float32), ([50, 200, 96, 10], 40, np.float64),
     ([50, 800, 64, 10], 16, np.float32), ([50, 300, 10], 200, np.float64), ([50, 520, 130, 10], 256, np.float32)],
    ids=["deep", "deep-panels", "panels-wide-next", "three-panels", "wide-large-batch", "large-batch"],
)
def test_bitwise_identical_across_thread_counts(sizes, batch, dtype):
    x, y = _data(1100, 50, "uint8", seed=2)
    results = []
    for threads in (1, 2, 3):
        m = mm.MLP(sizes, seed=1, dtype=dtype)
        h = m.fit(x, y, epochs=2, batch_size=batch, lr=0.05, shuffle=True, num_threads=threads)
        results.append((m.weights, m.biases, [r["train_loss"] for r in h]))
    for ws, bs, losses in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(ws + bs, results[0][0] + results[0][1]))
        assert losses == results[0][2]


def test_team_column_lists_with_few_columns_bitwise():
    # The first layer's column lists built by the team (batches of 16+ rows per thread):
    # each thread fills its share of the used columns. Nearly blank images use few
    # columns, so with 4 threads some shares are empty or a single column; a few
    # images are all zero. Every thread count gives the bits of one thread, and the
    # reference's weights.
    rng = np.random.default_rng(5)
    x = np.zeros((700, 50), np.uint8)
    for i in range(700):
        k = rng.integers(0, 3)  # 0, 1 or 2 nonzero pixels
        x[i, rng.choice(50, k, replace=False)] = rng.integers(1, 256, k)
    y = rng.integers(0, 10, 700)
    sizes = [50, 30, 20, 10]  # the layers' stages: 20 x 10 is too big a tail for panels of 30 x 20
    results = []
    for threads in (1, 2, 3, 4):
        m = mm.MLP(sizes, seed=3, dtype=np.float64)
        h = m.fit(x, y, epochs=2, batch_size=64, lr=0.1, shuffle=True, num_threads=threads)
        assert h[0]["kernel"] == "layers-sparse"
        results.append((m, [r["train_loss"] for r in h]))
    m0, losses0 = results[0]
    for m, losses in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(m.weights + m.biases, m0.weights + m0.biases))
        assert losses == losses0
    r = NumpyMLP(sizes, seed=3, dtype=np.float64)
    r.fit(x, y, epochs=2, batch_size=64, lr=0.1, shuffle=True)
    assert _max_rel(m0, r) <= TOL64


@pytest.mark.parametrize(
    "sizes,batch,shuffle,kind,kernel",
    [
        ([50, 30, 10], 8, False, "uint8", "panels-plan"),
        ([50, 30, 10], 8, True, "uint8", "panels-index"),
        ([50, 30, 10], 8, False, "float64", "panels"),
        ([50, 30, 10], 65, False, "uint8", "panels-index"),  # the first layer holds most weights
        ([50, 30, 10], 257, True, "uint8", "layers-sparse"),
        ([50, 30, 10], 65, True, "float64", "layers-dense"),  # over 64: pixels only
        ([50, 40, 30, 10], 65, True, "uint8", "layers-sparse"),  # 40 x 30 + 30 x 10 > 50 x 40 / 4
        ([50, 30, 20, 10], 8, False, "uint8", "layers-sparse"),  # the layers after two: too big for panels
        ([50, 64, 32, 10], 8, False, "uint8", "panels-plan"),
        ([50, 64, 32, 8, 10], 64, True, "uint8", "panels-index"),
        ([50, 64, 32, 10], 65, True, "uint8", "layers-sparse"),
        ([50, 30, 20, 10], 200, True, "uint8", "layers-sparse"),
        ([50, 30, 20, 10], 8, False, "float64", "layers-dense"),
    ],
)
def test_kernel_choice(sizes, batch, shuffle, kind, kernel):
    x, y = _data(300, 50, kind)
    m = mm.MLP(sizes, seed=0, dtype=np.float64)
    h = m.fit(x, y, epochs=1, batch_size=batch, shuffle=shuffle)
    assert h[0]["kernel"] == kernel


@pytest.mark.parametrize("engine,kernels", [("1", ("layers-sparse", "layers-dense")), ("0", ("panels-plan", "panels"))])
def test_sparse_and_dense_first_layer_agree(monkeypatch, engine, kernels):
    monkeypatch.setenv("MNIST_MLP_TEST_LAYERS", engine)
    x, y = _data(300, 50, "uint8")
    a = mm.MLP([50, 40, 30, 10], seed=0, dtype=np.float64)
    b = mm.MLP([50, 40, 30, 10], seed=0, dtype=np.float64)
    ha = a.fit(x, y, epochs=1, batch_size=32, sparse=True)
    hb = b.fit(x, y, epochs=1, batch_size=32, sparse=False)
    assert (ha[0]["kernel"], hb[0]["kernel"]) == kernels
    assert max(rel_max_diff(p, q) for p, q in zip(a.weights + a.biases, b.weights + b.biases)) <= 1e-12


@pytest.mark.parametrize("sizes,batch", [([50, 30, 10], 8), ([50, 30, 20, 10], 8), ([50, 30, 20, 10], 100)])
def test_running_train_metrics(sizes, batch):
    # eval_train=False: the mean of each batch's loss before its update, and the
    # share of samples predicted right then; the reference's train_step gives the losses.
    x, y = _data(300, 50, "uint8")
    m = mm.MLP(sizes, seed=0, dtype=np.float64)
    r = NumpyMLP(sizes, seed=0, dtype=np.float64)
    rec = m.fit(x, y, epochs=1, batch_size=batch, eval_train=False)[0]
    loss = correct = 0.0
    for s in range(0, len(x), batch):
        xb, yb = x[s : s + batch], y[s : s + batch]
        correct += int(np.sum(np.argmax(r._forward(xb)[-1], axis=1) == yb))
        loss += r.train_step(xb, yb, 0.1)
    assert rec["train_loss"] == pytest.approx(loss / len(x), rel=1e-12)
    assert rec["train_accuracy"] == correct / len(x)


def _panels_against_layers(monkeypatch, sizes, batch, kind, shuffle, act="relu"):
    """Trains `sizes` in the panels and in the layers' stages (forced by
    MNIST_MLP_TEST_LAYERS), float64, 2 epochs; checks both agree, and with batches
    in order the reference too, to TOL64."""
    x, y = _data(300, 50, kind)
    out = {}
    for layers in ("0", "1"):
        monkeypatch.setenv("MNIST_MLP_TEST_LAYERS", layers)
        m = mm.MLP(sizes, activation=act, seed=2, dtype=np.float64)
        h = m.fit(x, y, epochs=2, batch_size=batch, lr=0.1, shuffle=shuffle, num_threads=2)
        out[h[0]["kernel"].split("-")[0]] = m
    assert set(out) == {"panels", "layers"}
    a, b = out["panels"], out["layers"]
    assert max(rel_max_diff(p, q) for p, q in zip(a.weights + a.biases, b.weights + b.biases)) <= TOL64
    if not shuffle:
        r = NumpyMLP(sizes, activation=act, seed=2, dtype=np.float64)
        r.fit(x, y, epochs=2, batch_size=batch, lr=0.1)
        assert _max_rel(a, r) <= TOL64


@pytest.mark.parametrize("act", ["tanh", "logistic", "identity"])
@pytest.mark.parametrize(
    "sizes,batch,kind,shuffle",
    [
        ([50, 30, 10], 8, "uint8", False),  # a batch plan
        ([50, 30, 10], 5, "uint8", True),
        ([50, 30, 10], 100, "uint8", True),  # over 64: pixels only
        ([50, 64, 32, 10], 13, "float64", False),
        ([50, 200, 96, 10], 8, "uint8", True),  # a next layer of 16+ units: its products as GEMMs
        ([50, 40, 24, 6, 10], 1, "uint8", False),
    ],
)
def test_panels_with_every_activation(monkeypatch, act, sizes, batch, kind, shuffle):
    # Activations other than ReLU in the panels (applied over each panel's real
    # units, the padding left at 0), against the layers' stages and the reference.
    _panels_against_layers(monkeypatch, sizes, batch, kind, shuffle, act)


@pytest.mark.parametrize("sizes", [[50, 64, 32, 10], [50, 64, 48, 8, 10], [50, 64, 12, 10], [50, 200, 96, 10]])
@pytest.mark.parametrize("batch", [1, 8, 13, 64])
@pytest.mark.parametrize("kind,shuffle", [("uint8", False), ("uint8", True), ("float64", False)])
def test_panels_agree_with_the_layers_stages(monkeypatch, isa, sizes, batch, kind, shuffle):
    # Two or more hidden layers in panels (the next layer's rows with the first
    # layer's units; the layers after them on every thread), against the engine's
    # layer-by-layer stages forced by MNIST_MLP_TEST_LAYERS, and the reference.
    _panels_against_layers(monkeypatch, sizes, batch, kind, shuffle)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_failed_allocation_in_the_panels_drops_the_epoch(monkeypatch, threads):
    # An allocation failing inside the panels' region (forced on the last thread's
    # tail at step 5): MemoryError, no thread left waiting, the model as it was.
    x, y = _data(300, 50, "uint8")
    m = mm.MLP([50, 64, 32, 10], seed=2, dtype=np.float64)
    m.fit(x, y, epochs=1, batch_size=8, lr=0.1, num_threads=threads)
    before = [p.copy() for p in m.weights + m.biases]
    monkeypatch.setenv("MNIST_MLP_TEST_FAIL_STEP", "5")
    import threading

    raised = []

    def run():  # in a daemon thread: a team left waiting fails the test instead of hanging it
        try:
            m.fit(x, y, epochs=1, batch_size=8, lr=0.1, num_threads=threads)
        except MemoryError as e:
            raised.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(60)
    assert not t.is_alive(), "the panels' threads hung after the failure"
    assert len(raised) == 1
    assert all(np.array_equal(a, b) for a, b in zip(m.weights + m.biases, before))
    monkeypatch.delenv("MNIST_MLP_TEST_FAIL_STEP")
    h = m.fit(x, y, epochs=1, batch_size=8, lr=0.1, num_threads=threads)
    assert h[0]["kernel"] == "panels-plan"


def test_sixty_four_weight_matrices_train():
    sizes = [20] + [6] * 63 + [3]
    assert len(sizes) == 65
    rng = np.random.default_rng(0)
    x = rng.random((40, 20))
    y = rng.integers(0, 3, 40)
    for batch in (8, 40):
        m = mm.MLP(sizes, seed=0, dtype=np.float64)
        r = NumpyMLP(sizes, seed=0, dtype=np.float64)
        m.fit(x, y, epochs=1, batch_size=batch, lr=0.01)
        r.fit(x, y, epochs=1, batch_size=batch, lr=0.01)
        assert _max_rel(m, r) <= TOL64
    with pytest.raises(ValueError, match="at most 64 weight layers"):
        mm.MLP([20] + [6] * 64 + [3])


def test_a_batch_of_every_sample_and_wide_layers():
    # One batch of all 300 samples (a single step), and a layer wider than one GEMM panel.
    x, y = _data(300, 50, "uint8")
    m = mm.MLP([50, 3100, 10], seed=0, dtype=np.float64)
    r = NumpyMLP([50, 3100, 10], seed=0, dtype=np.float64)
    m.fit(x, y, epochs=1, batch_size=300)
    r.fit(x, y, epochs=1, batch_size=300)
    assert _max_rel(m, r) <= TOL64


def test_training_aid_follows_the_kernel_choice():
    assert _core.training_aid([784, 300, 10], 8, 1000, True, 784, False, True) == "plan"
    assert _core.training_aid([784, 300, 10], 8, 1000, True, 784, True, True) == "index"
    assert _core.training_aid([784, 512, 256, 10], 8, 1000, True, 784, False, True) == "plan"
    assert _core.training_aid([784, 64, 64, 64, 10], 8, 1000, True, 784, False, True) == "index"
    assert _core.training_aid([784, 300, 10], 65, 1000, True, 784, False, True) == "index"
    assert _core.training_aid([784, 300, 10], 65, 40, True, 784, False, True) == "plan"  # one batch of 40
    assert _core.training_aid([784, 300, 10], 8, 1000, True, 784, False, True, plain=False) == "index"
    # Every activation runs in the panels, with a plan (its deferred update is linear in W1).
    assert _core.training_aid([784, 300, 10], 8, 1000, True, 784, False, True, "tanh") == "plan"
    with pytest.raises(ValueError, match="activation"):
        _core.training_aid([784, 300, 10], 8, 1000, True, 784, False, True, "softplus")
    assert _core.training_aid([784, 300, 100, 10], 8, 1000, False, 784, False, True) == "none"
    assert _core.training_aid([784, 300, 100, 10], 8, 1000, True, 784, False, False) == "none"
    with pytest.raises(ValueError, match="layer sizes"):
        _core.training_aid([784], 8, 1000, True, 784, False, True)


@pytest.mark.parametrize(
    "sizes,batch,kind",
    [([50, 64, 40, 10], 8, "uint8"), ([50, 64, 40, 10], 16, "float64"), ([50, 300, 10], 100, "uint8"),
     ([50, 64, 40, 10], 40, "uint8"), ([50, 70, 33, 10], 100, "float64")],
)
def test_fused_update_equals_the_separate_stages(monkeypatch, isa, sizes, batch, kind):
    # The fused SGD variants (sparse first layer; one pass over W for small
    # batches; the step inside the weight gradient's product for larger ones)
    # against the stages they fuse: gradients stored, then update_dense.
    x, y = _data(300, 50, kind)
    out = []
    monkeypatch.setenv("MNIST_MLP_TEST_LAYERS", "1")  # the layers' stages, not the panels
    for unfused in ("0", "1"):
        monkeypatch.setenv("MNIST_MLP_TEST_UNFUSED", unfused)
        m = mm.MLP(sizes, seed=2, dtype=np.float64)
        m.fit(x, y, epochs=2, batch_size=batch, lr=0.1, shuffle=True)
        out.append(m.weights + m.biases)
    assert max(rel_max_diff(a, b) for a, b in zip(*out)) <= 1e-12


def test_cache_sizes_are_detected():
    l1, l2, l3 = _core.cache_sizes()
    assert 4096 <= l1 <= l2 <= l3


def test_an_order_that_repeats_the_densest_sample():
    # The core checks only that order's indices are in range: a batch made of one
    # dense image repeated must stay inside the engine's buffers (sized by the
    # densest image, not by the whole index), and train as those steps would.
    x = np.zeros((4, 50), np.uint8)
    x[0] = 200  # every pixel of sample 0; the others are blank
    y = np.array([1, 2, 3, 4])
    m = mm.MLP([50, 20, 10, 5], seed=0, dtype=np.float64)
    r = NumpyMLP([50, 20, 10, 5], seed=0, dtype=np.float64)
    order = np.zeros(4, np.int64)
    m._core.train_epoch(x, y.astype(np.int32), order, 4, 0.1, True, True, None, _core.NonzeroIndex(x))
    r.train_step(x[order], y[order], 0.1)
    assert _max_rel(m, r) <= TOL64


def test_eval_train_must_be_a_bool():
    x, y = _data(40, 50, "uint8")
    m = mm.MLP([50, 20, 10], seed=0)
    before = [w.copy() for w in m.weights]
    with pytest.raises(TypeError, match="eval_train must be True or False, got 'no'"):
        m.fit(x, y, eval_train="no")
    assert all(np.array_equal(a, b) for a, b in zip(before, m.weights))  # raised before training


@pytest.mark.parametrize("d", [1, 7, 8, 9, 50, 784])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_nonzero_index_lists_every_nonzero_pixel(d, threads):
    # The index's lists against NumPy, for widths around its 8-pixel words, blank
    # and full rows, nonzeros at each row's end, and strided views (the scalar path).
    rng = np.random.default_rng(d)
    x = (rng.random((61, 2 * d)) < 0.3) * rng.integers(1, 256, (61, 2 * d))
    x = x.astype(np.uint8)
    x[3] = 0
    x[5] = 255
    x[7, -1] = 9
    for view in (np.ascontiguousarray(x[:, :d]), x[:, ::2], x[::2, d:]):
        off, idx, val = _core.NonzeroIndex(view, threads).csr()
        rows, cols = np.nonzero(view)
        np.testing.assert_array_equal(off, np.concatenate([[0], np.cumsum(np.count_nonzero(view, axis=1))]))
        np.testing.assert_array_equal(idx, cols)
        np.testing.assert_array_equal(val, view[rows, cols])


def _child_without_spin_settings(code, **env_vars):
    # A fresh interpreter running code, with neither spin variable of the caller.
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    env.update(env_vars)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.parametrize("user_env, spin", [({}, "1000"), ({"GOMP_SPINCOUNT": "5"}, "5"),
                                            ({"OMP_WAIT_POLICY": "active"}, "30000000000")])
def test_import_sets_a_short_openmp_spin_unless_the_user_chose_one(user_env, spin):
    # libgomp reads its spin count once, when the core loads: mnist_mlp sets 1000
    # for that moment (a thread spinning for milliseconds starves a process sharing
    # its core) and then restores the environment; a user's own choice stands.
    # OMP_DISPLAY_ENV makes libgomp print what it read, on stderr.
    code = "import os, mnist_mlp; print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))"
    r = _child_without_spin_settings(code, **user_env, OMP_DISPLAY_ENV="verbose")
    if "GOMP_SPINCOUNT = " not in r.stderr:
        pytest.skip("this OpenMP runtime is not libgomp")
    assert f"GOMP_SPINCOUNT = '{spin}'" in r.stderr
    assert r.stdout.split() == [user_env.get("GOMP_SPINCOUNT", "None"), user_env.get("OMP_WAIT_POLICY", "None")]


def test_import_leaves_the_spin_alone_when_libgomp_is_already_loaded():
    # Another library loaded libgomp first (torch ships one): it read its spin
    # then, and mnist_mlp does not touch the environment for nothing.
    code = ("import ctypes, os\n"
            "try:\n    ctypes.CDLL('libgomp.so.1')\nexcept OSError:\n    print('absent'); raise SystemExit\n"
            "import mnist_mlp\nprint(mnist_mlp._SPIN_SET, os.environ.get('GOMP_SPINCOUNT'))")
    r = _child_without_spin_settings(code)
    if r.stdout.strip() == "absent":
        pytest.skip("no libgomp.so.1 to preload")
    assert r.stdout.split() == ["False", "None"]
