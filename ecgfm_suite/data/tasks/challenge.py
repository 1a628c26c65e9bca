"""PhysioNet/CinC Challenge 2021 labeler: multilabel over the 26 scored classes.

Unscored codes are ignored; a record carrying only unscored codes is labelled with no positive
class, as in the Challenge's own scoring.
"""

from __future__ import annotations

import pandas as pd

from ..records import DatasetIndex
from .labels import expect_dataset, label_column, statements
from .vocab import CHALLENGE_CODE_TO_CLASS


def dx(index: DatasetIndex) -> pd.Series:
    expect_dataset(index, "challenge2021")
    return label_column(index, "dx", lambda v: tuple(sorted({CHALLENGE_CODE_TO_CLASS[c] for c in statements(v)
                                                               if c in CHALLENGE_CODE_TO_CLASS})))
