"""MLP against the pure-NumPy reference, torch, finite differences, and its API."""

from __future__ import annotations

import numpy as np
import pytest

import mnist_mlp as mm
from conftest import rel_max_diff
from mnist_mlp.reference import NumpyMLP

# Tolerances (max |dW| / max |W| after training from identical weights):
# float64 reorders sums of ~800 terms (~1e-16 each) and 250 steps compound them
# mildly: 1e-9 leaves four orders of margin over what we measure (~1e-15).
# float32: the same at eps 6e-8, ~1e-6 measured after 100 steps; the bound is 1e-4.
TOL64 = 1e-9
TOL32 = 1e-4


def _params(model):
    return list(model.weights) + list(model.biases)


def _assert_same_params(model, ref, tol):
    for a, b in zip(_params(model), _params(ref)):
        assert a.shape == b.shape
        assert rel_max_diff(a, b) <= tol, rel_max_diff(a, b)


def _pair(sizes, dtype, seed=0):
    m = mm.MLP(sizes, seed=seed, dtype=dtype)
    r = NumpyMLP(sizes, seed=seed, dtype=dtype)
    for a, b in zip(_params(m), _params(r)):
        np.testing.assert_array_equal(a, b)  # the same seed gives the same start
    return m, r


@pytest.mark.parametrize("sparse", [True, False])
def test_float64_epoch_matches_reference(mnist, isa, sparse):
    (x, y), _ = mnist
    m, r = _pair([784, 300, 10], np.float64)
    m.fit(x[:2000], y[:2000], epochs=1, lr=0.1, batch_size=8, sparse=sparse)
    r.fit(x[:2000], y[:2000], epochs=1, lr=0.1, batch_size=8)
    _assert_same_params(m, r, TOL64)


def test_float32_100_steps_match_reference(mnist, isa):
    (x, y), _ = mnist
    m, r = _pair([784, 300, 10], np.float32)
    m.fit(x[:800], y[:800], batch_size=8)
    r.fit(x[:800], y[:800], batch_size=8)
    _assert_same_params(m, r, TOL32)


@pytest.mark.parametrize("batch_size", [1, 7, 64, 300])
def test_batch_sizes_and_partial_last_batch(mnist, batch_size):
    (x, y), _ = mnist
    n = 601  # never a multiple of the batch: the last batch is partial
    m, r = _pair([784, 50, 10], np.float64, seed=3)
    m.fit(x[:n], y[:n], batch_size=batch_size, lr=0.05)
    r.fit(x[:n], y[:n], batch_size=batch_size, lr=0.05)
    _assert_same_params(m, r, TOL64)


def test_deeper_network_and_shuffle(mnist):
    (x, y), _ = mnist
    m, r = _pair([784, 64, 32, 16, 10], np.float64, seed=7)
    m.fit(x[:1000], y[:1000], epochs=2, shuffle=True)
    r.fit(x[:1000], y[:1000], epochs=2, shuffle=True)
    _assert_same_params(m, r, TOL64)


@pytest.mark.parametrize("form", ["float32", "float64", "fortran", "strided", "images3d", "onehot"])
def test_input_forms_give_the_uint8_result(mnist, form):
    (x, y), _ = mnist
    x, y = x[:500], y[:500]
    base, _ = _pair([784, 40, 10], np.float64, seed=1)
    base.fit(x.reshape(500, -1), y)
    other = mm.MLP([784, 40, 10], seed=1, dtype=np.float64)
    flat = x.reshape(500, -1)
    xs = {
        "float32": flat.astype(np.float32) / np.float32(255),
        "float64": flat / 255.0,
        "fortran": np.asfortranarray(flat),
        "strided": np.concatenate([flat, flat], axis=1)[:, ::2] * 0 + flat,  # non-contiguous view below
        "images3d": x,
        "onehot": flat,
    }[form]
    if form == "strided":
        wide = np.zeros((500, 784 * 2), np.uint8)
        wide[:, ::2] = flat
        xs = wide[:, ::2]
        assert not xs.flags.c_contiguous
    ys = np.eye(10)[y] if form == "onehot" else y
    other.fit(xs, ys)
    # float32 pixels are rounded before the float64 model sees them: ~1e-8.
    tol = 1e-6 if form == "float32" else TOL64
    for a, b in zip(_params(other), _params(base)):
        assert rel_max_diff(a, b) <= tol


