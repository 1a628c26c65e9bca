"""PhysioNet/CinC 2017 labeler: the four REFERENCE.csv classes."""

from __future__ import annotations

import pandas as pd

from ..records import DatasetIndex
from .labels import Label, Unlabelled, expect_dataset, is_missing, label_column
from .vocab import CINC2017_CLASSES


def _af(value: object) -> Label:
    if is_missing(value):
        return Unlabelled("no REFERENCE.csv label")
    return str(value) if value in CINC2017_CLASSES else Unlabelled(f"unexpected label {value!r}")


def af(index: DatasetIndex) -> pd.Series:
    expect_dataset(index, "cinc2017")
    return label_column(index, "af_label", _af)
