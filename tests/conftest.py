from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import mnist_mlp as mm
from mnist_mlp import _core

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


@pytest.fixture(scope="session")
def mnist():
    """Real MNIST from the repo's data/ (uint8), or skip."""
    try:
        return mm.load_mnist(DATA)
    except FileNotFoundError as e:
        pytest.skip(f"MNIST not available: {e}")


def supported_isas() -> list[str]:
    out = []
    for isa in ("generic", "avx2", "avx512"):
        try:
            _core.set_isa(isa)
            out.append(isa)
        except ValueError:
            pass
    _core.set_isa("")
    return out


@pytest.fixture(params=supported_isas())
def isa(request):
    """Runs a test once per kernel set this CPU supports."""
    _core.set_isa(request.param)
    yield request.param
    _core.set_isa("")


def rel_max_diff(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: the issue's measure for weight equivalence."""
    return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / max(np.max(np.abs(b)), 1e-300))
