"""Dataset indexes cached on disk, used only while every file a scan may read is as it was.

A scan parses every record header and hashes every signal file (the ``content_hash`` that the
prepared-array and embedding caches key on): 0.1–1.5 ms a record on 2 cores (0.4–0.5 ms for
CODE-15%'s), so a full CODE-15% (345,000 records) would cost about 2.5 minutes (extrapolated) in
every session, xdist worker and shard job. Statting the same files costs a fraction of that
(bench_data: 12–17 % with the files in the page cache, where a scan is cheapest). An entry is used
when every file below the dataset root, and the files of the ``PARENT_LEVELS`` folders above it
(where the Challenge's dx mapping tables may sit), have the size, mtime and ctime they had at the
scan, and the data layer's code is the same; otherwise the root is rescanned and the entry
replaced. There is one entry per (dataset, root, scan options), so the cache does not grow with
data changes.

Entries are gzipped JSON with tagged tuples and dicts (no pickle), written atomically and fsynced: a
damaged or unreadable entry is named in a ``CacheWarning`` and rescanned, never trusted and never
fatal; a cache that cannot be written (read-only, full disk) costs the next session a scan and a warning.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from .. import __version__
from .._io import oserror_reason, sha256_json, write_atomic
from ..errors import CacheWarning
from .datasets._common import list_tree
from .records import DatasetIndex, Exclusion

log = logging.getLogger(__name__)

#: entries live in ``<cache_dir>/INDEX_DIR``
INDEX_DIR = "indexes"
#: bump when the entry layout changes (older entries are then rescanned)
FORMAT = 1
#: folders above a root whose files a scan may read (Challenge: dx tables up to 3 levels up)
PARENT_LEVELS = 3

Scan = Callable[..., DatasetIndex]


def cached_scan(scan: Scan, dataset_id: str, root: Path, *, strict: bool, options: Mapping[str, Any],
                cache_dir: Path, refresh: bool = False) -> DatasetIndex:
    """``scan(root, strict=strict, **options)``, from the cache when the files and code are unchanged.

    ``refresh=True`` rescans and overwrites the entry (``--ecgfm-cache refresh``).
    """
    root = Path(root)
    key = sha256_json({"dataset": dataset_id, "root": str(root.resolve()), "strict": strict,
                       "options": {k: options[k] for k in sorted(options)}})
    path = Path(cache_dir) / INDEX_DIR / f"{dataset_id}-{key[:20]}.json.gz"
    fingerprint = {"format": FORMAT, "code": code_digest(), "files": files_digest(root)}
    if not refresh and path.exists():
        index = _read_entry(path, fingerprint)
        if index is not None:
            return index
    index = scan(root, strict=strict, **options)
    try:
        payload = json.dumps({"fingerprint": fingerprint, "index": encode_index(index)}, separators=(",", ":"))
        write_atomic(path, gzip.compress(payload.encode(), compresslevel=3, mtime=0))
    except OSError as exc:  # a read-only or full cache disk costs the next session a scan, nothing more
        warnings.warn(f"{path}: could not store the {dataset_id} index ({oserror_reason(exc)}); the next "
                      "session scans again", CacheWarning, stacklevel=2)
    return index


def _read_entry(path: Path, fingerprint: Mapping[str, Any]) -> DatasetIndex | None:
    try:
        entry = json.loads(gzip.decompress(path.read_bytes()))
        if entry["fingerprint"] != fingerprint:
            log.debug("%s: files or code changed since the scan; rescanning", path)
            return None
        return decode_index(entry["index"])
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:
        warnings.warn(f"{path}: unreadable dataset index entry ({type(exc).__name__}: {exc}); rescanning",
                      CacheWarning, stacklevel=3)
        return None


def files_digest(root: Path) -> str:
    """Digest of (path, size, mtime, ctime) of every file below ``root`` (as ``list_tree`` walks it: hidden
    folders skipped, links followed) and of the files directly in its ``PARENT_LEVELS`` parent folders."""
    h = hashlib.sha256()
    root = Path(root).resolve()
    tree = list_tree(root)
    for folder in list(root.parents)[:PARENT_LEVELS]:
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.is_file())
        except OSError:
            names = []
        tree[folder] = tuple(names)
    for folder in sorted(tree):
        for name in tree[folder]:
            path = os.path.join(folder, name)
            try:
                st = os.stat(path)
            except OSError:  # vanished or a dangling link: part of the state too
                h.update(f"{path}\0missing\n".encode())
                continue
            h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n".encode())
    return h.hexdigest()


@functools.cache
def code_digest() -> str:
    """The suite version and the bytes of the data layer's modules (scanners, readers, label maps)."""
    h = hashlib.sha256(__version__.encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.relative_to(Path(__file__).parent).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# -- a DatasetIndex as JSON, faithfully: column dtypes, tuples, dicts, None and NaN ----------------------
def encode_index(index: DatasetIndex) -> dict[str, Any]:
    records = index.records
    return {
        "dataset": index.dataset, "version": index.version, "root": str(index.root),
        "excluded": [e.to_dict() for e in index.excluded],
        "missing_label_files": list(index.missing_label_files), "notes": list(index.notes),
        "columns": [{"name": c, "dtype": str(records[c].dtype),
                     "values": [encode_value(v) for v in records[c].tolist()]} for c in records.columns],
    }


def decode_index(data: Mapping[str, Any]) -> DatasetIndex:
    columns = {c["name"]: _series(c["values"], c["dtype"]) for c in data["columns"]}
    records = pd.DataFrame(columns, columns=[c["name"] for c in data["columns"]])
    return DatasetIndex(dataset=data["dataset"], version=data["version"], root=Path(data["root"]), records=records,
                        excluded=[Exclusion(**e) for e in data["excluded"]],
                        missing_label_files=list(data["missing_label_files"]), notes=list(data["notes"]))


def _series(values: list[Any], dtype: str) -> pd.Series:
    return pd.Series([decode_value(v) for v in values], dtype=dtype)


def encode_value(value: Any) -> Any:
    """JSON-ready form of one cell: tuples and dicts tagged (JSON has neither), NaN as a tag (strict JSON)."""
    if isinstance(value, tuple):
        return {"t": [encode_value(v) for v in value]}
    if isinstance(value, dict):
        return {"d": [[encode_value(k), encode_value(v)] for k, v in value.items()]}
    if isinstance(value, list):
        return {"l": [encode_value(v) for v in value]}
    if isinstance(value, float) and math.isnan(value):
        return {"nan": 1}
    if value is pd.NA:
        return {"na": 1}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if hasattr(value, "item"):  # a numpy scalar in an object column
        return encode_value(value.item())
    raise TypeError(f"cannot store a {type(value).__name__} in a dataset index entry")


def decode_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    if "t" in value:
        return tuple(decode_value(v) for v in value["t"])
    if "d" in value:
        return {decode_value(k): decode_value(v) for k, v in value["d"]}
    if "l" in value:
        return [decode_value(v) for v in value["l"]]
    if "nan" in value:
        return math.nan
    if "na" in value:
        return pd.NA
    raise ValueError(f"unknown tag in a dataset index entry: {sorted(value)}")
