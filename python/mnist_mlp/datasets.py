"""MNIST-family datasets: where the files are looked for, how they are
downloaded and checked, and how they are loaded.

    (train_x, train_y), (test_x, test_y) = mnist_mlp.datasets.load("fashion-mnist")
    test_x, test_y = mnist_mlp.datasets.load("mnist", split="test")   # only the t10k files

Names: ``mnist``, ``fashion-mnist``, ``kmnist`` and ``emnist-<split>`` for the
splits ``byclass``, ``bymerge``, ``balanced``, ``letters``, ``digits`` and
``mnist``, in any case and with ``_`` or ``-`` (``"Fashion_MNIST"``). Images
come back as uint8 ``(N, 28, 28)``, labels as uint8 ``(N,)``.

Lookup order: ``root`` when given, then the ``data/`` folder of a source
checkout (MNIST only; only when the package runs from one), then the user
cache: ``$MNIST_MLP_DATA/<name>`` when that variable is set, else the platform
cache folder (``$XDG_CACHE_HOME/mnist_mlp/<name>``, by default
``~/.cache/mnist_mlp/<name>`` on Linux). For MNIST, ``$MNIST_MLP_DATA`` itself
is also searched, as `mnist_mlp.load_mnist` always has. Missing files are
downloaded (standard library only, a tqdm progress bar on a terminal) into
``root``, or into the cache when there is no ``root``.

Downloads try each mirror in order, a few times each, with a timeout on every
connect and read; each file streams to a temporary name in the destination
folder and is renamed only after its checksum matches a pinned one. A failed
download removes the folders it created when they are left empty. Checksums
are pinned per file as `Checksum` records: of the file as published (the
``.gz``), or of its uncompressed IDX content, so a recompressed copy (the
repo's ``data/``) or a gunzipped one verifies too.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import numbers
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, NamedTuple, Sequence, Tuple, Union, overload

import numpy as np

from ._files import atomic_write
from .idx import _TYPE_CODES, read_idx

__all__ = [
    "Checksum",
    "ChecksumError",
    "DATASETS",
    "DataFile",
    "Dataset",
    "DatasetNotFoundError",
    "DownloadError",
    "SPLITS",
    "cache_dir",
    "fetch",
    "load",
    "names",
]

PathLike = Union[str, "os.PathLike[str]"]

ROLES = ("train_images", "train_labels", "test_images", "test_labels")
SPLITS = ("train", "test")  # the values of split=, besides None (both)


class DownloadError(OSError):
    """No mirror delivered a file (or none delivered one that verified). The
    message lists every URL tried and each distinct way it failed (once, with
    the number of attempts), the files expected and the folder to put them in
    to work offline."""


class DatasetNotFoundError(FileNotFoundError):
    """The files are not in any of the folders searched and downloading is off
    (`mnist_mlp.load_mnist` never downloads). The message names the files, each
    folder searched and what it lacks, and how to get the files."""


class ChecksumError(ValueError):
    """A local file does not match any of its pinned checksums."""


@dataclass(frozen=True)
class Checksum:
    """A pinned digest. ``of="file"``: of the file's bytes as published (the
    ``.gz`` on the mirrors); ``of="content"``: of the uncompressed IDX bytes,
    which any lossless recompression keeps."""

    algorithm: str  # a hashlib name: "sha256", "md5", ...
    hexdigest: str
    of: str = "file"

    def __post_init__(self) -> None:
        if self.of not in ("file", "content"):
            raise ValueError(f"Checksum.of must be 'file' or 'content', got {self.of!r}")
        if self.algorithm not in hashlib.algorithms_available:
            raise ValueError(f"unknown hash algorithm {self.algorithm!r}")


@dataclass(frozen=True)
class DataFile:
    """One file of a dataset: its published name and its pinned checksums."""

    name: str
    checksums: tuple[Checksum, ...] = ()


@dataclass(frozen=True)
class Dataset:
    """A registry entry. ``mirrors`` are base URLs, tried in order; a file's URL
    is the mirror followed by its name. With an ``archive``, the mirrors serve
    that zip and the files are extracted from it."""

    name: str
    files: Mapping[str, DataFile]  # the four ROLES
    mirrors: tuple[str, ...]
    num_classes: int
    archive: DataFile | None = None
    transpose: bool = False  # EMNIST stores images transposed
    cache_name: str | None = None  # the folder in the cache (default: name)
    repo_data: bool = False  # also look in a source checkout's data/
    source: str = ""
    notes: str = field(default="", compare=False)


def _md5(hexdigest: str) -> Checksum:
    return Checksum("md5", hexdigest)


def _mnist_like(name: str, mirrors: Sequence[str], md5s: Sequence[str], source: str, **kw: Any) -> Dataset:
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    content = kw.pop("content_sha256", (None,) * 4)
    files = {}
    for role, stem, md5, sha in zip(ROLES, stems, md5s, content):
        sums = (_md5(md5),) + ((Checksum("sha256", sha, of="content"),) if sha else ())
        files[role] = DataFile(stem + ".gz", sums)
    return Dataset(name=name, files=files, mirrors=tuple(mirrors), num_classes=10, source=source, **kw)


# Checksums and where each was checked:
# - MNIST: the MD5s of the four .gz files are the ones every loader pins
#   (torchvision among them); the SHA-256s of the uncompressed content are those
#   of data/README.md, which tests/test_idx.py checks against the repo's data/.
# - Fashion-MNIST: the MD5s published in the project's README (Zalando Research).
# - KMNIST: the project (ROIS-CODH) publishes no checksums; these MD5s are
#   torchvision's for the same files, not checked here against the data.
# - EMNIST: the MD5 of NIST's gzip.zip as torchvision pins it (NIST publishes
#   none), not checked here against the data; the extracted members are covered
#   by the archive's checksum and the zip's own CRC-32s.
_DATASETS: dict[str, Dataset] = {}

_DATASETS["mnist"] = _mnist_like(
    "mnist",
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    md5s=(
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "d53e105ee54ea40749a09fcbcd1e9432",
        "9fb629c4189551a2d022fa330f9573f3",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
    content_sha256=(
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    source="MNIST, Y. LeCun, C. Cortes and C. J. C. Burges (CC BY-SA 3.0)",
    repo_data=True,
)

_DATASETS["fashion-mnist"] = _mnist_like(
    "fashion-mnist",
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    md5s=(
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "25c81989df183df01b3e8a0aad5dffbe",
        "bef4ecab320f06d8554ea6380940ec79",
        "bb300cfdad3c16e7a12a480ee83cd310",
    ),
    source="Fashion-MNIST, H. Xiao, K. Rasul and R. Vollgraf, Zalando Research (MIT)",
)

_DATASETS["kmnist"] = _mnist_like(
    "kmnist",
    mirrors=(
        "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    ),
    md5s=(
        "bdb82020997e1d708af4cf47b453dcf7",
        "e144d726b3acfaa3e44228e80efcd344",
        "5c965bf0a639b31b8f53240b1b52f4d7",
        "7320c461ea6c1c855c0b718fb2a4b134",
    ),
    source="Kuzushiji-MNIST, T. Clanuwat et al., ROIS-DS CODH (CC BY-SA 4.0)",
)

# EMNIST ships as one zip (about 560 MB) of gzip'd IDX files for all six splits.
# The first download extracts every split's files and removes the zip.
_EMNIST_CLASSES = {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 27, "digits": 10, "mnist": 10}
_EMNIST_ARCHIVE = DataFile("gzip.zip", (_md5("58c8d27c78d21e728a6bc7b3cc06412e"),))
for _split, _classes in _EMNIST_CLASSES.items():
    _DATASETS[f"emnist-{_split}"] = Dataset(
        name=f"emnist-{_split}",
        files={
            role: DataFile(f"emnist-{_split}-{kind}-ubyte.gz")
            for role, kind in zip(ROLES, ("train-images-idx3", "train-labels-idx1", "test-images-idx3", "test-labels-idx1"))
        },
        mirrors=(
            "https://biometrics.nist.gov/cs_links/EMNIST/",
            "http://www.itl.nist.gov/iaui/vip/cs_links/EMNIST/",
        ),
        num_classes=_classes,
        archive=_EMNIST_ARCHIVE,
        transpose=True,
        cache_name="emnist",
        source="EMNIST, G. Cohen, S. Afshar, J. Tapson and A. van Schaik, NIST",
        notes="letters: labels 1-26 as published (0 unused)" if _split == "letters" else "",
    )
del _split, _classes

#: The registry, by name. Add or replace entries to load other MNIST-format sets.
DATASETS: dict[str, Dataset] = _DATASETS


def names() -> list[str]:
    """The dataset names `load` accepts (in any case, with ``_`` or ``-``)."""
    return sorted(DATASETS)


def _name_key(name: str) -> str:
    """What a name is matched on: letters and digits, lower case ('Fashion_MNIST' -> 'fashionmnist')."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _spec(name: Any) -> Dataset:
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a str, got {type(name).__name__} {name!r}")
    if name in DATASETS:
        return DATASETS[name]
    key = _name_key(name)
    hits = sorted(n for n in DATASETS if _name_key(n) == key)
    if len(hits) == 1:
        return DATASETS[hits[0]]
    if hits:
        raise ValueError(f"dataset name {name!r} is ambiguous: it matches {', '.join(hits)}")
    by_key = {_name_key(n): n for n in DATASETS}
    close = [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.6)]
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown dataset {name!r}{hint}; known names (any case, '_' or '-'): {', '.join(names())}")


