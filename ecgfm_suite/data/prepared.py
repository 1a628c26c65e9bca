"""Dataset-level prepared arrays: every record of an index → model-ready windows, cached on disk.

All windows of a dataset live in one float32 array ``(total_windows, *window_shape)`` with
``offsets`` (n_records + 1) delimiting each record's windows, so a 20k-record dataset is one
memory-mapped ``.npy`` rather than 20k arrays. Records that fail to read, validate or prepare
become :class:`Exclusion` s; the run goes on (``strict=True`` raises instead). A pool of
worker processes reads and prepares records while the calling process writes them, in index order, so
the result is the one a single process gives, byte for byte.

Cache entry ``<cache_dir>/prepared/<key[:2]>/<key>/``: ``windows.npy``, ``offsets.npy``,
``keys.json``, ``excluded.json``, then ``manifest.json`` (the commit mark). It is built in a
temp dir beside it (every file and the dir fsynced) and ``os.replace``-d in, under one ``filelock``
per key, so concurrent pytest-xdist workers fill it once; a corrupt or unreadable entry is deleted
with a ``CacheWarning`` and rebuilt. A hit takes no lock, so a read-only cache serves its hits; a
cache that cannot be locked or written (read-only, full disk) costs a build in a temp folder and a
``CacheWarning`` naming the entry, never half an entry.
"""

from __future__ import annotations

import functools
import json
import multiprocessing
import os
import shutil
import tempfile
import time
import warnings
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, closing, contextmanager, suppress
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from filelock import FileLock

from .._io import fsync_dir, oserror_reason, sha256_json, write_durable
from ..errors import CacheError, CacheWarning, EcgfmError, RecordError, SpecError
from .preprocess import PIPELINE_VERSION, PrepareFn
from .reader import read_signal
from .records import Exclusion, Signal, validate_signal

#: Bump when the entry layout or key recipe changes.
PREPARED_SCHEMA = 1

ReadFn = Callable[[Mapping[str, Any]], Signal]

_FILES = ("windows.npy", "offsets.npy", "keys.json", "excluded.json")

#: Without a cache, results up to this size are loaded into memory; larger ones stay memory-mapped.
IN_MEMORY_BYTES = 256 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PreparedSet:
    """Model-ready windows of the usable records of one index, in index order."""

    windows: np.ndarray  # float32 (total_windows, *window_shape); a read-only memmap when cached
    offsets: np.ndarray  # int64 (n_records + 1); record i is windows[offsets[i]:offsets[i + 1]]
    keys: tuple[str, ...]
    excluded: tuple[Exclusion, ...]
    #: cache key and entry directory; None when built without a cache
    cache_key: str | None = None
    path: Path | None = None
    from_cache: bool = False

    def __len__(self) -> int:
        return len(self.keys)

    def record(self, i: int) -> np.ndarray:
        return self.windows[self.offsets[i] : self.offsets[i + 1]]

    def windows_per_record(self) -> dict[str, float | int]:
        """Windows per record over the usable records (records, windows, min, mean, max): what the window
        policy made of this data, recorded with the embeddings and in every cell's preprocessing."""
        return window_summary(np.diff(self.offsets))


def window_summary(counts: np.ndarray) -> dict[str, float | int]:
    """records, windows, min / mean / max windows per record of per-record window ``counts`` (zeros if none)."""
    counts = np.asarray(counts, dtype=np.int64)
    if not len(counts):
        return {"records": 0, "windows": 0, "min": 0, "mean": 0.0, "max": 0}
    return {"records": len(counts), "windows": int(counts.sum()), "min": int(counts.min()),
            "mean": round(float(counts.mean()), 3), "max": int(counts.max())}


