"""IDX reading and writing: round trips of every type, raw against gzip, and
every malformed case raising IdxError (a ValueError) that names the file."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest

import mnist_mlp as mm

TYPES = [
    (np.uint8, 0x08),
    (np.int8, 0x09),
    (np.int16, 0x0B),
    (np.int32, 0x0C),
    (np.float32, 0x0D),
    (np.float64, 0x0E),
]


def _sample(dtype, shape, rng):
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)
    return rng.standard_normal(shape).astype(dtype)


def _header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims)


@pytest.mark.parametrize("dtype,code", TYPES)
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (2, 1, 3, 2)])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_type(tmp_path, dtype, code, shape, suffix):
    arr = _sample(dtype, shape, np.random.default_rng(0))
    path = tmp_path / f"a.idx{suffix}"
    mm.write_idx(path, arr)
    raw = path.read_bytes()
    if suffix:
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)
    assert raw[:4] == bytes([0, 0, code, len(shape)])
    # The payload is big-endian, as the format says.
    assert raw[4 + 4 * len(shape) :] == arr.astype(np.dtype(dtype).newbyteorder(">")).tobytes()
    back = mm.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == shape
    np.testing.assert_array_equal(back, arr)  # bitwise round trip
    np.testing.assert_array_equal(mm.read_idx(raw), arr)  # from bytes


def test_gzip_is_detected_by_content_not_name(tmp_path):
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    raw = _header(0x0B, arr.shape) + arr.astype(">i2").tobytes()
    (tmp_path / "compressed.idx").write_bytes(gzip.compress(raw))
    (tmp_path / "plain.gz").write_bytes(raw)
    np.testing.assert_array_equal(mm.read_idx(tmp_path / "compressed.idx"), arr)
    np.testing.assert_array_equal(mm.read_idx(tmp_path / "plain.gz"), arr)


def test_concatenated_gzip_members(tmp_path):
    raw = _header(0x08, [6]) + bytes(range(6))
    (tmp_path / "two.gz").write_bytes(gzip.compress(raw[:7]) + gzip.compress(raw[7:]))
    np.testing.assert_array_equal(mm.read_idx(tmp_path / "two.gz"), np.arange(6, dtype=np.uint8))


def test_empty_dimension(tmp_path):
    arr = mm.read_idx(_header(0x0D, [0, 28]))
    assert arr.shape == (0, 28) and arr.dtype == np.float32


def test_writer_rejects_what_idx_cannot_hold(tmp_path):
    with pytest.raises(TypeError, match="int64"):
        mm.write_idx(tmp_path / "x", np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="1 to 255"):
        mm.write_idx(tmp_path / "x", np.float32(1.0))
    assert list(tmp_path.iterdir()) == []  # nothing half-written


GOOD = _header(0x08, [2, 3]) + bytes(6)

MALFORMED = [
    ("empty", b"", "truncated header"),
    ("short magic", b"\x00\x00\x08", "truncated header"),
    ("wrong magic", b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic"),
    ("text file", b"hello world, not idx", "bad magic"),
    ("unknown type", b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown type code 0x07"),
    ("zero dims", b"\x00\x00\x08\x00", "number of dimensions is 0"),
    ("truncated dims", b"\x00\x00\x08\x03" + struct.pack(">I", 2), "truncated header"),
    ("truncated body", _header(0x08, [2, 3]) + bytes(5), "truncated data"),
    ("truncated f64 body", _header(0x0E, [4]) + bytes(31), "truncated data"),
    ("trailing bytes", GOOD + b"\x00\x01", "2 trailing bytes"),
    ("overflowing dims", _header(0x0E, [0xFFFFFFFF] * 4), "overflow"),
    ("allocation the file cannot back", _header(0x08, [60000, 28, 28]) + bytes(100), "need 47040000 bytes"),
]


@pytest.mark.parametrize("name,data,match", MALFORMED, ids=[m[0] for m in MALFORMED])
@pytest.mark.parametrize("compress", [False, True])
def test_malformed_files_raise_named_errors(tmp_path, name, data, match, compress):
    path = tmp_path / "bad.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    if compress and match.startswith("need"):
        # The gzip's size bounds what it can inflate to, so the header alone is refused.
        match = "more than this gzip file could inflate to"
    with pytest.raises(mm.IdxError, match=match) as info:
        mm.read_idx(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_corrupt_gzip(tmp_path):
    blob = bytearray(gzip.compress(GOOD * 50))
    blob[12:20] = b"\xff" * 8
    path = tmp_path / "corrupt.gz"
    path.write_bytes(bytes(blob))
    with pytest.raises(mm.IdxError, match="corrupt gzip|truncated|trailing") as info:
        mm.read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip(tmp_path):
    blob = gzip.compress(_header(0x08, [1000]) + bytes(range(256)) * 4)[:-30]
    path = tmp_path / "cut.gz"
    path.write_bytes(blob)
    with pytest.raises(mm.IdxError, match="truncated gzip stream"):
        mm.read_idx(path)


def test_garbage_after_gzip_stream(tmp_path):
    path = tmp_path / "junk.gz"
    path.write_bytes(gzip.compress(GOOD) + b"JUNK")
    with pytest.raises(mm.IdxError, match="trailing bytes after the gzip stream"):
        mm.read_idx(path)


def test_gzip_bomb_header_is_refused_before_allocating(tmp_path):
    # A 40-byte gzip whose header claims 4 TB: refused from the header alone.
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(_header(0x0E, [1 << 20, 1 << 19])))
    with pytest.raises(mm.IdxError, match="more than this gzip file could inflate to"):
        mm.read_idx(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.idx"):
        mm.read_idx(tmp_path / "nope.idx")
    with pytest.raises(IsADirectoryError):
        mm.read_idx(tmp_path)


def test_mnist_files_match_published_hashes(mnist):
    # data/README.md lists the SHA-256 of each file's uncompressed content.
    from conftest import DATA

    expected = {}
    for line in (DATA / "README.md").read_text().splitlines():
        parts = line.strip("| ").split()
        if parts and len(parts[0]) == 64 and all(c in "0123456789abcdef" for c in parts[0]):
            expected[parts[-1].strip("`|")] = parts[0]
    assert len(expected) == 4
    for name, digest in expected.items():
        assert hashlib.sha256(gzip.decompress((DATA / f"{name}.gz").read_bytes())).hexdigest() == digest


def test_load_mnist_shapes(mnist):
    (x, y), (xt, yt) = mnist
    assert x.shape == (60000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (60000,) and y.dtype == np.uint8
    assert xt.shape == (10000, 28, 28) and yt.shape == (10000,)
    assert y.max() == 9 and yt.min() == 0
    assert int(y[0]) == 5 and int(yt[0]) == 7  # the seed notebook shows test_labels[0] == 7


def test_load_mnist_reports_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz"):
        mm.load_mnist(tmp_path)


def test_load_mnist_checks_counts(tmp_path):
    mm.write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    mm.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(2, np.uint8))
    mm.write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((1, 28, 28), np.uint8))
    mm.write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match="3 images but .* 2 labels"):
        mm.load_mnist(tmp_path)
    mm.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.array([0, 1, 12], np.uint8))
    with pytest.raises(ValueError, match="label 12"):
        mm.load_mnist(tmp_path)


# --- mmap=True: the pure-Python header check, then a zero-copy np.memmap ------------------


@pytest.mark.parametrize("dtype,code", TYPES)
def test_mmap_round_trip_every_type(tmp_path, dtype, code):
    arr = _sample(dtype, (3, 4, 5), np.random.default_rng(1))
    path = tmp_path / "a.idx"
    mm.write_idx(path, arr)
    mapped = mm.read_idx(path, mmap=True)
    assert isinstance(mapped, np.memmap) and mapped.shape == arr.shape
    assert mapped.dtype == np.dtype(dtype).newbyteorder(">") or mapped.itemsize == 1
    assert not mapped.flags.writeable
    np.testing.assert_array_equal(mapped, arr)
    assert mm.read_idx(path, mmap=None).flags.writeable  # the default reads
    assert not isinstance(mm.read_idx(path, mmap=False), np.memmap)
    del mapped


def test_mmap_real_mnist_labels_after_decompressing(tmp_path, mnist):
    from conftest import DATA

    raw = tmp_path / "t10k-labels-idx1-ubyte"
    raw.write_bytes(gzip.decompress((DATA / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    np.testing.assert_array_equal(mm.read_idx(raw, mmap=True), mnist[1][1])


def test_mmap_empty_array(tmp_path):
    path = tmp_path / "e.idx"
    path.write_bytes(_header(0x0D, [0, 28]))
    arr = mm.read_idx(path, mmap=True)
    assert arr.shape == (0, 28) and arr.dtype == np.dtype(">f4")


def test_mmap_refuses_gzip_and_bytes(tmp_path):
    path = tmp_path / "a.idx.gz"
    mm.write_idx(path, np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="cannot memory-map a gzip-compressed file") as info:
        mm.read_idx(path, mmap=True)
    assert str(path) in str(info.value) and not isinstance(info.value, mm.IdxError)
    with pytest.raises(TypeError, match="needs a file path"):
        mm.read_idx(GOOD, mmap=True)
    with pytest.raises(FileNotFoundError):
        mm.read_idx(tmp_path / "nope", mmap=True)


@pytest.mark.parametrize("name,data,match", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_mmap_checks_like_the_reader(tmp_path, name, data, match):
    # The Python header check mirrors cpp/data/idx.cpp: same cases, same messages.
    path = tmp_path / "bad.idx"
    path.write_bytes(data)
    with pytest.raises(mm.IdxError) as cpp:
        mm.read_idx(path)
    with pytest.raises(mm.IdxError, match=match) as py:
        mm.read_idx(path, mmap=True)
    assert str(py.value) == str(cpp.value)


def test_mmap_trailing_bytes_counted_like_the_reader(tmp_path):
    for extra in (1, 1 << 20, (1 << 20) + 1):
        path = tmp_path / f"t{extra}.idx"
        path.write_bytes(GOOD + bytes(extra))
        with pytest.raises(mm.IdxError) as cpp:
            mm.read_idx(path)
        with pytest.raises(mm.IdxError) as py:
            mm.read_idx(path, mmap=True)
        assert str(py.value) == str(cpp.value)
    assert "more than 1048576 trailing bytes" in str(py.value)


# --- bounds the C++ reader had no test for --------------------------------------------------


# GOOD, then 256 gzip members of 1 MiB of zeros each (about 1 KB apiece).
ZERO_BOMB = gzip.compress(GOOD) + gzip.compress(bytes(1 << 20), compresslevel=9) * 256


def test_trailing_zero_bomb_stops_early(tmp_path):
    # 256 MiB of zeros after the data, 260 KB compressed: the reader stops counting
    # after 1 MiB instead of inflating it all.
    import time

    path = tmp_path / "bomb.gz"
    path.write_bytes(ZERO_BOMB)
    t0 = time.perf_counter()
    with pytest.raises(mm.IdxError, match="more than 1048576 trailing bytes"):
        mm.read_idx(path)
    assert time.perf_counter() - t0 < 0.5


def test_more_dimensions_than_numpy_allows(tmp_path):
    # IDX allows 255 dimensions, NumPy 64: still an IdxError naming the file.
    path = tmp_path / "deep.idx"
    path.write_bytes(_header(0x08, [1] * 65) + b"\x07")
    for mmap in (False, True):
        with pytest.raises(mm.IdxError, match="NumPy cannot make this array") as info:
            mm.read_idx(path, mmap=mmap)
        assert str(path) in str(info.value)


# --- the pure-Python gzip reader (builds without zlib) matches the C++ one ----------------

GZIP_CASES = [(n, gzip.compress(d)) for n, d, _ in MALFORMED] + [
    ("good", gzip.compress(GOOD)),
    ("two members", gzip.compress(GOOD[:7]) + gzip.compress(GOOD[7:])),
    ("empty member", gzip.compress(b"") + gzip.compress(GOOD)),
    ("junk after", gzip.compress(GOOD) + b"JUNK"),
    ("one byte after", gzip.compress(GOOD) + b"\x1f"),
    ("cut", gzip.compress(_header(0x08, [1000]) + bytes(range(256)) * 4)[:-30]),
    ("cut in header", gzip.compress(GOOD)[:5]),
    ("bad crc", gzip.compress(GOOD)[:-8] + b"\0\0\0\0" + gzip.compress(GOOD)[-4:]),
    ("corrupt", bytes(bytearray(gzip.compress(GOOD * 50))[:12]) + b"\xff" * 8 + gzip.compress(GOOD * 50)[20:]),
    ("bomb header", gzip.compress(_header(0x0E, [1 << 20, 1 << 19]))),
    ("f64", gzip.compress(_header(0x0E, [3]) + np.arange(3, dtype=">f8").tobytes())),
]


@pytest.mark.parametrize("name,blob", GZIP_CASES, ids=[c[0] for c in GZIP_CASES])
def test_python_gzip_reader_matches_cpp(tmp_path, monkeypatch, name, blob):
    path = tmp_path / "x.gz"
    path.write_bytes(blob)
    outcomes = []
    for have_zlib in (True, False):
        monkeypatch.setattr(mm._core, "HAVE_ZLIB", have_zlib)
        for source in (path, blob):
            try:
                arr = mm.read_idx(source)
                outcomes.append(("ok", arr.dtype.str, arr.shape, arr.tobytes()))
            except mm.IdxError as e:
                outcomes.append(("error", str(e)))
    assert outcomes[2:] == outcomes[:2], name


def test_python_gzip_reader_bounds_a_bomb(tmp_path, monkeypatch):
    monkeypatch.setattr(mm._core, "HAVE_ZLIB", False)
    path = tmp_path / "bomb.gz"
    path.write_bytes(ZERO_BOMB)
    with pytest.raises(mm.IdxError, match="more than 1048576 trailing bytes"):
        mm.read_idx(path)
    path.write_bytes(gzip.compress(_header(0x0E, [1 << 20, 1 << 19])))
    with pytest.raises(mm.IdxError, match="more than this gzip file could inflate to"):
        mm.read_idx(path)


def test_corruption_inside_the_header_is_reported_as_corruption():
    # A zlib error raised while reading the header is the cause (found by tests/fuzz/fuzz_idx.py).
    blob = (Path(__file__).parent / "fuzz" / "crashes" / "gzip-length-check-in-header.gz").read_bytes()
    with pytest.raises(mm.IdxError, match="corrupt gzip data: incorrect length check"):
        mm.read_idx(blob)


def test_empty_array_with_huge_other_dimensions(tmp_path):
    # 4e9 x 4e9 x 0: no data and no uint64 overflow, but NumPy cannot stride the
    # shape; cpp/bindings/register_idx.cpp refuses it before building the array (it was a
    # signed overflow under UBSan, found by fuzzing).
    raw = _header(0x08, [0xFFFFFFF0, 0xFFFFFFF0, 0])
    for name, blob in (("e.idx", raw), ("e.idx.gz", gzip.compress(raw))):
        path = tmp_path / name
        path.write_bytes(blob)
        for source in (path, blob):
            with pytest.raises(mm.IdxError, match="NumPy cannot make this array"):
                mm.read_idx(source)
    with pytest.raises(mm.IdxError, match="NumPy cannot make this array"):
        mm.read_idx(tmp_path / "e.idx", mmap=True)
    assert mm.read_idx(_header(0x08, [0xFFFFFFF0, 0])).shape == (0xFFFFFFF0, 0)  # representable: fine
