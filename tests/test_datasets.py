"""mnist_mlp.datasets: lookup order, checksums, downloads from a local HTTP
server (127.0.0.1 only, started and stopped here), offline errors, and a
Fashion-MNIST-format file set training an MLP through the same code path."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import http.server
import io
import socket
import sys
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import mnist_mlp as mm
from mnist_mlp import datasets as ds

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
NAMES = [s + ".gz" for s in STEMS]


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test gets its own cache; nothing touches the user's."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MNIST_MLP_DATA", str(cache))
    monkeypatch.setattr(ds, "_RETRY_BACKOFF", 0.0)
    monkeypatch.setattr(ds, "_repo_data_dir", lambda: None)
    return cache


def make_set(folder: Path, n_train=24, n_test=8, seed=0, classes=10, names=NAMES):
    """A small MNIST-format file set (IDX .gz); returns the four arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        rng.integers(0, classes, n_train, dtype=np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        rng.integers(0, classes, n_test, dtype=np.uint8),
    ]
    for name, arr in zip(names, arrays):
        mm.write_idx(folder / name, arr)
    return arrays


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def fake_spec(files_from: Path, mirrors, name="fake", **kw) -> ds.Dataset:
    """A registry entry pinning the MD5s of the .gz files in files_from."""
    files = {role: ds.DataFile(n, (ds.Checksum("md5", md5_of(files_from / n)),)) for role, n in zip(ds.ROLES, NAMES)}
    return ds.Dataset(name=name, files=files, mirrors=tuple(mirrors), num_classes=10, **kw)


def assert_same(loaded, arrays):
    (x, y), (xt, yt) = loaded
    for got, want in zip((x, y, xt, yt), arrays):
        assert got.dtype == np.uint8
        np.testing.assert_array_equal(got, want)


