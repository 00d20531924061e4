"""Optimizers, activations, dropout and schedules: against torch.optim / torch.nn,
against the NumPy reference, across thread counts, and through save/load.

Tolerances: float64 runs agree to 1e-9 of the largest parameter (max |dW| /
max |W|, biases too): the two sides differ only in the order of their
roundings (1e-16 each), amplified over 100-200 steps. float32 runs agree to 2e-4
relative: a few dozen steps, each adding roundings of 6e-8 to weights of
magnitude ~0.1, with Adam's normalised step turning a relative gradient
difference of 1e-6 into the same relative step difference.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import mnist_mlp as mm
from mnist_mlp.reference import NumpyMLP, dropout_mask

ACTS = ["relu", "tanh", "logistic", "identity"]

OPTIMIZERS = {
    "sgd": lambda: mm.optim.SGD(lr=0.05),
    "sgd-momentum": lambda: mm.optim.SGD(lr=0.05, momentum=0.9),
    "sgd-dampening-wd": lambda: mm.optim.SGD(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=1e-2),
    "sgd-nesterov": lambda: mm.optim.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda: mm.optim.Adam(lr=3e-3),
    "adam-wd-amsgrad": lambda: mm.optim.Adam(lr=3e-3, betas=(0.8, 0.99), weight_decay=1e-2, amsgrad=True),
    "adamw": lambda: mm.optim.AdamW(lr=3e-3),
    "adamw-amsgrad": lambda: mm.optim.AdamW(lr=3e-3, weight_decay=0.1, amsgrad=True),
    "rmsprop": lambda: mm.optim.RMSprop(lr=1e-3),
    "rmsprop-momentum-wd": lambda: mm.optim.RMSprop(lr=1e-3, momentum=0.9, weight_decay=1e-2),
    "rmsprop-centered": lambda: mm.optim.RMSprop(lr=1e-3, alpha=0.9, centered=True),
    "rmsprop-centered-momentum": lambda: mm.optim.RMSprop(lr=1e-3, momentum=0.5, centered=True),
}


def rel_err(a_list, b_list) -> float:
    return max(float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)) for a, b in zip(a_list, b_list))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    mask = rng.random((600, 40)) < 0.35
    x = (rng.integers(1, 256, (600, 40)) * mask).astype(np.uint8)
    y = rng.integers(0, 6, 600)
    return x, y


# -- against torch ------------------------------------------------------------------


def torch_train(ws, bs, act, make_opt, x, y, batch, epochs=1):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    layers = []
    for w, b in zip(ws, bs):
        lin = nn.Linear(w.shape[0], w.shape[1]).double()
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w.T.copy()))
            lin.bias.copy_(torch.from_numpy(b.copy()))
        layers.append(lin)
    f = {"relu": torch.relu, "tanh": torch.tanh, "logistic": torch.sigmoid, "identity": lambda z: z}[act]
    params = [p for lin in layers for p in lin.parameters()]
    opt = make_opt(params)
    xt = torch.from_numpy(x.astype(np.float64) / 255.0)
    yt = torch.from_numpy(y.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()
    for s in [s for _ in range(epochs) for s in range(0, len(x), batch)]:
        h = xt[s : s + batch]
        for i, lin in enumerate(layers):
            h = lin(h)
            if i + 1 < len(layers):
                h = f(h)
        opt.zero_grad()
        loss_fn(h, yt[s : s + batch]).backward()
        opt.step()
    return [lin.weight.detach().numpy().T for lin in layers], [lin.bias.detach().numpy() for lin in layers]


def torch_optimizer(ours):
    torch = pytest.importorskip("torch")
    cfg = ours.get_config()
    cls = {"SGD": torch.optim.SGD, "Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW,
           "RMSprop": torch.optim.RMSprop}[type(ours).__name__]
    return lambda params: cls(params, **cfg)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_matches_torch_float64(data, name):
    x, y = data
    ours = OPTIMIZERS[name]()
    m = mm.MLP([40, 24, 16, 6], seed=1, dtype=np.float64)
    ws0, bs0 = [np.array(w) for w in m.weights], [np.array(b) for b in m.biases]
    m.fit(x, y, epochs=1, batch_size=5, optimizer=ours)  # 120 steps
    tw, tb = torch_train(ws0, bs0, "relu", torch_optimizer(ours), x, y, 5)
    assert m.optimizer_state["step"] == 120
    assert rel_err(m.weights + m.biases, tw + tb) <= 1e-9


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("name", ["sgd-nesterov", "adamw-amsgrad", "rmsprop-centered-momentum"])
def test_activation_matches_torch_float64(data, act, name):
    x, y = data
    ours = OPTIMIZERS[name]()
    m = mm.MLP([40, 20, 6], activation=act, seed=2, dtype=np.float64)
    ws0, bs0 = [np.array(w) for w in m.weights], [np.array(b) for b in m.biases]
    m.fit(x, y, epochs=1, batch_size=4, optimizer=ours)  # 150 steps
    tw, tb = torch_train(ws0, bs0, act, torch_optimizer(ours), x, y, 4)
    assert rel_err(m.weights + m.biases, tw + tb) <= 1e-9


def test_plain_sgd_matches_torch_and_optimizer_none(data):
    x, y = data
    a = mm.MLP([40, 20, 6], seed=3, dtype=np.float64)
    b = mm.MLP([40, 20, 6], seed=3, dtype=np.float64)
    ws0, bs0 = [np.array(w) for w in a.weights], [np.array(bb) for bb in a.biases]
    a.fit(x, y, epochs=1, batch_size=4, lr=0.05)
    b.fit(x, y, epochs=1, batch_size=4, optimizer=mm.optim.SGD(lr=0.05))
    for u, v in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(u, v)  # one rule: the same bits
    torch = pytest.importorskip("torch")
    tw, tb = torch_train(ws0, bs0, "relu", lambda p: torch.optim.SGD(p, lr=0.05), x, y, 4)
    assert rel_err(a.weights + a.biases, tw + tb) <= 1e-9


# -- lazy momentum: the first layer's idle rows ----------------------------------------------


@pytest.fixture(scope="module")
def idle_data():
    # Inputs that are zero in most samples, one in four never nonzero: with uint8
    # input the engine skips the rows of W0 a batch does not use and applies
    # their momentum-only steps lazily, in closed form (kernels/update.inc,
    # IdleSteps): at the row's next use, and for every row at the epoch's end.
    rng = np.random.default_rng(11)
    x = np.zeros((400, 32), np.uint8)
    for j in range(32):
        used = rng.random(400) < (0.5, 0.1, 0.02, 0.0)[j % 4]
        x[used, j] = rng.integers(1, 256, int(used.sum()))
    return x, rng.integers(0, 5, 400)


LAZY = {
    "momentum": lambda: mm.optim.SGD(lr=0.05, momentum=0.9),
    "nesterov": lambda: mm.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "dampening": lambda: mm.optim.SGD(lr=0.05, momentum=0.8, dampening=0.3),
}


@pytest.mark.parametrize("batch", [1, 4, 64])
@pytest.mark.parametrize("name", sorted(LAZY))
def test_lazy_momentum_matches_torch_float64(idle_data, name, batch):
    # Two fits (the second continues the state: a row idle since the first fit
    # catches up across it), against two epochs of torch.optim from the same weights.
    # Rows idle at the very first step get torch's first-step buffer (0).
    x, y = idle_data
    m = mm.MLP([32, 16, 5], seed=5, dtype=np.float64)
    ws0, bs0 = [np.array(w) for w in m.weights], [np.array(b) for b in m.biases]
    for _ in range(2):
        m.fit(x, y, epochs=1, batch_size=batch, optimizer=LAZY[name]())
    make = torch_optimizer(LAZY[name]())
    tw, tb = torch_train(ws0, bs0, "relu", make, x, y, batch, epochs=2)
    assert m.optimizer_state["step"] == 2 * (400 // batch + (400 % batch > 0))
    assert rel_err(m.weights + m.biases, tw + tb) <= 1e-9


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-9), (np.float32, 2e-4)])
def test_lazy_momentum_scikit_learn_rule_matches_dense_input(idle_data, nesterov, dtype, tol):
    # scikit-learn's momentum rule (v = mu v - lr g) with alpha = 0: uint8 input
    # (sparse first layer, lazy idle rows) against the same values as floats
    # (dense first layer, every row stepped every step).
    x, y = idle_data
    a = mm.MLP([32, 16, 5], seed=6, dtype=dtype)
    b = mm.MLP.from_weights(a.weights, a.biases)
    for model, xx in ((a, x), (b, x / 255.0)):
        model.fit(xx, y, epochs=2, batch_size=8, optimizer=mm.optim._SklearnSGD(0.05, 0.9, nesterov, 0.0))
    assert rel_err(a.weights + a.biases, b.weights + b.biases) <= tol


# -- against the NumPy reference ------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("hidden", [(24,), (24, 16), (20, 16, 12), (20, 16, 12, 8)])
@pytest.mark.parametrize("xkind", ["uint8", "float"])
def test_optimizer_matches_reference_float64(data, name, hidden, xkind):
    x, y = data
    if xkind == "float":
        x = x / 255.0
    sizes = [40, *hidden, 6]
    m = mm.MLP(sizes, activation="tanh", seed=4, dtype=np.float64)
    r = NumpyMLP(sizes, activation="tanh", seed=4, dtype=np.float64)
    for model in (m, r):
        model.fit(x, y, epochs=2, batch_size=13, shuffle=True, optimizer=OPTIMIZERS[name]())
    assert rel_err(m.weights + m.biases, r.weights + r.biases) <= 1e-9


@pytest.mark.parametrize("name", ["sgd-nesterov", "adam-wd-amsgrad", "adamw", "rmsprop-centered-momentum"])
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("hidden", [(24,), (24, 16), (20, 16, 12, 8)])
def test_optimizer_matches_reference_float32(data, name, act, hidden):
    x, y = data
    m = mm.MLP([40, *hidden, 6], activation=act, seed=5, dtype=np.float32)
    r = NumpyMLP([40, *hidden, 6], activation=act, seed=5, dtype=np.float32)
    for model in (m, r):
        model.fit(x, y, epochs=1, batch_size=16, optimizer=OPTIMIZERS[name]())
    assert rel_err(m.weights + m.biases, r.weights + r.biases) <= 2e-4


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("batch", [1, 7, 64, 65, 200])
@pytest.mark.parametrize("dropout", [0.25, [0.5, 0.0]])
def test_dropout_matches_reference(data, act, batch, dropout):
    # The reference draws its masks with its own NumPy code (reference.dropout_mask).
    x, y = data
    m = mm.MLP([40, 24, 16, 6], activation=act, dropout=dropout, seed=6, dtype=np.float64)
    r = NumpyMLP([40, 24, 16, 6], activation=act, dropout=dropout, seed=6, dtype=np.float64)
    for model in (m, r):
        model.fit(x, y, epochs=2, batch_size=batch, shuffle=True, lr=0.02)
    assert rel_err(m.weights + m.biases, r.weights + r.biases) <= 1e-9
    # Inference has no dropout: the probabilities agree too.
    np.testing.assert_allclose(m.predict_proba(x), r.predict_proba(x), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "sizes,dropout,act,batch,name",
    [
        ([40, 50, 6], 0.3, "relu", 8, "sgd"),  # two panels: masks keyed by the unit, not its place in a panel
        ([40, 24, 16, 6], [0.2, 0.5], "relu", 5, "sgd"),
        ([40, 24, 16, 6], [0.0, 0.4], "tanh", 13, "adam"),
        ([40, 64, 16, 8, 6], 0.25, "logistic", 64, "sgd-momentum"),
        ([40, 200, 20, 6], 0.1, "relu", 3, "rmsprop"),  # a next layer of 16+ units
    ],
)
def test_dropout_in_the_panels_agrees_with_the_layers_stages(monkeypatch, data, sizes, dropout, act, batch, name):
    # Dropout in the panels (each panel's units masked by their own keys; the
    # layers after them on every thread), against the layers' stages and the
    # reference, whose masks are the same: float64, 1e-9.
    x, y = data
    out = {}
    for layers in ("0", "1"):
        monkeypatch.setenv("MNIST_MLP_TEST_LAYERS", layers)
        m = mm.MLP(sizes, activation=act, dropout=dropout, seed=6, dtype=np.float64)
        h = m.fit(x, y, epochs=2, batch_size=batch, shuffle=True, num_threads=2, optimizer=OPTIMIZERS[name]())
        out[h[0]["kernel"].split("-")[0]] = m
    assert set(out) == {"panels", "layers"}
    a, b = out["panels"], out["layers"]
    assert rel_err(a.weights + a.biases, b.weights + b.biases) <= 1e-9
    r = NumpyMLP(sizes, activation=act, dropout=dropout, seed=6, dtype=np.float64)
    r.fit(x, y, epochs=2, batch_size=batch, shuffle=True, optimizer=OPTIMIZERS[name]())
    assert rel_err(a.weights + a.biases, r.weights + r.biases) <= 1e-9


def test_dropout_changes_training_and_plain_sgd_without_it_is_the_seeds(data):
    x, y = data
    a = mm.MLP([40, 24, 6], dropout=0.3, seed=6)
    b = mm.MLP([40, 24, 6], seed=6)
    ha = a.fit(x, y, epochs=1, batch_size=8)
    hb = b.fit(x, y, epochs=1, batch_size=8)
    assert not np.array_equal(a.weights[0], b.weights[0])
    # Both in the panels: dropout reads the index (the batch plan is plain SGD's without it).
    assert (ha[0]["kernel"], hb[0]["kernel"]) == ("panels-index", "panels-plan")


def test_dropout_masks_rate_and_keys():
    samples = np.arange(5000)
    keep = dropout_mask(123, 0, 1, samples, 64, 0.3)
    assert abs(1 - keep.mean() - 0.3) < 0.01
    # A sample's mask depends on the sample, not its place in the batch ...
    perm = np.random.default_rng(0).permutation(5000)
    np.testing.assert_array_equal(dropout_mask(123, 0, 1, perm, 64, 0.3), keep[perm])
    # ... and changes with the epoch, the layer and the seed.
    for other in (dropout_mask(123, 1, 1, samples, 64, 0.3), dropout_mask(123, 0, 2, samples, 64, 0.3),
                  dropout_mask(124, 0, 1, samples, 64, 0.3)):
        assert 0.3 < (other != keep).mean() < 0.5
    assert dropout_mask(1, 0, 1, samples, 8, 0.0).all()


# -- schedules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule, expected",
    [
        (mm.optim.StepLR(step_size=2, gamma=0.5), [0.1, 0.1, 0.05, 0.05, 0.025]),
        (mm.optim.ExponentialLR(gamma=0.9), [0.1 * 0.9**e for e in range(5)]),
        (mm.optim.CosineAnnealingLR(T_max=4, eta_min=0.01),
         [0.01 + 0.09 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(5)]),
        (lambda e: 1 / (1 + e), [0.1 / (1 + e) for e in range(5)]),
        (mm.optim.InvScalingLR(power_t=0.5), [0.1 / np.sqrt(e * 600 + 1) for e in range(5)]),
    ],
)
def test_schedules_set_each_epochs_lr_and_match_reference(data, schedule, expected):
    x, y = data
    m = mm.MLP([40, 16, 6], seed=8, dtype=np.float64)
    r = NumpyMLP([40, 16, 6], seed=8, dtype=np.float64)
    h = m.fit(x, y, epochs=3, optimizer=mm.optim.SGD(0.1, momentum=0.5), lr_schedule=schedule)
    h += m.fit(x, y, epochs=2, optimizer=mm.optim.SGD(0.1, momentum=0.5), lr_schedule=schedule)  # continues
    np.testing.assert_allclose([rec["lr"] for rec in h], expected, rtol=1e-12)
    r.fit(x, y, epochs=5, optimizer=mm.optim.SGD(0.1, momentum=0.5), lr_schedule=schedule)
    assert rel_err(m.weights + m.biases, r.weights + r.biases) <= 1e-9


def test_schedule_returning_a_bad_factor_is_an_error(data):
    x, y = data
    m = mm.MLP([40, 16, 6], seed=8)
    with pytest.raises(ValueError, match="lr_schedule"):
        m.fit(x, y, lr_schedule=lambda e: 0.0)
    with pytest.raises(TypeError, match="lr_schedule"):
        m.fit(x, y, lr_schedule="cosine")


# -- the panel variant with every rule -------------------------------------------------------

# (layer sizes, batch, shuffled, input kind): one hidden layer, a tail after two
# (its layers on every thread), a next layer of 16+ units (its products as GEMMs),
# and a batch over 64 (pixels only).
PANEL_CASES = [
    ([50, 30, 10], 8, False, "uint8"),
    ([50, 64, 32, 10], 13, True, "uint8"),
    ([50, 200, 96, 10], 8, False, "float64"),
    ([50, 30, 10], 100, True, "uint8"),
]


def _pixels(n, features, seed):
    rng = np.random.default_rng(seed)
    x = ((rng.random((n, features)) < 0.25) * rng.integers(1, 256, (n, features))).astype(np.uint8)
    return x, rng.integers(0, 10, n)


# scikit-learn's rules (MLPClassifier's solvers) with alpha > 0: its L2 term on the
# weights over the batch rows, and its loss term.
PANEL_RULES = {
    **OPTIMIZERS,
    "sklearn-sgd-alpha": lambda: mm.optim._SklearnSGD(0.05, 0.9, True, 1e-3),
    "sklearn-adam-alpha": lambda: mm.optim._SklearnAdam(3e-3, 0.9, 0.999, 1e-8, 1e-3),
}


@pytest.mark.parametrize("case", PANEL_CASES, ids=lambda c: "-".join(map(str, c[0])) + f"-b{c[1]}")
@pytest.mark.parametrize("name", sorted(PANEL_RULES))
def test_panels_take_every_rule(monkeypatch, case, name):
    # Each rule in the panel variant (W1 in panels with its state, lazy momentum
    # for SGD with momentum alone) against the layers' stages forced by
    # MNIST_MLP_TEST_LAYERS: float64, 2 epochs, 1e-9 of the largest parameter,
    # the optimizer's state included, and scikit-learn's loss term (the same sums
    # in another order: 1e-12).
    sizes, batch, shuffle, kind = case
    x, y = _pixels(300, 50, 4)
    if kind == "float64":
        x = x / 255.0
    out, penalty = {}, {}
    for layers in ("0", "1"):
        monkeypatch.setenv("MNIST_MLP_TEST_LAYERS", layers)
        m = mm.MLP(sizes, seed=2, dtype=np.float64)
        h = m.fit(x, y, epochs=2, batch_size=batch, shuffle=shuffle, num_threads=2, optimizer=PANEL_RULES[name]())
        out[h[0]["kernel"].split("-")[0]] = m
        penalty[h[0]["kernel"].split("-")[0]] = [r.get("train_penalty") for r in h]
    assert set(out) == {"panels", "layers"}
    if name.endswith("-alpha"):
        assert penalty["panels"][0] > 0
        np.testing.assert_allclose(penalty["panels"], penalty["layers"], rtol=1e-12, atol=0)
    else:
        assert penalty["panels"] == penalty["layers"] == [None, None]
    a, b = out["panels"], out["layers"]
    assert rel_err(a.weights + a.biases, b.weights + b.biases) <= 1e-9
    sa, sb = a.optimizer_state, b.optimizer_state
    assert sa["step"] == sb["step"] == 2 * -(-300 // batch)
    for slot in filter(None, sa["slots"]):
        ws_a, bs_a = sa[slot]
        ws_b, bs_b = sb[slot]
        assert rel_err(ws_a + bs_a, ws_b + bs_b) <= 1e-9, slot


@pytest.mark.parametrize(
    "make,kernel",
    [
        (lambda: mm.optim.SGD(lr=0.05, momentum=0.9), "panels-index"),
        (lambda: mm.optim.Adam(), "panels-index"),
        (lambda: mm.optim._SklearnSGD(0.05, 0.9, True, 0.0), "panels-index"),
        (lambda: mm.optim._SklearnAdam(1e-3, 0.9, 0.999, 1e-8, 0.0), "panels-index"),
        (lambda: mm.optim._SklearnSGD(0.05, 0.9, True, 1e-4), "panels-index"),
        (lambda: mm.optim._SklearnAdam(1e-3, 0.9, 0.999, 1e-8, 1e-4), "panels-index"),
    ],
)
def test_panel_choice_by_rule(make, kernel):
    x, y = _pixels(100, 50, 3)
    assert mm.MLP([50, 30, 10], seed=0).fit(x, y, batch_size=8, optimizer=make())[0]["kernel"] == kernel


@pytest.mark.parametrize("name", ["sgd-momentum", "adam", "rmsprop-centered-momentum"])
def test_panels_with_a_rule_match_the_reference_float32(data, name):
    x, y = data
    m = mm.MLP([40, 24, 6], seed=5)
    r = NumpyMLP([40, 24, 6], seed=5, dtype=np.float32)
    h = m.fit(x, y, epochs=1, batch_size=8, optimizer=OPTIMIZERS[name]())
    r.fit(x, y, epochs=1, batch_size=8, optimizer=OPTIMIZERS[name]())
    assert h[0]["kernel"] == "panels-index"
    assert rel_err(m.weights + m.biases, r.weights + r.biases) <= 2e-4


@pytest.mark.parametrize("sizes", [[200, 768, 10], [200, 768, 20, 10]])
@pytest.mark.parametrize("name", ["sgd-momentum", "sgd-dampening-wd", "adam-wd-amsgrad", "rmsprop-centered-momentum",
                                  "sklearn-adam-alpha"])
def test_panels_with_a_rule_bitwise_across_thread_counts(sizes, name):
    # Three panels (768 units): 1, 2 and 3 threads give the same bits, at batch 8
    # and 100, with the state carried from one fit to the next.
    x, y = _pixels(400, 200, 9)
    results = []
    for threads in (1, 2, 3):
        m = mm.MLP(sizes, seed=10)
        hist = [m.fit(x, y, epochs=1, batch_size=b, shuffle=True, num_threads=threads,
                      optimizer=PANEL_RULES[name]())[0] for b in (100, 8)]
        assert [h["kernel"] for h in hist] == ["panels-index", "panels-index"]
        state = m.optimizer_state
        results.append([np.array(p) for p in m.weights + m.biases]
                       + [a for slot in filter(None, state["slots"]) for part in state[slot] for a in part]
                       + [np.array([h.get("train_penalty", 0.0) for h in hist])])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["sgd-momentum", "adam-wd-amsgrad", "rmsprop-centered-momentum"])
def test_panels_resumed_fit_continues_bitwise(tmp_path, data, name):
    # The state the panels write back is what the next fit reads: a saved and
    # reloaded model continues as one uninterrupted fit.
    x, y = data
    kw = dict(batch_size=16, shuffle=True, optimizer=OPTIMIZERS[name]())
    whole = mm.MLP([40, 24, 16, 6], seed=11)
    assert whole.fit(x, y, epochs=3, **kw)[0]["kernel"] == "panels-index"
    part = mm.MLP([40, 24, 16, 6], seed=11)
    part.fit(x, y, epochs=1, **kw)
    part.save(tmp_path / "m.npz")
    resumed = mm.MLP.load(tmp_path / "m.npz")
    resumed.fit(x, y, epochs=2, **kw)
    for a, b in zip(whole.weights + whole.biases, resumed.weights + resumed.biases):
        np.testing.assert_array_equal(a, b)


# -- determinism, state, persistence ----------------------------------------------------------


@pytest.mark.parametrize("name", ["sgd", "sgd-momentum", "sgd-nesterov", "adam-wd-amsgrad", "adamw",
                                  "rmsprop-centered-momentum"])
def test_bitwise_identical_across_thread_counts(name):
    rng = np.random.default_rng(9)
    x = (rng.integers(0, 256, (1200, 784)) * (rng.random((1200, 784)) < 0.2)).astype(np.uint8)
    y = rng.integers(0, 10, 1200)
    results = []
    for threads in (1, 2, 3):
        m = mm.MLP([784, 256, 128, 10], dropout=0.2, seed=10)
        m.fit(x, y, epochs=1, batch_size=100, shuffle=True, num_threads=threads, optimizer=OPTIMIZERS[name]())
        m.fit(x, y, epochs=1, batch_size=8, shuffle=True, num_threads=threads, optimizer=OPTIMIZERS[name]())
        results.append([np.array(p) for p in m.weights + m.biases])
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["sgd-momentum", "adam-wd-amsgrad", "rmsprop-centered-momentum"])
@pytest.mark.parametrize("how", ["save", "pickle"])
def test_resumed_fit_continues_bitwise(tmp_path, data, name, how):
    x, y = data
    kw = dict(batch_size=16, shuffle=True, optimizer=OPTIMIZERS[name]())
    whole = mm.MLP([40, 24, 16, 6], activation="tanh", dropout=0.2, seed=11)
    whole.fit(x, y, epochs=3, **kw)
    part = mm.MLP([40, 24, 16, 6], activation="tanh", dropout=0.2, seed=11)
    part.fit(x, y, epochs=1, **kw)
    if how == "save":
        part.save(tmp_path / "m.npz")
        resumed = mm.MLP.load(tmp_path / "m.npz")
    else:
        resumed = pickle.loads(pickle.dumps(part))
    assert resumed.activation == "tanh" and resumed.dropout == [0.2, 0.2]
    resumed.fit(x, y, epochs=2, **kw)
    for a, b in zip(whole.weights + whole.biases, resumed.weights + resumed.biases):
        np.testing.assert_array_equal(a, b)
    assert resumed.optimizer_state["step"] == whole.optimizer_state["step"] == 3 * 38


def test_state_carries_over_and_resets_with_another_kind(data):
    x, y = data
    m = mm.MLP([40, 16, 6], seed=12, dtype=np.float64)
    m.fit(x, y, batch_size=100, optimizer=mm.optim.Adam())
    st = m.optimizer_state
    assert st["kind"] == "adam" and st["step"] == 6 and st["slots"] == ["exp_avg", "exp_avg_sq"]
    assert np.abs(st["exp_avg"][0][0]).max() > 0
    m.fit(x, y, batch_size=100, optimizer=mm.optim.AdamW(lr=1e-4))  # same kind of state: continues
    assert m.optimizer_state["step"] == 12
    m.fit(x, y, batch_size=100, optimizer=mm.optim.SGD(0.01, momentum=0.9))  # another kind: fresh
    st = m.optimizer_state
    assert st["kind"] == "sgd" and st["step"] == 6 and st["slots"] == ["momentum_buffer"]
    m.fit(x, y, batch_size=100, optimizer=mm.optim.Adam())
    st = m.optimizer_state
    assert st["step"] == 6  # Adam starts again from t = 1, its moments from zero
    r = NumpyMLP.from_weights(m.weights, m.biases)
    m.reset_optimizer()
    assert m.optimizer_state == {"kind": "sgd", "step": 0, "slots": []}
    # After a reset, Adam runs as from scratch.
    m.fit(x, y, batch_size=100, optimizer=mm.optim.Adam())
    r.fit(x, y, batch_size=100, optimizer=mm.optim.Adam())
    assert rel_err(m.weights + m.biases, r.weights + r.biases) <= 1e-9


# -- early stopping and validation_split ---------------------------------------------------------


def test_early_stopping_stops_and_restores_the_best_weights(data):
    x, y = data
    m = mm.MLP([40, 16, 6], seed=13)
    best = {}

    def keep(rec):
        best.setdefault(rec["epoch"], [np.array(w) for w in m.weights])

    # A min_delta no epoch can beat: epoch 0 is the best, patience 2 stops at epoch 2.
    es = mm.EarlyStopping(monitor="loss", patience=2, min_delta=1e9)
    h = m.fit(x, y, epochs=10, early_stopping=es, callback=keep)
    assert [r["epoch"] for r in h] == [0, 1, 2]
    assert es.stopped_epoch == 2 and es.best_epoch == 0
    for w, w0 in zip(m.weights, best[0]):
        np.testing.assert_array_equal(w, w0)


def test_early_stopping_on_validation_from_split(data):
    x, y = data
    m = mm.MLP([40, 16, 6], seed=14)
    es = mm.EarlyStopping(patience=1, restore_best_weights=False)
    h = m.fit(x, y, epochs=40, lr=0.5, validation_split=0.25, early_stopping=es)
    assert "test_loss" in h[0] and len(h) < 40
    losses = [r["test_loss"] for r in h]
    assert es.best == min(losses) and losses[-1] >= es.best


def test_validation_split_takes_the_last_fraction(data):
    x, y = data
    a = mm.MLP([40, 16, 6], seed=15)
    b = mm.MLP([40, 16, 6], seed=15)
    ha = a.fit(x, y, validation_split=0.2)
    hb = b.fit(x[:480], y[:480], validation_data=(x[480:], y[480:]))
    assert ha[0]["test_loss"] == hb[0]["test_loss"]
    np.testing.assert_array_equal(a.weights[0], b.weights[0])


# -- argument errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: mm.optim.SGD(lr=0), ValueError, "lr"),
        (lambda: mm.optim.SGD(lr=0.1, momentum=-1), ValueError, "momentum"),
        (lambda: mm.optim.SGD(lr=0.1, nesterov=True), ValueError, "nesterov"),
        (lambda: mm.optim.Adam(betas=(0.9, 1.0)), ValueError, r"betas\[1\]"),
        (lambda: mm.optim.Adam(betas=0.9), TypeError, "betas"),
        (lambda: mm.optim.Adam(eps=float("nan")), ValueError, "eps"),
        (lambda: mm.optim.AdamW(weight_decay=-0.1), ValueError, "weight_decay"),
        (lambda: mm.optim.RMSprop(alpha=1.5), ValueError, "alpha"),
        (lambda: mm.optim.RMSprop(centered="yes"), TypeError, "centered"),
        (lambda: mm.optim.StepLR(step_size=0), ValueError, "step_size"),
        (lambda: mm.EarlyStopping(monitor="val_acc"), ValueError, "monitor"),
        (lambda: mm.EarlyStopping(patience=-1), ValueError, "patience"),
        (lambda: mm.MLP([4, 3, 2], activation="softplus"), ValueError, "activation"),
        (lambda: mm.MLP([4, 3, 2], dropout=1.0), ValueError, "dropout"),
        (lambda: mm.MLP([4, 3, 3, 2], dropout=[0.1]), ValueError, "dropout"),
        (lambda: mm.MLP([4, 3, 2], dropout="0.1"), TypeError, "dropout"),
    ],
)
def test_bad_hyperparameters_name_themselves(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_fit_argument_errors(data):
    x, y = data
    m = mm.MLP([40, 16, 6], seed=16)
    with pytest.raises(ValueError, match="not both"):
        m.fit(x, y, lr=0.1, optimizer=mm.optim.Adam())
    with pytest.raises(TypeError, match="optimizer"):
        m.fit(x, y, optimizer="adam")
    with pytest.raises(ValueError, match="validation_split"):
        m.fit(x, y, validation_split=1.0)
    with pytest.raises(ValueError, match="not both"):
        m.fit(x, y, validation_split=0.1, validation_data=(x, y))
    with pytest.raises(ValueError, match="validation"):
        m.fit(x, y, early_stopping=mm.EarlyStopping())
    with pytest.raises(TypeError, match="early_stopping"):
        m.fit(x, y, early_stopping=5)
    assert m.history == []


def test_optimizer_repr_equality_and_config():
    a = mm.optim.AdamW(lr=1e-3, amsgrad=True)
    assert a == mm.optim.AdamW(**a.get_config()) and a != mm.optim.Adam(**a.get_config())
    assert "AdamW(lr=0.001" in repr(a)
    assert mm.optim.RMSprop(centered=True).state_slots() == ("square_avg", "", "grad_avg")
