"""PTB-XL labelers: aggregate ``scp_codes`` through ``scp_statements.csv`` the way the PTB-XL
authors' example code does (every code present counts, whatever its likelihood; diagnostic codes
→ ``diagnostic_class``/``diagnostic_subclass``; form/rhythm codes are those with the column == 1).
Records with no statement of the kind are unlabelled, as in the authors' benchmark."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ...errors import DataError
from ..datasets._common import read_table
from ..records import DatasetIndex
from .labels import Label, Unlabelled, expect_dataset, label_column, require_label_file

STATEMENTS = "scp_statements.csv"


def statement_table(index: DatasetIndex) -> pd.DataFrame:
    """``scp_statements.csv`` of the index root (71 rows: read per call rather than cached by path)."""
    require_label_file(index, STATEMENTS)
    path = Path(index.root) / STATEMENTS
    if not path.is_file():
        raise DataError(f"PTB-XL index has no {STATEMENTS} beside it", path)
    return read_table(path, required=("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"),
                      index_col=0)


def aggregation(index: DatasetIndex, kind: str) -> dict[str, str]:
    """SCP code → class for ``kind`` in superdiag/subdiag/form/rhythm."""
    table = statement_table(index)
    if kind in ("superdiag", "subdiag"):
        rows = table[table["diagnostic"] == 1.0]
        column = "diagnostic_class" if kind == "superdiag" else "diagnostic_subclass"
        return {str(code): str(cls) for code, cls in rows[column].items()}
    rows = table[table[kind] == 1.0]
    return {str(code): str(code) for code in rows.index}


def _aggregate(codes: Mapping[str, float] | None, mapping: Mapping[str, str], what: str) -> Label:
    found = sorted({mapping[c] for c in dict(codes or {}) if c in mapping})
    return tuple(found) if found else Unlabelled(f"no {what} statement")


def _labeler(kind: str, what: str):
    def labeler(index: DatasetIndex) -> pd.Series:
        expect_dataset(index, "ptbxl")
        mapping = aggregation(index, kind)
        return label_column(index, "scp_codes", lambda codes: _aggregate(codes, mapping, what))

    labeler.__name__ = kind
    labeler.__doc__ = f"PTB-XL {what} statements aggregated as in the authors' example code (multilabel)."
    return labeler


superdiag = _labeler("superdiag", "diagnostic")
subdiag = _labeler("subdiag", "diagnostic")
form = _labeler("form", "form")
rhythm = _labeler("rhythm", "rhythm")
