"""`mm.MLPClassifier` inside scikit-learn: Pipeline, cross-validation and the
estimator checks (skipped without scikit-learn)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import mnist_mlp as mm

sklearn = pytest.importorskip("sklearn")
from sklearn.base import clone, is_classifier  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

# Checks of scikit-learn's suite that MLPClassifier is known to fail, with the
# reason; they run as strict xfails, so a fix shows up as a failure to update
# this dict. With scikit-learn 1.9.1 every check passes, so it is empty. (Two
# checks are skipped by scikit-learn itself: the pandas ones without pandas,
# and the array-API one unless SCIPY_ARRAY_API is set.)
EXPECTED_FAILED_CHECKS: dict[str, str] = {}

# Small and quick, but still able to pass check_classifiers_train (> 83 %).
CHECKED = mm.MLPClassifier(hidden_layer_sizes=(16,), max_iter=200, random_state=0)

with warnings.catch_warnings():
    # "does not inherit from sklearn.base.BaseEstimator": on purpose, so that
    # importing mnist_mlp never imports scikit-learn.
    warnings.filterwarnings("ignore", message=".*does not inherit from", category=UserWarning)
    _checks = parametrize_with_checks([CHECKED], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
                                      xfail_strict=True)


@_checks
@pytest.mark.filterwarnings("ignore:.*does not inherit from:UserWarning")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # as scikit-learn's own MLP warns
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def subset(mnist):
    (x, y), _ = mnist
    return x[:1200], y[:1200]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pipeline_cross_val_score(subset):
    x, y = subset
    pipe = make_pipeline(
        FunctionTransformer(lambda a: a.reshape(len(a), -1).astype(np.float32) / 255),
        mm.MLPClassifier(hidden_layer_sizes=(32,), solver="sgd", momentum=0.0, learning_rate_init=0.1, batch_size=8, max_iter=3,
                         random_state=0),
    )
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.7
    assert is_classifier(pipe) and is_classifier(mm.MLPClassifier())


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_grid_search_and_clone(subset):
    x, y = subset
    est = mm.MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", momentum=0.0, batch_size=8, max_iter=1,
                           random_state=0)
    assert clone(est).get_params() == est.get_params()
    search = GridSearchCV(est, {"learning_rate_init": [0.05, 0.1]}, cv=2).fit(x, y)
    assert search.best_params_["learning_rate_init"] in (0.05, 0.1)
    assert search.best_estimator_.score(x, y) > 0.7


# -- scikit-learn's semantics ----------------------------------------------------------------------
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkMLP  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=0)


def test_parameters_are_scikit_learns_with_its_defaults():
    import inspect

    ours = {k: v.default for k, v in inspect.signature(mm.MLPClassifier).parameters.items()}
    theirs = {k: v.default for k, v in inspect.signature(SkMLP).parameters.items()}
    assert ours.pop("dtype") == "float32" and ours.pop("num_threads") is None
    assert ours == theirs


def rel(a, b):
    return max(float(np.abs(u - v).max() / np.abs(v).max()) for u, v in zip(a, b))


# Each configuration trained by scikit-learn and by us, float64, from the same
# initial weights (ours draws scikit-learn's Glorot initialisation from the same
# RandomState), with the same shuffles, stopping rule and validation split.
# Tolerance 1e-9 relative to the largest weight: only rounding order differs
# (1e-16 per operation), over a few thousand steps. The loss curves agree to
# 1e-7 relative: the loss sums logarithms of probabilities that can be small,
# which amplifies the weights' 1e-10 differences (measured: up to 3e-8 by the
# 30th epoch of SGD at lr 0.05 on the unscaled digits).
SEMANTICS = {
    "adam-defaults": dict(max_iter=300),
    "adam-alpha-in-order": dict(alpha=1e-2, shuffle=False, max_iter=40, batch_size=64),
    "sgd-nesterov-alpha": dict(solver="sgd", alpha=1e-3, shuffle=False, learning_rate_init=0.05, max_iter=30),
    "sgd-momentum-no-nesterov": dict(solver="sgd", nesterovs_momentum=False, momentum=0.5, max_iter=40),
    "sgd-adaptive": dict(solver="sgd", learning_rate="adaptive", max_iter=300, tol=1e-3, n_iter_no_change=3),
    "sgd-invscaling": dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.2, max_iter=30),
    "early-stopping": dict(early_stopping=True, max_iter=300),
    "tanh-two-layers": dict(hidden_layer_sizes=(40, 20), activation="tanh", max_iter=30, batch_size=50),
    "logistic": dict(activation="logistic", max_iter=30, solver="sgd", learning_rate_init=0.1),
}


@pytest.mark.parametrize("name", sorted(SEMANTICS))
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_same_fit_as_scikit_learn(digits, name):
    xtr, xte, ytr, yte = digits
    kw = SEMANTICS[name]
    ours = mm.MLPClassifier(random_state=0, dtype="float64", **kw).fit(xtr, ytr)
    theirs = SkMLP(random_state=0, **kw).fit(xtr, ytr)
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    assert rel(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_) <= 1e-9
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-7)
    if kw.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=0, atol=0)
        assert ours.best_validation_score_ == theirs.best_validation_score_ and ours.best_loss_ is None
    else:
        assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-7) and ours.validation_scores_ is None
    assert ours.score(xte, yte) == theirs.score(xte, yte)


def test_digits_as_a_new_user_runs_it(digits):
    # The example: scikit-learn's arguments, scikit-learn's score (97.3%).
    xtr, xte, ytr, yte = digits
    ours = mm.MLPClassifier(random_state=0, max_iter=300).fit(xtr, ytr)  # float32
    assert ours.score(xte, yte) >= 0.96
    assert ours.n_layers_ == 3 and ours.n_outputs_ == 10 and ours.out_activation_ == "softmax"


def test_convergence_warning_at_max_iter(digits):
    xtr, _, ytr, _ = digits
    with pytest.warns(ConvergenceWarning, match="Maximum iterations \\(3\\)"):
        mm.MLPClassifier(max_iter=3, random_state=0).fit(xtr, ytr)


def test_partial_fit_matches_scikit_learn(digits):
    xtr, _, ytr, _ = digits
    ours = mm.MLPClassifier(random_state=0, dtype="float64", solver="sgd", learning_rate_init=0.05)
    theirs = SkMLP(random_state=0, solver="sgd", learning_rate_init=0.05)
    for start in range(0, 1200, 300):
        ours.partial_fit(xtr[start : start + 300], ytr[start : start + 300], classes=np.arange(10))
        theirs.partial_fit(xtr[start : start + 300], ytr[start : start + 300], classes=np.arange(10))
    assert rel(ours.coefs_, theirs.coefs_) <= 1e-9 and ours.t_ == theirs.t_
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_, rtol=1e-9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_warm_start_matches_scikit_learn(digits):
    xtr, _, ytr, _ = digits
    ours = mm.MLPClassifier(random_state=0, dtype="float64", warm_start=True, max_iter=5)
    theirs = SkMLP(random_state=0, warm_start=True, max_iter=5)
    for _ in range(3):
        ours.fit(xtr, ytr)
        theirs.fit(xtr, ytr)
    assert rel(ours.coefs_, theirs.coefs_) <= 1e-9 and ours.n_iter_ == theirs.n_iter_ == 5