class Server:
    """A folder served over HTTP on 127.0.0.1. Paths under /hang/ never answer
    (until the fixture stops the server), under /short/ the connection closes
    mid-file, under /busy/ the answer is always 503; every request path is
    recorded."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.requests: list[str] = []
        self.stop = threading.Event()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                if self.path.startswith("/hang/"):
                    server.stop.wait(10)
                    return
                if self.path.startswith("/busy/"):
                    self.send_error(503, "Service Unavailable")
                    return
                if self.path.startswith("/short/"):  # promises 1000 bytes, sends 10, hangs up
                    self.send_response(200)
                    self.send_header("Content-Length", "1000")
                    self.end_headers()
                    self.wfile.write(b"\x1f\x8b" + bytes(8))
                    self.close_connection = True
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
        )
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self):
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "www")
    (tmp_path / "www").mkdir()
    yield srv
    srv.close()


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


@pytest.fixture
def served(server, monkeypatch):
    """A fake file set at <server>/good/, registered as dataset 'fake'."""
    arrays = make_set(server.folder / "good")
    spec = fake_spec(server.folder / "good", [server.url + "good/"])
    monkeypatch.setitem(ds.DATASETS, "fake", spec)
    return arrays, spec


def leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --- downloads ---------------------------------------------------------------------------


def test_good_download_then_cache_hit(served, server, private_cache):
    arrays, _ = served
    assert_same(ds.load("fake", timeout=5), arrays)
    assert leftovers(private_cache / "fake") == sorted(NAMES)  # no temporary files left
    assert len(server.requests) == 4
    assert_same(ds.load("fake", timeout=5), arrays)  # from the cache, verified, no request
    assert len(server.requests) == 4
    assert ds.fetch("fake") == {r: private_cache / "fake" / n for r, n in zip(ds.ROLES, NAMES)}


def test_download_into_root(served, tmp_path):
    arrays, _ = served
    root = tmp_path / "mine"
    assert_same(ds.load("fake", root=root, timeout=5), arrays)
    assert leftovers(root) == sorted(NAMES)


def test_only_missing_files_are_downloaded(served, server, private_cache):
    arrays, _ = served
    (private_cache / "fake").mkdir(parents=True)
    for n in NAMES[:2]:
        (private_cache / "fake" / n).write_bytes((server.folder / "good" / n).read_bytes())
    assert_same(ds.load("fake", timeout=5), arrays)
    assert sorted(server.requests) == sorted(f"/good/{n}" for n in NAMES[2:])


def test_corrupted_download_is_refused_and_removed(server, monkeypatch, private_cache):
    make_set(server.folder / "good")
    bad = server.folder / "bad"
    bad.mkdir()
    for n in NAMES:
        blob = bytearray((server.folder / "good" / n).read_bytes())
        if n == NAMES[0]:
            blob[-9] ^= 0xFF  # one flipped byte
        (bad / n).write_bytes(bytes(blob))
    monkeypatch.setitem(ds.DATASETS, "fake", fake_spec(server.folder / "good", [server.url + "bad/"]))
    with pytest.raises(ds.DownloadError) as info:
        ds.load("fake", timeout=5)
    msg = str(info.value)
    assert "checksum mismatch for train-images-idx3-ubyte.gz" in msg
    assert f"{server.url}bad/train-images-idx3-ubyte.gz" in msg
    # The bad file is gone, no temporary file remains; the good ones were kept.
    assert leftovers(private_cache / "fake") == sorted(NAMES[1:])


def test_refusing_and_missing_mirrors_then_one_that_works(served, server, closed_port_url, monkeypatch):
    arrays, spec = served
    mirrors = [closed_port_url, server.url + "nothing-here/", server.url + "good/"]
    monkeypatch.setitem(ds.DATASETS, "fake", dataclasses.replace(spec, mirrors=tuple(mirrors)))
    t0 = time.perf_counter()
    assert_same(ds.load("fake", timeout=5, retries=2), arrays)
    assert time.perf_counter() - t0 < 3
    # A 404 is not retried: one request per file on the empty mirror.
    assert sum(p.startswith("/nothing-here/") for p in server.requests) == 4


def test_hanging_server_times_out(served, server, monkeypatch, private_cache):
    arrays, spec = served
    monkeypatch.setitem(ds.DATASETS, "fake", dataclasses.replace(spec, mirrors=(server.url + "hang/",)))
    t0 = time.perf_counter()
    with pytest.raises(ds.DownloadError, match="timed out"):
        ds.load("fake", timeout=0.3, retries=1)
    # Two attempts for the first file; the mirror is then skipped for the others.
    assert time.perf_counter() - t0 < 2 * 0.3 + 1
    assert sum(p.startswith("/hang/") for p in server.requests) == 2
    assert leftovers(private_cache / "fake") == []
    hang_then_good = (server.url + "hang/", server.url + "good/")
    monkeypatch.setitem(ds.DATASETS, "fake", dataclasses.replace(spec, mirrors=hang_then_good))
    assert_same(ds.load("fake", timeout=0.3, retries=0), arrays)


def test_connection_closed_mid_file(served, server, monkeypatch, private_cache):
    arrays, spec = served
    mirrors = (server.url + "short/", server.url + "good/")
    monkeypatch.setitem(ds.DATASETS, "fake", dataclasses.replace(spec, mirrors=mirrors))
    assert_same(ds.load("fake", timeout=5, retries=1), arrays)
    # Retried once, then the mirror is skipped for the other files.
    assert [p for p in server.requests if p.startswith("/short/")] == [f"/short/{NAMES[0]}"] * 2
    assert leftovers(private_cache / "fake") == sorted(NAMES)
    for f in (private_cache / "fake").iterdir():
        f.unlink()
    monkeypatch.setitem(ds.DATASETS, "fake", dataclasses.replace(spec, mirrors=mirrors[:1]))
    with pytest.raises(ds.DownloadError, match="IncompleteRead|closed after"):
        ds.load("fake", timeout=5, retries=0)
    assert leftovers(private_cache / "fake") == []


def test_offline_error_lists_files_and_folder(served, closed_port_url, monkeypatch, private_cache):
    _, spec = served
    monkeypatch.setitem(ds.DATASETS, "fake", dataclasses.replace(spec, mirrors=(closed_port_url,)))
    with pytest.raises(ds.DownloadError) as info:
        ds.load("fake", timeout=5)
    msg = str(info.value)
    assert isinstance(info.value, OSError)
    for n in NAMES:
        assert n in msg and f"md5 {spec.files[ds.ROLES[NAMES.index(n)]].checksums[0].hexdigest}" in msg
    assert str(private_cache / "fake") in msg and "root=" in msg
    assert "Connection refused" in msg or "refused" in msg.lower()


def test_download_false_names_files_and_folders(served, tmp_path, private_cache):
    with pytest.raises(ds.DatasetNotFoundError) as info:
        ds.load("fake", root=tmp_path / "empty", download=False)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert all(n in msg for n in NAMES)
    assert str(tmp_path / "empty") in msg and str(private_cache / "fake") in msg


def test_progress_bar(served, server, capsys):
    # tqdm's bar (a dependency; the hand-written fallback is gone): per file, its name,
    # 100% and the byte count in tqdm's binary units.
    from tqdm import tqdm

    ds.fetch("fake", progress=True)
    err = capsys.readouterr().err
    for n in NAMES:
        size = tqdm.format_sizeof((server.folder / "good" / n).stat().st_size, divisor=1024)
        assert f"{n}: 100%" in err and f"{size}/{size}" in err, (n, size, err)
    ds.fetch("fake", root=None)  # cached: nothing
    assert capsys.readouterr().err == ""


def test_no_progress_bar_when_stderr_is_not_a_terminal(served, capsys):
    ds.fetch("fake")
    assert capsys.readouterr().err == ""


def fail_to_resolve(monkeypatch, host):
    """Name resolution of host fails as it does offline or for a mistyped name
    (socket.gaierror from getaddrinfo); every other name resolves as usual."""
    real = socket.getaddrinfo

    def getaddrinfo(name, *args, **kwargs):
        if name == host:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_each_distinct_failure_is_listed_once_with_its_attempts(served, server, monkeypatch):
    # A name that does not resolve, tried three times, was listed three times.
    _, spec = served
    fail_to_resolve(monkeypatch, "mirror.invalid")
    mirrors = ("http://mirror.invalid/mnist/", server.url + "busy/", server.url + "nothing-here/")
    monkeypatch.setitem(ds.DATASETS, "fake", dataclasses.replace(spec, mirrors=mirrors))
    with pytest.raises(ds.DownloadError) as info:
        ds.load("fake", timeout=5, retries=2)
    lines = str(info.value).splitlines()
    lines = [ln for ln in lines if ln.startswith("  ")]  # the failures (not the Mirrors: line)
    dns = [ln for ln in lines if "mirror.invalid/mnist/" in ln]
    assert dns == [f"  http://mirror.invalid/mnist/{NAMES[0]}: gaierror: [Errno {socket.EAI_NONAME}] "
                   "Name or service not known (3 attempts)"]
    for n in NAMES:
        # The unresolvable mirror is skipped for the other files; the busy one answers
        # 503 to each of the three attempts, the empty one 404 to the only one.
        assert [ln for ln in lines if f"/busy/{n}" in ln] == [f"  {server.url}busy/{n}: HTTP 503 Service Unavailable (3 attempts)"]
        assert [ln for ln in lines if f"/nothing-here/{n}" in ln] == [f"  {server.url}nothing-here/{n}: HTTP 404 File not found (1 attempt)"]
        assert server.requests.count(f"/busy/{n}") == 3


def test_a_failed_download_removes_the_folders_it_created(served, closed_port_url, monkeypatch, tmp_path):
    _, spec = served
    monkeypatch.setitem(ds.DATASETS, "fake", dataclasses.replace(spec, mirrors=(closed_port_url,)))
    # The cache ($MNIST_MLP_DATA/fake) and two folders above it did not exist.
    monkeypatch.setenv("MNIST_MLP_DATA", str(tmp_path / "a" / "b" / "cache"))
    with pytest.raises(ds.DownloadError, match="refused"):
        ds.load("fake", timeout=5)
    assert leftovers(tmp_path) == ["www"]  # a/ is gone (www/ is the server's)
    # A root the download created goes too; the folder above it, which was there, stays.
    (tmp_path / "mine").mkdir()
    with pytest.raises(ds.DownloadError):
        ds.fetch("fake", root=tmp_path / "mine" / "new" / "deeper", timeout=5)
    assert leftovers(tmp_path / "mine") == []
    # Folders that existed are kept, empty or not, and so is anything in them.
    (tmp_path / "kept").mkdir()
    with pytest.raises(ds.DownloadError):
        ds.load("fake", root=tmp_path / "kept", timeout=5)
    assert (tmp_path / "kept").is_dir() and leftovers(tmp_path / "kept") == []
    monkeypatch.setenv("MNIST_MLP_DATA", str(tmp_path / "env"))
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "notes.txt").write_text("mine")
    with pytest.raises(ds.DownloadError):
        ds.load("fake", timeout=5)
    assert leftovers(tmp_path / "env") == ["notes.txt"]


def test_a_partly_failed_download_keeps_its_folder_with_the_files_that_arrived(served, server, monkeypatch, private_cache):
    _, spec = served
    (server.folder / "good" / NAMES[3]).unlink()  # the mirror lacks one file
    with pytest.raises(ds.DownloadError, match=f"every mirror failed for {NAMES[3]}"):
        ds.load("fake", timeout=5)
    assert leftovers(private_cache / "fake") == sorted(NAMES[:3])


def test_split_downloads_only_its_files(served, server, private_cache):
    (x, y), (xt, yt) = served[0][:2], served[0][2:]
    got = ds.load("fake", split="test", timeout=5)
    np.testing.assert_array_equal(got[0], xt)
    np.testing.assert_array_equal(got[1], yt)
    assert sorted(server.requests) == sorted(f"/good/{n}" for n in NAMES[2:])
    assert leftovers(private_cache / "fake") == sorted(NAMES[2:])
    assert ds.fetch("fake", split="test") == {r: private_cache / "fake" / n for r, n in zip(ds.ROLES[2:], NAMES[2:])}
    assert_same(ds.load("fake", timeout=5), served[0])  # now the training files
    assert sorted(server.requests) == sorted(f"/good/{n}" for n in NAMES)


# --- lookup order, cache location, verification -------------------------------------------


def test_lookup_order(tmp_path, monkeypatch, private_cache):
    root, repo = tmp_path / "root", tmp_path / "repo"
    in_root = make_set(root, n_train=3, seed=1)
    in_repo = make_set(repo, n_train=4, seed=2)
    in_cache = make_set(private_cache / "fake", n_train=5, seed=3)
    spec = ds.Dataset("fake", {r: ds.DataFile(n) for r, n in zip(ds.ROLES, NAMES)}, (), 10, repo_data=True)
    monkeypatch.setitem(ds.DATASETS, "fake", spec)
    monkeypatch.setattr(ds, "_repo_data_dir", lambda: repo)
    assert_same(ds.load("fake", root=root, download=False), in_root)
    assert_same(ds.load("fake", download=False), in_repo)
    assert_same(ds.load("fake", root=tmp_path / "elsewhere", download=False), in_repo)
    monkeypatch.setattr(ds, "_repo_data_dir", lambda: None)
    assert_same(ds.load("fake", download=False), in_cache)
    # Without repo_data (every set but MNIST), the repo's folder is not looked at.
    monkeypatch.setattr(ds, "_repo_data_dir", lambda: repo)
    monkeypatch.setitem(ds.DATASETS, "fake", dataclasses.replace(spec, repo_data=False))
    assert_same(ds.load("fake", download=False), in_cache)


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_MLP_DATA", str(tmp_path / "d"))
    assert ds.cache_dir("kmnist") == tmp_path / "d" / "kmnist"
    assert ds.cache_dir("emnist-letters") == ds.cache_dir("emnist-digits") == tmp_path / "d" / "emnist"
    monkeypatch.delenv("MNIST_MLP_DATA")
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ds.cache_dir("fashion-mnist") == tmp_path / "xdg" / "mnist_mlp" / "fashion-mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert ds.cache_dir("mnist") == tmp_path / "home" / ".cache" / "mnist_mlp" / "mnist"


def test_mnist_also_looks_in_MNIST_MLP_DATA_itself(tmp_path, monkeypatch):
    # load_mnist() has always read $MNIST_MLP_DATA; datasets.load('mnist') does too.
    arrays = make_set(tmp_path / "flat")
    monkeypatch.setenv("MNIST_MLP_DATA", str(tmp_path / "flat"))
    assert_same(ds.load("mnist", download=False), arrays)
    assert_same(mm.load_mnist(), arrays)


def test_verification_of_local_files(served, server, tmp_path, private_cache):
    arrays, spec = served
    other = make_set(tmp_path / "root", seed=9)  # MNIST-format, but not the pinned files
    # Under an explicit root your files are trusted by default, checked with verify=True.
    assert_same(ds.load("fake", root=tmp_path / "root", download=False), other)
    with pytest.raises(ds.ChecksumError, match="train-images-idx3-ubyte.gz: checksum mismatch") as info:
        ds.load("fake", root=tmp_path / "root", download=False, verify=True)
    assert str(tmp_path / "root") in str(info.value)
    # In the cache they are checked by default, and verify=False skips it.
    make_set(private_cache / "fake", seed=9)
    with pytest.raises(ds.ChecksumError, match=str(private_cache / "fake")):
        ds.load("fake")
    assert_same(ds.load("fake", verify=False), other)
    assert server.requests == []


def test_content_checksum_accepts_recompressed_and_uncompressed_copies(tmp_path, monkeypatch):
    arrays = make_set(tmp_path / "orig")
    content = {n: hashlib.sha256(gzip.decompress((tmp_path / "orig" / n).read_bytes())).hexdigest() for n in NAMES}
    files = {
        r: ds.DataFile(n, (ds.Checksum("md5", "0" * 32), ds.Checksum("sha256", content[n], of="content")))
        for r, n in zip(ds.ROLES, NAMES)
    }
    monkeypatch.setitem(ds.DATASETS, "fake", ds.Dataset("fake", files, (), 10))
    copy = tmp_path / "copy"
    copy.mkdir()
    for i, n in enumerate(NAMES):
        raw = gzip.decompress((tmp_path / "orig" / n).read_bytes())
        if i % 2:
            (copy / n).write_bytes(gzip.compress(raw, compresslevel=1, mtime=12345))  # other .gz bytes
        else:
            (copy / n[:-3]).write_bytes(raw)  # gunzipped
    assert_same(ds.load("fake", root=copy, download=False, verify=True), arrays)
    (copy / NAMES[1]).write_bytes(gzip.compress(gzip.decompress((copy / NAMES[1]).read_bytes())[:-1] + b"\x03"))
    with pytest.raises(ds.ChecksumError, match="sha256 of the content"):
        ds.load("fake", root=copy, download=False, verify=True)


def test_repo_mnist_verifies_against_the_pinned_content_hashes(mnist):
    # data/ holds recompressed files: their .gz MD5s differ from the mirrors',
    # their content matches the pinned SHA-256s.
    from conftest import DATA

    loaded = ds.load("mnist", root=DATA, download=False, verify=True)
    for got, want in zip((*loaded[0], *loaded[1]), (*mnist[0], *mnist[1])):
        assert got.shape == want.shape and np.array_equal(got, want)
    with pytest.raises(ds.ChecksumError):
        ds._verify(DATA / NAMES[3], ds.DATASETS["fashion-mnist"].files["test_labels"])


def only_test_files(folder: Path, **kw):
    """A folder holding only MNIST's two t10k files; returns their arrays."""
    arrays = make_set(folder, **kw)
    for n in NAMES[:2]:
        (folder / n).unlink()
    return arrays[2:]


