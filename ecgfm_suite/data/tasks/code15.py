"""CODE-15% labeler: the Chagas label from the Challenge 2025 header comment."""

from __future__ import annotations

import pandas as pd

from ..records import DatasetIndex
from .labels import binary_value, expect_dataset, label_column


def chagas(index: DatasetIndex) -> pd.Series:
    expect_dataset(index, "code15")
    return label_column(index, "chagas", lambda v: binary_value(v, "no_chagas", "chagas",
                                                                positive_values=(1.0,), what="Chagas"))