def _callable_id(fn: Callable[..., Any]) -> str:
    """``module:qualname`` of a function or bound method (the family's ``prepare`` code is part of the key); a
    wrapper (``functools.partial``, a ``__wrapped__`` one such as ``RecordWindows``) is named by what it wraps,
    since what the wrapper adds (the window policy) is in the spec key."""
    target: Any = getattr(fn, "func", fn)  # functools.partial; then any chain of __wrapped__ wrappers
    while getattr(target, "__wrapped__", None) is not None:
        target = target.__wrapped__
    return f"{getattr(target, '__module__', '?')}:{getattr(target, '__qualname__', type(target).__qualname__)}"


def prepared_key(
    records: pd.DataFrame, prepare_fn: PrepareFn, *, spec_key: Mapping[str, Any], read: ReadFn = read_signal
) -> str | None:
    """sha256 over the record list with file hashes, ``spec_key``, the code that reads and prepares, and
    :data:`PIPELINE_VERSION`; None when a record has no ``content_hash`` (a change could not be seen)."""
    if "content_hash" not in records.columns or records["content_hash"].isna().any():
        return None
    return sha256_json({
        "schema": PREPARED_SCHEMA,
        "pipeline_version": PIPELINE_VERSION,
        "spec": dict(spec_key),
        "prepare": _callable_id(prepare_fn),
        "read": _callable_id(read),
        "dtype": "float32",
        "records": [[k, h] for k, h in zip(records["key"], records["content_hash"], strict=True)],
    })


def prepare_records(
    records: pd.DataFrame,
    prepare_fn: PrepareFn,
    *,
    spec_key: Mapping[str, Any],
    cache_dir: Path | None,
    read: ReadFn = read_signal,
    workers: int | None = None,
    strict: bool = False,
    chunk_size: int = 32,
) -> PreparedSet:
    """Read, validate and prepare every record of ``records`` (a ``DatasetIndex.records`` frame).

    ``spec_key`` names what determines the output besides the files (at least the
    ``InputSpec.to_dict()`` and the model family); with ``cache_dir`` the result is stored under
    a key of it plus every file's ``content_hash`` and loaded memory-mapped on a hit.
    ``workers`` processes (default and cap: the cores this process may use) read, validate and
    prepare ``chunk_size`` records at a time while this process writes the windows in index order
    (reading and preparing hold the GIL, so threads would not gain). The workers are forked, so
    ``prepare_fn`` (often a bound encoder method holding a torch module, maybe on a GPU) reaches them
    unpickled and they never touch the module; where the OS has no ``fork`` they only read (``read``
    must then pickle) and ``prepare_fn`` runs here. ``workers=1``, or one chunk of records, works here.
    ``strict=True`` raises the first bad record's error instead of excluding it (also on a hit).
    """
    if "key" not in records.columns:
        raise SpecError("records need a 'key' column (a DatasetIndex.records frame)", "records")
    if records["key"].duplicated().any():
        dup = records.loc[records["key"].duplicated(), "key"].tolist()[:5]
        raise SpecError(f"duplicate record keys {dup}", "records")
    if (workers is not None and workers < 1) or chunk_size < 1:
        raise SpecError(f"workers and chunk_size must be >= 1, got {workers}, {chunk_size}", "prepare_records")
    workers = min(workers or available_cores(), available_cores())
    try:
        json.dumps(dict(spec_key))  # it goes into the manifest: fail now, not after the build
    except TypeError as exc:
        raise SpecError(f"spec_key must be JSON-serialisable: {exc}", "spec_key") from None

    def build(out_dir: Path, key: str | None) -> None:
        _build(records, prepare_fn, read, out_dir, workers=workers, strict=strict, chunk_size=chunk_size,
               manifest={"key": key, "spec": dict(spec_key), "prepare": _callable_id(prepare_fn),
                         "read": _callable_id(read)})

    def build_uncached() -> PreparedSet:
        with tempfile.TemporaryDirectory(prefix="ecgfm-prepared-", ignore_cleanup_errors=True) as tmp:
            build(Path(tmp), None)  # a large result stays memory-mapped: POSIX keeps the unlinked file alive
            return _load_entry(Path(tmp), None, in_memory=_nbytes(Path(tmp)) <= IN_MEMORY_BYTES)

    key = None if cache_dir is None else prepared_key(records, prepare_fn, spec_key=spec_key, read=read)
    if cache_dir is None or key is None:
        if cache_dir is not None:
            warnings.warn("records without content_hash: prepared arrays are not cached", CacheWarning, stacklevel=2)
        return build_uncached()

    bucket = Path(cache_dir) / "prepared" / key[:2]
    entry = bucket / key
    problem: CacheError | None = None
    if (entry / "manifest.json").exists():
        try:  # fast path: a committed entry is immutable, no lock needed to read it
            return _check_strict(_load_entry(entry, key, from_cache=True), strict)
        except CacheError as exc:
            problem = exc  # re-checked and, if still corrupt, deleted under the lock
    lock = ExitStack()
    try:
        bucket.mkdir(parents=True, exist_ok=True)
        lock.enter_context(FileLock(bucket / f"{key}.lock"))
    except OSError as exc:
        if problem is not None:
            warnings.warn(f"corrupt prepared-array cache entry: {problem}", CacheWarning, stacklevel=2)
        warnings.warn(f"{entry}: prepared-array cache not writable ({oserror_reason(exc)}): building in a "
                      "temporary folder", CacheWarning, stacklevel=2)
        return build_uncached()
    failed: CacheError | None = None
    with lock:
        if entry.exists():
            try:
                return _check_strict(_load_entry(entry, key, from_cache=True), strict)
            except CacheError as exc:
                warnings.warn(f"deleting corrupt prepared-array cache entry: {exc}", CacheWarning, stacklevel=2)
                shutil.rmtree(entry, ignore_errors=True)
        try:
            _build_entry(entry, functools.partial(build, key=key))
        except CacheError as exc:  # the cache disk filled up, or went read-only: the records were fine
            failed = exc
    if failed is not None:  # built outside the lock: the other workers would fail the same way, not wait
        warnings.warn(f"{failed}: nothing was half-written; building in a temporary folder instead",
                      CacheWarning, stacklevel=2)
        return build_uncached()
    return _load_entry(entry, key)