def _split_roles(split: Any) -> tuple[str, ...]:
    """The file roles a split needs: all four for None, else its images and labels."""
    if split is None:
        return ROLES
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"split must be None (both sets), 'train' or 'test', got {split!r}")
    return (f"{split}_images", f"{split}_labels")


@dataclass(frozen=True)
class _Wording:
    """How the caller spells its options, for the advice in error messages: the
    Python API's by default; the command line passes its own (`_CLI_WORDING`)."""

    root: str = "root=FOLDER"
    download: str = "download=True"
    download_mnist: str = "load them with mnist_mlp.datasets.load('mnist'), which downloads them"
    download_mnist_root: str = "mnist_mlp.datasets.load('mnist', root=FOLDER)"


_PYTHON_WORDING = _Wording()
_CLI_WORDING = _Wording(
    root="--data DIR",
    download="--dataset NAME",
    download_mnist="pass --dataset mnist, which downloads them",
    download_mnist_root="--dataset mnist --data DIR",
)


# --- where files are looked for --------------------------------------------------------


def _user_cache_base() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "mnist_mlp" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "mnist_mlp"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist_mlp"


def _env_data() -> Path | None:
    env = os.environ.get("MNIST_MLP_DATA")
    return Path(env).expanduser() if env else None


def cache_dir(name: str) -> Path:
    """The cache folder of a dataset: ``$MNIST_MLP_DATA/<name>`` when set, else
    the platform cache (``$XDG_CACHE_HOME/mnist_mlp/<name>``, by default
    ``~/.cache/mnist_mlp/<name>``). EMNIST's splits share one ``emnist`` folder."""
    spec = _spec(name)
    folder = spec.cache_name or spec.name
    return (_env_data() or _user_cache_base()) / folder


