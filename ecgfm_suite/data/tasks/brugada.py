"""Brugada-HUCA labelers. Labels live only in ``metadata.csv``; without it every task here skips
naming the missing file rather than training on nothing."""

from __future__ import annotations

import pandas as pd

from ..records import DatasetIndex
from .labels import binary_value, label_column, require_label_file

METADATA = "metadata.csv"


def _binary(index: DatasetIndex, column: str, negative: str, positive: str,
            positive_values: tuple[float, ...]) -> pd.Series:
    require_label_file(index, METADATA)
    return label_column(index, column, lambda v: binary_value(v, negative, positive,
                                                              positive_values=positive_values, what=column))


def brugada(index: DatasetIndex) -> pd.Series:
    """0 = no Brugada syndrome; 1 and 2 (the two positive grades in metadata.csv) = Brugada."""
    return _binary(index, "brugada", "no_brugada", "brugada", (1.0, 2.0))


def basal_pattern(index: DatasetIndex) -> pd.Series:
    return _binary(index, "basal_pattern", "no_basal_pattern", "basal_pattern", (1.0,))


def sudden_death(index: DatasetIndex) -> pd.Series:
    return _binary(index, "sudden_death", "no_sudden_death", "sudden_death", (1.0,))
