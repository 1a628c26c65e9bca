"""Cross-continental rhythm task: one label set mapped from each dataset's own vocabulary.

Russia (LUDB text), Germany (PTB-XL SCP statements), USA (CinC 2017 AliveCor classes; MIMIC-IV-ECG machine
statements, ``mimic_iv_ecg``) and the Challenge 2021 sources (SNOMED CT codes; each source its own region)
are pooled. Only mapped
statements count; a record whose mapped statements disagree (e.g. sinus rhythm + AF) is
unlabelled with the conflict as the reason. Sex and age use ``demographics`` directly.

The cross-continental six-abnormality task (the seed's CODE-15% classes 1dAVb, RBBB, LBBB, SB, ST,
AF; tables and decisions in ``vocab``) pools LUDB, PTB-XL, the Challenge 2021 sources, CODE-15% and
MIMIC-IV-ECG.
A record is unlabelled, with the reason, when its source cannot say whether a class is present: it
states no rhythm (SB, ST and AF are rhythm statements), it carries a statement that may stand for a
class without naming it (an unsided bundle branch block, a prolonged PR interval without the block),
or its Challenge source never codes the class at all.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from ...errors import DataError
from ..records import DatasetIndex
from . import code15, mimic_iv_ecg
from .labels import Label, Unlabelled, is_missing, label_column, map_one, six, statements
from .vocab import (
    ABNORMALITY_LUDB,
    ABNORMALITY_PTBXL,
    ABNORMALITY_PTBXL_UNSURE,
    ABNORMALITY_SNOMED,
    ABNORMALITY_SNOMED_UNSURE,
    ABNORMALITY_SOURCE_GAPS,
    ABNORMALITY_SOURCE_UNSURE,
    CHALLENGE_RHYTHM_CODES,
    HARMONISED_CINC2017,
    HARMONISED_LUDB,
    HARMONISED_PTBXL,
    HARMONISED_SNOMED,
    PTBXL_RHYTHM,
)

_WHAT = "rhythm statement"


def _cinc2017(value: object) -> Label:
    if is_missing(value):
        return Unlabelled("no REFERENCE.csv label")
    return HARMONISED_CINC2017.get(str(value), Unlabelled(f"CinC 2017 class {value!r} has no harmonised rhythm"))


def rhythm(index: DatasetIndex) -> pd.Series:
    match index.dataset:
        case "ludb":
            return label_column(index, "rhythm", lambda v: map_one(statements(v), HARMONISED_LUDB, _WHAT))
        case "challenge2021":
            return label_column(index, "dx", lambda v: map_one(statements(v), HARMONISED_SNOMED, _WHAT))
        case "ptbxl":
            return label_column(index, "scp_codes", lambda v: map_one(dict(v or {}), HARMONISED_PTBXL, _WHAT))
        case "cinc2017":
            return label_column(index, "af_label", _cinc2017)
        case "mimic_iv_ecg":
            return mimic_iv_ecg.rhythm(index)
    raise DataError(f"no harmonised rhythm mapping for dataset {index.dataset!r}", index.root)


def _ptbxl_six(codes: Mapping[str, float] | None) -> Label:
    found = dict(codes or {})
    if not found:
        return Unlabelled("no SCP statement")
    return six(found, ABNORMALITY_PTBXL, ABNORMALITY_PTBXL_UNSURE, has_rhythm=any(c in PTBXL_RHYTHM for c in found))


def _challenge_six(dx: object, source: object) -> Label:
    gap = ABNORMALITY_SOURCE_GAPS.get(str(source))
    if gap is not None:
        return Unlabelled(gap)
    found = statements(dx)
    unsure = {**ABNORMALITY_SNOMED_UNSURE, **ABNORMALITY_SOURCE_UNSURE.get(str(source), {})}
    return six(found, ABNORMALITY_SNOMED, unsure, has_rhythm=any(c in CHALLENGE_RHYTHM_CODES for c in found))


def abnormalities(index: DatasetIndex) -> pd.Series:
    """The seed's six CODE-15% abnormalities (multilabel) from each dataset's vocabulary."""
    records = index.records
    match index.dataset:
        case "code15":
            return code15.abnormalities(index)
        case "mimic_iv_ecg":
            return mimic_iv_ecg.abnormalities(index)
        case "ptbxl":
            return label_column(index, "scp_codes", _ptbxl_six)
        case "challenge2021":
            dx = label_column(index, "dx", statements)
            return pd.Series([_challenge_six(v, s) for v, s in zip(dx, records["source"], strict=True)],
                             index=records.index, dtype=object, name="dx")
        case "ludb":
            rhythm = label_column(index, "rhythm", statements)
            conduction = label_column(index, "conduction", statements)
            return pd.Series([six((*r, *c), ABNORMALITY_LUDB, {}, has_rhythm=bool(r))
                              for r, c in zip(rhythm, conduction, strict=True)],
                             index=records.index, dtype=object, name="rhythm")
    raise DataError(f"no harmonised abnormality mapping for dataset {index.dataset!r}", index.root)
