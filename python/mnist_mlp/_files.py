"""Writing files so that they appear complete or not at all."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Any, Iterator


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, fsync: bool = False) -> Iterator[IO[Any]]:
    """Yields a temporary file beside ``path``; on success it is renamed onto
    ``path``, on any error (KeyboardInterrupt included) it is removed."""
    target = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part",
                               dir=os.path.dirname(os.path.abspath(target)))
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