def test_finite_difference_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 4))
    y = np.array([0, 2, 1, 2, 0])
    m = mm.MLP([4, 6, 3], seed=2, dtype=np.float64)
    w0 = [w.copy() for w in m.weights]
    b0 = [b.copy() for b in m.biases]
    lr = 1.0
    m.fit(x, y, epochs=1, lr=lr, batch_size=5)  # one full-batch step: W1 = W0 - lr * grad
    analytic = [(a - b) / lr for a, b in zip(w0 + b0, _params(m))]

    def loss(ws, bs):
        return mm.MLP.from_weights(ws, bs).evaluate(x, y)[0]

    eps = 1e-6
    params = w0 + b0
    for i, p in enumerate(params):
        for idx in np.ndindex(p.shape):
            plus = [q.copy() for q in params]
            minus = [q.copy() for q in params]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            numeric = (loss(plus[:2], plus[2:]) - loss(minus[:2], minus[2:])) / (2 * eps)
            # central differences: O(eps^2) truncation + O(1e-16/eps) rounding ~ 1e-9
            assert analytic[i][idx] == pytest.approx(numeric, abs=1e-8, rel=1e-6)


def test_matches_torch_sgd(mnist):
    torch = pytest.importorskip("torch")
    (x, y), _ = mnist
    steps, batch = 50, 8
    m = mm.MLP([784, 100, 10], seed=5, dtype=np.float64)
    lin1, lin2 = torch.nn.Linear(784, 100).double(), torch.nn.Linear(100, 10).double()
    with torch.no_grad():
        for lin, w, b in zip((lin1, lin2), m.weights, m.biases):
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
    net = torch.nn.Sequential(lin1, torch.nn.ReLU(), lin2)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    xf = torch.from_numpy(x[: steps * batch].reshape(-1, 784) / 255.0)
    yt = torch.from_numpy(y[: steps * batch].astype(np.int64))
    for s in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xf[s * batch : (s + 1) * batch]), yt[s * batch : (s + 1) * batch]).backward()
        opt.step()
    m.fit(x[: steps * batch], y[: steps * batch], lr=0.1, batch_size=batch)
    theirs = [lin1.weight.detach().numpy().T, lin2.weight.detach().numpy().T, lin1.bias.detach().numpy(), lin2.bias.detach().numpy()]
    for a, b in zip(_params(m), theirs):
        assert rel_max_diff(a, b) <= TOL64


@pytest.mark.slow
def test_one_epoch_on_full_mnist_reaches_96_percent(mnist):
    # Measured over seeds 0-5: in file order the seed's first epoch ends at
    # 95.6-96.2% (the notebook printed 95.91%), shuffled at 96.1-97.3%. So the
    # 96% bar is checked shuffled, and the in-order run against the notebook's level.
    (x, y), (xt, yt) = mnist
    m = mm.MLP([784, 300, 10], seed=0)
    hist = m.fit(x, y, epochs=1, lr=0.1, batch_size=8, shuffle=True, validation_data=(xt, yt))
    assert hist[0]["test_accuracy"] >= 0.96
    in_order = mm.MLP([784, 300, 10], seed=0)
    assert in_order.fit(x, y, validation_data=(xt, yt))[0]["test_accuracy"] >= 0.955
    loss, acc = m.evaluate(xt, yt)
    assert acc == hist[0]["test_accuracy"]
    r = NumpyMLP.from_weights(m.weights, m.biases)
    rl, ra = r.evaluate(xt, yt)
    assert loss == pytest.approx(rl, rel=1e-5)  # float32 forward, summed in float64
    assert abs(acc - ra) <= 2 / len(yt)  # at most two float32 near-ties may flip


