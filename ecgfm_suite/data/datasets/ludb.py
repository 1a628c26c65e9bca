"""LUDB 1.0.1 (Lobachevsky University ECG database): 200 records, 12 leads, 500 Hz, 10 s.

Recognised by ``ludb.csv``. Labels come from that table, whose cells hold embedded and
newline-separated values (``"F\\n"``, two rhythms in one cell), so it goes through a real CSV
parser. Age comes from the header (``#<age>: 90``) because the table writes ``>89``.
Note: every LUDB lead's ADC gain equals its digital peak-to-peak, so each decoded lead spans
exactly 1 mV — absolute amplitude is not available from this release.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pandas as pd

from ...errors import RecordError
from ..reader import read_header
from ..records import DatasetIndex
from ._common import (
    RecordScan,
    Tree,
    comment_fields,
    dirs_containing,
    list_tree,
    parse_age,
    parse_sex,
    peek_header,
    read_table,
    wfdb_row,
)

DATASET = "ludb"
VERSION = "1.0.1"
MARKER = "ludb.csv"

#: label column → ``ludb.csv`` column (each a tuple of normalised statements)
STATEMENT_COLUMNS: dict[str, str] = {
    "rhythm": "Rhythms",
    "conduction": "Conduction abnormalities",
    "hypertrophy": "Hypertrophies",
    "ischemia": "Ischemia",
    "extrasystole": "Extrasystolies",
    "pacing": "Cardiac pacing",
    "repolarization": "Non-specific repolarization abnormalities",
    "other": "Other states",
}
AXIS_COLUMN = "Electric axis of the heart"
LABEL_COLUMNS: tuple[str, ...] = (*STATEMENT_COLUMNS, "axis")


def find_roots(data_dir: Path, tree: Tree | None = None) -> list[Path]:
    """Folders below ``data_dir`` holding ``ludb.csv``, or LUDB's records without it (a ``<n>.hea`` with its
    per-lead annotation ``<n>.avf`` and a ``<diagnoses>:`` header comment), so that ``scan`` says the table
    is missing instead of the dataset looking absent."""
    tree = tree if tree is not None else list_tree(data_dir)
    roots = set(dirs_containing(tree, MARKER))
    for d, files in tree.items():
        annotated = [f for f in files if f.endswith(".hea") and f"{f[:-4]}.avf" in files]
        header = peek_header(d, annotated, tries=1) if annotated else None
        if header is not None and any(c.strip().startswith("<diagnoses>") for c in header.comments):
            roots.add(d.parent if d.name == "data" else d)
    return sorted(roots)


def statements(cell: str) -> tuple[str, ...]:
    """A ``ludb.csv`` cell → its newline-separated statements, lower-case, stripped, trailing '.' removed."""
    out = (line.strip().rstrip(".").strip().lower() for line in str(cell).splitlines())
    return tuple(s for s in out if s)


def axis(cell: str) -> str | None:
    """``"Electric axis of the heart: left axis deviation"`` → ``"left axis deviation"``; empty → None."""
    values = statements(cell)
    if not values:
        return None
    head, sep, tail = values[0].partition(":")
    return tail.strip() if sep and head.strip() == AXIS_COLUMN.lower() else values[0]


def scan(root: Path, strict: bool = False) -> DatasetIndex:
    """Index the records listed in ``root/ludb.csv``; headers are looked for below ``root/data/`` (the release
    layout), or below ``root`` when there is no ``data/`` folder."""
    root = Path(root)
    table_path = root / MARKER
    if not table_path.is_file():  # its tasks skip naming the table (``data.tasks.build``)
        return RecordScan(root, strict).index(dataset=DATASET, version=VERSION, label_columns=LABEL_COLUMNS,
                                              missing_label_files=[table_path])
    table = read_table(table_path, required=("ID", "Sex", "Age", AXIS_COLUMN, *STATEMENT_COLUMNS.values()),
                       dtype=str, keep_default_na=False)
    search = root / "data" if (root / "data").is_dir() else root
    headers: dict[str, list[Path]] = {}
    for hea in sorted(search.rglob("*.hea")):
        headers.setdefault(hea.stem, []).append(hea.with_suffix(""))
    result = RecordScan(root, strict)
    listed: set[str] = set()
    for _, entry in table.iterrows():
        record_id = entry["ID"].strip()
        if record_id in listed:
            result.exclude(root / record_id, f"record {record_id} is listed twice in {MARKER} (first row kept)",
                           table_path)
            continue
        listed.add(record_id)
        found = headers.get(record_id, [])
        if len(found) != 1:
            why = "no header file" if not found else f"{len(found)} header files ({', '.join(map(str, found))})"
            result.exclude(root / record_id, f"{MARKER} lists record {record_id} but {why} found below {search}",
                           table_path)
            continue
        result.add(found[0], functools.partial(_row, found[0], entry, record_id))
    for record_id, paths in sorted(headers.items()):
        if record_id not in listed:
            for path in paths:
                result.exclude(path, f"missing label: record {record_id} has no row in {MARKER}", table_path)
    return result.index(dataset=DATASET, version=VERSION, label_columns=LABEL_COLUMNS)


def _row(path: Path, entry: pd.Series, record_id: str) -> dict:
    header = read_header(path)
    comments = comment_fields(header.comments)
    header_sex, table_sex = parse_sex(comments.get("sex")), parse_sex(entry["Sex"])
    if header_sex and table_sex and header_sex != table_sex:
        raise RecordError(f"sex {header_sex} in header, {table_sex} in {MARKER}", path.with_suffix(".hea"))
    age = parse_age(comments.get("age"))
    row = wfdb_row(dataset=DATASET, record_id=record_id, record_path=path, header=header, region="Russia",
                   patient_id=record_id, age=age if age == age else parse_age(entry["Age"]),
                   sex=header_sex or table_sex)
    row.update({label: statements(entry[column]) for label, column in STATEMENT_COLUMNS.items()})
    row["axis"] = axis(entry[AXIS_COLUMN])
    return row
