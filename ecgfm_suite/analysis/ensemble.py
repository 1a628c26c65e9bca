"""The cells' probes as one prediction: the seed-mean of their scores at one scarcity level.

Every seed draws the same training subset for every model, so the seed-mean is each model's ensemble
prediction on identical training data (as the paired comparisons score it). The per-(model, task)
analyses that judge predictions (subgroups, calibration) read it at the pair's headline level, the
level with the most training data.
"""

from __future__ import annotations

import numpy as np

from .inputs import ModelTaskData, headline_level, probe_runs


def headline_scores(data: ModelTaskData, splits: tuple[str, ...] = ("test",)) -> tuple[str, dict[str, np.ndarray]]:
    """(headline level, split → seed-mean scores of ``data.rows(split)``)."""
    level = headline_level(data.levels)
    runs = probe_runs(data, level)
    return level, {split: np.mean([r.probe.predict_scores(data.X[data.rows(split)]) for r in runs], axis=0)
                   for split in splits}
