"""Embedding cache: ``.npy`` plus a JSON manifest, no pickle, atomic, xdist-safe, local or in object storage.

Entry ``<cache>/embeddings/<key[:2]>/<key>/`` holds ``manifest.json``, written last: the commit
mark (no manifest, no entry). The manifest holds the sha256 of each data file, checked on every load:
a row count cannot see vectors zeroed or overwritten under an intact header, a digest can. An entry
that fails the check (or any read) is named in a ``CacheWarning`` and recomputed, never scored;
an entry without digests (written before they were kept) is recomputed the same way.

- **Local** (a path or ``file://``): ``emb.npy`` and ``ids.json`` beside the manifest. An entry is
  built in a temp dir beside it, every file and the dir fsynced, and moved in with ``os.replace``
  (so a power loss leaves the whole entry or none); one ``filelock`` per key makes concurrent
  pytest-xdist workers compute an entry once while the others wait. A hit takes no lock, so a
  read-only cache serves its hits; where an entry cannot be locked or written (read-only, full
  disk) the vectors are computed and used without storing, with a ``CacheWarning`` naming the entry.
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
import functools
import hashlib
import io
import json
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from filelock import FileLock

from .._io import fsync_dir, oserror_reason, sha256_file, sha256_json, write_durable
from ..errors import CacheError, CacheWarning
from ..storage import StorePath, location

CACHE_SCHEMA = 1
CacheMode = Literal["use", "refresh", "off"]
MANIFEST = "manifest.json"
#: the data files of an entry, in the order a reader checks them
FILES = ("emb.npy", "ids.json")


class _Unusable(CacheError):
    """An entry that is there but cannot be trusted or read: warned about and recomputed. An unreachable store
    stays a plain ``CacheError`` and propagates (minutes of encoding, then a failed upload, help nobody)."""


@dataclass(frozen=True, slots=True)
class CachedEmbeddings:
    keys: tuple[str, ...]
    X: np.ndarray
    manifest: dict[str, Any]
    hit: bool


#: bumps when the encode path changes vectors for the same model and input (3: record-level window policies)
ENCODE_VERSION = 3


def model_description(encoder: Any, input_spec: Any) -> dict[str, Any]:
    """What a model's embeddings depend on, for a cache key: the model, its checkpoint, config, the input spec
    it is fed (window policy included) and the encode path's version. The run's and the robustness analysis's
    keys both start from it, so a change to either encode invalidates both."""
    return {"model": encoder.spec.id, "checkpoint_sha256": encoder.checkpoint_sha256, "family": encoder.spec.family,
            "config": dict(encoder.spec.config), "encode_version": ENCODE_VERSION, "input_spec": input_spec.to_dict()}


def perturbed_description(description: Mapping[str, Any], perturbation: Mapping[str, Any],
                          seed: int) -> dict[str, Any]:
    """The key description of embeddings of perturbed records: the clean records' description plus the
    perturbation (name, parameters, version) and its seed, so an entry is never served for the clean records,
    another perturbation or another draw of it."""
    if "perturbation" in description:
        raise CacheError("a description that names a perturbation cannot be perturbed again", "perturbation")
    return {**description, "perturbation": dict(perturbation), "perturbation_seed": int(seed)}


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

    def manifest_paths(self) -> list[Path] | list[StorePath]:
        """The committed entries' manifests (for costs recorded in them)."""
        if isinstance(self.root, StorePath):
            return list(self.root.glob(f"*/*/{MANIFEST}"))
        return sorted(self.root.glob(f"*/*/{MANIFEST}"))

    def load(self, key: str) -> CachedEmbeddings | None:
        """The committed entry, or None: absent, or unusable (corrupt, unreadable, unverified), which is
        named in a ``CacheWarning``, deleted where local, and left for the caller to recompute."""
        try:
            return self._read(key)
        except _Unusable as exc:
            self._discard(self.entry_dir(key), exc)
            return None

    def _read(self, key: str) -> CachedEmbeddings | None:
        """The committed, verified entry; None when absent; ``_Unusable`` naming the entry when unusable."""
        entry = self.entry_dir(key)
        if isinstance(entry, StorePath):
            return _load_remote(entry, key)
        manifest_path = entry / MANIFEST
        if not manifest_path.exists():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            _verify(manifest, {name: functools.partial(sha256_file, entry / name) for name in FILES}, entry, entry)
            keys = tuple(json.loads((entry / "ids.json").read_text()))
            X = np.load(entry / "emb.npy", mmap_mode="r", allow_pickle=False)
        except _Unusable:
            raise
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise _Unusable(f"unreadable embedding cache entry ({type(exc).__name__}: {exc})", entry) from None
        _check(manifest, keys, X, key, entry)
        return CachedEmbeddings(keys, X, manifest, hit=True)

    @staticmethod
    def _discard(entry: Path | StorePath, problem: _Unusable) -> None:
        """Warn about an unusable entry; delete a local one (an object-store writer replaces its manifest)."""
        warnings.warn(f"{problem}: recomputing", CacheWarning, stacklevel=4)
        if isinstance(entry, Path):
            shutil.rmtree(entry, ignore_errors=True)

    def get_or_compute(
        self,
        description: Mapping[str, Any],
        compute: Callable[[], tuple[tuple[str, ...], np.ndarray, dict[str, Any]]],
    ) -> CachedEmbeddings:
        """Return the cached entry for ``description`` or compute, store and return it.

        ``compute`` returns (record keys, float32 (N, D) array, extra manifest fields). A hit takes no
        lock (a committed entry is immutable), so a read-only cache serves its hits.
        """
        if self.mode == "off":
            keys, X, extra = compute()
            return CachedEmbeddings(tuple(keys), X, {"description": dict(description), **extra}, hit=False)
        key = self.key(description)
        entry = self.entry_dir(key)
        problem: _Unusable | None = None
        if self.mode == "use":
            try:
                if (cached := self._read(key)) is not None:
                    return cached
            except _Unusable as exc:  # maybe a writer replacing it: decided again under the lock
                problem = exc
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(self._lock(entry))
        except OSError as exc:
            if isinstance(entry, StorePath):
                raise
            if problem is not None:
                warnings.warn(f"{problem}: recomputing", CacheWarning, stacklevel=2)
            warnings.warn(f"{entry}: embedding cache not writable ({oserror_reason(exc)}): computing without "
                          "storing", CacheWarning, stacklevel=2)
            return self._compute(key, description, compute, store=None)
        with lock:
            if self.mode == "use" and (cached := self.load(key)) is not None:
                return cached
            return self._compute(key, description, compute, store=entry)

    @staticmethod
    def _compute(
        key: str, description: Mapping[str, Any],
        compute: Callable[[], tuple[tuple[str, ...], np.ndarray, dict[str, Any]]], store: Path | StorePath | None,
    ) -> CachedEmbeddings:
        """Compute an entry and, unless ``store`` is None, write it there (a local write that fails is a
        warning: the computed vectors are still right)."""
        keys, X, extra = compute()
        keys = tuple(keys)
        X = np.ascontiguousarray(X, dtype=np.float32)
        manifest = {"key": key, "n": len(keys), "dim": int(X.shape[1]) if X.ndim == 2 else 0,
                    "dtype": "float32", "description": dict(description), **extra}
        if isinstance(store, StorePath):
            manifest = _write_remote(store, keys, X, manifest)
        elif store is not None:
            try:
                manifest = _write_local(store, keys, X, manifest)
            except OSError as exc:
                warnings.warn(f"{store}: cannot store the embedding cache entry ({oserror_reason(exc)}); "
                              "nothing was half-written, the vectors are used uncached", CacheWarning, stacklevel=3)
        return CachedEmbeddings(keys, X, manifest, hit=False)

    @staticmethod
    def _lock(entry: Path | StorePath) -> contextlib.AbstractContextManager[Any]:
        """One lock per entry for the processes of this machine (beside a local entry; for a URL in a
        private per-user folder of tmp, which another user's folder of the same name cannot block)."""
        if isinstance(entry, StorePath):
            return FileLock(str(url_lock_dir() / f"{hashlib.sha256(entry.url.encode()).hexdigest()[:32]}.lock"))
        entry.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(entry) + ".lock")


