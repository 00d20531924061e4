"""PNG checks shared by the figure tests: signature and IHDR size."""

from __future__ import annotations

import struct
from pathlib import Path

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the IHDR chunk; AssertionError if not a PNG."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path}: not a PNG (signature {data[:8]!r})"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13, f"{path}: first chunk is {kind!r}, not IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert data[-8:-4] == b"IEND", f"{path}: no IEND chunk at the end (truncated?)"
    return width, height


def assert_png(path: str | Path, min_size: tuple[int, int] = (200, 150), max_size: tuple[int, int] = (4000, 4000)) -> None:
    w, h = png_size(path)
    assert min_size[0] <= w <= max_size[0] and min_size[1] <= h <= max_size[1], f"{path}: {w}x{h}"
