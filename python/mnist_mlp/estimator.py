"""`MLPClassifier`: a scikit-learn estimator around `mnist_mlp.MLP`.

It follows the scikit-learn estimator protocol (``fit``, ``predict``,
``predict_proba``, ``predict_log_proba``, ``score``, ``get_params``,
``set_params``, ``classes_``, ``n_features_in_``, cloning, pickling, tags) without
importing scikit-learn: it works where scikit-learn is not installed, and
inside `Pipeline`, `GridSearchCV` and `cross_val_score` where it is. The names
of the parameters and fitted attributes are those of
`sklearn.neural_network.MLPClassifier` where they mean the same thing, with the
seed notebook's defaults (one hidden layer of 300, SGD with learning rate 0.1,
batch 8, 20 epochs, no shuffling).

What it does not do: ``solver``, ``momentum``, ``alpha`` (no weight decay),
``learning_rate`` schedules, early stopping, ``partial_fit``, ``sample_weight``,
sparse input, multilabel targets and feature names (pandas column names are
not recorded).
"""

from __future__ import annotations

import inspect
import numbers
import warnings
from typing import Any, Sequence

import numpy as np

from .model import MLP

__all__ = ["MLPClassifier", "NotFittedError"]


class NotFittedError(ValueError, AttributeError):
    """A method that needs a fitted estimator was called before ``fit``.

    When scikit-learn is installed, `sklearn.exceptions.NotFittedError` is
    raised instead (it has the same two base classes)."""


class DataConversionWarning(UserWarning):
    """Stand-in for `sklearn.exceptions.DataConversionWarning` without scikit-learn."""


def _not_fitted_error(msg: str) -> Exception:
    try:
        from sklearn.exceptions import NotFittedError as SkNotFittedError
    except ImportError:
        return NotFittedError(msg)
    return SkNotFittedError(msg)


def _data_conversion_warning() -> type[Warning]:
    try:
        from sklearn.exceptions import DataConversionWarning as SkWarning
    except ImportError:
        return DataConversionWarning
    return SkWarning


def _is_sparse(x: Any) -> bool:
    return type(x).__module__.startswith("scipy.sparse") or (hasattr(x, "tocsr") and hasattr(x, "nnz"))


