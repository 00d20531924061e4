"""IDX files (the MNIST format) and the MNIST loader."""

from __future__ import annotations

import gzip
import io
import math
import os
import struct
import zlib
from typing import Any, BinaryIO, Callable, Literal, NamedTuple, NoReturn, Sequence, Union, overload

import numpy as np

from . import _core
from ._files import atomic_write, check_regular_file, display_name, open_regular

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
# The data as stored: big-endian, by type code.
_FILE_DTYPES = {code: dt for dt, code in _TYPE_CODES.items()}
_GZIP_MAGIC = b"\x1f\x8b"

# The limits of cpp/data/idx.cpp, mirrored by the pure-Python reader below (used for
# mmap=True and for builds without zlib), which reports the same messages.
_MAX_DATA_BYTES = 1 << 48  # a header that asks for more is refused as an overflow
_MAX_DEFLATE_RATIO = 1032  # deflate cannot do better than about 1032:1
_TRAILING_COUNT_LIMIT = 1 << 20  # trailing bytes are counted up to this, then "more than"
_CHUNK = 1 << 16
_DRAIN_LIMIT = 1 << 24  # after a bad header, inflate at most this much looking for the real error

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


def read_idx(source: Source, mmap: bool | None = None) -> np.ndarray:
    """Reads an IDX file (raw or gzip, told apart by content) into a NumPy array
    of the header's dtype (uint8, int8, int16, int32, float32, float64) and shape.

    ``source`` is a path or the file's bytes. A malformed file raises
    `IdxError` (a ValueError) naming the file and the problem.

    ``mmap=True`` memory-maps an uncompressed file instead of reading it: the
    header is checked as for a read (including the file size: no missing and no
    trailing bytes), then the data is returned as a read-only ``np.memmap`` of
    the file's own big-endian dtype (``>i2``, ``>f4``, ...; values are the same,
    and uint8/int8 have no byte order). Nothing is copied until you touch it.
    A gzip file cannot be mapped and raises ValueError saying so; bytes cannot
    be mapped either (TypeError). ``mmap=None`` (the default) and ``False``
    read the whole file into a new native-order array: a map is read-only and
    keeps the file open, so it is never chosen for you."""
    if mmap:
        if isinstance(source, (bytes, bytearray, memoryview)):
            raise TypeError("read_idx(mmap=True) needs a file path, not bytes")
        return _mmap_idx(_check_path(source))
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = memoryview(source).cast("B")
        if not _core.HAVE_ZLIB and bytes(data[:2]) == _GZIP_MAGIC:
            return _read_gzip_python(io.BytesIO(data), len(data), "<bytes>")
        return _numpy_guard(_core.read_idx_bytes, data, "<bytes>")
    path = _check_path(source)
    if not _core.HAVE_ZLIB:
        with open_regular(path, "an IDX file") as f:
            if f.read(2) == _GZIP_MAGIC:
                f.seek(0)
                return _read_gzip_python(f, os.fstat(f.fileno()).st_size, display_name(path))
    return _numpy_guard(_core.read_idx, os.fsencode(path), display_name(path))


def _check_path(source: Any) -> str:
    """The path as a str (bytes decoded as the OS does, so any name works), after
    checking that it is a regular file: a FIFO would block the read forever."""
    path = os.fspath(source)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    check_regular_file(path, "an IDX file")
    return path


def _numpy_guard(fn: Any, *args: Any) -> np.ndarray:
    # The C++ parser accepts up to 255 dimensions, NumPy up to 64 (32 before
    # NumPy 2): its ValueError then carries neither the file nor the reason.
    try:
        return fn(*args)
    except IdxError:
        raise
    except ValueError as e:
        name = args[-1]
        raise IdxError(f"{name}: the header is valid but NumPy cannot make this array ({e})") from e


