"""Type stubs for the native core (cpp/bindings/). Private: use the
`mnist_mlp` package, which validates arguments before calling these."""

from typing import Any, Callable, Generic, TypedDict, TypeVar, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

__version__: str
HAVE_ZLIB: bool
HAVE_OPENMP: bool
FAST_MAX_BATCH: int

class IdxError(ValueError):
    """A malformed IDX file or buffer (message names the file and the problem)."""

# -- IDX -----------------------------------------------------------------------------
def read_idx(path: str) -> np.ndarray:
    """Reads an IDX file (raw or gzip) into an array of the header's dtype and shape."""

def read_idx_bytes(data: bytes | bytearray | memoryview, name: str = "<bytes>") -> np.ndarray:
    """Reads IDX (raw or gzip) from a contiguous bytes-like object; ``name`` appears in errors."""

def encode_idx(array: np.ndarray, type_code: int) -> bytes:
    """The IDX encoding (header + big-endian data) of a C-contiguous array of the
    dtype that ``type_code`` (0x08, 0x09, 0x0B-0x0E) names."""

# -- machine -------------------------------------------------------------------------
def max_threads() -> int:
    """Threads used when num_threads is None (OpenMP's maximum; 1 without OpenMP)."""

def in_forked_child() -> bool:
    """True in a child made by fork() (which then runs single-threaded)."""

def training_aid(
    layer_sizes: list[int],
    batch_size: int,
    n: int,
    uint8: bool,
    features: int,
    shuffled: bool,
    sparse: bool,
    activation: str = "relu",
    plain: bool = True,
) -> str:
    """What fit prepares once for the engine: "plan" (a BatchPlan), "index" (a NonzeroIndex) or "none"."""

def cache_sizes() -> tuple[int, int, int]:
    """The L1 data, L2 and L3 cache sizes in bytes the GEMM's block sizes are derived from."""

def best_isa() -> str:
    """The widest kernel set this CPU supports: "avx512", "avx2" or "generic"."""

def current_isa() -> str:
    """The kernel set in use."""

def set_isa(isa: str) -> None:
    """Selects a kernel set ("generic", "avx2", "avx512"; "" for the best). ValueError
    if unknown or unsupported by this CPU."""

# -- ops -----------------------------------------------------------------------------
@overload
def gemm(  # type: ignore[overload-overlap]
    a: NDArray[np.float32], b: NDArray[np.float32], trans_a: bool, trans_b: bool,
    num_threads: int | None = None, algo: str = "auto",
) -> NDArray[np.float32]: ...
@overload
def gemm(
    a: NDArray[np.float64], b: NDArray[np.float64], trans_a: bool, trans_b: bool,
    num_threads: int | None = None, algo: str = "auto",
) -> NDArray[np.float64]: ...
@overload
def gemm_accumulate(  # type: ignore[overload-overlap]
    c: NDArray[np.float32], a: NDArray[np.float32], b: NDArray[np.float32], trans_a: bool, trans_b: bool,
    alpha: float, num_threads: int | None = None,
) -> NDArray[np.float32]: ...
@overload
def gemm_accumulate(
    c: NDArray[np.float64], a: NDArray[np.float64], b: NDArray[np.float64], trans_a: bool, trans_b: bool,
    alpha: float, num_threads: int | None = None,
) -> NDArray[np.float64]: ...
def matmul(
    a: Any, b: Any, trans_a: bool = False, trans_b: bool = False, *, num_threads: int | None = None
) -> np.ndarray: ...
@overload
def relu(x: NDArray[np.float32]) -> NDArray[np.float32]: ...  # type: ignore[overload-overlap]
@overload
def relu(x: NDArray[np.float64]) -> NDArray[np.float64]: ...
@overload
def softmax_xent(  # type: ignore[overload-overlap]
    z: NDArray[np.float32], y: None = None
) -> tuple[NDArray[np.float32], None, None]: ...
@overload
def softmax_xent(  # type: ignore[overload-overlap]
    z: NDArray[np.float32], y: ArrayLike
) -> tuple[NDArray[np.float32], NDArray[np.float32], float]: ...
@overload
def softmax_xent(
    z: NDArray[np.float64], y: None = None
) -> tuple[NDArray[np.float64], None, None]: ...
@overload
def softmax_xent(
    z: NDArray[np.float64], y: ArrayLike
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]: ...

