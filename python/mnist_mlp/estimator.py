"""`MLPClassifier`: scikit-learn's MLPClassifier, trained by mnist_mlp's C++ engine.

It takes every parameter of `sklearn.neural_network.MLPClassifier` (1.9) with
scikit-learn's defaults and meaning, plus our own ``dtype`` and
``num_threads``, and follows scikit-learn's algorithm: Glorot-uniform initial
weights drawn from ``random_state``'s RandomState, its SGD (momentum, Nesterov)
and Adam formulas, its L2 penalty ``alpha`` (on the weights, over the batch),
``batch_size='auto'``, the 'constant', 'invscaling' and 'adaptive' learning
rates, the shuffles, the validation split of ``early_stopping``,
the ``tol`` / ``n_iter_no_change`` stopping rules, ``warm_start`` and
``partial_fit``. From the same initial weights it computes scikit-learn's
``coefs_`` (tested to 1e-9 in float64). It follows the estimator protocol
without importing scikit-learn, so it works where scikit-learn is not
installed (the validation split is then a plain shuffled split, not a
stratified one).

Where it differs: uint8 ``X`` is read as pixel intensities and scaled by 1/255
inside the kernel (MNIST as `mnist_mlp.load_mnist` gives it; scikit-learn
would use 0..255); a binary problem has a softmax output of two units rather
than scikit-learn's single logistic unit; ``solver='lbfgs'``, ``sample_weight``, sparse input and multilabel targets are
not supported (a clear error says so).
"""

from __future__ import annotations

import inspect
import math
import numbers
import warnings
from typing import Any, Sequence

import numpy as np

