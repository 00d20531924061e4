"""IDX files (the MNIST format) and the MNIST loader."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import _core

__all__ = ["read_idx", "write_idx", "load_mnist", "IdxError", "MNIST_FILES"]

IdxError = _core.IdxError  # a ValueError subclass

_TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(">i2"): 0x0B,
    np.dtype(">i4"): 0x0C,
    np.dtype(">f4"): 0x0D,
    np.dtype(">f8"): 0x0E,
}
_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(source: str | os.PathLike | bytes | bytearray | memoryview) -> np.ndarray:
    """Reads an IDX file (raw or gzip, told apart by content) into a NumPy array
    of the header's dtype (uint8, int8, int16, int32, float32, float64) and shape.

    ``source`` is a path or the file's bytes. A malformed file raises
    `IdxError` (a ValueError) naming the file and the problem."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = memoryview(source).cast("B")
        if not _core.HAVE_ZLIB and bytes(data[:2]) == _GZIP_MAGIC:
            data = memoryview(_gunzip(bytes(data), "<bytes>"))
        return _core.read_idx_bytes(data, "<bytes>")
    path = os.fspath(source)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{path}: is a directory, not an IDX file")
    if not _core.HAVE_ZLIB:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == _GZIP_MAGIC:
            with open(path, "rb") as f:
                return _core.read_idx_bytes(_gunzip(f.read(), path), path)
    return _core.read_idx(path)


def _gunzip(data: bytes, name: str) -> bytes:
    # Only for builds without zlib; those have no inflate-time size cap.
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise IdxError(f"{name}: corrupt gzip data ({e})") from e


def write_idx(path: str | os.PathLike, array: Any) -> None:
    """Writes ``array`` as an IDX file, gzip-compressed when the name ends in
    ``.gz``. Supported dtypes: uint8, int8, int16, int32, float32, float64.
    The file is written to a temporary name and renamed when complete."""
    arr = np.asarray(array)
    if arr.ndim < 1 or arr.ndim > 255:
        raise ValueError(f"IDX holds 1 to 255 dimensions, got an array with {arr.ndim}")
    if any(d > 0xFFFFFFFF for d in arr.shape):
        raise ValueError(f"IDX dimensions must fit in 32 bits, got shape {arr.shape}")
    code = _TYPE_CODES.get(arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype)
    if code is None:
        raise TypeError(f"IDX cannot store dtype {arr.dtype}; use uint8, int8, int16, int32, float32 or float64")
    native = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
    payload = _core.encode_idx(native, code)
    path = os.fspath(path)
    if str(path).endswith(".gz"):
        payload = gzip.compress(payload, compresslevel=6, mtime=0)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _find(root: Path, stem: str) -> Path | None:
    # The usual names, and the seed notebook's (train-images.idx3-ubyte).
    alt = stem.replace("-idx", ".idx")
    for name in (stem + ".gz", stem, alt + ".gz", alt):
        p = root / name
        if p.is_file():
            return p
    return None


def _default_roots() -> list[Path]:
    roots = []
    if os.environ.get("MNIST_MLP_DATA"):
        roots.append(Path(os.environ["MNIST_MLP_DATA"]))
    roots.append(Path("data"))
    repo_data = Path(__file__).resolve().parents[2] / "data"  # a source checkout
    if repo_data not in [r.resolve() for r in roots]:
        roots.append(repo_data)
    return roots


def load_mnist(
    root: str | os.PathLike | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads MNIST from the four IDX files (raw or .gz) in ``root``.

    Returns ``(train_x, train_y), (test_x, test_y)``: uint8 images (N, 28, 28)
    and uint8 labels (N,). With no ``root``: ``$MNIST_MLP_DATA``, then ``./data``,
    then the ``data/`` folder of a source checkout."""
    roots = [Path(root)] if root is not None else _default_roots()
    for r in roots:
        found = {k: _find(r, stem) for k, stem in MNIST_FILES.items()}
        if all(found.values()):
            break
    else:
        expected = ", ".join(f"{s}.gz" for s in MNIST_FILES.values())
        where = ", ".join(str(r) for r in roots)
        raise FileNotFoundError(f"MNIST not found: expected {expected} (or uncompressed) in {where}")
    arrays = {k: read_idx(p) for k, p in found.items()}
    for split in ("train", "test"):
        x, y = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        xp, yp = found[f"{split}_images"], found[f"{split}_labels"]
        if x.dtype != np.uint8 or x.ndim != 3:
            raise ValueError(f"{xp}: expected uint8 images (N, rows, cols), got {x.dtype} {x.shape}")
        if y.dtype != np.uint8 or y.ndim != 1:
            raise ValueError(f"{yp}: expected uint8 labels (N,), got {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise ValueError(f"{xp} holds {len(x)} images but {yp} holds {len(y)} labels")
        if len(y) and int(y.max()) > 9:
            raise ValueError(f"{yp}: label {int(y.max())} at index {int(np.argmax(y > 9))} is not a digit 0-9")
    return (arrays["train_images"], arrays["train_labels"]), (arrays["test_images"], arrays["test_labels"])
