"""mnist_mlp: multilayer perceptrons for MNIST-style data, trained by a C++ core
and checked against a plain NumPy reference (`mnist_mlp.reference`)."""

from __future__ import annotations

from . import _core, ops, optim, reference
from .callbacks import EarlyStopping
from .idx import IdxError, load_mnist, read_idx, write_idx
from . import datasets
from .model import MLP
from ._validate import UnscaledInputWarning
from .compat import NN
from .estimator import MLPClassifier
from .sweep import SweepResult, local_cluster, sweep  # dask.distributed is imported only when a sweep runs
from . import images, plots  # matplotlib and Pillow are imported only when used

__version__: str = _core.__version__

__all__ = [
    "EarlyStopping",
    "MLP",
    "MLPClassifier",
    "NN",
    "IdxError",
    "__version__",
    "datasets",
    "images",
    "load_mnist",
    "local_cluster",
    "ops",
    "optim",
    "plots",
    "read_idx",
    "reference",
    "sweep",
    "SweepResult",
    "UnscaledInputWarning",
    "write_idx",
]
