"""MIMIC-IV-ECG 1.0 (diagnostic ECGs matched to the MIMIC-IV clinical database): 12 leads, 500 Hz, 10 s, WFDB.

The release (PhysioNet, open access) holds, at its root:

- ``record_list.csv``: ``subject_id``, ``study_id``, ``file_name``, ``ecg_time``, ``path`` (the record
  relative to the root, without extension: ``files/p1000/p10000032/s40689238/40689238``);
- ``machine_measurements.csv``: ``subject_id``, ``study_id``, ``cart_id``, ``ecg_time``, the machine's
  report statements ``report_0`` … ``report_17`` (one per cell, most empty), ``bandwidth``, ``filtering``
  and its global measurements ``rr_interval``, ``p_onset``, ``p_end``, ``qrs_onset``, ``qrs_end``,
  ``t_end`` (ms) and ``p_axis``, ``qrs_axis``, ``t_axis`` (degrees);
- ``files/p<first 4 digits>/p<subject_id>/s<study_id>/<study_id>.{hea,dat}``: the records.

Recognised by ``record_list.csv`` with its columns, or by that record tree without it (so that ``scan``
says the table is missing instead of the dataset looking absent). ``subject_id`` is the patient (splits
are patient-level). The module has no age or sex (they live in MIMIC-IV's ``hosp`` module). The report
statements are kept as a tuple per record (``reports``; None when the study has no measurements row)
and the measurements as they are (NaN when empty); the tasks (``data.tasks.mimic_iv_ecg``) map the
statements and turn onsets and offsets into durations, excluding implausible ones. Records on disk that
``record_list.csv`` does not list are not looked for (the release lists every record; globbing 800,035
study folders would cost more than the scan saves).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..reader import header_path
from ..records import DatasetIndex
from ._common import RecordScan, Tree, csv_columns, dirs_containing, list_tree, read_table, wfdb_row

DATASET = "mimic_iv_ecg"
VERSION = "1.0"
RECORD_LIST = "record_list.csv"
MEASUREMENTS = "machine_measurements.csv"
RECORD_LIST_COLUMNS: tuple[str, ...] = ("subject_id", "study_id", "path")
#: the measurements the tasks use (the others are kept too, when present)
MEASUREMENT_COLUMNS: tuple[str, ...] = ("rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end",
                                        "p_axis", "qrs_axis", "t_axis")
LABEL_COLUMNS: tuple[str, ...] = ("subject_id", "study_id", "reports", *MEASUREMENT_COLUMNS)
_REPORT = re.compile(r"report_(\d+)")
_NUMBERED = re.compile(r"([ps])(\d+)")


def _release_root(folder: Path, files: tuple[str, ...]) -> Path | None:
    """The release root of ``files/pNNNN/pXXXXXXXX/sYYYYYYYY/`` holding ``YYYYYYYY.hea`` (the group being the
    subject's first digits), or None for any other folder (rejected on its own name first: the tree is large)."""
    study = _NUMBERED.fullmatch(folder.name)
    if study is None or study[1] != "s" or f"{study[2]}.hea" not in files:
        return None
    subject_dir = folder.parent
    group_dir = subject_dir.parent
    subject, group = _NUMBERED.fullmatch(subject_dir.name), _NUMBERED.fullmatch(group_dir.name)
    if subject is None or group is None or (subject[1], group[1]) != ("p", "p") or not subject[2].startswith(group[2]):
        return None
    files_dir = group_dir.parent
    return files_dir.parent if files_dir.name == "files" and files_dir.parent != files_dir else None


def find_roots(data_dir: Path, tree: Tree | None = None) -> list[Path]:
    """Folders below ``data_dir`` holding ``record_list.csv`` with its columns, or the parent of a ``files/`` record
    tree in the release layout without it."""
    tree = tree if tree is not None else list_tree(data_dir)
    roots = {d for d in dirs_containing(tree, RECORD_LIST)
             if set(RECORD_LIST_COLUMNS) <= set(csv_columns(d / RECORD_LIST))}
    roots.update(r for d, files in tree.items() if (r := _release_root(d, files)) is not None)
    return sorted(roots)


def scan(root: Path, strict: bool = False) -> DatasetIndex:
    """Index the rows of ``root/record_list.csv`` with their machine statements and measurements."""
    root = Path(root)
    list_path, measurements_path = root / RECORD_LIST, root / MEASUREMENTS
    if not list_path.is_file():  # its tasks skip naming the table (``data.tasks.build``)
        return RecordScan(root, strict).index(dataset=DATASET, version=VERSION, label_columns=LABEL_COLUMNS,
                                              missing_label_files=[list_path])
    table = read_table(list_path, required=RECORD_LIST_COLUMNS, dtype=str, keep_default_na=False)
    machine, notes = read_measurements(measurements_path) if measurements_path.is_file() else ({}, [])
    result = RecordScan(root, strict)
    seen: set[str] = set()
    for subject, study, rel in zip(table["subject_id"].str.strip(), table["study_id"].str.strip(),
                                   table["path"].str.strip(), strict=True):
        record = root / rel
        if not (subject.isdigit() and study.isdigit()):
            result.exclude(record, f"{RECORD_LIST} row has subject_id {subject!r}, study_id {study!r}: not numeric "
                           "ids", list_path)
            continue
        if study in seen:
            result.exclude(record, f"study_id {study} is listed twice in {RECORD_LIST} (first row kept)", list_path)
            continue
        seen.add(study)
        if not rel or not header_path(record).is_file():
            result.exclude(record, f"{RECORD_LIST} row study_id {study} names {rel or 'no path'}, not found below "
                           f"{root}", list_path)
            continue
        row = machine.get(study)
        if row is not None and row["subject_id"] != subject:
            result.exclude(record, f"{MEASUREMENTS} gives study_id {study} subject_id {row['subject_id']}, "
                           f"{RECORD_LIST} {subject}", measurements_path)
            continue
        result.add(record, functools.partial(_row, record, subject, study, row))
    index = result.index(dataset=DATASET, version=VERSION, label_columns=LABEL_COLUMNS,
                         missing_label_files=[] if measurements_path.is_file() else [measurements_path])
    index.notes.extend(notes)
    return index


def read_measurements(path: Path) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``machine_measurements.csv`` → study_id → {subject_id, reports, measurements}, and notes on repeated rows."""
    table = read_table(path, required=("subject_id", "study_id", "report_0", "qrs_onset", "qrs_end", "t_end"),
                       dtype=str, keep_default_na=False)
    reports = sorted((c for c in table.columns if _REPORT.fullmatch(c)), key=lambda c: int(c[len("report_"):]))
    measured = [c for c in MEASUREMENT_COLUMNS if c in table.columns]
    values = {c: pd.to_numeric(table[c].str.strip(), errors="coerce").to_numpy(dtype=np.float64) for c in measured}
    statements = table[reports].to_numpy(dtype=object)
    out: dict[str, dict[str, Any]] = {}
    repeated = 0
    for i, (subject, study) in enumerate(zip(table["subject_id"].str.strip(), table["study_id"].str.strip(),
                                             strict=True)):
        if study in out:
            repeated += 1
            continue
        out[study] = {"subject_id": subject,
                      "reports": tuple(s for s in (str(c).strip() for c in statements[i]) if s),
                      **{c: float(values[c][i]) for c in measured}}
    notes = [f"{path.name}: {repeated} study_id rows repeat an earlier one (first kept)"] if repeated else []
    return out, notes


def _row(record: Path, subject: str, study: str, machine: Mapping[str, Any] | None) -> dict[str, Any]:
    row = wfdb_row(dataset=DATASET, record_id=study, record_path=record, region="USA", patient_id=subject)
    row.update({"subject_id": subject, "study_id": study,
                "reports": None if machine is None else machine["reports"],
                **{c: math.nan if machine is None else machine.get(c, math.nan) for c in MEASUREMENT_COLUMNS}})
    return row
