"""Reading a model file (the .npz that `MLP.save` writes) without trusting it.

A hostile file can declare anything: a (40000, 40000) weight in a 6 MB
archive that inflates to 6 GB, a 250-million-entry ``layer_sizes``, a history
nested 100000 lists deep. Every member's ``.npy`` header (dtype, shape) is read
and checked against what the caller expects before any of its data is; sizes,
compression ratios and messages are bounded; pickles are never loaded."""

from __future__ import annotations

import json
import math
import numbers
import zipfile
from typing import IO, Any, Sequence

import numpy as np
import numpy.lib.format as npy_format

from ._files import display_name, open_regular

# mnist_mlp writes uncompressed archives; a compressed member may shrink real
# weights a little, never by more than this (deflate reaches ~1000:1 on zeros).
MAX_RATIO = 100
SMALL = 1 << 20  # members below this many bytes are not held to the ratio
MAX_TEXT = 64 << 20  # characters of a JSON field (a history of ~10^5 epochs)
MAX_MEMBERS = 4096


class ModelFileError(ValueError):
    """A file that is not a usable mnist_mlp model; the message names it."""


class ModelArchive:
    """The members of an .npz, read one at a time after their headers pass."""

    def __init__(self, path: str, not_model: str):
        self.name = display_name(path)
        self._f: IO[bytes] = open_regular(path, "a model file")
        try:
            if self._f.read(4) != b"PK\x03\x04":  # not a zip: never hand it to NumPy's pickle fallback
                raise ModelFileError(not_model)
            self._f.seek(0)
            try:
                self._zip = zipfile.ZipFile(self._f)
            except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
                raise ModelFileError(f"{not_model}: {type(e).__name__}: {e}") from None
            infos = self._zip.infolist()
            if len(infos) > MAX_MEMBERS:
                raise ModelFileError(f"{self.name}: holds {len(infos)} members; a model has far fewer")
            self._info = {i.filename[:-4]: i for i in infos if i.filename.endswith(".npy")}
            self._header_bytes: dict[str, int] = {}
        except BaseException:
            self._f.close()
            raise

    def __enter__(self) -> "ModelArchive":
        return self

    def __exit__(self, *exc: object) -> None:
        self._zip.close()
        self._f.close()

    @property
    def files(self) -> list[str]:
        return list(self._info)

    def _bad(self, field: str, why: str) -> ModelFileError:
        return ModelFileError(f"{self.name}: field '{field}' {why}")

    def header(self, field: str) -> tuple[tuple[int, ...], np.dtype]:
        """The member's shape and dtype, from its .npy header only (whose length
        goes to self._header_bytes[field])."""
        info = self._info.get(field)
        if info is None:
            raise ModelFileError(f"{self.name}: not an mnist_mlp model (missing field '{field}')")
        try:
            with self._zip.open(info) as fp:
                version = npy_format.read_magic(fp)
                if version == (1, 0):
                    shape, _, dtype = npy_format.read_array_header_1_0(fp)
                elif version == (2, 0):
                    shape, _, dtype = npy_format.read_array_header_2_0(fp)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                self._header_bytes[field] = fp.tell()
        except Exception as e:  # zip errors, a bad magic, a malformed header
            raise self._bad(field, f"is corrupt ({type(e).__name__}: {str(e)[:200]})") from None
        if dtype.hasobject:
            raise self._bad(field, "holds Python objects (a pickle); a model file never does")
        return tuple(int(d) for d in shape), dtype

    def array(
        self,
        field: str,
        *,
        shape: Sequence[int] | None = None,
        ndim: int | None = None,
        max_items: int | None = None,
        kinds: str | None = None,
        dtype: Any = None,
    ) -> np.ndarray:
        """Reads a member once its header matches: the exact ``shape``, or
        ``ndim`` with at most ``max_items`` entries; a dtype ``kind`` among
        ``kinds``, or exactly ``dtype``."""
        got_shape, got_dtype = self.header(field)
        if shape is not None and got_shape != tuple(shape):
            raise self._bad(field, f"has shape {got_shape[:8]}, the layer sizes need {tuple(shape)}")
        if ndim is not None and len(got_shape) != ndim:
            raise self._bad(field, f"has {len(got_shape)} dimensions, expected {ndim}")
        count = math.prod(got_shape)
        if max_items is not None and count > max_items:
            raise self._bad(field, f"holds {count} entries, at most {max_items} expected")
        if kinds is not None and got_dtype.kind not in kinds:
            raise self._bad(field, f"has dtype {got_dtype}, which it never has in a model file")
        if dtype is not None and got_dtype != np.dtype(dtype):
            raise self._bad(field, f"is stored as {got_dtype}, expected {np.dtype(dtype)}")
        need = count * got_dtype.itemsize
        info = self._info[field]
        held = info.file_size - self._header_bytes[field]
        if held < need:
            raise self._bad(field, f"is truncated: its data needs {need} bytes, the archive holds {held}")
        if info.compress_type != zipfile.ZIP_STORED and need > SMALL and need > MAX_RATIO * max(info.compress_size, 1):
            raise self._bad(
                field,
                f"declares {need} bytes from {info.compress_size} compressed (over {MAX_RATIO}:1): refused "
                "as a decompression bomb (mnist_mlp writes its models uncompressed)",
            )
        try:
            with self._zip.open(info) as fp:
                return npy_format.read_array(fp, allow_pickle=False)
        except Exception as e:
            raise self._bad(field, f"is corrupt ({type(e).__name__}: {str(e)[:200]})") from None

    def text(self, field: str, *, max_chars: int = 256) -> str:
        """A 0-d string member, at most max_chars characters."""
        _, dt = self.header(field)
        if dt.kind != "U":
            raise self._bad(field, f"has dtype {dt}, expected a string")
        if dt.itemsize // 4 > max_chars:
            raise self._bad(field, f"is {dt.itemsize // 4} characters long, at most {max_chars} expected")
        return str(self.array(field, shape=()))

    def json(self, field: str, *, max_chars: int = MAX_TEXT) -> Any:
        text = self.text(field, max_chars=max_chars)
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise self._bad(field, f"is not valid JSON ({e})") from None
        except RecursionError:
            raise self._bad(field, "nests too deeply to be what mnist_mlp writes") from None


_SCALARS = (str, bool, numbers.Real, type(None))


def check_history(history: Any, name: str) -> list[dict]:
    """A history as fit writes it: a list of dicts from names to scalars."""
    if not isinstance(history, list):
        raise ModelFileError(f"{name}: field 'history' must be a list of per-epoch records, got a {type(history).__name__}")
    for i, rec in enumerate(history):
        if not isinstance(rec, dict):
            raise ModelFileError(f"{name}: field 'history' record {i} must be a dict, got a {type(rec).__name__}")
        for k, v in rec.items():
            if not isinstance(v, _SCALARS):
                raise ModelFileError(
                    f"{name}: field 'history' record {i} key {str(k)[:40]!r} holds a {type(v).__name__}, expected a number or a string"
                )
    return history
