"""PTB-XL (1.0.x): 12 leads at 100 Hz (``records100/``) and/or 500 Hz (``records500/``), 10 s.

Recognised by ``ptbxl_database.csv``; each row names its 100 Hz (``filename_lr``) and 500 Hz
(``filename_hr``) record relative to the root. ``scp_codes`` is a Python dict literal, parsed
with :func:`ast.literal_eval`. ``scp_statements.csv`` (code → superclass/subclass/form/rhythm)
is read by the task layer (``data.tasks.ptbxl``); the scan only reports it when it is missing.
"""

from __future__ import annotations

import ast
import functools
import math
import re
from pathlib import Path
from typing import Literal

import pandas as pd

from ...errors import RecordError
from ..reader import header_path
from ..records import DatasetIndex
from ._common import RecordScan, Tree, dirs_containing, list_tree, read_table, wfdb_row

DATASET = "ptbxl"
VERSION = "1.0.3"
DATABASE = "ptbxl_database.csv"
STATEMENTS = "scp_statements.csv"
LABEL_COLUMNS: tuple[str, ...] = ("scp_codes", "strat_fold", "validated_by_human")
#: PTB-XL writes age 300 for patients older than 89 (anonymisation); indexed as 90, like LUDB's headers
AGE_OVER_89, AGE_OVER_89_AS = 300.0, 90.0
_FILENAME = {"lr": "filename_lr", "hr": "filename_hr"}
#: the release's record folders and names: ``records100/00000/00001_lr.hea``, ``records500/…/00001_hr.hea``
_RECORD_DIRS = ("records100", "records500")
_RECORD = re.compile(r"\d{5}_[lh]r\.hea")


def find_roots(data_dir: Path, tree: Tree | None = None) -> list[Path]:
    """Folders below ``data_dir`` holding ``ptbxl_database.csv``, or PTB-XL's record folders without it (so that
    ``scan`` says the table is missing instead of the dataset looking absent)."""
    tree = tree if tree is not None else list_tree(data_dir)
    roots = set(dirs_containing(tree, DATABASE))
    roots.update(d.parent.parent for d, files in tree.items()
                 if d.parent.name in _RECORD_DIRS and any(_RECORD.fullmatch(f) for f in files))
    return sorted(roots)


def parse_scp_codes(text: str, path: Path) -> dict[str, float]:
    """``"{'NORM': 100.0, 'SR': 0.0}"`` → dict; anything else is a :class:`RecordError` naming the table."""
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        raise RecordError(f"scp_codes {text!r} is not a dict literal", path) from None
    if not isinstance(codes, dict) or not all(isinstance(k, str) for k in codes):
        raise RecordError(f"scp_codes {text!r} is not a dict of statement codes", path)
    return {k: float(v) for k, v in codes.items()}


def scan(root: Path, strict: bool = False, *, prefer: Literal["lr", "hr"] = "lr") -> DatasetIndex:
    """Index the rows of ``root/ptbxl_database.csv``.

    ``prefer="lr"`` reads the 100 Hz record (``filename_lr``) and falls back to the 500 Hz one
    when only that is present; ``prefer="hr"`` the other way round. ``fs`` says which was used.
    """
    if prefer not in _FILENAME:
        raise ValueError(f"prefer must be 'lr' or 'hr', got {prefer!r}")
    root = Path(root)
    db_path = root / DATABASE
    if not db_path.is_file():  # its tasks skip naming the table (``data.tasks.build``)
        return RecordScan(root, strict).index(dataset=DATASET, version=VERSION, label_columns=LABEL_COLUMNS,
                                              missing_label_files=[db_path])
    table = read_table(db_path, required=("ecg_id", "patient_id", "age", "sex", "scp_codes", "strat_fold",
                                          "validated_by_human", "filename_lr", "filename_hr"))
    statements_path = root / STATEMENTS
    order = [_FILENAME[prefer], _FILENAME["hr" if prefer == "lr" else "lr"]]
    result = RecordScan(root, strict)
    seen: set[str] = set()
    for _, entry in table.iterrows():
        if str(entry["ecg_id"]) in seen:
            result.exclude(root / str(entry["ecg_id"]), f"ecg_id {entry['ecg_id']} is listed twice in {DATABASE}"
                           " (first row kept)", db_path)
            continue
        seen.add(str(entry["ecg_id"]))
        names = [str(entry[c]) for c in order if isinstance(entry[c], str) and entry[c].strip()]
        found = [root / n for n in names if header_path(root / n).is_file()]
        if not found:
            record = root / names[0] if names else root / str(entry["ecg_id"])
            result.exclude(record, f"{DATABASE} row ecg_id {entry['ecg_id']} names {' or '.join(names) or 'no file'}"
                           f", not found below {root}", db_path)
            continue
        result.add(found[0], functools.partial(_row, found[0], entry, db_path))
    return result.index(dataset=DATASET, version=VERSION, label_columns=LABEL_COLUMNS,
                        missing_label_files=[] if statements_path.is_file() else [statements_path])


def _row(path: Path, entry: pd.Series, db_path: Path) -> dict:
    codes = parse_scp_codes(entry["scp_codes"], db_path)
    age = float(entry["age"]) if pd.notna(entry["age"]) else math.nan
    sex = {0: "M", 1: "F"}.get(int(entry["sex"])) if pd.notna(entry["sex"]) else None
    row = wfdb_row(dataset=DATASET, record_id=str(int(entry["ecg_id"])), record_path=path, region="Germany",
                   patient_id=str(int(entry["patient_id"])) if pd.notna(entry["patient_id"]) else None,
                   age=AGE_OVER_89_AS if age == AGE_OVER_89 else age, sex=sex)
    row.update({
        "scp_codes": codes,
        "strat_fold": int(entry["strat_fold"]),
        "validated_by_human": bool(entry["validated_by_human"]),
    })
    return row