class IdxHeader(NamedTuple):
    """A parsed IDX header: type code, dimensions, and derived sizes."""

    type_code: int
    dims: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the data as stored (big-endian)."""
        return _FILE_DTYPES[self.type_code]

    @property
    def header_bytes(self) -> int:
        return 4 + 4 * len(self.dims)

    @property
    def data_bytes(self) -> int:
        return math.prod(self.dims) * self.dtype.itemsize


def _dims_str(dims: Sequence[int]) -> str:
    return " x ".join(str(d) for d in dims)


def _parse_header(read: Callable[[int], bytes], name: str, max_bytes: int, compressed: bool) -> IdxHeader:
    """Reads and checks an IDX header the way cpp/data/idx.cpp does, with the same
    messages. ``max_bytes`` is the file size (raw) or the most the gzip stream
    could inflate to."""

    def fail(what: str) -> NoReturn:
        raise IdxError(f"{name}: {what}")

    magic = read(4)
    if len(magic) < 4:
        fail(f"truncated header: {len(magic)} bytes, an IDX file starts with 4 magic bytes")
    if magic[0] != 0 or magic[1] != 0:
        fail(
            f"bad magic: the first two bytes must be 0x00 0x00, got 0x{magic[0]:02X} 0x{magic[1]:02X}"
            " (not an IDX file?)"
        )
    code, ndim = magic[2], magic[3]
    if code not in _FILE_DTYPES:
        fail(f"unknown type code 0x{code:02X} (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)")
    if ndim == 0:
        fail("number of dimensions is 0 (must be at least 1)")
    raw = read(4 * ndim)
    if len(raw) < 4 * ndim:
        fail(f"truncated header: {ndim} dimensions need {4 * ndim} bytes, only {len(raw)} present")
    dims = struct.unpack(f">{ndim}I", raw)
    # cpp/data/idx.cpp multiplies in uint64 and flags a step that would wrap.
    count, overflow = 1, False
    for d in dims:
        if d and count * d > 0xFFFFFFFFFFFFFFFF:
            overflow = True
        count *= d
    header = IdxHeader(code, dims)
    itemsize = header.dtype.itemsize
    if overflow or count > _MAX_DATA_BYTES // itemsize:
        fail(f"dimensions {_dims_str(dims)} overflow: the product of the dims is too large")
    need = count * itemsize
    if not compressed:
        have = max(max_bytes - header.header_bytes, 0)
        if need > have:
            fail(f"truncated data: dimensions {_dims_str(dims)} need {need} bytes, only {have} present")
    elif need > max_bytes:
        fail(
            f"dimensions {_dims_str(dims)} claim {need} bytes, more than this gzip file could inflate to"
            f" ({max_bytes}): refusing the allocation"
        )
    return header


def _trailing_message(trailing: int, data_bytes: int) -> str:
    count = f"more than {_TRAILING_COUNT_LIMIT}" if trailing > _TRAILING_COUNT_LIMIT else str(trailing)
    return f"{count} trailing bytes after the {data_bytes} bytes of data the header declares"


def _mmap_idx(path: str) -> np.ndarray:
    name = display_name(path)
    with open_regular(path, "an IDX file") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(2) == _GZIP_MAGIC:
            raise ValueError(
                f"{name}: cannot memory-map a gzip-compressed file (its bytes are not the array);"
                " decompress it first (gzip -dk FILE) or read it with mmap=False"
            )
        f.seek(0)
        h = _parse_header(f.read, name, size, compressed=False)
    empty = _numpy_probe(h, name)
    trailing = size - h.header_bytes - h.data_bytes
    if trailing:
        raise IdxError(f"{name}: {_trailing_message(trailing, h.data_bytes)}")
    if h.data_bytes == 0:  # nothing to map (mmap refuses empty ranges)
        empty.flags.writeable = False
        return empty
    return np.memmap(path, dtype=h.dtype, mode="r", offset=h.header_bytes, shape=h.dims)


def _numpy_probe(h: IdxHeader, name: str) -> np.ndarray:
    """Fails as the C++ reader's allocation does, at the same point (after the
    header, before the data): NumPy's limits on the number of dimensions and on
    an empty array's shape. Returns an empty array, the result itself when the
    header declares no data."""
    try:
        return np.empty(h.dims if h.data_bytes == 0 else (1,) * len(h.dims), h.dtype)
    except ValueError as e:
        raise IdxError(f"{name}: the header is valid but NumPy cannot make this array ({e})") from e


class _GzipReader:
    """Streams the inflated bytes of one or more concatenated gzip members,
    with the checks and messages of cpp/data/idx.cpp's GzipSource."""

    def __init__(self, f: BinaryIO, size: int, name: str) -> None:
        self._f, self._name = f, name
        self.max_bytes = size * _MAX_DEFLATE_RATIO + 1024
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""
        self._done = False
        self.failed = False  # the stream itself is broken (corrupt, truncated, junk after it)

    def _fail(self, what: str) -> NoReturn:
        self.failed = True
        raise IdxError(f"{self._name}: {what}")

    def read(self, n: int) -> bytes:
        out = bytearray()
        while len(out) < n and not self._done:
            if not self._pending:
                self._pending = self._f.read(_CHUNK)
                if not self._pending:
                    self._fail("truncated gzip stream (the compressed data ends before the gzip trailer)")
            try:
                out += self._z.decompress(self._pending, n - len(out))
            except zlib.error as e:
                self._fail(f"corrupt gzip data: {str(e).split(': ', 1)[-1]}")
            if not self._z.eof:
                self._pending = self._z.unconsumed_tail
                continue
            # Another gzip member may follow (as `cat a.gz b.gz` makes); anything else is garbage.
            self._pending = self._z.unused_data or self._f.read(_CHUNK)
            if not self._pending:
                self._done = True
                break
            if len(self._pending) < 2:
                self._pending += self._f.read(_CHUNK)
                if len(self._pending) < 2:
                    self._fail("trailing bytes after the gzip stream")
            if self._pending[:2] != _GZIP_MAGIC:
                self._fail("trailing bytes after the gzip stream are not another gzip member")
            self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return bytes(out)