def test_predict_and_proba_agree_with_reference(mnist, isa):
    _, (xt, yt) = mnist
    m = mm.MLP([784, 30, 10], seed=4, dtype=np.float64)
    r = NumpyMLP([784, 30, 10], seed=4, dtype=np.float64)
    p = m.predict_proba(xt[:1000])
    np.testing.assert_allclose(p, r.predict_proba(xt[:1000]), rtol=1e-10, atol=1e-15)
    np.testing.assert_array_equal(m.predict(xt[:1000]), np.argmax(p, axis=1))
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-12)
    loss, acc = m.evaluate(xt[:1000], yt[:1000], num_threads=1)
    assert (loss, acc) == m.evaluate(xt[:1000], yt[:1000], num_threads=2)  # fixed-order reduction
    rl, ra = r.evaluate(xt[:1000], yt[:1000])
    assert loss == pytest.approx(rl, rel=1e-12) and acc == ra


@pytest.mark.parametrize("hidden", [37, 300])
@pytest.mark.parametrize("n", [64, 65, 66, 67, 131, 300])
@pytest.mark.parametrize("layout", ["c", "fortran", "strided"])
def test_evaluation_row_groups_and_layouts_match_reference(mnist, isa, hidden, n, layout):
    # AVX-512 evaluates rows in groups of four over the union of their nonzero
    # pixels, in chunks of 128: every remainder of a group and a chunk, padded
    # hidden widths, and column-strided pixels, against the reference.
    (x, y), (xt, yt) = mnist
    m = mm.MLP([784, hidden, 10], seed=5, dtype=np.float64)
    m.fit(x[:500], y[:500], epochs=1)  # nonzero biases, weights away from their start
    r = NumpyMLP.from_weights(m.weights, m.biases)
    xs = xt[:n].reshape(n, -1)
    if layout == "fortran":
        xs = np.asfortranarray(xs)
    elif layout == "strided":
        wide = np.zeros((n, 2 * 784), np.uint8)
        wide[:, ::2] = xs
        xs = wide[:, ::2]
        assert xs.strides[1] == 2
    want = r.predict_proba(xt[:n])
    np.testing.assert_allclose(m.predict_proba(xs), want, rtol=1e-10, atol=1e-15)
    loss, acc = m.evaluate(xs, yt[:n])
    rl, ra = r.evaluate(xt[:n], yt[:n])
    assert loss == pytest.approx(rl, rel=1e-10) and acc == ra


def test_weights_are_views_of_the_model():
    m = mm.MLP([4, 3, 2], seed=0)
    w = m.weights[1]
    w[...] = 0
    m.biases[1][...] = np.array([1.0, 2.0], np.float32)
    assert np.all(m.predict(np.ones((3, 4), np.float32)) == 1)
    assert m.weights[1].base is not None and np.shares_memory(w, m.weights[1])
    del m
    assert np.all(w == 0)  # the view keeps the parameters alive


def test_from_weights_copies_and_keeps_dtype():
    ws = [np.ones((3, 4)), np.ones((4, 2))]
    bs = [np.zeros(4), np.zeros((1, 2))]  # the seed's (1, n) bias shape is accepted
    m = mm.MLP.from_weights(ws, bs)
    assert m.dtype == np.float64 and m.layer_sizes == [3, 4, 2]
    ws[0][0, 0] = 5
    assert m.weights[0][0, 0] == 1


def test_history_callback_and_verbose(mnist, capsys):
    (x, y), (xt, yt) = mnist
    m = mm.MLP([784, 20, 10], seed=0)
    seen = []
    hist = m.fit(x[:300], y[:300], epochs=5, validation_data=(xt[:100], yt[:100]), verbose=True,
                 callback=lambda rec: seen.append(rec["epoch"]) or len(seen) < 2)
    assert seen == [0, 1] and [h["epoch"] for h in hist] == [0, 1]
    assert set(hist[0]) >= {"epoch", "seconds", "train_loss", "train_accuracy", "test_loss", "test_accuracy"}
    out = capsys.readouterr().out
    assert "Epoch 1 - Error on test: " in out and "Accuracy on train:" in out
    m.fit(x[:300], y[:300], epochs=1)
    assert [h["epoch"] for h in m.history] == [0, 1, 2]