def _write_local(entry: Path, keys: tuple[str, ...], X: np.ndarray, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write the entry in a temp dir beside it, every file and the dir fsynced, then rename it in (the commit):
    a crash or a full disk leaves the old entry or none, never half of one. Returns the manifest written.
    Called under the entry's lock: temp dirs of the same entry left by a killed writer are removed first."""
    for stale in entry.parent.glob(f".{entry.name}.*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    try:
        digests = {"emb.npy": write_durable(tmp / "emb.npy", lambda fh: np.save(fh, X, allow_pickle=False)),
                   "ids.json": write_durable(tmp / "ids.json", lambda fh: fh.write(json.dumps(list(keys)).encode()))}
        committed = {**manifest, "sha256": digests}
        text = json.dumps(committed, sort_keys=True, indent=1, default=str).encode()
        write_durable(tmp / MANIFEST, lambda fh: fh.write(text))
        fsync_dir(tmp)
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
        fsync_dir(entry.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return committed


def _verify(manifest: Mapping[str, Any], digest: Mapping[str, Callable[[], str]], entry: Path | StorePath,
            data: Path | StorePath) -> None:
    """Each data file's sha256 (in folder ``data``) against the manifest's, local or object store alike;
    ``digest`` maps a file name to a function computing its digest, called only if the earlier files matched."""
    expected = manifest.get("sha256")
    if not isinstance(expected, dict) or set(FILES) - set(expected):
        raise _Unusable("embedding cache manifest holds no sha256 of the data files (written by an older "
                         "ecgfm-suite), so the entry cannot be verified", str(entry / MANIFEST))
    for name in FILES:
        if digest[name]() != expected[name]:
            raise _Unusable("embedding cache file changed after it was written (sha256 differs from the "
                             "manifest)", str(data / name))


def _check(manifest: Mapping[str, Any], keys: tuple[str, ...], X: np.ndarray, key: str,
           entry: Path | StorePath) -> None:
    """What a digest cannot see: arrays that disagree with each other or an entry filed under another key."""
    if X.shape[0] != len(keys) or manifest.get("n") != len(keys) or manifest.get("key") != key:
        raise _Unusable(f"embedding cache entry inconsistent: {X.shape[0]} vectors, {len(keys)} ids", str(entry))


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
        raise CacheError(f"cannot read the embedding cache: {exc}", str(entry / MANIFEST)) from exc


def _load_remote(entry: StorePath, key: str, attempts: int = 3) -> CachedEmbeddings | None:
    """The verified entry; None when absent (or replaced on every attempt); ``_Unusable`` when corrupt, a
    ``CacheError`` when the store cannot be read."""
    raw = _read_manifest(entry)
    for _ in range(attempts):
        if raw is None:
            return None
        try:
            prefix = _data_prefix(raw)
            if prefix is None:
                raise _Unusable("manifest names no data prefix", str(entry / MANIFEST))
            manifest = json.loads(raw)
            blobs = {name: (entry / prefix / name).read_bytes() for name in FILES}
            _verify(manifest, {name: functools.partial(_sha256, blob) for name, blob in blobs.items()},
                    entry, entry / prefix)
            keys = tuple(json.loads(blobs["ids.json"]))
            X = np.load(io.BytesIO(blobs["emb.npy"]), allow_pickle=False)
            _check(manifest, keys, X, key, entry)
            return CachedEmbeddings(keys, X, manifest, hit=True)
        except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
            again = _read_manifest(entry)
            if again == raw:
                if isinstance(exc, _Unusable):
                    raise
                raise _Unusable(f"corrupt embedding cache entry ({type(exc).__name__}: {exc})", str(entry)) from None
            raw = again  # replaced while we read (the old data may be gone already): read the new one
    return None


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _write_remote(entry: StorePath, keys: tuple[str, ...], X: np.ndarray,
                  manifest: dict[str, Any]) -> dict[str, Any]:
    """Arrays under this writer's own prefix, then the manifest naming them (the commit)."""
    prefix = f"data-{uuid.uuid4().hex[:16]}"
    blobs = _serialise(keys, X)
    committed = {**manifest, "data": prefix, "sha256": {name: _sha256(blob) for name, blob in blobs.items()}}
    try:
        for name, blob in blobs.items():
            (entry / prefix / name).write_bytes(blob)
        replaced = _data_prefix(_read_manifest(entry))
        (entry / MANIFEST).write_atomic(json.dumps(committed, sort_keys=True, indent=1, default=str).encode())
    except OSError as exc:
        raise CacheError(f"cannot write the embedding cache entry: {exc}", str(entry)) from exc
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
