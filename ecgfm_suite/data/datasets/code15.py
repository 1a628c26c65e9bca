"""CODE-15% in the PhysioNet Challenge 2025 WFDB form (Brazil, 400 Hz, Chagas labels).

The Challenge's ``prepare_code15_data.py`` writes one WFDB record per exam with the labels
as header comments (``# Exam ID:``, ``# Patient ID:``, ``# Age:``, ``# Sex:``,
``# Chagas label:``) and trims the zero padding, so lengths vary (1,205–4,096 samples).
Lead names are upper case (``AVR``) and are canonicalised. Later versions of the script add
``# Source: CODE-15%``; SaMi-Trop and PTB-XL converted by the same Challenge carry a
``# Chagas label:`` too, so a header naming another source is not CODE-15%.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from ...errors import RecordError
from ..reader import header_path, read_header
from ..records import DatasetIndex
from . import DATASETS
from ._common import RecordScan, Tree, comment_fields, list_tree, parse_age, parse_sex, wfdb_row
from ._header_roots import common_root, dirs_with_comment

DATASET = "code15"
REGION = "Brazil"
LABEL_COLUMNS: tuple[str, ...] = ("chagas", "exam_id")

_BOOL = {"true": True, "1": True, "false": False, "0": False}


def _is_code15(comments: list[str]) -> bool | None:
    fields = comment_fields(comments)
    if "chagas label" not in fields:
        return None
    source = fields.get("source")
    return source is None or source.replace(" ", "").upper().startswith("CODE-15")


def code15_dirs(tree: Tree) -> list[Path]:
    """Folders holding CODE-15% headers (a ``# Chagas label:`` and no other ``# Source:``)."""
    return dirs_with_comment(tree, _is_code15)


def find_roots(data_dir: str | Path, tree: Tree | None = None) -> list[Path]:
    """The folder holding every CODE-15% record folder below ``data_dir`` (e.g. ``exams_part*``), or ``[]``."""
    return common_root(code15_dirs(tree if tree is not None else list_tree(data_dir)))


def _row(record_path: Path) -> dict[str, Any]:
    header = read_header(record_path)
    hea = header_path(record_path)
    fields = comment_fields(header.comments or [])
    if not _is_code15(header.comments or []):
        raise RecordError("header has no '# Chagas label:' comment (or names another source)", hea)
    chagas = _BOOL.get(fields["chagas label"].strip().lower())
    if chagas is None:
        raise RecordError(f"Chagas label {fields['chagas label']!r} is not True or False", hea)
    exam_id = fields.get("exam id") or record_path.name
    patient = fields.get("patient id") or None
    return {
        **wfdb_row(dataset=DATASET, record_id=exam_id, record_path=record_path, region=REGION, header=header,
                   patient_id=patient, age=parse_age(fields.get("age")), sex=parse_sex(fields.get("sex"))),
        "chagas": chagas,
        "exam_id": exam_id,
    }


def scan(root: str | Path, strict: bool = False) -> DatasetIndex:
    """Index every CODE-15% record below ``root``; unusable ones become exclusions (strict: raise)."""
    root = Path(root).expanduser().resolve()
    tree = list_tree(root)
    records = RecordScan(root=root, strict=strict)
    seen: dict[str, str] = {}
    for folder in code15_dirs(tree):
        for name in (n for n in tree[folder] if n.endswith(".hea")):
            path = folder / name.removesuffix(".hea")
            records.add(path, functools.partial(_row, path))
            row = records.rows[-1] if records.rows else None
            if row is None or row["path"] != str(path):
                continue
            first = seen.setdefault(row["exam_id"], row["path"])
            if first != row["path"]:
                records.rows.pop()
                records.exclude(path, f"duplicate exam id {row['exam_id']} (first at {first})", folder / name)
    return records.index(dataset=DATASET, version=DATASETS.get(DATASET).version, label_columns=LABEL_COLUMNS)