def test_divergence_raises_floating_point_error():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)) * 1e3
    y = rng.integers(0, 3, 64)
    m = mm.MLP([5, 8, 3], seed=0, dtype=np.float32)
    with pytest.raises(FloatingPointError, match=r"epoch 0, batch \d+"):
        m.fit(x, y, lr=1e30, batch_size=4)


def test_save_load_round_trip(tmp_path, mnist):
    (x, y), _ = mnist
    m = mm.MLP([784, 16, 10], seed=0, dtype=np.float64)
    m.fit(x[:200], y[:200])
    path = tmp_path / "m.npz"
    m.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temporary left behind
    back = mm.MLP.load(path)
    assert back.layer_sizes == m.layer_sizes and back.dtype == np.float64
    for a, b in zip(_params(back), _params(m)):
        np.testing.assert_array_equal(a, b)
    assert back.history == m.history


def test_load_rejects_corrupt_and_foreign_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="bad.npz"):
        mm.MLP.load(bad)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(ValueError, match="missing field 'format'"):
        mm.MLP.load(other)
    m = mm.MLP([4, 3, 2], seed=0)
    good = tmp_path / "good.npz"
    m.save(good)
    data = dict(np.load(good))
    data["w1"] = np.zeros((5, 2), np.float32)
    np.savez(tmp_path / "shapes.npz", **data)
    with pytest.raises(ValueError, match=r"field 'w1' has shape \(5, 2\), the layer sizes need \(3, 2\)"):
        mm.MLP.load(tmp_path / "shapes.npz")


X4 = np.zeros((6, 4), np.float32)
Y4 = np.zeros(6, np.int64)


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda m: m.fit(X4, np.array([0, 1, 2, 3, 4, 5])), ValueError, "label 3 at index 3 is outside"),
        (lambda m: m.fit(X4, np.array([0, -1, 0, 0, 0, 0])), ValueError, "label -1"),
        (lambda m: m.fit(np.zeros((6, 5), np.float32), Y4), ValueError, "5 features"),
        (lambda m: m.fit(X4, Y4[:5]), ValueError, r"len\(y\) = 5"),
        (lambda m: m.fit(X4, Y4, batch_size=0), ValueError, "batch_size must be >= 1"),
        (lambda m: m.fit(X4, Y4, batch_size=2.5), TypeError, "batch_size must be an integer"),
        (lambda m: m.fit(X4, Y4, lr=float("nan")), ValueError, "lr must be finite"),
        (lambda m: m.fit(X4, Y4, lr=-0.1), ValueError, "lr must be finite and > 0"),
        (lambda m: m.fit(X4, Y4, epochs=0), ValueError, "epochs"),
        (lambda m: m.fit(X4.astype(np.complex64), Y4), TypeError, "complex64"),
        (lambda m: m.fit(X4.astype(bool), Y4), TypeError, "a bool array is neither pixels nor features"),
        (lambda m: m.fit(X4.astype(np.int32) + 256, Y4), ValueError, r"integer values are pixels 0\.\.255"),
        (lambda m: m.fit(np.full((6, 4), np.nan, np.float32), Y4), ValueError, "non-finite"),
        (lambda m: m.fit(X4, Y4.astype(np.float64)), TypeError, "integers"),
        (lambda m: m.fit(X4, np.full((6, 3), 0.5)), ValueError, "not one-hot"),
        (lambda m: m.fit(X4[:0], Y4[:0]), ValueError, "empty"),
        (lambda m: m.fit(np.zeros((0, 2, 2), np.uint8), Y4[:0]), ValueError, r"empty \(0 samples\)"),
        (lambda m: m.fit(X4[0], Y4), ValueError, "2-D"),
        (lambda m: m.fit(X4, Y4, validation_data=X4), TypeError, "pair"),
        (lambda m: m.predict(np.zeros((2, 3), np.float32)), ValueError, "3 features"),
        (lambda m: m.fit(X4, Y4, num_threads=0), ValueError, "num_threads"),
    ],
)
def test_bad_arguments_raise_before_training(call, exc, match):
    m = mm.MLP([4, 3, 3], seed=0)
    before = [p.copy() for p in _params(m)]
    with pytest.raises(exc, match=match):
        call(m)
    for a, b in zip(_params(m), before):
        np.testing.assert_array_equal(a, b)  # nothing was written