class MLPClassifier:
    """Multilayer perceptron classifier (ReLU hidden layers, softmax output,
    cross-entropy, plain mini-batch SGD), trained by mnist_mlp's C++ core.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default (300,)
        Widths of the hidden layers.
    learning_rate_init : float, default 0.1
        The SGD step size (constant: there is no schedule).
    batch_size : int or "auto", default 8
        Mini-batch size; "auto" means min(200, n_samples) as in scikit-learn.
    max_iter : int, default 20
        Epochs (passes over the training data). There is no early stopping, so
        every fit runs exactly ``max_iter`` epochs.
    shuffle : bool, default False
        Shuffle the samples every epoch (the notebook did not).
    random_state : None, int, numpy RandomState or Generator, default None
        Seed of the initial weights and of the shuffling. An int makes fits
        reproducible (bitwise, for any ``num_threads``).
    dtype : "float32" or "float64", default "float32"
        Precision of the parameters and arithmetic.
    num_threads : int or None, default None
        Threads for training and prediction (None: all cores, or OMP_NUM_THREADS).
    warm_start : bool, default False
        When True and the estimator is fitted, ``fit`` continues training the
        current weights (the classes and number of features must not change).
    verbose : bool, default False
        Print the seed notebook's line after every epoch.

    Inputs ``X`` are (n_samples, n_features), or images (n_samples, 28, 28)
    which are flattened. uint8 ``X`` is read as pixel intensities and scaled by
    1/255 inside the kernel, without a float copy (MNIST as loaded by
    `mnist_mlp.load_mnist`); every other numeric dtype is used as given
    (converted to float64 if it is not float32 or float64). Labels may be any
    sortable values (ints, strings, ...); ``classes_`` holds them sorted.

    Fitted attributes: ``classes_``, ``n_features_in_``, ``n_iter_``,
    ``loss_`` (training loss after the last epoch), ``loss_curve_``,
    ``history_`` (the `MLP.fit` records), ``coefs_`` and ``intercepts_``
    (views of the weights, (fan_in, fan_out) and (fan_out,)), ``n_layers_``,
    ``n_outputs_``, ``out_activation_`` ("softmax") and ``model_`` (the
    `mnist_mlp.MLP`).
    """

    # Set by fit (declared for type checkers; absent until then).
    model_: MLP
    classes_: np.ndarray
    n_features_in_: int
    n_iter_: int
    loss_: float
    loss_curve_: list[float]
    history_: list[dict[str, Any]]
    n_layers_: int
    n_outputs_: int
    out_activation_: str

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (300,),
        learning_rate_init: float = 0.1,
        batch_size: int | str = 8,
        max_iter: int = 20,
        shuffle: bool = False,
        random_state: Any = None,
        dtype: str = "float32",
        num_threads: int | None = None,
        warm_start: bool = False,
        verbose: bool = False,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.learning_rate_init = learning_rate_init
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.dtype = dtype
        self.num_threads = num_threads
        self.warm_start = warm_start
        self.verbose = verbose

    # -- parameters (the scikit-learn protocol) -------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(p.name for p in sig.parameters.values() if p.name != "self")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters and their current values."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> "MLPClassifier":
        """Sets parameters by name; returns self. Values are checked by ``fit``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values() if p.name != "self"
        }
        changed = []
        for name, value in self.get_params().items():
            default = defaults[name]
            same = value is default or (type(value) is type(default) and _safe_equal(value, default))
            if not same:
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags, InputTags, Tags, TargetTags

        return Tags(
            estimator_type="classifier",
            target_tags=TargetTags(required=True),
            classifier_tags=ClassifierTags(multi_class=True, multi_label=False),
            input_tags=InputTags(two_d_array=True, sparse=False, allow_nan=False),
        )

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    # -- input checks -------------------------------------------------------------------
    def _check_params(self) -> tuple[list[int], float, int | str, int, np.dtype, int | None]:
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = [int(hidden)]
        try:
            hidden = [int(h) for h in hidden]  # type: ignore[union-attr]
        except (TypeError, ValueError) as e:
            raise ValueError(f"hidden_layer_sizes must be an int or a sequence of ints, got {self.hidden_layer_sizes!r}") from e
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must hold positive ints, got {self.hidden_layer_sizes!r}")
        lr = self.learning_rate_init
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real) or not np.isfinite(lr) or lr <= 0:
            raise ValueError(f"learning_rate_init must be a finite number > 0, got {lr!r}")
        bs = self.batch_size
        if not (bs == "auto" or (isinstance(bs, numbers.Integral) and not isinstance(bs, bool) and bs >= 1)):
            raise ValueError(f"batch_size must be an int >= 1 or 'auto', got {bs!r}")
        it = self.max_iter
        if isinstance(it, bool) or not isinstance(it, numbers.Integral) or it < 1:
            raise ValueError(f"max_iter must be an int >= 1, got {it!r}")
        try:
            dt = np.dtype(self.dtype)
        except TypeError as e:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}") from e
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        nt = self.num_threads
        if nt is not None and (isinstance(nt, bool) or not isinstance(nt, numbers.Integral) or nt < 1):
            raise ValueError(f"num_threads must be None or an int >= 1, got {nt!r}")
        return hidden, float(lr), bs, int(it), dt, (None if nt is None else int(nt))

    def _seed(self) -> Any:
        rs = self.random_state
        if rs is None or (isinstance(rs, numbers.Integral) and not isinstance(rs, bool)):
            return None if rs is None else int(rs)
        if isinstance(rs, np.random.RandomState):
            return int(rs.randint(np.iinfo(np.int32).max))
        if isinstance(rs, np.random.Generator):
            return int(rs.integers(np.iinfo(np.int64).max))
        raise ValueError(f"random_state must be None, an int, a numpy RandomState or Generator, got {rs!r}")

    def _check_X(self, X: Any, *, reset: bool) -> np.ndarray:
        if X is None:
            raise ValueError("Expected array-like (array or non-string sequence), got None")
        if _is_sparse(X):
            raise TypeError(
                "Sparse data was passed for X, but dense data is required. "
                "Use '.toarray()' to convert to a dense numpy array."
            )
        x = np.asarray(X)
        if np.iscomplexobj(x):
            raise ValueError(f"Complex data not supported\n{x}\n")
        if x.dtype not in (np.uint8, np.float32, np.float64):
            if x.dtype.kind not in "biufO":
                raise ValueError(f"X must be numeric, got an array of dtype {x.dtype}")
            x = x.astype(np.float32 if x.dtype == np.float16 else np.float64)
        if x.ndim < 2:
            raise ValueError(
                f"Expected 2D array, got {'scalar' if x.ndim == 0 else '1D'} array instead:\narray={x}.\n"
                "Reshape your data either using array.reshape(-1, 1) if your data has a single feature "
                "or array.reshape(1, -1) if it contains a single sample."
            )
        if x.ndim > 2:
            x = x.reshape(x.shape[0], -1)  # images (n, 28, 28) -> (n, 784)
        if x.shape[0] == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={x.shape}) while a minimum of 1 is required.")
        if x.shape[1] == 0:
            raise ValueError(f"Found array with 0 feature(s) (shape={x.shape}) while a minimum of 1 is required.")
        if x.dtype != np.uint8:
            if np.isnan(x).any():
                raise ValueError("Input X contains NaN.")
            if not np.isfinite(x).all():
                raise ValueError("Input X contains infinity or a value too large for its dtype.")
        if not reset:
            self._check_fitted()
            if x.shape[1] != self.n_features_in_:
                raise ValueError(
                    f"X has {x.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input."
                )
        return x

    def _check_y(self, y: Any, n: int) -> np.ndarray:
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        if _is_sparse(y):
            raise TypeError("A sparse y is not supported; pass class labels as a 1-D array")
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            warnings.warn(
                "A column-vector y was passed when a 1d array was expected. Please change the shape of y "
                "to (n_samples, ), for example using ravel().",
                _data_conversion_warning(),
                stacklevel=3,
            )
            y = y.ravel()
        if y.ndim != 1:
            raise ValueError(
                f"y should be a 1d array of class labels, got an array of shape {y.shape} "
                "(multilabel and multi-output targets are not supported)"
            )
        if len(y) != n:
            raise ValueError(f"Found input variables with inconsistent numbers of samples: [{n}, {len(y)}]")
        if np.iscomplexobj(y):
            raise ValueError("Complex data not supported")
        if y.dtype.kind == "f":
            if not np.isfinite(y).all():
                raise ValueError("Input y contains NaN or infinity.")
            if (y != np.round(y)).any():
                raise ValueError("Unknown label type: continuous. Class labels must be discrete values.")
        elif y.dtype.kind == "O" and all(isinstance(v, numbers.Real) for v in y):
            as_float = y.astype(np.float64)
            if not np.isfinite(as_float).all() or (as_float != np.round(as_float)).any():
                raise ValueError("Unknown label type: continuous. Class labels must be discrete values.")
        return y

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise _not_fitted_error(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with appropriate "
                "arguments before using this estimator."
            )

    # -- training and prediction ----------------------------------------------------------
    def fit(self, X: Any, y: Any) -> "MLPClassifier":
        """Trains for ``max_iter`` epochs and returns self."""
        hidden, lr, bs, epochs, dt, threads = self._check_params()
        x = self._check_X(X, reset=True)
        yy = self._check_y(y, len(x))
        try:
            classes, y_idx = np.unique(yy, return_inverse=True)
        except TypeError as e:
            raise ValueError(f"Unknown label type: the labels cannot be sorted ({e})") from e
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {classes[0]!r}"
            )
        batch = min(200, len(x)) if bs == "auto" else int(bs)
        sizes = [x.shape[1], *hidden, len(classes)]
        model = getattr(self, "model_", None)
        if not (
            self.warm_start
            and model is not None
            and model.layer_sizes == sizes
            and model.dtype == dt
            and np.array_equal(self.classes_, classes)
        ):
            if self.warm_start and model is not None:
                raise ValueError(
                    "warm_start=True but the data or parameters changed since the last fit "
                    f"(layers {model.layer_sizes} -> {sizes}, dtype {model.dtype} -> {dt}, or the classes); "
                    "set warm_start=False to start over"
                )
            model = MLP(sizes, seed=self._seed(), dtype=dt)
        hist = model.fit(
            x, y_idx.reshape(-1).astype(np.int32), epochs=epochs, lr=lr, batch_size=batch, shuffle=bool(self.shuffle),
            num_threads=threads, verbose=bool(self.verbose),
        )
        self.model_ = model
        self.classes_ = classes
        self.n_features_in_ = x.shape[1]
        self.n_iter_ = (getattr(self, "n_iter_", 0) if self.warm_start else 0) + len(hist)
        self.loss_curve_ = [h["train_loss"] for h in model.history]
        self.loss_ = self.loss_curve_[-1]
        self.history_ = model.history
        self.n_layers_ = len(sizes)
        self.n_outputs_ = len(classes)
        self.out_activation_ = "softmax"
        return self

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices, (fan_in, fan_out) each (views of the model)."""
        self._check_fitted()
        return self.model_.weights

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, (fan_out,) each (views of the model)."""
        self._check_fitted()
        return self.model_.biases

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, (n_samples, n_classes) float64, columns in the order of ``classes_``."""
        x = self._check_X(X, reset=False)
        return np.asarray(self.model_.predict_proba(x, num_threads=self.num_threads), dtype=np.float64)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithm of `predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample, as values of ``classes_``."""
        x = self._check_X(X, reset=False)
        return self.classes_[self.model_.predict(x, num_threads=self.num_threads)]

    def score(self, X: Any, y: Any, sample_weight: Any = None) -> float:
        """Mean accuracy of ``predict(X)`` against ``y`` (weighted by ``sample_weight``)."""
        pred = self.predict(X)
        yy = np.asarray(y)
        if yy.ndim == 2 and yy.shape[1] == 1:
            yy = yy.ravel()
        correct = (pred == yy).astype(np.float64)
        if sample_weight is None:
            return float(correct.mean())
        w = np.asarray(sample_weight, dtype=np.float64)
        return float(np.sum(correct * w) / np.sum(w))


def _safe_equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False
