"""Files: writing them so that they appear complete or not at all, and opening
only regular files for reading, without blocking, whatever their names."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from typing import IO, Any, Iterator

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def display_name(path: str | os.PathLike[str] | bytes) -> str:
    """The path as text that can always be printed: bytes that are not UTF-8
    (a name from os.listdir such as 'caf\\udce9.idx') are shown as \\xe9."""
    p = os.fspath(path)
    if isinstance(p, bytes):
        p = os.fsdecode(p)
    return p.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def check_regular_file(path: str, what: str = "file") -> None:
    """Raises unless path names a regular file (symlinks followed): a FIFO would
    block the reader forever, a device is not data. Never opens the path."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{display_name(path)}: no such file") from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{display_name(path)}: is a directory, not {what}")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{display_name(path)}: is {_kind(st.st_mode)}, not a regular file; {what}s are regular files")


def open_regular(path: str, what: str = "file") -> IO[bytes]:
    """Opens a regular file for reading in binary mode. The open itself does
    not block (O_NONBLOCK, which regular files ignore), so a FIFO swapped in
    after a check is refused too."""
    check_regular_file(path, what)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{display_name(path)}: is {_kind(st.st_mode)}, not a regular file")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, for a moment, for every thread)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_writable_target(path: str | os.PathLike[str]) -> str:
    """The target of a write: refused when something other than a regular file
    is there (a rename would replace a device or a FIFO: `--save /dev/null` as
    root would destroy /dev/null), or when its folder is missing. Returns the
    path as a str."""
    target = os.fspath(path)
    if isinstance(target, bytes):
        target = os.fsdecode(target)
    try:
        st = os.stat(target)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"{display_name(target)}: is a directory; give a file name to write")
        raise ValueError(f"{display_name(target)}: is {_kind(st.st_mode)}; refusing to replace it with a file")
    folder = os.path.dirname(os.path.abspath(target))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{display_name(target)}: the folder {display_name(folder)} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"{display_name(target)}: the folder {display_name(folder)} is not writable")
    return target


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, fsync: bool = False) -> Iterator[IO[Any]]:
    """Yields a temporary file beside ``path``; on success it is renamed onto
    ``path``, on any error (KeyboardInterrupt included) it is removed. The file
    gets the permissions a plain open() would give it: an existing file's mode,
    else 0666 minus the umask (0644 under umask 022), not mkstemp's 0600."""
    target = check_writable_target(path)
    try:
        perms = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        perms = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".part",
                                   dir=os.path.dirname(os.path.abspath(target)))
    except OSError as e:  # name the user's path, not the temporary one
        raise type(e)(e.errno, f"cannot write {display_name(target)}: {e.strerror}") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, perms)
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