_PROJECT_NAME = re.compile(r"""^\s*name\s*=\s*["']mnist[_.-]mlp["']""", re.MULTILINE | re.IGNORECASE)


def _checkout_data_dir(package_dir: Path) -> Path | None:
    """The data/ folder of the source checkout that package_dir (the mnist_mlp
    package folder) belongs to, or None: the package sits in python/mnist_mlp/
    of a checkout whose pyproject.toml is mnist_mlp's, and data/ exists. An
    installed package (site-packages/mnist_mlp/) has none."""
    top = package_dir.parent.parent
    if package_dir.parent.name != "python" or not (top / "data").is_dir():
        return None
    try:
        pyproject = (top / "pyproject.toml").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return top / "data" if _PROJECT_NAME.search(pyproject) else None


def _repo_data_dir() -> Path | None:
    """The data/ folder of the source checkout this package runs from, if it does."""
    return _checkout_data_dir(Path(__file__).resolve().parent)


def _search_roots(spec: Dataset, root: PathLike | None) -> list[tuple[Path, bool, str]]:
    """(folder, managed, what it is) in lookup order; managed folders (the
    repo's data/ and the cache) are verified against the pinned checksums by
    default."""
    roots: list[tuple[Path, bool, str]] = []
    if root is not None:
        roots.append((_root_path(root), False, ""))
    if spec.repo_data:
        repo = _repo_data_dir()
        if repo is not None:
            roots.append((repo, True, "the source checkout's data/"))
    roots.append((cache_dir(spec.name), True, "the cache"))
    env = _env_data()
    if spec.name == "mnist" and env is not None:
        roots.append((env, False, "$MNIST_MLP_DATA"))  # where load_mnist() has always looked
    return roots


def _root_path(root: Any) -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"root must be a folder (str or os.PathLike), got {type(root).__name__} {root!r}")
    return Path(root).expanduser()


def _find_file(folder: Path, name: str) -> Path | None:
    # The published name, uncompressed, and the seed notebook's train-images.idx3-ubyte.
    stem = name[:-3] if name.endswith(".gz") else name
    alt = stem.replace("-idx", ".idx")
    for candidate in (stem + ".gz", stem, alt + ".gz", alt):
        p = folder / candidate
        if p.is_file():
            return p
    return None


def _find_set(spec: Dataset, folder: Path, roles: Sequence[str] = ROLES) -> dict[str, Path | None]:
    return {role: _find_file(folder, spec.files[role].name) for role in roles}


def _shown(folder: Path) -> str:
    return os.path.abspath(folder)