@pytest.mark.parametrize(
    "sizes,kw,exc,match",
    [
        ([784, 10], {}, ValueError, "at least one hidden layer"),
        ([784, 0, 10], {}, ValueError, r"layer_sizes\[1\]"),
        ([784, 300, 1], {}, ValueError, "at least 2 classes"),
        ([784, 3.5, 10], {}, TypeError, "integer"),
        ([784, 300, 10], {"dtype": np.int32}, TypeError, "int32"),
        ([784, 300, 10], {"dtype": "float16"}, TypeError, "float16"),
    ],
)
def test_bad_constructor_arguments(sizes, kw, exc, match):
    with pytest.raises(exc, match=match):
        mm.MLP(sizes, **kw)


def test_from_weights_validation():
    with pytest.raises(ValueError, match="fan_in 5"):
        mm.MLP.from_weights([np.ones((3, 4)), np.ones((5, 2))], [np.zeros(4), np.zeros(2)])
    with pytest.raises(TypeError, match="share one dtype"):
        mm.MLP.from_weights([np.ones((3, 4)), np.ones((4, 2), np.float32)], [np.zeros(4), np.zeros(2)])
    with pytest.raises(ValueError, match="non-finite"):
        mm.MLP.from_weights([np.full((3, 4), np.inf), np.ones((4, 2))], [np.zeros(4), np.zeros(2)])


@pytest.mark.parametrize("sizes", [[784, 300, 10], [784, 40, 20, 10]])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_training_is_bitwise_deterministic_across_runs_and_threads(mnist, sizes, dtype):
    (x, y), _ = mnist
    runs = []
    for threads in (1, 2, 2, 3):
        m = mm.MLP(sizes, seed=11, dtype=dtype)
        m.fit(x[:3000], y[:3000], epochs=1, shuffle=True, num_threads=threads)
        runs.append(_params(m))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b)  # the claim is bitwise identity


def test_sparse_and_dense_paths_agree(mnist):
    (x, y), _ = mnist
    a = mm.MLP([784, 100, 10], seed=2, dtype=np.float64)
    b = mm.MLP([784, 100, 10], seed=2, dtype=np.float64)
    a.fit(x[:1000], y[:1000], sparse=True)
    b.fit(x[:1000], y[:1000], sparse=False)
    for p, q in zip(_params(a), _params(b)):
        assert rel_max_diff(p, q) <= TOL64  # skipped terms are exact zeros


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_size", [1, 7, 8, 64])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("hidden", [10, 40, 300])  # one panel; two narrow; the seed's, with 5-vector blocks
def test_batch_plan_matches_the_per_step_result(mnist, isa, batch_size, threads, dtype, hidden):
    # Batches taken in order can use a BatchPlan: W1 is written once per block of
    # 64 samples, and a later batch of the block adds the pending updates through
    # its dot products with the earlier samples (x . (W - lr X^T dH) regrouped);
    # forward groups over the union of four images' pixels, summed by which
    # members use each pixel (AVX-512). An order array, even the identity, makes
    # the loop update W1 every step instead. Same mathematics, other rounding.
    # float64: parameters agree to 1e-15 here (TOL64 = 1e-9 leaves room).
    # float32: a pre-activation within float32 rounding of zero can take the
    # other ReLU branch in one path (seed 3, batch 64: sample 56, unit 94 at
    # 2.3e-8; the per-step path flips it, the plan agrees with the float64
    # reference), and the runs drift apart from there: Frobenius 3.5e-3 in that
    # case, <= 1.4e-6 in every other. So float32 checks the summed loss at TOL32
    # (5e-6 even then) and the parameters in Frobenius norm at 1e-2; a wrong
    # float32 kernel moves both by far more. Batch 1 runs 300 samples, not 1003:
    # SGD on single images at lr 0.1 amplifies rounding differences through such
    # flips (after 1003 steps the per-step path itself is 2e-11 from the NumPy
    # reference in float64).
    (x, y), _ = mnist
    n = 300 if batch_size == 1 else 1003  # a partial last batch and block for every size above 1
    x2, y32 = x[:n].reshape(n, -1), y[:n].astype(np.int32)
    index = mm._core.NonzeroIndex(x2)
    sizes = [784, hidden, 10]
    planned, listed = mm.MLP(sizes, seed=3, dtype=dtype), mm.MLP(sizes, seed=3, dtype=dtype)
    tol = TOL64 if dtype == np.float64 else TOL32
    for bs in (batch_size, batch_size + 1 if batch_size < 64 else 63):  # a second epoch, other blocks
        plan = mm._core.BatchPlan(x2, bs)
        ra = planned._core.train_epoch(x2, y32, None, bs, 0.1, True, True, threads, plan=plan)
        rb = listed._core.train_epoch(x2, y32, np.arange(n, dtype=np.int64), bs, 0.1, True, True, threads, index)
        assert ra["batches"] == rb["batches"] and ra["samples"] == rb["samples"]
        assert ra["loss_sum"] == pytest.approx(rb["loss_sum"], rel=tol)
        if dtype == np.float64:
            _assert_same_params(planned, listed, TOL64)
        else:
            for p, q in zip(_params(planned), _params(listed)):
                assert np.linalg.norm(p - q) <= 1e-2 * np.linalg.norm(q)


