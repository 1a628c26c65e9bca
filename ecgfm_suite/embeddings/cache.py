"""On-disk embedding cache: ``.npy`` plus a JSON manifest, no pickle, atomic, xdist-safe.

Entry layout ``<cache>/embeddings/<key[:2]>/<key>/``: ``emb.npy``, ``ids.json`` and ``manifest.json``,
which is written last and is the commit mark (no manifest, no entry). An entry is built in a
temp dir beside it and moved in with ``os.replace``; one ``filelock`` per key makes concurrent
pytest-xdist workers compute an entry once while the others wait.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from filelock import FileLock

from .._io import sha256_json
from ..errors import CacheError

log = logging.getLogger(__name__)

CACHE_SCHEMA = 1
CacheMode = Literal["use", "refresh", "off"]


@dataclass(frozen=True, slots=True)
class CachedEmbeddings:
    keys: tuple[str, ...]
    X: np.ndarray
    manifest: dict[str, Any]
    hit: bool


class EmbeddingCache:
    def __init__(self, root: Path, mode: CacheMode = "use") -> None:
        self.root = Path(root).expanduser() / "embeddings"
        self.mode = mode

    @staticmethod
    def key(description: Mapping[str, Any]) -> str:
        """sha256 of canonical JSON of everything that changes the vectors."""
        return sha256_json({"cache_schema": CACHE_SCHEMA, **description})

    def entry_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def load(self, key: str) -> CachedEmbeddings | None:
        entry = self.entry_dir(key)
        manifest_path = entry / "manifest.json"
        if not manifest_path.exists():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            keys = tuple(json.loads((entry / "ids.json").read_text()))
            X = np.load(entry / "emb.npy", mmap_mode="r", allow_pickle=False)
            if X.shape[0] != len(keys) or manifest.get("n") != len(keys) or manifest.get("key") != key:
                raise CacheError(f"entry inconsistent: {X.shape[0]} vectors, {len(keys)} ids", entry)
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
        entry.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(entry) + ".lock"):
            if self.mode == "use" and (cached := self.load(key)) is not None:
                return cached
            keys, X, extra = compute()
            X = np.ascontiguousarray(X, dtype=np.float32)
            manifest = {"key": key, "n": len(keys), "dim": int(X.shape[1]) if X.ndim == 2 else 0,
                        "dtype": "float32", "description": dict(description), **extra}
            self._write(entry, tuple(keys), X, manifest)
            return CachedEmbeddings(tuple(keys), X, manifest, hit=False)

    @staticmethod
    def _write(entry: Path, keys: tuple[str, ...], X: np.ndarray, manifest: dict[str, Any]) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
        try:
            np.save(tmp / "emb.npy", X, allow_pickle=False)
            (tmp / "ids.json").write_text(json.dumps(list(keys)))
            (tmp / "manifest.json").write_text(json.dumps(manifest, sort_keys=True, indent=1, default=str))
            if entry.exists():
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
