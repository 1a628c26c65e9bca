"""Embedding cache: ``.npy`` plus a JSON manifest, no pickle, atomic, xdist-safe, local or in object storage.

Entry ``<cache>/embeddings/<key[:2]>/<key>/`` holds ``manifest.json``, written last: the commit
mark (no manifest, no entry).

- **Local** (a path or ``file://``): ``emb.npy`` and ``ids.json`` beside the manifest. An entry is
  built in a temp dir beside it and moved in with ``os.replace``; one ``filelock`` per key makes
  concurrent pytest-xdist workers compute an entry once while the others wait.
- **Object storage** (``s3://…`` or any fsspec URL): no lock spans machines and no directory can
  be renamed, so each writer uploads its arrays under its own prefix ``data-<uuid>/`` and then
  PUTs the manifest, which names that prefix and the sha256 of both files. Racing writers both
  succeed; the last manifest wins and always points at one writer's complete files, never a mix.
  A writer deletes the prefix of the manifest it replaced; a race loser whose manifest was
  overwritten before it could see it leaves an unreferenced prefix that readers never open.
  A local lock still makes the xdist workers of one machine compute an entry once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from filelock import FileLock

from .._io import sha256_json
from ..errors import CacheError
from ..storage import StorePath, location

log = logging.getLogger(__name__)

CACHE_SCHEMA = 1
CacheMode = Literal["use", "refresh", "off"]
MANIFEST = "manifest.json"
#: the data files of an entry, in the order a reader checks them
FILES = ("emb.npy", "ids.json")


@dataclass(frozen=True, slots=True)
class CachedEmbeddings:
    keys: tuple[str, ...]
    X: np.ndarray
    manifest: dict[str, Any]
    hit: bool


def url_lock_dir() -> Path:
    """``<tmp>/ecgfm-suite-locks-<user>/`` (mode 0700): lock files of object-store entries on this machine."""
    import getpass

    user = str(os.getuid()) if hasattr(os, "getuid") else getpass.getuser()
    locks = Path(tempfile.gettempdir()) / f"ecgfm-suite-locks-{user}"
    locks.mkdir(mode=0o700, exist_ok=True)
    if hasattr(os, "getuid") and locks.stat().st_uid != os.getuid():
        raise CacheError("lock folder belongs to another user; remove it or set TMPDIR", locks)
    return locks


class EmbeddingCache:
    def __init__(self, root: str | os.PathLike[str] | StorePath, mode: CacheMode = "use") -> None:
        self.root: Path | StorePath = location(root) / "embeddings"
        self.mode = mode

    @property
    def remote(self) -> bool:
        return isinstance(self.root, StorePath)

    @staticmethod
    def key(description: Mapping[str, Any]) -> str:
        """sha256 of canonical JSON of everything that changes the vectors."""
        return sha256_json({"cache_schema": CACHE_SCHEMA, **description})

    def entry_dir(self, key: str) -> Path | StorePath:
        return self.root / key[:2] / key

    def manifest_paths(self) -> list[Path | StorePath]:
        """The committed entries' manifests (for costs recorded in them)."""
        if isinstance(self.root, StorePath):
            return list(self.root.glob(f"*/*/{MANIFEST}"))
        return sorted(self.root.glob(f"*/*/{MANIFEST}"))

    def load(self, key: str) -> CachedEmbeddings | None:
        """The committed entry, or None (absent, or corrupt: logged, then recomputed by the caller)."""
        entry = self.entry_dir(key)
        if isinstance(entry, StorePath):
            return _load_remote(entry, key)
        manifest_path = entry / MANIFEST
        if not manifest_path.exists():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            keys = tuple(json.loads((entry / "ids.json").read_text()))
            X = np.load(entry / "emb.npy", mmap_mode="r", allow_pickle=False)
            _check(manifest, keys, X, key, entry)
        except (OSError, ValueError, CacheError) as exc:
            log.warning("corrupt embedding cache entry %s (%s): deleting and recomputing", entry, exc)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        return CachedEmbeddings(keys, X, manifest, hit=True)

    def get_or_compute(
        self,
        description: Mapping[str, Any],
        compute: Callable[[], tuple[tuple[str, ...], np.ndarray, dict[str, Any]]],
    ) -> CachedEmbeddings:
        """Return the cached entry for ``description`` or compute, store and return it.

        ``compute`` returns (record keys, float32 (N, D) array, extra manifest fields).
        """
        if self.mode == "off":
            keys, X, extra = compute()
            return CachedEmbeddings(tuple(keys), X, {"description": dict(description), **extra}, hit=False)
        key = self.key(description)
        entry = self.entry_dir(key)
        with self._lock(entry):
            if self.mode == "use" and (cached := self.load(key)) is not None:
                return cached
            keys, X, extra = compute()
            X = np.ascontiguousarray(X, dtype=np.float32)
            manifest = {"key": key, "n": len(keys), "dim": int(X.shape[1]) if X.ndim == 2 else 0,
                        "dtype": "float32", "description": dict(description), **extra}
            if isinstance(entry, StorePath):
                manifest = _write_remote(entry, tuple(keys), X, manifest)
            else:
                self._write(entry, tuple(keys), X, manifest)
            return CachedEmbeddings(tuple(keys), X, manifest, hit=False)

    @staticmethod
    def _lock(entry: Path | StorePath) -> contextlib.AbstractContextManager[Any]:
        """One lock per entry for the processes of this machine (beside a local entry; for a URL in a
        private per-user folder of tmp, which another user's folder of the same name cannot block)."""
        if isinstance(entry, StorePath):
            return FileLock(str(url_lock_dir() / f"{hashlib.sha256(entry.url.encode()).hexdigest()[:32]}.lock"))
        entry.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(entry) + ".lock")

    @staticmethod
    def _write(entry: Path, keys: tuple[str, ...], X: np.ndarray, manifest: dict[str, Any]) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        try:
            np.save(tmp / "emb.npy", X, allow_pickle=False)
            (tmp / "ids.json").write_text(json.dumps(list(keys)))
            (tmp / MANIFEST).write_text(json.dumps(manifest, sort_keys=True, indent=1, default=str))
            if entry.exists():
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _check(manifest: Mapping[str, Any], keys: tuple[str, ...], X: np.ndarray, key: str,
           entry: Path | StorePath) -> None:
    if X.shape[0] != len(keys) or manifest.get("n") != len(keys) or manifest.get("key") != key:
        raise CacheError(f"entry inconsistent: {X.shape[0]} vectors, {len(keys)} ids", entry)