def _build_entry(entry: Path, build: Callable[[Path], None]) -> None:
    """Build ``entry`` in a temp dir beside it, fsynced, and rename it in (the commit); the caller holds the
    key's lock. A failure to write the cache (not a record's error) is a ``CacheError`` naming the entry."""
    bucket, key = entry.parent, entry.name
    for stale in bucket.glob(f".{key}.*.tmp"):  # left by a killed build; we hold the key's lock
        shutil.rmtree(stale, ignore_errors=True)
    with _writing(entry):
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=bucket))
    try:
        try:
            build(tmp)
        except CacheError as exc:
            raise CacheError(exc.reason, entry) from exc  # the entry, not its temp dir's name
        with _writing(entry):
            fsync_dir(tmp)
            try:
                os.replace(tmp, entry)
            except OSError:
                if not (entry / "manifest.json").exists():
                    raise
                # another builder committed first (a lock that does not hold, e.g. across hosts): keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
            fsync_dir(bucket)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """An ``OSError`` while writing (numpy's short write names no path) → a ``CacheError`` naming ``path``.
    Wraps writes only: a record's read error (an ``OSError`` too, in strict mode) passes as it is."""
    try:
        yield
    except EcgfmError:
        raise
    except OSError as exc:
        raise CacheError(f"cannot write prepared arrays ({oserror_reason(exc)})", path) from exc


def _check_strict(prepared: PreparedSet, strict: bool) -> PreparedSet:
    """A cached entry may hold exclusions from a lenient run; a strict caller gets the first as an error."""
    if strict and prepared.excluded:
        first = prepared.excluded[0]
        raise RecordError(f"{first.reason} (cached exclusion, {len(prepared.excluded)} in all)", first.record)
    return prepared


