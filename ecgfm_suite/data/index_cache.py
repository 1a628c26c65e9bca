"""Dataset indexes cached on disk, used only while every file the dataset's loader reads is as it was.

A scan parses every record header and hashes every signal file (the ``content_hash`` that the
prepared-array and embedding caches key on): 0.1–1.5 ms a record on 2 cores (0.4–0.5 ms for
CODE-15%'s), so a full CODE-15% (345,000 records) would cost minutes in every session, xdist worker
and shard job. Statting the same files costs a fraction of that (bench_data: 12–17 % with the files in
the page cache, where a scan is cheapest). An entry is used when every file below the dataset root,
and the files outside it that the loader declares it reads (``DatasetSpec.reads_outside``, e.g. the
Challenge's dx tables in a parent folder), have the size, mtime and ctime they had at the scan, and the
data layer's code is the same; otherwise the root is rescanned and the entry replaced. Other files
beside a dataset (a home folder's ``.bash_history``, a script next to the data) do not count. There is
one entry per (dataset, root, scan options), so the cache does not grow with data changes.

Entries are columnar: one ``.npz`` (a zip of ``.npy`` members, no pickle) holding a JSON ``meta``
member, each numeric column as its numpy array, and each object column dictionary-encoded as int32
codes plus its distinct values as tagged JSON. It is written one column at a time and read back
lazily, member by member, so neither side holds more than the frame and one column's encoding; the
fingerprint is checked before any column is decoded. Written atomically and fsynced: a damaged or
unreadable entry is named in a ``CacheWarning`` and rescanned, never trusted and never fatal; a cache
that cannot be written (read-only, full disk) costs the next session a scan and a warning.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import math
import os
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from .._io import atomic_open, oserror_reason, sha256_json
from ..errors import CacheWarning
from ..registry import resolve
from .datasets import DATASETS
from .datasets._common import list_tree
from .records import DatasetIndex, Exclusion

log = logging.getLogger(__name__)

#: entries live in ``<cache_dir>/INDEX_DIR``
INDEX_DIR = "indexes"
#: bump when the entry layout changes (older entries are then rescanned)
FORMAT = 2
ENTRY_SUFFIX = ".npz"
#: the same entry in the whole-JSON layout of format 1, replaced (and removed) by the first rescan
_FORMAT1_SUFFIX = ".json.gz"
#: zlib level of the entry's members: the codes and hashes compress well at the fastest level already
_COMPRESSLEVEL = 1
#: what a damaged entry can raise while being read (a truncated zip, a bad member, codes out of range)
_UNREADABLE = (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError, IndexError,
               zipfile.BadZipFile, zlib.error)

Scan = Callable[..., DatasetIndex]


def cached_scan(scan: Scan, dataset_id: str, root: Path, *, strict: bool, options: Mapping[str, Any],
                cache_dir: Path, refresh: bool = False) -> DatasetIndex:
    """``scan(root, strict=strict, **options)``, from the cache when the files it reads and the code are unchanged.

    ``refresh=True`` rescans and overwrites the entry (``--ecgfm-cache refresh``).
    """
    root = Path(root)
    key = sha256_json({"dataset": dataset_id, "root": str(root.resolve()), "strict": strict,
                       "options": {k: options[k] for k in sorted(options)}})
    path = Path(cache_dir) / INDEX_DIR / f"{dataset_id}-{key[:20]}{ENTRY_SUFFIX}"
    fingerprint = {"format": FORMAT, "code": code_digest(),
                   "files": files_digest(root, outside_files(dataset_id, root))}
    if not refresh and path.exists():
        index = _read_entry(path, fingerprint)
        if index is not None:
            return index
    index = scan(root, strict=strict, **options)
    try:
        write_entry(path, fingerprint, index)
        path.with_name(f"{dataset_id}-{key[:20]}{_FORMAT1_SUFFIX}").unlink(missing_ok=True)
    except OSError as exc:  # a read-only or full cache disk costs the next session a scan, nothing more
        warnings.warn(f"{path}: could not store the {dataset_id} index ({oserror_reason(exc)}); the next "
                      "session scans again", CacheWarning, stacklevel=2)
    return index


def outside_files(dataset_id: str, root: Path) -> list[Path]:
    """The files outside ``root`` that the dataset's scan may read, as its spec declares them (none by default)."""
    spec = DATASETS.get(dataset_id) if dataset_id in DATASETS else None
    if spec is None or spec.reads_outside is None:
        return []
    declared: Callable[[Path], Iterable[Path]] = resolve(spec.reads_outside)
    return list(declared(Path(root).resolve()))


def files_digest(root: Path, outside: Iterable[Path] = ()) -> str:
    """Digest of (path, size, mtime, ctime) of every file below ``root`` (as ``list_tree`` walks it: hidden
    folders skipped, links followed) and of those of the ``outside`` files that exist (so one appearing,
    changing or vanishing changes the digest, and nothing else beside the root does)."""
    h = hashlib.sha256()
    root = Path(root).resolve()
    tree = list_tree(root)
    for folder in sorted(tree):
        for name in tree[folder]:
            _stat_line(h, os.path.join(folder, name), missing=True)
    h.update(b"outside\n")
    for path in sorted({str(Path(p).absolute()) for p in outside}):
        _stat_line(h, path, missing=False)
    return h.hexdigest()


def _stat_line(h: Any, path: str, *, missing: bool) -> None:
    try:
        st = os.stat(path)
    except OSError:  # below the root: a vanished file or dangling link is part of the state too
        if missing:
            h.update(f"{path}\0missing\n".encode())
        return
    h.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n".encode())


