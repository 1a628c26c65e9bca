"""CODE-15% labelers: the Chagas label (Challenge 2025 header comment or ``code15_chagas_labels.csv``), and the
seed's six abnormalities and ``normal_ecg`` from the Zenodo release's ``exams.csv``."""

from __future__ import annotations

import pandas as pd

from ...errors import TaskSkip
from ..records import DatasetIndex
from .labels import Label, Unlabelled, binary_value, expect_dataset, is_missing, label_column, require_label_file
from .vocab import CODE15_ABNORMALITIES, CODE15_NORMAL

TABLE = "exams.csv"


def chagas(index: DatasetIndex) -> pd.Series:
    expect_dataset(index, "code15")
    return label_column(index, "chagas", lambda v: binary_value(v, "no_chagas", "chagas",
                                                                positive_values=(1.0,), what="Chagas"))


def _require_table(index: DatasetIndex) -> None:
    """Skip when exams.csv is missing, or when only the Challenge 2025 WFDB form (no such labels) was found."""
    expect_dataset(index, "code15")
    require_label_file(index, TABLE)
    if not set(CODE15_ABNORMALITIES) <= set(index.records.columns):
        raise TaskSkip(f"only the Challenge 2025 WFDB form of CODE-15% was found, which has no abnormality labels: "
                       f"they are in the Zenodo release's {TABLE}", index.root)


def _unlabelled(fmt: object, what: str) -> Unlabelled:
    if fmt == "hdf5":
        return Unlabelled(f"no True/False {what} in {TABLE}")
    return Unlabelled(f"Challenge 2025 WFDB record whose exam is not in {TABLE}")


def abnormalities(index: DatasetIndex) -> pd.Series:
    """Multilabel over the six; an exam with none of them is labelled (every class negative)."""
    _require_table(index)
    rows = index.records

    def label(fmt: object, values: tuple[object, ...]) -> Label:
        missing = [c for c, v in zip(CODE15_ABNORMALITIES, values, strict=True) if is_missing(v)]
        if missing:
            return _unlabelled(fmt, f"{', '.join(missing)} label")
        return tuple(c for c, v in zip(CODE15_ABNORMALITIES, values, strict=True) if bool(v))

    columns = zip(*(rows[c].tolist() for c in CODE15_ABNORMALITIES), strict=True)
    return pd.Series([label(fmt, values) for fmt, values in zip(rows["format"].tolist(), columns, strict=True)],
                     index=rows.index, dtype=object, name="abnormalities")


def normal_ecg(index: DatasetIndex) -> pd.Series:
    _require_table(index)
    negative, positive = CODE15_NORMAL
    labels = label_column(index, "normal_ecg", lambda v: binary_value(v, negative, positive, positive_values=(1.0,),
                                                                      what="normal_ecg"))
    return pd.Series([_unlabelled(fmt, "normal_ecg") if isinstance(lab, Unlabelled) else lab
                      for lab, fmt in zip(labels, index.records["format"], strict=True)],
                     index=labels.index, dtype=object, name="normal_ecg")