def _serialise(keys: tuple[str, ...], X: np.ndarray) -> dict[str, bytes]:
    buf = io.BytesIO()
    np.save(buf, X, allow_pickle=False)
    return {"emb.npy": buf.getvalue(), "ids.json": json.dumps(list(keys)).encode()}


def _read_manifest(entry: StorePath) -> bytes | None:
    try:
        return (entry / MANIFEST).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:  # unreachable endpoint, no permission: loud, not a silent miss
        raise CacheError(f"cannot read the embedding cache: {exc}", entry / MANIFEST) from exc


def _load_remote(entry: StorePath, key: str, attempts: int = 3) -> CachedEmbeddings | None:
    raw = _read_manifest(entry)
    for _ in range(attempts):
        if raw is None:
            return None
        try:
            prefix = _data_prefix(raw)
            if prefix is None:
                raise CacheError("manifest names no data prefix", entry / MANIFEST)
            manifest = json.loads(raw)
            blobs = {name: (entry / prefix / name).read_bytes() for name in FILES}
            for name, blob in blobs.items():
                if hashlib.sha256(blob).hexdigest() != manifest["sha256"][name]:
                    raise CacheError("sha256 differs from the manifest", entry / prefix / name)
            keys = tuple(json.loads(blobs["ids.json"]))
            X = np.load(io.BytesIO(blobs["emb.npy"]), allow_pickle=False)
            _check(manifest, keys, X, key, entry)
            return CachedEmbeddings(keys, X, manifest, hit=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            again = _read_manifest(entry)
            if again == raw:
                log.warning("corrupt embedding cache entry %s (%s): recomputing", entry.url, exc)
                return None
            raw = again  # replaced while we read (the old data may be gone already): read the new one
    return None


def _write_remote(entry: StorePath, keys: tuple[str, ...], X: np.ndarray,
                  manifest: dict[str, Any]) -> dict[str, Any]:
    """Arrays under this writer's own prefix, then the manifest naming them (the commit)."""
    prefix = f"data-{uuid.uuid4().hex[:16]}"
    blobs = _serialise(keys, X)
    committed = {**manifest, "data": prefix,
                 "sha256": {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()}}
    try:
        for name, blob in blobs.items():
            (entry / prefix / name).write_bytes(blob)
        replaced = _data_prefix(_read_manifest(entry))
        (entry / MANIFEST).write_atomic(json.dumps(committed, sort_keys=True, indent=1, default=str).encode())
    except OSError as exc:
        raise CacheError(f"cannot write the embedding cache entry: {exc}", entry) from exc
    if replaced is not None and replaced != prefix:
        with contextlib.suppress(OSError):  # a refresh, or a corrupt entry: its files are superseded
            (entry / replaced).rm(recursive=True)
    return committed


def _data_prefix(raw: bytes | None) -> str | None:
    """The data prefix a manifest names (None when absent or unreadable)."""
    if raw is None:
        return None
    try:
        prefix = json.loads(raw)["data"]
    except (ValueError, KeyError, TypeError):
        return None
    return prefix if isinstance(prefix, str) and prefix.startswith("data-") and "/" not in prefix else None
