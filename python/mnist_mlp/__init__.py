"""mnist_mlp: multilayer perceptrons for MNIST-style data, trained by a C++ core
and checked against a plain NumPy reference (`mnist_mlp.reference`)."""

from __future__ import annotations

import os as _os

# The core's OpenMP threads wait for the next parallel region by spinning, then
# sleep. libgomp's default spin (GOMP_SPINCOUNT 300000, milliseconds) suits an
# idle machine, not a shared one: a spinning thread uses up its time slice, so
# when another process shares its core every region then waits for it to be
# scheduled again. Measured on 2 cores with a busy loop on the second:
# 784-512-512-10 at batch 128 took 2.5-3.3 s per epoch with the default spin,
# 1.7-2.3 s with a spin of 1000 (README, "Busy machines"). So the spin is set to
# 1000 (spins: some microseconds, the gaps between the engine's regions) while
# the core loads libgomp, which reads it then, and the environment is restored.
# Not when the user chose a wait policy, nor when libgomp is already loaded
# (by torch, say: the setting would not be read). libgomp is one per process:
# OpenMP code of other libraries that loads it after us waits the same way.
def _libgomp_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


_SPIN_SET = not any(v in _os.environ for v in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")) and not _libgomp_loaded()
if _SPIN_SET:
    _os.environ["GOMP_SPINCOUNT"] = "1000"
try:
    from . import _core
finally:
    if _SPIN_SET:
        _os.environ.pop("GOMP_SPINCOUNT", None)
from . import ops, optim, reference
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
