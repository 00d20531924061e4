"""Hostile and odd files and threads around them: zip bombs, malformed model
files, FIFOs and devices, names that are not UTF-8, permissions, snapshots
taken while fit runs, checkpoints written by another thread."""

from __future__ import annotations

import concurrent.futures
import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
import zipfile

import numpy as np
import pytest

import mnist_mlp as mm

posix = pytest.mark.skipif(os.name != "posix", reason="POSIX file types and permissions")


def _npy_member(zf: zipfile.ZipFile, name: str, header: dict, data: bytes = b"", compress: bool = False) -> None:
    """A member whose .npy header says what we like, with the data we like."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    with zf.open(name + ".npy", "w", force_zip64=True) as f:
        f.write(buf.getvalue())
        f.write(data)


def _model_members(m: mm.MLP, path) -> dict[str, np.ndarray]:
    m.save(path)
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _write(path, members: dict[str, np.ndarray], compress: bool = False) -> None:
    np.savez_compressed(path, **members) if compress else np.savez(path, **members)


def test_a_declared_giant_weight_is_refused_before_it_is_inflated(tmp_path):
    # A 6 MB .npz whose w0 declares (40000, 40000) made load inflate 6 GB. Here:
    # a deflated member of zeros declaring 256 MB; refused from its header.
    m = mm.MLP([4, 3, 2], seed=0)
    members = _model_members(m, tmp_path / "good.npz")
    members["layer_sizes"] = np.array([8192, 8192, 2], np.int64)
    members["w0"] = np.zeros((8192, 8192), np.float32)
    members["b0"] = np.zeros(8192, np.float32)
    members["w1"] = np.zeros((8192, 2), np.float32)
    members["b1"] = np.zeros(2, np.float32)
    bomb = tmp_path / "bomb.npz"
    _write(bomb, members, compress=True)
    assert bomb.stat().st_size < 2_000_000
    with pytest.raises(ValueError, match=r"field 'w0' declares 268435456 bytes from \d+ compressed .*decompression bomb"):
        mm.MLP.load(bomb)


def test_a_header_declaring_a_huge_array_with_no_data_is_refused_with_a_short_message(tmp_path):
    # 250 million layer sizes: 4.5 GB and a 750-million-character message.
    m = mm.MLP([4, 3, 2], seed=0)
    members = _model_members(m, tmp_path / "good.npz")
    path = tmp_path / "sizes.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for k, v in members.items():
            if k == "layer_sizes":
                _npy_member(zf, k, {"descr": "<i8", "fortran_order": False, "shape": (250_000_000,)}, b"\0" * 64)
            else:
                with zf.open(k + ".npy", "w") as f:
                    np.lib.format.write_array(f, v)
    with pytest.raises(ValueError, match="field 'layer_sizes' holds 250000000 entries, at most 65") as e:
        mm.MLP.load(path)
    assert len(str(e.value)) < 300
    # The same shape check for a weight whose data is missing.
    path2 = tmp_path / "short.npz"
    with zipfile.ZipFile(path2, "w") as zf:
        for k, v in members.items():
            if k == "w0":
                _npy_member(zf, k, {"descr": "<f4", "fortran_order": False, "shape": (4, 3)}, b"\0" * 8)
            else:
                with zf.open(k + ".npy", "w") as f:
                    np.lib.format.write_array(f, v)
    with pytest.raises(ValueError, match="field 'w0' is truncated"):
        mm.MLP.load(path2)


@pytest.mark.parametrize(
    "history, match",
    [
        ({"epoch": 0}, "field 'history' must be a list of per-epoch records, got a dict"),
        ("loss", "must be a list of per-epoch records, got a str"),
        (3, "got a int"),
        ([1, 2], "record 0 must be a dict, got a int"),
        ([{"epoch": 0, "train_loss": [1, 2]}], "record 0 key 'train_loss' holds a list"),
    ],
)
def test_a_history_that_is_not_a_list_of_records_is_refused_at_load(tmp_path, history, match):
    # It used to load; the next fit then trained a whole epoch before failing.
    m = mm.MLP([4, 3, 2], seed=0)
    members = _model_members(m, tmp_path / "good.npz")
    members["history"] = np.array(json.dumps(history))
    path = tmp_path / "h.npz"
    _write(path, members)
    with pytest.raises(ValueError, match=match) as e:
        mm.MLP.load(path)
    assert "h.npz" in str(e.value)


def _deeply_nested_history_model(tmp_path, sizes) -> str:
    """A model file whose history is 100000 nested lists."""
    members = _model_members(mm.MLP(sizes, seed=0), tmp_path / "good.npz")
    members["history"] = np.array("[" * 100_000 + "]" * 100_000)
    path = tmp_path / "deep.npz"
    _write(path, members)
    return str(path)


def test_a_deeply_nested_history_is_a_value_error_not_a_recursion_error(tmp_path):
    path = _deeply_nested_history_model(tmp_path, [4, 3, 2])
    with pytest.raises(ValueError, match="field 'history' nests too deeply"):
        mm.MLP.load(path)


def test_a_pickled_member_is_refused(tmp_path):
    m = mm.MLP([4, 3, 2], seed=0)
    members = _model_members(m, tmp_path / "good.npz")
    members["history"] = np.array([{"epoch": 0}], dtype=object)
    path = tmp_path / "pickle.npz"
    np.savez(path, **members)
    with pytest.raises(ValueError, match="field 'history' holds Python objects"):
        mm.MLP.load(path)


def test_a_npy_file_is_not_a_model(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="x.npy: not an mnist_mlp model file"):
        mm.MLP.load(path)


# --- FIFOs, devices, targets that are not regular files --------------------------------

FIFO_CHILD = textwrap.dedent(
    """
    import sys, mnist_mlp as mm
    from mnist_mlp import cli
    fifo = sys.argv[1]
    for name, call in [
        ("read_idx", lambda: mm.read_idx(fifo)),
        ("read_idx_mmap", lambda: mm.read_idx(fifo, mmap=True)),
        ("load", lambda: mm.MLP.load(fifo)),
    ]:
        try:
            call()
            print(name, "no error")
        except ValueError as e:
            print(name, "ValueError", e)
    """
)


@posix
def test_fifos_are_refused_without_blocking(tmp_path):
    # Each of these hung until killed.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    r = subprocess.run([sys.executable, "-c", FIFO_CHILD, str(fifo)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert "ValueError" in line and "is a FIFO (named pipe), not a regular file" in line, line


@posix
def test_saving_onto_a_fifo_is_refused_and_leaves_it_a_fifo(tmp_path):
    # The rename replaced whatever was at the path: as root, `--save /dev/null`
    # would have replaced /dev/null with a regular file.
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    m = mm.MLP([4, 3, 2], seed=0)
    with pytest.raises(ValueError, match="is a FIFO .*refusing to replace it"):
        m.save(fifo)
    with pytest.raises(ValueError, match="is a FIFO .*refusing to replace it"):
        mm.write_idx(fifo, np.zeros((2, 2), np.uint8))
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert os.listdir(tmp_path) == ["pipe"]  # no .part left behind
    with pytest.raises(IsADirectoryError, match="is a directory"):
        m.save(tmp_path)
    with pytest.raises(FileNotFoundError, match="the folder .*missing.* does not exist"):
        m.save(tmp_path / "missing" / "m.npz")


@posix
def test_written_files_honour_the_umask(tmp_path):
    # mkstemp made them 0600 whatever the umask.
    m = mm.MLP([4, 3, 2], seed=0)
    old = os.umask(0o022)
    try:
        m.save(tmp_path / "m.npz")
        mm.write_idx(tmp_path / "x.idx", np.zeros((2, 2), np.uint8))
        os.umask(0o027)
        m.save(tmp_path / "m2.npz")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "x.idx").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(tmp_path / "m2.npz").st_mode) == 0o640
    os.chmod(tmp_path / "m.npz", 0o600)  # an existing file keeps its mode
    m.save(tmp_path / "m.npz")
    assert stat.S_IMODE(os.stat(tmp_path / "m.npz").st_mode) == 0o600


@pytest.mark.skipif(sys.platform != "linux", reason="Linux file names are bytes")
def test_names_that_are_not_utf8_work_everywhere(tmp_path, mnist):
    # os.listdir returns 'caf\udce9' for the bytes caf\xe9: read_idx failed with
    # pybind11's "incompatible function arguments".
    folder = os.path.join(os.fsdecode(bytes(tmp_path)), os.fsdecode(b"caf\xe9"))
    os.mkdir(folder)
    (x, y), (xt, yt) = mnist
    for name, arr in [("train-images-idx3-ubyte", x[:50]), ("train-labels-idx1-ubyte", y[:50]),
                      ("t10k-images-idx3-ubyte", xt[:20]), ("t10k-labels-idx1-ubyte", yt[:20])]:
        mm.write_idx(os.path.join(folder, name), arr)
    listed = [os.path.join(os.fsdecode(bytes(tmp_path)), n) for n in os.listdir(tmp_path)]
    assert listed == [folder]
    p = os.path.join(folder, "t10k-images-idx3-ubyte")
    np.testing.assert_array_equal(mm.read_idx(p), xt[:20])
    np.testing.assert_array_equal(mm.read_idx(p, mmap=True), xt[:20])
    (lx, _), _ = mm.load_mnist(folder)
    np.testing.assert_array_equal(lx, x[:50])
    m = mm.MLP([784, 8, 10], seed=0)
    m.save(os.path.join(folder, "m.npz"))
    assert mm.MLP.load(os.path.join(folder, "m.npz")).layer_sizes == [784, 8, 10]
    with pytest.raises(mm.IdxError, match=r"caf\\xe9"):  # messages show the bytes, printable
        mm.read_idx(os.path.join(folder, "m.npz"))


# --- snapshots and callbacks while fit runs --------------------------------------------


def test_a_callback_may_checkpoint_through_another_thread(tmp_path, mnist):
    # fit held the model's lock for the whole run: this deadlocked.
    (x, y), _ = mnist
    m = mm.MLP([784, 16, 10], seed=0)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        def checkpoint(rec):
            pool.submit(m.save, tmp_path / f"epoch{rec['epoch']}.npz").result(timeout=60)
            pool.submit(m.evaluate, x[:100], y[:100]).result(timeout=60)

        m.fit(x[:2000], y[:2000], epochs=3, callback=checkpoint)
    for e in range(3):
        assert len(mm.MLP.load(tmp_path / f"epoch{e}.npz").history) == e + 1


def test_saves_from_another_thread_during_fit_are_consistent_snapshots(tmp_path, mnist):
    # The history was serialised before the lock was taken: 7 of 8 snapshots
    # held the history of one epoch and the weights of a later one.
    (x, y), _ = mnist
    m = mm.MLP([784, 16, 10], seed=0)
    after_epoch = {-1: [w.copy() for w in m.weights]}
    stop = threading.Event()
    paths: list[str] = []

    def saver():
        while not stop.is_set():
            p = str(tmp_path / f"s{len(paths)}.npz")
            m.save(p)
            paths.append(p)

    def record(rec):
        after_epoch[rec["epoch"]] = [w.copy() for w in m.weights]
        threading.Event().wait(0.01)  # give the saver a window between epochs

    t = threading.Thread(target=saver)
    t.start()
    try:
        m.fit(x[:1000], y[:1000], epochs=8, batch_size=32, callback=record)
    finally:
        stop.set()
        t.join()
    assert len(paths) >= 2
    for p in paths:
        s = mm.MLP.load(p)
        epoch = len(s.history) - 1
        for w, expect in zip(s.weights, after_epoch[epoch]):
            assert np.array_equal(w, expect), (p, epoch)


def test_another_threads_fit_waits_while_a_callback_runs(mnist):
    # With the lock released around callbacks, fits must still not interleave.
    (x, y), _ = mnist
    m = mm.MLP([784, 16, 10], seed=0)
    order: list[str] = []
    started = threading.Event()

    def cb(rec):
        order.append(f"a{rec['epoch']}")
        started.set()
        threading.Event().wait(0.05)

    def other():
        started.wait(30)
        m.fit(x[:500], y[:500], epochs=1, callback=lambda r: order.append("b"))

    t = threading.Thread(target=other)
    t.start()
    m.fit(x[:500], y[:500], epochs=3, callback=cb)
    t.join(60)
    assert order == ["a0", "a1", "a2", "b"]
    with pytest.raises(RuntimeError, match="fit cannot be called from inside fit"):
        m.fit(x[:10], y[:10], callback=lambda r: m.fit(x[:10], y[:10]))


# --- the command line: one line, never a traceback -------------------------------------


def _cli(*args, timeout=120):
    from conftest import REPO

    return subprocess.run([sys.executable, "-m", "mnist_mlp", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _one_line_error(r, code=1):
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines and lines[-1].startswith("mnist-mlp: error:"), r.stderr
    return lines[-1]


def test_cli_threads_beyond_int32_is_a_usage_error():
    r = _cli("train", "--threads", "2147483648")
    assert r.returncode == 2 and "must be <= 2147483647" in r.stderr and "Traceback" not in r.stderr


def _overcommit() -> str:
    try:
        with open("/proc/sys/vm/overcommit_memory") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


@pytest.mark.skipif(_overcommit() not in ("0", "2"),
                    reason="with unconditional overcommit the allocation could succeed and the OOM killer act")
def test_cli_a_network_too_large_for_memory_is_one_line(mnist):
    from conftest import DATA

    line = _one_line_error(_cli("train", "--data", str(DATA), "--hidden", "16777216", "--epochs", "1"))
    assert "out of memory" in line


def test_cli_an_image_too_large_to_decode_is_one_line(tmp_path, mnist):
    pytest.importorskip("PIL")
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # A PNG header declaring 30000 x 30000 (900 megapixels), with no real data.
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    (tmp_path / "huge.png").write_bytes(png)
    model = tmp_path / "m.npz"
    mm.MLP([784, 8, 10], seed=0).save(model)
    line = _one_line_error(_cli("predict", str(model), str(tmp_path / "huge.png")))
    assert "huge.png: refused" in line


def test_cli_a_metrics_file_whose_config_is_a_list_is_one_line(tmp_path):
    pytest.importorskip("matplotlib")
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"config": [1, 2], "history": [{"epoch": 0, "train_loss": 1.0}]}))
    line = _one_line_error(_cli("plot", "--metrics", str(metrics), "--out-dir", str(tmp_path / "fig")))
    assert "'config' must be an object, got a list" in line


def test_cli_a_model_with_a_deeply_nested_history_is_one_line(tmp_path):
    path = _deeply_nested_history_model(tmp_path, [784, 8, 10])
    line = _one_line_error(_cli("evaluate", path))
    assert "nests too deeply" in line


# --- datasets arguments ----------------------------------------------------------------


def test_dataset_download_arguments_are_checked_by_name(tmp_path):
    for kw, exc, match in [
        ({"timeout": float("inf")}, ValueError, "timeout must be a finite number of seconds > 0, got inf"),
        ({"timeout": "5"}, TypeError, "timeout must be a number of seconds, got str '5'"),
        ({"retries": -1}, ValueError, r"retries must be an integer in \[0, 100\]"),
    ]:
        with pytest.raises(exc, match=match):
            mm.datasets.load("fashion-mnist", root=tmp_path, download=False, **kw)


def test_an_unwritable_download_folder_is_not_reported_as_a_network_failure(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(mm.datasets.DownloadError, match="cannot download into .*file/sets") as e:
        mm.datasets.load("fashion-mnist", root=blocker / "sets", timeout=1, retries=0)
    assert "mirror" not in str(e.value)


def test_cli_train_on_an_empty_dataset_is_one_line(tmp_path):
    # It said "max() arg is an empty sequence".
    for name, shape in [("train-images-idx3-ubyte", (0, 28, 28)), ("train-labels-idx1-ubyte", (0,)),
                        ("t10k-images-idx3-ubyte", (0, 28, 28)), ("t10k-labels-idx1-ubyte", (0,))]:
        mm.write_idx(tmp_path / name, np.zeros(shape, np.uint8))
    line = _one_line_error(_cli("train", "--data", str(tmp_path), "--epochs", "1"))
    assert "empty" in line


@posix
def test_cli_predict_on_a_fifo_is_one_line_and_does_not_block(tmp_path):
    fifo = tmp_path / "in.npy"
    os.mkfifo(fifo)
    model = tmp_path / "m.npz"
    mm.MLP([784, 8, 10], seed=0).save(model)
    line = _one_line_error(_cli("predict", str(model), str(fifo), timeout=60))
    assert "is a FIFO (named pipe), not a regular file" in line
