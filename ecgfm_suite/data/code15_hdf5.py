"""CODE-15%'s Zenodo release format: ``exams_part{i}.hdf5`` parts holding ``exam_id`` (N,) and
``tracings`` (N, 4096, 12) float32 at 400 Hz, leads I, II, III, aVR, aVL, aVF, V1–V6.

Read with h5py one row at a time (a part is ~4 GB uncompressed; 345,779 exams in 18 parts), so no
part is ever held in memory: the index scan reads :data:`BLOCK_ROWS` rows at a time, a record read
reads its own row.

**Scale.** The stored values are millivolts, read as they are (:data:`TO_MV` = 1). The authors'
README calls them "at the scale 1e-4V" and in the same sentence says a signal in V "should be
multiplied by 1000", which is mV; the PhysioNet Challenge 2025 conversion of these very files
(``prepare_code15_data.py``) writes ``round(1000 · tracings)`` with gain 1000/mV, i.e. reads them as mV.
So the two CODE-15% forms decode one exam to the same samples (to the Challenge's 1 µV rounding,
tested), and the 60 shared Challenge records of these exams have a median peak-to-peak of
2.3 mV (1.0–11.3), inside :data:`~ecgfm_suite.data.records.PLAUSIBLE_PTP_MV`; read as 1e-4 V they
would be 0.23 mV, a tenth of a normal QRS.

**Padding.** Exams shorter than 4,096 samples are zero-padded symmetrically. The rows before the
first and after the last sample with any non-zero lead are trimmed (:func:`active_span`), exactly
as the Challenge conversion trims them, so trimming never differs between the forms; a row that is
all zeros holds no exam.

**Processes.** Records are read in worker processes (``--ecgfm-read-workers``, forked): each read
opens and closes its part, so no HDF5 handle crosses a fork; only the part's exam-id → row map
(plain numpy data, keyed by the file's size and mtime) is cached per process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import RecordError
from .records import STD_LEADS, Signal

#: the ``format`` of an index row read by :func:`read_hdf5_record`
FORMAT = "hdf5"
FS = 400.0
#: the release's lead order is the canonical one
LEADS: tuple[str, ...] = STD_LEADS
#: samples per stored tracing (shorter exams padded to it)
N_SAMPLES = 4096
#: stored value → mV (see the module docstring)
TO_MV = 1.0
#: rows read at a time while indexing: 128 × 4096 × 12 float32 = 25 MB
BLOCK_ROWS = 128
#: file name endings of HDF5 files worth opening
EXTENSIONS: tuple[str, ...] = (".hdf5", ".h5", ".hdf")
EXAM_ID, TRACINGS = "exam_id", "tracings"


@dataclass(frozen=True, slots=True)
class Part:
    """An opened part's layout, checked: ``exam_ids`` (int64, N) and ``n_samples`` per stored tracing."""

    path: Path
    exam_ids: np.ndarray
    n_samples: int


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One row of a part as the index needs it: ``[start, stop)`` non-zero span (empty: all zeros)."""

    row: int
    exam_id: int
    start: int
    stop: int
    content_hash: str


@dataclass(frozen=True, slots=True)
class RowFailure:
    """A row whose samples could not be read (the reason names h5py's error)."""

    row: int
    exam_id: int
    reason: str


def is_hdf5_name(name: str) -> bool:
    return name.lower().endswith(EXTENSIONS)


def open_part(path: str | Path) -> h5py.File:
    """The part, open for reading; :class:`RecordError` naming it when h5py cannot open it (truncated, not HDF5)."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise RecordError(f"cannot open HDF5 file: {exc}", path) from None


def has_release_datasets(path: str | Path) -> bool:
    """Whether ``path`` opens as HDF5 holding ``exam_id`` and ``tracings`` (a finder's content check)."""
    try:
        with h5py.File(path, "r") as f:
            return EXAM_ID in f and TRACINGS in f
    except OSError:
        return False


def part_layout(f: h5py.File, path: str | Path) -> Part:
    """Check that ``f`` holds ``exam_id`` (N,) integers and ``tracings`` (N, samples, 12) floats.

    Raises :class:`RecordError` naming ``path`` and the shapes found, so a part written in another layout
    (transposed tracings, a lead missing, ids and tracings of different lengths) is one clear exclusion.
    """
    missing = [name for name in (EXAM_ID, TRACINGS) if not isinstance(f.get(name), h5py.Dataset)]
    if missing:
        raise RecordError(f"no {' or '.join(repr(m) for m in missing)} dataset (has: {', '.join(f) or 'nothing'})",
                          path)
    ids, tracings = f[EXAM_ID], f[TRACINGS]
    exam_ids = np.asarray(ids[:]) if ids.ndim == 1 and ids.dtype.kind in "iuf" else None
    if exam_ids is None or (exam_ids.dtype.kind == "f" and not np.array_equal(exam_ids, np.round(exam_ids))):
        raise RecordError(f"'exam_id' is {ids.dtype} of shape {ids.shape}, expected integers of shape (N,)", path)
    n = ids.shape[0]
    if tracings.ndim != 3 or tracings.shape[0] != n or tracings.shape[2] != len(LEADS) or tracings.shape[1] < 1:
        raise RecordError(f"'tracings' has shape {tracings.shape}, expected ({n}, samples, {len(LEADS)}) for its "
                          f"{n} exam ids (the release: ({n}, {N_SAMPLES}, {len(LEADS)}))", path)
    if tracings.dtype.kind != "f":
        raise RecordError(f"'tracings' holds {tracings.dtype}, expected floating point (mV)", path)
    return Part(path=Path(path), exam_ids=exam_ids.astype(np.int64), n_samples=int(tracings.shape[1]))


def active_span(tracing: np.ndarray) -> tuple[int, int]:
    """``[start, stop)`` of the samples between the zero padding of one (samples, leads) tracing; (0, 0) if all zero.

    Only whole rows of zeros at either end are padding (a sample where every lead is exactly 0.0);
    NaN counts as data, left for the signal checks to judge.
    """
    live = np.flatnonzero((tracing != 0).any(axis=1))
    return (int(live[0]), int(live[-1]) + 1) if live.size else (0, 0)


def stored_rows(f: h5py.File, part: Part, block_rows: int = BLOCK_ROWS) -> Iterator[StoredRow | RowFailure]:
    """Every row of ``part``: its non-zero span and the sha256 of its stored bytes, ``block_rows`` rows at a time.

    The hash is of the row as stored (float32, samples × leads, C order): the record's identity for the
    prepared-array and embedding caches, as a WFDB record's is its ``.dat`` bytes. A block h5py cannot
    read is retried row by row, so one bad chunk costs its own rows only.
    """
    tracings = f[TRACINGS]
    n = len(part.exam_ids)
    for first in range(0, n, block_rows):
        last = min(first + block_rows, n)
        try:
            block = np.ascontiguousarray(tracings[first:last])
        except (OSError, ValueError):
            for row in range(first, last):
                yield from _one_row(tracings, part, row)
            continue
        yield from _rows_of_block(block, part, first)


def _one_row(tracings: h5py.Dataset, part: Part, row: int) -> Iterator[StoredRow | RowFailure]:
    try:
        block = np.ascontiguousarray(tracings[row : row + 1])
    except (OSError, ValueError) as exc:
        yield RowFailure(row=row, exam_id=int(part.exam_ids[row]), reason=f"cannot read the tracing: {exc}")
        return
    yield from _rows_of_block(block, part, row)


def _rows_of_block(block: np.ndarray, part: Part, first: int) -> Iterator[StoredRow]:
    live = (block != 0).any(axis=2)  # (rows, samples)
    any_live = live.any(axis=1)
    starts = live.argmax(axis=1)
    stops = live.shape[1] - live[:, ::-1].argmax(axis=1)
    for i in range(block.shape[0]):
        start, stop = (int(starts[i]), int(stops[i])) if any_live[i] else (0, 0)
        yield StoredRow(row=first + i, exam_id=int(part.exam_ids[first + i]), start=start, stop=stop,
                        content_hash=hashlib.sha256(block[i]).hexdigest())


#: (path, size, mtime_ns) → exam id → row, per process (ids only: no HDF5 handle is kept)
_ROW_MAPS: dict[tuple[str, int, int], dict[int, int]] = {}
_MAX_ROW_MAPS = 32


def _row_of(f: h5py.File, path: Path) -> dict[int, int]:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    rows = _ROW_MAPS.get(key)
    if rows is None:
        part = part_layout(f, path)
        ids, first = np.unique(part.exam_ids, return_index=True)  # a repeated id: its first row (as the scan)
        rows = dict(zip(ids.tolist(), first.tolist(), strict=True))
        if len(_ROW_MAPS) >= _MAX_ROW_MAPS:
            _ROW_MAPS.clear()
        _ROW_MAPS[key] = rows
    return rows


def read_hdf5_record(row: Mapping[str, Any]) -> Signal:
    """One exam of an index row (``path``: its part; ``record_id``: its exam id), padding trimmed, in mV.

    A part that no longer holds the exam, or whose trimmed length differs from the row's ``n_samples``,
    changed since the scan: :class:`RecordError` naming the part.
    """
    path = Path(row["path"])
    try:
        exam = int(row["record_id"])
    except (KeyError, TypeError, ValueError):
        raise RecordError(f"index row has no integer exam id (record_id {row.get('record_id')!r})", path) from None
    try:
        with open_part(path) as f:
            where = _row_of(f, path).get(exam)
            if where is None:
                raise RecordError(f"exam {exam} is not in this part (file changed since the scan?)", path)
            tracing = np.asarray(f[TRACINGS][where], dtype=np.float32)
    except (OSError, ValueError) as exc:  # a part that vanished, or a chunk h5py cannot decode
        raise RecordError(f"cannot read exam {exam}: {exc}", path) from None
    start, stop = active_span(tracing)
    if stop == start:
        raise RecordError(f"exam {exam}: the tracing is all zeros", path)
    want = row.get("n_samples")
    if want is not None and not (isinstance(want, float) and np.isnan(want)) and int(want) != stop - start:
        raise RecordError(f"exam {exam} holds {stop - start} samples after trimming, index says {want} "
                          "(file changed since the scan?)", path)
    data = tracing[start:stop].T * np.float32(TO_MV)
    return Signal(data=np.ascontiguousarray(data, dtype=np.float32), fs=FS, leads=LEADS)