def test_batch_plan_with_65536_inputs(isa):
    # The widest input a plan takes: a forward group's union can hold all 65536
    # inputs, which must not wrap its run offsets (16-bit ones did, and counted
    # inputs twice). Sample 0 lacks pixel 5, so the group has two runs.
    x = np.ones((3, 65536), np.uint8)
    x[0, 5] = 0
    y = np.array([0, 1, 2], np.int32)
    planned, listed = (mm.MLP([65536, 16, 10], seed=1, dtype=np.float64) for _ in range(2))
    planned._core.train_epoch(x, y, None, 3, 0.1, True, True, 1, plan=mm._core.BatchPlan(x, 3))
    listed._core.train_epoch(x, y, np.arange(3, dtype=np.int64), 3, 0.1, True, True, 1, mm._core.NonzeroIndex(x))
    _assert_same_params(planned, listed, TOL64)


def test_batch_plan_stop_on_a_nonfinite_loss_mid_block(mnist):
    # A non-finite loss stops the epoch after its batch, inside a block of the
    # plan: the block's pending updates must still reach W1 (the model holds every
    # batch done), as the per-step path's do. Batch 1 of 25 overflows here.
    (x, y), _ = mnist
    n = 200
    x2, y32 = x[:n].reshape(n, -1), y[:n].astype(np.int32)
    planned, listed = mm.MLP([784, 40, 10], seed=3), mm.MLP([784, 40, 10], seed=3)
    ra = planned._core.train_epoch(x2, y32, None, 8, 1e30, True, True, 2, plan=mm._core.BatchPlan(x2, 8))
    rb = listed._core.train_epoch(x2, y32, np.arange(n, dtype=np.int64), 8, 1e30, True, True, 2,
                                  mm._core.NonzeroIndex(x2))
    assert ra["first_nonfinite_batch"] == rb["first_nonfinite_batch"] == 1 and ra["batches"] == rb["batches"] == 2
    assert not np.isfinite(planned.weights[0]).all()  # W1 took the block's updates
    for p, q in zip(_params(planned), _params(listed)):
        np.testing.assert_array_equal(np.isfinite(p), np.isfinite(q))
        # Finite entries reach 1e25: sums of products of lr = 1e30 that nearly
        # cancel, so the paths' different summation orders show in the 4th digit
        # there (measured 1.4e-4); the untouched and normal entries agree far closer.
        fin = np.isfinite(q)
        np.testing.assert_allclose(p[fin], q[fin], rtol=1e-3, atol=0)


