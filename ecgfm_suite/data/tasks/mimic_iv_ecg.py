"""MIMIC-IV-ECG labelers: the ECG machine's report statements and its interval measurements.

The statements are free text, matched by the patterns of ``vocab`` (lower case, final '.' dropped); a
statement opening with a hedge ("possible", "probable", "consider", ...) never states its finding. Three
uses: the harmonised ``rhythm`` and ``abnormalities`` tasks (``harmonised`` calls :func:`rhythm` and
:func:`abnormalities`), the MIMIC-specific multilabel task of frequent statements (:func:`statements`), and
two regressions from the measurements: QRS duration (``qrs_end − qrs_onset``) and QT interval (``t_end −
qrs_onset``), in ms. An onset or offset outside the record (the machine writes 29999 for "not measured") or
a duration outside the plausible range leaves the record unlabelled, with the value in the reason.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from ..records import DatasetIndex
from .labels import Label, Unlabelled, expect_dataset, map_one, require_label_file, six
from .vocab import (
    CODE15_ABNORMALITIES,
    MIMIC_ABNORMALITY,
    MIMIC_ABNORMALITY_UNSURE,
    MIMIC_HARMONISED_RHYTHM,
    MIMIC_HEDGE,
    MIMIC_PLAUSIBLE_QRS_MS,
    MIMIC_PLAUSIBLE_QT_MS,
    MIMIC_RHYTHM_STATEMENT,
    MIMIC_STATEMENTS,
    Unsure,
)

DATASET = "mimic_iv_ecg"
MEASUREMENTS = "machine_measurements.csv"
_HEDGE = re.compile(MIMIC_HEDGE)
_RHYTHM_STATEMENT = re.compile(MIMIC_RHYTHM_STATEMENT)
#: pattern tables by name: value ← pattern
_TABLES: dict[str, dict[str, Any]] = {
    "rhythm": MIMIC_HARMONISED_RHYTHM, "six": MIMIC_ABNORMALITY, "unsure": MIMIC_ABNORMALITY_UNSURE,
    "statements": {pattern: name for name, pattern in MIMIC_STATEMENTS.items()},
}
_COMPILED = {name: [(re.compile(p), v) for p, v in table.items()] for name, table in _TABLES.items()}
#: distinct statements kept matched (the machines' vocabulary is small; 800,035 records repeat it)
_MEMO = 1 << 16


def normalise(statement: str) -> str:
    """``"Atrial fibrillation with PVC(s) or aberrant ventricular conduction. "`` → lower case, spaces collapsed,
    without the final '.'."""
    return " ".join(statement.lower().split()).rstrip(".").strip()


@functools.lru_cache(maxsize=_MEMO)
def findings(statement: str, table: str) -> tuple[Any, ...]:
    """The values of pattern table ``table`` whose pattern the normalised ``statement`` matches."""
    text = normalise(statement)
    return tuple(value for pattern, value in _COMPILED[table] if pattern.search(text))


@functools.lru_cache(maxsize=_MEMO)
def hedged(statement: str) -> bool:
    return _HEDGE.search(normalise(statement)) is not None


def _states_rhythm(statement: str) -> bool:
    return _RHYTHM_STATEMENT.search(normalise(statement)) is not None and not hedged(statement)


def _reports(index: DatasetIndex) -> list[tuple[str, ...] | Unlabelled]:
    """Each record's statements, or why it has none to label from."""
    expect_dataset(index, DATASET)
    require_label_file(index, MEASUREMENTS)
    out: list[tuple[str, ...] | Unlabelled] = []
    for value in index.records["reports"]:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out.append(Unlabelled(f"no {MEASUREMENTS} row"))
        elif not value:
            out.append(Unlabelled("no machine statement"))
        else:
            out.append(tuple(value))
    return out


def _series(index: DatasetIndex, labels: Iterable[Label]) -> pd.Series:
    return pd.Series(list(labels), index=index.records.index, dtype=object, name="reports")


