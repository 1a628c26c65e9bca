"""Locations that are a local path or an fsspec URL (``s3://bucket/prefix``, ``gs://…``, ``memory://…``).

``location()`` keeps local paths (and ``file://`` URLs) as ``Path``, so local callers keep their fast
path (file locks, ``os.replace``). Anything else becomes a ``StorePath``, whose writes follow the
object-store rules the cache and the run directory rely on: a single PUT makes a key appear whole,
so a small *commit mark* (a manifest, ``run.json``) written last decides whether the rest exists.

Credentials and endpoints come from the backend's own configuration: botocore's ``AWS_*``
variables (``AWS_ENDPOINT_URL`` for an S3-compatible server), fsspec's ``FSSPEC_<PROTOCOL>_<ARG>``
variables or its config files. fsspec is imported only when a URL is used.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import EcgfmError, SpecError
from .extras import require_for_url

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem


@dataclass(frozen=True, slots=True)
class StorePath:
    """A file or directory in object storage, named by its fsspec URL (no trailing slash)."""

    url: str

    def __str__(self) -> str:
        return self.url

    def __truediv__(self, name: str) -> StorePath:
        return StorePath(f"{self.url}/{name.strip('/')}")

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def fs(self) -> AbstractFileSystem:
        return _split(self.url)[0]

    @property
    def path(self) -> str:
        """The location inside ``fs`` (``bucket/prefix/…``)."""
        return _split(self.url)[1]

    def read_bytes(self) -> bytes:
        """One GET (no listing cache): ``FileNotFoundError`` when the key does not exist."""
        return self.fs.cat_file(self.path)

    def read_text(self) -> str:
        return self.read_bytes().decode("utf-8")

    def write_bytes(self, data: bytes) -> None:
        """One PUT: the key appears whole or not at all (object stores never show half an object)."""
        self.fs.pipe_file(self.path, data)

    def write_atomic(self, data: bytes) -> None:
        """Write a commit mark: a temporary key ``<name>.tmp-<uuid>`` moved onto the final key.

        On object stores the move is a server-side copy of a whole object; on file-like backends
        (sftp, local) it is a rename. Either way no reader sees a partial mark.
        """
        fs, path = self.fs, self.path
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            fs.pipe_file(tmp, data)
            fs.mv(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):  # best effort: a leftover temp key is never read
                fs.rm_file(tmp)
            raise

    def exists(self) -> bool:
        fs, path = self.fs, self.path
        fs.invalidate_cache(path)  # another machine may have written it since our last listing
        return bool(fs.exists(path))

    def modified(self) -> datetime:
        """When the object was last written (the store's clock, timezone-aware)."""
        when = self.fs.modified(self.path)
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)

    def glob(self, pattern: str) -> list[StorePath]:
        fs = self.fs
        fs.invalidate_cache()  # listings cached by this process may predate other machines' writes
        return [StorePath(fs.unstrip_protocol(p)) for p in sorted(fs.glob(f"{self.path}/{pattern}"))]

    def rm(self, recursive: bool = False) -> None:
        self.fs.rm(self.path, recursive=recursive)


def is_url(value: str | os.PathLike[str]) -> bool:
    return "://" in str(value)


def location(value: str | os.PathLike[str] | StorePath) -> Path | StorePath:
    """A local ``Path`` (for paths and ``file://`` URLs) or a ``StorePath`` (any other fsspec URL).

    An unknown protocol or a backend that is not installed (``gs://`` needs gcsfs) is a ``SpecError``.
    """
    if isinstance(value, StorePath):
        return value
    if not is_url(value):
        return Path(value).expanduser()
    text = str(value).rstrip("/")
    require_for_url(text)  # s3:// without s3fs: the extra to install, in one line
    try:
        fs, path = _split(text)
    except (ImportError, ValueError) as exc:
        raise SpecError(f"cannot use storage URL {text!r}: {exc}", text) from None
    from fsspec.implementations.local import LocalFileSystem

    return Path(path) if isinstance(fs, LocalFileSystem) else StorePath(text)


def _split(url: str) -> tuple[AbstractFileSystem, str]:
    """fsspec file system and inner path; fsspec caches one file-system instance per configuration."""
    from fsspec.core import url_to_fs

    return url_to_fs(url)


def upload_tree(local: Path, target: StorePath, *, commit: str, skip: Iterable[str] = ()) -> StorePath:
    """Copy the files below ``local`` to ``target``, the ``commit`` file last and atomically.

    Files named in ``skip`` (glob patterns on the file name) and hidden temp files stay behind.
    Until ``commit`` appears, readers treat ``target`` as absent (an upload in progress or cut off).
    """
    local = Path(local)
    marker = local / commit
    if not marker.is_file():
        raise EcgfmError(f"nothing to upload: {commit} is missing (unfinished)", local)
    files = sorted(p for p in local.rglob("*") if p.is_file() and not p.is_symlink() and p != marker
                   and not p.name.startswith(".") and not any(p.match(s) for s in skip))
    fs, root = target.fs, target.path
    try:  # one batch: the backend uploads the files concurrently
        if files:
            fs.put([str(p) for p in files], [f"{root}/{p.relative_to(local).as_posix()}" for p in files])
        (target / commit).write_atomic(marker.read_bytes())
    except OSError as exc:
        raise EcgfmError(f"upload failed ({commit} not written, so readers ignore the partial copy): {exc}",
                         target.url) from exc
    return target


def download_tree(source: StorePath, local: Path, *, commit: str) -> Path:
    """Copy a committed tree (one whose ``commit`` file exists) from ``source`` into ``local``."""
    if not (source / commit).exists():
        raise EcgfmError(f"not committed: {commit} is missing (an upload in progress, or not written by ecgfm-suite)",
                         source.url)
    fs, root = source.fs, source.path
    fs.invalidate_cache()
    keys = [k for k in sorted(fs.find(root)) if ".tmp-" not in k.rsplit("/", 1)[-1]]  # skip cut-off commit marks
    local = Path(local)
    targets = [local / k[len(root):].lstrip("/") for k in keys]
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fs.get(keys, [str(t) for t in targets])
    except OSError as exc:
        raise EcgfmError(f"download failed: {exc}", source.url) from exc
    return local