def test_batch_plan_arguments_and_size(mnist):
    (x, y), _ = mnist
    x2, y32 = x[:100].reshape(100, -1), y[:100].astype(np.int32)
    nnz = mm._core.NonzeroIndex(x2).nnz
    plan = mm._core.BatchPlan(x2, 8)
    assert plan.batch_size == 8
    # 2 bytes per nonzero for the update, ~4 for the forward, ~0.7 for the dot products
    assert 4 * nnz <= plan.nbytes <= 12 * nnz
    assert mm._core.BatchPlan(x2[:50], 300).batch_size == 50  # clamped to the rows, as training does
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        mm._core.BatchPlan(x2, 0)
    with pytest.raises(ValueError, match="at most 64 rows, got 65"):
        mm._core.BatchPlan(x2, 65)
    with pytest.raises(TypeError, match="2-D uint8"):
        mm._core.BatchPlan(x2.astype(np.float32), 8)
    m = mm.MLP([784, 40, 10], seed=0)
    with pytest.raises(ValueError, match="another array"):
        m._core.train_epoch(x2.copy(), y32, None, 8, 0.1, plan=plan)
    with pytest.raises(ValueError, match="another batch_size"):
        m._core.train_epoch(x2, y32, None, 7, 0.1, plan=plan)
    with pytest.raises(ValueError, match="batches in order"):
        m._core.train_epoch(x2, y32, np.arange(100, dtype=np.int64), 8, 0.1, plan=plan)
    with pytest.raises(ValueError, match="another array"):
        m._core.evaluate(x2.copy(), y32, plan=plan)
    with pytest.raises(ValueError, match="no rows"):  # the Python API rejects it earlier; the core too
        m._core.train_epoch(x2[:0], y32[:0], None, 8, 0.1)


@pytest.mark.parametrize("batch_size", [1, 7, 8, 64])
def test_evaluation_with_the_batch_plan_matches(mnist, isa, batch_size):
    # fit evaluates its training set with the plan's forward groups (AVX-512):
    # each row's first layer sums the same terms in another order (by which
    # group members use a pixel), so float32 rounding differs (~1e-7 relative
    # per sum, rtol 1e-5 leaves room); a prediction may change only where the two
    # best classes are that close.
    (x, y), _ = mnist
    n = 1003
    x2, y32 = x[:n].reshape(n, -1), y[:n].astype(np.int32)
    m = mm.MLP([784, 300, 10], seed=6)
    m.fit(x[:500], y[:500], epochs=1)
    plan = mm._core.BatchPlan(x2, batch_size)
    loss, correct, probs, pred = m._core.evaluate(x2, y32, True, True, plan=plan)
    want = m._core.evaluate(x2, y32, True, True)
    np.testing.assert_allclose(probs, want[2], rtol=1e-5, atol=1e-7)
    top2 = np.sort(want[2], axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-5
    np.testing.assert_array_equal(pred[clear], want[3][clear])
    assert abs(correct - want[1]) <= np.count_nonzero(~clear)
    assert loss == pytest.approx(want[0], rel=1e-5)


@pytest.mark.parametrize("leader", ["0", "1"])
@pytest.mark.parametrize("sizes", [[784, 300, 10], [784, 128, 64, 10]])
def test_single_thread_fallback_changes_nothing(mnist, leader, sizes, tmp_path):
    # Under load the training loop may drop to one thread mid-epoch; force that
    # (with either thread carrying on) and compare with an undisturbed run, bitwise.
    import os
    import subprocess
    import sys

    from conftest import DATA

    code = (
        "import sys, numpy as np, mnist_mlp as mm\n"
        "(x, y), _ = mm.load_mnist(sys.argv[1])\n"
        f"m = mm.MLP({sizes}, seed=4)\n"
        "m.fit(x[:3000], y[:3000], epochs=2, num_threads=2)\n"
        "np.savez(sys.argv[2], *(m.weights + m.biases))\n"
    )
    env = dict(os.environ, MNIST_MLP_TEST_SOLO_LEADER=leader)
    out = tmp_path / "solo.npz"
    subprocess.run([sys.executable, "-c", code, str(DATA), str(out)], env=env, check=True, timeout=120)
    m = mm.MLP(sizes, seed=4)
    (x, y), _ = mnist
    h = m.fit(x[:3000], y[:3000], epochs=2, num_threads=1)
    assert h[0]["kernel"] == "panels-plan"
    with np.load(out) as f:
        for a, b in zip(_params(m), [f[k] for k in f.files]):
            assert np.array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_pickled_arrays_are_accepted(dtype):
    # Unpickled arrays (joblib, multiprocessing) carry an equal but distinct dtype object.
    import pickle

    x = pickle.loads(pickle.dumps((np.arange(24) % 5).reshape(6, 4).astype(dtype)))
    assert x.dtype is not np.dtype(dtype)
    m = mm.MLP([4, 3, 2], seed=0)
    m.fit(x, np.array([0, 1, 0, 1, 0, 1]))
    assert m.predict(x).shape == (6,)


@pytest.mark.parametrize("sizes", [[784, 50, 10], [784, 30, 20, 10]])
def test_progress_is_reported_within_each_epoch(mnist, sizes):
    (x, y), _ = mnist
    calls = []
    m = mm.MLP(sizes, seed=0)
    m.fit(x[:4000], y[:4000], epochs=2, batch_size=8, progress=lambda done, total: calls.append((done, total)))
    assert all(total == 500 for _, total in calls)
    assert calls.count((500, 500)) == 2  # each epoch ends complete
    assert any(0 < done < 500 for done, _ in calls)  # and is reported on the way

    class Stop(Exception):
        pass

    def stop(done, total):
        if done >= 128:
            raise Stop

    before = len(m.history)
    with pytest.raises(Stop):
        m.fit(x[:4000], y[:4000], progress=stop)
    assert len(m.history) == before  # the epoch did not complete
    assert all(np.isfinite(p).all() for p in _params(m))


def test_huge_batch_size_is_one_batch_of_everything():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (100, 8), dtype=np.uint8)
    y = rng.integers(0, 2, 100)
    a, b = mm.MLP([8, 8, 2], seed=0), mm.MLP([8, 8, 2], seed=0)
    a.fit(x, y, batch_size=2**62)
    b.fit(x, y, batch_size=100)
    for p, q in zip(_params(a), _params(b)):
        assert np.array_equal(p, q)


