"""`mm.MLPClassifier` without scikit-learn: the estimator protocol by hand."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import mnist_mlp as mm
from mnist_mlp.estimator import NotFittedError

# Short fits end at max_iter, which warns as scikit-learn does (ConvergenceWarning).
pytestmark = pytest.mark.filterwarnings("ignore:Stochastic Optimizer. Maximum iterations")


@pytest.fixture(scope="module")
def small(mnist):
    (x, y), (xt, yt) = mnist
    return (x[:1500], y[:1500]), (xt[:500], yt[:500])


def test_defaults_are_scikit_learns():
    p = mm.MLPClassifier().get_params()
    assert p["hidden_layer_sizes"] == (100,) and p["learning_rate_init"] == 0.001 and p["solver"] == "adam"
    assert p["batch_size"] == "auto" and p["max_iter"] == 200 and p["shuffle"] is True and p["alpha"] == 1e-4
    assert p["dtype"] == "float32" and p["num_threads"] is None
    assert repr(mm.MLPClassifier()) == "MLPClassifier()"
    assert repr(mm.MLPClassifier(max_iter=3)) == "MLPClassifier(max_iter=3)"


def test_plain_sgd_is_mlp_fit_from_the_same_weights(small):
    # solver='sgd' without momentum, alpha or shuffling is the seed's update.
    (x, y), _ = small
    clf = mm.MLPClassifier(hidden_layer_sizes=(32,), solver="sgd", momentum=0.0, alpha=0.0, shuffle=False,
                           batch_size=8, learning_rate_init=0.1, max_iter=2, random_state=5)
    clf.partial_fit(x[:8], y[:8], classes=np.arange(10))
    ws, bs = [np.array(w) for w in clf.coefs_], [np.array(b) for b in clf.intercepts_]
    clf.partial_fit(x, y)
    ref = mm.MLP.from_weights(ws, bs)
    ref.fit(x, y, epochs=1, lr=0.1, batch_size=8)
    for a, b in zip(clf.coefs_ + clf.intercepts_, ref.weights + ref.biases):
        np.testing.assert_array_equal(a, b)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 2 and clf.t_ == 8 + len(x)


def test_arbitrary_labels_proba_score(small):
    (x, y), (xt, yt) = small
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    clf = mm.MLPClassifier(hidden_layer_sizes=32, solver="sgd", momentum=0.0, learning_rate_init=0.1, batch_size=8, max_iter=3,
                           random_state=0).fit(x, names[y])
    assert list(clf.classes_) == sorted(names) and clf.n_features_in_ == 784
    assert clf.n_layers_ == 3 and clf.n_outputs_ == 10 and clf.out_activation_ == "softmax"
    pred = clf.predict(xt)
    assert pred.dtype == names.dtype and set(pred) <= set(names)
    proba = clf.predict_proba(xt)
    assert proba.shape == (500, 10) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred)
    assert clf.score(xt, names[yt]) == np.mean(pred == names[yt]) > 0.8
    np.testing.assert_allclose(clf.predict_log_proba(xt[:3]), np.log(proba[:3]), rtol=1e-5)  # float32
    # Labels -1/+1 (binary) and float labels with integral values
    yb = np.where(y % 2 == 0, -1, 1)
    assert set(mm.MLPClassifier(hidden_layer_sizes=8, max_iter=1).fit(x, yb).predict(xt)) <= {-1, 1}
    assert mm.MLPClassifier(hidden_layer_sizes=8, max_iter=1).fit(x, y.astype(float)).classes_.dtype == float


def test_get_set_params_and_clone_by_hand():
    clf = mm.MLPClassifier(max_iter=3)
    assert clf.set_params(batch_size=16, random_state=1) is clf
    twin = type(clf)(**clf.get_params())
    assert twin.get_params() == clf.get_params()
    with pytest.raises(ValueError, match="Invalid parameter 'alpah'"):
        clf.set_params(alpah=1e-4)


def test_errors(small):
    (x, y), _ = small
    clf = mm.MLPClassifier(hidden_layer_sizes=8, max_iter=1)
    with pytest.raises((ValueError, AttributeError), match="not fitted"):
        clf.predict(x)  # sklearn's NotFittedError when scikit-learn is installed, else ours
    assert issubclass(NotFittedError, ValueError) and issubclass(NotFittedError, AttributeError)
    with pytest.raises(ValueError, match="only one class"):
        clf.fit(x[:5], np.zeros(5, int))
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        clf.fit(x[:10], np.linspace(0, 1, 10))
    with pytest.raises(ValueError, match="requires y"):
        clf.fit(x, None)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        clf.fit(x, y[:-1])
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(np.full((4, 3), np.nan), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="learning_rate_init"):
        mm.MLPClassifier(learning_rate_init=-1).fit(x, y)
    with pytest.raises(ValueError, match="batch_size"):
        mm.MLPClassifier(batch_size=0).fit(x, y)
    clf.fit(x, y)
    with pytest.raises(ValueError, match="X has 10 features, but MLPClassifier is expecting 784"):
        clf.predict(np.zeros((2, 10)))
    with pytest.raises(ValueError, match="1D array"):
        clf.predict(np.zeros(784))


def test_warm_start_continues(small):
    # A stateless update (SGD without momentum, in order): two warm fits of one
    # epoch are one fit of two. (scikit-learn counts n_iter_ per fit, t_ in all.)
    (x, y), _ = small
    kw = dict(hidden_layer_sizes=16, solver="sgd", momentum=0.0, shuffle=False, learning_rate_init=0.05, random_state=0)
    clf = mm.MLPClassifier(max_iter=1, warm_start=True, **kw).fit(x, y)
    clf.fit(x, y)
    once = mm.MLPClassifier(max_iter=2, **kw).fit(x, y)
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 2 and clf.t_ == 2 * len(x)
    for a, b in zip(clf.coefs_, once.coefs_):
        np.testing.assert_array_equal(a, b)
    cold = mm.MLPClassifier(max_iter=1, **kw)
    cold.fit(x, y)
    cold.fit(x, y)
    assert cold.n_iter_ == 1 and len(cold.loss_curve_) == 1


def test_partial_fit_needs_classes_and_checks_labels(small):
    (x, y), _ = small
    clf = mm.MLPClassifier(hidden_layer_sizes=8, random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(x, y)
    clf.partial_fit(x[:50], y[:50], classes=np.arange(12))
    assert list(clf.classes_) == list(range(12)) and clf.n_outputs_ == 12
    with pytest.raises(ValueError, match="Expected only labels in classes_"):
        clf.partial_fit(x[:5], np.array([0, 1, 2, 3, 13]))
    with pytest.raises(ValueError, match="not the same as on last call"):
        clf.partial_fit(x[:5], y[:5], classes=np.arange(10))
    with pytest.raises(ValueError, match="early_stopping"):
        mm.MLPClassifier(early_stopping=True).partial_fit(x, y, classes=np.arange(10))


def test_lbfgs_and_bad_parameters_are_clear_errors(small):
    (x, y), _ = small
    with pytest.raises(ValueError, match="lbfgs"):
        mm.MLPClassifier(solver="lbfgs").fit(x, y)
    for bad, match in [({"solver": "rmsprop"}, "solver"), ({"activation": "softplus"}, "activation"),
                       ({"learning_rate": "cosine"}, "learning_rate"), ({"momentum": 1.5}, "momentum"),
                       ({"beta_2": 1.0}, "beta_2"), ({"validation_fraction": 1.0}, "validation_fraction"),
                       ({"n_iter_no_change": 0}, "n_iter_no_change"), ({"alpha": -1}, "alpha"),
                       ({"max_fun": 0}, "max_fun"), ({"tol": float("nan")}, "tol")]:
        with pytest.raises(ValueError, match=match):
            mm.MLPClassifier(**bad).fit(x[:20], y[:20])


def test_pickle_round_trip(small):
    (x, y), (xt, _) = small
    clf = mm.MLPClassifier(hidden_layer_sizes=16, max_iter=1, random_state=0).fit(x, y)
    back = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(back.predict_proba(xt), clf.predict_proba(xt))
    assert back.history_ == clf.history_ and back.get_params() == clf.get_params()


def test_works_without_scikit_learn():
    import subprocess
    import sys

    code = """
import sys, warnings
sys.modules["sklearn"] = None  # import sklearn now fails
import numpy as np, mnist_mlp as mm
from mnist_mlp.estimator import NotFittedError, DataConversionWarning
x = np.random.default_rng(0).random((40, 3)); y = np.arange(40) % 2
clf = mm.MLPClassifier(hidden_layer_sizes=4, max_iter=2, random_state=0)
try:
    clf.predict(x)
except NotFittedError:
    pass
with warnings.catch_warnings(record=True) as w:
    warnings.simplefilter("always")
    clf.fit(x, y[:, None])
assert w[0].category is DataConversionWarning, w
assert clf.predict(x).shape == (40,) and "sklearn" not in [m for m in sys.modules if sys.modules[m] is not None]
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