def _folder_state(spec: Dataset, folder: Path, roles: Sequence[str]) -> str:
    """Why a folder searched did not count, for the not-found messages."""
    if not folder.exists():
        return "does not exist"
    if not folder.is_dir():
        return "not a folder"
    have = [spec.files[r].name for r in roles if _find_file(folder, spec.files[r].name)]
    return "holds only " + ", ".join(have) if have else "holds none of them"


def _searched(spec: Dataset, roots: Sequence[tuple[Path, str]], roles: Sequence[str]) -> str:
    parts = []
    for folder, what in roots:
        note = "; ".join(x for x in (what, _folder_state(spec, folder, roles)) if x)
        parts.append(f"{_shown(folder)} ({note})")
    return ", ".join(parts)


def _expected(spec: Dataset, roles: Sequence[str]) -> str:
    return ", ".join(spec.files[r].name for r in roles) + " (.gz or uncompressed)"


# --- checksums ---------------------------------------------------------------------------


def _new_hash(algorithm: str) -> Any:
    try:
        return hashlib.new(algorithm, usedforsecurity=False)
    except TypeError:  # Python < 3.9 has no usedforsecurity
        return hashlib.new(algorithm)


def _file_digests(path: Path, algorithms: Iterable[str]) -> dict[str, str]:
    hashers = {a: _new_hash(a) for a in set(algorithms)}
    if hashers:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                for h in hashers.values():
                    h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def _content_bytes(arr: np.ndarray) -> list[Any]:
    """The uncompressed IDX bytes of an array read by read_idx (header + big-endian data)."""
    big = arr.dtype.newbyteorder(">") if arr.dtype.itemsize > 1 else arr.dtype
    code = _TYPE_CODES[big]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return [header, np.ascontiguousarray(arr, dtype=big).data]


def _verify(
    path: Path,
    f: DataFile,
    arr: np.ndarray | None = None,
    digests: Mapping[str, str] | None = None,
    shown: str | None = None,
) -> None:
    """Raises ChecksumError unless the file's bytes or its uncompressed content
    match one of the pinned checksums. A file with none pinned passes.
    ``digests``: those already computed while downloading; ``shown``: the name
    to report (a download's temporary file is reported by its URL)."""
    if not f.checksums:
        return
    file_sums = [c for c in f.checksums if c.of == "file"]
    if file_sums:
        got = dict(digests or {})
        missing = [c.algorithm for c in file_sums if c.algorithm not in got]
        got.update(_file_digests(path, missing))
        if any(got[c.algorithm] == c.hexdigest.lower() for c in file_sums):
            return
    else:
        got = {}
    content_sums = [c for c in f.checksums if c.of == "content"]
    if content_sums:
        if arr is None:
            arr = read_idx(path)
        parts = _content_bytes(arr)
        for c in content_sums:
            h = _new_hash(c.algorithm)
            for part in parts:
                h.update(part)
            got[f"{c.algorithm} of the content"] = h.hexdigest()
            if h.hexdigest() == c.hexdigest.lower():
                return
    expected = ", ".join(f"{c.algorithm} {c.hexdigest} ({c.of})" for c in f.checksums)
    found = ", ".join(f"{k} {v}" for k, v in got.items())
    raise ChecksumError(f"{shown or path}: checksum mismatch for {f.name}: got {found}; expected {expected}")


# --- downloading -------------------------------------------------------------------------
#
# Hand-written on purpose (urllib), not pooch. pooch (1.9) fetches one URL per
# file: it has no mirror list (pooch issue 310, still open), so the loop over
# mirrors would stay here anyway. Its retry_if_failed retries every failure
# alike, with sleeps of 1, 2, ... s: a 404, a refused connection and a bad copy
# are retried on the same mirror instead of moving on to the next one, and
# there is no way to skip a mirror that could not be reached for the other
# files. Its known_hash is one digest of the file's bytes, so the content
# checksums that let a recompressed or gunzipped copy verify would still be
# checked here. It puts no bound on the size of a download, logs every download
# to stderr (terminal or not), creates the destination folder and leaves it
# behind when the download fails, and raises requests' exceptions, whose
# messages would need translating for the distinct-failure report. What it
# would replace is one GET into a temporary file and a rename, at the price of
# requests, urllib3, certifi, idna, charset-normalizer, platformdirs and
# packaging as runtime dependencies.

_RETRY_BACKOFF = 0.5  # seconds before the 2nd attempt on a mirror, doubled after
_MAX_DOWNLOAD_BYTES = 1 << 31  # a server streaming without end is cut off here
_USER_AGENT = "mnist_mlp (python urllib)"


def _progress_bar(total: int | None, desc: str, progress: bool | None) -> Any:
    """A tqdm byte bar on stderr; progress None: only when stderr is a terminal."""
    from tqdm import tqdm  # a dependency; imported here to keep `import mnist_mlp` light

    stream = sys.stderr
    if progress is None:
        progress = bool(getattr(stream, "isatty", lambda: False)())
    return tqdm(
        total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=stream, leave=True,
        disable=not progress,
    )


