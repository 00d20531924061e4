"""Writes the seed corpus of tests/fuzz/fuzz_idx.py: small valid IDX files of
every type, raw and gzip (one and two members), to tests/fuzz/corpus/.

    python tests/fuzz/make_corpus.py

Deterministic (fixed data, gzip mtime 0), so rerunning it changes nothing.
Needs only the standard library."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

OUT = Path(__file__).resolve().parent / "corpus"

# type code, struct format of one big-endian item
TYPES = {0x08: "B", 0x09: "b", 0x0B: "h", 0x0C: "i", 0x0D: "f", 0x0E: "d"}
SHAPES = [(1,), (3,), (2, 3), (2, 2, 2), (0, 4), (1, 1, 1, 2)]


def idx_bytes(code: int, shape: tuple[int, ...]) -> bytes:
    count = 1
    for d in shape:
        count *= d
    fmt = TYPES[code]
    values = [(i * 37 + 11) % 100 - (50 if fmt in "bhifd" else 0) for i in range(count)]
    head = bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", d) for d in shape)
    return head + struct.pack(f">{count}{fmt}", *values)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    files: dict[str, bytes] = {}
    for code in TYPES:
        for shape in SHAPES:
            raw = idx_bytes(code, shape)
            tag = f"t{code:02x}-" + "x".join(map(str, shape))
            files[f"{tag}.idx"] = raw
            if code in (0x08, 0x0D):
                files[f"{tag}.idx.gz"] = gzip.compress(raw, compresslevel=9, mtime=0)
    # An MNIST-like pair in miniature, and a file in two gzip members.
    files["images-2x28x28.idx.gz"] = gzip.compress(idx_bytes(0x08, (2, 28, 28)), mtime=0)
    files["labels-5.idx"] = idx_bytes(0x08, (5,))
    two = idx_bytes(0x0C, (4,))
    files["two-members.idx.gz"] = gzip.compress(two[:9], mtime=0) + gzip.compress(two[9:], mtime=0)
    for old in OUT.iterdir():
        if old.name not in files:
            old.unlink()
    for name, data in sorted(files.items()):
        (OUT / name).write_bytes(data)
    print(f"{len(files)} files, {sum(map(len, files.values()))} bytes in {OUT}")


if __name__ == "__main__":
    main()