@dataclass(frozen=True, slots=True)
class _Failure:
    """A record's read error as it crosses the process boundary: ``EcgfmError`` pickles without its path."""

    error: type[BaseException]
    args: tuple[Any, ...]

    @classmethod
    def of(cls, exc: BaseException) -> _Failure:
        return cls(type(exc), (exc.reason, exc.path) if isinstance(exc, EcgfmError) else exc.args)

    def rebuild(self) -> BaseException:
        return self.error(*self.args)


#: errors that make one record unusable (wfdb/scipy decode errors are ValueError/OSError); others are bugs
_RECORD_ERRORS = (EcgfmError, ValueError, OSError)

#: what a row becomes in a worker: its validated signal (read only), its windows (read and prepared), or why not
_Loaded = Signal | np.ndarray | _Failure
#: the ``read`` and ``prepare`` of this pool worker process (set by :func:`_init_worker`; unset in the parent)
_worker: tuple[ReadFn, PrepareFn | None] | None = None


def _init_worker(read: ReadFn, prepare_fn: PrepareFn | None) -> None:
    global _worker
    _worker = (read, prepare_fn)


def _load_rows(rows: Sequence[Mapping[str, Any]], read: ReadFn | None = None,
               prepare_fn: PrepareFn | None = None) -> list[_Loaded]:
    """Read and validate index rows and, given ``prepare_fn``, prepare them, in this process or in a pool
    worker (``read`` None: the worker's own reader and preparer)."""
    if read is None:
        assert _worker is not None, "a pool worker's initializer sets its reader"
        read, prepare_fn = _worker
    out: list[_Loaded] = []
    for row in rows:
        try:
            sig = read(row)
            reason = validate_signal(sig)
            if reason is not None:
                raise RecordError(reason, row.get("path"))
            out.append(sig if prepare_fn is None else _prepare_one(sig, prepare_fn, row))
        except _RECORD_ERRORS as exc:
            out.append(_Failure.of(exc))
    return out