def test_split_needs_only_the_files_of_that_set(tmp_path):
    xt, yt = only_test_files(tmp_path / "t10k")
    for x, y in (ds.load("fashion-mnist", root=tmp_path / "t10k", download=False, split="test"),
                 mm.load_mnist(tmp_path / "t10k", split="test")):
        np.testing.assert_array_equal(x, xt)
        np.testing.assert_array_equal(y, yt)
    # The training set (or both) still needs the training files, and the message says which.
    for load in (lambda: mm.load_mnist(tmp_path / "t10k"),
                 lambda: mm.load_mnist(tmp_path / "t10k", split="train"),
                 lambda: ds.load("fashion-mnist", root=tmp_path / "t10k", download=False, split="train")):
        with pytest.raises(ds.DatasetNotFoundError) as info:
            load()
        msg = str(info.value)
        assert "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz" in msg
        assert f"{tmp_path / 't10k'} (holds none of them)" in msg or "holds only t10k-images" in msg
    with pytest.raises(ValueError, match="split must be None .*'train' or 'test', got 'validation'"):
        ds.load("fashion-mnist", root=tmp_path / "t10k", split="validation")
    with pytest.raises(ValueError, match="split must be .* got 1"):
        mm.load_mnist(tmp_path / "t10k", split=1)