def _stream_to_temp(
    url: str, folder: Path, f: DataFile, timeout: float, progress: bool | None
) -> tuple[Path, dict[str, str]]:
    """Downloads url to a temporary file in folder, hashing as it goes."""
    algorithms = {c.algorithm for c in f.checksums if c.of == "file"}
    hashers = {a: _new_hash(a) for a in algorithms}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{f.name}.", suffix=".part", dir=folder)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                done = 0
                with _progress_bar(total, f.name, progress) as bar:
                    while True:
                        chunk = response.read(1 << 16)
                        if not chunk:
                            break
                        done += len(chunk)
                        if done > _MAX_DOWNLOAD_BYTES:
                            raise OSError(f"more than {_MAX_DOWNLOAD_BYTES} bytes: not the expected file")
                        out.write(chunk)
                        for h in hashers.values():
                            h.update(chunk)
                        bar.update(len(chunk))
                if total is not None and done != total:
                    raise OSError(f"connection closed after {done} of {total} bytes")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, {a: h.hexdigest() for a, h in hashers.items()}


def _describe(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    if isinstance(e, TimeoutError) or "timed out" in str(e):
        return f"timed out ({e})"
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def _distinct(failures: Sequence[tuple[str, str]]) -> list[str]:
    """One line per distinct (URL, reason), in the order first seen, with the
    number of attempts that failed that way: a name that does not resolve is
    listed once, not once per retry."""
    counts: dict[tuple[str, str], int] = {}
    for failure in failures:
        counts[failure] = counts.get(failure, 0) + 1
    return [f"{url}: {why} ({n} attempt{'s' if n > 1 else ''})" for (url, why), n in counts.items()]


def _download(
    spec: Dataset,
    f: DataFile,
    folder: Path,
    timeout: float,
    retries: int,
    progress: bool | None,
    unreachable: set[str] | None = None,
) -> tuple[Path | None, list[str]]:
    """Fetches one file into folder from the first mirror that delivers a copy
    that verifies. Returns (path, []) or (None, the distinct failures). Mirrors
    that could not be reached (refused, timed out, no route, a name that does
    not resolve) are added to ``unreachable`` and skipped for the dataset's
    other files."""
    unreachable = set() if unreachable is None else unreachable
    failures: list[tuple[str, str]] = []
    for mirror in spec.mirrors:
        url = mirror.rstrip("/") + "/" + f.name
        if mirror in unreachable:
            continue  # its failure is already listed, for an earlier file
        for attempt in range(retries + 1):
            if attempt:
                time.sleep(_RETRY_BACKOFF * 2 ** (attempt - 1))
            try:
                tmp, digests = _stream_to_temp(url, folder, f, timeout, progress)
            except urllib.error.HTTPError as e:
                e.close()
                failures.append((url, _describe(e)))
                if 400 <= e.code < 500 and e.code not in (408, 429):
                    break  # not there: the next mirror
                continue
            except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
                failures.append((url, _describe(e)))
                reason = getattr(e, "reason", e)
                if isinstance(reason, ValueError) or "unknown url type" in str(e):
                    break  # not a URL this client can fetch
                if isinstance(reason, ConnectionRefusedError) or attempt == retries:
                    # Nothing listening (retrying will not help), or no luck in any attempt.
                    if isinstance(reason, (OSError, http.client.HTTPException)):
                        unreachable.add(mirror)
                    break
                continue
            try:
                _verify(tmp, f, digests=digests, shown=url)
            except ValueError as e:  # ChecksumError, or not even an IDX file (IdxError)
                tmp.unlink(missing_ok=True)
                why = str(e).replace(str(tmp), url)
                failures.append((url, why[len(url) + 2:] if why.startswith(url + ": ") else why))
                break  # a mirror with a bad copy keeps it: the next mirror
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            dest = folder / f.name
            os.replace(tmp, dest)
            return dest, []
    return None, _distinct(failures)


def _offline_help(
    spec: Dataset, folder: Path, missing: Sequence[DataFile], failures: Sequence[str], root_given: bool, wording: _Wording
) -> str:
    lines = [f"could not download {spec.name}: every mirror failed for {', '.join(f.name for f in missing)}"]
    lines += [f"  {line}" for line in failures]
    elsewhere = "" if root_given else f", or in a folder of your choice and pass {wording.root}"
    if spec.archive is not None:
        lines.append(
            f"To work offline, put {spec.archive.name} (it is extracted, then deleted) or the other files"
            f" below in {_shown(folder)}{elsewhere}:"
        )
    else:
        lines.append(f"To work offline, put these files (from any mirror of {spec.name}) in {_shown(folder)}{elsewhere}:")
    for f in missing:
        sums = ", ".join(f"{c.algorithm} {c.hexdigest}" + (" of the uncompressed file" if c.of == "content" else "") for c in f.checksums)
        lines.append(f"  {f.name}" + (f"  ({sums})" if sums else ""))
    lines.append("Mirrors: " + ", ".join(spec.mirrors))
    return "\n".join(lines)


def _extract_archive(spec: Dataset, archive: Path, folder: Path) -> None:
    """Extracts every IDX .gz member of the archive (all splits) into folder,
    each through a temporary name; zipfile checks every member's CRC-32."""
    with zipfile.ZipFile(archive) as z:
        for info in z.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if info.is_dir() or not base.endswith("-ubyte.gz"):
                continue
            with atomic_write(folder / base) as out, z.open(info) as member:
                shutil.copyfileobj(member, out, 1 << 20)


def fetch(
    name: str,
    root: PathLike | None = None,
    download: bool = True,
    *,
    split: str | None = None,
    timeout: float = 30.0,
    retries: int = 2,
    progress: bool | None = None,
) -> dict[str, Path]:
    """Finds a dataset's files, downloading what is missing, and returns their
    paths by role (``train_images``, ``train_labels``, ``test_images``,
    ``test_labels``; with ``split="train"`` or ``"test"`` only that set's two).
    See `load` for the lookup order and the arguments."""
    spec = _spec(name)
    roles = _split_roles(split)
    timeout, retries = _download_args(timeout, retries)
    found, _ = _locate(spec, root, roles)
    if found is not None:
        return found
    return _download_set(spec, root, download, timeout, retries, progress, roles, _PYTHON_WORDING)


def _download_args(timeout: Any, retries: Any) -> tuple[float, int]:
    if isinstance(timeout, (bool, np.bool_)) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__} {timeout!r}")
    t = float(timeout)
    if not 0 < t <= threading.TIMEOUT_MAX:  # inf and nan included: a socket timeout must be finite
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout!r}")
    if isinstance(retries, (bool, np.bool_)) or not isinstance(retries, numbers.Integral) or not 0 <= retries <= 100:
        raise ValueError(f"retries must be an integer in [0, 100], got {retries!r}")
    return t, int(retries)


