"""Sex and age labelers: they read the shared ``sex``/``age`` record columns, so one function serves
every dataset (the per-dataset tasks and the pooled cross-continental ones)."""

from __future__ import annotations

import pandas as pd

from ..records import DatasetIndex
from .labels import Label, Unlabelled, is_missing, label_column
from .vocab import SEX

#: ages outside this range are codes, not ages (PTB-XL writes 300 for "over 89")
AGE_RANGE: tuple[float, float] = (0.0, 120.0)


def _sex(value: object) -> Label:
    if is_missing(value):
        return Unlabelled("sex unknown")
    return SEX.get(str(value), Unlabelled(f"unexpected sex value {value!r}"))


def _age(value: object) -> Label:
    if is_missing(value):
        return Unlabelled("age unknown")
    try:
        age = float(value)  # type: ignore[arg-type]  # any table cell: what float() refuses is caught below
    except (TypeError, ValueError):
        return Unlabelled(f"unexpected age value {value!r}")
    lo, hi = AGE_RANGE
    return age if lo <= age <= hi else Unlabelled(f"age outside {lo:g}-{hi:g} years")


def sex(index: DatasetIndex) -> pd.Series:
    return label_column(index, "sex", _sex)


def age(index: DatasetIndex) -> pd.Series:
    return label_column(index, "age", _age)
