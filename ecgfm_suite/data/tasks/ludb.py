"""LUDB labelers (statements arrive normalised by the loader; vocabularies in ``vocab``)."""

from __future__ import annotations

import pandas as pd

from ..records import DatasetIndex
from .labels import Label, Unlabelled, expect_dataset, label_column, map_all, map_one, statements
from .vocab import LUDB_AXIS, LUDB_CONDUCTION, LUDB_RHYTHM

LVH = "left ventricular hypertrophy"
_AXIS_PREFIX = "electric axis of the heart:"


def rhythm(index: DatasetIndex) -> pd.Series:
    expect_dataset(index, "ludb")
    return label_column(index, "rhythm", lambda v: map_one(statements(v), LUDB_RHYTHM, "rhythm statement"))


def _axis(value: object) -> Label:
    found = statements(value)
    if not found:
        return Unlabelled("no axis statement")
    text = found[0].strip().lower().rstrip(".")
    if text.startswith(_AXIS_PREFIX):
        text = text[len(_AXIS_PREFIX):].strip()
    return LUDB_AXIS.get(text, Unlabelled(f"unknown axis statement {text!r}"))


def axis(index: DatasetIndex) -> pd.Series:
    expect_dataset(index, "ludb")
    return label_column(index, "axis", _axis)


def conduction(index: DatasetIndex) -> pd.Series:
    """Multilabel; a record without conduction statements is labelled (every class negative)."""
    expect_dataset(index, "ludb")
    return label_column(index, "conduction",
                        lambda v: map_all(statements(v), LUDB_CONDUCTION, "conduction statement"))


def lvh(index: DatasetIndex) -> pd.Series:
    expect_dataset(index, "ludb")
    return label_column(index, "hypertrophy", lambda v: "lvh" if LVH in statements(v) else "no_lvh")


def ischemia(index: DatasetIndex) -> pd.Series:
    """Any ischemia/scar/STEMI statement is positive (51 records in the README)."""
    expect_dataset(index, "ludb")
    return label_column(index, "ischemia", lambda v: "ischemia" if statements(v) else "no_ischemia")