def _rhythm(reports: tuple[str, ...]) -> Label:
    for statement in reports:
        if hedged(statement) and findings(statement, "rhythm"):
            return Unlabelled(f"hedged rhythm statement {normalise(statement)!r}")
    classes = [c for s in reports for c in findings(s, "rhythm")]
    return map_one(classes, {c: c for c in classes}, "rhythm statement")


def rhythm(index: DatasetIndex) -> pd.Series:
    """The harmonised rhythm (sinus rhythm / bradycardia / tachycardia / AF-or-flutter) of each record."""
    return _series(index, (r if isinstance(r, Unlabelled) else _rhythm(r) for r in _reports(index)))


def _six(reports: tuple[str, ...]) -> Label:
    found: list[str] = []
    unsure: Unsure = {}
    for statement in reports:
        classes = findings(statement, "six")
        if hedged(statement):
            if classes:
                unsure[statement] = (classes, f"hedged statement {normalise(statement)!r}: "
                                              f"{' and '.join(classes)} cannot be told")
                found.append(statement)
            continue
        found += [f"class:{c}" for c in classes]
        for hidden, why in findings(statement, "unsure"):
            unsure[statement] = (hidden, why)
            found.append(statement)
    mapping = {f"class:{c}": c for c in CODE15_ABNORMALITIES}
    return six(found, mapping, unsure, has_rhythm=any(_states_rhythm(s) for s in reports))


def abnormalities(index: DatasetIndex) -> pd.Series:
    """The seed's six CODE-15% abnormalities (multilabel) from each record's statements."""
    return _series(index, (r if isinstance(r, Unlabelled) else _six(r) for r in _reports(index)))


def _statements(reports: tuple[str, ...]) -> Label:
    found = {c for s in reports if not hedged(s) for c in findings(s, "statements")}
    return tuple(c for c in MIMIC_STATEMENTS if c in found)


def statements(index: DatasetIndex) -> pd.Series:
    """The frequent machine statements (multilabel) each record states; hedged statements are not findings."""
    return _series(index, (r if isinstance(r, Unlabelled) else _statements(r) for r in _reports(index)))


def _interval(start: str, end: str, what: str, plausible: tuple[float, float]) -> Callable[[DatasetIndex], pd.Series]:
    lo, hi = plausible

    def labeler(index: DatasetIndex) -> pd.Series:
        expect_dataset(index, DATASET)
        require_label_file(index, MEASUREMENTS)
        records = index.records
        duration_ms = 1000.0 * records["n_samples"].astype(float) / records["fs"].astype(float)
        rows = zip(records["reports"], records[start], records[end], duration_ms, strict=True)
        return pd.Series([_measure(r, a, b, d) for r, a, b, d in rows], index=records.index, dtype=object,
                         name=end)

    def _measure(reports: Any, a: float, b: float, record_ms: float) -> Label:
        if reports is None or (isinstance(reports, float) and math.isnan(reports)):
            return Unlabelled(f"no {MEASUREMENTS} row")
        for column, value in ((start, a), (end, b)):
            if value is None or math.isnan(value):
                return Unlabelled(f"no {column}")
            if not 0 <= value <= record_ms:
                return Unlabelled(f"{column} {value:g} ms lies outside the {record_ms:g}-ms record (not measured)")
        value = float(b - a)
        if not lo <= value <= hi:
            return Unlabelled(f"{what} {value:g} ms ({end} − {start}) outside the plausible {lo:g}–{hi:g} ms")
        return value

    labeler.__name__ = end
    labeler.__doc__ = f"{what} in ms, {end} − {start} of the machine's measurements (regression)."
    return labeler


qrs_duration = _interval("qrs_onset", "qrs_end", "QRS duration", MIMIC_PLAUSIBLE_QRS_MS)
qt_interval = _interval("qrs_onset", "t_end", "QT interval", MIMIC_PLAUSIBLE_QT_MS)
