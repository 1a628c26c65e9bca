"""CODE-15% in its Zenodo release form (record 4916206): ``exams.csv`` plus the HDF5 parts
``exams_part{0..17}.hdf5`` (each extracted from its zip), 345,779 exams of 233,770 patients.

Recognised by content anywhere below the data dir: a CSV whose header holds ``exam_id``,
``patient_id``, ``age``, ``is_male``, ``normal_ecg`` and the seed's six labels is the exam table
(the release names it ``exams.csv``; its other columns, ``nn_predicted_age``, ``death``,
``timey``, ``trace_file``, are not needed); an HDF5 file holding ``exam_id`` and ``tracings``
is a part, whatever its name (:mod:`~ecgfm_suite.data.code15_hdf5` reads the format). A file
named ``exams_part<n>.hdf5`` that h5py cannot open still marks its folder, so its exclusion is
reported instead of the dataset looking absent; so does a folder of parts without the table,
whose scan then names the missing ``exams.csv``.

A record is one row of a part: key ``code15/<exam_id>`` as in the Challenge 2025 WFDB form (one
exam, one key, whichever form holds it; :mod:`.code15_forms` joins the two), path = its part,
format ``hdf5``, ``n_samples`` = its length once the zero padding is trimmed, ``content_hash`` =
sha256 of its stored row. Excluded, each with the file and the reason: a part h5py cannot open
(e.g. truncated) or whose datasets have the wrong shape (one exclusion naming the part), a row
whose exam id has no row in ``exams.csv``, a repeated exam id, a tracing that is all zeros, an
``exams.csv`` line without an integer exam id or listing an exam twice.

The all-zero check runs at index time, not when a record is read: the scan reads every row
anyway to hash it (the identity that the prepared-array and embedding caches and the duplicate
grouping of the splits key on, as every WFDB loader hashes its ``.dat`` files), the index cache
keeps the result (so the ~70 GB of a full release is read once per release, not per session),
and an exam known to be empty never enters a task's split. Exams of ``exams.csv`` whose part
is not here (a subset of the 18 parts downloaded) are counted in a note, not excluded one by one.

Labels: the six (``1dAVb``, ``RBBB``, ``LBBB``, ``SB``, ``ST``, ``AF``) and ``normal_ecg`` as
True/False (None where a cell is neither); ``patient_id`` for patient-level splits; ``age`` and
``is_male``. The Chagas labels that the Challenge 2025 published for these exams
(``code15_chagas_labels.csv``: ``exam_id``, ``chagas``) are read when that file sits beside
``exams.csv``. The version is ``zenodo4916206.`` + the first 12 hex digits of ``exams.csv``'s
sha256: the release's label table identifies it, and the parts' bytes are in every record's hash.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import RecordError
from ..code15_hdf5 import (
    FORMAT,
    FS,
    LEADS,
    StoredRow,
    has_release_datasets,
    is_hdf5_name,
    open_part,
    part_layout,
    stored_rows,
)
from ..tasks.vocab import CODE15_ABNORMALITIES
from ._common import RecordScan, Tree, csv_columns, parse_age, read_table
from .code15 import DATASET, REGION

TABLE = "exams.csv"
CHAGAS_TABLE = "code15_chagas_labels.csv"
ZENODO_RECORD = "4916206"
NORMAL = "normal_ecg"
#: the exams.csv columns the loader reads (and by which the table is recognised)
REQUIRED: tuple[str, ...] = ("exam_id", "patient_id", "age", "is_male", NORMAL, *CODE15_ABNORMALITIES)
#: label columns of the index (``chagas`` only from ``code15_chagas_labels.csv`` or the WFDB form)
LABEL_COLUMNS: tuple[str, ...] = ("exam_id", *CODE15_ABNORMALITIES, NORMAL, "chagas")
#: HDF5 files opened per folder by the finder before deciding the folder holds no part
FILES_PER_FOLDER = 3

_PART_NAME = re.compile(r"^exams_part\d+\.hdf5$", re.IGNORECASE)
_BOOL = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}


def is_exams_table(path: Path) -> bool:
    """Whether ``path``'s header row names every column of :data:`REQUIRED` (reads one line)."""
    return set(REQUIRED) <= set(csv_columns(path))


def _holds_part(folder: Path, names: Iterable[str]) -> bool:
    candidates = [n for n in names if is_hdf5_name(n)]
    if any(_PART_NAME.match(n) for n in candidates):
        return True
    return any(has_release_datasets(folder / n) for n in candidates[:FILES_PER_FOLDER])


def release_dirs(tree: Tree) -> list[Path]:
    """Folders of ``tree`` holding the release's exam table or one of its HDF5 parts (sorted)."""
    return sorted(d for d, names in tree.items()
                  if (TABLE in names and is_exams_table(d / TABLE)) or _holds_part(d, names))


