"""CODE-15% as one dataset in either or both of its forms: one record per exam.

The forms: the Zenodo release (:mod:`.code15_native`: ``exams.csv`` and HDF5 parts, with the
seed's six abnormality labels) and the PhysioNet Challenge 2025 WFDB conversion
(:mod:`.code15`: one record per exam, Chagas labels). Both key an exam ``code15/<exam_id>``, so a
task (the pooled and harmonised ones included) sees an exam once whichever forms are below the
data dir, and its embedding cache entry, split group and baselines follow the exam.

When both forms hold an exam, the release's row is kept: its samples are the stored float32
values, of which the WFDB copy is a rounding to 1 µV (clipped to ±32.767 mV, trimmed the same
way), and ``exams.csv`` holds its labels. The WFDB header's Chagas label is copied onto it; the
WFDB record is counted in a note, not excluded (no exam is lost). A WFDB record whose exam is in
``exams.csv`` but in no part found takes its labels from ``exams.csv`` (the labels exist, only
the form differs).

The root is the deepest folder holding every folder of either form (``common_root``), so one
scan sees both forms and one index-cache entry covers them (invalidated when a file of either
changes). The version names the forms read: ``2025`` (the WFDB form, as before),
``zenodo4916206.<exams.csv digest>``, or both joined by ``+``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..records import DatasetIndex
from . import DATASETS, code15, code15_native
from ._common import Tree, build_index, list_tree
from ._header_roots import common_root


def find_roots(data_dir: str | Path, tree: Tree | None = None) -> list[Path]:
    """The folder holding every CODE-15% folder of either form below ``data_dir``, or ``[]``."""
    tree = tree if tree is not None else list_tree(data_dir)
    return common_root([*code15.code15_dirs(tree), *code15_native.release_dirs(tree)])


def scan(root: str | Path, strict: bool = False) -> DatasetIndex:
    """Index CODE-15% below ``root`` in whichever forms are there (only WFDB: exactly :func:`.code15.scan`)."""
    root = Path(root).expanduser().resolve()
    tree = list_tree(root)
    if not code15_native.release_dirs(tree):
        return code15.scan(root, strict)
    release = code15_native.scan_release(root, tree, strict)
    wfdb = code15.scan(root, strict) if code15.code15_dirs(tree) else None
    rows = release.records.rows
    kept = {row["exam_id"]: row for row in rows}
    notes = list(release.notes)
    twins = []
    for row in wfdb.records.to_dict("records") if wfdb is not None else ():
        exam = code15_native.exam_key(row["exam_id"]) or str(row["exam_id"])
        if exam in kept:
            twin = kept[exam]
            if twin["chagas"] is None:
                twin["chagas"] = row["chagas"]
            twins.append(exam)
            continue
        rows.append(_with_labels(row, release.table.get(exam)))
    if twins:
        notes.append(f"{len(twins):,} exams are in both forms (e.g. {', '.join(twins[:3])}): each counted once, "
                     "from its HDF5 row (the stored samples; the WFDB copy rounds them to 1 µV), with the WFDB "
                     "header's Chagas label")
    notes += _unfound(release, {row["exam_id"] for row in rows})
    versions = [v for v in (wfdb.version if wfdb is not None else None, release.version) if v]
    return _index(root, rows, versions, release, wfdb, notes)


def _index(root: Path, rows: list[dict[str, Any]], versions: list[str], release: code15_native.Release,
           wfdb: DatasetIndex | None, notes: list[str]) -> DatasetIndex:
    index = build_index(
        dataset=code15.DATASET, version="+".join(versions) or DATASETS.get(code15.DATASET).version, root=root,
        rows=rows, label_columns=tuple(dict.fromkeys((*code15.LABEL_COLUMNS, *code15_native.LABEL_COLUMNS))),
        excluded=[*release.records.excluded, *(wfdb.excluded if wfdb is not None else ())],
        missing_label_files=release.missing_label_files,
    )
    index.notes.extend(notes)
    return index


def _with_labels(row: dict[str, Any], fields: dict[str, Any] | None) -> dict[str, Any]:
    """A WFDB-form row, with the exams.csv labels of its exam where the table lists it."""
    if fields is None:
        return row
    labels = {k: v for k, v in fields.items() if k in code15_native.LABEL_COLUMNS and k != "chagas"}
    return {**row, **labels}


def _unfound(release: code15_native.Release, indexed: set[str]) -> list[str]:
    """A note counting the exams of exams.csv that neither form holds here (e.g. parts not downloaded)."""
    absent = len(set(release.table) - indexed)
    if not absent or release.table_path is None:
        return []
    return [f"{absent:,} of the {len(release.table):,} exams of {release.table_path} have no tracing here "
            "(their HDF5 parts are not below the root, or they were left out: see the exclusions)"]