def test_callback_may_use_the_model_but_progress_may_not(mnist, tmp_path):
    (x, y), _ = mnist
    m = mm.MLP([784, 30, 10], seed=0)
    seen = []
    m.fit(x[:2000], y[:2000], epochs=2,
          callback=lambda rec: seen.append((m.evaluate(x[:100], y[:100]), m.save(tmp_path / "ckpt.npz"))))
    assert len(seen) == 2 and (tmp_path / "ckpt.npz").exists()
    with pytest.raises(RuntimeError, match="progress function"):
        m.fit(x[:2000], y[:2000], progress=lambda done, total: m.predict(x[:5]))
    with pytest.raises(RuntimeError, match="inside fit"):
        m.fit(x[:2000], y[:2000], callback=lambda rec: m.fit(x[:10], y[:10]))
    m.predict(x[:5])  # usable afterwards


def test_labels_are_copied_before_training():
    y = np.zeros(6, np.int32)
    got = mm._validate.labels(y, 6, 3)
    assert got is not y and not np.shares_memory(got, y)


def test_scalar_and_unaligned_inputs():
    m = mm.MLP([4, 3, 2], seed=0)
    with pytest.raises(ValueError, match="scalar"):
        m.predict(np.float32(1.0))
    raw = np.zeros(4 * 4 * 6 + 1, np.uint8)[1:].view(np.float32).reshape(6, 4)  # misaligned float32
    assert not raw.flags.aligned
    assert mm._validate.inputs(raw, 4).flags.aligned  # copied: the core reads whole floats
    assert m.predict(raw).shape == (6,)


def test_more_threads_than_processors_are_capped():
    x = np.random.default_rng(0).integers(0, 256, (600, 8), dtype=np.uint8)
    m = mm.MLP([8, 8, 2], seed=0)
    expected = m.predict(x, num_threads=1)
    np.testing.assert_array_equal(m.predict(x, num_threads=1000), expected)
    m.fit(x, np.arange(600) % 2, num_threads=1000)