def exam_key(value: Any) -> str | None:
    """An exam id as the index writes it (``"123"``; ``" 123.0"`` too), or None when it is not an integer."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return None
    return str(int(number)) if number.is_integer() else None


def _bool(value: Any) -> bool | None:
    return _BOOL.get(str(value).strip().lower())


@dataclass(slots=True)
class Release:
    """What the release form holds below a root: its records, its exam table and what is missing."""

    records: RecordScan
    #: exam id → the index fields exams.csv gives it (demographics and labels)
    table: dict[str, dict[str, Any]] = field(default_factory=dict)
    table_path: Path | None = None
    version: str | None = None
    missing_label_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def scan_release(root: Path, tree: Tree, strict: bool = False) -> Release:
    """Index every exam of the release below ``root`` (``tree``: its :func:`list_tree`)."""
    release = Release(records=RecordScan(root=root, strict=strict))
    tables = sorted((d / TABLE for d, names in tree.items() if TABLE in names and is_exams_table(d / TABLE)),
                    key=lambda p: (len(p.parts), str(p)))
    parts = sorted((d / n for d, names in tree.items() for n in names if is_hdf5_name(n)), key=_natural)
    if not tables:
        release.missing_label_files.append(root / TABLE)
        for part in parts:
            release.records.exclude(part, f"no {TABLE} below {root}: the exams of this part have no labels, "
                                          "patient ids or demographics", part)
        return release
    release.table_path = tables[0]
    release.notes += [f"{t} ignored: the exam table read is {tables[0]}" for t in tables[1:]]
    release.table = _read_table(tables[0], release.records)
    release.version = f"zenodo{ZENODO_RECORD}.{_sha256(tables[0])[:12]}"
    _read_chagas(tables[0].with_name(CHAGAS_TABLE), release)
    seen: dict[str, str] = {}
    for part in parts:
        _scan_part(part, release, seen)
    return release


def _natural(path: Path) -> tuple[Any, ...]:
    """``exams_part2`` before ``exams_part10``."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path)))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _read_table(path: Path, records: RecordScan) -> dict[str, dict[str, Any]]:
    """exams.csv → exam id → fields; a line without an integer exam id, or repeating one, is excluded."""
    frame = read_table(path, required=REQUIRED, dtype=str, keep_default_na=False)
    table: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    labels = (*CODE15_ABNORMALITIES, NORMAL)
    for line, (exam_id, patient, age, male, *values) in enumerate(
            zip(*(frame[c] for c in ("exam_id", "patient_id", "age", "is_male", *labels)), strict=True), start=2):
        exam = exam_key(exam_id)
        if exam is None:
            records.exclude(path, f"{TABLE} line {line}: exam_id {exam_id!r} is not an integer", path)
            continue
        if exam in table:
            records.exclude(path, f"{TABLE} line {line}: exam {exam} listed again (line {lines[exam]} kept)", path)
            continue
        lines[exam] = line
        sex = _bool(male)
        table[exam] = {"patient_id": exam_key(patient) or (patient.strip() or None), "age": parse_age(age),
                       "sex": None if sex is None else "M" if sex else "F",
                       **{label: _bool(v) for label, v in zip(labels, values, strict=True)}}
    return table


def _read_chagas(path: Path, release: Release) -> None:
    """The Challenge 2025's ``code15_chagas_labels.csv`` beside exams.csv, when there: ``chagas`` per exam."""
    if not path.is_file():
        return
    frame = read_table(path, required=("exam_id", "chagas"), dtype=str, keep_default_na=False)
    for exam_id, chagas in zip(frame["exam_id"], frame["chagas"], strict=True):
        exam = exam_key(exam_id)
        if exam in release.table:
            release.table[exam]["chagas"] = _bool(chagas)


def _scan_part(part: Path, release: Release, seen: dict[str, str]) -> None:
    """Index one part's rows; a part that cannot be opened or has the wrong layout is one exclusion."""
    records = release.records
    try:
        with open_part(part) as f:
            layout = part_layout(f, part)
            rows = list(stored_rows(f, layout))
    except RecordError as exc:
        records.exclude(part, exc.reason, part)
        return
    for stored in rows:
        exam = str(stored.exam_id)
        where = f"{part.name} row {stored.row}"
        record = part.with_name(f"{part.name}#{exam}")
        if not isinstance(stored, StoredRow):
            records.exclude(record, f"{where}: {stored.reason}", part)
        elif exam not in release.table:
            records.exclude(record, f"{where}: exam id {exam} has no row in {TABLE}", part)
        elif exam in seen:
            records.exclude(record, f"{where}: exam {exam} again (first in {seen[exam]})", part)
        elif stored.stop == stored.start:
            records.exclude(record, f"{where}: exam {exam}'s tracing is all zeros", part)
        else:
            seen[exam] = where
            records.rows.append(_row(part, exam, stored, release.table[exam]))


def _row(part: Path, exam: str, stored: StoredRow, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": f"{DATASET}/{exam}", "record_id": exam, "path": str(part), "format": FORMAT, "fs": FS,
        "n_samples": stored.stop - stored.start, "leads": ",".join(LEADS), "region": REGION, "source": DATASET,
        "content_hash": stored.content_hash, "exam_id": exam, "chagas": None, **fields,
    }