from . import optim as _optim
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
    """Multilayer perceptron classifier with scikit-learn's parameters, defaults
    and algorithm, trained by mnist_mlp's C++ engine.

    Parameters are those of `sklearn.neural_network.MLPClassifier` (see its
    documentation; ``solver='lbfgs'`` raises a ValueError, and ``max_fun``,
    which only lbfgs uses, is accepted and checked), plus:

    dtype : "float32" or "float64", default "float32"
        Precision of the parameters and arithmetic.
    num_threads : int or None, default None
        Threads for training and prediction (None: all cores, or OMP_NUM_THREADS).

    Inputs ``X`` are (n_samples, n_features), or images (n_samples, 28, 28)
    which are flattened. uint8 ``X`` is read as pixel intensities and scaled by
    1/255 inside the kernel, without a float copy; every other numeric dtype is
    used as given. Labels may be any sortable values; ``classes_`` holds them
    sorted.

    Fitted attributes: scikit-learn's (``classes_``, ``n_features_in_``,
    ``loss_``, ``best_loss_``, ``loss_curve_``, ``validation_scores_``,
    ``best_validation_score_``, ``t_``, ``n_iter_``, ``n_layers_``,
    ``n_outputs_``, ``out_activation_``, ``coefs_``, ``intercepts_``, the last
    two views of the model's parameters), plus ``model_`` (the
    `mnist_mlp.MLP`) and ``history_`` (its `MLP.fit` records).
    """

    # Set by fit (declared for type checkers; absent until then).
    model_: MLP
    classes_: np.ndarray
    n_features_in_: int
    n_iter_: int
    t_: int
    loss_: float
    best_loss_: float | None
    loss_curve_: list[float]
    validation_scores_: list[float] | None
    best_validation_score_: float | None
    history_: list[dict[str, Any]]
    n_layers_: int
    n_outputs_: int
    out_activation_: str

    def __init__(
        self,
        hidden_layer_sizes: int | Sequence[int] = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: int | str = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        dtype: str = "float32",
        num_threads: int | None = None,
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.dtype = dtype
        self.num_threads = num_threads

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
    def _check_params(self) -> dict[str, Any]:
        """scikit-learn's parameter constraints; returns the checked values."""
        hidden = self.hidden_layer_sizes
        if isinstance(hidden, numbers.Integral) and not isinstance(hidden, bool):
            hidden = [int(hidden)]
        bad = ValueError(f"hidden_layer_sizes must be an int or a sequence of ints, got {self.hidden_layer_sizes!r}")
        if isinstance(hidden, (str, bytes)):  # "12" would be the layers [1, 2]
            raise bad
        try:
            hidden = list(hidden)  # type: ignore[arg-type]
        except TypeError as e:
            raise bad from e
        if any(isinstance(h, (bool, np.bool_)) or not isinstance(h, numbers.Integral) for h in hidden):
            raise bad  # 8.7 is not a layer width (int() would make it 8)
        hidden = [int(h) for h in hidden]
        if any(h > 1 << 24 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be at most {1 << 24}, got {self.hidden_layer_sizes!r}")
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes!r}")

        def choice(name: str, options: tuple[str, ...]) -> str:
            v = getattr(self, name)
            if not isinstance(v, str) or v not in options:
                raise ValueError(f"The '{name}' parameter of {type(self).__name__} must be a str among {options}. Got {v!r} instead.")
            return v

        def real(name: str, low: float, high: float | None = None, *, low_open: bool = False, high_open: bool = False,
                 allow_inf: bool = False) -> float:
            v = getattr(self, name)
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool)
            if ok:
                try:
                    fv = float(v)
                except OverflowError:  # an int beyond float's range
                    fv = math.inf
                ok = not math.isnan(fv)
            if ok:
                ok = (fv > low if low_open else fv >= low) and (
                    high is None or (fv < high if high_open else fv <= high)
                ) and (allow_inf or np.isfinite(fv))
            if not ok:
                rng = f"{'(' if low_open else '['}{low:g}, {'inf' if high is None else f'{high:g}'}{')' if high_open or high is None else ']'}"
                raise ValueError(f"The '{name}' parameter of {type(self).__name__} must be a float in the range {rng}. Got {v!r} instead.")
            return float(v)

        def integer(name: str, low: int, *, allow_inf: bool = False) -> int | float:
            v = getattr(self, name)
            if allow_inf and isinstance(v, numbers.Real) and v == np.inf:
                return np.inf
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
                raise ValueError(f"The '{name}' parameter of {type(self).__name__} must be an int in the range [{low}, inf). Got {v!r} instead.")
            return int(v)

        def flag(name: str) -> bool:
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"The '{name}' parameter of {type(self).__name__} must be an instance of 'bool'. Got {v!r} instead.")
            return bool(v)

        solver = choice("solver", ("lbfgs", "sgd", "adam"))
        if solver == "lbfgs":
            raise ValueError(
                "solver='lbfgs' is not supported by mnist_mlp.MLPClassifier (it trains with stochastic solvers "
                "only): use solver='adam' or 'sgd', or sklearn.neural_network.MLPClassifier for lbfgs"
            )
        bs = self.batch_size
        if not (bs == "auto" or (isinstance(bs, numbers.Integral) and not isinstance(bs, bool) and bs >= 1)):
            raise ValueError(f"The 'batch_size' parameter of {type(self).__name__} must be an int in the range [1, inf) or 'auto'. Got {bs!r} instead.")
        try:
            dt = np.dtype(self.dtype)
        except TypeError as e:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}") from e
        if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        nt = self.num_threads
        if nt is not None and (isinstance(nt, bool) or not isinstance(nt, numbers.Integral) or nt < 1):
            raise ValueError(f"num_threads must be None or an int >= 1, got {nt!r}")
        verbose = self.verbose
        if not isinstance(verbose, (bool, np.bool_, numbers.Integral)):
            raise ValueError(f"The 'verbose' parameter of {type(self).__name__} must be an int or a bool. Got {verbose!r} instead.")
        return dict(
            hidden=hidden, activation=choice("activation", ("identity", "logistic", "tanh", "relu")), solver=solver,
            alpha=real("alpha", 0.0), batch_size=bs,
            learning_rate=choice("learning_rate", ("constant", "invscaling", "adaptive")),
            lr=real("learning_rate_init", 0.0, low_open=True), power_t=real("power_t", 0.0),
            max_iter=integer("max_iter", 1), shuffle=flag("shuffle"), tol=real("tol", 0.0),
            warm_start=flag("warm_start"), momentum=real("momentum", 0.0, 1.0),
            nesterov=flag("nesterovs_momentum"), early_stopping=flag("early_stopping"),
            validation_fraction=real("validation_fraction", 0.0, 1.0, high_open=True),
            beta_1=real("beta_1", 0.0, 1.0, high_open=True), beta_2=real("beta_2", 0.0, 1.0, high_open=True),
            epsilon=real("epsilon", 0.0, low_open=True), n_iter_no_change=integer("n_iter_no_change", 1, allow_inf=True),
            max_fun=integer("max_fun", 1), dtype=dt, threads=None if nt is None else int(nt), verbose=bool(verbose),
        )

    def _random_state(self) -> np.random.RandomState:
        """scikit-learn's check_random_state (a Generator seeds a RandomState too)."""
        rs = self.random_state
        if rs is None:
            return np.random.mtrand._rand
        if isinstance(rs, numbers.Integral) and not isinstance(rs, bool):
            return np.random.RandomState(int(rs))
        if isinstance(rs, np.random.RandomState):
            return rs
        if isinstance(rs, np.random.Generator):
            return np.random.RandomState(int(rs.integers(np.iinfo(np.int32).max)))
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
        """Trains as scikit-learn's MLPClassifier.fit does (up to ``max_iter``
        epochs, stopping by ``tol`` / ``n_iter_no_change``); returns self."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> "MLPClassifier":
        """One epoch over (X, y), continuing the weights and the optimizer's state.
        ``classes`` (every label of the whole dataset) is required on the first call."""
        if not hasattr(self, "classes_"):
            if classes is None:
                raise ValueError("classes must be passed on the first call to partial_fit.")
        elif classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
            raise ValueError(f"`classes={classes!r}` is not the same as on last call to partial_fit, was: {self.classes_!r}")
        return self._fit(X, y, incremental=True, classes=classes)

    def _fit(self, X: Any, y: Any, *, incremental: bool, classes: Any = None) -> "MLPClassifier":
        p = self._check_params()
        if p["early_stopping"] and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "model_") or (not p["warm_start"] and not incremental)
        x = self._check_X(X, reset=first_pass)
        yy = self._check_y(y, len(x))
        # Classes: defined on the first pass (by partial_fit's `classes`), then fixed.
        if first_pass and not (incremental and hasattr(self, "classes_") and classes is None):
            source = np.asarray(classes) if incremental and classes is not None else yy
            try:
                new_classes = np.unique(source)
            except TypeError as e:
                raise ValueError(f"Unknown label type: the labels cannot be sorted ({e})") from e
            if len(new_classes) < 2:
                raise ValueError(
                    f"{type(self).__name__} needs samples of at least 2 classes in the data, but the data "
                    f"contains only one class: {new_classes[0]!r}"
                )
        else:
            new_classes = self.classes_
            if not incremental and not np.array_equal(np.unique(yy), new_classes):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the previous call to fit. "
                    f"Previously got {new_classes}, `y` has {np.unique(yy)}"
                )
        try:
            y_idx = np.searchsorted(new_classes, yy)
            bad = (y_idx >= len(new_classes)) | (new_classes[np.minimum(y_idx, len(new_classes) - 1)] != yy)
        except TypeError as e:
            raise ValueError(f"Unknown label type: the labels cannot be compared with classes_ ({e})") from e
        if bad.any():
            raise ValueError(f"Expected only labels in classes_ = {new_classes}, but got {np.unique(yy[bad])}")
        y_idx = y_idx.astype(np.int32)

        hidden, dt = p["hidden"], p["dtype"]
        sizes = [x.shape[1], *hidden, len(new_classes)]
        rs = self._random_state()
        if first_pass:
            # scikit-learn's _initialize: Glorot uniform, coef then intercept per layer.
            factor = 2.0 if p["activation"] == "logistic" else 6.0
            ws, bs = [], []
            for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
                bound = np.sqrt(factor / (fan_in + fan_out))
                ws.append(rs.uniform(-bound, bound, (fan_in, fan_out)).astype(dt))
                bs.append(rs.uniform(-bound, bound, fan_out).astype(dt))
            self.model_ = MLP.from_weights(ws, bs, activation=p["activation"])
            self.classes_ = new_classes
            self.n_features_in_ = x.shape[1]
            self.n_iter_ = 0
            self.t_ = 0
            self.n_layers_ = len(sizes)
            self.n_outputs_ = len(new_classes)
            self.out_activation_ = "softmax"
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if p["early_stopping"]:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None
            self._best_params = self.model_._copy_params()
        else:
            model = self.model_
            if model.layer_sizes != sizes or model.dtype != dt or model.activation != p["activation"]:
                raise ValueError(
                    "warm_start / partial_fit need the same network: layers "
                    f"{model.layer_sizes} -> {sizes}, dtype {model.dtype} -> {dt}, activation "
                    f"{model.activation} -> {p['activation']}; fit with warm_start=False to start over"
                )
        model = self.model_
        if p["solver"] == "sgd":
            opt: Any = _optim._SklearnSGD(p["lr"], p["momentum"], p["nesterov"], p["alpha"])
        else:
            opt = _optim._SklearnAdam(p["lr"], p["beta_1"], p["beta_2"], p["epsilon"], p["alpha"])
        if not incremental or not hasattr(self, "_lr_now"):
            # A new optimizer, as scikit-learn makes one per fit (and per first partial_fit).
            # (A partial_fit with another solver is reset by MLP.fit: its state's kind differs.)
            model.reset_optimizer()
            self._lr_now = p["lr"]

        # early_stopping: scikit-learn's stratified split, with the same RandomState.
        x_val = y_val = None
        x_train, y_train = x, y_idx
        if p["early_stopping"]:
            tr, va = _validation_split(len(x), y_idx, len(new_classes), p["validation_fraction"], rs)
            if len(va) < 2:
                raise ValueError("The validation set is too small. Increase 'validation_fraction' or the size of your dataset.")
            x_train, y_train, x_val, y_val = x[tr], y_idx[tr], x[va], y_idx[va]
        n = len(x_train)
        if p["batch_size"] == "auto":
            batch = min(200, n)
        else:
            if p["batch_size"] > n:
                warnings.warn("Got `batch_size` less than 1 or larger than sample size. It is going to be clipped")
            batch = int(np.clip(p["batch_size"], 1, n))

        sample_idx = np.arange(n)

        def order(_: int) -> np.ndarray:
            nonlocal sample_idx
            perm = np.arange(n)
            rs.shuffle(perm)  # sklearn.utils.shuffle(sample_idx, random_state=rs)
            sample_idx = sample_idx[perm]
            return sample_idx

        self.n_iter_ = 0
        stopped = False

        def after_epoch(rec: dict) -> bool:
            nonlocal stopped
            self.n_iter_ += 1
            self.loss_ = float(rec["train_loss"] + rec.get("train_penalty", 0.0))
            self.t_ += n
            self.loss_curve_.append(self.loss_)
            if p["verbose"]:
                print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))
            self._update_no_improvement_count(p, x_val, y_val)
            if p["solver"] == "sgd" and p["learning_rate"] == "invscaling":
                self._lr_now = p["lr"] / (self.t_ + 1) ** p["power_t"]
            if self._no_improvement_count > p["n_iter_no_change"]:
                what = "Validation score" if p["early_stopping"] else "Training loss"
                msg = f"{what} did not improve more than tol={p['tol']:f} for {p['n_iter_no_change']} consecutive epochs."
                if p["solver"] == "sgd" and p["learning_rate"] == "adaptive" and self._lr_now > 1e-6:
                    self._lr_now /= 5.0
                    self._no_improvement_count = 0
                    if p["verbose"]:
                        print(msg + " Setting learning rate to %f" % self._lr_now)
                else:
                    if p["verbose"]:
                        print(msg + (" Learning rate too small." if p["learning_rate"] == "adaptive" and p["solver"] == "sgd" else "") + " Stopping.")
                    stopped = True
                    return False
            return True

        try:
            model.fit(
                x_train, y_train, epochs=1 if incremental else p["max_iter"], batch_size=batch,
                optimizer=opt, lr_schedule=_CurrentLR(self), num_threads=p["threads"], eval_train=False,
                stop_on_nan=False, callback=after_epoch, _orders=order if p["shuffle"] else None, _sklearn_loss=True,
            )
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if not incremental and not stopped and self.n_iter_ == p["max_iter"]:
            warnings.warn(
                "Stochastic Optimizer: Maximum iterations (%d) reached and the optimization hasn't converged yet."
                % p["max_iter"],
                _convergence_warning(),
            )
        if p["early_stopping"]:
            model._set_params(*self._best_params)
        if not all(np.isfinite(w).all() for w in model.weights + model.biases):
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain large values and need to "
                "be preprocessed."
            )
        self.history_ = model.history
        return self

    def _update_no_improvement_count(self, p: dict[str, Any], x_val: Any, y_val: Any) -> None:
        # scikit-learn's rule, on the validation accuracy or the training loss.
        if p["early_stopping"]:
            score = float(np.mean(self.model_.predict(x_val, num_threads=p["threads"]) == y_val))
            self.validation_scores_.append(score)  # type: ignore[union-attr]
            if p["verbose"]:
                print("Validation score: %f" % score)
            if score < self.best_validation_score_ + p["tol"]:  # type: ignore[operator]
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:  # type: ignore[operator]
                self.best_validation_score_ = score
                self._best_params = self.model_._copy_params()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - p["tol"]:  # type: ignore[operator]
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:  # type: ignore[operator]
                self.best_loss_ = self.loss_curve_[-1]

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


class _CurrentLR(_optim.Schedule):
    """The estimator's current learning rate (invscaling, adaptive) as fit's schedule."""

    def __init__(self, est: MLPClassifier):
        self.est = est

    def lr(self, epoch: int, base_lr: float, *, samples_per_epoch: int = 0) -> float:
        return float(self.est._lr_now)


def _convergence_warning() -> type[Warning]:
    try:
        from sklearn.exceptions import ConvergenceWarning as SkConvergenceWarning
    except ImportError:
        return ConvergenceWarning
    return SkConvergenceWarning


class ConvergenceWarning(UserWarning):
    """Stand-in for `sklearn.exceptions.ConvergenceWarning` without scikit-learn."""


def _validation_split(n: int, y: np.ndarray, n_classes: int, fraction: float, rs: np.random.RandomState):
    """(train rows, validation rows): scikit-learn's train_test_split with the
    estimator's RandomState, as MLPClassifier's early_stopping does (stratified
    for binary problems); without scikit-learn a shuffled split of the same size."""
    try:
        from sklearn.model_selection import train_test_split
    except ImportError:
        n_val = int(np.ceil(fraction * n))
        perm = rs.permutation(n)
        return perm[n_val:], perm[:n_val]
    # scikit-learn stratifies when its output has one column: binary problems only.
    strat = y.reshape(-1, 1) if n_classes == 2 else None
    tr, va = train_test_split(np.arange(n), random_state=rs, test_size=fraction, stratify=strat)
    return tr, va
