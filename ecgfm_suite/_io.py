"""Atomic, durable writes and content hashes shared by cache, results, baselines and reports.

Durable means fsynced, file and folder: without it a power loss after ``os.replace`` can leave the new
name pointing at a 0-byte file, or the old name back, though the code saw every write succeed.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from .errors import EcgfmWarning


@contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on success fsync and ``os.replace`` it in.

    A crash or exception leaves the old file (or nothing) in place, never half a file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; results and baselines are for everyone
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


@functools.cache
def _umask() -> int:
    """The process umask (read once: os.umask can only be read by setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, data: str | bytes) -> None:
    with atomic_open(path, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)


def fsync_dir(path: str | Path) -> None:
    """Make the names created, replaced or removed in folder ``path`` durable (POSIX; a no-op on Windows,
    which cannot open a folder, and on file systems that do not sync folders)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(fd)


class _Hashing:
    """A binary file that hashes what is written through it (``np.save`` then streams into it in chunks)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> int:
        self.sha256.update(data)
        return self.fh.write(data)


def write_durable(path: str | Path, write: Callable[[Any], object]) -> str:
    """Create the new file ``path`` with ``write(fh)``, flush and fsync it; the sha256 of its bytes.

    For files inside a temp folder that is renamed in afterwards (the rename is the commit, so the file
    itself need not be atomic). On failure the file is removed; the caller's error names no path, so
    callers wrap it (see ``oserror_reason``).
    """
    path = Path(path)
    try:
        with open(path, "xb") as fh:
            out = _Hashing(fh)
            write(out)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return out.sha256.hexdigest()


def oserror_reason(exc: OSError) -> str:
    """The cause of ``exc`` without its path (the caller names that): ``No space left on device``, or numpy's
    ``12000 requested and 8064 written`` (a short write, which carries no errno)."""
    if exc.strerror:
        return exc.strerror
    text = str(exc)
    return f"{text}, a short write: disk full?" if "requested and" in text and "written" in text else text


def append_line(path: str | Path, line: str) -> None:
    """Append ``line`` + newline whole or not at all, durably; the caller serialises appenders (a lock).

    Write, fsync; on any failure (a full disk mid-line, an interrupt) truncate back to where it began, so
    the file stays a sequence of whole lines. A torn last line that a crash left (a power loss, a killed
    process) is cut off first, with a warning: another append after it would glue two lines together.
    """
    path = Path(path)
    data = (line + "\n").encode("utf-8")
    created = not path.exists()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        whole = _whole_lines_end(fd, start)
        if whole != start:
            warnings.warn(f"{path}: cut off a torn last line ({start - whole} bytes) left by an interrupted "
                          "write", EcgfmWarning, stacklevel=3)
            os.ftruncate(fd, whole)
            start = whole
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException as exc:
            os.ftruncate(fd, start)
            if isinstance(exc, OSError):
                raise OSError(exc.errno, f"cannot append a line ({oserror_reason(exc)}); the file is as it was",
                              str(path)) from exc
            raise
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)


def _whole_lines_end(fd: int, size: int, block: int = 1 << 16) -> int:
    """The offset just past the last newline in the first ``size`` bytes of ``fd`` (0 when there is none)."""
    end = size
    while end > 0:
        begin = max(0, end - (1 if end == size else block))  # the last byte alone first: usually a newline
        os.lseek(fd, begin, os.SEEK_SET)
        newline = os.read(fd, end - begin).rfind(b"\n")
        if newline >= 0:
            return begin + newline + 1
        end = begin
    return 0


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: str | Path) -> str:
    """Digest of a file, or of a directory's files (relative names + contents), for checkpoint ids."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f.relative_to(path).as_posix().encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()
