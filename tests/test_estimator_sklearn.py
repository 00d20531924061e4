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
CHECKED = mm.MLPClassifier(hidden_layer_sizes=(16,), max_iter=20, random_state=0)

with warnings.catch_warnings():
    # "does not inherit from sklearn.base.BaseEstimator": on purpose, so that
    # importing mnist_mlp never imports scikit-learn.
    warnings.filterwarnings("ignore", message=".*does not inherit from", category=UserWarning)
    _checks = parametrize_with_checks([CHECKED], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS,
                                      xfail_strict=True)


@_checks
@pytest.mark.filterwarnings("ignore:.*does not inherit from:UserWarning")
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def subset(mnist):
    (x, y), _ = mnist
    return x[:1200], y[:1200]


def test_pipeline_cross_val_score(subset):
    x, y = subset
    pipe = make_pipeline(
        FunctionTransformer(lambda a: a.reshape(len(a), -1).astype(np.float32) / 255),
        mm.MLPClassifier(hidden_layer_sizes=(32,), max_iter=3, random_state=0),
    )
    scores = cross_val_score(pipe, x, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.7
    assert is_classifier(pipe) and is_classifier(mm.MLPClassifier())


def test_grid_search_and_clone(subset):
    x, y = subset
    est = mm.MLPClassifier(hidden_layer_sizes=(16,), max_iter=1, random_state=0)
    assert clone(est).get_params() == est.get_params()
    search = GridSearchCV(est, {"learning_rate_init": [0.05, 0.1]}, cv=2).fit(x, y)
    assert search.best_params_["learning_rate_init"] in (0.05, 0.1)
    assert search.best_estimator_.score(x, y) > 0.7
