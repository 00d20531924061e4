"""The oracle: the seed notebook's MLP in plain NumPy.

Same arithmetic as the seed (ReLU hidden layers, softmax output, cross-entropy,
mean-gradient SGD, W -= lr * g), with two deliberate fixes: the softmax subtracts
the row max, and the loss is log-sum-exp minus the true logit, so neither
overflows nor takes log(0). Beyond the seed it implements, on its own, every
activation (`ACTIVATIONS`, `DERIVATIVES`), the dropout masks (`dropout_mask`),
every optimizer of `mnist_mlp.optim` (`_RefOptimizer`, from the optimizer's
hyperparameters only) and every schedule (`_scheduled_lr`). It shares the
constructor, `fit`, `evaluate` and `predict` API of `mnist_mlp.MLP`, and the
same seed gives the same initial weights, so the two can be compared step for
step. It is slow on purpose: nothing here is optimised beyond what NumPy does
by itself.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np

from . import _validate as V

__all__ = ["ACTIVATIONS", "DERIVATIVES", "NumpyMLP", "dropout_mask", "dropout_seed_of", "initial_params", "shuffle_rng"]

# f(z), and f' written in terms of a = f(z) (as scikit-learn's tables are).
ACTIVATIONS = {
    "relu": lambda z: np.maximum(z, 0),
    "tanh": np.tanh,
    "logistic": lambda z: 1 / (1 + np.exp(-z)),
    "identity": lambda z: z,
}
DERIVATIVES = {
    "relu": lambda a: (a > 0).astype(a.dtype),
    "tanh": lambda a: 1 - a * a,
    "logistic": lambda a: a * (1 - a),
    "identity": lambda a: np.ones_like(a),
}


def dropout_seed_of(seed: Any) -> int:
    """The 64-bit key of the dropout masks: a stream of its own from the seed."""
    words = np.random.SeedSequence(seed, spawn_key=(2,)).generate_state(2, np.uint32)
    return int(words[0]) | int(words[1]) << 32


def _mix32(x: np.ndarray) -> np.ndarray:
    # "lowbias32", on uint32 arrays (NumPy wraps array arithmetic modulo 2^32).
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def dropout_mask(seed: int, epoch: int, layer: int, samples: np.ndarray, units: int, p: float) -> np.ndarray:
    """Keep (True) or drop of each (sample, unit) of hidden layer ``layer`` (from
    1) at ``epoch``: the generator of cpp/kernels/dropout.inc, keyed by the
    samples' rows in the dataset."""
    samples = np.asarray(samples, dtype=np.uint64)
    h = _mix32(np.full(len(samples), (seed & 0xFFFFFFFF) ^ 0x5BD1E995, dtype=np.uint32))
    for word in (seed >> 32, epoch & 0xFFFFFFFF, layer & 0xFFFFFFFF):
        h = _mix32(h ^ np.uint32(word & 0xFFFFFFFF))
    h = _mix32(h ^ (samples & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    h = _mix32(h ^ (samples >> np.uint64(32)).astype(np.uint32))
    j = np.arange(1, units + 1, dtype=np.uint32)
    u = _mix32(h[:, None] + np.uint32(0x9E3779B9) * j[None, :])
    thr = min(math.floor(p * 2.0**32), 2**32 - 1)
    return u >= np.uint32(thr)


def initial_params(
    layer_sizes: Sequence[int], seed: Any = None, dtype: Any = np.float32
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The seed's initialisation: W ~ N(0, 1) / sqrt(fan_in), b = 0.

    Draws in float64 from ``np.random.default_rng(seed)`` layer by layer, then
    casts, so a given seed gives the same weights on every platform and for
    both `MLP` and `NumpyMLP`."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    ws, bs = [], []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        ws.append((rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in)).astype(dtype))
        bs.append(np.zeros(fan_out, dtype=dtype))
    return ws, bs


def shuffle_rng(seed: Any) -> np.random.Generator:
    """The generator behind ``shuffle=True``: a stream of its own, separate from
    the initial weights, derived from the same seed."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(1,)))


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _xent_sum(z: np.ndarray, y: np.ndarray) -> float:
    """Summed cross-entropy through log-sum-exp (finite where log(p) is not)."""
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    return float(np.sum(lse - z[np.arange(len(y)), y], dtype=np.float64))


class _RefOptimizer:
    """The update of every optimizer of `mnist_mlp.optim`, written out in NumPy
    from its hyperparameters (torch.optim's single-tensor formulas, and
    scikit-learn's for its two)."""

    def __init__(self, opt: Any):
        self.opt = opt
        self.kind = opt._kind if opt is not None else "sgd"
        self.state: list[dict[str, np.ndarray]] = []
        self.t = 0

    def step(self, params: list[np.ndarray], grads: list[np.ndarray], is_weight: list[bool], lr: float,
             rows: int) -> None:
        o, k = self.opt, self.kind
        self.t += 1
        t = self.t
        while len(self.state) < len(params):
            self.state.append({})
        for p, g, w, st in zip(params, grads, is_weight, self.state):
            dt = p.dtype.type
            if o is None:  # plain SGD, the seed's
                p += -dt(lr) * g
                continue
            if k in ("sgd_sklearn", "adam_sklearn"):
                wd = o.alpha / rows if w else 0.0
            else:
                wd = o.weight_decay
            if k == "adam" and o._decoupled:
                p *= dt(1 - lr * wd)
            elif wd:
                g = g + dt(wd) * p
            if k == "sgd":
                if o.momentum:
                    buf = st["buf"] = g.copy() if t == 1 else dt(o.momentum) * st["buf"] + dt(1 - o.dampening) * g
                    g = g + dt(o.momentum) * buf if o.nesterov else buf
                p -= dt(lr) * g
            elif k == "adam":
                b1, b2 = o.betas
                m = st["m"] = st.get("m", np.zeros_like(p)) * dt(b1) + dt(1 - b1) * g
                v = st["v"] = st.get("v", np.zeros_like(p)) * dt(b2) + dt(1 - b2) * g * g
                if o.amsgrad:
                    v = st["vmax"] = np.maximum(st.get("vmax", np.zeros_like(p)), v)
                bc1, bc2 = 1 - b1**t, 1 - b2**t
                p -= dt(lr / bc1) * (m / (np.sqrt(v) / dt(math.sqrt(bc2)) + dt(o.eps)))
            elif k == "rmsprop":
                a = o.alpha
                sq = st["sq"] = st.get("sq", np.zeros_like(p)) * dt(a) + dt(1 - a) * g * g
                if o.centered:
                    ga = st["ga"] = st.get("ga", np.zeros_like(p)) * dt(a) + dt(1 - a) * g
                    avg = np.sqrt(sq - ga * ga) + dt(o.eps)
                else:
                    avg = np.sqrt(sq) + dt(o.eps)
                if o.momentum > 0:
                    buf = st["buf"] = st.get("buf", np.zeros_like(p)) * dt(o.momentum) + g / avg
                    p -= dt(lr) * buf
                else:
                    p -= dt(lr) * (g / avg)
            elif k == "sgd_sklearn":
                if o.momentum:
                    v = st["v"] = dt(o.momentum) * st.get("v", np.zeros_like(p)) - dt(lr) * g
                    p += dt(o.momentum) * v - dt(lr) * g if o.nesterov else v
                else:
                    p -= dt(lr) * g
            elif k == "adam_sklearn":
                m = st["m"] = dt(o.beta_1) * st.get("m", np.zeros_like(p)) + dt(1 - o.beta_1) * g
                v = st["v"] = dt(o.beta_2) * st.get("v", np.zeros_like(p)) + dt(1 - o.beta_2) * g * g
                lr_t = lr * math.sqrt(1 - o.beta_2**t) / (1 - o.beta_1**t)
                p -= dt(lr_t) * m / (np.sqrt(v) + dt(o.epsilon))
            else:
                raise ValueError(f"unknown optimizer kind {k!r}")


def _scheduled_lr(schedule: Any, epoch: int, base_lr: float, samples: int) -> float:
    """The learning rate of an epoch under a schedule of `mnist_mlp.optim`, or a
    callable epoch -> factor (torch's closed forms; scikit-learn's invscaling)."""
    name = type(schedule).__name__
    if schedule is None:
        return base_lr
    if name == "StepLR":
        return base_lr * schedule.gamma ** (epoch // schedule.step_size)
    if name == "ExponentialLR":
        return base_lr * schedule.gamma**epoch
    if name == "CosineAnnealingLR":
        return schedule.eta_min + (base_lr - schedule.eta_min) * (1 + math.cos(math.pi * epoch / schedule.T_max)) / 2
    if name == "InvScalingLR":
        return base_lr / (epoch * samples + 1) ** schedule.power_t
    return base_lr * float(schedule(epoch))


class NumpyMLP:
    """Pure-NumPy multilayer perceptron with the `mnist_mlp.MLP` API."""

    def __init__(
        self,
        layer_sizes: Sequence[int],
        *,
        activation: str = "relu",
        dropout: Any = 0.0,
        seed: Any = None,
        dtype: Any = np.float32,
    ):
        self.layer_sizes = V.layer_sizes(layer_sizes)
        self.dtype = V.model_dtype(dtype)
        self.activation = V.activation(activation)
        self.dropout = V.dropout(dropout, len(self.layer_sizes) - 2)
        self.weights, self.biases = initial_params(self.layer_sizes, seed, self.dtype)
        self._shuffle = shuffle_rng(seed)
        self.dropout_seed = dropout_seed_of(seed)
        self.history: list[dict] = []
        self._opt = _RefOptimizer(None)

    @classmethod
    def from_weights(
        cls,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray],
        *,
        activation: str = "relu",
        dropout: Any = 0.0,
        seed: Any = None,
    ) -> "NumpyMLP":
        ws = [np.array(w, copy=True) for w in weights]
        sizes = [ws[0].shape[0]] + [w.shape[1] for w in ws]
        self = cls(sizes, activation=activation, dropout=dropout, seed=0, dtype=ws[0].dtype)
        self.weights = [w.astype(self.dtype) for w in ws]
        self.biases = [np.array(b, dtype=self.dtype).reshape(-1) for b in biases]
        self._shuffle = shuffle_rng(seed)
        self.dropout_seed = dropout_seed_of(seed)
        return self

    # -- the seed's arithmetic -------------------------------------------------
    def _as_float(self, x: np.ndarray) -> np.ndarray:
        if x.dtype == np.uint8:
            return x.astype(self.dtype) / self.dtype.type(255)
        return x.astype(self.dtype, copy=False)

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Activations of every layer, as in inference; the last entry is the logits."""
        return self._forward_parts(x)[0]

    def _forward_parts(self, x: np.ndarray, drop: tuple[int, np.ndarray] | None = None) -> tuple[list, list, list]:
        """Activations of every layer (the last entry is the logits), with
        dropout when ``drop`` = (epoch, the batch's sample rows) is given: also
        the activations before dropout and the masks (m = 0 or 1 / (1 - p))."""
        f = ACTIVATIONS[self.activation]
        acts, pres, masks = [self._as_float(x)], [None], [None]
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = np.dot(acts[-1], w) + b
            if i + 1 == len(self.weights):
                acts.append(z)
                break
            a = f(z)
            p = self.dropout[i]
            if drop is not None and p > 0:
                keep = dropout_mask(self.dropout_seed, drop[0], i + 1, drop[1], a.shape[1], p)
                m = np.where(keep, self.dtype.type(1.0 / (1.0 - p)), self.dtype.type(0))
                pres.append(a)
                masks.append(m)
                a = a * m
            else:
                pres.append(a)
                masks.append(None)
            acts.append(a)
        return acts, pres, masks

    def train_step(self, x: np.ndarray, y: np.ndarray, lr: float, *, epoch: int = 0,
                   samples: np.ndarray | None = None) -> float:
        """One step on a batch with the fit's optimizer (plain SGD outside fit);
        returns the batch's summed loss before the step. ``samples`` are the
        batch's rows in the dataset and ``epoch`` the model's epoch: the
        dropout masks' keys."""
        if samples is None:
            samples = np.arange(len(x))
        acts, pres, masks = self._forward_parts(x, (epoch, samples))
        z = acts[-1]
        loss = _xent_sum(z, y)
        onehot = np.zeros_like(z)
        onehot[np.arange(len(y)), y] = 1
        delta = (_softmax_rows(z) - onehot) / z.shape[0]  # the seed's dx2
        df = DERIVATIVES[self.activation]
        grads_w: list[np.ndarray] = [None] * len(self.weights)  # type: ignore[list-item]
        grads_b: list[np.ndarray] = [None] * len(self.weights)  # type: ignore[list-item]
        for l in range(len(self.weights) - 1, -1, -1):
            a = acts[l]
            grads_w[l] = np.dot(a.T, delta)
            grads_b[l] = np.sum(delta, axis=0)
            if l > 0:  # uses w before its update, as the seed does
                delta = np.dot(delta, self.weights[l].T)
                if masks[l] is not None:
                    delta = delta * masks[l]
                delta = delta * df(pres[l])
        params = self.weights + self.biases
        self._opt.step(params, grads_w + grads_b, [True] * len(self.weights) + [False] * len(self.biases), lr,
                       len(x))
        return loss

    # -- the shared API ------------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        epochs: int = 1,
        lr: float = 0.1,
        batch_size: int = 8,
        shuffle: bool = False,
        validation_data: tuple[Any, Any] | None = None,
        verbose: bool = False,
        *,
        optimizer: Any = None,
        lr_schedule: Any = None,
        **_ignored: Any,
    ) -> list[dict]:
        """As `MLP.fit`. The optimizer's state is kept between fits while the
        optimizer keeps the same kind of state, as `MLP` keeps it."""
        x = V.inputs(x, self.layer_sizes[0])
        y = V.labels(y, len(x), self.layer_sizes[-1])
        epochs = V.positive_int("epochs", epochs)
        batch_size = V.positive_int("batch_size", batch_size)
        base_lr = optimizer.lr if optimizer is not None else V.positive_float("lr", lr)
        sig = optimizer._signature() if optimizer is not None else ("sgd", ())
        old = self._opt.opt._signature() if self._opt.opt is not None else ("sgd", ())
        if sig != old:
            self._opt = _RefOptimizer(optimizer)
        else:
            self._opt.opt = optimizer
        hist = []
        for _ in range(epochs):
            epoch = len(self.history)
            lr = _scheduled_lr(lr_schedule, epoch, base_lr, len(x))
            order = self._shuffle.permutation(len(x)) if shuffle else None
            t0 = time.perf_counter()
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size] if order is not None else np.arange(start, min(start + batch_size, len(x)))
                self.train_step(x[idx], y[idx], lr, epoch=epoch, samples=idx)
            rec: dict[str, Any] = {"epoch": len(self.history), "seconds": time.perf_counter() - t0}
            rec["train_loss"], rec["train_accuracy"] = self.evaluate(x, y)
            if validation_data is not None:
                rec["test_loss"], rec["test_accuracy"] = self.evaluate(*validation_data)
            self.history.append(rec)
            hist.append(rec)
            if verbose:
                print(rec)
        return hist

    def predict_proba(self, x: Any, **_ignored: Any) -> np.ndarray:
        x = V.inputs(x, self.layer_sizes[0])
        return _softmax_rows(self._forward(x)[-1])

    def predict(self, x: Any, **_ignored: Any) -> np.ndarray:
        return np.argmax(self.predict_proba(x), axis=1)

    def evaluate(self, x: Any, y: Any, **_ignored: Any) -> tuple[float, float]:
        """(mean cross-entropy, accuracy), in chunks to bound memory."""
        x = V.inputs(x, self.layer_sizes[0])
        y = V.labels(y, len(x), self.layer_sizes[-1])
        loss, correct = 0.0, 0
        for s in range(0, len(x), 4096):
            z = self._forward(x[s : s + 4096])[-1]
            loss += _xent_sum(z, y[s : s + 4096])
            correct += int(np.sum(np.argmax(_softmax_rows(z), axis=1) == y[s : s + 4096]))
        return loss / len(x), correct / len(x)