def _read_gzip_python(f: BinaryIO, size: int, name: str) -> np.ndarray:
    """The gzip path for builds without zlib: the same checks and bounds as the
    C++ reader, so the inflated size never exceeds what the header declares
    plus the trailing-byte allowance (a decompression bomb stops early)."""
    src = _GzipReader(f, size, name)
    try:
        h = _parse_header(src.read, name, src.max_bytes, compressed=True)
    except IdxError:
        # A damaged stream can inflate to a garbage header before the bad checksum
        # shows; report the corruption, the real cause, when the stream has one.
        # Not when the stream error is what stopped the header (reading on would
        # only replace it with a vaguer one), and bounded: a bomb behind a bad
        # header must not keep us inflating. (cpp/data/idx.cpp drains in both cases.)
        if not src.failed:
            for _ in range(_DRAIN_LIMIT >> 14):
                if len(src.read(1 << 14)) < 1 << 14:
                    break
        raise
    _numpy_probe(h, name)
    body = bytearray()
    while len(body) < h.data_bytes:
        want = min(h.data_bytes - len(body), 1 << 26)
        got = src.read(want)
        body += got
        if len(got) < want:
            raise IdxError(
                f"{name}: truncated data: the header declares {h.data_bytes} bytes, only {len(body)} present"
            )
    trailing = 0
    while True:
        got = len(src.read(4096))
        trailing += got
        if got < 4096 or trailing > _TRAILING_COUNT_LIMIT:
            break
    if trailing:
        raise IdxError(f"{name}: {_trailing_message(trailing, h.data_bytes)}")
    try:
        arr = np.frombuffer(body, h.dtype).reshape(h.dims)
    except ValueError as e:
        raise IdxError(f"{name}: the header is valid but NumPy cannot make this array ({e})") from e
    return arr.astype(h.dtype.newbyteorder("="), copy=False)


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
    with atomic_write(path) as f:
        f.write(payload)


MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


@overload
def load_mnist(
    root: str | os.PathLike | None = ..., *, split: None = ...
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]: ...
@overload
def load_mnist(root: str | os.PathLike | None = ..., *, split: Literal["train", "test"]) -> tuple[np.ndarray, np.ndarray]: ...
def load_mnist(root: str | os.PathLike | None = None, *, split: str | None = None) -> Any:
    """Loads MNIST from the IDX files (raw or .gz) in ``root``.

    Returns ``(train_x, train_y), (test_x, test_y)``: uint8 images (N, 28, 28)
    and uint8 labels (N,). With ``split="train"`` or ``split="test"``, only that
    set, ``(x, y)``, and only its two files need to be there.

    With no ``root``: ``$MNIST_MLP_DATA`` (when set), then ``./data``, then the
    ``data/`` folder of the source checkout the package runs from (if it does),
    then the download cache (`mnist_mlp.datasets.cache_dir("mnist")`, where
    ``datasets.load("mnist")`` and ``--dataset mnist`` put the files).
    Never downloads; see `mnist_mlp.datasets.load` for that and for the other
    MNIST-format sets. Files missing: `mnist_mlp.datasets.DatasetNotFoundError`
    (a FileNotFoundError) naming them, each folder searched and what it lacks."""
    from .datasets import _load_mnist

    got = _load_mnist(root, split)
    if split is None:
        return got.train, got.test
    return got.train if split == "train" else got.test