@functools.cache
def code_digest() -> str:
    """The suite version and the bytes of the data layer's modules (scanners, readers, label maps)."""
    h = hashlib.sha256(__version__.encode())
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        h.update(path.relative_to(Path(__file__).parent).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()


# -- the columnar entry ---------------------------------------------------------------------------------
def write_entry(path: Path, fingerprint: Mapping[str, Any], index: DatasetIndex) -> None:
    """Store ``index`` under ``fingerprint`` at ``path``, one column at a time (atomic, fsynced)."""
    records = index.records  # rows in order; a scan numbers them 0..n-1 (``build_index``), as a hit does
    columns = [{"name": str(name), "dtype": str(records[name].dtype),
                "kind": "array" if _plain_numeric(records[name]) else "codes"} for name in records.columns]
    meta = {"fingerprint": dict(fingerprint), "dataset": index.dataset, "version": index.version,
            "root": str(index.root), "rows": len(records), "columns": columns,
            "excluded": [e.to_dict() for e in index.excluded],
            "missing_label_files": list(index.missing_label_files), "notes": list(index.notes),
            "attrs": encode_value(dict(records.attrs))}

    def members() -> Iterator[tuple[str, np.ndarray]]:
        yield "meta", _json_array(meta)
        for i, column in enumerate(columns):
            values = records[column["name"]]
            if column["kind"] == "array":
                yield f"c{i}", values.to_numpy()
                continue
            codes, distinct = dictionary_encode(values.tolist())
            yield f"c{i}", codes
            yield f"c{i}.values", _json_array([encode_value(v) for v in distinct])

    with atomic_open(path, "wb") as fh, \
            zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=_COMPRESSLEVEL) as zf:
        for name, array in members():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as out:
                np.lib.format.write_array(out, array, allow_pickle=False)


def _read_entry(path: Path, fingerprint: Mapping[str, Any]) -> DatasetIndex | None:
    try:
        with np.load(path, allow_pickle=False) as entry:
            meta = _json_value(entry["meta"])
            if meta["fingerprint"] != fingerprint:
                log.debug("%s: files or code changed since the scan; rescanning", path)
                return None
            return _decode(meta, entry)
    except _UNREADABLE as exc:
        warnings.warn(f"{path}: unreadable dataset index entry ({type(exc).__name__}: {exc}); rescanning",
                      CacheWarning, stacklevel=3)
        return None


def _decode(meta: Mapping[str, Any], entry: Any) -> DatasetIndex:
    """The index from an open entry (``np.load``'s lazy ``NpzFile``: each member read when asked for)."""
    rows = int(meta["rows"])
    data: dict[str, pd.Series] = {}
    for i, column in enumerate(meta["columns"]):
        codes = entry[f"c{i}"]
        if len(codes) != rows:
            raise ValueError(f"column {column['name']!r} has {len(codes)} values for {rows} rows")
        if column["kind"] == "array":
            data[column["name"]] = pd.Series(codes, dtype=column["dtype"])
        else:
            values = dictionary_decode(codes, _json_value(entry[f"c{i}.values"]))
            data[column["name"]] = pd.Series(values, dtype=column["dtype"])
    records = pd.DataFrame(data, columns=[c["name"] for c in meta["columns"]])
    records.attrs.update(decode_value(meta["attrs"]))
    return DatasetIndex(dataset=meta["dataset"], version=meta["version"], root=Path(meta["root"]), records=records,
                        excluded=[Exclusion(**e) for e in meta["excluded"]],
                        missing_label_files=list(meta["missing_label_files"]), notes=list(meta["notes"]))


def _plain_numeric(values: pd.Series) -> bool:
    """A numpy bool/int/float column, stored as its array (extension dtypes go through the codes)."""
    return isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf"


def dictionary_encode(values: list[Any]) -> tuple[np.ndarray, list[Any]]:
    """int32 codes and the distinct values in first-seen order. Values are told apart exactly as stored: strings
    and tuples of strings by value, anything else by its tagged JSON (``1``, ``1.0`` and ``True`` differ)."""
    seen: dict[Any, int] = {}
    distinct: list[Any] = []
    codes = np.empty(len(values), dtype=np.int32)
    for i, value in enumerate(values):
        if type(value) is str or (type(value) is tuple and all(type(v) is str for v in value)):
            key: Any = value
        else:
            key = ("json", json.dumps(encode_value(value), separators=(",", ":")))
        code = seen.get(key)
        if code is None:
            code = seen[key] = len(distinct)
            distinct.append(value)
        codes[i] = code
    return codes, distinct


def dictionary_decode(codes: np.ndarray, encoded: list[Any]) -> np.ndarray:
    """The object array of ``codes`` over the tagged ``encoded`` distinct values. Immutable values are shared
    between rows; a dict or list is rebuilt per row, so that no two records share one mutable object."""
    distinct = [decode_value(v) for v in encoded]
    table = np.empty(len(distinct), dtype=object)
    for i, value in enumerate(distinct):  # element-wise: assigning a list of tuples would broadcast them
        table[i] = value
    out = table[codes] if len(codes) else np.empty(0, dtype=object)
    mutable = [i for i, v in enumerate(distinct) if isinstance(v, dict | list)]
    if mutable:
        for row in np.flatnonzero(np.isin(codes, mutable)):
            out[row] = decode_value(encoded[codes[row]])
    return out


def _json_array(value: Any) -> np.ndarray:
    return np.frombuffer(json.dumps(value, separators=(",", ":")).encode(), dtype=np.uint8)


def _json_value(array: np.ndarray) -> Any:
    if array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError(f"a JSON member is stored as {array.dtype}{array.shape}, expected uint8 bytes")
    return json.loads(array.tobytes())


# -- one cell as JSON, faithfully: tuples, dicts, lists, None, NaN and pd.NA ------------------------------
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