def _remove_if_empty(created: Sequence[Path]) -> None:
    """Removes the folders a failed download created (deepest first), each only
    while it is empty: a file that did arrive keeps its folder."""
    for d in created:
        if not os.path.lexists(d):
            continue  # creating it failed
        try:
            d.rmdir()
        except OSError:
            return  # not empty (or not ours to remove): neither are its parents


def _writable_folder(folder: Path, wording: _Wording) -> list[Path]:
    """Creates folder and checks that a file can be written there, before any
    download: a read-only root is not a network failure. Returns the folders
    created, deepest first."""
    created = []
    p = Path(os.path.abspath(folder))
    while not os.path.lexists(p) and p != p.parent:
        created.append(p)
        p = p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        _remove_if_empty(created)
        raise DownloadError(
            f"cannot download into {_shown(folder)}: {e.strerror or e}; pass a writable folder as {wording.root}, "
            "or put the files there by hand"
        ) from None
    return created


def _locate(spec: Dataset, root: PathLike | None, roles: Sequence[str] = ROLES) -> tuple[dict[str, Path] | None, bool]:
    for folder, managed, _ in _search_roots(spec, root):
        paths = _find_set(spec, folder, roles)
        if all(paths.values()):
            return {k: p for k, p in paths.items() if p is not None}, managed
    return None, False


def _download_set(
    spec: Dataset,
    root: PathLike | None,
    download: bool,
    timeout: float,
    retries: int,
    progress: bool | None,
    roles: Sequence[str],
    wording: _Wording,
) -> dict[str, Path]:
    folder = _root_path(root) if root is not None else cache_dir(spec.name)
    if not download:
        searched = _searched(spec, [(f, what) for f, _, what in _search_roots(spec, root)], roles)
        raise DatasetNotFoundError(
            f"{spec.name} not found: expected {_expected(spec, roles)} in one folder; searched {searched}; "
            f"pass {wording.download} to fetch them into {_shown(folder)}, or put them there"
        )
    created = _writable_folder(folder, wording)
    try:
        return _download_into(spec, folder, timeout, retries, progress, roles, root is not None, wording)
    except BaseException:
        _remove_if_empty(created)
        raise