def test_names_in_any_case_with_underscores(tmp_path, private_cache):
    arrays = make_set(tmp_path / "set")
    for name in ("KMNIST", "Fashion_MNIST", "fashion-MNIST", "EMNIST_letters"):
        spec = ds._spec(name)
        assert spec.name in ds.names() and ds._name_key(spec.name) == ds._name_key(name)
    assert ds.cache_dir("Fashion_MNIST") == private_cache / "fashion-mnist"
    assert_same(ds.load("Fashion_MNIST", root=tmp_path / "set", download=False), arrays)
    with pytest.raises(ValueError) as info:
        ds.load("fashon-mnist")
    msg = str(info.value)
    assert "unknown dataset 'fashon-mnist' (did you mean 'fashion-mnist'?)" in msg
    assert all(n in msg for n in ds.names())
    with pytest.raises(TypeError, match="dataset name must be a str, got int 7"):
        ds.load(7)


def test_load_mnist_says_where_it_looked_outside_a_checkout(tmp_path, monkeypatch):
    # Outside a checkout the message listed "<venv>/lib/python3.11/data", a made-up folder.
    monkeypatch.delenv("MNIST_MLP_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ds.DatasetNotFoundError) as info:
        mm.load_mnist()
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and "\n" not in msg
    searched = msg.split("; searched ", 1)[1].split("; $MNIST_MLP_DATA is not set. ", 1)[0]
    assert searched == f"{tmp_path / 'data'} (./data; does not exist)"
    assert "pass root=FOLDER" in msg and "mnist_mlp.datasets.load('mnist')" in msg
    assert str(tmp_path / "xdg" / "mnist_mlp" / "mnist") in msg  # where that download goes
    # $MNIST_MLP_DATA is searched first, and the message says what each folder lacks.
    only_test_files(tmp_path / "env")
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("MNIST_MLP_DATA", str(tmp_path / "env"))
    with pytest.raises(ds.DatasetNotFoundError) as info:
        mm.load_mnist()
    assert (f"searched {tmp_path / 'env'} ($MNIST_MLP_DATA; holds only t10k-images-idx3-ubyte.gz, "
            f"t10k-labels-idx1-ubyte.gz), {tmp_path / 'data'} (./data; holds none of them). ") in str(info.value)
    assert mm.load_mnist(split="test")[0].shape == (8, 28, 28)


def test_load_mnist_finds_a_set_downloaded_into_the_cache(tmp_path, monkeypatch):
    # After `mnist-mlp train --dataset mnist` (or datasets.load("mnist")) downloaded MNIST, a
    # plain load_mnist() (`mnist-mlp train`) did not look there and asked for the files again.
    monkeypatch.delenv("MNIST_MLP_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(ds, "_repo_data_dir", lambda: None)  # as outside a checkout
    monkeypatch.chdir(tmp_path)
    arrays = make_set(ds.cache_dir("mnist"))
    (x, y), (xt, yt) = mm.load_mnist()
    np.testing.assert_array_equal(x, arrays[0])
    np.testing.assert_array_equal(yt, arrays[3])
    # ./data still comes first
    other = make_set(tmp_path / "data", seed=1)
    np.testing.assert_array_equal(mm.load_mnist()[0][0], other[0])
    # an incomplete cache is listed among the folders searched
    for n in NAMES[:2]:
        (ds.cache_dir("mnist") / n).unlink()
    for n in NAMES:
        (tmp_path / "data" / n).unlink()
    with pytest.raises(ds.DatasetNotFoundError, match=r"mnist \(the download cache; holds only t10k"):
        mm.load_mnist()


def write_checkout(top: Path, pyproject: str | None, data: bool = True) -> Path:
    pkg = top / "python" / "mnist_mlp"
    pkg.mkdir(parents=True)
    if pyproject is not None:
        (top / "pyproject.toml").write_text(pyproject)
    if data:
        (top / "data").mkdir()
    return pkg


def test_checkout_data_folder_only_in_a_real_checkout(tmp_path):
    ours = '[project]\nname = "mnist_mlp"\nversion = "0.1.0"\n'
    assert ds._checkout_data_dir(write_checkout(tmp_path / "a", ours)) == tmp_path / "a" / "data"
    assert ds._checkout_data_dir(write_checkout(tmp_path / "b", '[project]\nname = "other"\n')) is None
    assert ds._checkout_data_dir(write_checkout(tmp_path / "c", None)) is None
    assert ds._checkout_data_dir(write_checkout(tmp_path / "d", ours, data=False)) is None
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "mnist_mlp"
    site.mkdir(parents=True)
    (tmp_path / "venv" / "lib" / "python3.11" / "data").mkdir()
    assert ds._checkout_data_dir(site) is None


def test_this_checkout_is_recognised():
    from conftest import REPO

    here = Path(ds.__file__).resolve().parent
    if here != REPO / "python" / "mnist_mlp":
        pytest.skip(f"mnist_mlp is imported from {here}, not from this checkout")
    assert ds._checkout_data_dir(here) == REPO / "data"


# --- checks after loading ---------------------------------------------------------------


def test_counts_and_labels_are_checked(tmp_path):
    make_set(tmp_path)
    mm.write_idx(tmp_path / NAMES[1], np.zeros(23, np.uint8))
    with pytest.raises(ValueError, match="24 images but .* 23 labels"):
        ds.load("fashion-mnist", root=tmp_path, download=False)
    mm.write_idx(tmp_path / NAMES[1], np.full(24, 3, np.uint8))
    mm.write_idx(tmp_path / NAMES[3], np.array([0, 1, 2, 10, 4, 5, 6, 7], np.uint8))
    with pytest.raises(ValueError, match=r"label 10 at index 3 is outside \[0, 10\)"):
        ds.load("kmnist", root=tmp_path, download=False)
    mm.write_idx(tmp_path / NAMES[2], np.zeros((8, 784), np.uint8))
    with pytest.raises(ValueError, match="expected uint8 images"):
        ds.load("kmnist", root=tmp_path, download=False)


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown dataset 'cifar'.*fashion-mnist"):
        ds.load("cifar")
    with pytest.raises(ValueError, match="timeout"):
        ds.load("mnist", timeout=0)
    with pytest.raises(ValueError, match="retries"):
        ds.load("mnist", retries=-1)
    with pytest.raises(ValueError, match="hash algorithm"):
        ds.Checksum("crc99", "00")


def test_registry():
    assert {"mnist", "fashion-mnist", "kmnist", "emnist-digits", "emnist-letters", "emnist-byclass"} <= set(ds.names())
    for name, spec in ds.DATASETS.items():
        assert set(spec.files) == set(ds.ROLES) and spec.mirrors and spec.num_classes >= 10
        assert all(m.startswith(("http://", "https://")) for m in spec.mirrors)
        pinned = spec.archive.checksums if spec.archive else [c for f in spec.files.values() for c in f.checksums]
        assert pinned, name
    mnist = ds.DATASETS["mnist"].files
    assert mnist["train_images"].checksums[0] == ds.Checksum("md5", "f68b3c2dcbeaaa9fbdd348bbdeb94873")
    # The content hashes are data/README.md's.
    from conftest import DATA

    readme = (DATA / "README.md").read_text()
    for f in mnist.values():
        assert [c.hexdigest for c in f.checksums if c.of == "content"][0] in readme


# --- EMNIST: one zip holding every split ---------------------------------------------------


def test_emnist_from_its_zip(server, monkeypatch, private_cache):
    rng = np.random.default_rng(5)
    buf = io.BytesIO()
    stored = {}
    with zipfile.ZipFile(buf, "w") as z:
        for split, classes in (("digits", 10), ("letters", 27)):
            for part, n in (("train", 6), ("test", 3)):
                x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
                y = rng.integers(1 if split == "letters" else 0, classes, n, dtype=np.uint8)
                stored[split, part] = (x, y)
                for kind, arr in (("images-idx3", x), ("labels-idx1", y)):
                    tmp = Path(server.folder) / "member.gz"
                    mm.write_idx(tmp, arr)
                    z.write(tmp, f"gzip/emnist-{split}-{part}-{kind}-ubyte.gz")
                    tmp.unlink()
        z.writestr("gzip/emnist-digits-mapping.txt", "0 48\n")
    (server.folder / "gzip.zip").write_bytes(buf.getvalue())
    archive = ds.DataFile("gzip.zip", (ds.Checksum("md5", hashlib.md5(buf.getvalue()).hexdigest()),))
    for split in ("digits", "letters"):
        spec = dataclasses.replace(ds.DATASETS[f"emnist-{split}"], mirrors=(server.url,), archive=archive)
        monkeypatch.setitem(ds.DATASETS, f"emnist-{split}", spec)
    (x, y), (xt, yt) = ds.load("emnist-digits", timeout=5)
    # Stored transposed, returned upright.
    np.testing.assert_array_equal(x, stored["digits", "train"][0].transpose(0, 2, 1))
    np.testing.assert_array_equal(yt, stored["digits", "test"][1])
    folder = private_cache / "emnist"
    assert "gzip.zip" not in leftovers(folder) and len(leftovers(folder)) == 8  # both splits, no zip
    (x, y), _ = ds.load("emnist-letters", timeout=5)  # already extracted: no request
    assert server.requests == ["/gzip.zip"] and y.min() >= 1
    np.testing.assert_array_equal(x, stored["letters", "train"][0].transpose(0, 2, 1))


def test_emnist_archive_checksum_failure(server, monkeypatch, private_cache):
    (server.folder / "gzip.zip").write_bytes(b"PK not really a zip")
    spec = dataclasses.replace(ds.DATASETS["emnist-mnist"], mirrors=(server.url,))
    monkeypatch.setitem(ds.DATASETS, "emnist-mnist", spec)
    with pytest.raises(ds.DownloadError, match="gzip.zip: checksum mismatch"):
        ds.load("emnist-mnist", timeout=5)
    # Nothing is left, not even the folders the download created.
    assert not private_cache.exists()
    # A zip put there by hand is checked the same way before it is extracted.
    (private_cache / "emnist").mkdir(parents=True)
    (private_cache / "emnist" / "gzip.zip").write_bytes(b"PK not really a zip")
    with pytest.raises(ds.ChecksumError, match="gzip.zip: checksum mismatch"):
        ds.load("emnist-mnist", timeout=5)
    assert server.requests == ["/gzip.zip"]


# --- Fashion-MNIST trains through the same path ---------------------------------------------


def test_fashion_mnist_file_set_trains(tmp_path):
    make_set(tmp_path, n_train=64, n_test=16, seed=4)
    (x, y), (xt, yt) = mm.datasets.load("fashion-mnist", root=tmp_path, download=False)
    assert x.shape == (64, 28, 28) and x.dtype == np.uint8 and yt.shape == (16,)
    model = mm.MLP([784, 32, 10], seed=0)
    hist = model.fit(x, y, epochs=1, lr=0.1, batch_size=8, validation_data=(xt, yt))
    assert len(hist) == 1 and np.isfinite(hist[0]["train_loss"]) and 0 <= hist[0]["test_accuracy"] <= 1
