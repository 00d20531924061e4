"""`mm.NN`, the seed notebook's class, against the notebook's own code."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from timeit import default_timer as timer

import numpy as np
import pytest

import mnist_mlp as mm
from conftest import REPO, rel_max_diff


# ---- the seed notebook's code, verbatim (cells [6]) --------------------------------
def cross_entropy_loss(predicted, actual):
    return np.mean(-np.sum(actual * np.log(predicted), axis=1))


def compute_accuracy(predicted, actual):
    return np.mean(np.argmax(predicted, axis=1) == np.argmax(actual, axis=1))


def relu(x):
    return np.maximum(x, 0)


def reludx(x):
    x[x <= 0] = 0
    x[x > 0] = 1
    return x


def softmax(x):
    exp_scores = np.exp(x)
    probs = exp_scores / np.sum(exp_scores, axis=1, keepdims=True)
    return probs


class SeedNN:
    def __init__(self, input_size, hidden_size, output_size, lr=0.01, batch_size=8):
        self.w1 = np.random.randn(input_size, hidden_size) / np.sqrt(input_size)
        self.w2 = np.random.randn(hidden_size, output_size) / np.sqrt(hidden_size)
        self.b1 = np.zeros((1, hidden_size))
        self.b2 = np.zeros((1, output_size))
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.out_size = output_size
        self.lr = lr
        self.batch_size = batch_size

    def forward(self, x):
        self.x1 = np.dot(x, self.w1) + self.b1
        self.fc = relu(self.x1)
        self.x2 = np.dot(self.fc, self.w2) + self.b2
        self.out = softmax(self.x2)
        return self.out

    def backward(self, x, y):
        dx2 = (self.out - y) / self.out.shape[0]
        dx1 = np.dot(dx2, self.w2.T) * reludx(self.x1)
        dw2 = np.dot(self.fc.T, dx2)
        dw1 = np.dot(x.T, dx1)
        db2 = np.sum(dx2, axis=0, keepdims=True)
        db1 = np.sum(dx1, axis=0, keepdims=True)
        self.w1 += -self.lr * dw1
        self.b1 += -self.lr * db1
        self.w2 += -self.lr * dw2
        self.b2 += -self.lr * db2

    def train(self, train, test, num_epochs=4):
        tStart = timer()
        train_images, train_labels = train
        test_images, test_labels = test
        for epoch in range(num_epochs):
            i = 0
            while i < len(train_images):
                train_batch = train_images[i : i + self.batch_size]
                labels_batch = train_labels[i : i + self.batch_size]
                output = self.forward(train_batch)
                error = cross_entropy_loss(output, labels_batch)  # noqa: F841
                self.backward(train_batch, labels_batch)
                i += self.batch_size
            error_test = cross_entropy_loss(self.forward(test_images), test_labels)
            error_train = cross_entropy_loss(self.forward(train_images), train_labels)
            acc_test = compute_accuracy(self.forward(test_images), test_labels)
            acc_train = compute_accuracy(self.forward(train_images), train_labels)
            print(f"Epoch {epoch} - Error on test: {error_test:.5f}; Error on train: {error_train:.5f}; Accuracy on test: {acc_test:.5f}; Accuracy on train: {acc_train:.5f}")
        tEnd = timer()
        error_test = cross_entropy_loss(self.forward(test_images), test_labels)
        error_train = cross_entropy_loss(self.forward(train_images), train_labels)
        acc_test = compute_accuracy(self.forward(test_images), test_labels)
        acc_train = compute_accuracy(self.forward(train_images), train_labels)
        print("Result:")
        print(f"Error on test: {error_test:.5f}; Error on train: {error_train:.5f}; Accuracy on test: {acc_test:.5f}; Accuracy on train: {acc_train:.5f}; Time: {tEnd - tStart:.2f} s")

    def test(self, x_test):
        return self.forward(x_test)


# ---- the notebook's data preparation (cell [5]) on a subset ---------------------------
@pytest.fixture(scope="module")
def notebook_data(mnist):
    (x, y), (xt, yt) = mnist
    train_images = x[:1200].reshape(1200, 28 * 28).astype("float32")
    train_images /= 255
    test_images = xt[:400].reshape(400, 28 * 28).astype("float32")
    test_images /= 255
    return (train_images, np.eye(10)[y[:1200]]), (test_images, np.eye(10)[yt[:400]])


def _run(fn, *args, **kw):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        fn(*args, **kw)
    return out.getvalue().splitlines()


def _without_time(line: str) -> str:
    return line.rsplit("; Time: ", 1)[0]


def test_nn_reproduces_the_notebook(notebook_data):
    train, test = notebook_data
    np.random.seed(7)
    seed = SeedNN(784, 32, 10, lr=0.1, batch_size=8)
    np.random.seed(7)
    ours = mm.NN(784, 32, 10, lr=0.1, batch_size=8)
    for name in ("w1", "b1", "w2", "b2"):  # the notebook's initial weights, from np.random
        np.testing.assert_array_equal(getattr(ours, name), getattr(seed, name))
    assert ours.b1.shape == (1, 32) and ours.b2.shape == (1, 10)

    seed_lines = _run(seed.train, train, test, num_epochs=2)
    our_lines = _run(ours.train, train, test, num_epochs=2)
    assert len(our_lines) == 4
    assert our_lines[0].startswith("Epoch 0 - Error on test: ") and our_lines[1].startswith("Epoch 1 - ")
    assert our_lines[2] == "Result:" and our_lines[3].endswith(" s") and "; Time: " in our_lines[3]
    # The same numbers to the printed 5 decimals (float64 both; ours sums in another order).
    assert our_lines[:3] == seed_lines[:3]
    assert _without_time(our_lines[3]) == _without_time(seed_lines[3])
    for name in ("w1", "b1", "w2", "b2"):
        assert rel_max_diff(getattr(ours, name), getattr(seed, name)) <= 1e-9
    probs = ours.test(test[0])
    np.testing.assert_allclose(probs, seed.test(test[0]), rtol=0, atol=1e-9)
    assert compute_accuracy(probs, test[1]) == compute_accuracy(seed.test(test[0]), test[1])

    # A second train() counts its epochs from 0 again, as the notebook's does.
    again = _run(ours.train, train, test, num_epochs=1)
    assert again[0].startswith("Epoch 0 - ")


def test_nn_matches_mlp_trained_the_same_way(notebook_data):
    (x, y), (xt, yt) = notebook_data
    np.random.seed(3)
    nn = mm.NN(784, 20, 10, lr=0.05, batch_size=16)
    model = mm.MLP.from_weights([nn.w1.copy(), nn.w2.copy()], [nn.b1[0].copy(), nn.b2[0].copy()])
    _run(nn.train, (x, y), (xt, yt), num_epochs=2)
    model.fit(x, y.argmax(1), epochs=2, lr=0.05, batch_size=16)
    for a, b in zip([nn.w1, nn.w2, nn.b1[0], nn.b2[0]], model.weights + model.biases):
        np.testing.assert_array_equal(a, b)  # bitwise: the same kernels, the same order
    np.testing.assert_array_equal(nn.test(xt), model.predict_proba(xt))


def test_nn_parameters_are_views_and_steps_work(notebook_data):
    (x, y), _ = notebook_data
    np.random.seed(0)
    nn = mm.NN(784, 8, 10)
    assert nn.lr == 0.01 and nn.batch_size == 8  # the notebook's defaults
    nn.b2 += 1.5  # in place, as the notebook's update does
    assert np.all(nn.model.biases[1] == 1.5)
    nn.w1 = np.zeros((784, 8))
    assert not nn.model.weights[0].any()
    out = nn.forward(x[:5])
    assert out.shape == (5, 10) and nn.out is out
    np.testing.assert_allclose(out.sum(axis=1), 1)
    before = nn.b2.copy()
    nn.forward(x[:8])
    nn.backward(x[:8], y[:8])  # one SGD step on this batch
    np.testing.assert_allclose(nn.b2, before - 0.01 * (nn.out - y[:8]).mean(axis=0, keepdims=True), rtol=1e-12)
    assert nn.model.history == []
    with pytest.raises(ValueError, match=r"layer_sizes\[1\]"):
        mm.NN(784, 0, 10)


def test_example_script_runs_the_notebook(mnist):
    env = dict(os.environ)
    r = subprocess.run(
        [sys.executable, str(REPO / "examples" / "seed_notebook.py"), "1"],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("Epoch 0 - Error on test: ") and lines[1] == "Result:"
    assert float(lines[3]) > 0.95  # compute_accuracy(network.test(test_images), test_labels)