def _download_into(
    spec: Dataset,
    folder: Path,
    timeout: float,
    retries: int,
    progress: bool | None,
    roles: Sequence[str],
    root_given: bool,
    wording: _Wording,
) -> dict[str, Path]:
    present = _find_set(spec, folder, roles)
    missing = [spec.files[r] for r, p in present.items() if p is None]
    if spec.archive is not None:
        archive = folder / spec.archive.name
        if archive.is_file():
            _verify(archive, spec.archive)  # put there by hand: checked like a download
        else:
            got, failures = _download(spec, spec.archive, folder, timeout, retries, progress)
            if got is None:
                raise DownloadError(_offline_help(spec, folder, [spec.archive, *missing], failures, root_given, wording))
        _extract_archive(spec, archive, folder)
        archive.unlink()
        present = _find_set(spec, folder, roles)
        lost = [spec.files[r].name for r, p in present.items() if p is None]
        if lost:
            raise DownloadError(f"{spec.archive.name} from {spec.name}'s mirrors does not hold {', '.join(lost)}")
    else:
        failed: list[DataFile] = []
        failures: list[str] = []
        unreachable: set[str] = set()
        for f in missing:
            got, why = _download(spec, f, folder, timeout, retries, progress, unreachable)
            if got is None:
                failed.append(f)
                failures += why
        if failed:
            raise DownloadError(_offline_help(spec, folder, failed, failures, root_given, wording))
        present = _find_set(spec, folder, roles)
    return {k: p for k, p in present.items() if p is not None}


# --- loading -----------------------------------------------------------------------------

Pair = Tuple[np.ndarray, np.ndarray]


class _Loaded(NamedTuple):
    """What a load found: the canonical name, the folder read (absolute) and
    the sets read (None for a split not asked for)."""

    name: str
    folder: Path
    train: Pair | None
    test: Pair | None


def _check_pair(x: np.ndarray, y: np.ndarray, xp: Path, yp: Path, num_classes: int) -> None:
    if x.dtype != np.uint8 or x.ndim != 3:
        raise ValueError(f"{xp}: expected uint8 images (N, rows, cols), got {x.dtype} {x.shape}")
    if y.dtype != np.uint8 or y.ndim != 1:
        raise ValueError(f"{yp}: expected uint8 labels (N,), got {y.dtype} {y.shape}")
    if len(x) != len(y):
        raise ValueError(f"{xp} holds {len(x)} images but {yp} holds {len(y)} labels")
    if len(y) and int(y.max()) >= num_classes:
        bad = int(np.argmax(y >= num_classes))
        raise ValueError(f"{yp}: label {int(y[bad])} at index {bad} is outside [0, {num_classes})")


def _read_set(spec: Dataset, paths: Mapping[str, Path], verify: bool) -> _Loaded:
    arrays = {}
    for role, path in paths.items():
        arr = read_idx(path)
        if verify:
            _verify(path, spec.files[role], arr)
        arrays[role] = arr
    sets: dict[str, Pair | None] = {}
    for split in SPLITS:
        xr, yr = f"{split}_images", f"{split}_labels"
        if xr not in arrays:
            sets[split] = None
            continue
        x, y = arrays[xr], arrays[yr]
        _check_pair(x, y, paths[xr], paths[yr], spec.num_classes)
        if spec.transpose:
            x = np.ascontiguousarray(x.transpose(0, 2, 1))
        sets[split] = (x, y)
    folder = Path(os.path.abspath(next(iter(paths.values())).parent))
    return _Loaded(spec.name, folder, sets["train"], sets["test"])


def _load(
    name: str,
    root: PathLike | None = None,
    download: bool = True,
    *,
    split: str | None = None,
    verify: bool | None = None,
    timeout: float = 30.0,
    retries: int = 2,
    progress: bool | None = None,
    wording: _Wording = _PYTHON_WORDING,
) -> _Loaded:
    """`load`, returning what was found where (the command line's entry point,
    which also passes its own option names for the error messages)."""
    spec = _spec(name)
    roles = _split_roles(split)
    timeout, retries = _download_args(timeout, retries)
    paths, managed = _locate(spec, root, roles)
    if paths is None:
        paths = _download_set(spec, root, download, timeout, retries, progress, roles, wording)
        managed = root is None  # the cache: what was there already is checked too
    return _read_set(spec, paths, verify if verify is not None else managed)


