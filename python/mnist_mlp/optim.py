"""Optimizers and learning-rate schedules for `MLP.fit`.

The optimizers are torch.optim's, with its names, defaults and formulas
(weight decay on every parameter, biases included, as torch does by default),
so a model trained here and in PyTorch from the same weights agrees::

    model.fit(x, y, optimizer=mm.optim.Adam(lr=1e-3))
    model.fit(x, y, optimizer=mm.optim.SGD(lr=0.05, momentum=0.9, nesterov=True))

An optimizer object holds only hyperparameters. Its state (momentum buffers,
Adam's moments, the step count) lives in the model, in the same allocation as
the parameters: it carries over from one ``fit`` to the next while the
optimizer keeps the same kind of state (the same class, and for SGD and
RMSprop the same use of momentum and centering), is written by ``save`` and
pickling, and starts from zero when the kind changes (or on
`MLP.reset_optimizer`). The update itself runs in C++
(``cpp/kernels/update.inc``, one rule per optimizer).

Schedules scale the learning rate per epoch; the epoch is the model's (its
``len(history)``), so a resumed fit continues the schedule::

    model.fit(x, y, epochs=30, optimizer=mm.optim.SGD(0.1, momentum=0.9),
              lr_schedule=mm.optim.CosineAnnealingLR(T_max=30))
    model.fit(x, y, lr_schedule=lambda epoch: 0.95 ** epoch)   # a factor, as torch's LambdaLR

The formulas, with g the mean gradient of the batch and t the step (from 1):

- SGD: ``g += wd p``; with momentum ``buf = g`` at the first step, else
  ``buf = momentum buf + (1 - dampening) g``; ``g = g + momentum buf`` (Nesterov)
  or ``buf``; ``p -= lr g``.
- Adam: ``g += wd p`` (AdamW instead ``p *= 1 - lr wd``); ``m = beta1 m + (1 - beta1) g``;
  ``v = beta2 v + (1 - beta2) g^2``; AMSGrad uses ``vmax = max(vmax, v)`` for v;
  ``p -= lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``.
- RMSprop: ``g += wd p``; ``sq = alpha sq + (1 - alpha) g^2``; centered:
  ``ga = alpha ga + (1 - alpha) g``, ``avg = sqrt(sq - ga^2) + eps``, else
  ``avg = sqrt(sq) + eps``; with momentum ``buf = momentum buf + g / avg``,
  ``p -= lr buf``, else ``p -= lr g / avg``.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Optimizer",
    "StepLR",
    "ExponentialLR",
    "CosineAnnealingLR",
    "InvScalingLR",
    "Schedule",
]


def _real(name: str, value: Any, *, low: float = 0.0, high: float | None = None, low_open: bool = False,
          high_open: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float's range (10**400)
        raise ValueError(f"{name} must be finite, got an integer of {len(str(abs(int(value))))} digits") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if v < low or (low_open and v == low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {value!r}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high:g}, got {value!r}")
    return v


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        try:
            import numpy as np

            if isinstance(value, np.bool_):
                return bool(value)
        except ImportError:  # pragma: no cover
            pass
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return value


class Optimizer:
    """The base of the optimizers: hyperparameters, and what the engine needs."""

    _kind = ""
    _params: tuple[str, ...] = ()

    lr: float

    def _config(self, lr: float) -> dict[str, Any]:
        """The engine's configuration (cpp/bindings/register_model.cpp opt_config), at learning rate lr."""
        cfg: dict[str, Any] = {
            "kind": self._kind, "lr": float(lr), "momentum": 0.0, "dampening": 0.0, "nesterov": False,
            "weight_decay": 0.0, "decoupled": False, "decay_biases": True, "decay_over_rows": False,
            "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "amsgrad": False, "alpha": 0.99, "centered": False,
        }
        cfg.update(self._engine_fields())
        return cfg

    def _engine_fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def state_slots(self) -> tuple[str, ...]:
        """The names of the per-parameter state arrays this optimizer keeps, in the
        model's state slots 0, 1, 2 (torch's names)."""
        return ()

    def _signature(self) -> tuple[str, tuple[str, ...]]:
        # What the model's state belongs to: state carries over between fits with
        # the same signature.
        return (self._kind, self.state_slots())

    @property
    def is_plain_sgd(self) -> bool:
        """Plain SGD (no momentum, no weight decay): the seed's update, p -= lr g."""
        return False

    def get_config(self) -> dict[str, Any]:
        """The constructor's arguments (``type(opt)(**opt.get_config())`` is an equal optimizer)."""
        return {k: getattr(self, k) for k in self._params}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._params)
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.get_config() == self.get_config()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(sorted(self.get_config().items()))))


