"""What a labeler returns, and the helpers every labeler shares.

A labeler maps one ``DatasetIndex`` to a ``pd.Series`` aligned with ``index.records``: each value
is the record's label (a class name; a tuple of class names for multilabel tasks; a float for
regression) or an ``Unlabelled(reason)``, so the task builder can count why records were left out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ...errors import DataError, TaskSkip
from ..records import DatasetIndex
from .vocab import ABNORMALITY_RHYTHMS, CODE15_ABNORMALITIES, Unsure


@dataclass(frozen=True, slots=True)
class Unlabelled:
    """A record the task cannot label, with the reason (counted, never silent)."""

    reason: str


#: what a labeler returns for one record: a class, a multilabel's classes, a regression target, or why not
Label = str | tuple[str, ...] | float | Unlabelled


def label_column(index: DatasetIndex, column: str, fn: Callable[[Any], Label]) -> pd.Series:
    """Apply ``fn`` to one label column of the index (a missing column is a loader bug: DataError)."""
    records = index.records
    if column not in records.columns:
        raise DataError(f"{index.dataset} index has no label column {column!r} "
                        f"(columns: {', '.join(map(str, records.columns))})", index.root)
    return pd.Series([fn(v) for v in records[column]], index=records.index, dtype=object, name=column)


def expect_dataset(index: DatasetIndex, *datasets: str) -> None:
    if index.dataset not in datasets:
        raise DataError(f"labeler for {', '.join(datasets)} got a {index.dataset!r} index", index.root)


def require_label_file(index: DatasetIndex, name: str) -> None:
    """Skip the task when the loader reported the label file ``name`` missing."""
    for missing in index.missing_label_files:
        if str(missing).replace("\\", "/").rsplit("/", 1)[-1] == name:
            raise TaskSkip(f"labels need {name}, which is missing", missing)


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def statements(value: Any) -> tuple[str, ...]:
    """A label cell as a tuple of statements (None/NaN → empty)."""
    if is_missing(value):
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def one_class(found: Iterable[str], what: str) -> Label:
    """The single class among ``found``; none or several distinct ones → Unlabelled."""
    distinct = sorted(set(found))
    if len(distinct) == 1:
        return distinct[0]
    if not distinct:
        return Unlabelled(f"no {what} maps to a class")
    return Unlabelled(f"conflicting {what}: {' + '.join(distinct)}")


def map_one(values: Iterable[str], mapping: Mapping[str, str], what: str) -> Label:
    """Map statements/codes through ``mapping`` (unmapped ones ignored) and require exactly one class."""
    return one_class((mapping[v] for v in values if v in mapping), what)


def map_all(values: Iterable[str], mapping: Mapping[str, str], what: str) -> Label:
    """Multilabel: every statement must be known; the label is the sorted tuple of its classes."""
    values = tuple(values)
    unknown = [v for v in values if v not in mapping]
    if unknown:
        return Unlabelled(f"unknown {what} {unknown[0]!r}")
    return tuple(sorted({mapping[v] for v in values}))


def binary_value(value: Any, negative: str, positive: str, *, positive_values: Iterable[float],
                 negative_values: Iterable[float] = (0.0,), what: str) -> Label:
    """A numeric/bool label cell → ``negative``/``positive``; missing or unexpected values → Unlabelled."""
    if is_missing(value):
        return Unlabelled(f"no {what} label")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return Unlabelled(f"unexpected {what} value {value!r}")
    if number in set(negative_values):
        return negative
    if number in set(positive_values):
        return positive
    return Unlabelled(f"unexpected {what} value {value!r}")


def six(found: Iterable[str], mapping: Mapping[str, str], unsure: Unsure, *, has_rhythm: bool) -> Label:
    """The six classes among a record's statements, in the seed's order (none: every class negative), or
    Unlabelled when a statement may hide a class it does not name, or SB/ST/AF cannot be told (no rhythm)."""
    found = tuple(found)
    classes = {mapping[s] for s in found if s in mapping}
    for statement in found:
        hidden, why = unsure.get(statement, ((), ""))
        if hidden and not classes & set(hidden):
            return Unlabelled(why)
    if not has_rhythm and not classes & ABNORMALITY_RHYTHMS:
        return Unlabelled("no rhythm statement: SB, ST and AF cannot be told")
    return tuple(c for c in CODE15_ABNORMALITIES if c in classes)