@overload
def load(
    name: str,
    root: PathLike | None = ...,
    download: bool = ...,
    *,
    split: None = ...,
    verify: bool | None = ...,
    timeout: float = ...,
    retries: int = ...,
    progress: bool | None = ...,
) -> tuple[Pair, Pair]: ...
@overload
def load(
    name: str,
    root: PathLike | None = ...,
    download: bool = ...,
    *,
    split: Literal["train", "test"],
    verify: bool | None = ...,
    timeout: float = ...,
    retries: int = ...,
    progress: bool | None = ...,
) -> Pair: ...
def load(
    name: str,
    root: PathLike | None = None,
    download: bool = True,
    *,
    split: str | None = None,
    verify: bool | None = None,
    timeout: float = 30.0,
    retries: int = 2,
    progress: bool | None = None,
) -> Any:
    """Loads a dataset: ``(train_x, train_y), (test_x, test_y)``, uint8 images
    ``(N, 28, 28)`` and uint8 labels ``(N,)``. With ``split="train"`` or
    ``split="test"``, only that set, ``(x, y)``: only its two files are needed
    (looked for, downloaded and read).

    ``name``: one of `names`, in any case, with ``_`` or ``-`` (``"Fashion_MNIST"``
    is ``fashion-mnist``); an unknown name raises ValueError listing the known ones.

    Looks in ``root`` (when given; ``~`` is expanded), then a source checkout's
    ``data/`` (MNIST), then the cache (`cache_dir`), for the files, ``.gz`` or
    uncompressed, all in one folder. With ``download=True`` the missing files are
    fetched into ``root`` or the cache; every downloaded file must match a pinned
    checksum before it is renamed into place, and folders the download created
    are removed again if it fails and leaves them empty. Otherwise
    `DatasetNotFoundError` names the files and the folders searched.

    ``verify``: None (default) checks the files found in the cache and in the
    repo's ``data/`` against the pinned checksums and trusts those under an
    explicit ``root`` (any MNIST-format files of yours); True checks every
    file; False checks none (downloads are always checked). A mismatch raises
    `ChecksumError` naming the file.

    ``timeout`` (seconds) bounds each connect and each read; each mirror gets
    ``1 + retries`` attempts, then the next mirror is tried; when all fail,
    `DownloadError` lists each distinct failure once (with the number of
    attempts it took), the files and where to put them by hand.
    ``progress``: a tqdm byte progress bar on stderr; None shows it when stderr
    is a terminal.

    After loading, image and label counts must agree and every label must be
    below the dataset's class count (ValueError otherwise). EMNIST images are
    transposed to the upright orientation of MNIST."""
    got = _load(name, root, download, split=split, verify=verify, timeout=timeout, retries=retries, progress=progress)
    if split is None:
        return got.train, got.test
    return got.train if split == "train" else got.test


# --- mnist_mlp.load_mnist ------------------------------------------------------------------


def _mnist_roots(root: PathLike | None) -> list[tuple[Path, str]]:
    """Where `mnist_mlp.load_mnist` looks, with what each folder is: ``root``
    alone when given; else $MNIST_MLP_DATA (when set), ./data, the data/
    folder of the source checkout this package runs from (if it does), then
    the folder `load("mnist")` downloads into (`cache_dir`, when it exists),
    so that a set fetched once is found without naming it again."""
    if root is not None:
        return [(_root_path(root), "")]
    roots: list[tuple[Path, str]] = []
    env = _env_data()
    if env is not None:
        roots.append((env, "$MNIST_MLP_DATA"))
    roots.append((Path("data"), "./data"))
    repo = _repo_data_dir()
    if repo is not None and all(os.path.realpath(repo) != os.path.realpath(r) for r, _ in roots):
        roots.append((repo, "the source checkout's data/"))
    cache = cache_dir("mnist")
    if cache.is_dir() and all(os.path.realpath(cache) != os.path.realpath(r) for r, _ in roots):
        roots.append((cache, "the download cache"))
    return roots


def _load_mnist(root: PathLike | None = None, split: str | None = None, wording: _Wording = _PYTHON_WORDING) -> _Loaded:
    """`mnist_mlp.load_mnist`: the first folder holding the MNIST files the split
    needs, read and checked like `load`, without checksums. Never downloads."""
    spec = DATASETS["mnist"]
    roles = _split_roles(split)
    roots = _mnist_roots(root)
    for folder, _ in roots:
        paths = _find_set(spec, folder, roles)
        if all(paths.values()):
            return _read_set(spec, {k: p for k, p in paths.items() if p is not None}, verify=False)
    if root is not None:
        folder = roots[0][0]
        where = f"MNIST not found in {_shown(folder)} ({_folder_state(spec, folder, roles)}): expected {_expected(spec, roles)}"
        how = f"put them there, or use {wording.download_mnist_root} to download them there"
    else:
        env = "" if _env_data() is not None else "; $MNIST_MLP_DATA is not set"
        where = f"MNIST not found: expected {_expected(spec, roles)} in one folder; searched {_searched(spec, roots, roles)}{env}"
        how = f"pass {wording.root} with the folder that holds them, or {wording.download_mnist} into {cache_dir('mnist')}"
    raise DatasetNotFoundError(f"{where}. To fix: {how}")