# -- training ------------------------------------------------------------------------
class NonzeroIndex:
    """The nonzero pixels of a 2-D uint8 array, listed once per fit (keeps ``x`` alive)."""

    def __init__(self, x: NDArray[np.uint8], num_threads: int | None = None) -> None: ...
    @property
    def nbytes(self) -> int: ...
    @property
    def nnz(self) -> int: ...
    def csr(self) -> tuple[NDArray[np.int64], NDArray[np.uint16], NDArray[np.uint8]]: ...

class BatchPlan:
    """Every batch's forward groups and update lists, for batches taken in order (keeps ``x`` alive)."""

    def __init__(self, x: NDArray[np.uint8], batch_size: int, num_threads: int | None = None) -> None: ...
    @property
    def batch_size(self) -> int: ...
    @property
    def nbytes(self) -> int: ...

class _TrainEpochResult(TypedDict):
    batches: int
    samples: int
    loss_sum: float
    first_nonfinite_batch: int
    correct: int  # samples predicted right, each before its step's update
    penalty_sum: float  # scikit-learn's L2 term summed over the steps (decay_over_rows), else 0
    kernel: str  # the engine's variant: "panels-plan", "panels-index", "panels", "layers-sparse" or "layers-dense"

_F = TypeVar("_F", np.float32, np.float64)

class _Model(Generic[_F]):
    def __init__(self, sizes: list[int]) -> None: ...
    @property
    def sizes(self) -> list[int]: ...
    @property
    def num_params(self) -> int: ...
    def weights(self) -> list[NDArray[_F]]:
        """Views (fan_in, fan_out) of the weight matrices; they keep the model alive."""
    def biases(self) -> list[NDArray[_F]]:
        """Views (fan_out,) of the bias vectors."""
    @property
    def activation(self) -> str:
        """"relu", "tanh", "logistic" or "identity": every hidden layer's."""
    @activation.setter
    def activation(self, value: str) -> None: ...
    @property
    def opt_step(self) -> int:
        """Steps the optimizer's state has taken."""
    @opt_step.setter
    def opt_step(self, value: int) -> None: ...
    def state(self, slot: int) -> tuple[list[NDArray[_F]], list[NDArray[_F]]]:
        """Views of the optimizer's state slot (0..2), shaped as (weights, biases)."""
    def zero_state(self) -> None:
        """Zeroes every state slot."""
    def train_epoch(
        self,
        x: np.ndarray,
        y: NDArray[np.int32],
        order: NDArray[np.int64] | None,
        batch_size: int,
        lr: float,
        sparse: bool = True,
        stop_on_nonfinite: bool = True,
        num_threads: int | None = None,
        index: NonzeroIndex | None = None,
        progress: Callable[[int, int], object] | None = None,
        plan: BatchPlan | None = None,
        optimizer: dict[str, Any] | None = None,
        dropout: list[float] | None = None,
        dropout_seed: int = 0,
        epoch: int = 0,
        sklearn_loss: bool = False,
    ) -> _TrainEpochResult:
        """One epoch over x (uint8/float32/float64, 2-D) in ``order`` (None: in order), with
        the update rule ``optimizer`` (optim.py's _config; None: plain SGD at lr) and
        dropout rates per hidden layer keyed by (dropout_seed, epoch, sample, unit)."""
    def evaluate(
        self,
        x: np.ndarray,
        y: NDArray[np.int32] | None = None,
        probs: bool = False,
        pred: bool = False,
        num_threads: int | None = None,
        plan: BatchPlan | None = None,
    ) -> tuple[float, int, NDArray[_F] | None, NDArray[np.int32] | None]:
        """(summed loss, correct count, probabilities if ``probs``, predicted ids if ``pred``)."""

class ModelF32(_Model[np.float32]): ...
class ModelF64(_Model[np.float64]): ...
