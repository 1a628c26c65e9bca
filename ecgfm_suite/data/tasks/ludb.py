"""LUDB labelers. Statements arrive normalised by the loader (lower case, stripped, no final '.').

Rhythm classes are the LUDB rhythm vocabulary that names a rhythm (README counts: sinus rhythm 143,
sinus bradycardia 25, atrial fibrillation 15, sinus arrhythmia 8, sinus tachycardia 4, atrial
flutter 3). "Wandering atrial pacemaker" only ever appears next to one of these and "aberrant
conduction" next to AF, so they qualify rather than replace the rhythm and are not classes;
"irregular sinus rhythm" (2 records) has no class and leaves its records unlabelled.
"""

from __future__ import annotations

import pandas as pd

from ..records import DatasetIndex
from .labels import Label, Unlabelled, binary_value, label_column, map_all, map_one, statements

RHYTHM: dict[str, str] = {
    "sinus rhythm": "sinus_rhythm",
    "sinus bradycardia": "sinus_bradycardia",
    "sinus tachycardia": "sinus_tachycardia",
    "sinus arrhythmia": "sinus_arrhythmia",
    "atrial fibrillation": "atrial_fibrillation",
    "atrial flutter, typical": "atrial_flutter",
}
AXIS: dict[str, str] = {
    "normal": "normal",
    "left axis deviation": "left_axis_deviation",
    "right axis deviation": "right_axis_deviation",
    "vertical": "vertical",
    "horizontal": "horizontal",
}
_AXIS_PREFIX = "electric axis of the heart:"
#: spellings as published ("intravintricular", "av-block")
CONDUCTION: dict[str, str] = {
    "incomplete right bundle branch block": "irbbb",
    "complete right bundle branch block": "crbbb",
    "incomplete left bundle branch block": "ilbbb",
    "complete left bundle branch block": "clbbb",
    "left anterior hemiblock": "lahb",
    "i degree av block": "avb1",
    "iii degree av-block": "avb3",
    "non-specific intravintricular conduction delay": "ivcd",
    "sinoatrial blockade, undefined": "sa_block",
}
LVH = "left ventricular hypertrophy"


def rhythm(index: DatasetIndex) -> pd.Series:
    return label_column(index, "rhythm", lambda v: map_one(statements(v), RHYTHM, "rhythm statement"))


def _axis(value: object) -> Label:
    found = statements(value)
    if not found:
        return Unlabelled("no axis statement")
    text = found[0].strip().lower().rstrip(".")
    if text.startswith(_AXIS_PREFIX):
        text = text[len(_AXIS_PREFIX):].strip()
    return AXIS.get(text, Unlabelled(f"unknown axis statement {text!r}"))


def axis(index: DatasetIndex) -> pd.Series:
    return label_column(index, "axis", _axis)


def conduction(index: DatasetIndex) -> pd.Series:
    """Multilabel; a record without conduction statements is labelled (all classes negative)."""
    return label_column(index, "conduction", lambda v: map_all(statements(v), CONDUCTION, "conduction statement"))


def lvh(index: DatasetIndex) -> pd.Series:
    return label_column(index, "hypertrophy",
                        lambda v: binary_value(LVH in statements(v), "no_lvh", "lvh",
                                               positive_values=(1.0,), what="LVH"))


def ischemia(index: DatasetIndex) -> pd.Series:
    """Any ischemia/scar/STEMI statement is positive (51 records in the README)."""
    return label_column(index, "ischemia",
                        lambda v: binary_value(bool(statements(v)), "no_ischemia", "ischemia",
                                               positive_values=(1.0,), what="ischemia"))
