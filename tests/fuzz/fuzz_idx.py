#!/usr/bin/env python3
"""Fuzzes the IDX reader with atheris (coverage-guided, libFuzzer).

    pip install atheris
    python tests/fuzz/fuzz_idx.py WORK_CORPUS tests/fuzz/corpus -max_total_time=60
    python tests/fuzz/fuzz_idx.py --replay WORK_CORPUS tests/fuzz/crashes   # no atheris needed

(libFuzzer adds the inputs it finds to the first folder, so give it a scratch
folder, not the committed corpus.) tests/fuzz/corpus/ holds the seeds
(tests/fuzz/make_corpus.py writes them), tests/fuzz/found/ a minimized set of
inputs earlier runs found (``-merge=1``), tests/fuzz/crashes/ the findings;
tests/test_fuzz_corpus.py replays all three in the normal test suite.

Each input is read four ways:

- ``mm.read_idx(bytes)`` and ``mm.read_idx(path)`` of the same bytes in a
  temporary file: the C++ reader, from memory and from a file;
- raw inputs: ``mm.read_idx(path, mmap=True)``, whose header check is the
  pure-Python mirror of the C++ one;
- gzip inputs: the pure-Python gzip reader (used by builds without zlib).

Every way must either return an array or raise IdxError (a ValueError), and
all of them must agree:
the same array, or errors with the same message. Any other exception, any
disagreement, or a crash of the process is a finding: libFuzzer writes the
input to a crash-* file; add it to tests/fuzz/crashes/ so that
tests/test_fuzz_corpus.py replays it from then on.

Coverage guidance sees the Python layer (the mirrors are instrumented); the C++
extension is exercised but not instrumented. Under a preloaded ASan runtime
atheris loses its coverage feedback, so .ci/run fuzzes the normal build and
then replays every input the fuzzer kept against the ASan/UBSan build.
"""

from __future__ import annotations

import gzip
import io
import os
import sys
import tempfile
from typing import Any, Callable

ALLOWED = (ValueError, FileNotFoundError)  # IdxError is a ValueError

_PATH: str | None = None  # the temporary file each input is written to (made on first use)


def _path() -> str:
    global _PATH
    if _PATH is None:
        _PATH = os.path.join(tempfile.mkdtemp(prefix="fuzz-idx-"), "input.idx")
    return _PATH


def _outcome(fn: Callable[[], Any], name: str) -> tuple:
    import numpy as np

    try:
        arr = fn()
    except ALLOWED as e:
        msg = str(e).replace(name, "<name>")
        if "NumPy cannot make this array" in msg:
            # A valid header NumPy cannot hold (too many dimensions, an empty shape too
            # large to stride): the C++ binding, NumPy's constructors and the Python
            # readers each word it their own way.
            msg = "<name>: NumPy cannot make this array"
        return ("error", type(e).__name__, msg)
    # Compare values, not byte order: mmap returns the file's big-endian dtype.
    native = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("="))
    return ("ok", native.dtype.str, native.shape, native.tobytes())


def check(data: bytes) -> None:
    """Reads data every way and raises AssertionError if the ways disagree;
    exceptions outside ALLOWED propagate. A raw input is also tried gzip'd (a
    valid stream around the mutated IDX bytes), which mutating compressed
    bytes rarely produces."""
    _check(data)
    if data[:2] != b"\x1f\x8b":
        _check(gzip.compress(data, compresslevel=1, mtime=0))


def _check(data: bytes) -> None:
    import mnist_mlp as mm
    from mnist_mlp import idx

    path = _path()
    with open(path, "wb") as f:
        f.write(data)
    from_bytes = _outcome(lambda: mm.read_idx(data), "<bytes>")
    from_file = _outcome(lambda: mm.read_idx(path), path)
    assert from_bytes == from_file, ("bytes vs file", from_bytes[:3], from_file[:3])
    if data[:2] == b"\x1f\x8b":
        python = _outcome(lambda: idx._read_gzip_python(io.BytesIO(data), len(data), "<bytes>"), "<bytes>")
        assert python == from_bytes, ("python gzip vs C++", python[:3], from_bytes[:3])
    else:
        mapped = _outcome(lambda: mm.read_idx(path, mmap=True), path)
        assert mapped == from_file, ("mmap vs C++", mapped[:3], from_file[:3])


def replay(paths: list[str]) -> int:
    """Runs check() on every file in the given files and folders, without
    atheris (.ci/run replays what the fuzzer kept against the sanitized core)."""
    from pathlib import Path

    global _PATH
    files = sorted(f for p in map(Path, paths) for f in (p.iterdir() if p.is_dir() else [p]) if f.is_file())
    with tempfile.TemporaryDirectory(prefix="fuzz-idx-") as tmp:
        _PATH = os.path.join(tmp, "input.idx")
        for f in files:
            try:
                check(f.read_bytes())
            except AssertionError as e:
                print(f"{f}: {e}", file=sys.stderr)
                return 1
    print(f"replayed {len(files)} inputs: no finding")
    return 0


def main(argv: list[str]) -> None:
    if len(argv) > 1 and argv[1] == "--replay":
        sys.exit(replay(argv[2:]))
    import atheris
    import numpy  # noqa: F401  (imported first: only mnist_mlp is instrumented)

    with atheris.instrument_imports():
        import mnist_mlp  # noqa: F401
        import mnist_mlp.idx  # noqa: F401

    atheris.Setup(argv, check)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
