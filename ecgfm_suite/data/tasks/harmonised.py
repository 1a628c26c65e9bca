"""Cross-continental rhythm task: one label set mapped from each dataset's own vocabulary.

Russia (LUDB text), Germany (PTB-XL SCP statements), USA (CinC 2017 AliveCor classes) and the
Challenge 2021 sources (SNOMED CT codes; each source its own region) are pooled. Only mapped
statements count; a record whose mapped statements disagree (e.g. sinus rhythm + AF) is
unlabelled with the conflict as the reason. Sex and age use ``demographics`` directly.
"""

from __future__ import annotations

import pandas as pd

from ...errors import DataError
from ..records import DatasetIndex
from .labels import Label, Unlabelled, is_missing, label_column, map_one, statements
from .vocab import HARMONISED_CINC2017, HARMONISED_LUDB, HARMONISED_PTBXL, HARMONISED_SNOMED

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
    raise DataError(f"no harmonised rhythm mapping for dataset {index.dataset!r}", index.root)