class SGD(Optimizer):
    """torch.optim.SGD: stochastic gradient descent with optional momentum
    (``dampening``, ``nesterov``) and L2 weight decay."""

    _kind = "sgd"
    _params = ("lr", "momentum", "dampening", "nesterov", "weight_decay")

    def __init__(self, lr: float = 0.1, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0):
        self.lr = _real("lr", lr, low_open=True)
        self.momentum = _real("momentum", momentum)
        self.dampening = _real("dampening", dampening)
        self.nesterov = _flag("nesterov", nesterov)
        self.weight_decay = _real("weight_decay", weight_decay)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("nesterov=True requires a momentum > 0 and zero dampening (as torch.optim.SGD)")

    def _engine_fields(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "dampening": self.dampening, "nesterov": self.nesterov,
                "weight_decay": self.weight_decay}

    def state_slots(self) -> tuple[str, ...]:
        return ("momentum_buffer",) if self.momentum != 0 else ()

    @property
    def is_plain_sgd(self) -> bool:
        return self.momentum == 0 and self.weight_decay == 0


class Adam(Optimizer):
    """torch.optim.Adam (``amsgrad`` included); ``weight_decay`` adds ``wd * p`` to the gradient."""

    _kind = "adam"
    _params = ("lr", "betas", "eps", "weight_decay", "amsgrad")
    _decoupled = False

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False):
        self.lr = _real("lr", lr, low_open=True)
        try:
            b1, b2 = betas
        except (TypeError, ValueError) as e:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}") from e
        self.betas = (_real("betas[0]", b1, high=1.0), _real("betas[1]", b2, high=1.0))
        self.eps = _real("eps", eps)
        self.weight_decay = _real("weight_decay", weight_decay)
        self.amsgrad = _flag("amsgrad", amsgrad)

    def _engine_fields(self) -> dict[str, Any]:
        return {"beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps, "weight_decay": self.weight_decay,
                "decoupled": self._decoupled, "amsgrad": self.amsgrad}

    def state_slots(self) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ())


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, ``p *= 1 - lr * weight_decay``."""

    _decoupled = True

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(lr, betas, eps, weight_decay, amsgrad)


class RMSprop(Optimizer):
    """torch.optim.RMSprop (``momentum`` and ``centered`` included)."""

    _kind = "rmsprop"
    _params = ("lr", "alpha", "eps", "weight_decay", "momentum", "centered")

    def __init__(self, lr: float = 1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False):
        self.lr = _real("lr", lr, low_open=True)
        self.alpha = _real("alpha", alpha, high=1.0, high_open=False)
        self.eps = _real("eps", eps)
        self.weight_decay = _real("weight_decay", weight_decay)
        self.momentum = _real("momentum", momentum)
        self.centered = _flag("centered", centered)

    def _engine_fields(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "eps": self.eps, "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered}

    def state_slots(self) -> tuple[str, ...]:
        # Slot order is the engine's: square_avg, momentum_buffer, grad_avg.
        names = ["square_avg", "momentum_buffer" if self.momentum > 0 else "", "grad_avg" if self.centered else ""]
        while names and not names[-1]:
            names.pop()
        return tuple(names)


class _SklearnSGD(Optimizer):
    """scikit-learn's SGDOptimizer (MLPClassifier(solver='sgd')): ``v = momentum v -
    lr g``, ``p += momentum v - lr g`` (Nesterov) or ``v``; L2 ``alpha W / batch``
    on the weights only."""

    _kind = "sgd_sklearn"
    _params = ("lr", "momentum", "nesterov", "alpha")

    def __init__(self, lr: float, momentum: float, nesterov: bool, alpha: float):
        self.lr = _real("learning_rate_init", lr, low_open=True)
        self.momentum = _real("momentum", momentum, high=1.0, high_open=False)
        self.nesterov = _flag("nesterovs_momentum", nesterov)
        self.alpha = _real("alpha", alpha)

    def _engine_fields(self) -> dict[str, Any]:
        return {"momentum": self.momentum, "nesterov": self.nesterov and self.momentum > 0,
                "weight_decay": self.alpha, "decay_biases": False, "decay_over_rows": True}

    def state_slots(self) -> tuple[str, ...]:
        return ("velocity",) if self.momentum != 0 else ()

    @property
    def is_plain_sgd(self) -> bool:
        return self.momentum == 0 and self.alpha == 0


class _SklearnAdam(Optimizer):
    """scikit-learn's AdamOptimizer (MLPClassifier(solver='adam')): eps added to
    sqrt(v) before the bias correction, ``lr_t = lr sqrt(1 - beta2^t) / (1 -
    beta1^t)``; L2 ``alpha W / batch`` on the weights only."""

    _kind = "adam_sklearn"
    _params = ("lr", "beta_1", "beta_2", "epsilon", "alpha")

    def __init__(self, lr: float, beta_1: float, beta_2: float, epsilon: float, alpha: float):
        self.lr = _real("learning_rate_init", lr, low_open=True)
        self.beta_1 = _real("beta_1", beta_1, high=1.0)
        self.beta_2 = _real("beta_2", beta_2, high=1.0)
        self.epsilon = _real("epsilon", epsilon, low_open=True)
        self.alpha = _real("alpha", alpha)

    def _engine_fields(self) -> dict[str, Any]:
        return {"beta1": self.beta_1, "beta2": self.beta_2, "eps": self.epsilon, "weight_decay": self.alpha,
                "decay_biases": False, "decay_over_rows": True}

    def state_slots(self) -> tuple[str, ...]:
        return ("m", "v")


# -- learning-rate schedules ---------------------------------------------------------


class Schedule:
    """The base of the schedules: ``lr(epoch, base_lr)`` is the learning rate of
    that epoch (the model's epoch, counted from 0)."""

    def lr(self, epoch: int, base_lr: float, *, samples_per_epoch: int = 0) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


class StepLR(Schedule):
    """torch's StepLR: ``base_lr * gamma ** (epoch // step_size)``."""

    def __init__(self, step_size: int, gamma: float = 0.1):
        if isinstance(step_size, bool) or not isinstance(step_size, numbers.Integral) or step_size < 1:
            raise ValueError(f"step_size must be an integer >= 1, got {step_size!r}")
        self.step_size = int(step_size)
        self.gamma = _real("gamma", gamma, low_open=True)

    def lr(self, epoch: int, base_lr: float, *, samples_per_epoch: int = 0) -> float:
        return base_lr * self.gamma ** (epoch // self.step_size)


class ExponentialLR(Schedule):
    """torch's ExponentialLR: ``base_lr * gamma ** epoch``."""

    def __init__(self, gamma: float):
        self.gamma = _real("gamma", gamma, low_open=True)

    def lr(self, epoch: int, base_lr: float, *, samples_per_epoch: int = 0) -> float:
        return base_lr * self.gamma**epoch


class CosineAnnealingLR(Schedule):
    """torch's CosineAnnealingLR (its closed form):
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``."""

    def __init__(self, T_max: int, eta_min: float = 0.0):
        if isinstance(T_max, bool) or not isinstance(T_max, numbers.Integral) or T_max < 1:
            raise ValueError(f"T_max must be an integer >= 1, got {T_max!r}")
        self.T_max = int(T_max)
        self.eta_min = _real("eta_min", eta_min)

    def lr(self, epoch: int, base_lr: float, *, samples_per_epoch: int = 0) -> float:
        return self.eta_min + (base_lr - self.eta_min) * (1 + math.cos(math.pi * epoch / self.T_max)) / 2


class InvScalingLR(Schedule):
    """scikit-learn's 'invscaling': ``base_lr / (t + 1) ** power_t`` with t the
    samples trained on before the epoch (scikit-learn updates it after each epoch)."""

    def __init__(self, power_t: float = 0.5):
        self.power_t = _real("power_t", power_t)

    def lr(self, epoch: int, base_lr: float, *, samples_per_epoch: int = 0) -> float:
        return base_lr / (epoch * samples_per_epoch + 1) ** self.power_t


class _Factor(Schedule):
    """A callable from the epoch to a factor of the base learning rate (torch's LambdaLR)."""

    def __init__(self, fn: Callable[[int], float]):
        self.fn = fn

    def lr(self, epoch: int, base_lr: float, *, samples_per_epoch: int = 0) -> float:
        f = self.fn(epoch)
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not math.isfinite(float(f)) or f <= 0:
            raise ValueError(f"lr_schedule({epoch}) returned {f!r}; it must return a positive finite factor")
        return base_lr * float(f)


def schedule(value: Any) -> Schedule | None:
    """lr_schedule as fit takes it: None, a Schedule, or a callable epoch -> factor."""
    if value is None or isinstance(value, Schedule):
        return value
    if callable(value):
        return _Factor(value)
    raise TypeError(
        f"lr_schedule must be a schedule from mnist_mlp.optim (StepLR, ExponentialLR, CosineAnnealingLR, "
        f"InvScalingLR) or a callable from the epoch to a factor, got {value!r}"
    )