def _prepare_one(sig: Signal, prepare_fn: PrepareFn, row: Mapping[str, Any]) -> np.ndarray:
    """``prepare_fn``'s windows of one signal as float32, or a :class:`RecordError` for an unusable result."""
    out = np.asarray(prepare_fn(sig.data, sig.fs, sig.leads), dtype=np.float32)
    if out.ndim < 2 or len(out) == 0:
        raise RecordError(f"prepare gave shape {out.shape}, expected (n_windows >= 1, ...)", row.get("path"))
    if not np.isfinite(out).all():
        raise RecordError("prepared windows contain NaN/inf", row.get("path"))
    return out


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _pool_context() -> multiprocessing.context.BaseContext:
    """``fork`` where the OS has it: a spawned or forkserver worker re-imports wfdb/pandas/scipy first
    (~1.5 s on a loaded 2-core machine, a third of a 4k-record build) and would need ``prepare_fn``
    pickled; the workers touch no torch/CUDA state and no lock of the parent's, as PyTorch's DataLoader
    workers rely on too."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def _loaded(
    rows: Sequence[Mapping[str, Any]], read: ReadFn, prepare_fn: PrepareFn, *, workers: int, chunk_size: int
) -> Generator[_Loaded, None, None]:
    """Each row's windows (or validated signal, or failure), in order; ``workers`` > 1 works in a process pool
    with at most ``2·workers`` chunks in flight (bounded memory), the caller writing while the pool goes on."""
    chunks = (rows[s : s + chunk_size] for s in range(0, len(rows), chunk_size))
    if workers == 1 or len(rows) <= chunk_size:
        for chunk in chunks:
            yield from _load_rows(chunk, read, prepare_fn)
        return
    context = _pool_context()
    in_workers = prepare_fn if context.get_start_method() == "fork" else None  # a spawned worker only reads
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                               initargs=(read, in_workers))
    try:
        pending: deque[Future] = deque(pool.submit(_load_rows, c) for c in islice(chunks, 2 * workers))
        while pending:
            done = pending.popleft().result()
            following = next(chunks, None)
            if following is not None:
                pending.append(pool.submit(_load_rows, following))
            yield from done
    finally:  # also on an early exit (strict error, interrupt): drop the chunks not started
        pool.shutdown(wait=True, cancel_futures=True)


def _windows(
    rows: Sequence[Mapping[str, Any]], prepare_fn: PrepareFn, read: ReadFn, *, workers: int, strict: bool,
    chunk_size: int,
) -> Iterator[tuple[str, np.ndarray | Exclusion]]:
    """(key, windows-or-exclusion) per row, in order, whichever process prepared them."""
    # closing: an error here shuts the worker pool down now, not when the traceback is collected
    with closing(_loaded(rows, read, prepare_fn, workers=workers, chunk_size=chunk_size)) as loaded:
        for row, got in zip(rows, loaded, strict=True):
            key = str(row["key"])
            try:
                if isinstance(got, _Failure):
                    raise got.rebuild()
                out = _prepare_one(got, prepare_fn, row) if isinstance(got, Signal) else got
            except _RECORD_ERRORS as exc:
                if strict:
                    raise
                yield key, Exclusion(key, str(exc))
                continue
            yield key, out


def _build(
    records: pd.DataFrame, prepare_fn: PrepareFn, read: ReadFn, out_dir: Path, *,
    workers: int, strict: bool, chunk_size: int, manifest: dict[str, Any],
) -> None:
    """Stream windows straight into ``windows.npy`` (bounded memory), then write the other entry files,
    manifest last, each fsynced (``out_dir`` is a fresh temp dir: the caller's rename of it is the commit).
    The ``.npy`` header is written for 0 windows and rewritten in place at the end: numpy pads every
    header with room for a 21-digit first axis so that a file can grow this way. Only the writes are
    wrapped in ``_writing``: a strict run's record error is not a cache error."""
    t0 = time.perf_counter()
    rows = records.to_dict("records")
    counts = np.zeros(len(rows), dtype=np.int64)
    keys: list[str] = []
    excluded: list[Exclusion] = []
    header: dict[str, Any] | None = None  # the .npy header, once the first record gives the window shape
    data_start = 0
    target = out_dir / "windows.npy"
    with _writing(target):
        fh = open(target, "xb")  # noqa: SIM115 - closed below, quietly when an error is already on its way
    try:
        for key, result in _windows(rows, prepare_fn, read, workers=workers, strict=strict, chunk_size=chunk_size):
            if isinstance(result, Exclusion):
                excluded.append(result)
                continue
            if header is None:
                header = {**np.lib.format.header_data_from_array_1_0(result), "shape": (0, *result.shape[1:])}
                with _writing(target):
                    np.lib.format.write_array_header_1_0(fh, header)
                data_start = fh.tell()
            elif result.shape[1:] != header["shape"][1:]:
                reason = (f"prepared window shape {result.shape[1:]} differs from the first record's "
                          f"{header['shape'][1:]}")
                if strict:
                    raise RecordError(reason, key)
                excluded.append(Exclusion(key, reason))
                continue
            counts[len(keys)] = len(result)
            keys.append(key)
            with _writing(target):
                result.tofile(fh)
        offsets = np.concatenate([[0], np.cumsum(counts[: len(keys)])]).astype(np.int64)
        with _writing(target):
            if header is None:  # nothing usable: an empty 1-d array, as np.save writes it
                shape: tuple[int, ...] = (0,)
                np.save(fh, np.zeros(shape, np.float32), allow_pickle=False)
            else:
                shape = (int(offsets[-1]), *header["shape"][1:])
                fh.seek(0)
                np.lib.format.write_array_header_1_0(fh, {**header, "shape": shape})
                if fh.tell() != data_start:  # cannot happen with numpy's growth padding; never write a bad file
                    raise CacheError(f"npy header grew from {data_start} to {fh.tell()} bytes", target)
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
    except BaseException:
        with suppress(OSError):  # closing flushes: on a full disk that fails again, hiding the first error
            fh.close()
        raise
    build_s = time.perf_counter() - t0
    meta = {
        **manifest, "schema": PREPARED_SCHEMA, "pipeline_version": PIPELINE_VERSION,
        "n_records": len(keys), "n_excluded": len(excluded), "windows_shape": list(shape), "dtype": "float32",
        "build_s": round(build_s, 3), "records_per_s": round(len(records) / build_s, 1) if build_s else None,
        "workers": workers,
    }
    files = {"offsets.npy": lambda out: np.save(out, offsets, allow_pickle=False),
             "keys.json": lambda out: out.write(json.dumps(keys).encode()),
             "excluded.json": lambda out: out.write(json.dumps([e.to_dict() for e in excluded]).encode())}
    for name, write in files.items():
        with _writing(out_dir / name):
            write_durable(out_dir / name, write)
    meta["files"] = {name: (out_dir / name).stat().st_size for name in _FILES}
    text = json.dumps(meta, indent=1, sort_keys=True).encode()
    with _writing(out_dir / "manifest.json"):
        write_durable(out_dir / "manifest.json", lambda out: out.write(text))


def _nbytes(entry: Path) -> int:
    return (entry / "windows.npy").stat().st_size


def _load_entry(entry: Path, key: str | None, *, in_memory: bool = False, from_cache: bool = False) -> PreparedSet:
    """Open a committed entry (memory-mapped unless ``in_memory``); any inconsistency is a CacheError."""
    try:
        manifest = json.loads((entry / "manifest.json").read_text())
        if manifest.get("schema") != PREPARED_SCHEMA or manifest.get("key") != key:
            raise CacheError(f"manifest schema/key {manifest.get('schema')}/{manifest.get('key')} "
                             f"!= {PREPARED_SCHEMA}/{key}", entry)
        for name, size in manifest["files"].items():
            if (entry / name).stat().st_size != size:
                raise CacheError(f"{name} has {(entry / name).stat().st_size} bytes, manifest says {size}", entry)
        shape = tuple(manifest["windows_shape"])
        mmap: Literal["r"] | None = None if in_memory or shape[0] == 0 else "r"
        windows = np.load(entry / "windows.npy", mmap_mode=mmap, allow_pickle=False)
        offsets = np.load(entry / "offsets.npy", allow_pickle=False)
        keys = tuple(json.loads((entry / "keys.json").read_text()))
        excluded = tuple(Exclusion(**d) for d in json.loads((entry / "excluded.json").read_text()))
    except CacheError:
        raise
    except (OSError, EOFError, ValueError, KeyError, TypeError, AttributeError) as exc:  # JSONDecodeError: ValueError
        raise CacheError(f"unreadable prepared-array entry: {type(exc).__name__}: {exc}", entry) from None
    problems = [
        (windows.dtype != np.float32, f"windows dtype {windows.dtype}"),
        (windows.shape != shape, f"windows shape {windows.shape} != manifest {shape}"),
        (offsets.dtype != np.int64 or offsets.shape != (len(keys) + 1,), f"offsets {offsets.dtype}{offsets.shape}"),
        (len(keys) != manifest["n_records"] or len(excluded) != manifest["n_excluded"], "record counts"),
        (offsets[0] != 0 or offsets[-1] != len(windows) or bool((np.diff(offsets) < 1).any()), "offsets values"),
    ]
    bad = [what for failed, what in problems if failed]
    if bad:
        raise CacheError(f"inconsistent prepared-array entry: {'; '.join(bad)}", entry)
    return PreparedSet(windows=windows, offsets=offsets, keys=keys, excluded=excluded, cache_key=key,
                       path=None if key is None else entry, from_cache=from_cache)
